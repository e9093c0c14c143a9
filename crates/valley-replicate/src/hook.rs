//! The [`VersionHook`] that ties object writes to the network: inside the write transaction it
//! refuses data this hub may not hold and queues the copies the policy requires.

use std::sync::Arc;

use valley_policy::{PlacementPolicy, Topology, Transfer, TransferKind, decide, place_avoiding};
use valley_store::record::ObjectVersion;
use valley_store::{ReadTxn, StoreError, StoreResult, VersionHook, WriteTxn};

use crate::control::load_policy;
use crate::outbox::{self, Shipment};

/// The policy a bucket is under, as this hub knows it: its record, else the default for a
/// bucket created here (this hub's jurisdiction, one copy).
pub fn effective_policy(
    txn: &dyn ReadTxn,
    topology: &Topology,
    hub: &str,
    bucket: &str,
) -> StoreResult<PlacementPolicy> {
    let policy = match load_policy(txn, bucket)? {
        Some(record) => record.policy,
        None => {
            let me = topology
                .hub(hub)
                .ok_or_else(|| StoreError::Meta(format!("hub {hub:?} is not in the topology")))?;
            PlacementPolicy::local_default(me)
        }
    };
    held_to_floors(txn, topology, bucket, &policy)
}

/// `policy` held to the floors copies set on `bucket`: data copied in never goes further than
/// its origin allowed, whatever the bucket's own policy says.
pub fn held_to_floors(
    txn: &dyn ReadTxn,
    topology: &Topology,
    bucket: &str,
    policy: &PlacementPolicy,
) -> StoreResult<PlacementPolicy> {
    let floors: Vec<valley_policy::Floor> = crate::control::load_floors(txn, bucket)?
        .into_iter()
        .map(|r| r.floor)
        .collect();
    Ok(policy.within_floors(&floors, topology))
}

pub fn today() -> valley_policy::Day {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs / 86_400).unwrap_or(0)
}

pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub struct OutboxHook {
    pub hub: String,
    pub topology: Arc<Topology>,
    pub wake: Arc<tokio::sync::Notify>,
}

impl OutboxHook {
    fn policy_and_write_check(&self, txn: &dyn ReadTxn, bucket: &str, bytes: u64) -> StoreResult<PlacementPolicy> {
        let policy = effective_policy(txn, &self.topology, &self.hub, bucket)?;
        let grants = crate::control::grants(txn)?;
        let decision = decide(
            &self.topology,
            &grants,
            &Transfer {
                kind: TransferKind::Write,
                bucket,
                // A write stays at this hub: no grant enters into it, so whose data it is
                // does not either.
                tenant: valley_types::DEFAULT_TENANT,
                policy: &policy,
                from: &self.hub,
                to: &self.hub,
                bytes,
                individuals: None,
                exported: &valley_policy::rules::ExportedVolumes::new(),
                today: today(),
            },
        );
        if !decision.allowed {
            return Err(StoreError::Refused(decision.reason));
        }
        Ok(policy)
    }
}

impl OutboxHook {
    /// The policy decision every local write pays for, inside its transaction: residency
    /// (refused with the rule) and the hubs its copies go to. Public so its cost can be
    /// measured on its own (`examples/policy_check_cost.rs`).
    pub fn decide_write(
        &self,
        txn: &dyn ReadTxn,
        bucket: &str,
        bytes: u64,
    ) -> StoreResult<(PlacementPolicy, Vec<String>)> {
        let policy = self.policy_and_write_check(txn, bucket, bytes)?;
        let lost = crate::control::lost_hubs(txn)?;
        let targets = place_avoiding(&policy, &self.topology, &self.hub, false, &lost)
            .map_err(|why| StoreError::Refused(format!("bucket {bucket:?}: {why}")))?;
        Ok((policy, targets))
    }
}

/// Back-pressure: refuses a write to `bucket` (SlowDown) while its oldest write not yet
/// replicated to one of `copies` is older than `max_lag` seconds. Refused writes add nothing to
/// the backlog, so the refusals end as soon as the link has carried the old writes: the
/// bucket's recovery point stays bounded instead of growing with the outage.
fn check_lag(txn: &dyn ReadTxn, bucket: &str, copies: &[&String], max_lag: u32) -> StoreResult<()> {
    let now = now_unix_ms();
    for peer in copies {
        if let Some(oldest) = outbox::bucket_oldest(txn, peer, bucket)? {
            let lag_ms = now.saturating_sub(oldest);
            if lag_ms > u64::from(max_lag) * 1000 {
                return Err(StoreError::SlowDown(format!(
                    "bucket {bucket:?} is {:.1} s behind on its copy at hub {peer}, over its max_lag_seconds of {max_lag}: \
                     slow down and retry once replication has caught up",
                    lag_ms as f64 / 1000.0
                )));
            }
        }
    }
    Ok(())
}

impl VersionHook for OutboxHook {
    fn on_local_version(
        &self,
        txn: &mut dyn WriteTxn,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
    ) -> StoreResult<()> {
        let (policy, targets) = self.decide_write(txn, bucket, version.size)?;
        let shipment = Shipment::Put {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            hlc: version.hlc,
            origin: version.origin.clone(),
        };
        let copies: Vec<&String> = targets.iter().filter(|t| **t != self.hub).collect();
        if let Some(max_lag) = policy.max_lag_seconds {
            check_lag(txn, bucket, &copies, max_lag)?;
        }
        outbox::push_to_each(txn, copies, &shipment, version.size)?;
        // The other hubs the policy allows may hold older versions of the key, placed there by
        // writes at other hubs. A new null version replaces them: they are told to drop null
        // versions older than this one (stamped one tick earlier, so this version itself still
        // applies there if placement later brings it). A new version of a versioned key does
        // not replace the older ones, but they must not be served as the latest: those hubs
        // are told a newer version exists.
        let notice = match &version.version_id {
            Some(_) => Shipment::Newer {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                hlc: version.hlc,
                origin: version.origin.clone(),
            },
            None => Shipment::Delete {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                version_id: None,
                hlc: version.hlc.saturating_sub(1),
                origin: version.origin.clone(),
            },
        };
        let others: Vec<&String> = self
            .topology
            .hubs()
            .filter(|h| h.id != self.hub && policy.allows(h) && !targets.contains(&h.id))
            .map(|h| &h.id)
            .collect();
        outbox::push_to_each(txn, others, &notice, 0)?;
        self.wake.notify_waiters();
        Ok(())
    }

    fn on_local_delete(
        &self,
        txn: &mut dyn WriteTxn,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
    ) -> StoreResult<()> {
        let policy = effective_policy(txn, &self.topology, &self.hub, bucket)?;
        let shipment = Shipment::Delete {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: version.version_id.clone(),
            hlc: version.hlc,
            origin: version.origin.clone(),
        };
        // A copy may be at any hub the policy allows (placements change), so tell them all.
        let peers: Vec<&String> = self
            .topology
            .hubs()
            .filter(|h| h.id != self.hub && policy.allows(h))
            .map(|h| &h.id)
            .collect();
        outbox::push_to_each(txn, peers, &shipment, 0)?;
        self.wake.notify_waiters();
        Ok(())
    }
}
