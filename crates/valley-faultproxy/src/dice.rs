//! The seeded decision generator: every random fault decision the proxy makes comes from here.
//!
//! Each stream of decisions has its own [`StdRng`], seeded from the run's seed, the
//! connection's number (in accept order) and what the stream is for (one direction of the
//! byte stream, or the connection's cut plan). Decisions are tied to *byte offsets*, not to
//! time or to how the kernel happened to chunk the reads: segment `n` of a direction covers
//! bytes `n * SEGMENT_BYTES ..`, and its fate is the `n`-th draw. So one seed gives the same
//! stalls at the same offsets, the same flipped bits, and the same cut points on every run;
//! only wall-clock timing differs.
//!
//! Each segment consumes the same number of draws whatever the faults, so the rolls for
//! segment `n` are fixed by the seed alone and the faults only decide what a roll means:
//! changing faults mid-run does not shift the sequence for later segments.
//!
//! Replay holds for one build: `StdRng`'s algorithm may change between `rand` releases.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::faults::Faults;
use crate::limits::SEGMENT_BYTES;

/// Which way bytes flow through a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the connecting client to the target.
    Upstream,
    /// From the target back to the client.
    Downstream,
}

impl Direction {
    fn stream_tag(self) -> u8 {
        match self {
            Direction::Upstream => 0,
            Direction::Downstream => 1,
        }
    }
}

/// Tag of the per-connection stream that draws the cut plan.
const CUT_PLAN_TAG: u8 = 2;

fn stream_rng(seed: u64, connection: u64, tag: u8) -> StdRng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&connection.to_le_bytes());
    key[16] = tag;
    StdRng::from_seed(key)
}

/// What happens to one segment of a direction's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFate {
    /// Extra delay on top of the fixed latency for the bytes of this segment.
    pub jitter: Duration,
    /// The stream holds here for this long, as after a lost packet.
    pub stall: Option<Duration>,
    /// Index of the bit flipped in this segment, `0..SEGMENT_BYTES * 8`.
    pub corrupt_bit: Option<u64>,
}

/// The decisions for one direction of one connection, one segment at a time.
#[derive(Debug, Clone)]
pub struct StreamDice {
    rng: StdRng,
}

impl StreamDice {
    pub fn new(seed: u64, connection: u64, direction: Direction) -> Self {
        Self {
            rng: stream_rng(seed, connection, direction.stream_tag()),
        }
    }

    /// Draws the fate of the next segment under `faults`.
    pub fn next_segment(&mut self, faults: &Faults) -> SegmentFate {
        // Always five draws, in this order, whatever the faults (see the module doc).
        let jitter_u: f64 = self.rng.random();
        let stall_roll: f64 = self.rng.random();
        let stall_u: f64 = self.rng.random();
        let corrupt_roll: f64 = self.rng.random();
        let bit = self.rng.next_u64() % (SEGMENT_BYTES * 8);

        let jitter = Duration::from_secs_f64(faults.jitter_ms as f64 * jitter_u / 1000.0);
        let stall = (stall_roll < faults.stall_probability).then(|| {
            let span = faults.stall_ms_max.saturating_sub(faults.stall_ms_min) as f64;
            Duration::from_secs_f64((faults.stall_ms_min as f64 + span * stall_u) / 1000.0)
        });
        let corrupt_bit = (corrupt_roll < faults.corrupt_probability).then_some(bit);
        SegmentFate {
            jitter,
            stall,
            corrupt_bit,
        }
    }
}

/// When a connection is to be cut, if at all. Whichever trigger comes first cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutPlan {
    /// Cut once this many bytes have been delivered, both directions together.
    pub after_bytes: Option<u64>,
    /// Cut this long after the connection was accepted.
    pub after: Option<Duration>,
}

/// Draws connection `connection`'s cut plan under `faults`: `None` if it is not to be cut.
pub fn cut_plan(seed: u64, connection: u64, faults: &Faults) -> Option<CutPlan> {
    let mut rng = stream_rng(seed, connection, CUT_PLAN_TAG);
    let roll: f64 = rng.random();
    let bytes_u: f64 = rng.random();
    let ms_u: f64 = rng.random();
    if roll >= faults.cut_probability {
        return None;
    }
    let after_bytes =
        (faults.cut_after_bytes_max > 0).then(|| (faults.cut_after_bytes_max as f64 * bytes_u).round() as u64);
    let after =
        (faults.cut_after_ms_max > 0).then(|| Duration::from_secs_f64(faults.cut_after_ms_max as f64 * ms_u / 1000.0));
    Some(CutPlan { after_bytes, after })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy() -> Faults {
        Faults {
            jitter_ms: 40,
            stall_probability: 0.3,
            corrupt_probability: 0.3,
            cut_probability: 0.5,
            cut_after_bytes_max: 1 << 20,
            cut_after_ms_max: 10_000,
            ..Faults::default()
        }
    }

    fn fates(seed: u64, connection: u64, direction: Direction, n: usize, faults: &Faults) -> Vec<SegmentFate> {
        let mut dice = StreamDice::new(seed, connection, direction);
        (0..n).map(|_| dice.next_segment(faults)).collect()
    }

    #[test]
    fn same_seed_same_decisions() {
        let f = busy();
        assert_eq!(
            fates(42, 3, Direction::Upstream, 10_000, &f),
            fates(42, 3, Direction::Upstream, 10_000, &f)
        );
        let plans = |seed| (0..1000).map(|c| cut_plan(seed, c, &f)).collect::<Vec<_>>();
        assert_eq!(plans(42), plans(42));
    }

    #[test]
    fn seed_connection_and_direction_each_change_the_decisions() {
        let f = busy();
        let base = fates(42, 3, Direction::Upstream, 1000, &f);
        assert_ne!(base, fates(43, 3, Direction::Upstream, 1000, &f));
        assert_ne!(base, fates(42, 4, Direction::Upstream, 1000, &f));
        assert_ne!(base, fates(42, 3, Direction::Downstream, 1000, &f));
    }

    #[test]
    fn probabilities_are_respected() {
        let f = busy();
        let all = fates(7, 0, Direction::Upstream, 20_000, &f);
        let stalls = all.iter().filter(|s| s.stall.is_some()).count() as f64 / all.len() as f64;
        let flips = all.iter().filter(|s| s.corrupt_bit.is_some()).count() as f64 / all.len() as f64;
        assert!((0.27..0.33).contains(&stalls), "stall rate {stalls}");
        assert!((0.27..0.33).contains(&flips), "corrupt rate {flips}");
        for s in &all {
            assert!(s.jitter <= Duration::from_millis(40));
            if let Some(d) = s.stall {
                assert!(
                    d >= Duration::from_millis(200) && d <= Duration::from_millis(1000),
                    "{d:?}"
                );
            }
            if let Some(bit) = s.corrupt_bit {
                assert!(bit < SEGMENT_BYTES * 8);
            }
        }
        let quiet = Faults::default();
        assert!(fates(7, 0, Direction::Upstream, 1000, &quiet).iter().all(|s| *s
            == SegmentFate {
                jitter: Duration::ZERO,
                stall: None,
                corrupt_bit: None
            }));
        assert!((0..1000).all(|c| cut_plan(7, c, &quiet).is_none()));
        let always = Faults {
            cut_probability: 1.0,
            ..busy()
        };
        assert!((0..1000).all(|c| cut_plan(7, c, &always).is_some()));
    }

    #[test]
    fn rolls_do_not_shift_when_faults_change() {
        // Segment n's rolls are fixed by the seed: switching faults on at segment 500 gives
        // segments 500.. the same fates as a run that had them on from the start.
        let on = busy();
        let off = Faults::default();
        let mut switched = StreamDice::new(9, 1, Direction::Downstream);
        for _ in 0..500 {
            switched.next_segment(&off);
        }
        let tail: Vec<_> = (0..500).map(|_| switched.next_segment(&on)).collect();
        assert_eq!(tail, fates(9, 1, Direction::Downstream, 1000, &on)[500..]);
    }
}
