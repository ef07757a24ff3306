//! Prometheus metrics: one process-wide registry of typed metrics
//! (`prometheus-client`), a narrow recording API for the layers, and the
//! OpenMetrics text a scrape of `GET /metrics` returns ([`encode`]).
//!
//! Recording is off until [`enable`] is called (`myelin serve` calls it when
//! `[metrics] bind` is set): every recording function first reads one
//! relaxed atomic flag and returns, so a server without metrics pays a
//! branch per call site and nothing else.
//!
//! Names follow Prometheus conventions: the `myelin_` prefix (the process
//! collector's standard `process_*` names excepted), base units (seconds,
//! bytes), counters end in `_total` (the encoder appends it). Labels are
//! bounded sets: HTTP routes are route templates (axum's `MatchedPath`,
//! parameters written `:name`; `"unmatched"` otherwise), event types are the event's `type` (bounded
//! in practice by what clients send; the Matrix spec's types dominate),
//! databases are `db::SPECS` names, backends `embedded` or `fdb`.
//!
//! Gauges of the process (CPU, resident memory, open file descriptors) are
//! read from `/proc/self` at scrape time; nothing scans a store per scrape.
//! Three kinds of value are not recorded by call sites but read when
//! scraped, from sources registered once:
//! - caches ([`register_cache`]): hits, misses, entries and weight, read
//!   from the cache's own counters (quick_cache's `stats`) of every live
//!   cache of a name, summed;
//! - handler panics ([`set_panic_counter`]): the API's process-wide count;
//! - stored counts (registered users, devices, queued to-device messages):
//!   gauges the periodic sampler (`service::admin::sample_store_gauges`)
//!   sets from bounded paged reads ([`store_counts`]), never a scrape.
//!
//! Who may import this: everyone (rank 0, like `random`); it imports nothing
//! of Myelin's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, OnceLock, Weak};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Whether recording is on ([`enable`]).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// The process's metrics, registered on first use.
static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Turns recording on for the rest of the process. Idempotent.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
    LazyLock::force(&METRICS);
}

/// Whether recording is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric in the OpenMetrics text format (ending in `# EOF`).
pub fn encode() -> String {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &METRICS.registry) {
        tracing::warn!(error = %e, "encoding the metrics failed");
    }
    text
}

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

/// Labels of a route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// Labels of a database handle.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DbLabels {
    database: &'static str,
    backend: &'static str,
}

/// Labels of a transaction's end.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TxLabels {
    database: &'static str,
    backend: &'static str,
    outcome: &'static str,
}

/// Labels naming an event type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    r#type: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs to ~26 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

fn batch_histogram() -> Histogram {
    // 1 to 1024 transactions per batch.
    Histogram::new(exponential_buckets(1.0, 2.0, 11))
}

struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<RouteLabels>,
    http_in_flight: Gauge,
    sync_waiting: Gauge,
    sync_wakes: Counter,
    sync_delivery: Histogram,
    events_persisted: Family<TypeLabels, Counter>,
    kv_transactions: Family<TxLabels, Counter>,
    kv_retries: Family<DbLabels, Counter>,
    kv_conflicts: Family<DbLabels, Counter>,
    kv_commit_duration: HistogramFamily<DbLabels>,
    kv_batch_size: Histogram,
    kv_bytes_written: Counter,
    registered_users: Gauge,
    devices: Gauge,
    to_device_queued: Gauge,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            http_in_flight: Gauge::default(),
            sync_waiting: Gauge::default(),
            sync_wakes: Counter::default(),
            sync_delivery: latency_histogram(),
            events_persisted: Family::default(),
            kv_transactions: Family::default(),
            kv_retries: Family::default(),
            kv_conflicts: Family::default(),
            kv_commit_duration: Family::new_with_constructor(latency_histogram),
            kv_batch_size: batch_histogram(),
            kv_bytes_written: Counter::default(),
            registered_users: Gauge::default(),
            devices: Gauge::default(),
            to_device_queued: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "myelin_http_requests",
            "HTTP requests answered, by method, route template and status",
            m.http_requests.clone(),
        );
        r.register(
            "myelin_http_request_duration_seconds",
            "Time from a request's arrival to its response's head, by method and route template",
            m.http_duration.clone(),
        );
        r.register(
            "myelin_http_requests_in_flight",
            "HTTP requests being handled, waiting long-polls included",
            m.http_in_flight.clone(),
        );
        r.register(
            "myelin_sync_long_polls_waiting",
            "Sync long-polls registered with the notifier and waiting for a change",
            m.sync_waiting.clone(),
        );
        r.register(
            "myelin_sync_wakes",
            "Waiting sync long-polls woken by a published change",
            m.sync_wakes.clone(),
        );
        r.register(
            "myelin_sync_delivery_seconds",
            "Time from a notifier watcher's round beginning (its watch fired) to the long-polls it concerns being woken",
            m.sync_delivery.clone(),
        );
        r.register(
            "myelin_events_persisted",
            "Room events committed, by event type",
            m.events_persisted.clone(),
        );
        r.register(
            "myelin_kv_transactions",
            "Transactions run by the retry runner, by database, backend and outcome (committed, error)",
            m.kv_transactions.clone(),
        );
        r.register(
            "myelin_kv_retries",
            "Transaction attempts retried by the retry runner, by database and backend",
            m.kv_retries.clone(),
        );
        r.register(
            "myelin_kv_conflicts",
            "Transaction attempts that failed with a conflict, by database and backend",
            m.kv_conflicts.clone(),
        );
        r.register(
            "myelin_kv_commit_duration_seconds",
            "Time a commit took, from the commit call to its answer, by database and backend",
            m.kv_commit_duration.clone(),
        );
        r.register(
            "myelin_kv_embedded_batch_size",
            "Transactions committed per embedded group commit",
            m.kv_batch_size.clone(),
        );
        r.register(
            "myelin_kv_embedded_written_bytes",
            "Key and value bytes of the mutations the embedded backend committed",
            m.kv_bytes_written.clone(),
        );
        r.register(
            "myelin_registered_users",
            "Accounts registered (deactivated ones included), as of the latest store sample",
            m.registered_users.clone(),
        );
        r.register(
            "myelin_devices",
            "Devices (logged-in sessions) of all users, as of the latest store sample",
            m.devices.clone(),
        );
        r.register(
            "myelin_to_device_queued_messages",
            "To-device messages waiting in device inboxes (not yet acknowledged by a sync), as of the latest store sample",
            m.to_device_queued.clone(),
        );
        r.register(
            "myelin_build",
            "The running build",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register_collector(Box::new(ProcessCollector));
        r.register_collector(Box::new(SourcesCollector));
        Metrics { registry, ..m }
    }
}

fn get() -> Option<&'static Metrics> {
    enabled().then(|| &*METRICS)
}

/// Records an answered HTTP request: `route` is the route template (or
/// `"unmatched"`), `elapsed` the time to the response's head.
pub fn http_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    let Some(m) = get() else { return };
    m.http_requests
        .get_or_create(&HttpLabels {
            method: method.to_owned(),
            route: route.to_owned(),
            status,
        })
        .inc();
    m.http_duration
        .get_or_create(&RouteLabels {
            method: method.to_owned(),
            route: route.to_owned(),
        })
        .observe(elapsed.as_secs_f64());
}

/// A gauge held up while something is under way: the gauge was increased
/// when it was made and is decreased when it is dropped.
#[must_use = "the gauge goes down when this is dropped"]
pub struct InFlight(Option<&'static Gauge>);

impl InFlight {
    fn new(gauge: impl FnOnce(&'static Metrics) -> &'static Gauge) -> Self {
        let gauge = get().map(gauge);
        if let Some(g) = gauge {
            g.inc();
        }
        InFlight(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(g) = self.0 {
            g.dec();
        }
    }
}

/// Counts an HTTP request in flight until the guard drops.
pub fn http_in_flight() -> InFlight {
    InFlight::new(|m| &m.http_in_flight)
}

/// Counts a sync long-poll waiting until the guard drops.
pub fn sync_waiting() -> InFlight {
    InFlight::new(|m| &m.sync_waiting)
}

/// Records `woken` waiting long-polls woken by one round of a notifier
/// watcher, `elapsed` after the round began (its watch fired). A round that
/// woke nobody is not a delivery and is not observed.
pub fn sync_wakes(woken: usize, elapsed: Duration) {
    let Some(m) = get() else { return };
    if woken > 0 {
        m.sync_wakes.inc_by(woken as u64);
        m.sync_delivery.observe(elapsed.as_secs_f64());
    }
}

/// Records a room event of `event_type` committed.
pub fn event_persisted(event_type: &str) {
    let Some(m) = get() else { return };
    m.events_persisted
        .get_or_create(&TypeLabels {
            r#type: event_type.to_owned(),
        })
        .inc();
}

/// How a run of the retry runner ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxOutcome {
    /// It committed.
    Committed,
    /// It gave up: a non-retryable error, the retry limit or the timeout.
    Error,
}

/// Records the end of one run of the retry runner over database
/// `database` on `backend`.
pub fn kv_transaction(database: &'static str, backend: &'static str, outcome: TxOutcome) {
    let Some(m) = get() else { return };
    let outcome = match outcome {
        TxOutcome::Committed => "committed",
        TxOutcome::Error => "error",
    };
    m.kv_transactions
        .get_or_create(&TxLabels {
            database,
            backend,
            outcome,
        })
        .inc();
}

/// Records one retried attempt; `conflict` if it failed with a conflict.
pub fn kv_retry(database: &'static str, backend: &'static str, conflict: bool) {
    let Some(m) = get() else { return };
    let labels = DbLabels { database, backend };
    m.kv_retries.get_or_create(&labels).inc();
    if conflict {
        m.kv_conflicts.get_or_create(&labels).inc();
    }
}

/// Records how long one commit call took.
pub fn kv_commit(database: &'static str, backend: &'static str, elapsed: Duration) {
    let Some(m) = get() else { return };
    m.kv_commit_duration
        .get_or_create(&DbLabels { database, backend })
        .observe(elapsed.as_secs_f64());
}

/// Records one embedded group commit of `transactions` transactions whose
/// mutations wrote `bytes` key and value bytes.
pub fn kv_embedded_batch(transactions: usize, bytes: u64) {
    let Some(m) = get() else { return };
    m.kv_batch_size.observe(transactions as f64);
    m.kv_bytes_written.inc_by(bytes);
}

/// Stored counts, as one sample of the store reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Accounts registered (deactivated ones included).
    pub registered_users: u64,
    /// Devices of all users.
    pub devices: u64,
    /// To-device messages in device inboxes.
    pub to_device_queued: u64,
}

/// Sets the stored-count gauges from one sample.
pub fn store_counts(counts: StoreCounts) {
    let Some(m) = get() else { return };
    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    m.registered_users.set(gauge(counts.registered_users));
    m.devices.set(gauge(counts.devices));
    m.to_device_queued.set(gauge(counts.to_device_queued));
}

/// What a cache reports of itself when scraped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheSample {
    /// Lookups that found their entry, since the cache was made.
    pub hits: u64,
    /// Lookups that did not, since the cache was made.
    pub misses: u64,
    /// Entries held now.
    pub entries: u64,
    /// The entries' weight now, in bytes (as the cache weighs them).
    pub bytes: u64,
}

/// A cache that can report its [`CacheSample`].
pub trait CacheStats: Send + Sync {
    /// The cache's counters now.
    fn sample(&self) -> CacheSample;
}

/// The registered caches: name and a weak handle (a dropped cache is
/// forgotten at the next registration or scrape).
static CACHES: Mutex<Vec<(&'static str, Weak<dyn CacheStats>)>> = Mutex::new(Vec::new());

/// Registers a cache, exported as `myelin_cache_*{cache="<name>"}` (the
/// samples of every live cache of one name summed). Registration works
/// whether or not recording is on; it costs nothing after.
pub fn register_cache(name: &'static str, cache: Weak<dyn CacheStats>) {
    let mut caches = CACHES.lock().unwrap_or_else(|e| e.into_inner());
    caches.retain(|(_, c)| c.strong_count() > 0);
    caches.push((name, cache));
}

/// Where the handler-panic count comes from (`api::panics::count`).
static PANIC_COUNTER: OnceLock<fn() -> u64> = OnceLock::new();

/// Names the function that counts handler panics (answered 500), exported
/// as `myelin_http_panics_total`. The first call wins.
pub fn set_panic_counter(count: fn() -> u64) {
    let _ = PANIC_COUNTER.set(count);
}

/// Labels naming a cache.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
}

/// The metrics read from registered sources at scrape time.
#[derive(Debug)]
struct SourcesCollector;

impl Collector for SourcesCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let panics = ConstCounter::new(PANIC_COUNTER.get().map_or(0, |count| count()));
        panics.encode(encoder.encode_descriptor(
            "myelin_http_panics",
            "Request handlers that panicked (each answered 500 M_UNKNOWN)",
            None,
            panics.metric_type(),
        )?)?;
        let mut sums: Vec<(&'static str, CacheSample)> = Vec::new();
        {
            let mut caches = CACHES.lock().unwrap_or_else(|e| e.into_inner());
            caches.retain(|(_, c)| c.strong_count() > 0);
            for (name, cache) in caches.iter() {
                let Some(cache) = cache.upgrade() else {
                    continue;
                };
                let s = cache.sample();
                let i = match sums.iter().position(|(n, _)| n == name) {
                    Some(i) => i,
                    None => {
                        sums.push((name, CacheSample::default()));
                        sums.len() - 1
                    }
                };
                let sum = &mut sums[i].1;
                sum.hits += s.hits;
                sum.misses += s.misses;
                sum.entries += s.entries;
                sum.bytes += s.bytes;
            }
        }
        type Field = fn(&CacheSample) -> u64;
        let counters: [(&str, &str, Field); 2] = [
            (
                "myelin_cache_hits",
                "Cache lookups that found their entry, by cache",
                |s| s.hits,
            ),
            (
                "myelin_cache_misses",
                "Cache lookups that did not, by cache",
                |s| s.misses,
            ),
        ];
        for (name, help, field) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (cache, sample) in &sums {
                let labels = CacheLabels { cache };
                ConstCounter::new(field(sample)).encode(family.encode_family(&labels)?)?;
            }
        }
        let gauges: [(&str, &str, Field); 2] = [
            (
                "myelin_cache_entries",
                "Entries a cache holds, by cache",
                |s| s.entries,
            ),
            (
                "myelin_cache_size_bytes",
                "The weight of a cache's entries in bytes (as it weighs them), by cache",
                |s| s.bytes,
            ),
        ];
        for (name, help, field) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (cache, sample) in &sums {
                let labels = CacheLabels { cache };
                let value = i64::try_from(field(sample)).unwrap_or(i64::MAX);
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// The standard process metrics, read from `/proc/self` at scrape time.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(process) = ProcessStats::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(process.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let rss = ConstGauge::new(process.resident_bytes);
        rss.encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size, in bytes",
            None,
            rss.metric_type(),
        )?)?;
        let fds = ConstGauge::new(process.open_fds);
        fds.encode(encoder.encode_descriptor(
            "process_open_fds",
            "Open file descriptors",
            None,
            fds.metric_type(),
        )?)?;
        Ok(())
    }
}

/// What `/proc/self` says of this process.
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: i64,
    open_fds: i64,
}

impl ProcessStats {
    /// `None` where `/proc` is not there (not Linux).
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces), from
        // field 3 (state): utime is field 14, stime 15 (proc(5)).
        let after = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let resident_pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1);
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
        Some(ProcessStats {
            cpu_seconds: ticks / per_second,
            resident_bytes: resident_pages * page,
            open_fds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_shows_in_the_text_once_enabled() {
        enable();
        event_persisted("m.room.message");
        event_persisted("m.room.message");
        kv_retry("rooms", "embedded", true);
        let text = encode();
        assert!(
            text.contains("myelin_events_persisted_total{type=\"m.room.message\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("myelin_kv_conflicts_total{database=\"rooms\",backend=\"embedded\"} 1"),
            "{text}"
        );
        assert!(text.contains("myelin_build_info{version="), "{text}");
        assert!(text.contains("process_open_fds "), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
