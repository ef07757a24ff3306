//! Latency histograms and rate arithmetic.
//!
//! Latencies are recorded in microseconds into an HdrHistogram (3
//! significant digits, 1 µs to 1 hour; larger values are clamped to the top)
//! and reported in milliseconds. Histograms of concurrent tasks are merged
//! with [`Latencies::merge`]. Rates divide a count by a wall-clock window
//! and are 0 for an empty window, never infinite or NaN, so the JSON line
//! always holds numbers.

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

/// Latency percentiles of one measurement, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
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
