//! Writes with synchronous copies (`ack_copies > 1`): the version is stamped as it will be
//! committed, copied to peers by the gate, and committed here only when enough copies were
//! confirmed in time (or the policy accepts a degraded write). A write that fails has its
//! copies retracted by the gate and nothing committed here; the client gets 503.

use std::future::Future;

use s3s::{S3Result, s3_error};
use valley_store::record::ObjectVersion;
use valley_store::{StampedOutcome, StoreResult};

use crate::convert::s3_err;
use crate::gate::SyncCopies;
use crate::service::ValleyS3;

/// Response header telling how a write with synchronous copies was acknowledged.
pub const REPLICATION_HEADER: &str = "x-valley-replication";

/// A committed write and the replication header its response carries, if any.
pub(crate) struct Written {
    pub version: ObjectVersion,
    pub header: Option<http::HeaderValue>,
}

impl Written {
    pub(crate) fn apply<T>(self, response: &mut s3s::S3Response<T>) -> ObjectVersion {
        if let Some(h) = self.header {
            response.headers.insert(REPLICATION_HEADER, h);
        }
        self.version
    }
}

/// Whether writes to `bucket` make synchronous copies.
pub(crate) async fn wanted(s: &ValleyS3, bucket: &str) -> bool {
    match &s.gate {
        Some(gate) => gate.ack_copies(bucket).await > 1,
        None => false,
    }
}

fn header(copies: &SyncCopies) -> Option<http::HeaderValue> {
    let text = if copies.enough() {
        format!("synchronous; copies={}", copies.made())
    } else {
        format!("degraded; copies={}; wanted={}", copies.made(), copies.wanted)
    };
    http::HeaderValue::from_str(&text).ok()
}

/// Writes `version` (unstamped, its data durable in the blob store) with its synchronous
/// copies: `commit` stores the stamped version here. `discard`: the data is the write's own
/// and is removed when the write fails before `commit` (not so for a multipart upload's
/// parts, which stay with the upload).
pub(crate) async fn write<F, Fut>(
    s: &ValleyS3,
    bucket: &str,
    key: &str,
    version: ObjectVersion,
    discard: bool,
    commit: F,
) -> S3Result<Written>
where
    F: FnOnce(ObjectVersion) -> Fut,
    Fut: Future<Output = StoreResult<StampedOutcome>>,
{
    let started = std::time::Instant::now();
    let Some(gate) = s.gate.clone() else {
        return Err(s3_error!(InternalError, "synchronous copies without a network"));
    };
    let give_up = |version: ObjectVersion| async move {
        if discard {
            s.catalog.discard(&version).await;
        }
    };
    let version = match s.catalog.stamp_version(bucket, version.clone()).await {
        Ok(v) => v,
        Err(e) => {
            give_up(version).await;
            return Err(s3_err(e));
        }
    };
    let copies = match gate.copy_before_commit(bucket, key, &version).await {
        Ok(Some(copies)) => copies,
        // The policy no longer asks for synchronous copies: an ordinary write.
        Ok(None) => {
            let outcome = commit(version).await.map_err(s3_err)?;
            return Ok(Written {
                version: outcome.version().clone(),
                header: None,
            });
        }
        Err(why) => {
            give_up(version).await;
            return Err(s3_error!(
                ServiceUnavailable,
                "The write was not acknowledged: its synchronous copies could not be made ({why}); nothing was stored."
            ));
        }
    };
    if !copies.enough() && !copies.degrade {
        if let Err(why) = gate.settle_copies(bucket, key, &version, &copies, false, started).await {
            tracing::error!(bucket, key, error = %why, "queuing the retraction of a failed write's copies failed");
        }
        give_up(version).await;
        return Err(s3_error!(
            ServiceUnavailable,
            "The write was not acknowledged: {} of {} copies in distinct failure domains were made within {} s \
             (ack_fallback fail); nothing was stored and the copies made are retracted.",
            copies.made(),
            copies.wanted,
            copies.timeout.as_secs()
        ));
    }
    match commit(version.clone()).await {
        Ok(outcome) => {
            if let Err(why) = gate.settle_copies(bucket, key, &version, &copies, true, started).await {
                tracing::error!(bucket, key, error = %why, "settling a write's synchronous copies failed");
            }
            Ok(Written {
                version: outcome.version().clone(),
                header: header(&copies),
            })
        }
        Err(e) => {
            if let Err(why) = gate.settle_copies(bucket, key, &version, &copies, false, started).await {
                tracing::error!(bucket, key, error = %why, "queuing the retraction of a failed write's copies failed");
            }
            Err(s3_err(e))
        }
    }
}
