//! Upload rate limits: token buckets, one for the whole seeder and one per peer.
//!
//! A [`TokenBucket`] lets a caller take tokens before it has them (going into debt) and says
//! how long to wait until the debt is paid; so concurrent callers are served in the order they
//! asked, large blocks never starve, and the long-run rate is exact.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket of `rate` bytes per second holding at most `burst` bytes. Pure: the caller
/// passes the time in.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` bytes per second (at least 1) and holding one
    /// second's worth of tokens, but never less than `min_burst`.
    pub(crate) fn new(rate: u64, min_burst: u64, now: Instant) -> Self {
        let rate = rate.max(1) as f64;
        let burst = rate.max(min_burst as f64);
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
    }

    /// Takes `n` tokens at `now` and returns how long the caller must wait before using them
    /// (zero when the bucket had enough).
    pub(crate) fn reserve(&mut self, n: u64, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// A [`TokenBucket`] shared between tasks (the seeder's upload limits, and the webseed's).
#[derive(Debug)]
pub struct RateLimiter {
    bucket: Mutex<TokenBucket>,
}

impl RateLimiter {
    /// A limiter of `rate` bytes per second, or `None` for no limit (`None` or 0).
    pub fn new(rate: Option<u64>) -> Option<Self> {
        let rate = rate.filter(|r| *r > 0)?;
        Some(Self {
            bucket: Mutex::new(TokenBucket::new(
                rate,
                u64::from(seedbucket_wire::peer::MAX_BLOCK_LEN),
                tokio::time::Instant::now().into_std(),
            )),
        })
    }

    /// Waits until `n` bytes may be sent.
    pub async fn acquire(&self, n: u64) {
        let wait = match self.bucket.lock() {
            // Tokio's clock, so tests with paused time see their own time.
            Ok(mut b) => b.reserve(n, tokio::time::Instant::now().into_std()),
            // A poisoned lock means a panic elsewhere; do not limit rather than fail.
            Err(_) => Duration::ZERO,
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_bucket_then_debt() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 0, t0);
        assert_eq!(b.reserve(600, t0), Duration::ZERO);
        assert_eq!(b.reserve(400, t0), Duration::ZERO);
        // Empty: 500 more bytes need half a second.
        assert_eq!(b.reserve(500, t0), Duration::from_millis(500));
        // A second caller queues behind the first.
        assert_eq!(b.reserve(500, t0), Duration::from_secs(1));
        // Time pays the debt back.
        assert_eq!(b.reserve(0, t0 + Duration::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn refill_is_capped_by_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 0, t0);
        assert_eq!(b.reserve(100, t0), Duration::ZERO);
        // An hour idle refills one second's worth only.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(b.reserve(100, later), Duration::ZERO);
        assert_eq!(b.reserve(50, later), Duration::from_millis(500));
    }

    #[test]
    fn min_burst_admits_a_whole_block() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 16384, t0);
        assert_eq!(b.reserve(16384, t0), Duration::ZERO);
        let wait = b.reserve(10, t0);
        assert_eq!(wait, Duration::from_secs(1));
    }

    #[test]
    fn long_run_rate_is_exact() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(16384, 16384, t0);
        let mut now = t0;
        for _ in 0..100 {
            now += b.reserve(16384, now);
        }
        // 100 blocks at one block per second, the first one free.
        let secs = now.duration_since(t0).as_secs_f64();
        assert!((secs - 99.0).abs() < 1e-6, "{secs}");
    }

    #[test]
    fn zero_or_none_is_unlimited() {
        assert!(RateLimiter::new(None).is_none());
        assert!(RateLimiter::new(Some(0)).is_none());
        assert!(RateLimiter::new(Some(1)).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_sleeps() {
        let l = RateLimiter::new(Some(16384)).unwrap();
        let start = tokio::time::Instant::now();
        l.acquire(16384).await;
        l.acquire(16384).await;
        l.acquire(16384).await;
        let waited = start.elapsed();
        // One full bucket, then two blocks at one block per second.
        assert!(
            waited >= Duration::from_millis(1990) && waited <= Duration::from_millis(2010),
            "{waited:?}"
        );
    }
}
