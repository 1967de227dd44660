//! Retry policy: which responses are retried, after how long, and when to give up.
//!
//! | response                                   | action                                    |
//! |--------------------------------------------|-------------------------------------------|
//! | 2xx                                        | done                                      |
//! | 401 `authorization-token-*`                | refresh the token once, retry at once     |
//! | 429                                        | wait until `x-ratelimit-reset`, else back off |
//! | 408, 5xx but 501 and 505, timeout, connection | back off exponentially with jitter     |
//! | other 4xx (400, 403, 404, 410, 413, 415…), 501, 505 | permanent for this request       |
//!
//! Retries stop after `max_attempts` attempts or when the next wait would pass the time
//! budget. The failure is then temporary (exit 75), so a later run can finish the work.

use std::time::Duration;

use rand::Rng;

/// Action to take after one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Refresh the access token and retry without waiting.
    RefreshToken,
    /// Wait for the rate limit to reset; `None` when the response gave no reset time.
    WaitForRateLimit(Option<Duration>),
    /// Back off and retry.
    Backoff,
    /// Give up on this request.
    Fail,
}

/// Classifies a response status (and the Criteo error code of a 401).
pub fn classify(status: u16, error_code: Option<&str>) -> Action {
    match status {
        401 if error_code.is_none_or(|code| code.starts_with("authorization-token")) => {
            Action::RefreshToken
        }
        429 => Action::WaitForRateLimit(None),
        // 501 and 505 mean the server will never handle this request. Every other 5xx (500,
        // 502, 503, 504, and those of proxies and CDNs) may pass on a later try.
        501 | 505 => Action::Fail,
        408 | 500..=599 => Action::Backoff,
        _ => Action::Fail,
    }
}

/// Limits and delays of the retry loop.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Total time one request may spend waiting between attempts.
    pub max_elapsed: Duration,
    /// First backoff delay; each later one doubles, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1` after `attempt` failed attempts: exponential with
    /// "equal jitter", a random value in `[d/2, d]`, so clients that failed together do
    /// not retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let full = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let half = full / 2;
        let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter)
    }

    /// Returns the delay before retrying a 429: until the reset time plus a little jitter,
    /// or a backoff when the response has no reset time.
    pub fn rate_limit_delay(&self, attempt: u32, until_reset: Option<Duration>) -> Duration {
        match until_reset {
            Some(wait) => wait + Duration::from_millis(rand::rng().random_range(0..=250)),
            None => self.backoff(attempt).max(self.base_delay),
        }
    }
}

/// Parses `x-ratelimit-reset` (Unix epoch seconds) into a wait from `now_epoch_secs`.
pub fn until_reset(header: Option<&str>, now_epoch_secs: u64) -> Option<Duration> {
    let reset: u64 = header?.trim().parse().ok()?;
    Some(Duration::from_secs(reset.saturating_sub(now_epoch_secs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let cases = [
            (401, Some("authorization-token-expired"), Action::RefreshToken),
            (401, Some("authorization-token-invalid"), Action::RefreshToken),
            (401, None, Action::RefreshToken),
            (401, Some("authorization-issuer-invalid"), Action::Fail),
            (429, None, Action::WaitForRateLimit(None)),
            (500, None, Action::Backoff),
            (502, None, Action::Backoff),
            (503, None, Action::Backoff),
            (504, None, Action::Backoff),
            (520, None, Action::Backoff),
            (408, None, Action::Backoff),
            (501, None, Action::Fail),
            (505, None, Action::Fail),
            (409, None, Action::Fail),
            (400, Some("invalid"), Action::Fail),
            (403, Some("insufficient-advertiser-permissions"), Action::Fail),
            (404, Some("audience-invalid"), Action::Fail),
            (410, None, Action::Fail),
            (413, None, Action::Fail),
            (415, None, Action::Fail),
        ];
        for (status, code, expected) in cases {
            assert_eq!(classify(status, code), expected, "status {status}, code {code:?}");
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 6,
            max_elapsed: Duration::from_secs(60),
            base_delay: Duration::from_millis(1000),
            max_delay: Duration::from_secs(30),
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_bounds() {
        let policy = policy();
        for attempt in 1..=8 {
            let full = Duration::from_millis(1000 * (1 << (attempt - 1))).min(policy.max_delay);
            let delay = policy.backoff(attempt);
            assert!(delay >= full / 2, "attempt {attempt}: {delay:?} below {:?}", full / 2);
            assert!(delay <= full, "attempt {attempt}: {delay:?} above {full:?}");
        }
    }

    #[test]
    fn reset_header_gives_wait() {
        assert_eq!(until_reset(Some("1010"), 1000), Some(Duration::from_secs(10)));
        assert_eq!(until_reset(Some("990"), 1000), Some(Duration::ZERO));
        assert_eq!(until_reset(Some("soon"), 1000), None);
        assert_eq!(until_reset(None, 1000), None);
    }

    #[test]
    fn rate_limit_delay_follows_reset() {
        let delay = policy().rate_limit_delay(1, Some(Duration::from_secs(3)));
        assert!(delay >= Duration::from_secs(3));
        assert!(delay <= Duration::from_millis(3250));
    }
}
