//! The bandwidth cap: a token bucket measured in bytes, free of I/O.
//!
//! It runs on debt: taking more than is in the bucket leaves it negative and returns how long
//! to wait before sending, so each byte is paid for exactly once however the writes are cut.

use std::time::{Duration, Instant};

use crate::limits::{BANDWIDTH_BURST, SEGMENT_BYTES};

#[derive(Debug)]
pub struct TokenBucket {
    /// Rate the bucket was last filled at, bytes per second; 0 when uncapped.
    rate: u64,
    tokens: f64,
    last: Instant,
}

/// Most bytes to send in one go at `rate`: the bucket's depth, at least one segment.
pub fn burst_bytes(rate: u64) -> usize {
    let burst = (rate as f64 * BANDWIDTH_BURST.as_secs_f64()) as u64;
    burst.max(SEGMENT_BYTES) as usize
}

impl TokenBucket {
    pub fn new(now: Instant) -> Self {
        Self {
            rate: 0,
            tokens: 0.0,
            last: now,
        }
    }

    /// Takes `bytes` at `now` under the cap `rate` (0 = none) and returns how long to wait
    /// before sending them. A changed rate applies from now on; a bucket that was uncapped
    /// starts full.
    pub fn take(&mut self, bytes: usize, rate: u64, now: Instant) -> Duration {
        if rate == 0 {
            self.rate = 0;
            self.last = now;
            return Duration::ZERO;
        }
        let depth = burst_bytes(rate) as f64;
        if self.rate == 0 {
            self.tokens = depth;
        } else {
            let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
            self.tokens += elapsed * self.rate as f64;
        }
        self.rate = rate;
        self.tokens = self.tokens.min(depth) - bytes as f64;
        self.last = now;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncapped_never_waits() {
        let now = Instant::now();
        let mut b = TokenBucket::new(now);
        assert_eq!(b.take(1 << 30, 0, now), Duration::ZERO);
    }

    #[test]
    fn capped_pays_for_every_byte_beyond_the_burst() {
        let rate = 1_000_000;
        let now = Instant::now();
        let mut b = TokenBucket::new(now);
        let step = burst_bytes(rate);
        // Send 1 MB back to back, waiting exactly as told: the clock advances only by waits.
        let mut clock = now;
        let mut sent = 0;
        while sent < 1_000_000 {
            clock += b.take(step, rate, clock);
            sent += step;
        }
        let took = (clock - now).as_secs_f64();
        let expected = (sent - step) as f64 / rate as f64;
        assert!((took - expected).abs() < 1e-3, "took {took}, expected {expected}");
    }

    #[test]
    fn idle_time_refills_up_to_the_depth_only() {
        let rate = 100_000;
        let now = Instant::now();
        let mut b = TokenBucket::new(now);
        let depth = burst_bytes(rate);
        assert_eq!(b.take(depth, rate, now), Duration::ZERO);
        let later = now + Duration::from_secs(3600);
        assert_eq!(b.take(depth, rate, later), Duration::ZERO);
        assert!(b.take(1000, rate, later) > Duration::ZERO);
    }
}
