//! Named limits, in one place. Everything the proxy holds is bounded by one of these, so a
//! misbehaving peer or test can slow the proxy down but never make it grow without end.

use std::time::Duration;

/// Most bytes read from a socket at once: one chunk entering the delay line.
pub const CHUNK_BYTES_MAX: usize = 16 * 1024;

/// Size of the segments the byte stream is cut into for fault decisions: one MSS on a
/// 1500-byte MTU path, so that `stall_probability` reads as a per-packet loss rate and
/// `corrupt_probability` as a per-packet corruption rate.
pub const SEGMENT_BYTES: u64 = 1448;

/// Most bytes held in one direction's delay line (read but not yet written). This is the
/// emulated link's window: with latency L the direction carries at most this much per L
/// (1 MiB at 100 ms is about 10 MB/s, well above the links being emulated). When it is full
/// the proxy stops reading, and TCP's own flow control pushes back on the sender.
pub const DELAY_LINE_BYTES_MAX: usize = 1024 * 1024;

/// Most chunks held in one direction's delay line, whatever their size.
pub const DELAY_LINE_CHUNKS_MAX: usize = 4096;

/// Most proxied connections open at once; further ones are reset on accept.
pub const CONNECTIONS_MAX: usize = 256;

/// Most control connections open at once; further ones are closed on accept.
pub const CONTROL_CONNECTIONS_MAX: usize = 16;

/// Longest control command line, in bytes, newline included.
pub const CONTROL_LINE_BYTES_MAX: usize = 4096;

/// How long the proxy waits for the target to accept a connection before giving up on it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Highest one-way latency, in milliseconds.
pub const LATENCY_MS_MAX: u64 = 60_000;

/// Highest jitter, in milliseconds.
pub const JITTER_MS_MAX: u64 = 60_000;

/// Longest single stall, in milliseconds.
pub const STALL_MS_MAX: u64 = 60_000;

/// Lowest bandwidth cap, in bytes per second (0 means no cap). Below this one chunk would
/// take minutes to drain and a test would look hung rather than slow.
pub const BANDWIDTH_BYTES_PER_SEC_MIN: u64 = 1024;

/// The token bucket's depth, as time at the capped rate: how much may go out in one burst
/// after the link has been idle. Short, so a capped transfer's duration is close to
/// size / rate.
pub const BANDWIDTH_BURST: Duration = Duration::from_millis(50);

/// Latest moment, in milliseconds after accept, a timed cut may be planned for.
pub const CUT_AFTER_MS_MAX: u64 = 24 * 60 * 60 * 1000;
