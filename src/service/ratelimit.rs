//! Token-bucket rate limiting of login and registration, per client IP and
//! per account, with an injected [`Clock`].
//!
//! Most actions take their token up front ([`RateLimiter::check`]).
//! Registration only looks at its bucket up front ([`RateLimiter::peek`]) and
//! pays once an account exists ([`RateLimiter::charge`]), as Synapse does, so
//! the user-interactive round trips before it cost nothing. A charge may
//! leave a bucket below zero (concurrent registrations that all passed the
//! look); the debt is refilled before the next one passes.
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
    /// Registrations (accounts created), keyed by client IP.
    RegisterByIp,
    /// Username availability checks, keyed by client IP.
    AvailabilityByIp,
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
        self.with_bucket(action, key, limit, |bucket| {
            let available = wait_ms(bucket, limit);
            if available.is_ok() {
                bucket.tokens -= 1.0;
            }
            available
        })
    }

    /// Whether the bucket of (`action`, `key`) holds a token under `limit`,
    /// without taking it. Errors with the milliseconds until it will.
    pub fn peek(&self, action: Action, key: &str, limit: RateLimit) -> Result<(), u64> {
        self.with_bucket(action, key, limit, |bucket| wait_ms(bucket, limit))
    }

    /// Takes one token from the bucket of (`action`, `key`) for an action
    /// already done, even if that leaves the bucket below zero.
    pub fn charge(&self, action: Action, key: &str, limit: RateLimit) {
        self.with_bucket(action, key, limit, |bucket| bucket.tokens -= 1.0);
    }

    /// Runs `f` on the bucket of (`action`, `key`), refilled up to now.
    fn with_bucket<T>(
        &self,
        action: Action,
        key: &str,
        limit: RateLimit,
        f: impl FnOnce(&mut Bucket) -> T,
    ) -> T {
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
        f(bucket)
    }
}

/// `Ok` if `bucket` holds a whole token, else the milliseconds until it will.
fn wait_ms(bucket: &Bucket, limit: RateLimit) -> Result<(), u64> {
    if bucket.tokens >= 1.0 {
        Ok(())
    } else {
        let wait_s = (1.0 - bucket.tokens) / limit.per_second.max(f64::MIN_POSITIVE);
        Err((wait_s * 1000.0).ceil().min(u64::MAX as f64) as u64)
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

    #[test]
    fn peek_takes_nothing_and_charge_may_go_into_debt() {
        let clock = ManualClock::new(1_000_000);
        let limiter = RateLimiter::new(Arc::new(clock.clone()));
        let limit = RateLimit {
            per_second: 0.5,
            burst: 2,
        };
        let reg = Action::RegisterByIp;
        for _ in 0..5 {
            assert_eq!(limiter.peek(reg, "a", limit), Ok(()));
        }
        limiter.charge(reg, "a", limit);
        assert_eq!(limiter.peek(reg, "a", limit), Ok(()));
        limiter.charge(reg, "a", limit);
        assert_eq!(limiter.peek(reg, "a", limit), Err(2000));
        // Two that passed the look at once both pay: a token of debt.
        limiter.charge(reg, "a", limit);
        assert_eq!(limiter.peek(reg, "a", limit), Err(4000));
        clock.advance_ms(4000);
        assert_eq!(limiter.peek(reg, "a", limit), Ok(()));
    }
}
