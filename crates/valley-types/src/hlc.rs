//! Hybrid logical clock: physical nanoseconds since the Unix epoch, nudged forward so that
//! every timestamp one hub issues is strictly greater than the last it issued or observed.
//!
//! Object versions are ordered by `(Hlc, origin hub)`; this keeps that order consistent with
//! causality across hubs whose wall clocks drift, while staying close to real time so that a
//! timestamp still reads as a date.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A hybrid-logical-clock timestamp: nanoseconds since the Unix epoch, made unique per hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hlc(pub u64);

impl Hlc {
    /// Nanoseconds since the Unix epoch that this timestamp reads as.
    #[must_use]
    pub fn unix_nanos(self) -> u64 {
        self.0
    }
}

/// Issues strictly increasing [`Hlc`] timestamps; cheap to share between threads.
#[derive(Debug, Default)]
pub struct HlcClock {
    last: AtomicU64,
}

impl HlcClock {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The next timestamp: the wall clock, or one past the last issued or observed one.
    pub fn now(&self) -> Hlc {
        let wall = wall_nanos();
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = wall.max(last + 1);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Hlc(next),
                Err(seen) => last = seen,
            }
        }
    }

    /// Records a timestamp seen from elsewhere (a peer, or the store at start-up), so later
    /// timestamps sort after it.
    pub fn observe(&self, seen: Hlc) {
        self.last.fetch_max(seen.0, Ordering::AcqRel);
    }
}

/// Farthest a timestamp from elsewhere may be ahead of this hub's wall clock. A hub's clock runs
/// at most as far ahead as the fastest wall clock of the network, and peers' clocks are held
/// within five minutes of each other (signed calls outside that are refused), so a timestamp
/// ten minutes ahead is forged or from a broken clock: taken, it would win last-writer-wins
/// against every honest write for as long as it is ahead.
pub const AHEAD_OF_WALL_CLOCK_MAX_NANOS: u64 = 600 * 1_000_000_000;

/// Whether a timestamp received from elsewhere is plausible: not too far ahead of our clock.
#[must_use]
pub fn plausible(seen: u64) -> bool {
    seen <= wall_nanos().saturating_add(AHEAD_OF_WALL_CLOCK_MAX_NANOS)
}

fn wall_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_strictly_increase_even_when_the_wall_clock_does_not() {
        let clock = HlcClock::new();
        let far_future = Hlc(wall_nanos() + 3_600_000_000_000);
        clock.observe(far_future);
        let a = clock.now();
        let b = clock.now();
        assert!(a > far_future);
        assert!(b > a);
    }

    #[test]
    fn timestamps_are_unique_across_threads() {
        let clock = std::sync::Arc::new(HlcClock::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let clock = clock.clone();
                std::thread::spawn(move || (0..10_000).map(|_| clock.now()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<Hlc> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count);
    }
}
