//! The embedded [`MetaStore`]: redb, with group commit.
//!
//! redb fsyncs on every commit, which would cap small-object writes at one fsync each. Instead,
//! one committer thread takes every job queued while the previous commit was syncing, runs them
//! in one write transaction (each through its own [`Overlay`], so a failing job leaves no trace)
//! and commits once. Each caller is answered only after that commit is durable.

use std::path::Path;
use std::sync::mpsc;
use std::thread;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tracing::error;

use crate::error::{StoreError, StoreResult};
use crate::meta::{Entry, MetaStore, Overlay, ReadTxn, Table, WriteJob};

/// redb's page cache: bounds the hub's memory, whatever the catalogue's size.
const META_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Jobs committed together at most; bounds the work one fsync waits on.
const GROUP_COMMIT_JOBS_MAX: usize = 256;

fn definition(table: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(table.name())
}

type Reply = mpsc::SyncSender<StoreResult<()>>;

/// redb behind the [`MetaStore`] trait.
pub struct RedbMeta {
    db: std::sync::Arc<Database>,
    /// `None` only while dropping.
    jobs: Option<mpsc::Sender<(WriteJob, Reply)>>,
    committer: Option<thread::JoinHandle<()>>,
}

impl RedbMeta {
    /// Opens (or creates) the database file at `path` and starts its committer thread.
    pub fn open(path: &Path) -> StoreResult<Self> {
        // redb's default cache is 1 GiB; small objects live inline in this database, so the cache
        // would grow with the catalogue. A bounded cache keeps the hub's memory flat.
        let db = redb::Builder::new().set_cache_size(META_CACHE_BYTES).create(path)?;
        let txn = db.begin_write()?;
        for table in Table::ALL {
            txn.open_table(definition(table))?;
        }
        txn.commit()?;
        let db = std::sync::Arc::new(db);
        let (jobs, queue) = mpsc::channel::<(WriteJob, Reply)>();
        let committer_db = db.clone();
        let committer = thread::Builder::new()
            .name("valley-meta-commit".into())
            .spawn(move || run_committer(&committer_db, &queue))?;
        Ok(Self {
            db,
            jobs: Some(jobs),
            committer: Some(committer),
        })
    }
}

impl Drop for RedbMeta {
    /// Waits for the committer thread: it holds the database too, and until it lets go the file
    /// stays locked, so opening it again right after a drop (a restart) would fail with
    /// "Database already open".
    fn drop(&mut self) {
        // Closing the queue ends the committer once it has answered every queued job.
        drop(self.jobs.take());
        if let Some(committer) = self.committer.take()
            && committer.thread().id() != thread::current().id()
        {
            let _ = committer.join();
        }
    }
}

fn run_committer(db: &Database, queue: &mpsc::Receiver<(WriteJob, Reply)>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < GROUP_COMMIT_JOBS_MAX {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        let outcome = commit_batch(db, batch, &mut replies);
        for (reply, job_result) in replies {
            let result = match (&outcome, job_result) {
                (Ok(()), r) => r,
                (Err(e), Ok(())) => Err(StoreError::Meta(format!("commit failed: {e}"))),
                (Err(_), Err(e)) => Err(e),
            };
            let _ = reply.send(result);
        }
    }
}

fn commit_batch(
    db: &Database,
    batch: Vec<(WriteJob, Reply)>,
    replies: &mut Vec<(Reply, StoreResult<()>)>,
) -> StoreResult<()> {
    let txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => {
            let e = StoreError::from(e);
            for (_, reply) in batch {
                replies.push((reply, Err(StoreError::Meta(e.to_string()))));
            }
            return Err(e);
        }
    };
    for (job, reply) in batch {
        let view = RedbWriteView { txn: &txn };
        let mut overlay = Overlay::new(&view);
        let result = crate::meta::run_job(job, &mut overlay);
        if result.is_ok()
            && let Err(e) = apply(&txn, overlay.into_writes())
        {
            error!(error = %e, "applying a metadata write failed; aborting the batch");
            replies.push((reply, Err(StoreError::Meta(e.to_string()))));
            return Err(e);
        }
        replies.push((reply, result));
    }
    txn.commit()?;
    Ok(())
}

fn apply(
    txn: &redb::WriteTransaction,
    writes: std::collections::BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>,
) -> StoreResult<()> {
    for ((table, key), value) in writes {
        let mut t = txn.open_table(definition(table))?;
        match value {
            Some(v) => {
                t.insert(key.as_slice(), v.as_slice())?;
            }
            None => {
                t.remove(key.as_slice())?;
            }
        }
    }
    Ok(())
}

impl MetaStore for RedbMeta {
    fn snapshot(&self) -> StoreResult<Box<dyn ReadTxn + '_>> {
        Ok(Box::new(RedbReadView {
            txn: self.db.begin_read()?,
        }))
    }

    fn write(&self, job: WriteJob) -> StoreResult<()> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.jobs
            .as_ref()
            .ok_or_else(|| StoreError::Meta("the committer thread has stopped".into()))?
            .send((job, reply))
            .map_err(|_| StoreError::Meta("the committer thread has stopped".into()))?;
        answer
            .recv()
            .map_err(|_| StoreError::Meta("the committer thread has stopped".into()))?
    }
}

struct RedbReadView {
    txn: redb::ReadTransaction,
}

struct RedbWriteView<'a> {
    txn: &'a redb::WriteTransaction,
}

fn get_from(table: &impl ReadableTable<&'static [u8], &'static [u8]>, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
    Ok(table.get(key)?.map(|v| v.value().to_vec()))
}

fn scan_from(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    start: &[u8],
    end: Option<&[u8]>,
    limit: usize,
) -> StoreResult<Vec<Entry>> {
    let mut out = Vec::new();
    let range = match end {
        Some(end) => table.range::<&[u8]>(start..end)?,
        None => table.range::<&[u8]>(start..)?,
    };
    for item in range.take(limit) {
        let (k, v) = item?;
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(out)
}

impl ReadTxn for RedbReadView {
    fn get(&self, table: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        get_from(&self.txn.open_table(definition(table))?, key)
    }

    fn scan(&self, table: Table, start: &[u8], end: Option<&[u8]>, limit: usize) -> StoreResult<Vec<Entry>> {
        scan_from(&self.txn.open_table(definition(table))?, start, end, limit)
    }
}

impl ReadTxn for RedbWriteView<'_> {
    fn get(&self, table: Table, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
        get_from(&self.txn.open_table(definition(table))?, key)
    }

    fn scan(&self, table: Table, start: &[u8], end: Option<&[u8]>, limit: usize) -> StoreResult<Vec<Entry>> {
        scan_from(&self.txn.open_table(definition(table))?, start, end, limit)
    }
}
