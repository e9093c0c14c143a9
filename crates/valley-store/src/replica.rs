//! What the network layer needs of the catalog besides ordinary writes: a compact summary of a
//! bucket's versions (for anti-entropy), replicas received in chunks (so a cut transfer of a
//! large object resumes where it stopped), and removing one local copy (tiering).

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, ReplicaOutcome, apply_replica_in, is_buried, write_with};
use crate::codec::{decode, encode};
use crate::error::{StoreError, StoreResult};
use crate::keys::{self, Stamp};
use crate::meta::Table;
use crate::record::{BlobRef, ObjectData, ObjectVersion};

/// One stored version, without its data or headers (anti-entropy's items; what a hub reports
/// holding in residency evidence).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VersionSummary {
    pub key: String,
    pub hlc: u64,
    pub origin: String,
    pub size: u64,
    #[serde(default)]
    pub delete_marker: bool,
}

/// Where the next page of [`Catalog::version_summaries_page`] begins (the default: the first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SummaryCursor(Option<Vec<u8>>);

impl SummaryCursor {
    /// The page that begins after every version of `key` in `bucket`.
    #[must_use]
    pub fn after_key(bucket: &str, key: &str) -> Self {
        Self(Some(keys::object_end(bucket, key)))
    }
}

/// A received chunk of a replica: durable in the blob store, not yet part of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedChunk {
    pub blob: BlobRef,
    pub staged_unix_ms: u64,
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Catalog {
    /// Every version stored here for `bucket` (including delete markers), in key order.
    /// Holds them all in memory: for bounded work, page with [`Catalog::version_summaries_page`].
    pub async fn version_summaries(&self, bucket: &str) -> StoreResult<Vec<VersionSummary>> {
        let mut out = Vec::new();
        let mut cursor = SummaryCursor::default();
        loop {
            let (page, next) = self.version_summaries_page(bucket, &cursor, 1024).await?;
            out.extend(page);
            match next {
                Some(next) => cursor = next,
                None => return Ok(out),
            }
        }
    }

    /// Up to `limit` versions of `bucket` from `cursor` on, in key order, and the cursor of the
    /// next page (`None` after the last). Each page is read from its own snapshot: versions
    /// written or removed between pages may or may not be seen, as in an S3 listing.
    pub async fn version_summaries_page(
        &self,
        bucket: &str,
        cursor: &SummaryCursor,
        limit: usize,
    ) -> StoreResult<(Vec<VersionSummary>, Option<SummaryCursor>)> {
        let (bucket, from) = (bucket.to_owned(), cursor.0.clone());
        let limit = limit.max(1);
        self.blocking(move |meta, _| {
            let snapshot = meta.snapshot()?;
            let end = keys::bucket_end(&bucket);
            let start = from.unwrap_or_else(|| keys::bucket_prefix(&bucket));
            let batch = snapshot.scan(Table::Versions, &start, Some(&end), limit)?;
            let next = (batch.len() == limit)
                .then(|| {
                    batch.last().map(|(raw, _)| {
                        let mut next = raw.clone();
                        next.push(0);
                        SummaryCursor(Some(next))
                    })
                })
                .flatten();
            let mut out = Vec::with_capacity(batch.len());
            for (raw, value) in &batch {
                let Some((key, _)) = keys::parse_version_key(&bucket, raw) else {
                    continue;
                };
                let v = ObjectVersion::from_record(value)?;
                out.push(VersionSummary {
                    key: key.to_owned(),
                    hlc: v.hlc,
                    origin: v.origin,
                    size: v.size,
                    delete_marker: v.delete_marker,
                });
            }
            Ok((out, next))
        })
        .await
    }

    /// The latest version of `key` here, a delete marker included (point read, calling thread).
    pub async fn latest_any(&self, bucket: &str, key: &str) -> StoreResult<Option<ObjectVersion>> {
        let snapshot = self.meta.snapshot()?;
        crate::catalog::load_bucket(snapshot.as_ref(), bucket)?;
        crate::catalog::latest_of(snapshot.as_ref(), bucket, key)
    }

    /// The stamp of the newest version of `key` known to exist at another hub, if any.
    pub async fn newer_hint(&self, bucket: &str, key: &str) -> StoreResult<Option<Stamp>> {
        let snapshot = self.meta.snapshot()?;
        Ok(snapshot
            .get(Table::Tombstones, &keys::newer_hint_key(bucket, key))?
            .and_then(|v| Stamp::from_bytes(&v)))
    }

    /// Whether the version of `key` with `stamp` is here, or can never be applied here (deleted,
    /// or replaced by a newer null version): either way a sender need not send it.
    pub async fn holds_or_superseded(
        &self,
        bucket: &str,
        key: &str,
        stamp: Stamp,
        versioned: bool,
    ) -> StoreResult<bool> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.blocking(move |meta, _| {
            let snapshot = meta.snapshot()?;
            let txn = snapshot.as_ref();
            if txn
                .get(Table::Versions, &keys::version_key(&bucket, &key, stamp))?
                .is_some()
                || is_buried(txn, &bucket, &key, stamp)?
            {
                return Ok(true);
            }
            if versioned {
                return Ok(false);
            }
            let newer_delete = crate::catalog::tombstone_of(txn, &bucket, &key)?.is_some_and(|t| t >= stamp);
            let newer_null = crate::catalog::versions_of(txn, &bucket, &key)?
                .iter()
                .any(|(_, v)| v.version_id.is_none() && v.stamp() > stamp);
            Ok(newer_delete || newer_null)
        })
        .await
    }

    /// Records a received chunk of the replica `bucket/key@stamp` (its blob already durable).
    /// A chunk already staged at that index is replaced and its blob freed.
    pub async fn stage_chunk(
        &self,
        bucket: &str,
        key: &str,
        stamp: Stamp,
        index: u32,
        blob: BlobRef,
    ) -> StoreResult<()> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let chunk = StagedChunk {
            blob,
            staged_unix_ms: now_unix_ms(),
        };
        let freed = self
            .blocking(move |meta, _| {
                write_with(meta, move |txn| {
                    let raw = keys::staged_chunk_key(&bucket, &key, stamp, index);
                    let old = txn
                        .get(Table::Staging, &raw)?
                        .map(|v| decode::<StagedChunk>("staged chunk", &v))
                        .transpose()?;
                    txn.put(Table::Staging, &raw, &encode(&chunk));
                    Ok(old.map(|c| c.blob))
                })
            })
            .await?;
        self.free(freed.into_iter().collect()).await;
        Ok(())
    }

    /// The chunks staged for `bucket/key@stamp`, by index.
    pub async fn staged_chunks(&self, bucket: &str, key: &str, stamp: Stamp) -> StoreResult<Vec<(u32, BlobRef)>> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.blocking(move |meta, _| {
            let snapshot = meta.snapshot()?;
            let start = keys::staged_prefix(&bucket, &key, stamp);
            let end = keys::staged_chunk_key(&bucket, &key, stamp, u32::MAX);
            let mut out = Vec::new();
            for (raw, value) in snapshot.scan(Table::Staging, &start, Some(&end), usize::MAX)? {
                let Some(index) = raw
                    .get(start.len()..)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_be_bytes)
                else {
                    continue;
                };
                let chunk: StagedChunk = decode("staged chunk", &value)?;
                out.push((index, chunk.blob));
            }
            Ok(out)
        })
        .await
    }

    /// Turns the staged chunks of `version` (indices 0, 1, … in order, sizes adding up to the
    /// version's size) into that version here, by last-writer-wins as [`Catalog::apply_replica`]
    /// does. The caller has checked the bytes; the staging records go in the same transaction.
    pub async fn apply_staged_replica(
        &self,
        bucket: &str,
        key: &str,
        mut version: ObjectVersion,
    ) -> StoreResult<ReplicaOutcome> {
        let stamp = version.stamp();
        let staged = self.staged_chunks(bucket, key, stamp).await?;
        let contiguous = staged.iter().enumerate().all(|(i, (index, _))| *index as usize == i);
        let total: u64 = staged.iter().map(|(_, b)| b.size).sum();
        if !contiguous || total != version.stored_size() {
            return Err(StoreError::Corrupt {
                what: "staged replica",
                detail: format!(
                    "{} chunks of {total} bytes staged for a {}-byte version",
                    staged.len(),
                    version.stored_size()
                ),
            });
        }
        version.data = ObjectData::Blobs(staged.into_iter().map(|(_, b)| b).collect());
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let (outcome, freed) = self
            .blocking(move |meta, ctx| {
                write_with(meta, move |txn| {
                    let start = keys::staged_prefix(&bucket, &key, stamp);
                    let end = keys::staged_chunk_key(&bucket, &key, stamp, u32::MAX);
                    for (raw, _) in txn.scan(Table::Staging, &start, Some(&end), usize::MAX)? {
                        txn.delete(Table::Staging, &raw);
                    }
                    apply_replica_in(txn, &ctx, &bucket, &key, version)
                })
            })
            .await?;
        self.free(freed).await;
        Ok(outcome)
    }

    /// Drops the staged chunks of `bucket/key@stamp` (a replica that failed its check).
    pub async fn drop_staged(&self, bucket: &str, key: &str, stamp: Stamp) -> StoreResult<()> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let freed = self
            .blocking(move |meta, _| {
                write_with(meta, move |txn| {
                    let start = keys::staged_prefix(&bucket, &key, stamp);
                    let end = keys::staged_chunk_key(&bucket, &key, stamp, u32::MAX);
                    let mut freed = Vec::new();
                    for (raw, value) in txn.scan(Table::Staging, &start, Some(&end), usize::MAX)? {
                        freed.push(decode::<StagedChunk>("staged chunk", &value)?.blob);
                        txn.delete(Table::Staging, &raw);
                    }
                    Ok(freed)
                })
            })
            .await?;
        self.free(freed).await;
        Ok(())
    }

    /// Drops staged chunks older than `max_age_ms` (transfers their sender gave up on).
    /// Returns how many were dropped.
    pub async fn expire_staged(&self, max_age_ms: u64) -> StoreResult<usize> {
        let cutoff = now_unix_ms().saturating_sub(max_age_ms);
        let freed = self
            .blocking(move |meta, _| {
                write_with(meta, move |txn| {
                    let mut freed = Vec::new();
                    for (raw, value) in txn.scan(Table::Staging, &[], None, usize::MAX)? {
                        let chunk: StagedChunk = decode("staged chunk", &value)?;
                        if chunk.staged_unix_ms < cutoff {
                            freed.push(chunk.blob);
                            txn.delete(Table::Staging, &raw);
                        }
                    }
                    Ok(freed)
                })
            })
            .await?;
        let n = freed.len();
        self.free(freed).await;
        Ok(n)
    }

    /// Removes this hub's copy of one version without replicating the removal (the copy moved
    /// to the hubs the policy now wants it in). Returns whether there was a copy.
    pub async fn drop_local_copy(&self, bucket: &str, key: &str, stamp: Stamp) -> StoreResult<bool> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let freed = self
            .blocking(move |meta, _| {
                write_with(meta, move |txn| {
                    let raw = keys::version_key(&bucket, &key, stamp);
                    let Some(value) = txn.get(Table::Versions, &raw)? else {
                        return Ok(None);
                    };
                    let v = ObjectVersion::from_record(&value)?;
                    crate::catalog::remove_version_row(txn, &raw, &v)?;
                    Ok(Some(v.data.blobs().to_vec()))
                })
            })
            .await?;
        let held = freed.is_some();
        self.free(freed.unwrap_or_default()).await;
        Ok(held)
    }
}
