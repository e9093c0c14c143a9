//! Refusals of unauthenticated or implausible calls, audited without letting a stranger grow
//! the log: every refusal is counted, but at most one record per kind of refusal is written
//! per interval, naming how many were refused since the last record. So the log says it
//! happened (and a misconfigured peer is not hidden behind a stranger's noise), and 4,000
//! forged calls cost one fsync'd record instead of 4,000.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shortest time between two audit records of refused calls.
pub const RECORD_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct RefusalLimiter {
    /// What the records say was refused ("peer request refused", "S3 request refused").
    what: &'static str,
    total: AtomicU64,
    windows: Mutex<HashMap<&'static str, Window>>,
}

#[derive(Debug, Default)]
struct Window {
    last_record: Option<Instant>,
    unrecorded: u64,
}

impl RefusalLimiter {
    #[must_use]
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            total: AtomicU64::new(0),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one refusal of `kind`; answers the audit record's text when one is due (the
    /// first refusal of its kind, then the first after each interval), or `None` when this one
    /// is only counted.
    pub fn note(&self, kind: &'static str, why: &str) -> Option<String> {
        self.note_at(kind, why, Instant::now())
    }

    fn note_at(&self, kind: &'static str, why: &str, now: Instant) -> Option<String> {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut windows = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let w = windows.entry(kind).or_default();
        let due = w.last_record.is_none_or(|t| now.duration_since(t) >= RECORD_INTERVAL);
        if !due {
            w.unrecorded += 1;
            return None;
        }
        let before = std::mem::take(&mut w.unrecorded);
        w.last_record = Some(now);
        Some(if before == 0 {
            format!("{}: {why}", self.what)
        } else {
            format!(
                "{}: {why} (and {before} more refused in the {}s before, not recorded one by one)",
                self.what,
                RECORD_INTERVAL.as_secs()
            )
        })
    }

    /// Every refusal counted since start.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_per_interval_and_every_refusal_counted() {
        let limiter = RefusalLimiter::new("peer request refused");
        let t0 = Instant::now();
        assert!(limiter.note_at("signature", "bad signature", t0).is_some());
        for i in 1..1000 {
            let at = t0 + Duration::from_millis(i);
            assert!(limiter.note_at("signature", "bad signature", at).is_none());
        }
        // Another kind of refusal is recorded at once, whatever the noise of the first.
        assert!(
            limiter
                .note_at("topology", "topology mismatch", t0 + Duration::from_millis(5))
                .is_some()
        );
        let next = limiter
            .note_at("signature", "bad signature", t0 + RECORD_INTERVAL)
            .unwrap();
        assert!(next.contains("999 more"), "{next}");
        assert_eq!(limiter.total(), 1002);
    }
}
