//! Valley's shared vocabulary, free of I/O: the named limits every layer enforces and the
//! hybrid-logical-clock timestamps that order object versions across hubs.

pub mod hlc;
pub mod limits;

pub use hlc::{Hlc, HlcClock};
