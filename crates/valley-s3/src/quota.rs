//! Tenant quotas on bytes and objects, checked before a write's first byte is read, so a
//! refused write leaves nothing behind. Usage is the sum of the tenant's buckets' counters at
//! this hub (kept as writes happen, not by scanning), cached for a second: a burst of writes
//! within that second may pass a limit by what it wrote in it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use s3s::{S3Error, S3ErrorCode, S3Result};
use valley_store::Catalog;
use valley_tenants::{Directory, Quota};

const USAGE_TTL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub objects: u64,
    pub bytes: u64,
}

#[derive(Default)]
pub struct QuotaCheck {
    usage: Mutex<HashMap<String, (Instant, Usage)>>,
}

/// What a write adds, as far as is known before its body.
#[derive(Debug, Clone, Copy)]
pub struct Incoming {
    pub bytes: u64,
    /// Whether the write makes an object (a part does not, its upload's completion does).
    pub object: bool,
}

fn exceeded(message: String) -> S3Error {
    let mut e = S3Error::with_message(S3ErrorCode::Custom("QuotaExceeded".into()), message);
    e.set_status_code(http::StatusCode::FORBIDDEN);
    e
}

impl QuotaCheck {
    async fn usage_of(&self, directory: &Directory, catalog: &Catalog, tenant: &str) -> S3Result<Usage> {
        if let Ok(cache) = self.usage.lock()
            && let Some((at, usage)) = cache.get(tenant)
            && at.elapsed() < USAGE_TTL
        {
            return Ok(*usage);
        }
        let mut usage = Usage::default();
        for bucket in directory.buckets_of(tenant) {
            match catalog.bucket_usage(&bucket).await {
                Ok((objects, bytes)) => {
                    usage.objects += objects;
                    usage.bytes += bytes;
                }
                Err(valley_store::StoreError::NoSuchBucket(_)) => {}
                Err(e) => return Err(crate::convert::s3_err(e)),
            }
        }
        if let Ok(mut cache) = self.usage.lock() {
            cache.insert(tenant.to_owned(), (Instant::now(), usage));
        }
        Ok(usage)
    }

    /// Refuses a write that would take `tenant` past its quota.
    pub async fn check(
        &self,
        directory: &Directory,
        catalog: &Catalog,
        tenant: &str,
        incoming: Incoming,
    ) -> S3Result<()> {
        let quota = directory.quota(tenant);
        if quota.bytes.is_none() && quota.objects.is_none() {
            return Ok(());
        }
        let usage = self.usage_of(directory, catalog, tenant).await?;
        refusal(&quota, usage, incoming, tenant).map_or(Ok(()), Err)
    }
}

fn refusal(quota: &Quota, usage: Usage, incoming: Incoming, tenant: &str) -> Option<S3Error> {
    if let Some(max) = quota.bytes
        && usage.bytes.saturating_add(incoming.bytes) > max
    {
        return Some(exceeded(format!(
            "The write would take tenant {tenant} past its quota of {max} bytes ({} held, {} more)",
            usage.bytes, incoming.bytes
        )));
    }
    if let Some(max) = quota.objects
        && incoming.object
        && usage.objects.saturating_add(1) > max
    {
        return Some(exceeded(format!(
            "The write would take tenant {tenant} past its quota of {max} objects ({} held)",
            usage.objects
        )));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_inclusive_and_only_objects_count_objects() {
        let quota = Quota {
            bytes: Some(100),
            objects: Some(2),
            buckets: None,
        };
        let held = Usage { objects: 1, bytes: 60 };
        let put = |bytes| Incoming { bytes, object: true };
        assert!(refusal(&quota, held, put(40), "t").is_none(), "exactly at the limit");
        assert!(refusal(&quota, held, put(41), "t").is_some());
        let full = Usage { objects: 2, bytes: 0 };
        assert!(refusal(&quota, full, put(1), "t").is_some());
        let part = Incoming {
            bytes: 1,
            object: false,
        };
        assert!(refusal(&quota, full, part, "t").is_none(), "a part makes no object");
        let e = refusal(&quota, held, put(41), "t").unwrap();
        assert_eq!(e.status_code(), Some(http::StatusCode::FORBIDDEN));
    }
}
