//! Per-client token bucket behind the 429 responses and the `x-ratelimit-*` headers.
//!
//! Each client id has a bucket of `per_minute` tokens that refills continuously at
//! `per_minute / 60` tokens per second. A request takes one token or, if none is left, gets
//! 429. The headers follow Criteo's rate-limit page: `x-ratelimit-limit` is the bucket size,
//! `x-ratelimit-remaining` the whole tokens left, and `x-ratelimit-reset` the epoch second
//! at which a request will be accepted again. Criteo sends no `Retry-After`, so neither does
//! the sandbox.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

/// Result of taking a token, with the values of the rate-limit headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RateLimitDecision {
    pub(crate) allowed: bool,
    pub(crate) limit: u32,
    pub(crate) remaining: u32,
    pub(crate) reset_epoch_secs: u64,
}

impl RateLimitDecision {
    pub(crate) fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert(
            "x-ratelimit-reset",
            HeaderValue::from(self.reset_epoch_secs),
        );
    }
}

/// Token buckets of all clients. A limit of 0 allows everything and sends no headers.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_minute: u32,
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    pub(crate) fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute,
            buckets: HashMap::new(),
        }
    }

    /// Takes one token from the client's bucket, or returns `None` when the limit is off.
    pub(crate) fn acquire(
        &mut self,
        client_id: &str,
        now: Instant,
        wall_clock: SystemTime,
    ) -> Option<RateLimitDecision> {
        if self.per_minute == 0 {
            return None;
        }
        let capacity = f64::from(self.per_minute);
        let tokens_per_sec = capacity / 60.0;
        let bucket = self.buckets.entry(client_id.to_owned()).or_insert(Bucket {
            tokens: capacity,
            refilled_at: now,
        });

        let elapsed = now
            .saturating_duration_since(bucket.refilled_at)
            .as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * tokens_per_sec).min(capacity);
        bucket.refilled_at = now;

        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        let wait_secs = if bucket.tokens >= 1.0 {
            0.0
        } else {
            (1.0 - bucket.tokens) / tokens_per_sec
        };
        let reset_at = wall_clock + Duration::from_secs_f64(wait_secs);

        Some(RateLimitDecision {
            allowed,
            limit: self.per_minute,
            remaining: bucket.tokens.floor() as u32,
            reset_epoch_secs: epoch_secs_rounded_up(reset_at),
        })
    }
}

/// Returns the first whole epoch second at or after `time`.
pub(crate) fn epoch_secs_rounded_up(time: SystemTime) -> u64 {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    since_epoch.as_secs() + u64::from(since_epoch.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn bucket_empties_then_rejects() {
        let mut limiter = RateLimiter::new(3);
        let now = Instant::now();

        let remaining: Vec<u32> = (0..3)
            .map(|_| limiter.acquire("c", now, epoch(1000)).unwrap())
            .inspect(|decision| assert!(decision.allowed))
            .map(|decision| decision.remaining)
            .collect();
        let rejected = limiter.acquire("c", now, epoch(1000)).unwrap();

        assert_eq!(remaining, [2, 1, 0]);
        assert!(!rejected.allowed);
        assert_eq!(rejected.remaining, 0);
        // 3 per minute refill one token in 20 seconds.
        assert_eq!(rejected.reset_epoch_secs, 1020);
    }

    #[test]
    fn bucket_refills_over_time() {
        let mut limiter = RateLimiter::new(60);
        let start = Instant::now();
        for _ in 0..60 {
            limiter.acquire("c", start, epoch(0));
        }

        let too_soon = limiter.acquire("c", start + Duration::from_millis(500), epoch(0));
        let later = limiter.acquire("c", start + Duration::from_millis(1600), epoch(0));

        assert!(!too_soon.unwrap().allowed);
        assert!(later.unwrap().allowed);
    }

    #[test]
    fn buckets_are_per_client() {
        let mut limiter = RateLimiter::new(1);
        let now = Instant::now();

        assert!(limiter.acquire("a", now, epoch(0)).unwrap().allowed);
        assert!(limiter.acquire("b", now, epoch(0)).unwrap().allowed);
        assert!(!limiter.acquire("a", now, epoch(0)).unwrap().allowed);
    }

    #[test]
    fn zero_limit_disables_bucket() {
        let mut limiter = RateLimiter::new(0);

        assert_eq!(limiter.acquire("c", Instant::now(), epoch(0)), None);
    }
}
