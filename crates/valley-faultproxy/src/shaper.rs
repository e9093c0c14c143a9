//! The delay line of one direction, free of I/O: turns chunks as they arrive into pieces with
//! the moment each may be released.
//!
//! A piece is released at `arrival + latency + jitter`, but never before the piece ahead of
//! it, so bytes are never reordered. A stall holds the stream where it begins for the stall's
//! length on top of that, and everything behind it waits: the head-of-line blocking TCP shows
//! while it waits out a retransmission timeout. Stalls add up along the stream, so frequent
//! ones collapse throughput the way repeated loss does (2 % of 1448-byte segments stalling
//! 200 ms–1 s gives about 120 KB/s, close to what the Mathis formula predicts for 2 % loss at
//! 100 ms RTT). Corruption flips bits in place.
//! Fault decisions come from [`StreamDice`], one draw per segment as its first byte arrives,
//! so how the kernel chunked the reads changes only where pieces are split, not which bytes
//! are stalled or flipped.

use std::time::{Duration, Instant};

use crate::dice::StreamDice;
use crate::faults::Faults;
use crate::limits::SEGMENT_BYTES;

/// Bytes cleared to leave the delay line at `release_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub data: Vec<u8>,
    pub release_at: Instant,
}

/// What shaping one chunk did, for the stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shaped {
    pub stalls: u64,
    pub corruptions: u64,
}

#[derive(Debug)]
pub struct Shaper {
    dice: StreamDice,
    /// Stream offset of the next byte to arrive.
    offset: u64,
    /// Jitter of the segment the next byte belongs to (if it does not start a new one).
    jitter: Duration,
    /// Bit flips drawn for bytes not yet arrived: (stream offset, mask).
    pending_flips: Vec<(u64, u8)>,
    /// When the last piece is released; no later piece goes before it.
    last_release: Option<Instant>,
}

impl Shaper {
    pub fn new(dice: StreamDice) -> Self {
        Self {
            dice,
            offset: 0,
            jitter: Duration::ZERO,
            pending_flips: Vec::new(),
            last_release: None,
        }
    }

    /// Bytes shaped so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Shapes `data`, which arrived at `now`, under `faults`, appending its pieces to `out`.
    pub fn shape(&mut self, mut data: Vec<u8>, now: Instant, faults: &Faults, out: &mut Vec<Piece>) -> Shaped {
        let start = self.offset;
        let end = start + data.len() as u64;
        self.offset = end;
        let latency = Duration::from_millis(faults.latency_ms);
        let mut shaped = Shaped::default();

        // Pieces as (first byte within `data`, jitter, stall); split only where a stall begins.
        let mut pieces: Vec<(usize, Duration, Duration)> = vec![(0, self.jitter, Duration::ZERO)];
        let mut segment = start.div_ceil(SEGMENT_BYTES);
        while segment * SEGMENT_BYTES < end {
            let fate = self.dice.next_segment(faults);
            let seg_start = segment * SEGMENT_BYTES;
            let at = (seg_start - start) as usize;
            if let Some(bit) = fate.corrupt_bit {
                self.pending_flips.push((seg_start + bit / 8, 1 << (bit % 8)));
            }
            let current = pieces.last_mut().expect("pieces starts non-empty");
            if let Some(stall) = fate.stall {
                shaped.stalls += 1;
                if at > current.0 {
                    pieces.push((at, fate.jitter, stall));
                } else {
                    *current = (at, fate.jitter, current.2 + stall);
                }
            } else if at == current.0 {
                current.1 = fate.jitter;
            }
            self.jitter = fate.jitter;
            segment += 1;
        }

        self.pending_flips.retain(|&(at, mask)| {
            if (start..end).contains(&at) {
                data[(at - start) as usize] ^= mask;
                shaped.corruptions += 1;
                false
            } else {
                true
            }
        });

        let mut tail = data;
        let mut split: Vec<Vec<u8>> = Vec::with_capacity(pieces.len());
        for &(from, _, _) in pieces.iter().skip(1).rev() {
            split.push(tail.split_off(from));
        }
        split.push(tail);
        split.reverse();
        for (bytes, &(_, jitter, stall)) in split.into_iter().zip(&pieces) {
            if bytes.is_empty() {
                continue;
            }
            let own = now + latency + jitter;
            let release_at = self.last_release.map_or(own, |last| last.max(own)) + stall;
            self.last_release = Some(release_at);
            out.push(Piece {
                data: bytes,
                release_at,
            });
        }
        shaped
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::dice::Direction;

    fn payload(len: usize) -> Vec<u8> {
        let mut rng = StdRng::seed_from_u64(1);
        (0..len).map(|_| rng.random()).collect()
    }

    /// Shapes `data` in chunks of the given sizes (cycled), all arriving at `now`.
    fn run(data: &[u8], sizes: &[usize], faults: &Faults, now: Instant) -> (Vec<Piece>, Shaped) {
        let mut shaper = Shaper::new(StreamDice::new(5, 0, Direction::Upstream));
        let mut out = Vec::new();
        let mut total = Shaped::default();
        let mut rest = data;
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, after) = rest.split_at(size.min(rest.len()));
            rest = after;
            let s = shaper.shape(chunk.to_vec(), now, faults, &mut out);
            total.stalls += s.stalls;
            total.corruptions += s.corruptions;
        }
        (out, total)
    }

    #[test]
    fn no_faults_passes_bytes_unchanged_and_on_time() {
        let data = payload(100_000);
        let now = Instant::now();
        let (pieces, shaped) = run(&data, &[4096, 1, 777], &Faults::default(), now);
        assert_eq!(shaped, Shaped::default());
        assert!(pieces.iter().all(|p| p.release_at == now));
        assert_eq!(pieces.concat_data(), data);
    }

    #[test]
    fn chunking_does_not_change_the_decisions() {
        let faults = Faults {
            stall_probability: 0.05,
            corrupt_probability: 0.2,
            ..Faults::default()
        };
        let data = payload(1 << 20);
        let now = Instant::now();
        let (a, sa) = run(&data, &[16 * 1024], &faults, now);
        let (b, sb) = run(&data, &[1, 999, 4096, 65_536, 7], &faults, now);
        assert_eq!(sa, sb);
        assert!(sa.stalls > 0 && sa.corruptions > 0, "{sa:?}");
        assert_eq!(a.concat_data(), b.concat_data());
        assert_ne!(a.concat_data(), data);
        // Stalls are cumulative (head-of-line), so compare where each stall begins.
        let steps = |pieces: &[Piece]| {
            let mut steps = Vec::new();
            let (mut at, mut last) = (0u64, now);
            for p in pieces {
                if p.release_at > last {
                    steps.push((at, p.release_at - now));
                    last = p.release_at;
                }
                at += p.data.len() as u64;
            }
            steps
        };
        assert_eq!(steps(&a), steps(&b));
        assert_eq!(steps(&a).len() as u64, sa.stalls);
    }

    #[test]
    fn corruption_flips_one_bit_per_segment() {
        let faults = Faults {
            corrupt_probability: 1.0,
            ..Faults::default()
        };
        let data = payload(SEGMENT_BYTES as usize * 50);
        let (pieces, shaped) = run(&data, &[3000], &faults, Instant::now());
        assert_eq!(shaped.corruptions, 50);
        let out = pieces.concat_data();
        for (seg, (a, b)) in data
            .chunks(SEGMENT_BYTES as usize)
            .zip(out.chunks(SEGMENT_BYTES as usize))
            .enumerate()
        {
            let flipped: u32 = a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum();
            assert_eq!(flipped, 1, "segment {seg}");
        }
    }

    #[test]
    fn latency_and_jitter_delay_without_reordering() {
        let faults = Faults {
            latency_ms: 100,
            jitter_ms: 50,
            ..Faults::default()
        };
        let data = payload(200_000);
        let now = Instant::now();
        let (pieces, _) = run(&data, &[500], &faults, now);
        assert!(pieces.windows(2).all(|w| w[0].release_at <= w[1].release_at));
        for p in &pieces {
            let delay = p.release_at - now;
            assert!(
                delay >= Duration::from_millis(100) && delay <= Duration::from_millis(150),
                "{delay:?}"
            );
        }
        assert!(pieces.iter().any(|p| p.release_at > now + Duration::from_millis(100)));
    }

    #[test]
    fn a_stall_holds_everything_behind_it() {
        let faults = Faults {
            stall_probability: 1.0,
            stall_ms_min: 300,
            stall_ms_max: 300,
            ..Faults::default()
        };
        let now = Instant::now();
        let mut shaper = Shaper::new(StreamDice::new(1, 0, Direction::Downstream));
        let mut out = Vec::new();
        let shaped = shaper.shape(vec![0; SEGMENT_BYTES as usize * 2], now, &faults, &mut out);
        assert_eq!(shaped.stalls, 2);
        // The first segment starts the chunk; the second begins a new piece, held on top.
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].release_at - now, Duration::from_millis(300));
        assert_eq!(out[1].release_at - now, Duration::from_millis(600));
        // A later chunk arriving sooner than that still waits for it.
        let quiet = Faults::default();
        shaper.shape(vec![0; 10], now, &quiet, &mut out);
        assert_eq!(out[2].release_at - now, Duration::from_millis(600));
    }

    trait ConcatData {
        fn concat_data(&self) -> Vec<u8>;
    }

    impl ConcatData for Vec<Piece> {
        fn concat_data(&self) -> Vec<u8> {
            self.iter().flat_map(|p| p.data.iter().copied()).collect()
        }
    }
}
