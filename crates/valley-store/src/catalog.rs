//! The bucket and object model, written once over [`MetaStore`] and [`BlobStore`].
//!
//! Every mutation is one metadata transaction, and that commit is the single point at which it
//! becomes visible. Blobs are written (and made durable) before the commit that names them, and
//! removed only after the commit that stops naming them; a crash in between leaves an orphan
//! blob, never a dangling reference, and [`Catalog::collect_orphans`] removes orphans at start.

use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};

use md5::{Digest, Md5};
use valley_types::HlcClock;
use valley_types::limits::PART_SIZE_BYTES_MIN;

use crate::blob::{BlobStore, ByteStream};
use crate::codec::{decode, encode};
use crate::error::{StoreError, StoreResult};
use crate::keys;
use crate::list::{self, ListPage, ListQuery, VersionEntry};
use crate::meta::{MetaStore, ReadTxn, Table, WriteTxn};
use crate::record::Checksums;
use crate::record::{BlobRef, BucketRecord, ObjectData, ObjectVersion, PartRecord, Sealing, UploadRecord, Versioning};

/// Work run inside another write's transaction.
pub type WriteJob = Box<dyn FnOnce(&mut dyn WriteTxn) -> StoreResult<()> + Send>;

/// A check run inside the write transaction against the key's current version (`None` when
/// the key has none, or its latest is a delete marker); an error aborts the write.
pub type Precondition = Box<dyn FnOnce(Option<&ObjectVersion>) -> StoreResult<()> + Send>;

/// Sees every local change to object versions inside the transaction that makes it, so the
/// network layer can check residency and record outbox entries atomically with the change.
pub trait VersionHook: Send + Sync + 'static {
    /// A version (or delete marker) written at this hub is about to commit. An error aborts
    /// the write.
    fn on_local_version(
        &self,
        txn: &mut dyn WriteTxn,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
    ) -> StoreResult<()>;
    /// A specific version was deleted at this hub.
    fn on_local_delete(
        &self,
        txn: &mut dyn WriteTxn,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
    ) -> StoreResult<()>;
}

/// What a write job needs besides the transaction: the clock, this hub's id, the hook.
#[derive(Clone)]
pub(crate) struct WriteCtx {
    pub(crate) clock: Arc<HlcClock>,
    pub(crate) origin: Arc<str>,
    pub(crate) hook: Option<Arc<dyn VersionHook>>,
}

/// What applying a version replicated from another hub did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaOutcome {
    /// Stored: it is now a version here.
    Applied,
    /// Already here (redelivery): nothing changed.
    Duplicate,
    /// Older than what is here (a newer write or delete won): dropped.
    Superseded,
}

pub(crate) fn tombstone_of(txn: &dyn ReadTxn, bucket: &str, key: &str) -> StoreResult<Option<keys::Stamp>> {
    Ok(txn
        .get(Table::Tombstones, &keys::tombstone_key(bucket, key))?
        .and_then(|raw| keys::Stamp::from_bytes(&raw)))
}

/// Records that the version with `stamp` was deleted, so that a late or repeated copy of it
/// (from the outbox or from anti-entropy) cannot bring it back.
pub(crate) fn bury_version(txn: &mut dyn WriteTxn, bucket: &str, key: &str, stamp: keys::Stamp) {
    txn.put(
        Table::Tombstones,
        &keys::version_tombstone_key(bucket, key, stamp),
        &stamp.to_bytes(),
    );
}

pub(crate) fn is_buried(txn: &dyn ReadTxn, bucket: &str, key: &str, stamp: keys::Stamp) -> StoreResult<bool> {
    Ok(txn
        .get(Table::Tombstones, &keys::version_tombstone_key(bucket, key, stamp))?
        .is_some())
}

/// Notes that a version stamped `stamp` of `key` exists at another hub.
pub(crate) fn raise_newer_hint(txn: &mut dyn WriteTxn, bucket: &str, key: &str, stamp: keys::Stamp) -> StoreResult<()> {
    let raw = keys::newer_hint_key(bucket, key);
    let known = txn
        .get(Table::Tombstones, &raw)?
        .and_then(|v| keys::Stamp::from_bytes(&v));
    if known.is_none_or(|k| k < stamp) {
        txn.put(Table::Tombstones, &raw, &stamp.to_bytes());
    }
    Ok(())
}

pub(crate) fn raise_tombstone(txn: &mut dyn WriteTxn, bucket: &str, key: &str, stamp: keys::Stamp) -> StoreResult<()> {
    if tombstone_of(txn, bucket, key)?.is_none_or(|old| old < stamp) {
        txn.put(Table::Tombstones, &keys::tombstone_key(bucket, key), &stamp.to_bytes());
    }
    Ok(())
}

/// The null version stored at exactly `stamp`, if that is what is stored there.
fn exact_null_version(
    txn: &dyn ReadTxn,
    bucket: &str,
    key: &str,
    stamp: keys::Stamp,
) -> StoreResult<Option<(Vec<u8>, ObjectVersion)>> {
    let raw = keys::version_key(bucket, key, stamp);
    let Some(value) = txn.get(Table::Versions, &raw)? else {
        return Ok(None);
    };
    let version = ObjectVersion::from_record(&value)?;
    Ok((version.version_id.is_none() && version.stamp() == stamp).then_some((raw, version)))
}

/// A delete replicated from another hub (see [`Catalog::apply_remote_deletes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteDelete {
    pub bucket: String,
    pub key: String,
    /// The version deleted; `None`: the null version older than `stamp`.
    pub version_id: Option<String>,
    pub stamp: keys::Stamp,
    /// Not a delete: a version stamped `stamp` exists elsewhere (a newer-version notice).
    pub newer_only: bool,
    /// The sender is the version's origin, retracting a copy it made before its own commit
    /// failed: with `version_id` the id of `stamp` itself, the version stored at exactly
    /// `stamp` is removed even when it is a null version (and nothing else is).
    pub exact: bool,
}

/// What a DeleteObject did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The version removed, or the delete marker created (`None` for the null version).
    pub version_id: Option<String>,
    /// A delete marker was created, or the version removed was one.
    pub delete_marker: bool,
}

#[derive(Clone)]
pub struct Catalog {
    pub(crate) meta: Arc<dyn MetaStore>,
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) ctx: WriteCtx,
}

fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Runs a write job that produces a value.
pub(crate) fn write_with<R: Send + 'static>(
    meta: &dyn MetaStore,
    job: impl FnOnce(&mut dyn WriteTxn) -> StoreResult<R> + Send + 'static,
) -> StoreResult<R> {
    let slot = Arc::new(Mutex::new(None));
    let out = slot.clone();
    meta.write(Box::new(move |txn| {
        let value = job(txn)?;
        if let Ok(mut slot) = out.lock() {
            *slot = Some(value);
        }
        Ok(())
    }))?;
    let value = slot.lock().ok().and_then(|mut s| s.take());
    value.ok_or_else(|| StoreError::Meta("write job produced no result".into()))
}

pub(crate) fn load_bucket(txn: &dyn ReadTxn, bucket: &str) -> StoreResult<BucketRecord> {
    match txn.get(Table::Buckets, bucket.as_bytes())? {
        Some(raw) => decode("bucket", &raw),
        None => Err(StoreError::NoSuchBucket(bucket.to_owned())),
    }
}

/// All versions of a key, newest first, with their raw table keys.
pub(crate) fn versions_of(txn: &dyn ReadTxn, bucket: &str, key: &str) -> StoreResult<Vec<(Vec<u8>, ObjectVersion)>> {
    let mut out = Vec::new();
    let end = keys::object_end(bucket, key);
    let mut cursor = keys::object_prefix(bucket, key);
    loop {
        let batch = txn.scan(Table::Versions, &cursor, Some(&end), 256)?;
        let Some(last) = batch.last() else { break };
        let mut next = last.0.clone();
        next.push(0);
        for (raw, value) in batch {
            out.push((raw, ObjectVersion::from_record(&value)?));
        }
        cursor = next;
    }
    Ok(out)
}

pub(crate) fn latest_of(txn: &dyn ReadTxn, bucket: &str, key: &str) -> StoreResult<Option<ObjectVersion>> {
    let first = txn.scan(
        Table::Versions,
        &keys::object_prefix(bucket, key),
        Some(&keys::object_end(bucket, key)),
        1,
    )?;
    first
        .into_iter()
        .next()
        .map(|(_, value)| ObjectVersion::from_record(&value))
        .transpose()
}

/// Finds one version by id (`"null"` is the null version), with its raw table key.
pub(crate) fn find_version(
    txn: &dyn ReadTxn,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> StoreResult<Option<(Vec<u8>, ObjectVersion)>> {
    if version_id == "null" {
        return Ok(versions_of(txn, bucket, key)?
            .into_iter()
            .find(|(_, v)| v.version_id.is_none()));
    }
    let Some(stamp) = keys::stamp_of_version_id(version_id) else {
        return Ok(None);
    };
    let raw = keys::version_key(bucket, key, stamp);
    match txn.get(Table::Versions, &raw)? {
        Some(value) => {
            let version = ObjectVersion::from_record(&value)?;
            Ok((version.version_id.as_deref() == Some(version_id)).then_some((raw, version)))
        }
        None => Ok(None),
    }
}

/// Stores a new `version` under its raw table key (no row is there yet), counting it in its
/// bucket's usage. Non-empty inline bytes go to the inline-data table under the same key and
/// the record says [`ObjectData::InlineApart`]; `version` itself is left as it was. The one way
/// a version row is added.
pub(crate) fn insert_version_row(txn: &mut dyn WriteTxn, raw: &[u8], version: &mut ObjectVersion) -> StoreResult<()> {
    crate::usage::count(txn, raw, version, true)?;
    rewrite_version_row(txn, raw, version);
    Ok(())
}

/// Writes `version` over its own row (same size and data: tags and the like changed).
pub(crate) fn rewrite_version_row(txn: &mut dyn WriteTxn, raw: &[u8], version: &mut ObjectVersion) {
    if let ObjectData::Inline(bytes) = &version.data
        && !bytes.is_empty()
    {
        txn.put(Table::InlineData, raw, bytes);
        let data = std::mem::replace(&mut version.data, ObjectData::InlineApart);
        txn.put(Table::Versions, raw, &version.to_record());
        version.data = data;
    } else {
        txn.put(Table::Versions, raw, &version.to_record());
    }
}

/// Removes the row of `version` (and its inline bytes, if kept apart), counting it out of its
/// bucket's usage. The one way a version row is removed.
pub(crate) fn remove_version_row(txn: &mut dyn WriteTxn, raw: &[u8], version: &ObjectVersion) -> StoreResult<()> {
    txn.delete(Table::Versions, raw);
    if version.data == ObjectData::InlineApart {
        txn.delete(Table::InlineData, raw);
    }
    crate::usage::count(txn, raw, version, false)
}

/// Removes the null version of a key, if any, returning the blobs it held.
fn remove_null_version(txn: &mut dyn WriteTxn, bucket: &str, key: &str) -> StoreResult<Vec<BlobRef>> {
    let mut freed = Vec::new();
    for (raw, version) in versions_of(txn, bucket, key)? {
        if version.version_id.is_none() {
            remove_version_row(txn, &raw, &version)?;
            freed.extend_from_slice(version.data.blobs());
        }
    }
    Ok(freed)
}

/// Inserts `version` as the newest of `key`, under the bucket's versioning rules; returns the
/// stored version and the blobs of any version it replaced.
fn insert_version(
    txn: &mut dyn WriteTxn,
    ctx: &WriteCtx,
    bucket: &str,
    key: &str,
    mut version: ObjectVersion,
) -> StoreResult<(ObjectVersion, Vec<BlobRef>)> {
    let record = load_bucket(txn, bucket)?;
    version.hlc = ctx.clock.now().0;
    version.origin = ctx.origin.to_string();
    let stamp = version.stamp();
    let freed = if record.versioning == Versioning::Enabled {
        version.version_id = Some(keys::version_id_of(stamp));
        Vec::new()
    } else {
        version.version_id = None;
        remove_null_version(txn, bucket, key)?
    };
    commit_version(txn, ctx, bucket, key, version, freed)
}

/// A transaction body inserting a new version: what it answers, and the blobs to free after.
type InsertFn<R> = fn(&mut dyn WriteTxn, &WriteCtx, &str, &str, ObjectVersion) -> StoreResult<(R, Vec<BlobRef>)>;

/// The end of an insert: the hook (residency, outbox), then the row.
fn commit_version(
    txn: &mut dyn WriteTxn,
    ctx: &WriteCtx,
    bucket: &str,
    key: &str,
    mut version: ObjectVersion,
    freed: Vec<BlobRef>,
) -> StoreResult<(ObjectVersion, Vec<BlobRef>)> {
    let stamp = version.stamp();
    if let Some(hook) = &ctx.hook {
        hook.on_local_version(txn, bucket, key, &version)?;
    }
    insert_version_row(txn, &keys::version_key(bucket, key, stamp), &mut version)?;
    Ok((version, freed))
}

/// What committing a version stamped ahead of its commit ([`Catalog::stamp_version`]) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StampedOutcome {
    /// Stored as the version it was stamped as.
    Stored(ObjectVersion),
    /// Not stored: a newer null version or delete of the key committed here between the stamp
    /// and the commit, and wins by last-writer-wins (as it does at every hub). The write is
    /// acknowledged as one that was overwritten at once; its blobs are freed.
    Superseded(ObjectVersion),
}

impl StampedOutcome {
    #[must_use]
    pub fn version(&self) -> &ObjectVersion {
        match self {
            StampedOutcome::Stored(v) | StampedOutcome::Superseded(v) => v,
        }
    }
}

/// Inserts `version`, stamped before this transaction (its `hlc`, `origin` and `version_id`
/// are kept): a null version replaces an older null version and loses to a newer one or to a
/// newer delete, as a replica would. Returns the outcome and the blobs to free.
fn insert_stamped(
    txn: &mut dyn WriteTxn,
    ctx: &WriteCtx,
    bucket: &str,
    key: &str,
    version: ObjectVersion,
) -> StoreResult<(StampedOutcome, Vec<BlobRef>)> {
    load_bucket(txn, bucket)?;
    if version.origin.as_str() != &*ctx.origin {
        return Err(StoreError::Meta(format!(
            "a version stamped by {:?} cannot be committed at {:?}",
            version.origin, ctx.origin
        )));
    }
    let stamp = version.stamp();
    if txn
        .get(Table::Versions, &keys::version_key(bucket, key, stamp))?
        .is_some()
    {
        return Err(StoreError::Meta(format!(
            "a version stamped {stamp:?} of {key:?} is already stored"
        )));
    }
    let mut freed = Vec::new();
    if version.version_id.is_none() {
        let newer_delete = tombstone_of(txn, bucket, key)?.is_some_and(|t| t >= stamp);
        let current = versions_of(txn, bucket, key)?
            .into_iter()
            .find(|(_, v)| v.version_id.is_none());
        if newer_delete || current.as_ref().is_some_and(|(_, v)| v.stamp() > stamp) {
            let blobs = version.data.blobs().to_vec();
            return Ok((StampedOutcome::Superseded(version), blobs));
        }
        if let Some((raw, old)) = current {
            remove_version_row(txn, &raw, &old)?;
            freed.extend_from_slice(old.data.blobs());
        }
    }
    let (stored, freed) = commit_version(txn, ctx, bucket, key, version, freed)?;
    Ok((StampedOutcome::Stored(stored), freed))
}

/// The transaction body of [`Catalog::apply_replica`]: returns what it did and the blobs to
/// free after commit (the incoming ones when it was not applied, or the null version replaced).
pub(crate) fn apply_replica_in(
    txn: &mut dyn WriteTxn,
    ctx: &WriteCtx,
    bucket: &str,
    key: &str,
    mut version: ObjectVersion,
) -> StoreResult<(ReplicaOutcome, Vec<BlobRef>)> {
    load_bucket(txn, bucket)?;
    ctx.clock.observe(valley_types::Hlc(version.hlc));
    let stamp = version.stamp();
    let raw = keys::version_key(bucket, key, stamp);
    if txn.get(Table::Versions, &raw)?.is_some() {
        return Ok((ReplicaOutcome::Duplicate, version.data.blobs().to_vec()));
    }
    if is_buried(txn, bucket, key, stamp)? {
        return Ok((ReplicaOutcome::Superseded, version.data.blobs().to_vec()));
    }
    let mut freed = Vec::new();
    if version.version_id.is_none() {
        let newer_delete = tombstone_of(txn, bucket, key)?.is_some_and(|t| t >= stamp);
        let current = versions_of(txn, bucket, key)?
            .into_iter()
            .find(|(_, v)| v.version_id.is_none());
        if newer_delete || current.as_ref().is_some_and(|(_, v)| v.stamp() > stamp) {
            return Ok((ReplicaOutcome::Superseded, version.data.blobs().to_vec()));
        }
        if let Some((old_raw, old)) = current {
            remove_version_row(txn, &old_raw, &old)?;
            freed.extend_from_slice(old.data.blobs());
        }
    }
    insert_version_row(txn, &raw, &mut version)?;
    Ok((ReplicaOutcome::Applied, freed))
}

impl Catalog {
    #[must_use]
    pub fn new(meta: Arc<dyn MetaStore>, blobs: Arc<dyn BlobStore>) -> Self {
        Self {
            meta,
            blobs,
            ctx: WriteCtx {
                clock: Arc::new(HlcClock::new()),
                origin: Arc::from("local"),
                hook: None,
            },
        }
    }

    /// Names the hub this catalog belongs to: the origin of the versions it writes.
    #[must_use]
    pub fn with_origin(mut self, hub: &str) -> Self {
        self.ctx.origin = Arc::from(hub);
        self
    }

    /// Installs the hook that sees every local version change inside its transaction.
    #[must_use]
    pub fn with_hook(mut self, hook: Arc<dyn VersionHook>) -> Self {
        self.ctx.hook = Some(hook);
        self
    }

    #[must_use]
    pub fn meta(&self) -> &Arc<dyn MetaStore> {
        &self.meta
    }

    #[must_use]
    pub fn origin(&self) -> &str {
        &self.ctx.origin
    }

    /// The clock that stamps this hub's writes (control records stamp with it too).
    #[must_use]
    pub fn clock(&self) -> &Arc<HlcClock> {
        &self.ctx.clock
    }

    #[must_use]
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// Runs blocking metadata work off the async executor.
    pub(crate) async fn blocking<R: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn MetaStore, WriteCtx) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        let meta = self.meta.clone();
        let ctx = self.ctx.clone();
        tokio::task::spawn_blocking(move || work(meta.as_ref(), ctx))
            .await
            .map_err(|e| StoreError::Meta(format!("metadata task failed: {e}")))?
    }

    pub(crate) async fn free(&self, blobs: Vec<BlobRef>) {
        for blob in blobs {
            if let Err(e) = self.blobs.delete(&blob.id).await {
                tracing::warn!(blob = %blob.id, error = %e, "could not remove a freed blob; it will be collected at next start");
            }
        }
    }

    // ---- buckets ----

    pub async fn create_bucket(&self, bucket: &str, location: Option<String>) -> StoreResult<()> {
        self.create_bucket_and(bucket, location, |_| Ok(())).await
    }

    /// Creates a bucket and writes `also` (its control records) in the same transaction:
    /// either both are kept or neither.
    pub async fn create_bucket_and(
        &self,
        bucket: &str,
        location: Option<String>,
        also: impl FnOnce(&mut dyn WriteTxn) -> StoreResult<()> + Send + 'static,
    ) -> StoreResult<()> {
        let bucket = bucket.to_owned();
        self.blocking(move |meta, _| {
            write_with(meta, move |txn| {
                if txn.get(Table::Buckets, bucket.as_bytes())?.is_some() {
                    return Err(StoreError::BucketExists(bucket));
                }
                also(txn)?;
                let record = BucketRecord {
                    created_unix_ns: now_unix_ns(),
                    location,
                    versioning: Versioning::Unversioned,
                    tags: Vec::new(),
                };
                txn.put(Table::Buckets, bucket.as_bytes(), &encode(&record));
                Ok(())
            })
        })
        .await
    }

    pub async fn bucket(&self, bucket: &str) -> StoreResult<BucketRecord> {
        let bucket = bucket.to_owned();
        self.blocking(move |meta, _| load_bucket(meta.snapshot()?.as_ref(), &bucket))
            .await
    }

    pub async fn list_buckets(&self) -> StoreResult<Vec<(String, BucketRecord)>> {
        self.blocking(|meta, _| {
            let snapshot = meta.snapshot()?;
            let mut out = Vec::new();
            let mut cursor = Vec::new();
            loop {
                let batch = snapshot.scan(Table::Buckets, &cursor, None, 256)?;
                let Some(last) = batch.last() else { break };
                let mut next = last.0.clone();
                next.push(0);
                for (name, value) in batch {
                    let name = String::from_utf8(name).map_err(|e| StoreError::Corrupt {
                        what: "bucket name",
                        detail: e.to_string(),
                    })?;
                    out.push((name, decode("bucket", &value)?));
                }
                cursor = next;
            }
            Ok(out)
        })
        .await
    }

    /// Deletes an empty bucket (no versions, no delete markers). Multipart uploads still in
    /// progress do not keep it alive: as S3 does, they are aborted with it.
    pub async fn delete_bucket(&self, bucket: &str) -> StoreResult<()> {
        self.delete_bucket_and(bucket, |_| Ok(())).await
    }

    /// Deletes an empty bucket and writes `also` (its control records) in the same transaction.
    pub async fn delete_bucket_and(
        &self,
        bucket: &str,
        also: impl FnOnce(&mut dyn WriteTxn) -> StoreResult<()> + Send + 'static,
    ) -> StoreResult<()> {
        let bucket = bucket.to_owned();
        let freed = self
            .blocking(move |meta, _| {
                write_with(meta, move |txn| {
                    load_bucket(txn, &bucket)?;
                    let start = keys::bucket_prefix(&bucket);
                    let end = keys::bucket_end(&bucket);
                    if !txn.scan(Table::Versions, &start, Some(&end), 1)?.is_empty() {
                        return Err(StoreError::BucketNotEmpty(bucket));
                    }
                    also(txn)?;
                    let mut freed = Vec::new();
                    for (raw, value) in txn.scan(Table::Uploads, &start, Some(&end), usize::MAX)? {
                        let upload = UploadRecord::from_record(&value)?;
                        for (number, part) in all_parts(txn, &upload.upload_id)? {
                            txn.delete(Table::Parts, &keys::part_key(&upload.upload_id, number));
                            freed.push(part.blob);
                        }
                        txn.delete(Table::Uploads, &raw);
                    }
                    // Tombstones only guard against late replicas of deleted objects; they go
                    // with the bucket.
                    for (raw, _) in txn.scan(Table::Tombstones, &start, Some(&end), usize::MAX)? {
                        txn.delete(Table::Tombstones, &raw);
                    }
                    txn.delete(Table::Buckets, bucket.as_bytes());
                    Ok(freed)
                })
            })
            .await?;
        self.free(freed).await;
        Ok(())
    }

    /// Changes a bucket's record (versioning, tags) in one transaction.
    pub async fn update_bucket(
        &self,
        bucket: &str,
        change: impl FnOnce(&mut BucketRecord) + Send + 'static,
    ) -> StoreResult<()> {
        self.update_bucket_and(bucket, change, |_| Ok(())).await
    }

    /// Changes a bucket's record and writes `also` (its control records) in one transaction.
    pub async fn update_bucket_and(
        &self,
        bucket: &str,
        change: impl FnOnce(&mut BucketRecord) + Send + 'static,
        also: impl FnOnce(&mut dyn WriteTxn) -> StoreResult<()> + Send + 'static,
    ) -> StoreResult<()> {
        let bucket = bucket.to_owned();
        self.blocking(move |meta, _| {
            write_with(meta, move |txn| {
                let mut record = load_bucket(txn, &bucket)?;
                change(&mut record);
                also(txn)?;
                txn.put(Table::Buckets, bucket.as_bytes(), &encode(&record));
                Ok(())
            })
        })
        .await
    }

    // ---- objects ----

    /// A version of an object: the latest when `version_id` is `None`. A latest version that is
    /// a delete marker is [`StoreError::DeleteMarker`]; a delete marker asked for by id is
    /// returned as it is, for the caller to answer as S3 does.
    ///
    /// A point read like this one runs on the calling thread: it takes microseconds from the
    /// store's cache, and handing it to the blocking pool cost two thread switches — a fifth
    /// of a small GET or HEAD's CPU, by profile.
    pub async fn object(&self, bucket: &str, key: &str, version_id: Option<&str>) -> StoreResult<ObjectVersion> {
        let snapshot = self.meta.snapshot()?;
        load_bucket(snapshot.as_ref(), bucket)?;
        match version_id {
            Some(id) => find_version(snapshot.as_ref(), bucket, key, id)?
                .map(|(_, v)| v)
                .ok_or_else(|| StoreError::NoSuchVersion(id.to_owned())),
            None => match latest_of(snapshot.as_ref(), bucket, key)? {
                Some(v) if v.delete_marker => Err(StoreError::DeleteMarker(key.to_owned())),
                Some(v) => Ok(v),
                None => Err(StoreError::NoSuchKey(key.to_owned())),
            },
        }
    }

    /// The version of `key` with exactly this stamp, if it is still stored.
    pub async fn object_at(&self, bucket: &str, key: &str, stamp: keys::Stamp) -> StoreResult<Option<ObjectVersion>> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.blocking(move |meta, _| {
            let snapshot = meta.snapshot()?;
            snapshot
                .get(Table::Versions, &keys::version_key(&bucket, &key, stamp))?
                .map(|raw| ObjectVersion::from_record(&raw))
                .transpose()
        })
        .await
    }

    /// Stores a new version of `key` (its data already durable in the blob store), if
    /// `precondition` holds. On any failure the new version's blobs are removed.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        version: ObjectVersion,
        precondition: Option<Precondition>,
    ) -> StoreResult<ObjectVersion> {
        self.insert_checked(bucket, key, version, precondition, insert_version)
            .await
    }

    /// `version` stamped now, as [`Catalog::put_object`] would commit it (this hub's clock and
    /// origin, a version id when the bucket's versioning is enabled), for a write whose copies
    /// at other hubs are made before it is committed here ([`Catalog::put_stamped`]).
    pub async fn stamp_version(&self, bucket: &str, mut version: ObjectVersion) -> StoreResult<ObjectVersion> {
        let name = bucket.to_owned();
        let record = self
            .blocking(move |meta, _| load_bucket(meta.snapshot()?.as_ref(), &name))
            .await?;
        version.hlc = self.ctx.clock.now().0;
        version.origin = self.ctx.origin.to_string();
        version.version_id = (record.versioning == Versioning::Enabled).then(|| keys::version_id_of(version.stamp()));
        Ok(version)
    }

    /// Commits a version stamped by [`Catalog::stamp_version`] with its stamp, if
    /// `precondition` holds (the hook runs as for [`Catalog::put_object`]). A newer null version
    /// or delete of the key committed meanwhile wins ([`StampedOutcome::Superseded`]). On any
    /// failure, and when superseded, the version's blobs are removed.
    pub async fn put_stamped(
        &self,
        bucket: &str,
        key: &str,
        version: ObjectVersion,
        precondition: Option<Precondition>,
    ) -> StoreResult<StampedOutcome> {
        self.insert_checked(bucket, key, version, precondition, insert_stamped)
            .await
    }

    /// Runs `insert` for a new version of `key` in one transaction, if `precondition` holds on
    /// the key's latest version; frees what it replaced, or on failure the new version's blobs.
    async fn insert_checked<R: Send + 'static>(
        &self,
        bucket: &str,
        key: &str,
        version: ObjectVersion,
        precondition: Option<Precondition>,
        insert: InsertFn<R>,
    ) -> StoreResult<R> {
        let new_blobs = version.data.blobs().to_vec();
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let result = self
            .blocking(move |meta, ctx| {
                write_with(meta, move |txn| {
                    if let Some(check) = precondition {
                        let current = latest_of(txn, &bucket, &key)?.filter(|v| !v.delete_marker);
                        check(current.as_ref())?;
                    }
                    insert(txn, &ctx, &bucket, &key, version)
                })
            })
            .await;
        self.free_after(result, new_blobs).await
    }

    /// After a write: frees the blobs it replaced, or if it failed, the blobs it brought.
    async fn free_after<R>(&self, result: StoreResult<(R, Vec<BlobRef>)>, brought: Vec<BlobRef>) -> StoreResult<R> {
        match result {
            Ok((value, freed)) => {
                self.free(freed).await;
                Ok(value)
            }
            Err(e) => {
                self.free(brought).await;
                Err(e)
            }
        }
    }

    /// Removes the blobs of a version that was never committed (a write given up).
    pub async fn discard(&self, version: &ObjectVersion) {
        self.free(version.data.blobs().to_vec()).await;
    }

    /// Deletes as S3 DeleteObject does: without a version id, removes the null version
    /// (unversioned), or adds a delete marker (versioning enabled or suspended); with one,
    /// removes exactly that version. Deleting what does not exist succeeds.
    pub async fn delete_object(&self, bucket: &str, key: &str, version_id: Option<&str>) -> StoreResult<DeleteOutcome> {
        let (bucket, key, version_id) = (bucket.to_owned(), key.to_owned(), version_id.map(str::to_owned));
        let (outcome, freed) = self
            .blocking(move |meta, ctx| {
                write_with(meta, move |txn| {
                    let record = load_bucket(txn, &bucket)?;
                    if let Some(id) = version_id {
                        let Some((raw, version)) = find_version(txn, &bucket, &key, &id)? else {
                            return Ok((
                                DeleteOutcome {
                                    version_id: Some(id),
                                    delete_marker: false,
                                },
                                Vec::new(),
                            ));
                        };
                        if let Some(hook) = &ctx.hook {
                            hook.on_local_delete(txn, &bucket, &key, &version)?;
                        }
                        remove_version_row(txn, &raw, &version)?;
                        bury_version(txn, &bucket, &key, version.stamp());
                        // The null version deleted by id: an older null version still on its
                        // way from another hub must not come back here (the other hubs take
                        // this delete as a null-version delete and raise the same tombstone).
                        if version.version_id.is_none() {
                            raise_tombstone(txn, &bucket, &key, version.stamp())?;
                        }
                        let outcome = DeleteOutcome {
                            version_id: Some(id),
                            delete_marker: version.delete_marker,
                        };
                        return Ok((outcome, version.data.blobs().to_vec()));
                    }
                    match record.versioning {
                        Versioning::Unversioned => {
                            let freed = remove_null_version(txn, &bucket, &key)?;
                            let tombstone = ObjectVersion::delete_marker(ctx.clock.now().0, &ctx.origin);
                            raise_tombstone(txn, &bucket, &key, tombstone.stamp())?;
                            if let Some(hook) = &ctx.hook {
                                hook.on_local_delete(txn, &bucket, &key, &tombstone)?;
                            }
                            Ok((DeleteOutcome::default(), freed))
                        }
                        Versioning::Enabled | Versioning::Suspended => {
                            // insert_version stamps it with the clock and this hub.
                            let marker = ObjectVersion::delete_marker(0, "");
                            let (stored, freed) = insert_version(txn, &ctx, &bucket, &key, marker)?;
                            let outcome = DeleteOutcome {
                                version_id: stored.version_id,
                                delete_marker: true,
                            };
                            Ok((outcome, freed))
                        }
                    }
                })
            })
            .await?;
        self.free(freed).await;
        Ok(outcome)
    }

    /// Replaces the tags of one version (the latest when `version_id` is `None`); returns the
    /// version id tagged.
    pub async fn set_object_tags(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        tags: Vec<(String, String)>,
    ) -> StoreResult<Option<String>> {
        self.change_version(bucket, key, version_id, move |v| v.tags = tags)
            .await
    }

    /// Sets the ACL (opaque JSON) of a version of `key` (the latest when `version_id` is none).
    pub async fn set_object_acl(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        acl: Option<String>,
    ) -> StoreResult<Option<String>> {
        self.change_version(bucket, key, version_id, move |v| v.acl = acl).await
    }

    /// Changes a version's tags or ACL in place, in one transaction; answers its version id.
    async fn change_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        change: impl FnOnce(&mut ObjectVersion) + Send + 'static,
    ) -> StoreResult<Option<String>> {
        let (bucket, key, version_id) = (bucket.to_owned(), key.to_owned(), version_id.map(str::to_owned));
        self.blocking(move |meta, _| {
            write_with(meta, move |txn| {
                load_bucket(txn, &bucket)?;
                let (raw, mut version) = match &version_id {
                    Some(id) => {
                        find_version(txn, &bucket, &key, id)?.ok_or_else(|| StoreError::NoSuchVersion(id.clone()))?
                    }
                    None => versions_of(txn, &bucket, &key)?
                        .into_iter()
                        .next()
                        .filter(|(_, v)| !v.delete_marker)
                        .ok_or_else(|| StoreError::NoSuchKey(key.clone()))?,
                };
                if version.delete_marker {
                    return Err(StoreError::DeleteMarker(key));
                }
                change(&mut version);
                rewrite_version_row(txn, &raw, &mut version);
                Ok(version.version_id)
            })
        })
        .await
    }

    /// The bytes `offset..offset + len` of a stored version of `key`.
    pub async fn read(
        &self,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
        offset: u64,
        len: u64,
    ) -> StoreResult<ByteStream> {
        // The stored bytes: for a sealed version, its ciphertext.
        let stored = version.stored_size();
        let end = offset
            .checked_add(len)
            .filter(|end| *end <= stored)
            .ok_or_else(|| StoreError::Corrupt {
                what: "read range",
                detail: format!("{len} bytes from {offset} of a {stored}-byte object"),
            })?;
        let inline_range = |bytes: bytes::Bytes| {
            if bytes.len() as u64 >= end {
                Ok(bytes.slice(offset as usize..end as usize))
            } else {
                Err(StoreError::Corrupt {
                    what: "inline object",
                    detail: format!("holds {} bytes, record says {stored}", bytes.len()),
                })
            }
        };
        match &version.data {
            ObjectData::Inline(bytes) => {
                let slice = inline_range(bytes::Bytes::copy_from_slice(bytes))?;
                Ok(Box::pin(futures::stream::iter([Ok(slice)])))
            }
            ObjectData::InlineApart => {
                // A point read on the calling thread, like `object`.
                let raw = keys::version_key(bucket, key, version.stamp());
                let bytes = self
                    .meta
                    .snapshot()?
                    .get(Table::InlineData, &raw)?
                    .ok_or_else(|| StoreError::NoSuchKey(key.to_owned()))?;
                let slice = inline_range(bytes::Bytes::from(bytes))?;
                Ok(Box::pin(futures::stream::iter([Ok(slice)])))
            }
            ObjectData::Blobs(blobs) => {
                // The stretch of each blob that falls inside the range, in order.
                let mut pieces = Vec::new();
                let mut blob_start = 0u64;
                for blob in blobs {
                    let blob_end = blob_start + blob.size;
                    let from = offset.max(blob_start);
                    let to = end.min(blob_end);
                    if from < to {
                        pieces.push((blob.id.clone(), from - blob_start, to - from));
                    }
                    blob_start = blob_end;
                }
                let store = self.blobs.clone();
                let stream = futures::stream::iter(pieces)
                    .then(move |(id, from, n)| {
                        let store = store.clone();
                        async move { store.read(&id, from, n).await }
                    })
                    .try_flatten();
                Ok(Box::pin(stream))
            }
        }
    }

    // ---- replication ----

    /// Applies a version replicated from another hub, idempotently, by last-writer-wins on
    /// [`keys::Stamp`]: a versioned write (with an id) joins the key's versions; a null version
    /// replaces an older null version and loses to a newer one or to a newer delete. The
    /// version's blobs must already be durable here; they are freed if it is not applied.
    pub async fn apply_replica(&self, bucket: &str, key: &str, version: ObjectVersion) -> StoreResult<ReplicaOutcome> {
        let incoming_blobs = version.data.blobs().to_vec();
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let (outcome, freed) = self
            .blocking(move |meta, ctx| write_with(meta, move |txn| apply_replica_in(txn, &ctx, &bucket, &key, version)))
            .await
            .inspect_err(|_| {
                let blobs = self.blobs.clone();
                let incoming = incoming_blobs.clone();
                tokio::spawn(async move {
                    for b in incoming {
                        let _ = blobs.delete(&b.id).await;
                    }
                });
            })?;
        self.free(freed).await;
        Ok(outcome)
    }

    /// Applies many replicated versions in one transaction (one commit for a whole batch of
    /// small versions), each as [`Catalog::apply_replica`] would. A version of a bucket not
    /// known here gets its own `NoSuchBucket` and the others still apply; any other failure
    /// applies none. Blobs of versions not applied are freed.
    pub async fn apply_replicas(
        &self,
        batch: Vec<(String, String, ObjectVersion)>,
    ) -> StoreResult<Vec<StoreResult<ReplicaOutcome>>> {
        let incoming: Vec<BlobRef> = batch.iter().flat_map(|(_, _, v)| v.data.blobs().to_vec()).collect();
        let result = self
            .blocking(move |meta, ctx| {
                write_with(meta, move |txn| {
                    let mut outcomes = Vec::with_capacity(batch.len());
                    let mut freed = Vec::new();
                    for (bucket, key, version) in batch {
                        let blobs = version.data.blobs().to_vec();
                        match apply_replica_in(txn, &ctx, &bucket, &key, version) {
                            Ok((outcome, f)) => {
                                freed.extend(f);
                                outcomes.push(Ok(outcome));
                            }
                            Err(e @ StoreError::NoSuchBucket(_)) => {
                                freed.extend(blobs);
                                outcomes.push(Err(e));
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    Ok((outcomes, freed))
                })
            })
            .await;
        self.free_after(result, incoming).await
    }

    /// The versions with exactly these stamps that are still stored (`None` for the others),
    /// read from one snapshot, small ones with their bytes ([`ObjectData::Inline`]: a batch
    /// of them is sent without another read).
    pub async fn objects_at(
        &self,
        wanted: Vec<(String, String, keys::Stamp)>,
    ) -> StoreResult<Vec<Option<ObjectVersion>>> {
        self.blocking(move |meta, _| {
            let snapshot = meta.snapshot()?;
            wanted
                .iter()
                .map(|(bucket, key, stamp)| {
                    let raw = keys::version_key(bucket, key, *stamp);
                    let Some(record) = snapshot.get(Table::Versions, &raw)? else {
                        return Ok(None);
                    };
                    let mut version = ObjectVersion::from_record(&record)?;
                    if version.data == ObjectData::InlineApart {
                        let bytes = snapshot
                            .get(Table::InlineData, &raw)?
                            .ok_or_else(|| StoreError::NoSuchKey(key.clone()))?;
                        version.data = ObjectData::Inline(bytes);
                    }
                    Ok(Some(version))
                })
                .collect()
        })
        .await
    }

    /// Applies deletes replicated from another hub, in one transaction: each of version
    /// `version_id`, or (without one) of the null version if it is older than its stamp,
    /// leaving a tombstone at that stamp. Deletes for buckets unknown here are moot and
    /// skipped. Returns how many versions were removed.
    pub async fn apply_remote_deletes(&self, batch: Vec<RemoteDelete>) -> StoreResult<usize> {
        let (removed, freed) = self
            .blocking(move |meta, ctx| {
                write_with(meta, move |txn| {
                    let mut removed = 0;
                    let mut freed = Vec::new();
                    for RemoteDelete {
                        bucket,
                        key,
                        version_id,
                        stamp,
                        newer_only,
                        exact,
                    } in &batch
                    {
                        match load_bucket(txn, bucket) {
                            Ok(_) => {}
                            Err(StoreError::NoSuchBucket(_)) => continue,
                            Err(e) => return Err(e),
                        }
                        ctx.clock.observe(valley_types::Hlc(stamp.hlc));
                        if *newer_only {
                            raise_newer_hint(txn, bucket, key, *stamp)?;
                            continue;
                        }
                        let target = match version_id {
                            Some(id) => {
                                let named = keys::stamp_of_version_id(id);
                                if let Some(buried) = named {
                                    bury_version(txn, bucket, key, buried);
                                }
                                match find_version(txn, bucket, key, id)? {
                                    Some(found) => Some(found),
                                    None if *exact && named == Some(*stamp) => {
                                        exact_null_version(txn, bucket, key, *stamp)?
                                    }
                                    None => None,
                                }
                            }
                            None => {
                                raise_tombstone(txn, bucket, key, *stamp)?;
                                versions_of(txn, bucket, key)?
                                    .into_iter()
                                    .find(|(_, v)| v.version_id.is_none() && v.stamp() <= *stamp)
                            }
                        };
                        if let Some((raw, v)) = target {
                            remove_version_row(txn, &raw, &v)?;
                            freed.extend_from_slice(v.data.blobs());
                            removed += 1;
                        }
                    }
                    Ok((removed, freed))
                })
            })
            .await?;
        self.free(freed).await;
        Ok(removed)
    }

    /// Retracts, at the hub that stamped it, a version of `bucket/key` whose write failed
    /// after copies of it went out: the stamp is buried (a copy coming back from a peer, by
    /// anti-entropy say, never applies), the version stored at exactly `stamp` is removed if a
    /// copy already came back (nothing else is), and `also` runs in the same transaction (it
    /// queues the retractions at the peers).
    pub async fn retract_own(&self, bucket: &str, key: &str, stamp: keys::Stamp, also: WriteJob) -> StoreResult<()> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let freed = self
            .blocking(move |meta, _| {
                write_with(meta, move |txn| {
                    bury_version(txn, &bucket, &key, stamp);
                    let raw = keys::version_key(&bucket, &key, stamp);
                    let mut freed = Vec::new();
                    if let Some(value) = txn.get(Table::Versions, &raw)? {
                        let version = ObjectVersion::from_record(&value)?;
                        remove_version_row(txn, &raw, &version)?;
                        freed.extend_from_slice(version.data.blobs());
                    }
                    also(txn)?;
                    Ok(freed)
                })
            })
            .await?;
        self.free(freed).await;
        Ok(())
    }

    /// Removes every version of every key in `bucket` at this hub (the bucket itself stays):
    /// data stranded by a policy that no longer allows this hub. Not replicated. Returns the
    /// number of versions removed.
    pub async fn purge_bucket_data(&self, bucket: &str) -> StoreResult<usize> {
        let mut removed = 0;
        loop {
            let bucket_name = bucket.to_owned();
            let freed = self
                .blocking(move |meta, _| {
                    write_with(meta, move |txn| {
                        let start = keys::bucket_prefix(&bucket_name);
                        let end = keys::bucket_end(&bucket_name);
                        let batch = txn.scan(Table::Versions, &start, Some(&end), 256)?;
                        let mut freed = Vec::new();
                        for (raw, value) in &batch {
                            let version = ObjectVersion::from_record(value)?;
                            freed.extend_from_slice(version.data.blobs());
                            remove_version_row(txn, raw, &version)?;
                        }
                        Ok((batch.len(), freed))
                    })
                })
                .await?;
            let (count, blobs) = freed;
            self.free(blobs).await;
            removed += count;
            if count == 0 {
                return Ok(removed);
            }
        }
    }

    /// Versions (including delete markers) and bytes stored for `bucket`.
    pub async fn bucket_usage(&self, bucket: &str) -> StoreResult<(u64, u64)> {
        let bucket = bucket.to_owned();
        self.blocking(move |meta, _| {
            let snapshot = meta.snapshot()?;
            if let Some(usage) = crate::usage::of(&*snapshot, &bucket)? {
                return Ok(usage);
            }
            let end = keys::bucket_end(&bucket);
            let mut cursor = keys::bucket_prefix(&bucket);
            let (mut objects, mut bytes) = (0u64, 0u64);
            loop {
                let batch = snapshot.scan(Table::Versions, &cursor, Some(&end), 1024)?;
                let Some(last) = batch.last() else { break };
                let mut next = last.0.clone();
                next.push(0);
                for (_, value) in &batch {
                    let v = ObjectVersion::from_record(value)?;
                    if !v.delete_marker {
                        objects += 1;
                        bytes += v.size;
                    }
                }
                cursor = next;
            }
            Ok((objects, bytes))
        })
        .await
    }

    // ---- multipart ----

    pub async fn create_upload(&self, bucket: &str, key: &str, upload: UploadRecord) -> StoreResult<()> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.blocking(move |meta, _| {
            write_with(meta, move |txn| {
                load_bucket(txn, &bucket)?;
                txn.put(
                    Table::Uploads,
                    &keys::upload_key(&bucket, &key, &upload.upload_id),
                    &upload.to_record(),
                );
                Ok(())
            })
        })
        .await
    }

    pub async fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> StoreResult<UploadRecord> {
        let (bucket, key, upload_id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        self.blocking(move |meta, _| load_upload(meta.snapshot()?.as_ref(), &bucket, &key, &upload_id))
            .await
    }

    /// Records a part (its blob already durable), replacing any earlier part with its number.
    pub async fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        part: PartRecord,
    ) -> StoreResult<()> {
        let (bucket, key, upload_id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        let new_blob = part.blob.clone();
        let result = self
            .blocking(move |meta, _| {
                write_with(meta, move |txn| {
                    load_upload(txn, &bucket, &key, &upload_id)?;
                    let part_key = keys::part_key(&upload_id, part_number);
                    let replaced = match txn.get(Table::Parts, &part_key)? {
                        Some(raw) => vec![decode::<PartRecord>("part", &raw)?.blob],
                        None => Vec::new(),
                    };
                    txn.put(Table::Parts, &part_key, &encode(&part));
                    Ok(replaced)
                })
            })
            .await;
        match result {
            Ok(replaced) => {
                self.free(replaced).await;
                Ok(())
            }
            Err(e) => {
                self.free(vec![new_blob]).await;
                Err(e)
            }
        }
    }

    /// Parts after `marker`, at most `max`; and whether more follow.
    pub async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        marker: u32,
        max: usize,
    ) -> StoreResult<(Vec<(u32, PartRecord)>, bool)> {
        let (bucket, key, upload_id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        self.blocking(move |meta, _| {
            let snapshot = meta.snapshot()?;
            load_upload(snapshot.as_ref(), &bucket, &key, &upload_id)?;
            let start = keys::part_key(&upload_id, marker.saturating_add(1));
            let end = keys::part_key(&upload_id, u32::MAX);
            let raw = snapshot.scan(Table::Parts, &start, Some(&end), max.saturating_add(1))?;
            let truncated = raw.len() > max;
            let parts = raw
                .into_iter()
                .take(max)
                .map(|(k, v)| Ok((keys::parse_part_number(&k).unwrap_or(0), decode("part", &v)?)))
                .collect::<StoreResult<Vec<_>>>()?;
            Ok((parts, truncated))
        })
        .await
    }

    /// Completes a multipart upload from the listed `(part number, etag)` pairs. The object
    /// references the parts' blobs directly: no data is copied. Parts not listed are freed.
    pub async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        chosen: Vec<(u32, String)>,
        precondition: Option<Precondition>,
    ) -> StoreResult<ObjectVersion> {
        self.complete_upload_with_checksums(bucket, key, upload_id, chosen, precondition, Checksums::default())
            .await
    }

    /// [`Catalog::complete_upload`], storing `checksums` (the composite checksum of the parts,
    /// computed by the caller) with the object.
    pub async fn complete_upload_with_checksums(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        chosen: Vec<(u32, String)>,
        precondition: Option<Precondition>,
        checksums: Checksums,
    ) -> StoreResult<ObjectVersion> {
        let outcome = self
            .complete_upload_as(bucket, key, upload_id, chosen, precondition, checksums, None)
            .await?;
        Ok(outcome.version().clone())
    }

    /// The version completing the upload from `chosen` would store, unstamped (nothing is
    /// changed): to be stamped ([`Catalog::stamp_version`]) and committed with
    /// [`Catalog::complete_upload_stamped`].
    pub async fn assemble_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        chosen: Vec<(u32, String)>,
        checksums: Checksums,
    ) -> StoreResult<ObjectVersion> {
        let (bucket, key, upload_id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        self.blocking(move |meta, _| {
            let snapshot = meta.snapshot()?;
            let upload = load_upload(snapshot.as_ref(), &bucket, &key, &upload_id)?;
            let parts = all_parts(snapshot.as_ref(), &upload_id)?;
            let mut version = assemble(&upload, &parts, &chosen)?;
            version.checksums = checksums;
            Ok(version)
        })
        .await
    }

    /// Completes the upload as [`Catalog::complete_upload_with_checksums`] does, storing
    /// `version` (from [`Catalog::assemble_upload`], then stamped) with its stamp. The upload
    /// must still assemble to the same data.
    pub async fn complete_upload_stamped(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        chosen: Vec<(u32, String)>,
        precondition: Option<Precondition>,
        version: ObjectVersion,
    ) -> StoreResult<StampedOutcome> {
        let checksums = version.checksums.clone();
        self.complete_upload_as(bucket, key, upload_id, chosen, precondition, checksums, Some(version))
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn complete_upload_as(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        chosen: Vec<(u32, String)>,
        precondition: Option<Precondition>,
        checksums: Checksums,
        stamped: Option<ObjectVersion>,
    ) -> StoreResult<StampedOutcome> {
        let (bucket, key, upload_id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        let (stored, freed) = self
            .blocking(move |meta, ctx| {
                write_with(meta, move |txn| {
                    let upload = load_upload(txn, &bucket, &key, &upload_id)?;
                    let all_parts = all_parts(txn, &upload_id)?;
                    let mut version = assemble(&upload, &all_parts, &chosen)?;
                    version.checksums = checksums;
                    if let Some(stamped) = &stamped
                        && (stamped.data != version.data || stamped.etag != version.etag)
                    {
                        return Err(StoreError::InvalidPart(
                            "the upload's parts changed while the object was being copied".into(),
                        ));
                    }
                    if let Some(check) = precondition {
                        let current = latest_of(txn, &bucket, &key)?.filter(|v| !v.delete_marker);
                        check(current.as_ref())?;
                    }
                    let used: std::collections::HashSet<u32> = chosen.iter().map(|(n, _)| *n).collect();
                    let mut freed: Vec<BlobRef> = Vec::new();
                    for (number, part) in &all_parts {
                        txn.delete(Table::Parts, &keys::part_key(&upload_id, *number));
                        if !used.contains(number) {
                            freed.push(part.blob.clone());
                        }
                    }
                    txn.delete(Table::Uploads, &keys::upload_key(&bucket, &key, &upload_id));
                    let (outcome, replaced) = match stamped {
                        Some(stamped) => insert_stamped(txn, &ctx, &bucket, &key, stamped)?,
                        None => {
                            let (stored, replaced) = insert_version(txn, &ctx, &bucket, &key, version)?;
                            (StampedOutcome::Stored(stored), replaced)
                        }
                    };
                    freed.extend(replaced);
                    Ok((outcome, freed))
                })
            })
            .await?;
        self.free(freed).await;
        Ok(stored)
    }

    pub async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> StoreResult<()> {
        let (bucket, key, upload_id) = (bucket.to_owned(), key.to_owned(), upload_id.to_owned());
        let freed = self
            .blocking(move |meta, _| {
                write_with(meta, move |txn| {
                    load_upload(txn, &bucket, &key, &upload_id)?;
                    let parts = all_parts(txn, &upload_id)?;
                    for (number, _) in &parts {
                        txn.delete(Table::Parts, &keys::part_key(&upload_id, *number));
                    }
                    txn.delete(Table::Uploads, &keys::upload_key(&bucket, &key, &upload_id));
                    Ok(parts.into_iter().map(|(_, p)| p.blob).collect::<Vec<_>>())
                })
            })
            .await?;
        self.free(freed).await;
        Ok(())
    }

    /// Aborts every multipart upload created before `cutoff_unix_ns`: an abandoned upload's
    /// parts hold disk until someone aborts it, and clients crash. Answers how many were aborted.
    pub async fn expire_uploads(&self, cutoff_unix_ns: u64) -> StoreResult<usize> {
        let mut expired = 0;
        for (bucket, _) in self.list_buckets().await? {
            let b = bucket.clone();
            let stale: Vec<(String, String)> = self
                .blocking(move |meta, _| {
                    let snapshot = meta.snapshot()?;
                    let (mut cursor, end) = (keys::bucket_prefix(&b), keys::bucket_end(&b));
                    let mut stale = Vec::new();
                    loop {
                        let batch = snapshot.scan(Table::Uploads, &cursor, Some(&end), 1024)?;
                        let Some(last) = batch.last() else { break };
                        let mut next = last.0.clone();
                        next.push(0);
                        for (raw_key, value) in batch {
                            let upload = UploadRecord::from_record(&value)?;
                            if upload.created_unix_ns < cutoff_unix_ns
                                && let Some((key, id)) = keys::parse_upload_key(&b, &raw_key)
                            {
                                stale.push((key.to_owned(), id.to_owned()));
                            }
                        }
                        cursor = next;
                    }
                    Ok(stale)
                })
                .await?;
            for (key, upload_id) in stale {
                match self.abort_upload(&bucket, &key, &upload_id).await {
                    // Completed or aborted meanwhile: nothing left to expire.
                    Ok(()) => expired += 1,
                    Err(StoreError::NoSuchUpload(_) | StoreError::NoSuchBucket(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(expired)
    }

    // ---- listing ----

    pub async fn list_objects(&self, bucket: &str, query: ListQuery) -> StoreResult<ListPage<ObjectVersion>> {
        let bucket = bucket.to_owned();
        self.blocking(move |meta, _| {
            let snapshot = meta.snapshot()?;
            load_bucket(snapshot.as_ref(), &bucket)?;
            list::list_objects(snapshot.as_ref(), &bucket, &query)
        })
        .await
    }

    /// ListObjectVersions; `version_marker` is a version id (or `"null"`) of `query.marker`.
    pub async fn list_versions(
        &self,
        bucket: &str,
        query: ListQuery,
        version_marker: Option<String>,
    ) -> StoreResult<ListPage<VersionEntry>> {
        let bucket = bucket.to_owned();
        self.blocking(move |meta, _| {
            let snapshot = meta.snapshot()?;
            load_bucket(snapshot.as_ref(), &bucket)?;
            let marker_stamp = match (&query.marker, version_marker) {
                (Some(key), Some(id)) => find_version(snapshot.as_ref(), &bucket, key, &id)?
                    .map(|(_, v)| v.stamp())
                    .or_else(|| keys::stamp_of_version_id(&id)),
                _ => None,
            };
            list::list_versions(snapshot.as_ref(), &bucket, &query, marker_stamp)
        })
        .await
    }

    pub async fn list_uploads(
        &self,
        bucket: &str,
        query: ListQuery,
        upload_id_marker: Option<String>,
    ) -> StoreResult<ListPage<UploadRecord>> {
        let bucket = bucket.to_owned();
        self.blocking(move |meta, _| {
            let snapshot = meta.snapshot()?;
            load_bucket(snapshot.as_ref(), &bucket)?;
            list::list_uploads(snapshot.as_ref(), &bucket, &query, upload_id_marker.as_deref())
        })
        .await
    }

    // ---- maintenance ----

    /// Builds the per-bucket usage counters of a store written before they existed (once: a
    /// scan of every version); until then usage is counted by scanning. Run before serving;
    /// answers whether there was anything to count.
    pub async fn prepare_usage(&self) -> StoreResult<bool> {
        self.blocking(|meta, _| write_with(meta, crate::usage::build_if_missing))
            .await
    }

    /// Removes blobs no committed record names: left by a crash between a blob's write and its
    /// commit, or between a commit and the removal of the blobs it freed. Run before serving.
    pub async fn collect_orphans(&self) -> StoreResult<usize> {
        let referenced = self
            .blocking(|meta, ctx| {
                let snapshot = meta.snapshot()?;
                let mut referenced = std::collections::HashSet::new();
                let mut newest_hlc = 0u64;
                for table in [Table::Versions, Table::Parts, Table::Staging] {
                    let mut cursor = Vec::new();
                    loop {
                        let batch = snapshot.scan(table, &cursor, None, 1024)?;
                        let Some(last) = batch.last() else { break };
                        let mut next = last.0.clone();
                        next.push(0);
                        for (_, value) in batch {
                            if table == Table::Versions {
                                let v = ObjectVersion::from_record(&value)?;
                                newest_hlc = newest_hlc.max(v.hlc);
                                referenced.extend(v.data.blobs().iter().map(|b| b.id.clone()));
                            } else if table == Table::Parts {
                                let p: PartRecord = decode("part", &value)?;
                                referenced.insert(p.blob.id);
                            } else {
                                let c: crate::replica::StagedChunk = decode("staged chunk", &value)?;
                                referenced.insert(c.blob.id);
                            }
                        }
                        cursor = next;
                    }
                }
                // New versions must sort after every stored one, even if the wall clock went back.
                ctx.clock.observe(valley_types::Hlc(newest_hlc));
                Ok(referenced)
            })
            .await?;
        let mut removed = 0;
        for id in self.blobs.list().await? {
            if !referenced.contains(&id) {
                self.blobs.delete(&id).await.map_err(|source| StoreError::Blob {
                    id: id.0.clone(),
                    source,
                })?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn load_upload(txn: &dyn ReadTxn, bucket: &str, key: &str, upload_id: &str) -> StoreResult<UploadRecord> {
    load_bucket(txn, bucket)?;
    match txn.get(Table::Uploads, &keys::upload_key(bucket, key, upload_id))? {
        Some(raw) => UploadRecord::from_record(&raw),
        None => Err(StoreError::NoSuchUpload(upload_id.to_owned())),
    }
}

fn all_parts(txn: &dyn ReadTxn, upload_id: &str) -> StoreResult<Vec<(u32, PartRecord)>> {
    let raw = txn.scan(
        Table::Parts,
        &keys::part_key(upload_id, 0),
        Some(&keys::part_key(upload_id, u32::MAX)),
        usize::MAX,
    )?;
    raw.into_iter()
        .map(|(k, v)| Ok((keys::parse_part_number(&k).unwrap_or(0), decode("part", &v)?)))
        .collect()
}

/// Builds the object version a CompleteMultipartUpload describes, checking S3's rules: parts
/// in ascending order, each existing with the given ETag, all but the last at least 5 MiB.
fn assemble(
    upload: &UploadRecord,
    all_parts: &[(u32, PartRecord)],
    chosen: &[(u32, String)],
) -> StoreResult<ObjectVersion> {
    if chosen.is_empty() {
        return Err(StoreError::InvalidPart("the request names no parts".into()));
    }
    if chosen.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(StoreError::InvalidPartOrder);
    }
    let by_number: std::collections::HashMap<u32, &PartRecord> = all_parts.iter().map(|(n, p)| (*n, p)).collect();
    let mut md5_of_md5s = Md5::new();
    let mut blobs = Vec::with_capacity(chosen.len());
    let mut part_sizes = Vec::with_capacity(chosen.len());
    let mut part_checksums = Vec::new();
    let mut size = 0u64;
    for (index, (number, etag)) in chosen.iter().enumerate() {
        let part = by_number
            .get(number)
            .ok_or_else(|| StoreError::InvalidPart(format!("part {number} was not uploaded")))?;
        if etag.trim_matches('"') != part.etag {
            return Err(StoreError::InvalidPart(format!("part {number}'s ETag does not match")));
        }
        let is_last = index + 1 == chosen.len();
        if !is_last && part.size < PART_SIZE_BYTES_MIN {
            return Err(StoreError::EntityTooSmall {
                part_number: i32::try_from(*number).unwrap_or(i32::MAX),
                size: part.size,
                min: PART_SIZE_BYTES_MIN,
            });
        }
        let digest = hex::decode(&part.etag).map_err(|e| StoreError::Corrupt {
            what: "part etag",
            detail: e.to_string(),
        })?;
        md5_of_md5s.update(&digest);
        blobs.push(part.blob.clone());
        part_sizes.push(part.size);
        if upload.checksum_algorithm.is_some() {
            part_checksums.push(part.checksums.clone());
        }
        size += part.size;
    }
    let stored_part_sizes: Vec<u64> = blobs.iter().map(|b| b.size).collect();
    let etag = format!("{}-{}", hex::encode(md5_of_md5s.finalize()), chosen.len());
    Ok(ObjectVersion {
        version_id: None,
        hlc: 0,
        origin: String::new(),
        delete_marker: false,
        size,
        etag: etag.clone(),
        data: ObjectData::Blobs(blobs),
        headers: upload.headers.clone(),
        checksums: Default::default(),
        tags: upload.tags.clone(),
        part_sizes,
        part_checksums,
        acl: upload.acl.clone(),
        // A sealed upload's parts' ETags are the MD5s of their stored bytes, so the object's
        // ETag is what its stored bytes hash to, part by part.
        sealing: upload.sealing.clone().map(|record| Sealing {
            record,
            stored_size: stored_part_sizes.iter().sum(),
            stored_digest: etag.clone(),
            stored_part_sizes,
            part_numbers: chosen.iter().map(|(n, _)| *n).collect(),
        }),
    })
}
