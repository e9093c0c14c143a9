//! The replicator's delivery logic, free of I/O so that a seeded simulation can drive it
//! through dropped, duplicated, reordered and delayed messages and crashes
//! (`tests/simulation.rs`, which runs it against real catalogs).
//!
//! Delivery is at-least-once from a durable outbox. Ordering versions is not done here: the
//! receiving catalog applies each version idempotently by last-writer-wins on its stamp
//! (`valley_store::Catalog::apply_replica`, `Catalog::apply_remote_deletes`), so redelivery,
//! duplication and reordering are harmless and every replica converges on the same winner.

use std::collections::{BTreeMap, BTreeSet};

/// Exponential backoff with full jitter: attempt n waits a uniform time in
/// `[0, min(max, base * 2^n)]`. `entropy` is any random u64 (seeded in tests).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base_ms: u64,
    pub max_ms: u64,
}

impl Backoff {
    #[must_use]
    pub fn delay_ms(&self, attempt: u32, entropy: u64) -> u64 {
        let ceiling = self
            .base_ms
            .saturating_mul(1u64 << attempt.min(30))
            .min(self.max_ms)
            .max(1);
        // Never zero, so a failing entry cannot spin.
        1 + entropy % ceiling
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    attempts: u32,
    next_try_ms: u64,
}

/// One link's delivery queue: which outbox entries are due, in flight, or waiting to retry.
/// Rebuilt from the durable outbox after a crash (everything pending, nothing in flight).
#[derive(Debug, Clone)]
pub struct LinkQueue {
    pending: BTreeMap<u64, Pending>,
    in_flight: BTreeSet<u64>,
    window: usize,
    backoff: Backoff,
}

impl LinkQueue {
    /// `window` bounds the entries in flight on the link at once.
    #[must_use]
    pub fn new(window: usize, backoff: Backoff) -> Self {
        Self {
            pending: BTreeMap::new(),
            in_flight: BTreeSet::new(),
            window: window.max(1),
            backoff,
        }
    }

    /// Adds an outbox entry (idempotent: an entry already known keeps its state).
    pub fn enqueue(&mut self, seq: u64, now_ms: u64) {
        self.pending.entry(seq).or_insert(Pending {
            attempts: 0,
            next_try_ms: now_ms,
        });
    }

    /// Entries to send now, oldest first, within the window; they become in flight.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<u64> {
        let room = self.window.saturating_sub(self.in_flight.len());
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(seq, p)| p.next_try_ms <= now_ms && !self.in_flight.contains(seq))
            .map(|(seq, _)| *seq)
            .take(room)
            .collect();
        self.in_flight.extend(due.iter().copied());
        due
    }

    /// Entries to send now, oldest first, within the window and for as long as `fits` takes
    /// them (it sees each candidate in turn; the first it turns down ends the list).
    pub fn take_due_while(&mut self, now_ms: u64, mut fits: impl FnMut(u64) -> bool) -> Vec<u64> {
        let room = self.window.saturating_sub(self.in_flight.len());
        let mut due = Vec::new();
        for (seq, p) in &self.pending {
            if due.len() >= room {
                break;
            }
            if p.next_try_ms > now_ms || self.in_flight.contains(seq) {
                continue;
            }
            if !fits(*seq) {
                break;
            }
            due.push(*seq);
        }
        self.in_flight.extend(due.iter().copied());
        due
    }

    /// The peer acknowledged `seq` (or it no longer needs sending): forget it.
    pub fn ack(&mut self, seq: u64) {
        self.pending.remove(&seq);
        self.in_flight.remove(&seq);
    }

    /// Sending `seq` failed: retry after a jittered backoff.
    pub fn fail(&mut self, seq: u64, now_ms: u64, entropy: u64) {
        self.in_flight.remove(&seq);
        if let Some(p) = self.pending.get_mut(&seq) {
            p.attempts = p.attempts.saturating_add(1);
            p.next_try_ms = now_ms + self.backoff.delay_ms(p.attempts, entropy);
        }
    }

    /// The link works again: every waiting entry is due now, with its backoff reset (after a
    /// long outage the entries' own backoffs would otherwise spread the catch-up over minutes).
    pub fn retry_all_now(&mut self, now_ms: u64) {
        for p in self.pending.values_mut() {
            p.attempts = 0;
            p.next_try_ms = p.next_try_ms.min(now_ms);
        }
    }

    /// When the next entry becomes due, if any is waiting.
    #[must_use]
    pub fn next_due_ms(&self) -> Option<u64> {
        self.pending
            .iter()
            .filter(|(seq, _)| !self.in_flight.contains(seq))
            .map(|(_, p)| p.next_try_ms)
            .min()
    }

    #[must_use]
    pub fn backlog(&self) -> usize {
        self.pending.len()
    }

    #[must_use]
    pub fn attempts(&self, seq: u64) -> Option<u32> {
        self.pending.get(&seq).map(|p| p.attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_is_never_zero() {
        let b = Backoff {
            base_ms: 100,
            max_ms: 5_000,
        };
        assert_eq!(b.delay_ms(0, 99), 100);
        assert!(b.delay_ms(10, u64::MAX) <= 5_000);
        assert!((0..100).all(|e| b.delay_ms(3, e) >= 1));
    }

    #[test]
    fn a_budget_ends_the_due_list_at_the_first_entry_it_turns_down() {
        let mut q = LinkQueue::new(
            10,
            Backoff {
                base_ms: 100,
                max_ms: 1_000,
            },
        );
        for seq in 1..=5 {
            q.enqueue(seq, 0);
        }
        let mut budget = 3;
        assert_eq!(
            q.take_due_while(0, |_| {
                budget -= 1;
                budget >= 0
            }),
            vec![1, 2, 3]
        );
        // In flight ones are not offered again; the rest are.
        assert_eq!(q.take_due_while(0, |_| true), vec![4, 5]);
    }

    #[test]
    fn window_bounds_in_flight_and_failures_wait() {
        let mut q = LinkQueue::new(
            2,
            Backoff {
                base_ms: 100,
                max_ms: 1_000,
            },
        );
        for seq in 1..=5 {
            q.enqueue(seq, 0);
        }
        assert_eq!(q.take_due(0), vec![1, 2]);
        assert!(q.take_due(0).is_empty());
        q.ack(1);
        q.fail(2, 0, 7);
        assert_eq!(q.take_due(0), vec![3, 4]);
        // 5 is due but the window is full; 2 waits for its backoff.
        assert_eq!(q.next_due_ms(), Some(0));
        q.ack(3);
        q.ack(4);
        assert_eq!(q.take_due(0), vec![5]);
        let wake = q.next_due_ms().unwrap();
        assert!(wake > 0);
        assert!(q.take_due(wake - 1).is_empty());
        assert_eq!(q.take_due(wake), vec![2]);
        assert_eq!(q.attempts(2), Some(1));
    }
}
