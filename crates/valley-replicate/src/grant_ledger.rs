//! [`GrantLedger`]: the grant reservations this hub already counted, as the accountant of the
//! grants it recorded.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// Most reservations remembered; the oldest is forgotten first.
const RESERVATIONS_MAX: usize = 100_000;

/// Remembered so that a retried transfer is not counted twice. Bounded; forgetting one only
/// over-counts (the safe side).
#[derive(Default)]
pub(crate) struct GrantLedger {
    reservations: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl GrantLedger {
    /// Whether `transfer`'s use of a grant was counted here already.
    pub(crate) fn counted(&self, transfer: &str) -> bool {
        self.reservations.lock().is_ok_and(|seen| seen.0.contains(transfer))
    }

    /// `transfer`'s use of a grant was counted.
    pub(crate) fn remember(&self, transfer: &str) {
        if let Ok(mut seen) = self.reservations.lock() {
            let (set, order) = &mut *seen;
            if set.insert(transfer.to_owned()) {
                order.push_back(transfer.to_owned());
                if order.len() > RESERVATIONS_MAX
                    && let Some(old) = order.pop_front()
                {
                    set.remove(&old);
                }
            }
        }
    }
}
