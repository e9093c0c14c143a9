//! Counters of what the proxy did, kept as atomics so every connection can bump them without
//! a lock, and read as one [`Stats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::dice::Direction;

/// A snapshot of the counters since the proxy started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Bytes delivered to the target (client → target).
    pub bytes_upstream: u64,
    /// Bytes delivered to clients (target → client).
    pub bytes_downstream: u64,
    /// Connections accepted and proxied.
    pub connections_total: u64,
    /// Connections proxied right now.
    pub connections_open: u64,
    /// Connections reset on accept: partitioned, or over the connection limit.
    pub connections_refused: u64,
    /// Connections reset because the target could not be reached.
    pub connect_failures: u64,
    /// Connections cut: by plan (bytes or time), by `cut_all`, or by a partition.
    pub cuts: u64,
    /// Stalls applied (emulated loss).
    pub stalls: u64,
    /// Bits flipped.
    pub corruptions: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub bytes_upstream: AtomicU64,
    pub bytes_downstream: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_open: AtomicU64,
    pub connections_refused: AtomicU64,
    pub connect_failures: AtomicU64,
    pub cuts: AtomicU64,
    pub stalls: AtomicU64,
    pub corruptions: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Counters {
    pub fn bytes(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::Upstream => &self.bytes_upstream,
            Direction::Downstream => &self.bytes_downstream,
        }
    }

    pub fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            bytes_upstream: get(&self.bytes_upstream),
            bytes_downstream: get(&self.bytes_downstream),
            connections_total: get(&self.connections_total),
            connections_open: get(&self.connections_open),
            connections_refused: get(&self.connections_refused),
            connect_failures: get(&self.connect_failures),
            cuts: get(&self.cuts),
            stalls: get(&self.stalls),
            corruptions: get(&self.corruptions),
        }
    }
}
