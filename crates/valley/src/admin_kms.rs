//! The admin API's crypto-shredding call: `POST kms-keys` destroys a tenant's key-encryption
//! key or one bucket's key in the key service, and records the destruction as a control record
//! that reaches every hub (each forgets the keys it cached, destroys its own copy of the key,
//! audits the destruction and refuses reads under it from then on).
//!
//! Only the tenant's own admin may destroy its keys (the root credentials are the default
//! tenant's admin): shredding a tenant's data is the tenant's decision, not the operator's.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use valley_audit::AuditKind;
use valley_replicate::Hub;
use valley_tenants::{Directory, KmsKeyRecord, Principal};

use crate::admin::{json, reply};

/// The route handled here.
pub const ROUTE: &str = "kms-keys";

/// What to destroy: a tenant's key by name, or a bucket's own key.
#[derive(Debug, Serialize, Deserialize)]
pub struct DestroyRequest {
    /// The tenant whose key it is (`None`: the caller's).
    #[serde(default)]
    pub tenant: Option<String>,
    /// A key-encryption key's name (`default`: SSE-S3's key; else an SSE-KMS key id).
    #[serde(default)]
    pub name: Option<String>,
    /// A bucket of the tenant: its own key.
    #[serde(default)]
    pub bucket: Option<String>,
}

/// The answer: the destruction's records (as every hub holds them), one per key destroyed.
#[derive(Debug, Serialize, Deserialize)]
pub struct DestroyAnswer {
    pub records: Vec<KmsKeyRecord>,
}

pub struct KmsAdmin<'a> {
    pub directory: &'a Directory,
    pub catalog: &'a valley_store::Catalog,
    pub encryption: Option<&'a Arc<valley_s3::sse::Encryption>>,
    pub hub: Option<&'a Arc<Hub>>,
}

impl KmsAdmin<'_> {
    pub async fn destroy(&self, caller: &Principal, body: &[u8]) -> Response<Bytes> {
        let request: DestroyRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return reply(StatusCode::BAD_REQUEST, format!("malformed key destruction: {e}")),
        };
        let tenant = request.tenant.clone().unwrap_or_else(|| caller.tenant.clone());
        if !(caller.admin && caller.tenant == tenant) {
            return reply(
                StatusCode::FORBIDDEN,
                format!(
                    "{} may not destroy keys of tenant {}: only that tenant's admin",
                    caller.arn(),
                    tenant
                ),
            );
        }
        let Some(encryption) = self.encryption else {
            return reply(
                StatusCode::NOT_IMPLEMENTED,
                "this hub has no key service (--kms-master-key-file): it holds no key to destroy",
            );
        };
        let (key_ids, bucket) = match (&request.name, &request.bucket) {
            (Some(name), None) => {
                if name.is_empty() || name.contains('/') {
                    return reply(StatusCode::BAD_REQUEST, format!("invalid key name {name:?}"));
                }
                let key_id = format!("{tenant}/{name}");
                let known = match encryption.has_key(&key_id) {
                    Ok(found) => found || self.directory.key_destroyed(&key_id).is_some(),
                    Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, format!("key service: {e}")),
                };
                if !known {
                    return reply(StatusCode::NOT_FOUND, format!("no key {key_id} in the key service"));
                }
                (vec![key_id], None)
            }
            (None, Some(bucket)) => {
                if self.catalog.bucket(bucket).await.is_err() {
                    return reply(StatusCode::NOT_FOUND, format!("no bucket {bucket:?} at this hub"));
                }
                let owner = self.directory.owner_of(bucket);
                if owner != tenant {
                    return reply(
                        StatusCode::FORBIDDEN,
                        format!("bucket {bucket:?} is not tenant {tenant}'s"),
                    );
                }
                // The key of the bucket as it is now (made or not: none is made after this),
                // and any other the key service holds under the bucket's name (one a hub made
                // before it learned the bucket's owner record, say).
                let current = valley_s3::sse::bucket_kek_id(&owner, bucket, self.directory.bucket_generation(bucket));
                let prefix = valley_s3::sse::bucket_kek_prefix(&owner, bucket);
                let mut ids = match encryption.list_keys() {
                    Ok(all) => all.into_iter().filter(|id| id.starts_with(&prefix)).collect::<Vec<_>>(),
                    Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, format!("key service: {e}")),
                };
                if !ids.contains(&current) {
                    ids.push(current);
                }
                (ids, Some(bucket.clone()))
            }
            _ => return reply(StatusCode::BAD_REQUEST, "give a key name or a bucket, not both"),
        };
        // The records first: from their commit on, every read under the keys is refused here,
        // and they travel to every hub; the hook then destroys the keys in the key service.
        let mut records = Vec::new();
        for key_id in &key_ids {
            match self
                .directory
                .destroy_kms_key(&tenant, key_id, bucket.as_deref(), &caller.arn())
                .await
            {
                Ok(record) => records.push(record),
                Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        if let Some(hub) = self.hub {
            for record in &records {
                let change = valley_tenants::Change::KmsKey(record.clone());
                let mut event = hub.auditor.event(AuditKind::KeyDestroyed, change.describe());
                if let Some(b) = &bucket {
                    event = event.with_bucket(b.clone());
                }
                hub.auditor.record(event).await;
            }
        }
        tracing::warn!(keys = ?key_ids, by = %caller.arn(), "keys destroyed (crypto-shredding)");
        json(&DestroyAnswer { records })
    }
}
