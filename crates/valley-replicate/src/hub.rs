//! [`Hub`]: one hub's place in the network — its links ([`crate::links`]), its calls to peers
//! ([`crate::peers`]), its audit log ([`crate::auditor`]), and the control-plane operations
//! that need several of them.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use valley_audit::{AuditEvent, AuditKind};
use valley_policy::{Grant, PlacementPolicy, Topology};
use valley_store::{Catalog, ReadTxn, StoreError, StoreResult, WriteTxn};
use valley_types::HlcClock;

use crate::auditor::Auditor;
use crate::client::PeerError;
use crate::control::{self, ControlChange, GrantRecord, PolicyRecord};
use crate::grant_ledger::GrantLedger;
use crate::hook::{OutboxHook, effective_policy, now_unix_ms};
use crate::links::{LinkStatus, Links};
use crate::outbox::{self, Shipment};
use crate::peers::Peers;
use crate::policy_cache::PolicyCache;

/// What went wrong with a network operation, said for an operator.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("audit log: {0}")]
    Audit(#[from] valley_audit::AuditError),
}

/// What one bucket still has to replicate from this hub over one link.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct BucketBacklog {
    pub bucket: String,
    /// The sending hub, and the receiving one (both absent from hubs of the previous release,
    /// which summed all links).
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub peer: String,
    pub entries: u64,
    pub bytes: u64,
    pub lag_seconds: f64,
}

/// One hub's place in the network: the parts below, and the control-plane operations that
/// need several of them (publishing and receiving policies, grants and hub states).
pub struct Hub {
    pub id: String,
    pub topology: Arc<Topology>,
    pub catalog: Catalog,
    pub links: Links,
    pub peers: Peers,
    pub auditor: Auditor,
    /// Stamps the control records made here (and observes those received), so that every hub
    /// settles on the same newest record.
    clock: HlcClock,
    policy_cache: PolicyCache,
    pub(crate) grant_ledger: GrantLedger,
    /// Wakes anti-entropy early (a hub lost or back, a policy changed, a link healed).
    pub(crate) repair_wake: Arc<tokio::sync::Notify>,
    /// The tenant directory, told of tenant records received from peers.
    directory: std::sync::OnceLock<Arc<valley_tenants::Directory>>,
    /// Versions and bytes delivered to each peer, per bucket.
    pub moved: crate::moved::MovedTraffic,
}

/// Ships tenant records to every peer through the outbox, in the transaction that applies them.
struct TenantReplication {
    peers: Vec<String>,
    wake: Arc<tokio::sync::Notify>,
}

impl valley_tenants::Replicate for TenantReplication {
    fn queue(&self, txn: &mut dyn WriteTxn, change: &valley_tenants::Change) -> StoreResult<()> {
        let shipment = Shipment::Control {
            change: ControlChange::Tenants { change: change.clone() },
        };
        outbox::push_to_each(txn, &self.peers, &shipment, 0)
    }

    fn committed(&self) {
        self.wake.notify_waiters();
    }
}

/// The hook to install in the catalog before building the [`Hub`] (they share `wake`).
pub fn outbox_hook(id: &str, topology: Arc<Topology>, wake: Arc<tokio::sync::Notify>) -> Arc<OutboxHook> {
    Arc::new(OutboxHook {
        hub: id.to_owned(),
        topology,
        wake,
    })
}

impl Hub {
    /// `catalog` must carry the hook from [`outbox_hook`] built with the same `wake`.
    pub fn open(
        id: &str,
        topology: Arc<Topology>,
        catalog: Catalog,
        network_secret: Vec<u8>,
        tls: Option<&valley_tls::PeerTls>,
        wake: Arc<tokio::sync::Notify>,
        data_dir: &Path,
    ) -> Result<Self, HubError> {
        if topology.hub(id).is_none() {
            return Err(HubError::Invalid(format!("hub {id:?} is not declared in the topology")));
        }
        for hub in topology.hubs() {
            if hub.peer_endpoint.is_none() {
                return Err(HubError::Invalid(format!(
                    "hub {:?} has no peer_endpoint in the topology",
                    hub.id
                )));
            }
        }
        let auditor = Auditor::open(id, data_dir)?;
        let peers = Peers::open(id, topology.clone(), network_secret, tls)?;
        let links = Links::new(id, &topology, wake);
        Ok(Self {
            id: id.to_owned(),
            topology,
            catalog,
            links,
            peers,
            auditor,
            clock: HlcClock::new(),
            policy_cache: PolicyCache::default(),
            grant_ledger: GrantLedger::default(),
            repair_wake: Arc::new(tokio::sync::Notify::new()),
            directory: std::sync::OnceLock::new(),
            moved: crate::moved::MovedTraffic::default(),
        })
    }

    /// Puts the tenant directory on the network: its changes ship to every peer, and the
    /// tenant records peers send reach it.
    pub fn attach_directory(&self, directory: Arc<valley_tenants::Directory>) {
        directory.set_replicate(Arc::new(TenantReplication {
            peers: self.peers.ids(),
            wake: self.links.wake.clone(),
        }));
        let _ = self.directory.set(directory);
    }

    /// The tenant owning `bucket`: whose grants its data may cross a border under. Buckets of
    /// a hub without a directory, and of before tenants, are the default tenant's.
    pub fn owner_of(&self, bucket: &str) -> String {
        self.directory
            .get()
            .map_or_else(|| valley_types::DEFAULT_TENANT.to_owned(), |d| d.owner_of(bucket))
    }

    pub(crate) async fn read<R: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn ReadTxn) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        let meta = self.catalog.meta().clone();
        tokio::task::spawn_blocking(move || work(meta.snapshot()?.as_ref()))
            .await
            .map_err(|e| StoreError::Meta(e.to_string()))?
    }

    pub(crate) async fn write<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut dyn WriteTxn) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        let meta = self.catalog.meta().clone();
        tokio::task::spawn_blocking(move || {
            let slot = Arc::new(Mutex::new(None));
            let out = slot.clone();
            meta.write(Box::new(move |txn| {
                let value = work(txn)?;
                if let Ok(mut s) = out.lock() {
                    *s = Some(value);
                }
                Ok(())
            }))?;
            let value = slot.lock().ok().and_then(|mut s| s.take());
            value.ok_or_else(|| StoreError::Meta("write produced no result".into()))
        })
        .await
        .map_err(|e| StoreError::Meta(e.to_string()))?
    }

    // ---- control plane ----

    /// The policy `bucket` is under at this hub.
    pub async fn policy(&self, bucket: &str) -> Result<PlacementPolicy, HubError> {
        self.catalog.bucket(bucket).await?;
        Ok(self.effective_policy(bucket).await?)
    }

    /// The policy `bucket` is under at this hub (its record, else the local default).
    pub(crate) async fn effective_policy(&self, bucket: &str) -> StoreResult<PlacementPolicy> {
        let (topology, id, bucket) = (self.topology.clone(), self.id.clone(), bucket.to_owned());
        self.read(move |txn| effective_policy(txn, &topology, &id, &bucket))
            .await
    }

    /// `policy` held to `bucket`'s floors: what the hubs would place the bucket by.
    pub(crate) async fn held_to_floors(&self, bucket: &str, policy: &PlacementPolicy) -> StoreResult<PlacementPolicy> {
        let (topology, bucket, policy) = (self.topology.clone(), bucket.to_owned(), policy.clone());
        self.read(move |txn| crate::hook::held_to_floors(txn, &topology, &bucket, &policy))
            .await
    }

    /// The policy engine's decision on moving `bytes` of `bucket`'s data (object `key`) from
    /// hub `from` to hub `to` under `policy` and the grants this hub knows. A refusal is
    /// audited here, naming the other hub.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn judge(
        &self,
        kind: valley_policy::TransferKind,
        bucket: &str,
        key: &str,
        policy: &PlacementPolicy,
        from: &str,
        to: &str,
        bytes: u64,
        individuals: Option<u64>,
    ) -> StoreResult<valley_policy::Decision> {
        let grants = self.read(control::grants).await?;
        let (decision, refusal) = self.decide_with(&grants, kind, bucket, key, policy, from, to, bytes, individuals);
        if let Some(event) = refusal {
            self.auditor.record(event).await;
        }
        Ok(decision)
    }

    /// The decision on one transfer under `grants`, and the audit record of a refusal (for
    /// callers that judge many transfers and record their refusals together).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decide_with(
        &self,
        grants: &[valley_policy::Grant],
        kind: valley_policy::TransferKind,
        bucket: &str,
        key: &str,
        policy: &PlacementPolicy,
        from: &str,
        to: &str,
        bytes: u64,
        individuals: Option<u64>,
    ) -> (valley_policy::Decision, Option<AuditEvent>) {
        let tenant = self.owner_of(bucket);
        // What the tenant has exported so far is the accountant's to know: a transfer under a
        // volume-limited basis is held to it when reserved (`reserve_export`).
        let exported = valley_policy::rules::ExportedVolumes::new();
        let decision = valley_policy::decide(
            &self.topology,
            grants,
            &valley_policy::Transfer {
                kind,
                bucket,
                tenant: &tenant,
                policy,
                from,
                to,
                bytes,
                individuals,
                exported: &exported,
                today: crate::hook::today(),
            },
        );
        if decision.allowed {
            return (decision, None);
        }
        let (peer, detail) = if to == self.id {
            (from, format!("incoming {}", decision.reason))
        } else {
            (to, decision.reason.clone())
        };
        let event = self
            .auditor
            .event(AuditKind::PolicyDecision, detail)
            .with_bucket(bucket)
            .with_key(key)
            .with_peer(peer)
            .with_allowed(false)
            .with_rule(format!("{:?}", decision.rule))
            .with_bytes(bytes);
        (decision, Some(event))
    }

    /// Sets `bucket`'s policy here and sends it to every peer.
    pub async fn set_policy(self: &Arc<Self>, bucket: &str, policy: PlacementPolicy) -> Result<(), HubError> {
        policy.validate(&self.topology).map_err(HubError::Invalid)?;
        self.catalog.bucket(bucket).await?;
        let record = PolicyRecord {
            policy,
            hlc: self.clock.now().0,
            origin: self.id.clone(),
            deleted: false,
        };
        let detail = format!(
            "policy of bucket {bucket:?} set to {}",
            serde_json::to_string(&record.policy).unwrap_or_default()
        );
        self.publish(ControlChange::Policy {
            bucket: bucket.to_owned(),
            record,
        })
        .await?;
        self.auditor
            .record(self.auditor.event(AuditKind::PolicyChange, detail).with_bucket(bucket))
            .await;
        Ok(())
    }

    /// A server-side copy of `source_bucket`'s data (object `key`) into `dest_bucket` at this
    /// hub, decided before a byte moves: for every hub the destination's policy allows (held to
    /// its floors), the source's policy and grants must allow the source's data there (the
    /// engine decides a transfer of kind `copy` from this hub to each). `Err` names the rule
    /// (audited). When allowed, the destination takes on the source's floor, so no later policy
    /// change of the destination carries the copy further.
    pub async fn check_copy(self: &Arc<Self>, source_bucket: &str, key: &str, dest_bucket: &str) -> Result<(), String> {
        if source_bucket == dest_bucket {
            return Ok(());
        }
        let internal = |e: StoreError| e.to_string();
        let source = self.effective_policy(source_bucket).await.map_err(internal)?;
        let dest = self.effective_policy(dest_bucket).await.map_err(internal)?;
        let individuals = match self.catalog.object(source_bucket, key, None).await {
            Ok(version) => valley_policy::placement::declared_individuals(&version.headers.user_metadata, &source),
            Err(_) => source.individuals_per_object,
        };
        for hub in self.topology.hubs().filter(|h| dest.allows(h)) {
            let decision = self
                .judge(
                    valley_policy::TransferKind::Copy,
                    source_bucket,
                    key,
                    &source,
                    &self.id,
                    &hub.id,
                    0,
                    individuals,
                )
                .await
                .map_err(internal)?;
            if !decision.allowed {
                return Err(format!(
                    "copy of {source_bucket}/{key} into bucket {dest_bucket:?} refused: its policy allows hub {}, and {}",
                    hub.id, decision.reason
                ));
            }
        }
        let floor = valley_policy::Floor::of(source_bucket, &source, &self.topology);
        let record = control::FloorRecord {
            floor,
            hlc: self.clock.now().0,
            origin: self.id.clone(),
        };
        // A floor of the same source that is already as narrow needs no new record (every copy
        // would publish one otherwise); a floor of another source is never taken for it.
        let unchanged = {
            let (bucket, record) = (dest_bucket.to_owned(), record.clone());
            self.read(move |txn| {
                Ok(control::load_floors(txn, &bucket)?.iter().any(|old| {
                    old.floor.source_bucket == record.floor.source_bucket
                        && old.floor.narrowed(&record.floor) == old.floor
                }))
            })
            .await
            .map_err(internal)?
        };
        if !unchanged {
            let detail = format!(
                "bucket {dest_bucket:?} holds data copied from {source_bucket:?}: held from now on to hubs [{}]",
                record.floor.hubs.iter().cloned().collect::<Vec<_>>().join(", ")
            );
            self.publish(ControlChange::Floor {
                bucket: dest_bucket.to_owned(),
                record,
            })
            .await
            .map_err(|e| e.to_string())?;
            self.auditor
                .record(
                    self.auditor
                        .event(AuditKind::PolicyChange, detail)
                        .with_bucket(dest_bucket),
                )
                .await;
        }
        Ok(())
    }

    /// The network's records of a bucket created here, to write in the bucket's own
    /// transaction: the default policy (this hub's jurisdiction, one copy) unless the bucket
    /// already has one, queued for every peer. Call [`Hub::bucket_recorded`] once committed.
    pub fn bucket_created_writes(&self, bucket: &str) -> Result<(valley_store::WriteJob, Arc<Mutex<bool>>), HubError> {
        let me = self
            .topology
            .hub(&self.id)
            .ok_or_else(|| HubError::Invalid("this hub left the topology".into()))?;
        let change = ControlChange::Policy {
            bucket: bucket.to_owned(),
            record: PolicyRecord {
                policy: PlacementPolicy::local_default(me),
                hlc: self.clock.now().0,
                origin: self.id.clone(),
                deleted: false,
            },
        };
        let peers = self.peers.ids();
        let bucket = bucket.to_owned();
        let written = Arc::new(Mutex::new(false));
        let wrote = written.clone();
        let write = move |txn: &mut dyn WriteTxn| {
            // A policy set before the bucket was made (or received) stands.
            if control::load_policy(txn, &bucket)?.is_some_and(|r| !r.deleted) {
                return Ok(());
            }
            control::apply(txn, &change)?;
            outbox::push_to_each(txn, &peers, &Shipment::Control { change }, 0)?;
            if let Ok(mut w) = wrote.lock() {
                *w = true;
            }
            Ok(())
        };
        Ok((Box::new(write), written))
    }

    /// After the transaction of [`Hub::bucket_created_writes`] committed: wake the senders and
    /// audit the default policy if it was written.
    pub async fn bucket_recorded(self: &Arc<Self>, bucket: &str, written: &Mutex<bool>) {
        if !written.lock().is_ok_and(|w| *w) {
            return;
        }
        self.links.wake_senders();
        self.policy_cache.invalidate();
        self.repair_wake.notify_one();
        let jurisdiction = self.topology.hub(&self.id).map_or("", |h| h.jurisdiction.as_str());
        self.auditor
            .record(
                self.auditor
                    .event(
                        AuditKind::PolicyChange,
                        format!("bucket {bucket:?} created with the default policy ({jurisdiction} only, one copy)"),
                    )
                    .with_bucket(bucket),
            )
            .await;
    }

    pub async fn add_grant(self: &Arc<Self>, mut grant: Grant) -> Result<Grant, HubError> {
        let known = self.topology.jurisdictions();
        for j in [&grant.from, &grant.to] {
            if !known.contains(&j.as_str()) {
                return Err(HubError::Invalid(format!(
                    "no hub of the network is in jurisdiction {j:?}"
                )));
            }
        }
        if grant.from == grant.to {
            return Err(HubError::Invalid(
                "a grant is for a flow between two different jurisdictions".into(),
            ));
        }
        if grant.classifications.is_empty() {
            return Err(HubError::Invalid(
                "a grant must cover at least one classification".into(),
            ));
        }
        // The law as data: a basis the rule packs do not accept for this flow is refused now,
        // naming the rule and its source, rather than recorded and refused at every transfer.
        let judged = self.topology.rules().judge(&grant, crate::hook::today());
        if !judged.accepted {
            return Err(HubError::Invalid(format!("grant refused: {}", judged.reason)));
        }
        if grant.id.is_empty() {
            grant.id = format!("g-{}", hex::encode(rand::random::<[u8; 4]>()));
        }
        // Grant ids are network-wide: one tenant's record never replaces another's.
        if let Some(taken) = self.grants().await?.into_iter().find(|g| g.id == grant.id)
            && taken.tenant != grant.tenant
        {
            return Err(HubError::Invalid(format!(
                "grant id {:?} is taken by another tenant: choose another id",
                grant.id
            )));
        }
        let record = GrantRecord {
            grant: grant.clone(),
            hlc: self.clock.now().0,
            origin: self.id.clone(),
        };
        self.publish(ControlChange::Grant { record }).await?;
        self.auditor
            .record(
                self.auditor
                    .event(
                        AuditKind::GrantChange,
                        format!(
                            "grant {} of tenant {} added: {} -> {} for [{}], basis {:?}, ref {}, expires {}",
                            grant.id,
                            grant.tenant,
                            grant.from,
                            grant.to,
                            grant.classifications.join(", "),
                            grant.basis,
                            grant.reference,
                            valley_policy::date_of(grant.expires)
                        ),
                    )
                    .with_grant(grant.id.clone()),
            )
            .await;
        Ok(grant)
    }

    /// Revokes grant `id`: a tenant's admin revokes its own tenant's grants (`tenant`), the
    /// operator any (`None`: revoking only ever stops flows).
    pub async fn revoke_grant(self: &Arc<Self>, id: &str, tenant: Option<&str>) -> Result<(), HubError> {
        let mut grant = self
            .grants()
            .await?
            .into_iter()
            .find(|g| g.id == id && tenant.is_none_or(|t| g.tenant == t))
            .ok_or_else(|| HubError::NotFound(format!("no grant {id:?}")))?;
        grant.revoked = true;
        let record = GrantRecord {
            grant,
            hlc: self.clock.now().0,
            origin: self.id.clone(),
        };
        self.publish(ControlChange::Grant { record }).await?;
        self.auditor
            .record(
                self.auditor
                    .event(AuditKind::GrantChange, format!("grant {id} revoked"))
                    .with_grant(id),
            )
            .await;
        Ok(())
    }

    /// The network's record of `bucket`'s versioning set here by a client, to write in the
    /// transaction that sets it on the bucket, queued for every peer; then wake the senders.
    pub fn versioning_writes(
        &self,
        bucket: &str,
        versioning: valley_store::record::Versioning,
    ) -> impl FnOnce(&mut dyn WriteTxn) -> StoreResult<()> + Send + 'static {
        let change = ControlChange::Versioning {
            bucket: bucket.to_owned(),
            record: control::VersioningRecord {
                versioning,
                hlc: self.clock.now().0,
                origin: self.id.clone(),
            },
        };
        let peers = self.peers.ids();
        move |txn: &mut dyn WriteTxn| {
            control::apply(txn, &change)?;
            outbox::push_to_each(txn, &peers, &Shipment::Control { change }, 0)
        }
    }

    /// Declares `hub` lost for good (placement passes it over; its copies are re-created on
    /// other allowed hubs) or back in service, at every hub.
    pub async fn set_hub_state(self: &Arc<Self>, hub: &str, lost: bool, reason: String) -> Result<(), HubError> {
        if self.topology.hub(hub).is_none() {
            return Err(HubError::NotFound(format!("no hub {hub:?} in the topology")));
        }
        if hub == self.id && lost {
            return Err(HubError::Invalid(format!(
                "hub {hub} cannot declare itself lost; ask another hub of the network"
            )));
        }
        let detail = format!(
            "hub {hub} declared {}: {reason}",
            if lost { "lost" } else { "back in service" }
        );
        let record = control::HubStateRecord {
            lost,
            reason,
            hlc: self.clock.now().0,
            origin: self.id.clone(),
        };
        self.publish(ControlChange::HubState {
            hub: hub.to_owned(),
            record,
        })
        .await?;
        tracing::warn!("{detail}");
        self.auditor
            .record(self.auditor.event(AuditKind::PolicyChange, detail).with_peer(hub))
            .await;
        Ok(())
    }

    /// Every hub's declared state (only hubs ever declared lost have one).
    pub async fn hub_states(&self) -> Result<Vec<(String, control::HubStateRecord)>, HubError> {
        Ok(self.read(control::load_hub_states).await?)
    }

    /// Reserves `bytes` of grant `grant_id`'s yearly volume for transfer `transfer`, at the
    /// grant's accountant (the hub that recorded it): `Refused` when the grant cannot carry
    /// them, `Unreachable` when the accountant cannot be asked (the transfer waits).
    pub async fn reserve_grant(
        &self,
        grant_id: &str,
        transfer: &str,
        bytes: u64,
        individuals: Option<u64>,
    ) -> Result<(), PeerError> {
        let record = {
            let id = grant_id.to_owned();
            self.read(move |txn| Ok(control::load_grants(txn)?.into_iter().find(|r| r.grant.id == id)))
                .await
                .map_err(|e| PeerError::Unreachable(format!("local store: {e}")))?
        };
        let Some(record) = record else {
            return Err(PeerError::Refused(format!("grant {grant_id} is unknown")));
        };
        if record.grant.volume_cap_bytes.is_none() && record.grant.volume_cap_individuals.is_none() {
            return Ok(());
        }
        if record.origin == self.id || self.topology.hub(&record.origin).is_none() {
            return self
                .account_grant_use(grant_id, transfer, bytes, individuals)
                .await
                .map_err(PeerError::Refused);
        }
        let request = crate::wire::GrantUse {
            grant: grant_id.to_owned(),
            transfer: transfer.to_owned(),
            bytes,
            individuals,
        };
        let _: crate::wire::Outcome = self.peers.post_json(&record.origin, "grant-use", &request).await?;
        Ok(())
    }

    /// As the accountant of grant `grant_id`: counts `bytes` for `transfer` if the grant can
    /// carry them this year (a transfer already counted is not counted again).
    pub(crate) async fn account_grant_use(
        &self,
        grant_id: &str,
        transfer: &str,
        bytes: u64,
        individuals: Option<u64>,
    ) -> Result<(), String> {
        if self.grant_ledger.counted(transfer) {
            return Ok(());
        }
        let id = grant_id.to_owned();
        let outcome = self
            .write(move |txn| {
                let mut records = control::load_grants(txn)?;
                let Some(record) = records.iter_mut().find(|r| r.grant.id == id) else {
                    return Ok(Err(format!("grant {id} is unknown")));
                };
                let today = crate::hook::today();
                if let Some(why) = record.grant.refusal(today, bytes, individuals) {
                    return Ok(Err(why));
                }
                record.grant.record_use(today, bytes, individuals.unwrap_or(0));
                // Usage is this hub's own count (it is the accountant): the record keeps its
                // stamp and is not re-published.
                let raw = serde_json::to_vec(record).map_err(|e| StoreError::Meta(e.to_string()))?;
                txn.put(valley_store::Table::Control, format!("grant/{id}").as_bytes(), &raw);
                Ok(Ok(()))
            })
            .await
            .map_err(|e| e.to_string())?;
        if outcome.is_ok() {
            self.grant_ledger.remember(transfer);
        }
        outcome
    }

    pub async fn grants(&self) -> Result<Vec<Grant>, HubError> {
        Ok(self
            .read(control::load_grants)
            .await?
            .into_iter()
            .map(|r| r.grant)
            .collect())
    }

    /// The grants `tenant` recorded.
    pub async fn grants_of(&self, tenant: &str) -> Result<Vec<Grant>, HubError> {
        let mut grants = self.grants().await?;
        grants.retain(|g| g.tenant == tenant);
        Ok(grants)
    }

    /// Applies a control change here and queues it for every peer, in one transaction.
    async fn publish(self: &Arc<Self>, change: ControlChange) -> Result<(), HubError> {
        let peers = self.peers.ids();
        let queued = change.clone();
        self.write(move |txn| {
            control::apply(txn, &queued)?;
            outbox::push_to_each(txn, &peers, &Shipment::Control { change: queued }, 0)
        })
        .await?;
        self.links.wake_senders();
        self.after_control_change(&change).await;
        Ok(())
    }

    /// Applies a control change received from `from`.
    pub async fn receive_control(self: &Arc<Self>, from: &str, change: ControlChange) -> Result<bool, HubError> {
        self.clock.observe(valley_types::Hlc(change.hlc()));
        if let ControlChange::Policy { bucket, .. } | ControlChange::Versioning { bucket, .. } = &change {
            match self.catalog.create_bucket(bucket, None).await {
                Ok(()) | Err(StoreError::BucketExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let applied = {
            let change = change.clone();
            self.write(move |txn| control::apply(txn, &change)).await?
        };
        if applied {
            let (kind, detail, bucket) = match &change {
                ControlChange::Policy { bucket, record } => (
                    AuditKind::PolicyChange,
                    format!(
                        "policy of bucket {bucket:?} from {from}: {}",
                        serde_json::to_string(&record.policy).unwrap_or_default()
                    ),
                    Some(bucket.clone()),
                ),
                ControlChange::Grant { record } => (
                    AuditKind::GrantChange,
                    format!(
                        "grant {} from {from} (revoked: {})",
                        record.grant.id, record.grant.revoked
                    ),
                    None,
                ),
                ControlChange::Versioning { bucket, record } => (
                    AuditKind::PolicyChange,
                    format!(
                        "versioning of bucket {bucket:?} set to {:?} by {from}",
                        record.versioning
                    ),
                    Some(bucket.clone()),
                ),
                ControlChange::HubState { hub, record } => (
                    AuditKind::PolicyChange,
                    format!(
                        "hub {hub} declared {} by {from}: {}",
                        if record.lost { "lost" } else { "back in service" },
                        record.reason
                    ),
                    None,
                ),
                ControlChange::Floor { bucket, record } => (
                    AuditKind::PolicyChange,
                    format!(
                        "bucket {bucket:?} holds data copied from {:?} (learned from {from}): held to hubs [{}]",
                        record.floor.source_bucket,
                        record.floor.hubs.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                    Some(bucket.clone()),
                ),
                ControlChange::Tenants { change } => {
                    if let Some(directory) = self.directory.get() {
                        directory.received(change);
                    }
                    let bucket = match change {
                        valley_tenants::Change::BucketOwner(r) => Some(r.bucket.clone()),
                        valley_tenants::Change::KmsKey(r) => r.bucket.clone(),
                        _ => None,
                    };
                    let kind = match change {
                        valley_tenants::Change::KmsKey(_) => AuditKind::KeyDestroyed,
                        _ => AuditKind::PolicyChange,
                    };
                    (kind, format!("{} (from {from})", change.describe()), bucket)
                }
            };
            let mut event = self.auditor.event(kind, detail).with_peer(from);
            if let Some(b) = bucket {
                event = event.with_bucket(b);
            }
            self.auditor.record(event).await;
            self.after_control_change(&change).await;
        }
        Ok(applied)
    }

    /// A policy or hub-state change may move copies: start a repair round. (A policy that no
    /// longer allows this hub strands its copies here; the round hands them to the hubs that
    /// now should hold them and drops them only once those do.)
    async fn after_control_change(self: &Arc<Self>, change: &ControlChange) {
        if matches!(
            change,
            ControlChange::Policy { .. } | ControlChange::HubState { .. } | ControlChange::Floor { .. }
        ) {
            self.policy_cache.invalidate();
            self.repair_wake.notify_one();
        }
        if let ControlChange::Versioning { bucket, record } = change {
            let versioning = record.versioning;
            if let Err(e) = self
                .catalog
                .update_bucket(bucket, move |b| b.versioning = versioning)
                .await
            {
                tracing::error!(bucket, error = %e, "applying a bucket's versioning failed");
            }
        }
    }

    /// Versions held here of buckets whose policy no longer allows this hub, per bucket:
    /// (bucket, versions, bytes). They stay until they are handed off or purged.
    pub async fn stranded(&self) -> Result<Vec<(String, u64, u64)>, HubError> {
        let Some(me) = self.topology.hub(&self.id) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (bucket, policy) in self.policies().await? {
            if policy.allows(me) {
                continue;
            }
            // From the usage counters: a scrape must not read every version of a bucket.
            let (versions, bytes) = self.catalog.bucket_usage(&bucket).await?;
            if versions > 0 {
                out.push((bucket, versions, bytes));
            }
        }
        Ok(out)
    }

    /// The operator's explicit removal of `bucket`'s stranded copies at this hub (those whose
    /// new hubs could not take them); audited. Refused while the policy allows this hub.
    pub async fn purge_stranded(&self, bucket: &str) -> Result<usize, HubError> {
        let policy = self.policy(bucket).await?;
        if self.topology.hub(&self.id).is_some_and(|me| policy.allows(me)) {
            return Err(HubError::Invalid(format!(
                "bucket {bucket:?} may be held at hub {}: nothing of it is stranded here",
                self.id
            )));
        }
        let removed = self.catalog.purge_bucket_data(bucket).await?;
        self.auditor.record(
            self.auditor.event(
                AuditKind::PolicyDecision,
                format!(
                    "operator purged {removed} stranded versions of bucket {bucket:?}: the policy no longer allows hub {}",
                    self.id
                ),
            )
            .with_bucket(bucket)
            .with_allowed(false),
        )
        .await;
        Ok(removed)
    }

    /// `bucket`'s effective policy from the per-request cache (a map lookup when cached).
    pub async fn cached_policy(&self, bucket: &str) -> Result<PlacementPolicy, String> {
        let load = async { self.effective_policy(bucket).await.map_err(|e| e.to_string()) };
        self.policy_cache.get_or_load(bucket, load).await
    }

    /// Whether this hub may take a client's write into `bucket`: `Err` names the rule.
    pub async fn check_write(&self, bucket: &str) -> Result<(), String> {
        let policy = self.cached_policy(bucket).await?;
        // A write into this hub never crosses a border: grants do not enter into it.
        let grants: Vec<Grant> = Vec::new();
        let decision = valley_policy::decide(
            &self.topology,
            &grants,
            &valley_policy::Transfer {
                kind: valley_policy::TransferKind::Write,
                bucket,
                tenant: valley_types::DEFAULT_TENANT,
                policy: &policy,
                from: &self.id,
                to: &self.id,
                bytes: 0,
                individuals: None,
                exported: &valley_policy::rules::ExportedVolumes::new(),
                today: crate::hook::today(),
            },
        );
        if decision.allowed {
            return Ok(());
        }
        self.auditor
            .record(
                self.auditor
                    .event(
                        AuditKind::RefusedRequest,
                        format!("client write refused: {}", decision.reason),
                    )
                    .with_bucket(bucket)
                    .with_allowed(false)
                    .with_rule(format!("{:?}", decision.rule)),
            )
            .await;
        Err(decision.reason)
    }

    // ---- status ----

    /// Every link's state; the backlog comes from counters kept with the outbox (exact at the
    /// moment of asking, and as cheap at a million entries as at none).
    pub async fn link_status(&self) -> Vec<LinkStatus> {
        let mut links = self.links.statuses();
        let peers: Vec<String> = links.iter().map(|l| l.peer.clone()).collect();
        let backlogs = self
            .read(move |txn| {
                peers
                    .iter()
                    .map(|peer| outbox::link_backlog(txn, peer))
                    .collect::<StoreResult<Vec<_>>>()
            })
            .await;
        let lost = self.read(control::lost_hubs).await.unwrap_or_default();
        for link in &mut links {
            link.lost = lost.contains(&link.peer);
        }
        if let Ok(backlogs) = backlogs {
            let now = now_unix_ms();
            for (link, backlog) in links.iter_mut().zip(backlogs) {
                link.backlog_entries = backlog.entries;
                link.backlog_bytes = backlog.bytes;
                link.lag_seconds = backlog.lag_seconds(now);
            }
        }
        links
    }

    /// Replication still owed per bucket and link: entries, bytes and the age of the oldest
    /// unreplicated write (the bucket's recovery point on that link), from counters.
    pub async fn bucket_backlog(&self) -> Result<Vec<BucketBacklog>, HubError> {
        let peers = self.peers.ids();
        let rows = self
            .read(move |txn| {
                let mut rows = Vec::new();
                for peer in peers {
                    for (bucket, backlog) in outbox::bucket_backlogs(txn, &peer)? {
                        rows.push((bucket, peer.clone(), backlog));
                    }
                }
                Ok(rows)
            })
            .await?;
        let now = now_unix_ms();
        Ok(rows
            .into_iter()
            .filter(|(bucket, _, _)| !bucket.is_empty())
            .map(|(bucket, peer, backlog)| BucketBacklog {
                bucket,
                from: self.id.clone(),
                peer,
                entries: backlog.entries,
                bytes: backlog.bytes,
                lag_seconds: backlog.lag_seconds(now),
            })
            .collect())
    }

    /// Builds the outbox's index and counters if it was written by a release without them.
    pub async fn prepare_outbox(&self) -> Result<(), HubError> {
        let indexed = self.write(outbox::index_existing).await?;
        if indexed > 0 {
            tracing::info!(
                entries = indexed,
                "indexed the replication backlog of the previous release"
            );
        }
        Ok(())
    }

    /// Objects and bytes this hub holds per bucket (current and noncurrent versions).
    pub async fn inventory(&self) -> Result<crate::wire::Inventory, HubError> {
        let mut buckets = Vec::new();
        for (name, _) in self.catalog.list_buckets().await? {
            let (objects, bytes) = self.catalog.bucket_usage(&name).await?;
            buckets.push(crate::wire::BucketHoldings {
                bucket: name,
                objects,
                bytes,
            });
        }
        Ok(crate::wire::Inventory {
            hub: self.id.clone(),
            buckets,
        })
    }

    /// Every bucket's policy as this hub knows it, held to the bucket's floors.
    pub async fn policies(&self) -> Result<Vec<(String, PlacementPolicy)>, HubError> {
        let topology = self.topology.clone();
        Ok(self
            .read(move |txn| {
                let mut out = Vec::new();
                for (bucket, record) in control::all_policies(txn)? {
                    if !record.deleted {
                        let policy = crate::hook::held_to_floors(txn, &topology, &bucket, &record.policy)?;
                        out.push((bucket, policy));
                    }
                }
                Ok(out)
            })
            .await?)
    }
}
