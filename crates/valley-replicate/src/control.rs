//! Control-plane records: each bucket's placement policy and the network's grants. They are
//! metadata, not object data, so every hub holds all of them (a hub must know a bucket's policy
//! to refuse data it may not hold). Changes spread through the outbox like object versions and
//! apply last-writer-wins on `(hlc, origin)`. Stored as JSON (rare, small, and readable when
//! debugging) in the metadata store's control table.

use serde::{Deserialize, Serialize};
use valley_policy::{Grant, PlacementPolicy};
use valley_store::{ReadTxn, StoreError, StoreResult, Table, WriteTxn};

const POLICY_PREFIX: &str = "policy/";
const GRANT_PREFIX: &str = "grant/";

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

/// A control-plane change as it travels between hubs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ControlChange {
    Policy { bucket: String, record: PolicyRecord },
    Grant { record: GrantRecord },
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

/// Applies a change received from a peer or made here.
pub fn apply(txn: &mut dyn WriteTxn, change: &ControlChange) -> StoreResult<bool> {
    match change {
        ControlChange::Policy { bucket, record } => put_policy(txn, bucket, record),
        ControlChange::Grant { record } => put_grant(txn, record),
    }
}

fn scan_prefix(txn: &dyn ReadTxn, prefix: &str) -> StoreResult<Vec<(String, Vec<u8>)>> {
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
