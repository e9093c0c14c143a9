//! The tenant control records, how they are stored and how a newer one replaces an older one.
//!
//! Stored as JSON (rare, small, readable when debugging) in the control table, wrapped in
//! `{"format": 1, "change": ...}` so a later format can be told apart; on the wire between hubs
//! they travel as the [`Change`] alone, inside the network's control changes.

use serde::{Deserialize, Serialize};
use valley_store::{ReadTxn, StoreError, StoreResult, Table, WriteTxn};

use crate::seal::Sealed;

pub use valley_types::DEFAULT_TENANT;

const FORMAT: u32 = 1;
const TENANT_PREFIX: &str = "tenant/";
const USER_PREFIX: &str = "tenant-user/";
const KEY_PREFIX: &str = "tenant-key/";
const OWNER_PREFIX: &str = "bucket-owner/";
const BUCKET_POLICY_PREFIX: &str = "bucket-policy/";
const BUCKET_SETTING_PREFIX: &str = "bucket-setting/";
const KMS_KEY_PREFIX: &str = "kms-key/";

/// Who wrote a record and when (hybrid logical clock): the larger stamp wins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Stamp {
    pub hlc: u64,
    pub origin: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub bytes: Option<u64>,
    pub objects: Option<u64>,
    pub buckets: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub id: String,
    pub created_unix_ms: u64,
    #[serde(default)]
    pub quota: Quota,
    /// The tenant's Public Access Block: applies to every bucket it owns, on top of the
    /// bucket's own.
    #[serde(default)]
    pub public_access_block: valley_access::PublicAccessBlock,
    /// Removed tenants keep their record, so a late, older copy cannot bring them back.
    #[serde(default)]
    pub removed: bool,
    pub stamp: Stamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub tenant: String,
    pub name: String,
    /// A tenant admin has every right within its tenant, as an AWS account's root user.
    pub admin: bool,
    /// The user's identity policy (IAM JSON), as given.
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub removed: bool,
    pub created_unix_ms: u64,
    pub stamp: Stamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub access_key: String,
    pub tenant: String,
    pub user: String,
    pub secret: Sealed,
    /// Revocation is for good: no record, however new, makes a revoked key work again.
    #[serde(default)]
    pub revoked: bool,
    pub created_unix_ms: u64,
    pub stamp: Stamp,
}

/// Which tenant owns a bucket. Bucket names are unique across the network, as in S3; a
/// bucket with no record belongs to the default tenant (it was created before tenants).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketOwnerRecord {
    pub bucket: String,
    pub tenant: String,
    /// The bucket was deleted: its name is free again.
    #[serde(default)]
    pub deleted: bool,
    pub stamp: Stamp,
}

/// A bucket's policy (IAM JSON, as its owner gave it; `None`: deleted). Bucket-wide, so it
/// replicates like the owner record and applies at every hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketPolicyRecord {
    pub bucket: String,
    pub policy: Option<String>,
    pub stamp: Stamp,
}

/// Which of a bucket's access settings a [`BucketSettingRecord`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BucketSetting {
    /// The bucket's ACL (`valley_access::Acl` as JSON).
    Acl,
    /// Object ownership (`valley_access::ObjectOwnership` as JSON).
    Ownership,
    /// The bucket's Public Access Block (`valley_access::PublicAccessBlock` as JSON).
    PublicAccessBlock,
    /// The bucket's CORS configuration (`valley_access::CorsConfiguration` as JSON).
    Cors,
    /// The bucket's default server-side encryption (`valley_s3::sse::DefaultEncryption` as
    /// JSON, opaque here).
    Encryption,
}

impl BucketSetting {
    fn name(self) -> &'static str {
        match self {
            BucketSetting::Acl => "acl",
            BucketSetting::Ownership => "ownership",
            BucketSetting::PublicAccessBlock => "public-access-block",
            BucketSetting::Cors => "cors",
            BucketSetting::Encryption => "encryption",
        }
    }
}

/// One access setting of a bucket (`None`: deleted, the default applies). Each setting is
/// its own record, so changing one at a hub never undoes a change of another made elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketSettingRecord {
    pub bucket: String,
    pub setting: BucketSetting,
    pub value: Option<String>,
    pub stamp: Stamp,
}

/// A key-service key destroyed (crypto-shredded): a tenant's key-encryption key
/// (`TENANT/NAME`) or one bucket's key. Every object sealed under it is unreadable at every
/// hub for good, whatever copies of its bytes exist. The record exists only once the key is
/// destroyed, and stays: a hub that learns of it refuses reads under the key even if its own
/// key service (a stale copy of a keystore) still holds the key, and destroys that copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KmsKeyRecord {
    /// The key service's id of the key.
    pub key_id: String,
    pub tenant: String,
    /// The bucket whose key it is (`None`: a tenant key-encryption key).
    #[serde(default)]
    pub bucket: Option<String>,
    /// Who destroyed it (the admin user's ARN), for the audit log.
    pub by: String,
    pub destroyed_unix_ms: u64,
    pub stamp: Stamp,
}

/// One tenant control record, as applied and as replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Change {
    Tenant(TenantRecord),
    User(UserRecord),
    Key(KeyRecord),
    BucketOwner(BucketOwnerRecord),
    BucketPolicy(BucketPolicyRecord),
    BucketSetting(BucketSettingRecord),
    KmsKey(KmsKeyRecord),
}

#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    change: Change,
}

impl Change {
    #[must_use]
    pub fn stamp(&self) -> &Stamp {
        match self {
            Change::Tenant(r) => &r.stamp,
            Change::User(r) => &r.stamp,
            Change::Key(r) => &r.stamp,
            Change::BucketOwner(r) => &r.stamp,
            Change::BucketPolicy(r) => &r.stamp,
            Change::BucketSetting(r) => &r.stamp,
            Change::KmsKey(r) => &r.stamp,
        }
    }

    /// The control-table key of the record.
    #[must_use]
    pub fn key(&self) -> String {
        match self {
            Change::Tenant(r) => format!("{TENANT_PREFIX}{}", r.id),
            Change::User(r) => format!("{USER_PREFIX}{}/{}", r.tenant, r.name),
            Change::Key(r) => format!("{KEY_PREFIX}{}", r.access_key),
            Change::BucketOwner(r) => format!("{OWNER_PREFIX}{}", r.bucket),
            Change::BucketPolicy(r) => format!("{BUCKET_POLICY_PREFIX}{}", r.bucket),
            Change::BucketSetting(r) => format!("{BUCKET_SETTING_PREFIX}{}/{}", r.bucket, r.setting.name()),
            Change::KmsKey(r) => format!("{KMS_KEY_PREFIX}{}", r.key_id),
        }
    }

    /// What the change is about and its stamp: equal identities are equal changes.
    #[must_use]
    pub fn identity(&self) -> String {
        let stamp = self.stamp();
        format!("{}@{}@{}", self.key(), stamp.hlc, stamp.origin)
    }

    /// A one-line account of the change for the audit log (never a secret).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Change::Tenant(r) if r.removed => format!("tenant {} removed", r.id),
            Change::Tenant(r) => format!("tenant {} (quota {:?})", r.id, r.quota),
            Change::User(r) if r.removed => format!("user {}/{} removed", r.tenant, r.name),
            Change::User(r) => format!(
                "user {}/{} (admin: {}, identity policy: {})",
                r.tenant,
                r.name,
                r.admin,
                r.policy.is_some()
            ),
            Change::Key(r) if r.revoked => format!("access key {} of {}/{} revoked", r.access_key, r.tenant, r.user),
            Change::Key(r) => format!("access key {} for {}/{}", r.access_key, r.tenant, r.user),
            Change::BucketOwner(r) if r.deleted => format!("bucket {:?} of tenant {} deleted", r.bucket, r.tenant),
            Change::BucketOwner(r) => format!("bucket {:?} owned by tenant {}", r.bucket, r.tenant),
            Change::BucketPolicy(r) if r.policy.is_none() => format!("policy of bucket {:?} deleted", r.bucket),
            Change::BucketPolicy(r) => format!(
                "policy of bucket {:?} set: {}",
                r.bucket,
                r.policy.as_deref().unwrap_or_default()
            ),
            Change::BucketSetting(r) => format!(
                "{} of bucket {:?} set to {}",
                r.setting.name(),
                r.bucket,
                r.value.as_deref().unwrap_or("the default")
            ),
            Change::KmsKey(r) => match &r.bucket {
                Some(bucket) => format!(
                    "key {} of bucket {bucket:?} (tenant {}) destroyed by {}: the bucket's encrypted objects are unreadable for good",
                    r.key_id, r.tenant, r.by
                ),
                None => format!(
                    "key {} of tenant {} destroyed by {}: every object sealed under it is unreadable for good",
                    r.key_id, r.tenant, r.by
                ),
            },
        }
    }
}

fn corrupt(e: &serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        what: "tenant record",
        detail: e.to_string(),
    }
}

fn decode(raw: &[u8]) -> StoreResult<Change> {
    let stored: Stored = serde_json::from_slice(raw).map_err(|e| corrupt(&e))?;
    if stored.format != FORMAT {
        return Err(StoreError::Corrupt {
            what: "tenant record",
            detail: format!("unknown format {}; written by a newer Valley?", stored.format),
        });
    }
    Ok(stored.change)
}

/// Whether `new` replaces `old` (both about the same record).
///
/// A destroyed key-service key stays destroyed (the first record is kept). A key's revocation dominates whatever the stamps say (then the newer revocation wins): so
/// hubs that learn a key's records in any order agree, and a revocation is never lost to a
/// record stamped later by a hub whose clock runs ahead.
pub(crate) fn replaces(old: &Change, new: &Change) -> bool {
    if let Change::KmsKey(_) = old {
        return false;
    }
    if let (Change::Key(old_key), Change::Key(new_key)) = (old, new)
        && old_key.revoked != new_key.revoked
    {
        return new_key.revoked;
    }
    new.stamp() > old.stamp()
}

/// Stores `change` if it is newer than the record it replaces; returns whether it was.
pub fn apply(txn: &mut dyn WriteTxn, change: &Change) -> StoreResult<bool> {
    let key = change.key();
    if let Some(raw) = txn.get(Table::Control, key.as_bytes())?
        && !replaces(&decode(&raw)?, change)
    {
        return Ok(false);
    }
    let stored = Stored {
        format: FORMAT,
        change: change.clone(),
    };
    let raw = serde_json::to_vec(&stored).map_err(|e| corrupt(&e))?;
    txn.put(Table::Control, key.as_bytes(), &raw);
    Ok(true)
}

/// Every tenant record held, as the changes that would recreate it elsewhere.
pub fn all_changes(txn: &dyn ReadTxn) -> StoreResult<Vec<Change>> {
    let mut out = Vec::new();
    for prefix in [
        TENANT_PREFIX,
        USER_PREFIX,
        KEY_PREFIX,
        OWNER_PREFIX,
        BUCKET_POLICY_PREFIX,
        BUCKET_SETTING_PREFIX,
        KMS_KEY_PREFIX,
    ] {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        for (_, raw) in txn.scan(Table::Control, prefix.as_bytes(), Some(&end), usize::MAX)? {
            out.push(decode(&raw)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use valley_store::{MemMeta, MetaStore};

    fn stamp(hlc: u64, origin: &str) -> Stamp {
        Stamp {
            hlc,
            origin: origin.to_owned(),
        }
    }

    fn key(revoked: bool, hlc: u64) -> Change {
        Change::Key(KeyRecord {
            access_key: "VKA".into(),
            tenant: "acme".into(),
            user: "alice".into(),
            secret: crate::Sealer::from_secret(b"s").seal("VKA", "x"),
            revoked,
            created_unix_ms: 1,
            stamp: stamp(hlc, "hub-a"),
        })
    }

    fn write(meta: &MemMeta, change: &Change) -> bool {
        let change = change.clone();
        let slot = std::sync::Arc::new(std::sync::Mutex::new(false));
        let out = slot.clone();
        meta.write(Box::new(move |txn| {
            *out.lock().unwrap() = apply(txn, &change)?;
            Ok(())
        }))
        .unwrap();
        *slot.lock().unwrap()
    }

    #[test]
    fn newer_wins_and_a_revoked_key_stays_revoked() {
        let meta = MemMeta::new();
        assert!(write(&meta, &key(false, 10)));
        assert!(!write(&meta, &key(false, 5)), "an older copy is ignored");
        assert!(write(&meta, &key(true, 11)));
        assert!(!write(&meta, &key(false, 99)), "no record revives a revoked key");
        let held = all_changes(meta.snapshot().unwrap().as_ref()).unwrap();
        assert_eq!(held.len(), 1);
        assert!(matches!(&held[0], Change::Key(k) if k.revoked));
    }

    #[test]
    fn the_first_format_still_reads() {
        // Golden bytes of format 1, as the first tenant records were written.
        let raw = br#"{"format":1,"change":{"type":"bucket-owner","bucket":"photos","tenant":"acme","stamp":{"hlc":7,"origin":"gui-an"}}}"#;
        let change = decode(raw).unwrap();
        assert_eq!(
            change,
            Change::BucketOwner(BucketOwnerRecord {
                bucket: "photos".into(),
                tenant: "acme".into(),
                deleted: false,
                stamp: stamp(7, "gui-an"),
            })
        );
        // A tenant record from before quotas' neighbours (Public Access Block) still reads.
        let raw = br#"{"format":1,"change":{"type":"tenant","id":"acme","created_unix_ms":5,"quota":{"bytes":10,"objects":null,"buckets":null},"stamp":{"hlc":9,"origin":"local"}}}"#;
        match decode(raw).unwrap() {
            Change::Tenant(t) => {
                assert_eq!(t.quota.bytes, Some(10));
                assert_eq!(t.public_access_block, valley_access::PublicAccessBlock::default());
                assert!(!t.removed);
            }
            other => panic!("{other:?}"),
        }
        assert!(decode(br#"{"format":2,"change":{"type":"bucket-owner","bucket":"p","tenant":"a","stamp":{"hlc":1,"origin":"x"}}}"#).is_err());
    }
}
