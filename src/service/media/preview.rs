//! URL previews (spec v1.11+, "GET /_matrix/client/v1/media/preview_url";
//! issue 20; `docs/media.md`, "URL previews"): fetches a page for a user
//! and answers its OpenGraph fields, with its image stored as media.
//!
//! A preview fetcher is a request forgery tool pointed at the server's own
//! network unless it refuses addresses there, so every fetch here:
//! - accepts only `http` and `https` URLs;
//! - refuses an IP-literal host that [`refused`] names (loopback, private,
//!   link-local, unique-local, CGNAT, multicast, ...) before connecting;
//! - resolves names through `FilteringResolver`, which drops every refused
//!   address from the answer: the address connected to is one that was
//!   checked, so a name that resolves to a public address for a check and a
//!   private one for the connection (DNS rebinding) cannot get through;
//! - follows redirects itself (the client follows none), each hop checked
//!   the same way, at most [`UrlPreviewConfig::max_redirects`];
//! - ignores proxies from the environment (a proxy would connect for us);
//! - reads at most [`UrlPreviewConfig::max_bytes`] of a body (stopping the
//!   stream there) and takes at most [`UrlPreviewConfig::timeout_ms`] for the
//!   whole preview, image included;
//! - runs at most [`UrlPreviewConfig::concurrency`] previews at once (one
//!   more is refused at once), bounding the memory bodies hold.
//!
//! Addresses in [`UrlPreviewConfig::allow_ips`] are let through (intranets,
//! and tests, whose pages are served on loopback).
//!
//! Only HTML is parsed (`scraper`, on a blocking thread, within the
//! thumbnailers' concurrency bound), decoded from its declared charset
//! (`encoding_rs`; UTF-8 when none); an image URL is previewed as the image.
//! A successful answer is cached in the media database
//! (`previews/cache`, by the hour of the server's clock and the URL's
//! SHA-256) and served to every user asking for that URL in that hour, its
//! image media ID included; a purge clears the hours before its cutoff.
//! The request's `ts` is not used (a client could otherwise bypass the
//! cache by varying it; the spec lets a server answer a newer preview).
//!
//! Who may import this: `service::media` (its parent) and, through
//! [`Media::preview_url`], `api`.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Error, Media, Result, UploadInfo};

/// `[media.url_preview]`: URL previews (`docs/configuration.md`). Off by
/// default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UrlPreviewConfig {
    /// Serve `GET /_matrix/client/v1/media/preview_url`. Off (the
    /// default), it answers 404 `M_UNRECOGNIZED`, as Synapse does with
    /// previews disabled.
    pub enabled: bool,
    /// Most bytes read of a page or an image; a longer body is cut off
    /// there and the preview fails (502 `M_TOO_LARGE`). Default 4 MiB.
    pub max_bytes: u64,
    /// Longest a whole preview may take (every hop and the image), ms;
    /// then 502 `M_UNKNOWN`. Default 10 s.
    pub timeout_ms: u64,
    /// Redirects followed, each checked like the first URL. Default 5.
    pub max_redirects: u32,
    /// Previews fetched at once by this server; one more is refused at
    /// once (429 `M_LIMIT_EXCEEDED`). Bounds the memory previews hold
    /// (each at most `max_bytes` of page and as much of image). Default 8.
    pub concurrency: usize,
    /// Networks (CIDR, `"10.1.0.0/16"`, `"127.0.0.1/32"`) fetched even
    /// though they are refused addresses (loopback, private, link-local,
    /// ...): an intranet's servers, or a test's loopback server. Empty by
    /// default: every refused address is refused.
    #[schemars(with = "Vec<String>")]
    pub allow_ips: Vec<IpNet>,
}

impl Default for UrlPreviewConfig {
    fn default() -> Self {
        UrlPreviewConfig {
            enabled: false,
            max_bytes: 4 * 1024 * 1024,
            timeout_ms: 10_000,
            max_redirects: 5,
            concurrency: 8,
            allow_ips: Vec::new(),
        }
    }
}

/// Longest OpenGraph property name kept, characters (Synapse's limit).
const MAX_KEY_CHARS: usize = 50;
/// Longest OpenGraph value kept, characters (Synapse's limit).
const MAX_VALUE_CHARS: usize = 1000;
/// An hour, ms: previews are cached for the rest of the hour they were
/// fetched in.
pub(super) const HOUR_MS: u64 = 60 * 60 * 1000;
/// Largest answer cached, bytes of JSON (a kv value is at most 100 kB).
const MAX_CACHED_BYTES: usize = 64 * 1024;
/// Most OpenGraph properties answered.
const MAX_PROPERTIES: usize = 64;
/// The image types stored for a preview (those the thumbnailer reads).
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Whether `ip` is an address a preview must not connect to: loopback,
/// unspecified, private (RFC 1918), CGNAT (100.64.0.0/10), link-local,
/// broadcast, multicast, documentation, benchmarking and reserved IPv4;
/// loopback, unspecified, multicast, unique-local (fc00::/7), link-local
/// (fe80::/10), site-local (fec0::/10) and documentation IPv6; and any IPv6
/// address that carries an IPv4 one (mapped, compatible, NAT64 64:ff9b::/96,
/// 6to4 2002::/16) whose IPv4 address is refused.
pub fn refused(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT, RFC 6598
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking, RFC 2544
        || a >= 240 // reserved
}

fn refused_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        refused_v4(Ipv4Addr::new(a, b, c, d))
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        return refused_v4(v4);
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[..6] == [0; 6] && embedded(s[6], s[7])) // IPv4-compatible
        || (s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0; 4] && embedded(s[6], s[7])) // NAT64
        || (s[0] == 0x2002 && embedded(s[1], s[2])) // 6to4
}

/// Whether a preview may connect to `ip`: not [`refused`], or in `allow`.
fn permitted(ip: IpAddr, allow: &[IpNet]) -> bool {
    !refused(ip) || allow.iter().any(|net| net.contains(&ip))
}

/// A resolver's refusal: every address of the name is refused.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves only to refused addresses")]
struct RefusedName(String);

/// The system resolver (`getaddrinfo`, via tokio) with every refused
/// address dropped from its answer; a name left with none fails with
/// [`RefusedName`].
struct FilteringResolver {
    allow: Arc<[IpNet]>,
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept: Vec<SocketAddr> = found.filter(|a| permitted(a.ip(), &allow)).collect();
            if kept.is_empty() {
                return Err(Box::new(RefusedName(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// The preview fetcher of a [`Media`]: its settings and its HTTP client
/// (built on first use).
pub(super) struct Previewer {
    config: UrlPreviewConfig,
    client: OnceLock<std::result::Result<reqwest::Client, String>>,
    /// One permit per preview in flight ([`UrlPreviewConfig::concurrency`]).
    in_flight: tokio::sync::Semaphore,
}

/// A fetched body.
struct Fetched {
    /// The URL it came from, after redirects.
    url: Url,
    /// Its `Content-Type` without parameters, lowercase.
    essence: String,
    /// The `charset` parameter of its `Content-Type`, if any.
    charset: Option<String>,
    /// The bytes (at most `max_bytes`).
    body: Bytes,
}

impl Previewer {
    /// A fetcher with `config`.
    pub(super) fn new(config: UrlPreviewConfig) -> Self {
        let in_flight = tokio::sync::Semaphore::new(config.concurrency);
        Previewer {
            config,
            client: OnceLock::new(),
            in_flight,
        }
    }

    /// The settings.
    pub(super) fn config(&self) -> &UrlPreviewConfig {
        &self.config
    }

    fn client(&self) -> Result<&reqwest::Client> {
        let built = self.client.get_or_init(|| {
            let allow: Arc<[IpNet]> = self.config.allow_ips.clone().into();
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .dns_resolver(Arc::new(FilteringResolver { allow }))
                .user_agent("Myelin (URL preview bot)")
                .build()
                .map_err(|e| e.to_string())
        });
        built
            .as_ref()
            .map_err(|e| Error::Config(format!("URL preview client: {e}")))
    }

    /// Refuses `url` unless it is `http`/`https` with a host that is a name
    /// (checked by the resolver when connecting) or a permitted address.
    fn check(&self, url: &Url) -> Result<()> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::InvalidParam(
                "only http and https URLs are previewed".into(),
            ));
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err(Error::InvalidParam("the URL has no host".into())),
        };
        if permitted(ip, &self.config.allow_ips) {
            Ok(())
        } else {
            Err(Error::PreviewRefused(format!(
                "{ip} is not a public address"
            )))
        }
    }

    /// GETs `url`, following at most `max_redirects` redirects (each hop
    /// checked), and reads at most `max_bytes` of the final 2xx body.
    async fn fetch(&self, mut url: Url) -> Result<Fetched> {
        let client = self.client()?;
        let max_bytes = self.config.max_bytes;
        let mut redirects = 0;
        let mut response = loop {
            match self.check(&url) {
                // A bad redirect is the page's fault, not the request's.
                Err(Error::InvalidParam(why)) if redirects > 0 => {
                    return Err(Error::PreviewUpstream(format!("redirect refused: {why}")));
                }
                checked => checked?,
            }
            let response = client.get(url.clone()).send().await.map_err(upstream)?;
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok());
            match location {
                Some(location) if response.status().is_redirection() => {
                    if redirects == self.config.max_redirects {
                        return Err(Error::PreviewUpstream(format!(
                            "more than {redirects} redirects"
                        )));
                    }
                    redirects += 1;
                    url = url.join(location).map_err(|e| {
                        Error::PreviewUpstream(format!("redirect to a bad URL: {e}"))
                    })?;
                }
                _ => break response,
            }
        };
        let status = response.status();
        if !status.is_success() {
            return Err(Error::PreviewUpstream(format!(
                "the page answered {status}"
            )));
        }
        if response.content_length().is_some_and(|n| n > max_bytes) {
            return Err(Error::PreviewTooLarge {
                limit_bytes: max_bytes,
            });
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let charset = charset_in(&content_type).map(str::to_owned);
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(upstream)? {
            if (body.len() + chunk.len()) as u64 > max_bytes {
                return Err(Error::PreviewTooLarge {
                    limit_bytes: max_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched {
            url,
            essence,
            charset,
            body: body.freeze(),
        })
    }
}

/// The value of the first `charset=` in `text` (a `Content-Type` header,
/// or the start of an HTML document), quotes stripped.
fn charset_in(text: &str) -> Option<&str> {
    let at = text.to_ascii_lowercase().find("charset=")? + "charset=".len();
    let rest = text[at..].trim_start_matches(['"', '\'', ' ']);
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.')))
        .unwrap_or(rest.len());
    Some(&rest[..end]).filter(|label| !label.is_empty())
}

/// `body` as text: in the encoding its byte-order mark names, else its
/// `Content-Type`'s `charset`, else the one a `<meta charset>` or
/// `<meta http-equiv="Content-Type">` declares in its first 1,024 bytes,
/// else UTF-8 (the WHATWG encoding labels, via `encoding_rs`); bytes
/// invalid in that encoding are replaced.
fn decode_html(body: &[u8], charset: Option<&str>) -> String {
    let head = String::from_utf8_lossy(&body[..body.len().min(1024)]);
    let encoding = charset
        .or_else(|| charset_in(&head))
        .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()))
        .unwrap_or(encoding_rs::UTF_8);
    encoding.decode(body).0.into_owned()
}

/// A failed request: refused by the resolver (403), else the page's fault
/// (502).
fn upstream(e: reqwest::Error) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<RefusedName>() {
            return Error::PreviewRefused(refused.to_string());
        }
        source = err.source();
    }
    Error::PreviewUpstream(format!("fetching the page failed: {e}"))
}

/// The OpenGraph properties of `html`: every `<meta property="og:...">`
/// (or `name="og:..."`; the first of each wins), with `og:title` falling
/// back to `<title>` and `og:description` to `<meta name="description">`.
/// Names over 50 characters and values over 1,000 are dropped (as Synapse
/// does), and at most 64 properties kept.
pub fn open_graph(html: &str) -> BTreeMap<String, String> {
    let doc = scraper::Html::parse_document(html);
    let meta = scraper::Selector::parse("meta").expect("a valid selector");
    let title = scraper::Selector::parse("title").expect("a valid selector");
    let mut og = BTreeMap::new();
    let mut description = None;
    for element in doc.select(&meta) {
        let element = element.value();
        let Some(content) = element.attr("content") else {
            continue;
        };
        let key = element
            .attr("property")
            .or_else(|| element.attr("name"))
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if key == "description" && description.is_none() {
            description = Some(content.trim().to_owned());
        }
        if key.starts_with("og:") && og.len() < MAX_PROPERTIES {
            og.entry(key).or_insert_with(|| content.trim().to_owned());
        }
    }
    if !og.contains_key("og:title")
        && let Some(t) = doc.select(&title).next()
    {
        let text = t.text().collect::<String>();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if !text.is_empty() {
            og.insert("og:title".to_owned(), text);
        }
    }
    if let Some(d) = description.filter(|d| !d.is_empty()) {
        og.entry("og:description".to_owned()).or_insert(d);
    }
    og.retain(|k, v| k.chars().count() <= MAX_KEY_CHARS && v.chars().count() <= MAX_VALUE_CHARS);
    og
}

impl Media {
    /// `GET /_matrix/client/v1/media/preview_url?url=`: the OpenGraph
    /// properties of the page at `url` for `user_id`, its `og:image` stored
    /// as media of `user_id` (then `mxc://...`, with `og:image:type`,
    /// `og:image:width`, `og:image:height` and `matrix:image:size`; an
    /// image that cannot be fetched or stored is left out). An image URL
    /// is previewed as that image; other types answer `{}`.
    ///
    /// Errors: [`Error::InvalidParam`] (not an absolute `http(s)` URL),
    /// [`Error::PreviewRefused`] (a refused address, on any hop),
    /// [`Error::PreviewBusy`] (`concurrency` previews in flight),
    /// [`Error::PreviewTooLarge`], [`Error::PreviewUpstream`] (connection,
    /// status, time), storage failures.
    pub async fn preview_url(&self, user_id: &str, url: &str) -> Result<Map<String, Value>> {
        let url = Url::parse(url).map_err(|e| Error::InvalidParam(format!("url: {e}")))?;
        self.previewer.check(&url)?;
        let hour = self.clock.now_ms() / HOUR_MS;
        let url_sha256 = hex::encode(Sha256::digest(url.as_str().as_bytes()));
        if let Some(json) = self.db.cached_preview(hour, &url_sha256).await? {
            match serde_json::from_str(&json) {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    tracing::warn!(error = %e, "an unreadable cached preview is fetched anew")
                }
            }
        }
        let _in_flight = self
            .previewer
            .in_flight
            .try_acquire()
            .map_err(|_| Error::PreviewBusy)?;
        let limit = Duration::from_millis(self.previewer.config().timeout_ms);
        let answer = tokio::time::timeout(limit, self.preview(user_id, url))
            .await
            .map_err(|_| Error::PreviewUpstream(format!("the preview took over {limit:?}")))??;
        let json = Value::Object(answer.clone()).to_string();
        if json.len() <= MAX_CACHED_BYTES
            && let Err(e) = self.db.cache_preview(hour, &url_sha256, &json).await
        {
            tracing::warn!(error = %e, "a preview was not cached");
        }
        Ok(answer)
    }

    async fn preview(&self, user_id: &str, url: Url) -> Result<Map<String, Value>> {
        let page = self.previewer.fetch(url).await?;
        let mut answer = Map::new();
        if IMAGE_TYPES.contains(&page.essence.as_str()) {
            self.store_image(user_id, &page, &mut answer).await?;
            return Ok(answer);
        }
        if !matches!(page.essence.as_str(), "text/html" | "application/xhtml+xml") {
            return Ok(answer);
        }
        let permit = self
            .thumbnailers
            .acquire()
            .await
            .map_err(|_| Error::PreviewUpstream("shutting down".into()))?;
        let (body, charset) = (page.body.clone(), page.charset.clone());
        let og = tokio::task::spawn_blocking(move || {
            open_graph(&decode_html(&body, charset.as_deref()))
        })
        .await
        .map_err(|e| Error::PreviewUpstream(format!("parsing the page failed: {e}")))?;
        drop(permit);
        let image = og
            .get("og:image")
            .and_then(|i| page.url.join(i).ok())
            .filter(|i| matches!(i.scheme(), "http" | "https"));
        for (key, value) in og {
            if !key.starts_with("og:image") {
                answer.insert(key, Value::String(value));
            }
        }
        if let Some(image) = image {
            // The page previews without its image when the image fails.
            match self.previewer.fetch(image).await {
                Ok(fetched) if IMAGE_TYPES.contains(&fetched.essence.as_str()) => {
                    if let Err(e) = self.store_image(user_id, &fetched, &mut answer).await {
                        tracing::debug!(error = %e, "a preview's image was not stored");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "a preview's image was not fetched"),
            }
        }
        Ok(answer)
    }

    /// Stores `image` as media of `user_id` and describes it in `answer`.
    async fn store_image(
        &self,
        user_id: &str,
        image: &Fetched,
        answer: &mut Map<String, Value>,
    ) -> Result<()> {
        let info = UploadInfo {
            content_type: Some(image.essence.clone()),
            file_name: None,
            content_length: Some(image.body.len() as u64),
        };
        self.precheck(user_id, &info).await?;
        let media_id = self.new_media_id();
        let body =
            futures::stream::once(futures::future::ready(Ok::<_, Error>(image.body.clone())));
        self.store(user_id, &media_id, info, body, false).await?;
        answer.insert("og:image".into(), self.content_uri(&media_id).into());
        answer.insert("og:image:type".into(), image.essence.clone().into());
        answer.insert("matrix:image:size".into(), image.body.len().into());
        let dimensions = image::ImageReader::new(Cursor::new(&image.body[..]))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok());
        if let Some((width, height)) = dimensions {
            answer.insert("og:image:width".into(), width.into());
            answer.insert("og:image:height".into(), height.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_internal_addresses_and_accepts_public_ones() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
        ] {
            assert!(refused(ip.parse().unwrap()), "{ip} should be refused");
        }
        for ip in [
            "93.184.215.14",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "100.128.0.1",
        ] {
            assert!(!refused(ip.parse().unwrap()), "{ip} should be allowed");
        }
    }

    #[test]
    fn pages_are_decoded_in_their_declared_encoding() {
        let latin1 = b"<title>Caf\xe9</title>";
        assert_eq!(
            decode_html(latin1, Some("iso-8859-1")),
            "<title>Café</title>"
        );
        let mut meta = b"<meta charset='windows-1252'><title>Caf".to_vec();
        meta.extend_from_slice(b"\xe9</title>");
        assert!(decode_html(&meta, None).ends_with("Café</title>"));
        let http_equiv =
            b"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=Shift_JIS\">\x82\xa0";
        assert!(decode_html(http_equiv, None).ends_with('あ'));
        assert_eq!(decode_html("Café".as_bytes(), None), "Café");
        assert_eq!(
            decode_html("Café".as_bytes(), Some("no-such-charset")),
            "Café"
        );
        assert_eq!(charset_in("text/html; charset=\"UTF-8\""), Some("UTF-8"));
        assert_eq!(charset_in("text/html"), None);
    }

    #[test]
    fn the_allow_list_lets_listed_networks_through() {
        let allow: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        assert!(permitted("127.0.0.1".parse().unwrap(), &allow));
        assert!(!permitted("127.0.0.2".parse().unwrap(), &allow));
        assert!(!permitted("::1".parse().unwrap(), &allow));
    }

    #[test]
    fn open_graph_reads_properties_and_falls_back_to_title_and_description() {
        let og = open_graph(
            r#"<html><head><title> A  page </title>
            <meta name="description" content="About it">
            <meta property="og:image" content="/a.png">
            <meta property="og:image" content="/b.png">
            <meta property="og:url" content="https://example.org/">
            </head><body>x</body></html>"#,
        );
        assert_eq!(og["og:title"], "A page");
        assert_eq!(og["og:description"], "About it");
        assert_eq!(og["og:image"], "/a.png");
        let og = open_graph(
            r#"<meta property="og:title" content="OG title"><title>T</title>
            <meta property="og:description" content="OG description">
            <meta name="description" content="plain">"#,
        );
        assert_eq!(og["og:title"], "OG title");
        assert_eq!(og["og:description"], "OG description");
        let long = format!(
            r#"<meta property="og:title" content="{}">"#,
            "x".repeat(1001)
        );
        assert!(open_graph(&long).is_empty());
    }
}
