//! A minimal Matrix Client-Server API client over `reqwest`: exactly the
//! requests the load tool makes, nothing Myelin-specific, so every
//! homeserver is measured the same way.
//!
//! Each call names its endpoint as `METHOD /path-template`, so an error says
//! which endpoint failed; a server that answers `M_UNRECOGNIZED` (spec:
//! "Unsupported endpoints") yields [`ClientError::Unrecognized`], which the
//! tool reports as a missing endpoint. Path parameters are percent-encoded.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server does not implement the endpoint (404 or 405 with
    /// `M_UNRECOGNIZED`).
    #[error("the server does not implement `{endpoint}` (HTTP {status} M_UNRECOGNIZED)")]
    Unrecognized {
        /// `METHOD /path-template`.
        endpoint: &'static str,
        /// 404 or 405.
        status: u16,
    },
    /// Any other non-2xx answer.
    #[error("`{endpoint}`: HTTP {status} {errcode}: {error}")]
    Status {
        /// `METHOD /path-template`.
        endpoint: &'static str,
        /// The HTTP status.
        status: u16,
        /// The Matrix `errcode`, or empty.
        errcode: String,
        /// The Matrix `error`, or the start of the body.
        error: String,
        /// The parsed body (`Null` when not JSON); registration reads its
        /// UIA `session` and `completed` from it.
        body: Value,
    },
    /// The request could not be made or the answer not read (connection
    /// refused, timeout, body not JSON).
    #[error("`{endpoint}`: {source}")]
    Transport {
        /// `METHOD /path-template`.
        endpoint: &'static str,
        /// The reqwest error.
        #[source]
        source: reqwest::Error,
    },
    /// A 2xx answer without a field the spec requires.
    #[error("`{endpoint}`: response lacks `{field}`")]
    Missing {
        /// `METHOD /path-template`.
        endpoint: &'static str,
        /// The missing field.
        field: &'static str,
    },
}

impl ClientError {
    /// Whether the server does not implement the endpoint.
    pub fn is_unrecognized(&self) -> bool {
        matches!(self, ClientError::Unrecognized { .. })
    }

    /// Whether the server answered with Matrix error code `errcode` (for
    /// example `M_UNKNOWN_POS`, a sliding-sync connection to open afresh).
    pub fn is_errcode(&self, errcode: &str) -> bool {
        matches!(self, ClientError::Status { errcode: e, .. } if e == errcode)
    }
}

/// A logged-in account: its user ID and access token.
#[derive(Clone, Debug)]
pub struct Account {
    /// `@localpart:server`.
    pub user_id: String,
    /// The access token.
    pub token: String,
}

/// An HTTP client for one homeserver base URL. Cheap to clone (one
/// connection pool).
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// `POST /register` endpoint name.
pub const REGISTER: &str = "POST /_matrix/client/v3/register";
/// `POST /login` endpoint name.
pub const LOGIN: &str = "POST /_matrix/client/v3/login";
/// `POST /createRoom` endpoint name.
pub const CREATE_ROOM: &str = "POST /_matrix/client/v3/createRoom";
/// `POST /join/{roomIdOrAlias}` endpoint name.
pub const JOIN: &str = "POST /_matrix/client/v3/join/{roomIdOrAlias}";
/// `PUT /rooms/{roomId}/send/{eventType}/{txnId}` endpoint name.
pub const SEND: &str = "PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}";
/// `GET /sync` endpoint name.
pub const SYNC: &str = "GET /_matrix/client/v3/sync";
/// `POST .../org.matrix.simplified_msc3575/sync` (simplified sliding sync,
/// MSC4186) endpoint name.
pub const SLIDING_SYNC: &str = "POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync";
/// `PUT /user/{userId}/account_data/{type}` endpoint name.
pub const ACCOUNT_DATA: &str = "PUT /_matrix/client/v3/user/{userId}/account_data/{type}";

impl Client {
    /// A client for `base` (`http://host:port`, no trailing slash needed);
    /// every request times out after `timeout`. `max_idle_per_host` bounds
    /// the kept-alive connections.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// Sends one request and returns the JSON body of a 2xx answer (`{}`
    /// for an empty body).
    pub async fn call(
        &self,
        endpoint: &'static str,
        method: Method,
        path: &str,
        token: Option<&str>,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .query(query);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport = |source| ClientError::Transport { endpoint, source };
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(transport)?;
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(if bytes.is_empty() { json!({}) } else { json });
        }
        let errcode = json["errcode"].as_str().unwrap_or_default().to_owned();
        if errcode == "M_UNRECOGNIZED" && (status == 404 || status == 405) {
            return Err(ClientError::Unrecognized { endpoint, status });
        }
        let error = match json["error"].as_str() {
            Some(e) => e.to_owned(),
            None => String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
        };
        Err(ClientError::Status {
            endpoint,
            status,
            errcode,
            error,
            body: json,
        })
    }

    /// `POST /register` (spec "Account registration"): completes the
    /// user-interactive flow with `m.login.registration_token` (when `token`
    /// is given and the server asks for it) and `m.login.dummy`.
    pub async fn register(
        &self,
        localpart: &str,
        password: &str,
        registration_token: Option<&str>,
    ) -> Result<Account, ClientError> {
        let mut auth = json!({"type": "m.login.dummy"});
        if let Some(t) = registration_token {
            auth = json!({"type": "m.login.registration_token", "token": t});
        }
        let mut session: Option<String> = None;
        // A registration token stage, then the dummy stage, then success.
        for _ in 0..3 {
            if let Some(s) = &session {
                auth["session"] = json!(s);
            }
            let body = json!({
                "username": localpart,
                "password": password,
                "initial_device_display_name": "myelin bench",
                "auth": auth,
            });
            let result = self
                .call(
                    REGISTER,
                    Method::POST,
                    "/_matrix/client/v3/register",
                    None,
                    &[],
                    Some(&body),
                )
                .await;
            match result {
                Ok(v) => return account(REGISTER, &v),
                Err(ClientError::Status {
                    status: 401, body, ..
                }) if body["session"].is_string() => {
                    session = body["session"].as_str().map(str::to_owned);
                    let completed = body["completed"].as_array().cloned().unwrap_or_default();
                    let done = |stage: &str| completed.iter().any(|c| c == stage);
                    auth = match registration_token {
                        Some(t) if !done("m.login.registration_token") => {
                            json!({"type": "m.login.registration_token", "token": t})
                        }
                        _ => json!({"type": "m.login.dummy"}),
                    };
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Missing {
            endpoint: REGISTER,
            field: "access_token (flow did not complete)",
        })
    }

    /// `POST /login` with `m.login.password`.
    pub async fn login(&self, localpart: &str, password: &str) -> Result<Account, ClientError> {
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password,
            "initial_device_display_name": "myelin bench",
        });
        let v = self
            .call(
                LOGIN,
                Method::POST,
                "/_matrix/client/v3/login",
                None,
                &[],
                Some(&body),
            )
            .await?;
        account(LOGIN, &v)
    }

    /// `POST /createRoom` with the `public_chat` preset (anyone may join);
    /// returns the room ID.
    pub async fn create_room(&self, who: &Account, name: &str) -> Result<String, ClientError> {
        let body = json!({"preset": "public_chat", "name": name});
        let v = self
            .call(
                CREATE_ROOM,
                Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(&who.token),
                &[],
                Some(&body),
            )
            .await?;
        string_field(CREATE_ROOM, &v, "room_id")
    }

    /// `POST /join/{roomIdOrAlias}`.
    pub async fn join(&self, who: &Account, room_id: &str) -> Result<(), ClientError> {
        let path = format!("/_matrix/client/v3/join/{}", encode(room_id));
        self.call(
            JOIN,
            Method::POST,
            &path,
            Some(&who.token),
            &[],
            Some(&json!({})),
        )
        .await
        .map(drop)
    }

    /// `PUT /rooms/{roomId}/send/m.room.message/{txnId}`; returns the event
    /// ID.
    pub async fn send(
        &self,
        who: &Account,
        room_id: &str,
        txn_id: &str,
        content: &Value,
    ) -> Result<String, ClientError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
            encode(room_id),
            encode(txn_id)
        );
        let v = self
            .call(
                SEND,
                Method::PUT,
                &path,
                Some(&who.token),
                &[],
                Some(content),
            )
            .await?;
        string_field(SEND, &v, "event_id")
    }

    /// `GET /sync` with an inline `filter`, an optional `since` and a
    /// `timeout` in milliseconds; returns the whole body.
    pub async fn sync(
        &self,
        who: &Account,
        since: Option<&str>,
        timeout_ms: u64,
        filter: &str,
    ) -> Result<Value, ClientError> {
        let timeout = timeout_ms.to_string();
        let mut query = vec![("timeout", timeout.as_str()), ("filter", filter)];
        if let Some(since) = since {
            query.push(("since", since));
        }
        let v = self
            .call(
                SYNC,
                Method::GET,
                "/_matrix/client/v3/sync",
                Some(&who.token),
                &query,
                None,
            )
            .await?;
        if !v["next_batch"].is_string() {
            return Err(ClientError::Missing {
                endpoint: SYNC,
                field: "next_batch",
            });
        }
        Ok(v)
    }

    /// `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`
    /// (MSC4186) with an optional `pos` and a `timeout` in milliseconds in
    /// the query and `body` (`conn_id`, `lists`, ...) as given; returns the
    /// whole answer, which must carry a `pos`.
    pub async fn sliding_sync(
        &self,
        who: &Account,
        pos: Option<&str>,
        timeout_ms: u64,
        body: &Value,
    ) -> Result<Value, ClientError> {
        let timeout = timeout_ms.to_string();
        let mut query = vec![("timeout", timeout.as_str())];
        if let Some(pos) = pos {
            query.push(("pos", pos));
        }
        let v = self
            .call(
                SLIDING_SYNC,
                Method::POST,
                "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync",
                Some(&who.token),
                &query,
                Some(body),
            )
            .await?;
        if !v["pos"].is_string() {
            return Err(ClientError::Missing {
                endpoint: SLIDING_SYNC,
                field: "pos",
            });
        }
        Ok(v)
    }

    /// `PUT /user/{userId}/account_data/{type}`.
    pub async fn put_account_data(
        &self,
        who: &Account,
        event_type: &str,
        content: &Value,
    ) -> Result<(), ClientError> {
        let path = format!(
            "/_matrix/client/v3/user/{}/account_data/{}",
            encode(&who.user_id),
            encode(event_type)
        );
        self.call(
            ACCOUNT_DATA,
            Method::PUT,
            &path,
            Some(&who.token),
            &[],
            Some(content),
        )
        .await
        .map(drop)
    }
}

/// The account in a register or login answer.
fn account(endpoint: &'static str, v: &Value) -> Result<Account, ClientError> {
    Ok(Account {
        user_id: string_field(endpoint, v, "user_id")?,
        token: string_field(endpoint, v, "access_token")?,
    })
}

fn string_field(
    endpoint: &'static str,
    v: &Value,
    field: &'static str,
) -> Result<String, ClientError> {
    v[field]
        .as_str()
        .map(str::to_owned)
        .ok_or(ClientError::Missing { endpoint, field })
}

/// Percent-encodes one path segment (RFC 3986: everything but unreserved
/// characters).
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode("!abc:example.org"), "%21abc%3Aexample.org");
        assert_eq!(encode("@u/1:h"), "%40u%2F1%3Ah");
        assert_eq!(encode("t-1_2.3~"), "t-1_2.3~");
    }
}
