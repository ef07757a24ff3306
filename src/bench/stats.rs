//! Latency histograms and rate arithmetic.
//!
//! Latencies are recorded in microseconds into an HdrHistogram (3
//! significant digits, 1 µs to 1 hour; larger values are clamped to the top)
//! and reported in milliseconds. Histograms of concurrent tasks are merged
//! with [`Latencies::merge`]. Rates divide a count by a wall-clock window
//! and are 0 for an empty window, never infinite or NaN, so the JSON line
//! always holds numbers.
//!
//! For charts (`myelin bench --plot`, [`super::plot`]), a histogram also
//! gives its distribution as CDF points ([`Latencies::cdf`]), and
//! [`PerSecond`] counts events per Unix second.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest latency recorded as itself: one hour, in microseconds.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A latency histogram (microsecond resolution, 3 significant digits).
#[derive(Clone, Debug)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    /// An empty histogram.
    pub fn new() -> Self {
        Latencies {
            histogram: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("static histogram bounds are valid"),
        }
    }

    /// Records one latency; clamped to [1 µs, 1 h].
    pub fn record(&mut self, latency: Duration) {
        self.record_us(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records one latency in microseconds; clamped to [1 µs, 1 h].
    pub fn record_us(&mut self, latency_us: u64) {
        self.histogram
            .saturating_record(latency_us.clamp(1, MAX_LATENCY_US));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Latencies) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms share bounds");
    }

    /// How many samples were recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Percentiles in milliseconds; all zero when empty.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.histogram;
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// The quantiles [`Latencies::cdf`] reports: every 1% to 90%, every 0.5%
/// to 99%, every 0.1% to 99.9%, then 99.95%, 99.99% and the maximum.
fn cdf_quantiles() -> impl Iterator<Item = f64> {
    let body = (1..=90).map(|i| f64::from(i) / 100.0);
    let shoulder = (1..=18).map(|i| 0.90 + f64::from(i) * 0.005);
    let tail = (1..=9).map(|i| 0.99 + f64::from(i) * 0.001);
    body.chain(shoulder)
        .chain(tail)
        .chain([0.9995, 0.9999, 1.0])
}

impl Latencies {
    /// The distribution as points `(latency ms, fraction of samples at
    /// or below it)` at fixed quantiles (120 points, increasing in both);
    /// empty when no sample was recorded.
    pub fn cdf(&self) -> Vec<CdfPoint> {
        let h = &self.histogram;
        if h.is_empty() {
            return Vec::new();
        }
        cdf_quantiles()
            .map(|q| CdfPoint {
                ms: h.value_at_quantile(q) as f64 / 1000.0,
                fraction: q,
            })
            .collect()
    }
}

/// One point of a latency CDF.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct CdfPoint {
    /// Latency, milliseconds.
    pub ms: f64,
    /// Fraction of samples at or below `ms`, 0 to 1.
    pub fraction: f64,
}

/// Event counts per Unix second (for rate-over-time charts).
#[derive(Clone, Debug, Default)]
pub struct PerSecond {
    counts: BTreeMap<u64, u64>,
}

impl PerSecond {
    /// Counts one event at `unix_us` (Unix time, microseconds).
    pub fn record(&mut self, unix_us: u64) {
        *self.counts.entry(unix_us / 1_000_000).or_default() += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &PerSecond) {
        for (&s, &n) in &other.counts {
            *self.counts.entry(s).or_default() += n;
        }
    }

    /// The counts of each second from `from_unix_s` to the last second
    /// recorded, zeros included (events before `from_unix_s` are left
    /// out); empty when nothing was recorded from then on.
    pub fn series(&self, from_unix_s: u64) -> Vec<u64> {
        let Some((&last, _)) = self.counts.last_key_value() else {
            return Vec::new();
        };
        (from_unix_s..=last)
            .map(|s| self.counts.get(&s).copied().unwrap_or(0))
            .collect()
    }
}

/// Latency percentiles of one measurement, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

/// `count` per second over `window`; 0 for an empty window.
pub fn per_second(count: u64, window: Duration) -> f64 {
    let secs = window.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        count as f64 / secs
    }
}

/// `numerator / denominator`, or 0 when the denominator is 0.
pub fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator == 0.0 {
        0.0
    } else {
        numerator / denominator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within HdrHistogram's 3-significant-digit precision (0.1%).
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 0.001 + 1e-9
    }

    #[test]
    fn percentiles_of_1_to_1000_ms() {
        let mut l = Latencies::new();
        for ms in 1..=1000u64 {
            l.record(Duration::from_millis(ms));
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        assert!(close(s.p50_ms, 500.0), "{s:?}");
        assert!(close(s.p95_ms, 950.0), "{s:?}");
        assert!(close(s.p99_ms, 990.0), "{s:?}");
        assert!(close(s.max_ms, 1000.0), "{s:?}");
        assert!(close(s.mean_ms, 500.5), "{s:?}");
    }

    #[test]
    fn one_outlier_moves_max_not_median() {
        let mut l = Latencies::new();
        for _ in 0..99 {
            l.record_us(2_000);
        }
        l.record(Duration::from_secs(3));
        let s = l.summary();
        assert!(close(s.p50_ms, 2.0), "{s:?}");
        assert!(close(s.p99_ms, 2.0), "{s:?}");
        assert!(close(s.max_ms, 3000.0), "{s:?}");
    }

    #[test]
    fn merge_adds_samples() {
        let mut a = Latencies::new();
        let mut b = Latencies::new();
        for _ in 0..10 {
            a.record_us(100);
            b.record_us(300);
        }
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 20);
        assert!(close(s.mean_ms, 0.2), "{s:?}");
        assert!(close(s.max_ms, 0.3), "{s:?}");
    }

    #[test]
    fn empty_and_out_of_range() {
        assert_eq!(Latencies::new().summary(), LatencySummary::default());
        let mut l = Latencies::new();
        l.record_us(0);
        l.record(Duration::from_secs(10 * 3600));
        let s = l.summary();
        assert_eq!(s.count, 2);
        assert!(close(s.max_ms, 3_600_000.0), "{s:?}");
        assert!(s.p50_ms <= 0.001 + 1e-9, "{s:?}");
    }

    #[test]
    fn cdf_rises_to_the_maximum() {
        assert!(Latencies::new().cdf().is_empty());
        let mut l = Latencies::new();
        for ms in 1..=1000u64 {
            l.record(Duration::from_millis(ms));
        }
        let cdf = l.cdf();
        assert_eq!(cdf.len(), 120);
        assert!(
            cdf.windows(2)
                .all(|w| w[0].ms <= w[1].ms && w[0].fraction < w[1].fraction)
        );
        assert!(close(cdf[49].ms, 500.0), "{:?}", cdf[49]);
        let last = cdf.last().expect("points");
        assert_eq!(last.fraction, 1.0);
        assert!(close(last.ms, 1000.0), "{last:?}");
    }

    #[test]
    fn per_second_series_fill_gaps_and_skip_earlier_seconds() {
        let mut a = PerSecond::default();
        let mut b = PerSecond::default();
        assert!(a.series(0).is_empty());
        a.record(9_999_999);
        a.record(10_000_000);
        a.record(10_500_000);
        b.record(12_000_001);
        a.merge(&b);
        assert_eq!(a.series(10), vec![2, 0, 1]);
        assert_eq!(a.series(9), vec![1, 2, 0, 1]);
        assert!(a.series(13).is_empty());
    }

    #[test]
    fn rates() {
        assert!(close(
            per_second(10_000, Duration::from_millis(2_500)),
            4000.0
        ));
        assert_eq!(per_second(5, Duration::ZERO), 0.0);
        assert!(close(per_second(1, Duration::from_micros(100)), 10_000.0));
        assert!(close(ratio(3.0, 2.0), 1.5));
        assert_eq!(ratio(1.0, 0.0), 0.0);
    }
}
