//! [`Links`]: what this hub's link workers share — each link's state as `valley status` shows
//! it, the senders' wake-up, and the per-peer budgets (bandwidth, chunk streams).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{Notify, Semaphore};
use valley_policy::Topology;

use crate::transfer::RateLimit;

/// The state of one link, as `valley status` shows it.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct LinkStatus {
    pub peer: String,
    pub reachable: bool,
    pub last_contact_unix_ms: Option<u64>,
    pub last_error: Option<String>,
    pub backlog_entries: u64,
    pub backlog_bytes: u64,
    pub lag_seconds: f64,
    pub shipped_entries: u64,
    pub shipped_bytes: u64,
    pub refused_entries: u64,
    /// Versions anti-entropy found missing at the peer and sent.
    #[serde(default)]
    pub repaired_versions: u64,
    /// The peer is declared lost for good.
    #[serde(default)]
    pub lost: bool,
}

/// Most unanswered commits remembered (each is one large transfer being retried).
const UNANSWERED_COMMITS_MAX: usize = 100_000;

pub struct Links {
    /// Wakes the link workers: shared with the catalog's outbox hook, which fills the outbox.
    pub(crate) wake: Arc<Notify>,
    status: Mutex<BTreeMap<String, LinkStatus>>,
    /// Per-peer bandwidth limits from the topology's `replication_limit_mbit`.
    rate_limits: BTreeMap<String, Arc<RateLimit>>,
    /// Per-peer budget of chunk streams open at once.
    chunk_slots: BTreeMap<String, Arc<Semaphore>>,
    /// Chunked transfers whose commit call got no answer (a cut): if the next attempt finds
    /// the peer holding the version, that commit happened and is recorded then. In memory: a
    /// restart in between loses only the sender's record of such a transfer. Bounded.
    unanswered_commits: Mutex<HashSet<String>>,
}

impl Links {
    /// The links of hub `id` to every other hub of `topology`.
    pub(crate) fn new(id: &str, topology: &Topology, wake: Arc<Notify>) -> Self {
        let peers = || topology.hubs().filter(move |h| h.id != id);
        let status = peers()
            .map(|h| {
                (
                    h.id.clone(),
                    LinkStatus {
                        peer: h.id.clone(),
                        ..LinkStatus::default()
                    },
                )
            })
            .collect();
        let rate_limits = peers()
            .filter_map(|h| {
                let mbit = topology.link(id, &h.id)?.replication_limit_mbit?;
                Some((h.id.clone(), Arc::new(RateLimit::new(mbit * 1_000_000.0 / 8.0))))
            })
            .collect();
        let chunk_slots = peers()
            .map(|h| {
                let streams = crate::transfer::link_streams(topology.link(id, &h.id));
                (h.id.clone(), Arc::new(Semaphore::new(streams)))
            })
            .collect();
        Self {
            wake,
            status: Mutex::new(status),
            rate_limits,
            chunk_slots,
            unanswered_commits: Mutex::new(HashSet::new()),
        }
    }

    /// Wakes the senders: the outbox was written in a transaction they were not told of.
    pub fn wake_senders(&self) {
        self.wake.notify_waiters();
    }

    /// Every link's state as the workers left it. Backlogs and lost hubs are not filled in
    /// (they are in the catalog: see [`crate::Hub::link_status`]).
    #[must_use]
    pub fn statuses(&self) -> Vec<LinkStatus> {
        self.status
            .lock()
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn update(&self, peer: &str, change: impl FnOnce(&mut LinkStatus)) {
        if let Ok(mut links) = self.status.lock()
            && let Some(link) = links.get_mut(peer)
        {
            change(link);
        }
    }

    /// The bandwidth limit on transfers to `peer`, if its link has one.
    pub(crate) fn rate_limit(&self, peer: &str) -> Option<Arc<RateLimit>> {
        self.rate_limits.get(peer).cloned()
    }

    /// The stream budget of the link to `peer`.
    pub(crate) fn chunk_slots(&self, peer: &str) -> Arc<Semaphore> {
        self.chunk_slots
            .get(peer)
            .cloned()
            .unwrap_or_else(|| Arc::new(Semaphore::new(crate::transfer::LINK_STREAMS_DEFAULT)))
    }

    /// A chunked transfer's commit call went unanswered.
    pub(crate) fn note_unanswered_commit(&self, transfer: String) {
        if let Ok(mut set) = self.unanswered_commits.lock()
            && set.len() < UNANSWERED_COMMITS_MAX
        {
            set.insert(transfer);
        }
    }

    /// Whether `transfer`'s commit went unanswered before (forgotten as it is answered).
    pub(crate) fn confirm_unanswered_commit(&self, transfer: &str) -> bool {
        self.unanswered_commits.lock().is_ok_and(|mut set| set.remove(transfer))
    }
}
