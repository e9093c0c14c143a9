//! The fault settings of the emulated link, and partial updates to them.
//!
//! Every fault applies to each direction on its own, as on a real link where the two
//! directions queue independently. The default is a perfect link: no faults at all.

use serde::{Deserialize, Serialize};

use crate::error::{ProxyError, ProxyResult};
use crate::limits::{BANDWIDTH_BYTES_PER_SEC_MIN, CUT_AFTER_MS_MAX, JITTER_MS_MAX, LATENCY_MS_MAX, STALL_MS_MAX};

/// What the link does to the bytes crossing it.
///
/// Loss is **not** emulated as dropped packets: the proxy sits above TCP, and what TCP makes
/// of a lost packet is a retransmission stall and, under repeated loss, a collapse in
/// throughput. That is what `stall_probability` produces. Figures measured with stalls
/// should say "loss emulated as stalls".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Fixed one-way delay added to every byte, in milliseconds: the propagation floor.
    pub latency_ms: u64,
    /// Extra one-way delay drawn per segment from `0..=jitter_ms` on top of `latency_ms`.
    /// Additive rather than ± because a link is never faster than its propagation delay;
    /// bytes are never reordered by it (a chunk waits for the one before it).
    pub jitter_ms: u64,
    /// Bandwidth cap per direction, in bytes per second (token bucket); 0 means no cap. The
    /// cap is the link's: all connections through the proxy share it.
    pub bandwidth_bytes_per_sec: u64,
    /// Probability, per segment of [`SEGMENT_BYTES`](crate::limits::SEGMENT_BYTES) bytes, that the stream stalls there as if the
    /// packet were lost and waited for a retransmission timeout.
    pub stall_probability: f64,
    /// Shortest stall, in milliseconds.
    pub stall_ms_min: u64,
    /// Longest stall, in milliseconds.
    pub stall_ms_max: u64,
    /// Probability, per connection, that it is cut (both sides reset) at some point.
    pub cut_probability: f64,
    /// A planned cut happens after a number of bytes drawn from `0..=cut_after_bytes_max`
    /// (counted over both directions, as delivered); 0 means cuts are not triggered by bytes.
    pub cut_after_bytes_max: u64,
    /// A planned cut happens at a moment drawn from `0..=cut_after_ms_max` after accept;
    /// 0 means cuts are not triggered by time. With both set, whichever comes first cuts.
    pub cut_after_ms_max: u64,
    /// Probability, per segment, that one bit of it is flipped: for proving that end-to-end
    /// checksums catch what TCP's weak checksum and a broken middlebox let through.
    pub corrupt_probability: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            jitter_ms: 0,
            bandwidth_bytes_per_sec: 0,
            stall_probability: 0.0,
            stall_ms_min: 200,
            stall_ms_max: 1000,
            cut_probability: 0.0,
            cut_after_bytes_max: 1024 * 1024,
            cut_after_ms_max: 0,
            corrupt_probability: 0.0,
        }
    }
}

impl Faults {
    /// Checks every setting against its range and the named limits.
    pub fn validate(&self) -> ProxyResult<()> {
        let bad = |msg: String| Err(ProxyError::InvalidFaults(msg));
        for (name, p) in [
            ("stall_probability", self.stall_probability),
            ("cut_probability", self.cut_probability),
            ("corrupt_probability", self.corrupt_probability),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("{name} is {p}, not within 0..=1"));
            }
        }
        if self.latency_ms > LATENCY_MS_MAX {
            return bad(format!("latency_ms {} exceeds {LATENCY_MS_MAX}", self.latency_ms));
        }
        if self.jitter_ms > JITTER_MS_MAX {
            return bad(format!("jitter_ms {} exceeds {JITTER_MS_MAX}", self.jitter_ms));
        }
        if self.bandwidth_bytes_per_sec != 0 && self.bandwidth_bytes_per_sec < BANDWIDTH_BYTES_PER_SEC_MIN {
            return bad(format!(
                "bandwidth_bytes_per_sec {} is under {BANDWIDTH_BYTES_PER_SEC_MIN} (use 0 for no cap)",
                self.bandwidth_bytes_per_sec
            ));
        }
        if self.stall_ms_min > self.stall_ms_max {
            return bad(format!(
                "stall_ms_min {} exceeds stall_ms_max {}",
                self.stall_ms_min, self.stall_ms_max
            ));
        }
        if self.stall_ms_max > STALL_MS_MAX {
            return bad(format!("stall_ms_max {} exceeds {STALL_MS_MAX}", self.stall_ms_max));
        }
        if self.cut_after_ms_max > CUT_AFTER_MS_MAX {
            return bad(format!(
                "cut_after_ms_max {} exceeds {CUT_AFTER_MS_MAX}",
                self.cut_after_ms_max
            ));
        }
        if self.cut_probability > 0.0 && self.cut_after_bytes_max == 0 && self.cut_after_ms_max == 0 {
            return bad("cut_probability is set but neither cut_after_bytes_max nor cut_after_ms_max is".to_owned());
        }
        Ok(())
    }
}

/// A partial change to [`Faults`]: the fields given replace the current ones, the rest stay.
/// This is the body of the control protocol's `set` command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultUpdate {
    pub latency_ms: Option<u64>,
    pub jitter_ms: Option<u64>,
    pub bandwidth_bytes_per_sec: Option<u64>,
    pub stall_probability: Option<f64>,
    pub stall_ms_min: Option<u64>,
    pub stall_ms_max: Option<u64>,
    pub cut_probability: Option<f64>,
    pub cut_after_bytes_max: Option<u64>,
    pub cut_after_ms_max: Option<u64>,
    pub corrupt_probability: Option<f64>,
}

impl FaultUpdate {
    /// Returns `current` with this update's fields applied; the result is not yet validated.
    pub fn apply_to(&self, current: &Faults) -> Faults {
        Faults {
            latency_ms: self.latency_ms.unwrap_or(current.latency_ms),
            jitter_ms: self.jitter_ms.unwrap_or(current.jitter_ms),
            bandwidth_bytes_per_sec: self.bandwidth_bytes_per_sec.unwrap_or(current.bandwidth_bytes_per_sec),
            stall_probability: self.stall_probability.unwrap_or(current.stall_probability),
            stall_ms_min: self.stall_ms_min.unwrap_or(current.stall_ms_min),
            stall_ms_max: self.stall_ms_max.unwrap_or(current.stall_ms_max),
            cut_probability: self.cut_probability.unwrap_or(current.cut_probability),
            cut_after_bytes_max: self.cut_after_bytes_max.unwrap_or(current.cut_after_bytes_max),
            cut_after_ms_max: self.cut_after_ms_max.unwrap_or(current.cut_after_ms_max),
            corrupt_probability: self.corrupt_probability.unwrap_or(current.corrupt_probability),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_fault_free() {
        let f = Faults::default();
        f.validate().unwrap();
        assert_eq!(f.latency_ms + f.jitter_ms + f.bandwidth_bytes_per_sec, 0);
        assert_eq!(f.stall_probability + f.cut_probability + f.corrupt_probability, 0.0);
    }

    #[test]
    fn rejects_out_of_range() {
        let base = Faults::default();
        for f in [
            Faults {
                stall_probability: 1.5,
                ..base
            },
            Faults {
                corrupt_probability: f64::NAN,
                ..base
            },
            Faults {
                cut_probability: -0.1,
                ..base
            },
            Faults {
                bandwidth_bytes_per_sec: 10,
                ..base
            },
            Faults {
                stall_ms_min: 500,
                stall_ms_max: 100,
                ..base
            },
            Faults {
                latency_ms: LATENCY_MS_MAX + 1,
                ..base
            },
            Faults {
                cut_probability: 0.5,
                cut_after_bytes_max: 0,
                cut_after_ms_max: 0,
                ..base
            },
        ] {
            assert!(f.validate().is_err(), "{f:?} should be invalid");
        }
    }

    #[test]
    fn update_replaces_only_given_fields() {
        let base = Faults {
            latency_ms: 50,
            jitter_ms: 5,
            ..Faults::default()
        };
        let update: FaultUpdate = serde_json::from_str(r#"{"latency_ms":100,"corrupt_probability":0.5}"#).unwrap();
        let next = update.apply_to(&base);
        assert_eq!(next.latency_ms, 100);
        assert_eq!(next.jitter_ms, 5);
        assert_eq!(next.corrupt_probability, 0.5);
    }
}
