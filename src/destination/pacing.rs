//! Client-side pacing: at most N requests in any sliding window of one minute.
//!
//! Criteo allows 250 calls per minute per application. A sliding window (rather than a
//! token bucket, which allows a second full burst right after the first) keeps every
//! 60-second window under the limit, whatever window the server counts in.
//!
//! The window is a second longer than a minute. The client records when a request leaves,
//! but the server counts it when it arrives, and `x-ratelimit-reset` has whole seconds.
//! Without the extra second, a burst of N that arrived late and the next burst, which
//! arrived early, could land in one server window.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// One minute, plus a second for the difference between when a request leaves and when
/// the server counts it.
const WINDOW: Duration = Duration::from_secs(61);

/// Shared by all requests of one client.
#[derive(Debug)]
pub struct Pacer {
    per_minute: usize,
    sent: Mutex<VecDeque<Instant>>,
}

impl Pacer {
    pub fn new(per_minute: u32) -> Self {
        Pacer {
            per_minute: per_minute.max(1) as usize,
            sent: Mutex::new(VecDeque::new()),
        }
    }

    /// Waits until one more request fits in the window, then records it.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut sent = self.sent.lock().await;
                let now = Instant::now();
                while sent.front().is_some_and(|first| now.duration_since(*first) >= WINDOW) {
                    sent.pop_front();
                }
                if sent.len() < self.per_minute {
                    sent.push_back(now);
                    return;
                }
                WINDOW - now.duration_since(*sent.front().expect("window is full"))
            };
            tracing::debug!(wait_ms = wait.as_millis() as u64, "pacing requests under the per-minute limit");
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn window_admits_limit_then_waits() {
        let pacer = Pacer::new(3);
        let start = Instant::now();
        for _ in 0..3 {
            pacer.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        pacer.acquire().await;
        assert!(start.elapsed() >= WINDOW, "fourth request came after {:?}", start.elapsed());
    }
}
