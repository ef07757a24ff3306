//! The measured server's memory and CPU, read from `/proc/<pid>/status`
//! (`VmRSS`, kB) and `/proc/<pid>/stat` (fields 14 and 15, `utime` and
//! `stime`, in clock ticks of `USER_HZ` = 100 per second, fixed by the Linux
//! ABI). Linux only; elsewhere, or for a PID that is gone, readings are
//! `None` and the report leaves the server section out.
//!
//! A [`Sampler`] reads RSS every 100 ms during a phase and keeps the peak;
//! CPU is the tick difference between the phase's start and end, so it
//! counts every thread of the server process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Clock ticks per second of `/proc/<pid>/stat` (Linux `USER_HZ`).
const TICKS_PER_SECOND: f64 = 100.0;

/// How often RSS is sampled during a phase.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// One reading of a process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// User plus system CPU time in clock ticks.
    pub cpu_ticks: u64,
}

/// Reads `/proc/<pid>`; `None` when it cannot be read or parsed.
pub fn read(pid: u32) -> Option<Reading> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(Reading {
        rss_bytes: parse_rss_bytes(&status)?,
        cpu_ticks: parse_cpu_ticks(&stat)?,
    })
}

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
pub fn parse_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in clock ticks. The
/// command name (field 2) may hold spaces and parentheses, so fields are
/// counted after its last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is index 0, so utime (14) is index 11.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The server's use of memory and CPU over one phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ServerUsage {
    /// RSS at the start of the phase, bytes.
    pub rss_start_bytes: u64,
    /// RSS at the end of the phase, bytes.
    pub rss_end_bytes: u64,
    /// Highest RSS sampled during the phase, bytes.
    pub rss_peak_bytes: u64,
    /// CPU time the server used during the phase, seconds.
    pub cpu_secs: f64,
    /// `cpu_secs` over the phase's wall time, percent of one core.
    pub cpu_percent: f64,
}

/// Samples a process during one phase.
pub struct Sampler {
    pid: u32,
    start: Reading,
    started: Instant,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling `pid`; `None` when it cannot be read.
    pub fn start(pid: u32) -> Option<Sampler> {
        let start = read(pid)?;
        let peak = Arc::new(AtomicU64::new(start.rss_bytes));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (peak, stop) = (peak.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(SAMPLE_EVERY).await;
                    if let Some(r) = read(pid) {
                        peak.fetch_max(r.rss_bytes, Ordering::Relaxed);
                    }
                }
            }
        });
        Some(Sampler {
            pid,
            start,
            started: Instant::now(),
            peak,
            stop,
            task,
        })
    }

    /// Stops sampling and summarises the phase; `None` if the process can
    /// no longer be read.
    pub async fn finish(self) -> Option<ServerUsage> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let end = read(self.pid)?;
        let wall = self.started.elapsed();
        let cpu_secs = end.cpu_ticks.saturating_sub(self.start.cpu_ticks) as f64 / TICKS_PER_SECOND;
        Some(ServerUsage {
            rss_start_bytes: self.start.rss_bytes,
            rss_end_bytes: end.rss_bytes,
            rss_peak_bytes: self.peak.load(Ordering::Relaxed).max(end.rss_bytes),
            cpu_secs,
            cpu_percent: 100.0 * super::stats::ratio(cpu_secs, wall.as_secs_f64()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status = "Name:\tmyelin\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_rss_bytes(status), Some(12345 * 1024));
        let stat =
            "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 4 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_rss_bytes("Name: x\n"), None);
        assert_eq!(parse_cpu_ticks("1 (x) S 1"), None);
    }

    #[test]
    fn reads_this_process() {
        if cfg!(target_os = "linux") {
            let r = read(std::process::id()).expect("own /proc entry");
            assert!(r.rss_bytes > 0);
        }
    }
}
