//! Synchronous copies: a write to a bucket whose policy has `ack_copies = K > 1` is
//! acknowledged only once K copies in distinct failure domains are durable, this hub's own
//! included. The version is stamped as it will be committed, sent to K−1 peers (more may be
//! tried) before the local commit, and committed here only when enough confirmed in time, or
//! when the policy accepts a degraded write. A copy that may have been applied at a peer for a
//! write that then fails is retracted exactly ([`retract`]).
//!
//! Nothing a peer answers can make this path delete anything: a peer's answer only counts
//! (or does not count) as a copy, and the only delete it ever queues is the retraction of the
//! one version it just sent, at the peers it sent it to.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use valley_audit::AuditKind;
use valley_policy::{AckFallback, PlacementPolicy, Topology, TransferKind, place_avoiding};
use valley_store::record::ObjectVersion;

use crate::hub::Hub;
use crate::transfer::{self, Sent};

/// The peers a synchronous copy of a write at `me` goes to: the hubs the placement puts the
/// version on (the same choice the outbox ships to), without `me`, each in a failure domain
/// distinct from `me`'s and from the others', in placement order (home hub, then nearest).
pub fn sync_targets(
    policy: &PlacementPolicy,
    topology: &Topology,
    me: &str,
    lost: &BTreeSet<String>,
) -> Result<Vec<String>, String> {
    let placed = place_avoiding(policy, topology, me, false, lost)?;
    let mut domains: BTreeSet<String> = topology.hub(me).map(|h| h.failure_domain.clone()).into_iter().collect();
    let mut out = Vec::new();
    for id in placed {
        if id == me {
            continue;
        }
        let Some(hub) = topology.hub(&id) else { continue };
        if hub.peer_endpoint.is_none() || !domains.insert(hub.failure_domain.clone()) {
            continue;
        }
        out.push(id);
    }
    Ok(out)
}

/// What the synchronous copies of one write came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCopies {
    /// Copies the policy asks for, this hub's included (`ack_copies`).
    pub wanted: u32,
    /// Peers that confirmed holding the version.
    pub confirmed: Vec<String>,
    /// Every peer a copy was sent to (confirmed or not): the ones that may hold it.
    pub contacted: Vec<String>,
    /// What the policy says to do when too few confirm.
    pub fallback: AckFallback,
    pub timeout: Duration,
    pub elapsed: Duration,
}

impl SyncCopies {
    /// Durable copies, this hub's included (once committed here).
    #[must_use]
    pub fn made(&self) -> u32 {
        u32::try_from(self.confirmed.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    #[must_use]
    pub fn enough(&self) -> bool {
        self.made() >= self.wanted
    }
}

/// Whether an answer to a synchronous copy confirms it: the peer took it, or already holds it
/// (a retry), or holds something newer of the key. A refusal or an error does not count.
fn confirms(result: &Result<Sent, crate::client::PeerError>) -> bool {
    matches!(result, Ok(Sent::Delivered | Sent::Nothing))
}

/// Sends `version` of `bucket/key` (stamped, not yet committed here) to the peers of
/// [`sync_targets`] in parallel, until `ack_copies − 1` confirmed or `ack_timeout_seconds`
/// passed. `Ok(None)`: the bucket's policy asks for no synchronous copy.
pub async fn copy_before_commit(
    hub: &Arc<Hub>,
    bucket: &str,
    key: &str,
    version: &ObjectVersion,
) -> Result<Option<SyncCopies>, String> {
    let policy = hub.cached_policy(bucket).await?;
    if policy.ack_copies <= 1 {
        return Ok(None);
    }
    let started = Instant::now();
    let lost = hub.read(crate::control::lost_hubs).await.map_err(|e| e.to_string())?;
    let targets =
        sync_targets(&policy, &hub.topology, &hub.id, &lost).map_err(|why| format!("bucket {bucket:?}: {why}"))?;
    let need = usize::try_from(policy.ack_copies - 1).unwrap_or(usize::MAX);
    let timeout = Duration::from_secs(u64::from(
        policy
            .ack_timeout_seconds
            .clamp(1, valley_policy::placement::ACK_TIMEOUT_SECONDS_MAX),
    ));
    let mut copies = SyncCopies {
        wanted: policy.ack_copies,
        confirmed: Vec::new(),
        contacted: targets.clone(),
        fallback: policy.ack_fallback,
        timeout,
        elapsed: Duration::ZERO,
    };
    let mut sends: FuturesUnordered<_> = targets
        .into_iter()
        .map(|peer| async move {
            let result =
                transfer::send_known_version(hub, &peer, bucket, key, version, TransferKind::Replication).await;
            (peer, result)
        })
        .collect();
    let deadline = tokio::time::Instant::from_std(started + timeout);
    while copies.confirmed.len() < need {
        match tokio::time::timeout_at(deadline, sends.next()).await {
            Ok(Some((peer, result))) => {
                if confirms(&result) {
                    copies.confirmed.push(peer);
                } else {
                    tracing::warn!(bucket, key, peer, result = ?result, "synchronous copy not confirmed");
                }
            }
            // Every peer answered, or time is up.
            Ok(None) | Err(_) => break,
        }
    }
    // Copies still under way are dropped: the outbox ships every target again after the
    // commit (a duplicate there costs little), or the retraction follows them.
    drop(sends);
    copies.elapsed = started.elapsed();
    Ok(Some(copies))
}

/// Queues, durably, the exact retraction of `version` of `bucket/key` at each of `peers`
/// (a delete of that version only: a newer or older version there stays), through the outbox
/// so it is retried until delivered; in the same transaction the version is retracted here
/// too (buried, so a copy a peer pushes back before its retraction arrives, by anti-entropy
/// say, never applies).
pub async fn retract(
    hub: &Arc<Hub>,
    bucket: &str,
    key: &str,
    version: &ObjectVersion,
    peers: &[String],
) -> Result<(), String> {
    if version.origin != hub.id {
        return Err(format!(
            "a version of {key:?} stamped by {} is not this hub's to retract",
            version.origin
        ));
    }
    let shipment = crate::wire::retraction(bucket, key, version.hlc, &version.origin);
    let peers = peers.to_vec();
    hub.catalog
        .retract_own(
            bucket,
            key,
            version.stamp(),
            Box::new(move |txn| crate::outbox::push_to_each(txn, &peers, &shipment, 0)),
        )
        .await
        .map_err(|e| e.to_string())?;
    hub.links.wake_senders();
    Ok(())
}

/// What became of a write with synchronous copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Acknowledged with the copies the policy asks for.
    Synchronous,
    /// Acknowledged with fewer (fallback `degrade`).
    Degraded,
    /// Not acknowledged, nothing committed here, the copies made retracted.
    Failed,
}

impl SyncOutcome {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SyncOutcome::Synchronous => "synchronous",
            SyncOutcome::Degraded => "degraded",
            SyncOutcome::Failed => "failed",
        }
    }
}

/// Settles a write after its copies and its local commit (`committed`): a write that was not
/// committed has its copies retracted; a degraded one is audited. Returns the outcome.
pub async fn settle(
    hub: &Arc<Hub>,
    bucket: &str,
    key: &str,
    version: &ObjectVersion,
    copies: &SyncCopies,
    committed: bool,
) -> Result<SyncOutcome, String> {
    let tag = crate::residency::version_tag(version.hlc, &version.origin);
    if !committed {
        tracing::warn!(
            bucket,
            key,
            made = copies.made(),
            wanted = copies.wanted,
            "write with synchronous copies failed: retracting its copies"
        );
        retract(hub, bucket, key, version, &copies.contacted).await?;
        return Ok(SyncOutcome::Failed);
    }
    if copies.enough() {
        return Ok(SyncOutcome::Synchronous);
    }
    let missing: Vec<&String> = copies
        .contacted
        .iter()
        .filter(|p| !copies.confirmed.contains(p))
        .collect();
    let detail = format!(
        "write {tag} acknowledged with {} of {} copies (ack_fallback degrade): {} did not confirm within {} s; it replicates asynchronously",
        copies.made(),
        copies.wanted,
        if missing.is_empty() {
            "no peer could be sent a copy".to_owned()
        } else {
            missing.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
        },
        copies.timeout.as_secs()
    );
    hub.auditor
        .record(
            hub.auditor
                .event(AuditKind::SyncDegraded, detail)
                .with_bucket(bucket)
                .with_key(key)
                .with_allowed(true)
                .with_bytes(version.size),
        )
        .await;
    Ok(SyncOutcome::Degraded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        // a and a2 share a failure domain; b, c, d each have their own. RTTs from a: a2 1 ms,
        // b 10 ms, c 20 ms, d 30 ms.
        let text = r#"
[[hub]]
id = "a"
jurisdiction = "CN"
role = "east"
lat = 30.0
lon = 110.0
failure_domain = "dc1"
peer_endpoint = "http://127.0.0.1:1"
[[hub]]
id = "a2"
jurisdiction = "CN"
role = "east"
lat = 30.0
lon = 110.0
failure_domain = "dc1"
peer_endpoint = "http://127.0.0.1:2"
[[hub]]
id = "b"
jurisdiction = "CN"
role = "east"
lat = 30.0
lon = 110.0
failure_domain = "dc2"
peer_endpoint = "http://127.0.0.1:3"
[[hub]]
id = "c"
jurisdiction = "CN"
role = "east"
lat = 30.0
lon = 110.0
failure_domain = "dc3"
peer_endpoint = "http://127.0.0.1:4"
[[hub]]
id = "d"
jurisdiction = "DE"
role = "east"
lat = 30.0
lon = 110.0
failure_domain = "dc4"
peer_endpoint = "http://127.0.0.1:5"
[[link]]
a = "a"
b = "a2"
rtt_ms = 1
bandwidth_mbit = 1000
[[link]]
a = "a"
b = "b"
rtt_ms = 10
bandwidth_mbit = 1000
[[link]]
a = "a"
b = "c"
rtt_ms = 20
bandwidth_mbit = 1000
[[link]]
a = "a"
b = "d"
rtt_ms = 30
bandwidth_mbit = 1000
"#;
        Topology::parse(text).expect("topology")
    }

    fn policy(copies: u32, ack: u32) -> PlacementPolicy {
        PlacementPolicy {
            jurisdictions: vec!["CN".into()],
            copies,
            distinct_failure_domains: true,
            ack_copies: ack,
            ..PlacementPolicy::default()
        }
    }

    #[test]
    fn targets_are_the_placed_peers_in_other_failure_domains_nearest_first() {
        let t = topology();
        let none = BTreeSet::new();
        // Placement from a: a, then b (a2 shares a's domain), then c. Never d (not allowed).
        assert_eq!(sync_targets(&policy(3, 2), &t, "a", &none).unwrap(), ["b", "c"]);
        assert_eq!(sync_targets(&policy(2, 2), &t, "a", &none).unwrap(), ["b"]);
        // The same choice as the outbox: what `place_avoiding` gives, without this hub.
        let placed = place_avoiding(&policy(3, 2), &t, "a", false, &none).unwrap();
        assert_eq!(placed, ["a", "b", "c"]);
    }

    #[test]
    fn targets_pass_over_lost_hubs_and_never_this_hubs_failure_domain() {
        let t = topology();
        let lost: BTreeSet<String> = ["b".to_owned()].into();
        assert_eq!(sync_targets(&policy(3, 2), &t, "a", &lost).unwrap(), ["c"]);
        let all: BTreeSet<String> = ["b".to_owned(), "c".to_owned()].into();
        assert!(sync_targets(&policy(3, 2), &t, "a", &all).unwrap().is_empty());
        // A home hub in this hub's own failure domain is placed, but is no synchronous copy.
        let mut homed = policy(2, 2);
        homed.home_hub = Some("a2".into());
        homed.distinct_failure_domains = false;
        let targets = sync_targets(&homed, &t, "a", &BTreeSet::new()).unwrap();
        assert!(!targets.contains(&"a2".to_owned()) && !targets.contains(&"a".to_owned()));
    }

    #[test]
    fn copies_count_the_local_one() {
        let copies = SyncCopies {
            wanted: 2,
            confirmed: vec!["b".into()],
            contacted: vec!["b".into(), "c".into()],
            fallback: AckFallback::Fail,
            timeout: Duration::from_secs(1),
            elapsed: Duration::ZERO,
        };
        assert_eq!(copies.made(), 2);
        assert!(copies.enough());
        let short = SyncCopies {
            confirmed: Vec::new(),
            ..copies
        };
        assert_eq!(short.made(), 1);
        assert!(!short.enough());
        assert!(!confirms(&Ok(Sent::Refused("no".into()))));
        assert!(!confirms(&Err(crate::client::PeerError::Unreachable("cut".into()))));
        assert!(confirms(&Ok(Sent::Delivered)));
    }
}
