//! What this hub has sent each peer, per bucket: the traffic between hubs that an operator
//! bills a bucket's tenant for. Counted when the peer confirms a transfer (link shipments,
//! batches, anti-entropy and synchronous copies all end there), since the process started, as
//! Prometheus counters are.

use std::collections::HashMap;
use std::sync::Mutex;

/// Versions and bytes sent over one link for one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    pub versions: u64,
    pub bytes: u64,
}

/// Per (bucket, peer) totals. Its size is bounded by buckets × peers: both are created by
/// authenticated users, never by a stranger's request.
#[derive(Debug, Default)]
pub struct MovedTraffic {
    totals: Mutex<HashMap<(String, String), Moved>>,
}

impl MovedTraffic {
    /// Counts one version of `bytes` bytes of `bucket` delivered to `peer`.
    pub fn delivered(&self, bucket: &str, peer: &str, bytes: u64) {
        let mut totals = self.totals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = match totals.get_mut(&(bucket.to_owned(), peer.to_owned())) {
            Some(entry) => entry,
            None => totals.entry((bucket.to_owned(), peer.to_owned())).or_default(),
        };
        entry.versions += 1;
        entry.bytes = entry.bytes.saturating_add(bytes);
    }

    /// Every (bucket, peer) pair with what was sent, in no particular order.
    #[must_use]
    pub fn snapshot(&self) -> Vec<(String, String, Moved)> {
        let totals = self.totals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        totals
            .iter()
            .map(|((bucket, peer), moved)| (bucket.clone(), peer.clone(), *moved))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_add_up_per_bucket_and_peer() {
        let traffic = MovedTraffic::default();
        traffic.delivered("a", "p", 10);
        traffic.delivered("a", "p", 5);
        traffic.delivered("a", "q", 1);
        traffic.delivered("b", "p", 0);
        let mut rows = traffic.snapshot();
        rows.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
        assert_eq!(
            rows,
            vec![
                ("a".into(), "p".into(), Moved { versions: 2, bytes: 15 }),
                ("a".into(), "q".into(), Moved { versions: 1, bytes: 1 }),
                ("b".into(), "p".into(), Moved { versions: 1, bytes: 0 }),
            ]
        );
    }
}
