//! Token-bucket rate limiting of login and registration, per client IP and
//! per account, with an injected [`Clock`].
//!
//! Buckets live in memory: a limit is per server process (Synapse behaves the
//! same per worker). The map is bounded: once it holds [`MAX_BUCKETS`] entries,
//! buckets that have refilled completely (and so carry no state) are dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::clock::Clock;
use super::config::RateLimit;

/// Most buckets kept before refilled ones are pruned.
pub const MAX_BUCKETS: usize = 100_000;

/// What is being limited; each has its own buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Login attempts, keyed by client IP.
    LoginByIp,
    /// Login attempts, keyed by target user ID.
    LoginByUser,
    /// Registration requests, keyed by client IP.
    RegisterByIp,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated_ms: u64,
}

/// A set of token buckets.
pub struct RateLimiter {
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<(Action, String), Bucket>>,
}

impl RateLimiter {
    /// An empty limiter reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        RateLimiter {
            clock,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from the bucket of (`action`, `key`) under `limit`.
    /// Errors with the milliseconds until a token is available.
    pub fn check(&self, action: Action, key: &str, limit: RateLimit) -> Result<(), u64> {
        let now = self.clock.now_ms();
        let burst = f64::from(limit.burst.max(1));
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, b| refill(b, now, limit) < burst);
        }
        let bucket = buckets.entry((action, key.to_owned())).or_insert(Bucket {
            tokens: burst,
            updated_ms: now,
        });
        bucket.tokens = refill(bucket, now, limit).min(burst);
        bucket.updated_ms = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait_s = (1.0 - bucket.tokens) / limit.per_second.max(f64::MIN_POSITIVE);
            Err((wait_s * 1000.0).ceil().min(u64::MAX as f64) as u64)
        }
    }
}

/// The bucket's tokens at `now_ms`, before capping at the burst.
fn refill(bucket: &Bucket, now_ms: u64, limit: RateLimit) -> f64 {
    let elapsed_s = now_ms.saturating_sub(bucket.updated_ms) as f64 / 1000.0;
    bucket.tokens + elapsed_s * limit.per_second
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::clock::ManualClock;

    #[test]
    fn bucket_allows_burst_then_refills_with_time() {
        let clock = ManualClock::new(1_000_000);
        let limiter = RateLimiter::new(Arc::new(clock.clone()));
        let limit = RateLimit {
            per_second: 0.5,
            burst: 2,
        };
        assert_eq!(limiter.check(Action::LoginByIp, "a", limit), Ok(()));
        assert_eq!(limiter.check(Action::LoginByIp, "a", limit), Ok(()));
        assert_eq!(limiter.check(Action::LoginByIp, "a", limit), Err(2000));
        // Another key and another action have their own buckets.
        assert_eq!(limiter.check(Action::LoginByIp, "b", limit), Ok(()));
        assert_eq!(limiter.check(Action::LoginByUser, "a", limit), Ok(()));
        clock.advance_ms(1500);
        assert_eq!(limiter.check(Action::LoginByIp, "a", limit), Err(500));
        clock.advance_ms(500);
        assert_eq!(limiter.check(Action::LoginByIp, "a", limit), Ok(()));
        // Tokens never exceed the burst, however long the wait.
        clock.advance_ms(3_600_000);
        for _ in 0..2 {
            assert_eq!(limiter.check(Action::LoginByIp, "a", limit), Ok(()));
        }
        assert!(limiter.check(Action::LoginByIp, "a", limit).is_err());
    }
}
