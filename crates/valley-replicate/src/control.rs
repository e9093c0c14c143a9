//! Control-plane records: each bucket's placement policy and the network's grants. They are
//! metadata, not object data, so every hub holds all of them (a hub must know a bucket's policy
//! to refuse data it may not hold). Changes spread through the outbox like object versions and
//! apply last-writer-wins on `(hlc, origin)`. Stored as JSON (rare, small, and readable when
//! debugging) in the metadata store's control table.

use serde::{Deserialize, Serialize};
use valley_policy::{Floor, Grant, PlacementPolicy};
use valley_store::{ReadTxn, StoreError, StoreResult, Table, WriteTxn};

const POLICY_PREFIX: &str = "policy/";
const GRANT_PREFIX: &str = "grant/";
const HUB_PREFIX: &str = "hub/";
const VERSIONING_PREFIX: &str = "versioning/";
const FLOOR_PREFIX: &str = "floor/";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub policy: PlacementPolicy,
    pub hlc: u64,
    pub origin: String,
    /// The bucket was deleted (the record stays so a late, older policy cannot revive it).
    #[serde(default)]
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub grant: Grant,
    pub hlc: u64,
    pub origin: String,
}

/// A hub declared lost for good (its site destroyed, its disks gone) or back in service. A
/// lost hub is passed over by placement, so the copies it held are re-created on the next
/// hubs the policy allows; anti-entropy does the copying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubStateRecord {
    pub lost: bool,
    /// Why, for the audit log and `valley status` (e.g. "no contact for 900 s", an operator's note).
    #[serde(default)]
    pub reason: String,
    pub hlc: u64,
    pub origin: String,
}

/// A bucket's versioning state: a bucket is one bucket across the network, so enabling
/// versioning at one hub enables it at every hub that may hold its versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersioningRecord {
    pub versioning: valley_store::record::Versioning,
    pub hlc: u64,
    pub origin: String,
}

/// A residency floor a copy set on a bucket (see `valley_policy::floor`). Floors merge by
/// narrowing, not last-writer-wins: whatever order hubs learn two floors of the same source in,
/// they hold their intersection (stamped with the newer of the two).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloorRecord {
    pub floor: Floor,
    pub hlc: u64,
    pub origin: String,
}

/// A control-plane change as it travels between hubs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ControlChange {
    Policy {
        bucket: String,
        record: PolicyRecord,
    },
    Grant {
        record: GrantRecord,
    },
    HubState {
        hub: String,
        record: HubStateRecord,
    },
    Versioning {
        bucket: String,
        record: VersioningRecord,
    },
    Floor {
        bucket: String,
        record: FloorRecord,
    },
    /// A tenant, user, access key or bucket owner (`valley_tenants`).
    Tenants {
        change: valley_tenants::Change,
    },
}

impl ControlChange {
    /// What the change is about and its stamp: equal identities are equal changes.
    #[must_use]
    pub fn identity(&self) -> String {
        match self {
            ControlChange::Policy { bucket, record } => format!("policy/{bucket}@{}@{}", record.hlc, record.origin),
            ControlChange::Grant { record } => format!("grant/{}@{}@{}", record.grant.id, record.hlc, record.origin),
            ControlChange::HubState { hub, record } => format!("hub/{hub}@{}@{}", record.hlc, record.origin),
            ControlChange::Versioning { bucket, record } => {
                format!("versioning/{bucket}@{}@{}", record.hlc, record.origin)
            }
            ControlChange::Floor { bucket, record } => format!(
                "floor/{bucket}/{}@{}@{}",
                record.floor.source_bucket, record.hlc, record.origin
            ),
            ControlChange::Tenants { change } => change.identity(),
        }
    }

    #[must_use]
    pub fn hlc(&self) -> u64 {
        match self {
            ControlChange::Policy { record, .. } => record.hlc,
            ControlChange::Grant { record } => record.hlc,
            ControlChange::HubState { record, .. } => record.hlc,
            ControlChange::Versioning { record, .. } => record.hlc,
            ControlChange::Floor { record, .. } => record.hlc,
            ControlChange::Tenants { change } => change.stamp().hlc,
        }
    }
}

fn corrupt(what: &'static str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        what,
        detail: e.to_string(),
    }
}

fn newer(a: (u64, &str), b: (u64, &str)) -> bool {
    a > b
}

pub fn load_policy(txn: &dyn ReadTxn, bucket: &str) -> StoreResult<Option<PolicyRecord>> {
    txn.get(Table::Control, format!("{POLICY_PREFIX}{bucket}").as_bytes())?
        .map(|raw| serde_json::from_slice(&raw).map_err(|e| corrupt("policy record", e)))
        .transpose()
}

/// Stores `record` if it is newer than what is stored; returns whether it was.
pub fn put_policy(txn: &mut dyn WriteTxn, bucket: &str, record: &PolicyRecord) -> StoreResult<bool> {
    if let Some(old) = load_policy(txn, bucket)?
        && !newer((record.hlc, &record.origin), (old.hlc, &old.origin))
    {
        return Ok(false);
    }
    let raw = serde_json::to_vec(record).map_err(|e| corrupt("policy record", e))?;
    txn.put(Table::Control, format!("{POLICY_PREFIX}{bucket}").as_bytes(), &raw);
    Ok(true)
}

/// Every bucket's policy record, by bucket name.
pub fn all_policies(txn: &dyn ReadTxn) -> StoreResult<Vec<(String, PolicyRecord)>> {
    scan_prefix(txn, POLICY_PREFIX)?
        .into_iter()
        .map(|(k, v)| Ok((k, serde_json::from_slice(&v).map_err(|e| corrupt("policy record", e))?)))
        .collect()
}

pub fn load_grants(txn: &dyn ReadTxn) -> StoreResult<Vec<GrantRecord>> {
    scan_prefix(txn, GRANT_PREFIX)?
        .into_iter()
        .map(|(_, v)| serde_json::from_slice(&v).map_err(|e| corrupt("grant record", e)))
        .collect()
}

/// The grants alone, as the policy engine takes them.
pub fn grants(txn: &dyn ReadTxn) -> StoreResult<Vec<Grant>> {
    Ok(load_grants(txn)?.into_iter().map(|g| g.grant).collect())
}

pub fn put_grant(txn: &mut dyn WriteTxn, record: &GrantRecord) -> StoreResult<bool> {
    let key = format!("{GRANT_PREFIX}{}", record.grant.id);
    if let Some(raw) = txn.get(Table::Control, key.as_bytes())? {
        let old: GrantRecord = serde_json::from_slice(&raw).map_err(|e| corrupt("grant record", e))?;
        if !newer((record.hlc, &record.origin), (old.hlc, &old.origin)) {
            return Ok(false);
        }
    }
    let raw = serde_json::to_vec(record).map_err(|e| corrupt("grant record", e))?;
    txn.put(Table::Control, key.as_bytes(), &raw);
    Ok(true)
}

pub fn load_hub_states(txn: &dyn ReadTxn) -> StoreResult<Vec<(String, HubStateRecord)>> {
    scan_prefix(txn, HUB_PREFIX)?
        .into_iter()
        .map(|(k, v)| {
            Ok((
                k,
                serde_json::from_slice(&v).map_err(|e| corrupt("hub state record", e))?,
            ))
        })
        .collect()
}

/// The hubs currently declared lost.
pub fn lost_hubs(txn: &dyn ReadTxn) -> StoreResult<std::collections::BTreeSet<String>> {
    Ok(load_hub_states(txn)?
        .into_iter()
        .filter(|(_, r)| r.lost)
        .map(|(h, _)| h)
        .collect())
}

pub fn put_versioning(txn: &mut dyn WriteTxn, bucket: &str, record: &VersioningRecord) -> StoreResult<bool> {
    let key = format!("{VERSIONING_PREFIX}{bucket}");
    if let Some(raw) = txn.get(Table::Control, key.as_bytes())? {
        let old: VersioningRecord = serde_json::from_slice(&raw).map_err(|e| corrupt("versioning record", e))?;
        if !newer((record.hlc, &record.origin), (old.hlc, &old.origin)) {
            return Ok(false);
        }
    }
    let raw = serde_json::to_vec(record).map_err(|e| corrupt("versioning record", e))?;
    txn.put(Table::Control, key.as_bytes(), &raw);
    Ok(true)
}

pub fn put_hub_state(txn: &mut dyn WriteTxn, hub: &str, record: &HubStateRecord) -> StoreResult<bool> {
    let key = format!("{HUB_PREFIX}{hub}");
    if let Some(raw) = txn.get(Table::Control, key.as_bytes())? {
        let old: HubStateRecord = serde_json::from_slice(&raw).map_err(|e| corrupt("hub state record", e))?;
        if !newer((record.hlc, &record.origin), (old.hlc, &old.origin)) {
            return Ok(false);
        }
    }
    let raw = serde_json::to_vec(record).map_err(|e| corrupt("hub state record", e))?;
    txn.put(Table::Control, key.as_bytes(), &raw);
    Ok(true)
}

fn floor_key(bucket: &str, source: &str) -> String {
    format!("{FLOOR_PREFIX}{bucket}/{source}")
}

/// The floors of `bucket`, one per source bucket copied from.
pub fn load_floors(txn: &dyn ReadTxn, bucket: &str) -> StoreResult<Vec<FloorRecord>> {
    scan_prefix(txn, &format!("{FLOOR_PREFIX}{bucket}/"))?
        .into_iter()
        .map(|(_, v)| serde_json::from_slice(&v).map_err(|e| corrupt("floor record", e)))
        .collect()
}

/// Stores `record` narrowed by what is stored already; returns whether anything changed.
pub fn put_floor(txn: &mut dyn WriteTxn, bucket: &str, record: &FloorRecord) -> StoreResult<bool> {
    let key = floor_key(bucket, &record.floor.source_bucket);
    let merged = match txn.get(Table::Control, key.as_bytes())? {
        None => record.clone(),
        Some(raw) => {
            let old: FloorRecord = serde_json::from_slice(&raw).map_err(|e| corrupt("floor record", e))?;
            let floor = old.floor.narrowed(&record.floor);
            let (hlc, origin) = if newer((record.hlc, &record.origin), (old.hlc, &old.origin)) {
                (record.hlc, record.origin.clone())
            } else {
                (old.hlc, old.origin.clone())
            };
            let merged = FloorRecord { floor, hlc, origin };
            if merged == old {
                return Ok(false);
            }
            merged
        }
    };
    let raw = serde_json::to_vec(&merged).map_err(|e| corrupt("floor record", e))?;
    txn.put(Table::Control, key.as_bytes(), &raw);
    Ok(true)
}

/// Every control record held, as the changes that would recreate it elsewhere.
pub fn all_changes(txn: &dyn ReadTxn) -> StoreResult<Vec<ControlChange>> {
    let mut out: Vec<ControlChange> = all_policies(txn)?
        .into_iter()
        .map(|(bucket, record)| ControlChange::Policy { bucket, record })
        .collect();
    out.extend(
        load_grants(txn)?
            .into_iter()
            .map(|record| ControlChange::Grant { record }),
    );
    out.extend(
        load_hub_states(txn)?
            .into_iter()
            .map(|(hub, record)| ControlChange::HubState { hub, record }),
    );
    for (bucket, raw) in scan_prefix(txn, VERSIONING_PREFIX)? {
        let record = serde_json::from_slice(&raw).map_err(|e| corrupt("versioning record", e))?;
        out.push(ControlChange::Versioning { bucket, record });
    }
    for (key, raw) in scan_prefix(txn, FLOOR_PREFIX)? {
        let record = serde_json::from_slice(&raw).map_err(|e| corrupt("floor record", e))?;
        let bucket = key.split('/').next().unwrap_or_default().to_owned();
        out.push(ControlChange::Floor { bucket, record });
    }
    out.extend(
        valley_tenants::all_changes(txn)?
            .into_iter()
            .map(|change| ControlChange::Tenants { change }),
    );
    Ok(out)
}

/// Applies a change received from a peer or made here.
pub fn apply(txn: &mut dyn WriteTxn, change: &ControlChange) -> StoreResult<bool> {
    match change {
        ControlChange::Policy { bucket, record } => put_policy(txn, bucket, record),
        ControlChange::Grant { record } => put_grant(txn, record),
        ControlChange::HubState { hub, record } => put_hub_state(txn, hub, record),
        ControlChange::Versioning { bucket, record } => put_versioning(txn, bucket, record),
        ControlChange::Floor { bucket, record } => put_floor(txn, bucket, record),
        ControlChange::Tenants { change } => valley_tenants::apply(txn, change),
    }
}

pub(crate) fn scan_prefix(txn: &dyn ReadTxn, prefix: &str) -> StoreResult<Vec<(String, Vec<u8>)>> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    Ok(txn
        .scan(Table::Control, prefix.as_bytes(), Some(&end), usize::MAX)?
        .into_iter()
        .filter_map(|(k, v)| Some((String::from_utf8(k).ok()?.strip_prefix(prefix)?.to_owned(), v)))
        .collect())
}
