//! The metadata seam: an ordered, transactional key-value store of small records.
//!
//! A write is a job run inside one serializable transaction: it reads, decides, and writes;
//! if it returns an error nothing it wrote is kept. [`Overlay`] buffers a job's writes so that
//! implementations can run several jobs in one physical commit (group commit) and still drop
//! the writes of a job that failed.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::error::StoreResult;

/// The tables of the metadata store. Each is an ordered map from bytes to bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// bucket name → `BucketRecord`
    Buckets,
    /// bucket `\0` key `\0` inverted HLC → `ObjectVersion` (newest version of a key first)
    Versions,
    /// bucket `\0` key `\0` upload id → `UploadRecord`
    Uploads,
    /// upload id `\0` part number (u32 BE) → `PartRecord`
    Parts,
    /// Network control-plane records (placement policies, grants), owned by valley-replicate.
    Control,
    /// The replication outbox: peer `\0` sequence (u64 BE) → entry, owned by valley-replicate.
    /// Written in the same transaction as the version it ships.
    Outbox,
    /// The outbox by bucket: peer `\0` bucket `\0` sequence → when the entry was queued and its
    /// bytes, so a bucket's oldest unreplicated write is one seek. Owned by valley-replicate.
    OutboxByBucket,
    /// bucket `\0` key → the [`crate::keys::Stamp`] of the last delete of its null version, so
    /// an older replicated write arriving late cannot bring a deleted object back.
    Tombstones,
    /// bucket `\0` key `\0` stamp `\0` chunk index (u32 BE) → `StagedChunk`: chunks of a
    /// replica received piecewise (so a cut transfer resumes), not yet an object version.
    Staging,
    /// The same key as in `Versions` → the bytes of a small object stored inline
    /// ([`crate::record::ObjectData::InlineApart`]).
    InlineData,
    /// bucket → object versions and bytes held (`crate::usage`).
    BucketUsage,
}

impl Table {
    pub const ALL: [Table; 11] = [
        Table::Buckets,
        Table::Versions,
        Table::Uploads,
        Table::Parts,
        Table::Control,
        Table::Outbox,
        Table::OutboxByBucket,
        Table::Tombstones,
        Table::Staging,
        Table::InlineData,
        Table::BucketUsage,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Table::Buckets => "buckets",
            Table::Versions => "versions",
            Table::Uploads => "uploads",
            Table::Parts => "parts",
            Table::Control => "control",
            Table::Outbox => "outbox",
            Table::OutboxByBucket => "outbox_by_bucket",
            Table::Tombstones => "tombstones",
            Table::Staging => "staging",
            Table::InlineData => "inline_data",
            Table::BucketUsage => "bucket_usage",
        }
    }
}

/// One key-value pair as stored.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Reads from a consistent view of the store.
pub trait ReadTxn {
    fn get(&self, table: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>>;
    /// Up to `limit` entries with `start <= key` (and `key < end` when `end` is given), in key order.
    fn scan(&self, table: Table, start: &[u8], end: Option<&[u8]>, limit: usize) -> StoreResult<Vec<Entry>>;
}

/// Reads and writes inside one write transaction.
pub trait WriteTxn: ReadTxn {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]);
    fn delete(&mut self, table: Table, key: &[u8]);
}

/// A unit of work run inside a write transaction; its writes are kept only if it returns `Ok`.
pub type WriteJob = Box<dyn FnOnce(&mut dyn WriteTxn) -> StoreResult<()> + Send>;

/// An ordered, transactional, durable key-value store.
pub trait MetaStore: Send + Sync + 'static {
    /// A consistent read-only view.
    fn snapshot(&self) -> StoreResult<Box<dyn ReadTxn + '_>>;
    /// Runs `job` in a serializable write transaction and returns once its writes are durable
    /// (or the job failed, in which case nothing it wrote is kept).
    fn write(&self, job: WriteJob) -> StoreResult<()>;
}

/// Runs a job, turning a panic inside it into an error for that job alone: a bug in one
/// request must not take down the committer (and with it every later write).
pub fn run_job(job: WriteJob, txn: &mut dyn WriteTxn) -> StoreResult<()> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(txn))) {
        Ok(result) => result,
        Err(_) => Err(crate::error::StoreError::Meta(
            "a metadata write job panicked; it was rolled back".into(),
        )),
    }
}

/// A job's pending writes over a base view. `None` marks a deletion.
pub struct Overlay<'a> {
    base: &'a dyn ReadTxn,
    writes: BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>,
}

impl<'a> Overlay<'a> {
    #[must_use]
    pub fn new(base: &'a dyn ReadTxn) -> Self {
        Self {
            base,
            writes: BTreeMap::new(),
        }
    }

    /// The buffered writes, in table and key order, for the implementation to apply.
    #[must_use]
    pub fn into_writes(self) -> BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>> {
        self.writes
    }
}

impl ReadTxn for Overlay<'_> {
    fn get(&self, table: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        match self.writes.get(&(table, key.to_vec())) {
            Some(pending) => Ok(pending.clone()),
            None => self.base.get(table, key),
        }
    }

    fn scan(&self, table: Table, start: &[u8], end: Option<&[u8]>, limit: usize) -> StoreResult<Vec<Entry>> {
        // An empty range: `BTreeMap::range` below would panic on `end < start`, killing the
        // job (and with it redb's committer thread) instead of returning nothing.
        if end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        let lower = Bound::Included((table, start.to_vec()));
        let upper = match end {
            Some(end) => Bound::Excluded((table, end.to_vec())),
            None => match Table::ALL.iter().find(|t| **t > table) {
                Some(next) => Bound::Excluded((*next, Vec::new())),
                None => Bound::Unbounded,
            },
        };
        let pending: Vec<(&Vec<u8>, &Option<Vec<u8>>)> =
            self.writes.range((lower, upper)).map(|((_, k), v)| (k, v)).collect();
        if pending.is_empty() {
            return self.base.scan(table, start, end, limit);
        }
        // Deletions may hide base entries, so ask the base for enough to still fill `limit`.
        let base = self.base.scan(table, start, end, limit.saturating_add(pending.len()))?;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = base.into_iter().collect();
        for (key, value) in pending {
            match value {
                Some(v) => merged.insert(key.clone(), v.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }
}

impl WriteTxn for Overlay<'_> {
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) {
        self.writes.insert((table, key.to_vec()), Some(value.to_vec()));
    }

    fn delete(&mut self, table: Table, key: &[u8]) {
        self.writes.insert((table, key.to_vec()), None);
    }
}
