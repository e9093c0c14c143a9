//! A seeded TCP fault proxy for loopback, standing in for the slow, lossy cross-border links
//! between Valley hubs on a machine whose kernel has no `netem`.
//!
//! The proxy listens on one loopback address and forwards each connection to a target on
//! another. Per direction it adds:
//!
//! - **latency**: a fixed one-way delay plus jitter, as a delay line: each chunk is released
//!   at its arrival time plus the delay, never before the chunk ahead of it, so bytes are
//!   never reordered ([`shaper`]);
//! - a **bandwidth cap**: a token bucket in bytes per second ([`bucket`]);
//! - **loss, emulated as stalls**: the proxy sits above TCP, so it cannot drop packets; it
//!   shows what TCP makes of loss instead, a retransmission-timeout-like pause with the rest
//!   of the stream waiting behind it, and under frequent loss a collapse in throughput.
//!   Figures measured with stalls must say "loss emulated as stalls";
//! - **corruption**: one bit flipped in a segment, to prove end-to-end checksums catch it.
//!
//! Per connection, a **cut** resets both sides after a random number of bytes or at a random
//! moment, or on command; a **partition** cuts everything and resets new connections until
//! healed.
//!
//! Every random decision comes from [`dice`], seeded by the run's seed and tied to byte
//! offsets, so a seed replays the same faults at the same places. Faults change at runtime
//! through [`FaultProxy`] (in-process, for integration tests) or the JSON-lines
//! [`control`] protocol (for the binary). Only loopback addresses are accepted, and every
//! buffer and count is bounded by a named limit in [`limits`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), valley_faultproxy::ProxyError> {
//! use valley_faultproxy::{Config, FaultProxy, Faults};
//! let mut config = Config::new("127.0.0.1:0".parse().unwrap(), "127.0.0.1:9000".parse().unwrap());
//! config.seed = 42;
//! config.faults = Faults { latency_ms: 100, bandwidth_bytes_per_sec: 1_000_000, ..Faults::default() };
//! let proxy = FaultProxy::start(config).await?;
//! // point a hub's peer address at proxy.local_addr() ...
//! proxy.partition();
//! proxy.heal();
//! println!("{:?}", proxy.stats());
//! # Ok(()) }
//! ```

pub mod bucket;
mod connection;
pub mod control;
pub mod dice;
pub mod error;
pub mod faults;
pub mod limits;
pub mod proxy;
pub mod shaper;
pub mod stats;

pub use control::Command;
pub use dice::{CutPlan, Direction, SegmentFate, StreamDice};
pub use error::{ProxyError, ProxyResult};
pub use faults::{FaultUpdate, Faults};
pub use proxy::{Config, FaultProxy};
pub use stats::Stats;
