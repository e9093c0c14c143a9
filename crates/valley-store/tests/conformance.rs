//! The conformance suite: every test body is written once and run against each implementation
//! pair, (`MemMeta` + `MemBlobs`) and (`RedbMeta` + `FsBlobs` in a temporary directory), so the
//! in-memory reference and the embedded store are held to the same contract.
//!
//! Tests are grouped by layer: `meta_*` (the `MetaStore` trait), `blob_*` (the `BlobStore`
//! trait) and the rest (the `Catalog` over both). Tests that only make sense for the embedded
//! store (reopening a database file) are at the end, outside the macro.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Mutex};

use futures::StreamExt;
use md5::{Digest, Md5};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tempfile::TempDir;

use valley_store::catalog::Precondition;
use valley_store::list::{ListItem, ListPage, ListQuery};
use valley_store::meta::Entry;
use valley_store::record::{BlobRef, ObjectData, ObjectVersion, PartRecord, UploadRecord, Versioning};
use valley_store::{
    BlobId, BlobStore, Catalog, FsBlobs, MemBlobs, MemMeta, MetaStore, RedbMeta, StoreError, StoreResult, Table,
    WriteTxn,
};

// ---------------------------------------------------------------------------------------------
// The implementations under test
// ---------------------------------------------------------------------------------------------

/// One implementation pair, and what keeps it alive.
struct Env {
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    /// Where `FsBlobs` keeps its files (`None` for `MemBlobs`).
    blob_root: Option<PathBuf>,
    /// Declared last so that the stores are dropped before their directory is removed.
    _dir: Option<TempDir>,
}

impl Env {
    fn mem() -> Self {
        Env {
            meta: Arc::new(MemMeta::new()),
            blobs: Arc::new(MemBlobs::new()),
            blob_root: None,
            _dir: None,
        }
    }

    fn redb() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = RedbMeta::open(&dir.path().join("meta.redb")).expect("open redb");
        let blob_root = dir.path().join("data");
        let blobs = FsBlobs::open(&blob_root).expect("open blob dir");
        Env {
            meta: Arc::new(meta),
            blobs: Arc::new(blobs),
            blob_root: Some(blob_root),
            _dir: Some(dir),
        }
    }

    fn catalog(&self) -> Catalog {
        Catalog::new(self.meta.clone(), self.blobs.clone())
    }
}

/// Instantiates each listed test (an `async fn(Env)`) once per implementation pair.
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod mem {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Env::mem()).await;
                }
            )*
        }
        mod redb_fs {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Env::redb()).await;
                }
            )*
        }
    };
}

conformance!(
    meta_get_put_delete,
    meta_scan_order_bounds_and_limit,
    meta_failed_job_leaves_no_writes,
    meta_concurrent_jobs_keep_exactly_the_successful_ones,
    meta_snapshot_is_a_consistent_view,
    meta_job_scan_sees_its_own_pending_writes,
    blob_write_finish_and_read_ranges,
    blob_read_out_of_range_errors,
    blob_delete_is_idempotent,
    blob_list_shows_finished_blobs_only,
    bucket_lifecycle,
    unversioned_overwrite_and_delete_free_blobs,
    failed_precondition_frees_the_new_blob,
    versioning_enabled_versions_and_delete_markers,
    versioning_suspended_null_version,
    list_objects_matches_model,
    list_hides_deleted_keys_and_their_prefixes,
    list_versions_pages_every_version_once,
    multipart_complete,
    multipart_abort_and_list_uploads,
    multipart_uploads_older_than_the_cutoff_expire,
    collect_orphans_removes_only_unreferenced_blobs,
    replica_staged_chunks_resume_assemble_and_survive_collection,
    replica_deleted_versions_stay_deleted,
    replica_summaries_and_dropping_a_local_copy,
    inline_bytes_live_apart_and_go_with_their_version,
    usage_counters_agree_with_a_recount_through_every_change,
    usage_counters_are_built_once_for_a_store_from_before_them,
    exact_retraction_removes_that_version_only,
    stamped_commit_keeps_its_stamp_and_loses_to_newer,
);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

macro_rules! assert_err {
    ($result:expr, $pattern:pat) => {
        match $result {
            Err($pattern) => {}
            Err(other) => panic!("expected {}, got error {other:?}", stringify!($pattern)),
            Ok(value) => panic!("expected {}, got Ok({value:?})", stringify!($pattern)),
        }
    };
}

/// Runs a write job on the store.
fn run(
    meta: &dyn MetaStore,
    job: impl FnOnce(&mut dyn WriteTxn) -> StoreResult<()> + Send + 'static,
) -> StoreResult<()> {
    meta.write(Box::new(job))
}

fn put(meta: &dyn MetaStore, table: Table, key: &[u8], value: &[u8]) {
    let (key, value) = (key.to_vec(), value.to_vec());
    run(meta, move |txn| {
        txn.put(table, &key, &value);
        Ok(())
    })
    .expect("put");
}

fn get(meta: &dyn MetaStore, table: Table, key: &[u8]) -> Option<Vec<u8>> {
    meta.snapshot().expect("snapshot").get(table, key).expect("get")
}

fn scan(meta: &dyn MetaStore, table: Table, start: &[u8], end: Option<&[u8]>, limit: usize) -> Vec<Entry> {
    meta.snapshot()
        .expect("snapshot")
        .scan(table, start, end, limit)
        .expect("scan")
}

fn entries(pairs: &[(&str, &str)]) -> Vec<Entry> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

fn test_error() -> StoreError {
    StoreError::PreconditionFailed("the job chose to fail".into())
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    rng.fill(&mut out[..]);
    out
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

async fn write_blob(blobs: &dyn BlobStore, data: &[u8]) -> BlobId {
    let mut writer = blobs.create().await.expect("create blob");
    for chunk in data.chunks(100_000) {
        writer
            .write(bytes::Bytes::copy_from_slice(chunk))
            .await
            .expect("write blob");
    }
    writer.finish().await.expect("finish blob")
}

/// All bytes of a blob range; an error either from `read` or from the stream.
async fn read_blob(blobs: &dyn BlobStore, id: &BlobId, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut stream = blobs.read(id, offset, len).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

async fn blob_set(blobs: &dyn BlobStore) -> BTreeSet<BlobId> {
    let listed = blobs.list().await.expect("list blobs");
    let set: BTreeSet<BlobId> = listed.iter().cloned().collect();
    assert_eq!(set.len(), listed.len(), "list returned a blob twice");
    set
}

async fn blob_count(catalog: &Catalog) -> usize {
    blob_set(catalog.blobs().as_ref()).await.len()
}

fn version_of(data: ObjectData, size: u64, etag: String) -> ObjectVersion {
    ObjectVersion {
        version_id: None,
        hlc: 0,
        origin: String::new(),
        delete_marker: false,
        size,
        etag,
        data,
        headers: Default::default(),
        checksums: Default::default(),
        tags: Vec::new(),
        part_sizes: Vec::new(),
        part_checksums: Vec::new(),
        acl: None,
        sealing: None,
    }
}

/// Stores `data` in a new blob and commits it as a new version of `key`.
async fn put_blob_object(catalog: &Catalog, bucket: &str, key: &str, data: &[u8]) -> ObjectVersion {
    let id = write_blob(catalog.blobs().as_ref(), data).await;
    let version = version_of(
        ObjectData::Blobs(vec![BlobRef {
            id,
            size: data.len() as u64,
        }]),
        data.len() as u64,
        md5_hex(data),
    );
    catalog
        .put_object(bucket, key, version, None)
        .await
        .expect("put object")
}

/// Commits `data` inline (no blob) as a new version of `key`.
async fn put_inline_object(catalog: &Catalog, bucket: &str, key: &str, data: &[u8]) -> ObjectVersion {
    let version = version_of(ObjectData::Inline(data.to_vec()), data.len() as u64, md5_hex(data));
    catalog
        .put_object(bucket, key, version, None)
        .await
        .expect("put object")
}

async fn read_range(
    catalog: &Catalog,
    bucket: &str,
    key: &str,
    version: &ObjectVersion,
    offset: u64,
    len: u64,
) -> Vec<u8> {
    let mut stream = catalog
        .read(bucket, key, version, offset, len)
        .await
        .expect("read object");
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("object chunk"));
    }
    out
}

async fn read_object(catalog: &Catalog, bucket: &str, key: &str, version: &ObjectVersion) -> Vec<u8> {
    read_range(catalog, bucket, key, version, 0, version.size).await
}

async fn latest_bytes(catalog: &Catalog, bucket: &str, key: &str) -> Vec<u8> {
    let version = catalog.object(bucket, key, None).await.expect("latest version");
    read_object(catalog, bucket, key, &version).await
}

async fn set_versioning(catalog: &Catalog, bucket: &str, versioning: Versioning) {
    catalog
        .update_bucket(bucket, move |record| record.versioning = versioning)
        .await
        .expect("set versioning");
}

fn query(prefix: &str, delimiter: Option<&str>, marker: Option<&str>, max_keys: usize) -> ListQuery {
    ListQuery {
        prefix: prefix.to_owned(),
        delimiter: delimiter.map(str::to_owned),
        marker: marker.map(str::to_owned),
        max_keys,
    }
}

// ---------------------------------------------------------------------------------------------
// MetaStore
// ---------------------------------------------------------------------------------------------

async fn meta_get_put_delete(env: Env) {
    let meta = env.meta.as_ref();
    assert_eq!(get(meta, Table::Buckets, b"k"), None);
    put(meta, Table::Buckets, b"k", b"one");
    put(meta, Table::Versions, b"k", b"other table");
    assert_eq!(get(meta, Table::Buckets, b"k").as_deref(), Some(&b"one"[..]));
    assert_eq!(get(meta, Table::Versions, b"k").as_deref(), Some(&b"other table"[..]));
    assert_eq!(get(meta, Table::Uploads, b"k"), None, "tables are separate");

    put(meta, Table::Buckets, b"k", b"two");
    assert_eq!(
        get(meta, Table::Buckets, b"k").as_deref(),
        Some(&b"two"[..]),
        "put overwrites"
    );

    // Empty values and binary keys are stored as given.
    put(meta, Table::Buckets, b"\x00\xff", b"");
    assert_eq!(get(meta, Table::Buckets, b"\x00\xff").as_deref(), Some(&b""[..]));
    assert_eq!(get(meta, Table::Buckets, b"\x00"), None, "no prefix match on get");

    run(meta, |txn| {
        txn.delete(Table::Buckets, b"k");
        txn.delete(Table::Buckets, b"never existed");
        Ok(())
    })
    .expect("delete");
    assert_eq!(get(meta, Table::Buckets, b"k"), None);
    assert_eq!(
        get(meta, Table::Versions, b"k").as_deref(),
        Some(&b"other table"[..]),
        "a delete touches only its table"
    );

    // Put then delete in one job, and delete then put in one job: the last write wins.
    run(meta, |txn| {
        txn.put(Table::Parts, b"a", b"1");
        txn.delete(Table::Parts, b"a");
        txn.delete(Table::Parts, b"b");
        txn.put(Table::Parts, b"b", b"2");
        Ok(())
    })
    .expect("write");
    assert_eq!(get(meta, Table::Parts, b"a"), None);
    assert_eq!(get(meta, Table::Parts, b"b").as_deref(), Some(&b"2"[..]));
}

async fn meta_scan_order_bounds_and_limit(env: Env) {
    let meta = env.meta.as_ref();
    let mut rng = StdRng::seed_from_u64(7);
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    // Keys that are prefixes of each other, with 0x00 and 0xff bytes, and the empty key.
    for fixed in [
        &b""[..],
        b"\x00",
        b"\x00\x00",
        b"\xff",
        b"\xff\xff",
        b"a",
        b"a\x00",
        b"a\x01",
        b"ab",
        b"b",
    ] {
        model.insert(fixed.to_vec(), b"fixed".to_vec());
    }
    while model.len() < 200 {
        let len = rng.random_range(1..6);
        const BYTES: [u8; 8] = [0, 1, b'a', b'b', 0x7f, 0x80, 0xfe, 0xff];
        let key: Vec<u8> = (0..len).map(|_| BYTES[rng.random_range(0..BYTES.len())]).collect();
        let value = random_bytes(&mut rng, 4);
        model.insert(key, value);
    }
    // Insert in a random order, many keys per job, plus neighbours in the tables on either side
    // of `Versions` that a scan must not reach into.
    let mut shuffled: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
    for i in (1..shuffled.len()).rev() {
        shuffled.swap(i, rng.random_range(0..=i));
    }
    for chunk in shuffled.chunks(37) {
        let chunk = chunk.to_vec();
        run(meta, move |txn| {
            for (k, v) in &chunk {
                txn.put(Table::Versions, k, v);
            }
            txn.put(Table::Buckets, b"\xff\xff\xff", b"neighbour");
            txn.put(Table::Uploads, b"", b"neighbour");
            Ok(())
        })
        .expect("write");
    }

    let all: Vec<Entry> = model.clone().into_iter().collect();
    assert_eq!(
        scan(meta, Table::Versions, b"", None, usize::MAX),
        all,
        "full scan, byte order"
    );

    let probes: Vec<Vec<u8>> = {
        let mut p: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![b'a'],
            b"a\x00\x00".to_vec(),
            vec![0xff],
            vec![0xff, 0xff, 0xff],
        ];
        p.extend(model.keys().step_by(9).cloned());
        p
    };
    for start in &probes {
        for end in probes.iter().map(Some).chain([None]) {
            for limit in [0, 1, 2, 5, 1000] {
                let expected: Vec<Entry> = model
                    .iter()
                    .filter(|(k, _)| {
                        k.as_slice() >= start.as_slice() && end.is_none_or(|e| k.as_slice() < e.as_slice())
                    })
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let got = scan(meta, Table::Versions, start, end.map(Vec::as_slice), limit);
                assert_eq!(got, expected, "scan from {start:?} to {end:?} limit {limit}");
            }
        }
    }
}

async fn meta_failed_job_leaves_no_writes(env: Env) {
    let meta = env.meta.as_ref();
    put(meta, Table::Versions, b"keep", b"old");
    put(meta, Table::Versions, b"doomed", b"old");

    let result = run(meta, |txn| {
        txn.put(Table::Versions, b"keep", b"new");
        txn.delete(Table::Versions, b"doomed");
        txn.put(Table::Versions, b"fresh", b"new");
        txn.put(Table::Buckets, b"fresh", b"new");
        // The job sees its own writes before it fails.
        if txn.get(Table::Versions, b"fresh")?.is_none() || txn.get(Table::Versions, b"doomed")?.is_some() {
            return Err(StoreError::Meta("job did not see its own writes".into()));
        }
        Err(test_error())
    });
    assert_err!(result, StoreError::PreconditionFailed(_));
    assert_eq!(get(meta, Table::Versions, b"keep").as_deref(), Some(&b"old"[..]));
    assert_eq!(get(meta, Table::Versions, b"doomed").as_deref(), Some(&b"old"[..]));
    assert_eq!(get(meta, Table::Versions, b"fresh"), None);
    assert_eq!(get(meta, Table::Buckets, b"fresh"), None);
    assert_eq!(
        scan(meta, Table::Versions, b"", None, 10),
        entries(&[("doomed", "old"), ("keep", "old")])
    );

    // The store still accepts writes after a failed job.
    put(meta, Table::Versions, b"after", b"ok");
    assert_eq!(get(meta, Table::Versions, b"after").as_deref(), Some(&b"ok"[..]));
}

/// Many threads write at once (so the embedded store commits several jobs per group); some jobs
/// fail after writing. Exactly the writes of the jobs that returned `Ok` are kept, and a
/// read-modify-write counter shows the jobs ran serializably.
async fn meta_concurrent_jobs_keep_exactly_the_successful_ones(env: Env) {
    const THREADS: usize = 16;
    const JOBS_PER_THREAD: usize = 25;
    let meta = env.meta.clone();
    let job_key = |id: usize| format!("job/{id:04}").into_bytes();
    let seed_key = |id: usize| format!("seed/{id:04}").into_bytes();
    let fails = |id: usize| id % 3 == 1 || id.is_multiple_of(7);

    run(meta.as_ref(), move |txn| {
        for id in 0..THREADS * JOBS_PER_THREAD {
            txn.put(Table::Buckets, &seed_key(id), b"seed");
        }
        txn.put(Table::Control, b"counter", &0u64.to_be_bytes());
        Ok(())
    })
    .expect("seed");

    let barrier = Arc::new(Barrier::new(THREADS));
    let results: Vec<(usize, StoreResult<()>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let meta = meta.clone();
                let barrier = barrier.clone();
                scope.spawn(move || {
                    barrier.wait();
                    (0..JOBS_PER_THREAD)
                        .map(|j| {
                            let id = thread * JOBS_PER_THREAD + j;
                            let result = run(meta.as_ref(), move |txn| {
                                let raw = txn.get(Table::Control, b"counter")?.expect("counter");
                                let count = u64::from_be_bytes(raw.as_slice().try_into().expect("u64"));
                                txn.put(Table::Control, b"counter", &(count + 1).to_be_bytes());
                                txn.put(Table::Versions, &job_key(id), id.to_string().as_bytes());
                                txn.delete(Table::Buckets, &seed_key(id));
                                if fails(id) { Err(test_error()) } else { Ok(()) }
                            });
                            (id, result)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("writer thread"))
            .collect()
    });

    let mut ok = 0u64;
    for (id, result) in &results {
        if fails(*id) {
            assert!(
                matches!(result, Err(StoreError::PreconditionFailed(_))),
                "job {id} should fail with its own error: {result:?}"
            );
        } else {
            assert!(result.is_ok(), "job {id} should succeed: {result:?}");
            ok += 1;
        }
    }
    let snapshot = meta.snapshot().expect("snapshot");
    for id in 0..THREADS * JOBS_PER_THREAD {
        let written = snapshot.get(Table::Versions, &job_key(id)).expect("get");
        let seed = snapshot.get(Table::Buckets, &seed_key(id)).expect("get");
        if fails(id) {
            assert_eq!(written, None, "failed job {id} left a put");
            assert!(seed.is_some(), "failed job {id} left a delete");
        } else {
            assert_eq!(
                written,
                Some(id.to_string().into_bytes()),
                "successful job {id} lost its put"
            );
            assert_eq!(seed, None, "successful job {id} lost its delete");
        }
    }
    let visible = snapshot
        .scan(Table::Versions, b"job/", Some(b"job0"), usize::MAX)
        .expect("scan");
    assert_eq!(visible.len() as u64, ok);
    let counter = snapshot.get(Table::Control, b"counter").expect("get").expect("counter");
    assert_eq!(
        u64::from_be_bytes(counter.as_slice().try_into().expect("u64")),
        ok,
        "the counter counts exactly the successful jobs (no lost update, no failed job's write)"
    );
}

async fn meta_snapshot_is_a_consistent_view(env: Env) {
    let meta = env.meta.clone();
    put(meta.as_ref(), Table::Control, b"a", b"1");
    put(meta.as_ref(), Table::Control, b"b", b"1");

    let before = meta.snapshot().expect("snapshot");
    run(meta.as_ref(), |txn| {
        txn.put(Table::Control, b"a", b"2");
        txn.delete(Table::Control, b"b");
        txn.put(Table::Control, b"c", b"2");
        Ok(())
    })
    .expect("write");
    assert_eq!(
        before.get(Table::Control, b"a").expect("get").as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        before.get(Table::Control, b"b").expect("get").as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(before.get(Table::Control, b"c").expect("get"), None);
    assert_eq!(
        before.scan(Table::Control, b"", None, 10).expect("scan"),
        entries(&[("a", "1"), ("b", "1")])
    );
    drop(before);
    assert_eq!(
        scan(meta.as_ref(), Table::Control, b"", None, 10),
        entries(&[("a", "2"), ("c", "2")])
    );

    // A writer moves units between two accounts one transaction at a time while readers check
    // that every snapshot sees a total of 100, and that a snapshot does not change as they read.
    let amount = |raw: Option<Vec<u8>>| u64::from_be_bytes(raw.expect("account").as_slice().try_into().expect("u64"));
    run(meta.as_ref(), |txn| {
        txn.put(Table::Outbox, b"x", &100u64.to_be_bytes());
        txn.put(Table::Outbox, b"y", &0u64.to_be_bytes());
        Ok(())
    })
    .expect("seed");
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..100 {
                run(meta.as_ref(), move |txn| {
                    let x = amount(txn.get(Table::Outbox, b"x")?);
                    let y = amount(txn.get(Table::Outbox, b"y")?);
                    txn.put(Table::Outbox, b"x", &(x - 1).to_be_bytes());
                    txn.put(Table::Outbox, b"y", &(y + 1).to_be_bytes());
                    Ok(())
                })
                .expect("transfer");
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut checks = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) || checks < 10 {
            let snapshot = meta.snapshot().expect("snapshot");
            let x = amount(snapshot.get(Table::Outbox, b"x").expect("get"));
            let y = amount(snapshot.get(Table::Outbox, b"y").expect("get"));
            assert_eq!(x + y, 100, "torn snapshot: x={x} y={y}");
            std::thread::yield_now();
            let scanned = snapshot.scan(Table::Outbox, b"", None, 10).expect("scan");
            assert_eq!(
                scanned,
                vec![
                    (b"x".to_vec(), x.to_be_bytes().to_vec()),
                    (b"y".to_vec(), y.to_be_bytes().to_vec())
                ],
                "a snapshot changed while it was read"
            );
            checks += 1;
        }
    });
    assert_eq!(amount(get(meta.as_ref(), Table::Outbox, b"x")), 0);
    assert_eq!(amount(get(meta.as_ref(), Table::Outbox, b"y")), 100);
}

/// Inside a job, reads see the job's own pending puts and deletes merged over the store.
async fn meta_job_scan_sees_its_own_pending_writes(env: Env) {
    let meta = env.meta.as_ref();
    run(meta, |txn| {
        for k in ["k1", "k2", "k3", "k4", "k5", "k6"] {
            txn.put(Table::Versions, k.as_bytes(), b"base");
        }
        // The same keys in a neighbouring table must not leak in.
        txn.put(Table::Uploads, b"k2b", b"other table");
        Ok(())
    })
    .expect("seed");

    type Seen = Vec<(String, Vec<Entry>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let out = seen.clone();
    let result = run(meta, move |txn| {
        let record = |label: &str, got: Vec<Entry>| out.lock().expect("lock").push((label.to_owned(), got));
        txn.delete(Table::Versions, b"k3");
        txn.put(Table::Versions, b"k2a", b"new");
        txn.put(Table::Versions, b"k5", b"over");
        txn.delete(Table::Versions, b"k9");
        txn.put(Table::Buckets, b"k2c", b"other table");
        let get = |txn: &dyn WriteTxn, k: &str| txn.get(Table::Versions, k.as_bytes());
        let as_entry = |k: &str, v: Option<Vec<u8>>| (k.as_bytes().to_vec(), v.unwrap_or_else(|| b"<none>".to_vec()));
        record(
            "gets",
            vec![
                as_entry("k1", get(txn, "k1")?),
                as_entry("k2a", get(txn, "k2a")?),
                as_entry("k3", get(txn, "k3")?),
                as_entry("k5", get(txn, "k5")?),
            ],
        );
        record("all", txn.scan(Table::Versions, b"", None, 100)?);
        record("limit 3", txn.scan(Table::Versions, b"k", None, 3)?);
        record("bounded", txn.scan(Table::Versions, b"k2a", Some(b"k5"), 100)?);
        record("start past a delete", txn.scan(Table::Versions, b"k3", None, 2)?);
        record("end before start", txn.scan(Table::Versions, b"k5", Some(b"k2"), 100)?);
        record("end equals start", txn.scan(Table::Versions, b"k2", Some(b"k2"), 100)?);
        record("limit 0", txn.scan(Table::Versions, b"", None, 0)?);
        Ok(())
    });
    result.expect("first job");
    let expected: Seen = vec![
        (
            "gets".into(),
            entries(&[("k1", "base"), ("k2a", "new"), ("k3", "<none>"), ("k5", "over")]),
        ),
        (
            "all".into(),
            entries(&[
                ("k1", "base"),
                ("k2", "base"),
                ("k2a", "new"),
                ("k4", "base"),
                ("k5", "over"),
                ("k6", "base"),
            ]),
        ),
        (
            "limit 3".into(),
            entries(&[("k1", "base"), ("k2", "base"), ("k2a", "new")]),
        ),
        ("bounded".into(), entries(&[("k2a", "new"), ("k4", "base")])),
        ("start past a delete".into(), entries(&[("k4", "base"), ("k5", "over")])),
        ("end before start".into(), vec![]),
        ("end equals start".into(), vec![]),
        ("limit 0".into(), vec![]),
    ];
    assert_eq!(*seen.lock().expect("lock"), expected);
    assert_eq!(
        scan(meta, Table::Versions, b"", None, 100),
        entries(&[
            ("k1", "base"),
            ("k2", "base"),
            ("k2a", "new"),
            ("k4", "base"),
            ("k5", "over"),
            ("k6", "base")
        ]),
        "the job's writes committed"
    );

    // Deletes exactly at and before the limit boundary: the scan must still fill its limit from
    // entries beyond the deleted ones.
    seen.lock().expect("lock").clear();
    let out = seen.clone();
    run(meta, move |txn| {
        let record = |label: &str, got: Vec<Entry>| out.lock().expect("lock").push((label.to_owned(), got));
        // Stored now: k1 k2 k2a k4 k5 k6. Deleting the third entry leaves k4 as the third.
        txn.delete(Table::Versions, b"k2a");
        record("delete at the boundary", txn.scan(Table::Versions, b"k", None, 3)?);
        txn.delete(Table::Versions, b"k1");
        txn.delete(Table::Versions, b"k2");
        txn.delete(Table::Versions, b"k4");
        record("all leading entries deleted", txn.scan(Table::Versions, b"", None, 1)?);
        record("two after deletes", txn.scan(Table::Versions, b"", None, 2)?);
        txn.put(Table::Versions, b"k0", b"new");
        record("put before deletes", txn.scan(Table::Versions, b"", None, 2)?);
        record(
            "bounded after deletes",
            txn.scan(Table::Versions, b"", Some(b"k6"), 10)?,
        );
        Err(test_error())
    })
    .expect_err("second job fails on purpose");
    let expected: Seen = vec![
        (
            "delete at the boundary".into(),
            entries(&[("k1", "base"), ("k2", "base"), ("k4", "base")]),
        ),
        ("all leading entries deleted".into(), entries(&[("k5", "over")])),
        ("two after deletes".into(), entries(&[("k5", "over"), ("k6", "base")])),
        ("put before deletes".into(), entries(&[("k0", "new"), ("k5", "over")])),
        (
            "bounded after deletes".into(),
            entries(&[("k0", "new"), ("k5", "over")]),
        ),
    ];
    assert_eq!(*seen.lock().expect("lock"), expected);
    assert_eq!(
        scan(meta, Table::Versions, b"", None, 100),
        entries(&[
            ("k1", "base"),
            ("k2", "base"),
            ("k2a", "new"),
            ("k4", "base"),
            ("k5", "over"),
            ("k6", "base")
        ]),
        "the failed job changed nothing"
    );
}

// ---------------------------------------------------------------------------------------------
// BlobStore
// ---------------------------------------------------------------------------------------------

async fn blob_write_finish_and_read_ranges(env: Env) {
    let blobs = env.blobs.as_ref();
    let mut rng = StdRng::seed_from_u64(11);
    // Larger than a read chunk of the file store, written in uneven pieces.
    let data = random_bytes(&mut rng, 700_001);
    let mut writer = blobs.create().await.expect("create");
    let mut at = 0;
    while at < data.len() {
        let n = rng.random_range(1..50_000).min(data.len() - at);
        writer
            .write(bytes::Bytes::copy_from_slice(&data[at..at + n]))
            .await
            .expect("write");
        at += n;
    }
    let id = writer.finish().await.expect("finish");
    assert!(BlobId::is_well_formed(&id.0), "malformed id {id}");
    let size = data.len() as u64;

    assert_eq!(read_blob(blobs, &id, 0, size).await.expect("whole"), data);
    for (offset, len) in [
        (0, 0),
        (0, 1),
        (1, 1),
        (size - 1, 1),
        (size, 0),
        (12_345, 262_144),
        (262_143, 262_146),
        (100, size - 200),
        (size - 300_000, 300_000),
    ] {
        let got = read_blob(blobs, &id, offset, len).await.expect("range");
        assert_eq!(got.len() as u64, len, "length of {len} bytes at {offset}");
        assert!(
            got == data[offset as usize..(offset + len) as usize],
            "bytes of {len} at {offset}"
        );
    }

    let empty = blobs.create().await.expect("create").finish().await.expect("finish");
    assert_ne!(empty, id, "blob ids are distinct");
    assert_eq!(
        read_blob(blobs, &empty, 0, 0).await.expect("empty blob"),
        Vec::<u8>::new()
    );

    let small = write_blob(blobs, b"hello").await;
    assert_eq!(read_blob(blobs, &small, 1, 3).await.expect("small"), b"ell");
    assert_eq!(blob_set(blobs).await, BTreeSet::from([id, empty, small]));
}

async fn blob_read_out_of_range_errors(env: Env) {
    let blobs = env.blobs.as_ref();
    let id = write_blob(blobs, b"0123456789").await;
    for (offset, len) in [(10, 1), (0, 11), (5, 6), (11, 0), (u64::MAX, 1), (1, u64::MAX)] {
        assert!(
            read_blob(blobs, &id, offset, len).await.is_err(),
            "reading {len} bytes at {offset} of a 10-byte blob must fail"
        );
    }
    let empty = write_blob(blobs, b"").await;
    assert!(read_blob(blobs, &empty, 0, 1).await.is_err());
    let missing = BlobId::random();
    assert!(
        read_blob(blobs, &missing, 0, 0).await.is_err(),
        "reading a missing blob must fail"
    );
    // The blob is unharmed.
    assert_eq!(read_blob(blobs, &id, 0, 10).await.expect("read"), b"0123456789");
}

async fn blob_delete_is_idempotent(env: Env) {
    let blobs = env.blobs.as_ref();
    let a = write_blob(blobs, b"a").await;
    let b = write_blob(blobs, b"b").await;
    blobs.delete(&a).await.expect("delete");
    blobs.delete(&a).await.expect("deleting again is not an error");
    blobs
        .delete(&BlobId::random())
        .await
        .expect("deleting a never-written blob is not an error");
    assert!(
        read_blob(blobs, &a, 0, 1).await.is_err(),
        "a deleted blob cannot be read"
    );
    assert_eq!(blob_set(blobs).await, BTreeSet::from([b.clone()]));
    assert_eq!(read_blob(blobs, &b, 0, 1).await.expect("other blob"), b"b");
}

async fn blob_list_shows_finished_blobs_only(env: Env) {
    let blobs = env.blobs.as_ref();
    assert!(blob_set(blobs).await.is_empty());
    let tmp_files = |root: &Option<PathBuf>| {
        root.as_ref()
            .map_or(0, |r| std::fs::read_dir(r.join("tmp")).expect("tmp dir").count())
    };

    let mut unfinished = blobs.create().await.expect("create");
    unfinished
        .write(bytes::Bytes::from_static(b"never finished"))
        .await
        .expect("write");
    let mut aborted = blobs.create().await.expect("create");
    aborted
        .write(bytes::Bytes::from(vec![7u8; 3 * 1024 * 1024]))
        .await
        .expect("write");
    let done1 = write_blob(blobs, b"one").await;
    let done2 = write_blob(blobs, b"two").await;
    assert_eq!(blob_set(blobs).await, BTreeSet::from([done1.clone(), done2.clone()]));

    aborted.abort().await;
    assert_eq!(blob_set(blobs).await, BTreeSet::from([done1.clone(), done2.clone()]));
    if env.blob_root.is_some() {
        assert_eq!(
            tmp_files(&env.blob_root),
            1,
            "abort removed its temporary file; the open writer has one"
        );
    }

    let third = unfinished.finish().await.expect("finish");
    assert_eq!(blob_set(blobs).await, BTreeSet::from([done1, done2, third.clone()]));
    assert_eq!(read_blob(blobs, &third, 0, 14).await.expect("read"), b"never finished");
    assert_eq!(tmp_files(&env.blob_root), 0, "nothing left behind in tmp");
}

// ---------------------------------------------------------------------------------------------
// Catalog: buckets and objects
// ---------------------------------------------------------------------------------------------

async fn bucket_lifecycle(env: Env) {
    let catalog = env.catalog();
    assert!(catalog.list_buckets().await.expect("list").is_empty());
    assert_err!(catalog.bucket("nope").await, StoreError::NoSuchBucket(_));

    for name in ["zeta", "alpha", "a-b", "a.b", "m0", "a", "ab"] {
        catalog
            .create_bucket(name, (name == "m0").then(|| "eu-1".to_owned()))
            .await
            .expect("create bucket");
    }
    assert_err!(catalog.create_bucket("alpha", None).await, StoreError::BucketExists(_));
    let names: Vec<String> = catalog
        .list_buckets()
        .await
        .expect("list")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["a", "a-b", "a.b", "ab", "alpha", "m0", "zeta"]);
    let m0 = catalog.bucket("m0").await.expect("bucket");
    assert_eq!(m0.location.as_deref(), Some("eu-1"));
    assert_eq!(m0.versioning, Versioning::Unversioned);

    // An object makes a bucket non-empty; an object in a bucket whose name extends this one's
    // does not.
    put_blob_object(&catalog, "ab", "k", b"data").await;
    put_blob_object(&catalog, "a", "k", b"data").await;
    assert_err!(catalog.delete_bucket("a").await, StoreError::BucketNotEmpty(_));
    catalog.delete_object("a", "k", None).await.expect("delete object");
    catalog
        .delete_bucket("a")
        .await
        .expect("bucket a is empty although bucket ab is not");
    assert_err!(catalog.bucket("a").await, StoreError::NoSuchBucket(_));
    assert_err!(catalog.delete_bucket("a").await, StoreError::NoSuchBucket(_));
    assert_eq!(latest_bytes(&catalog, "ab", "k").await, b"data");

    // An open multipart upload does not keep a bucket alive (as in S3): deleting the bucket
    // aborts it and frees its parts.
    catalog
        .create_upload("alpha", "big", upload_record("u-alpha"))
        .await
        .expect("create upload");
    let blobs_before = catalog.blobs().list().await.expect("list blobs").len();
    let part_blob = {
        let mut w = catalog.blobs().create().await.expect("blob");
        w.write(bytes::Bytes::from_static(b"part")).await.expect("write");
        w.finish().await.expect("finish")
    };
    catalog
        .put_part(
            "alpha",
            "big",
            "u-alpha",
            1,
            valley_store::record::PartRecord {
                etag: "e".into(),
                size: 4,
                blob: valley_store::record::BlobRef { id: part_blob, size: 4 },
                last_modified_unix_ns: 0,
                checksums: Default::default(),
            },
        )
        .await
        .expect("put part");
    catalog
        .delete_bucket("alpha")
        .await
        .expect("delete with an open upload");
    assert_eq!(catalog.blobs().list().await.expect("list blobs").len(), blobs_before);
    assert_err!(
        catalog.upload("alpha", "big", "u-alpha").await,
        StoreError::NoSuchBucket(_)
    );

    // A delete marker alone makes a versioned bucket non-empty.
    set_versioning(&catalog, "zeta", Versioning::Enabled).await;
    let v = put_inline_object(&catalog, "zeta", "k", b"x").await;
    let marker = catalog.delete_object("zeta", "k", None).await.expect("delete marker");
    catalog
        .delete_object("zeta", "k", v.version_id.as_deref())
        .await
        .expect("delete version");
    assert_err!(catalog.delete_bucket("zeta").await, StoreError::BucketNotEmpty(_));
    catalog
        .delete_object("zeta", "k", marker.version_id.as_deref())
        .await
        .expect("delete marker");
    catalog.delete_bucket("zeta").await.expect("delete zeta");

    let names: Vec<String> = catalog
        .list_buckets()
        .await
        .expect("list")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["a-b", "a.b", "ab", "m0"]);
    // Operations on a missing bucket.
    assert_err!(catalog.object("alpha", "k", None).await, StoreError::NoSuchBucket(_));
    assert_err!(
        catalog.list_objects("alpha", query("", None, None, 10)).await,
        StoreError::NoSuchBucket(_)
    );
    let before = blob_count(&catalog).await;
    let id = write_blob(catalog.blobs().as_ref(), b"orphan-to-be").await;
    let version = version_of(
        ObjectData::Blobs(vec![BlobRef { id, size: 12 }]),
        12,
        md5_hex(b"orphan-to-be"),
    );
    assert_err!(
        catalog.put_object("alpha", "k", version, None).await,
        StoreError::NoSuchBucket(_)
    );
    assert_eq!(blob_count(&catalog).await, before, "a failed put frees its blob");
}

async fn unversioned_overwrite_and_delete_free_blobs(env: Env) {
    let catalog = env.catalog();
    catalog.create_bucket("b", None).await.expect("bucket");
    let v1 = put_blob_object(&catalog, "b", "k", b"first").await;
    assert_eq!(v1.version_id, None, "unversioned writes are the null version");
    assert_eq!(blob_count(&catalog).await, 1);
    let v2 = put_blob_object(&catalog, "b", "k", b"second!").await;
    assert_eq!(blob_count(&catalog).await, 1, "the overwritten version's blob is freed");
    let listed = blob_set(catalog.blobs().as_ref()).await;
    assert_eq!(
        listed.into_iter().collect::<Vec<_>>(),
        v2.data.blobs().iter().map(|b| b.id.clone()).collect::<Vec<_>>()
    );
    let latest = catalog.object("b", "k", None).await.expect("latest");
    assert_eq!(latest, v2);
    assert_eq!(read_object(&catalog, "b", "k", &latest).await, b"second!");
    assert_eq!(read_range(&catalog, "b", "k", &latest, 2, 3).await, b"con");
    assert!(latest.hlc > v1.hlc);
    assert_eq!(
        catalog.object("b", "k", Some("null")).await.expect("null").etag,
        md5_hex(b"second!")
    );

    // Inline data replacing blob data frees the blob too.
    put_inline_object(&catalog, "b", "k", b"inline").await;
    assert_eq!(blob_count(&catalog).await, 0);
    assert_eq!(latest_bytes(&catalog, "b", "k").await, b"inline");
    put_blob_object(&catalog, "b", "other", b"o").await;

    let outcome = catalog.delete_object("b", "k", None).await.expect("delete");
    assert!(!outcome.delete_marker);
    assert_err!(catalog.object("b", "k", None).await, StoreError::NoSuchKey(_));
    catalog
        .delete_object("b", "k", None)
        .await
        .expect("deleting a missing key succeeds");
    catalog.delete_object("b", "other", None).await.expect("delete");
    assert_eq!(blob_count(&catalog).await, 0, "deleting frees the blob");
    let page = catalog
        .list_objects("b", query("", None, None, 10))
        .await
        .expect("list");
    assert!(page.items.is_empty() && !page.truncated);
    let versions = catalog
        .list_versions("b", query("", None, None, 10), None)
        .await
        .expect("versions");
    assert!(versions.items.is_empty(), "unversioned deletes leave no delete marker");
}

async fn failed_precondition_frees_the_new_blob(env: Env) {
    let catalog = env.catalog();
    catalog.create_bucket("b", None).await.expect("bucket");
    let if_none_match: fn() -> Precondition = || {
        Box::new(|current| match current {
            Some(_) => Err(StoreError::PreconditionFailed("exists".into())),
            None => Ok(()),
        })
    };
    let data = b"guarded";
    let id = write_blob(catalog.blobs().as_ref(), data).await;
    let version = version_of(ObjectData::Blobs(vec![BlobRef { id, size: 7 }]), 7, md5_hex(data));
    catalog
        .put_object("b", "k", version, Some(if_none_match()))
        .await
        .expect("first put passes If-None-Match");
    let id = write_blob(catalog.blobs().as_ref(), b"again").await;
    let version = version_of(ObjectData::Blobs(vec![BlobRef { id, size: 5 }]), 5, md5_hex(b"again"));
    assert_err!(
        catalog.put_object("b", "k", version, Some(if_none_match())).await,
        StoreError::PreconditionFailed(_)
    );
    assert_eq!(blob_count(&catalog).await, 1, "the refused put's blob is freed");
    assert_eq!(
        latest_bytes(&catalog, "b", "k").await,
        data,
        "the stored version is untouched"
    );
}

async fn versioning_enabled_versions_and_delete_markers(env: Env) {
    let catalog = env.catalog();
    catalog.create_bucket("v", None).await.expect("bucket");
    set_versioning(&catalog, "v", Versioning::Enabled).await;
    assert_eq!(
        catalog.bucket("v").await.expect("bucket").versioning,
        Versioning::Enabled
    );

    let v1 = put_blob_object(&catalog, "v", "k", b"one").await;
    let v2 = put_blob_object(&catalog, "v", "k", b"two").await;
    let v3 = put_blob_object(&catalog, "v", "k", b"three").await;
    let ids: Vec<String> = [&v1, &v2, &v3]
        .iter()
        .map(|v| v.version_id.clone().expect("id"))
        .collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 3, "distinct version ids");
    assert_eq!(blob_count(&catalog).await, 3, "older versions keep their blobs");
    assert_eq!(catalog.object("v", "k", None).await.expect("latest"), v3);
    for (id, bytes) in ids.iter().zip([&b"one"[..], b"two", b"three"]) {
        let v = catalog.object("v", "k", Some(id)).await.expect("by id");
        assert_eq!(read_object(&catalog, "v", "k", &v).await, bytes);
    }
    assert_err!(
        catalog.object("v", "k", Some("null")).await,
        StoreError::NoSuchVersion(_)
    );
    assert_err!(
        catalog.object("v", "k", Some("not-a-version")).await,
        StoreError::NoSuchVersion(_)
    );
    assert_err!(
        catalog.object("v", "other", Some(&ids[0])).await,
        StoreError::NoSuchVersion(_)
    );

    // Delete without an id: a delete marker becomes the latest.
    let marker = catalog.delete_object("v", "k", None).await.expect("delete");
    assert!(marker.delete_marker);
    let marker_id = marker.version_id.clone().expect("a delete marker has a version id");
    assert!(!ids.contains(&marker_id));
    assert_err!(catalog.object("v", "k", None).await, StoreError::DeleteMarker(_));
    let by_id = catalog.object("v", "k", Some(&marker_id)).await.expect("marker by id");
    assert!(by_id.delete_marker);
    assert_eq!(blob_count(&catalog).await, 3, "a delete marker frees nothing");
    assert_eq!(
        read_object(
            &catalog,
            "v",
            "k",
            &catalog.object("v", "k", Some(&ids[1])).await.expect("v2")
        )
        .await,
        b"two"
    );

    // Delete by version id removes exactly that version.
    let outcome = catalog.delete_object("v", "k", Some(&ids[1])).await.expect("delete v2");
    assert_eq!(outcome.version_id.as_deref(), Some(ids[1].as_str()));
    assert!(!outcome.delete_marker);
    assert_err!(
        catalog.object("v", "k", Some(&ids[1])).await,
        StoreError::NoSuchVersion(_)
    );
    assert_eq!(catalog.object("v", "k", Some(&ids[0])).await.expect("v1"), v1);
    assert_eq!(catalog.object("v", "k", Some(&ids[2])).await.expect("v3"), v3);
    assert_eq!(blob_count(&catalog).await, 2, "v2's blob is freed");
    let survivors = blob_set(catalog.blobs().as_ref()).await;
    assert!(survivors.contains(&v1.data.blobs()[0].id) && survivors.contains(&v3.data.blobs()[0].id));

    // Deleting an unknown version changes nothing.
    catalog
        .delete_object("v", "k", Some(&ids[1]))
        .await
        .expect("deleting a deleted version succeeds");
    assert_eq!(blob_count(&catalog).await, 2);

    // Removing the delete marker makes v3 the latest again.
    let outcome = catalog
        .delete_object("v", "k", Some(&marker_id))
        .await
        .expect("delete marker");
    assert!(outcome.delete_marker, "the removed version was a delete marker");
    assert_eq!(catalog.object("v", "k", None).await.expect("latest"), v3);

    // Removing the latest version makes the previous one the latest.
    catalog.delete_object("v", "k", Some(&ids[2])).await.expect("delete v3");
    assert_eq!(catalog.object("v", "k", None).await.expect("latest"), v1);
    catalog.delete_object("v", "k", Some(&ids[0])).await.expect("delete v1");
    assert_err!(catalog.object("v", "k", None).await, StoreError::NoSuchKey(_));
    assert_eq!(blob_count(&catalog).await, 0);
}

async fn versioning_suspended_null_version(env: Env) {
    let catalog = env.catalog();
    catalog.create_bucket("s", None).await.expect("bucket");
    let n0 = put_blob_object(&catalog, "s", "k", b"null-0").await;
    set_versioning(&catalog, "s", Versioning::Enabled).await;
    let v1 = put_blob_object(&catalog, "s", "k", b"versioned-1").await;
    assert!(v1.version_id.is_some());
    assert_eq!(
        catalog.object("s", "k", Some("null")).await.expect("null"),
        n0,
        "null survives enabling"
    );
    assert_eq!(blob_count(&catalog).await, 2);

    set_versioning(&catalog, "s", Versioning::Suspended).await;
    let n1 = put_blob_object(&catalog, "s", "k", b"null-1").await;
    assert_eq!(n1.version_id, None, "suspended writes are the null version");
    assert_eq!(catalog.object("s", "k", None).await.expect("latest"), n1);
    assert_eq!(catalog.object("s", "k", Some("null")).await.expect("null"), n1);
    assert_eq!(
        catalog.object("s", "k", v1.version_id.as_deref()).await.expect("v1"),
        v1,
        "versioned versions survive"
    );
    assert_eq!(
        blob_count(&catalog).await,
        2,
        "the replaced null version's blob is freed"
    );
    let n2 = put_blob_object(&catalog, "s", "k", b"null-2").await;
    assert_eq!(blob_count(&catalog).await, 2);
    assert_eq!(latest_bytes(&catalog, "s", "k").await, b"null-2");

    let versions = list_all_versions(&catalog, "s", "", None, 1000).await;
    assert_eq!(
        versions,
        vec![
            ("k".to_owned(), None, false, true, n2.etag.clone()),
            ("k".to_owned(), v1.version_id.clone(), false, false, v1.etag.clone()),
        ]
    );

    // A delete while suspended puts a null delete marker in place of the null version.
    let outcome = catalog.delete_object("s", "k", None).await.expect("delete");
    assert!(outcome.delete_marker);
    assert_eq!(outcome.version_id, None, "the marker is the null version");
    assert_err!(catalog.object("s", "k", None).await, StoreError::DeleteMarker(_));
    assert!(
        catalog
            .object("s", "k", Some("null"))
            .await
            .expect("null")
            .delete_marker
    );
    assert_eq!(blob_count(&catalog).await, 1, "the null version's blob is freed");
    let versions = list_all_versions(&catalog, "s", "", None, 1000).await;
    assert_eq!(
        versions,
        vec![
            ("k".to_owned(), None, true, true, String::new()),
            ("k".to_owned(), v1.version_id.clone(), false, false, v1.etag.clone()),
        ]
    );

    // Removing the null delete marker by id "null" exposes v1 again.
    let outcome = catalog
        .delete_object("s", "k", Some("null"))
        .await
        .expect("delete null");
    assert!(outcome.delete_marker);
    assert_eq!(catalog.object("s", "k", None).await.expect("latest"), v1);
    assert_err!(
        catalog.object("s", "k", Some("null")).await,
        StoreError::NoSuchVersion(_)
    );
}

// ---------------------------------------------------------------------------------------------
// Catalog: listing
// ---------------------------------------------------------------------------------------------

/// What a listing returns, reduced to what the model predicts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    Key(String, String),
    Prefix(String),
}

impl Item {
    fn name(&self) -> &str {
        match self {
            Item::Key(k, _) | Item::Prefix(k) => k,
        }
    }
}

fn object_items(page: &ListPage<ObjectVersion>) -> Vec<Item> {
    page.items
        .iter()
        .map(|item| match item {
            ListItem::Entry(k, v) => Item::Key(k.clone(), v.etag.clone()),
            ListItem::Prefix(p) => Item::Prefix(p.clone()),
        })
        .collect()
}

/// The model of ListObjects: the live keys (name → ETag of the latest version) under `prefix`,
/// each rolled up to its common prefix when the delimiter follows the prefix, strictly after
/// `marker`; the first `max_keys`, and whether more follow.
fn model_list(
    live: &BTreeMap<String, String>,
    prefix: &str,
    delimiter: Option<&str>,
    marker: Option<&str>,
    max_keys: usize,
) -> (Vec<Item>, bool) {
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    for (key, etag) in live.range(prefix.to_owned()..) {
        if !key.starts_with(prefix) {
            break;
        }
        let rest = &key[prefix.len()..];
        let item = match delimiter.and_then(|d| rest.find(d).map(|i| i + d.len())) {
            Some(end) => Item::Prefix(key[..prefix.len() + end].to_owned()),
            None => Item::Key(key.clone(), etag.clone()),
        };
        items.insert(item.name().to_owned(), item);
    }
    let after: Vec<Item> = items
        .into_values()
        .filter(|item| marker.is_none_or(|m| item.name() > m))
        .collect();
    let truncated = after.len() > max_keys;
    (after.into_iter().take(max_keys).collect(), truncated)
}

fn random_key(rng: &mut StdRng) -> String {
    const SEGMENTS: [&str; 16] = [
        "a", "b", "c", "ab", "a b", " ", "%+?#", "é", "日本", "x", "🦀", "A", "0", "a.b", "-", "photos",
    ];
    let depth = rng.random_range(1..=4);
    let mut key = (0..depth)
        .map(|_| SEGMENTS[rng.random_range(0..SEGMENTS.len())])
        .collect::<Vec<_>>()
        .join("/");
    match rng.random_range(0..10) {
        0 => key.push('/'),
        1 => key.insert(0, '/'),
        2 => key = key.replacen('/', "//", 1),
        _ => {}
    }
    key
}

/// Puts one inline version for each `(key, content)`, concurrently (so the embedded store
/// commits them in groups); returns the stored versions in the same order.
async fn put_many(catalog: &Catalog, bucket: &str, writes: Vec<(String, Vec<u8>)>) -> Vec<ObjectVersion> {
    let mut out = Vec::with_capacity(writes.len());
    for chunk in writes.chunks(32) {
        let puts = chunk
            .iter()
            .map(|(key, content)| put_inline_object(catalog, bucket, key, content));
        out.extend(futures::future::join_all(puts).await);
    }
    out
}

async fn list_objects_matches_model(env: Env) {
    let catalog = env.catalog();
    catalog.create_bucket("list", None).await.expect("bucket");
    // A neighbouring bucket whose entries must never show up.
    catalog.create_bucket("list-other", None).await.expect("bucket");
    put_inline_object(&catalog, "list-other", "a/b", b"other bucket").await;
    set_versioning(&catalog, "list", Versioning::Enabled).await;

    let mut rng = StdRng::seed_from_u64(42);
    let mut keys: BTreeSet<String> = [
        "a",
        "a/",
        "a/b",
        "a/b/",
        "a/b/c",
        "a/b/c/d",
        "a//b",
        "/lead",
        "trail/",
        "%+?#",
        "with space",
        "é/ü",
        "日本/語",
        "a b/c",
        "ghost/1",
        "ghost/2/x",
        "z",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    while keys.len() < 300 {
        keys.insert(random_key(&mut rng));
    }
    let keys: Vec<String> = keys.into_iter().collect();

    // Model: key → ETag of its latest version, for keys whose latest is not a delete marker.
    let mut live: BTreeMap<String, String> = BTreeMap::new();
    let stored = put_many(
        &catalog,
        "list",
        keys.iter()
            .map(|k| (k.clone(), format!("v1 of {k}").into_bytes()))
            .collect(),
    )
    .await;
    for (key, version) in keys.iter().zip(&stored) {
        live.insert(key.clone(), version.etag.clone());
    }
    // Some keys get a second version.
    let second: Vec<String> = keys.iter().filter(|_| rng.random_range(0..5) == 0).cloned().collect();
    let stored = put_many(
        &catalog,
        "list",
        second
            .iter()
            .map(|k| (k.clone(), format!("v2 of {k}").into_bytes()))
            .collect(),
    )
    .await;
    for (key, version) in second.iter().zip(&stored) {
        live.insert(key.clone(), version.etag.clone());
    }
    // Some keys are deleted (a delete marker is their latest), every key under "ghost/" among
    // them; some of the deleted keys come back with a new version.
    let deleted: Vec<String> = keys
        .iter()
        .filter(|k| k.starts_with("ghost/") || rng.random_range(0..6) == 0)
        .cloned()
        .collect();
    for chunk in deleted.chunks(32) {
        let deletes = chunk.iter().map(|k| catalog.delete_object("list", k, None));
        for outcome in futures::future::join_all(deletes).await {
            assert!(outcome.expect("delete").delete_marker);
        }
    }
    for key in &deleted {
        live.remove(key);
    }
    let revived: Vec<String> = deleted
        .iter()
        .filter(|k| !k.starts_with("ghost/") && rng.random_range(0..3) == 0)
        .cloned()
        .collect();
    let stored = put_many(
        &catalog,
        "list",
        revived
            .iter()
            .map(|k| (k.clone(), format!("v3 of {k}").into_bytes()))
            .collect(),
    )
    .await;
    for (key, version) in revived.iter().zip(&stored) {
        live.insert(key.clone(), version.etag.clone());
    }
    assert!(
        live.len() > 200 && live.len() < 290,
        "a useful mix: {} live keys",
        live.len()
    );

    let prefixes = [
        "",
        "a",
        "a/",
        "a/b",
        "a/b/",
        "%",
        "é",
        "日本/",
        "ghost/",
        "/",
        "x",
        "nothing-here",
    ];
    let markers: Vec<Option<String>> = {
        let mut m: Vec<Option<String>> = vec![None];
        for s in ["", "a", "a/", "a/b", "a/a", "b/zzz", "ghost/", "m", "é", "\u{10ffff}"] {
            m.push(Some(s.to_owned()));
        }
        m.extend(keys.iter().step_by(61).cloned().map(Some));
        m
    };
    let mut pages = 0usize;
    for prefix in prefixes {
        for delimiter in [None, Some("/")] {
            for marker in &markers {
                for max_keys in [1, 2, 7, 1000] {
                    let (whole, _) = model_list(&live, prefix, delimiter, marker.as_deref(), usize::MAX);
                    let mut collected = Vec::new();
                    let mut next = marker.clone();
                    loop {
                        let q = query(prefix, delimiter, next.as_deref(), max_keys);
                        let page = catalog.list_objects("list", q.clone()).await.expect("list");
                        pages += 1;
                        let (expected, expected_truncated) =
                            model_list(&live, prefix, delimiter, next.as_deref(), max_keys);
                        let got = object_items(&page);
                        assert_eq!(got, expected, "page of {q:?}");
                        assert_eq!(page.truncated, expected_truncated, "truncated flag of {q:?}");
                        collected.extend(got);
                        if !page.truncated {
                            break;
                        }
                        next = Some(page.last_name().expect("a truncated page is not empty").to_owned());
                    }
                    assert_eq!(
                        collected, whole,
                        "paging {prefix:?} {delimiter:?} from {marker:?} by {max_keys}"
                    );
                }
            }
        }
    }
    assert!(pages > 1000, "the walk covered many pages: {pages}");
}

async fn list_hides_deleted_keys_and_their_prefixes(env: Env) {
    let catalog = env.catalog();
    catalog.create_bucket("b", None).await.expect("bucket");
    set_versioning(&catalog, "b", Versioning::Enabled).await;
    let k1 = put_inline_object(&catalog, "b", "k", b"1").await;
    let marker = catalog.delete_object("b", "k", None).await.expect("delete");
    let live = put_inline_object(&catalog, "b", "live", b"x").await;
    put_inline_object(&catalog, "b", "dir/gone", b"x").await;
    put_inline_object(&catalog, "b", "dir/sub/gone", b"x").await;
    catalog.delete_object("b", "dir/gone", None).await.expect("delete");
    catalog.delete_object("b", "dir/sub/gone", None).await.expect("delete");
    put_inline_object(&catalog, "b", "half/gone", b"x").await;
    let half_live = put_inline_object(&catalog, "b", "half/live", b"x").await;
    catalog.delete_object("b", "half/gone", None).await.expect("delete");

    let page = catalog
        .list_objects("b", query("", None, None, 1000))
        .await
        .expect("list");
    assert_eq!(
        object_items(&page),
        vec![
            Item::Key("half/live".into(), half_live.etag.clone()),
            Item::Key("live".into(), live.etag.clone())
        ]
    );
    let page = catalog
        .list_objects("b", query("", Some("/"), None, 1000))
        .await
        .expect("list");
    assert_eq!(
        object_items(&page),
        vec![
            Item::Prefix("half/".into()),
            Item::Key("live".into(), live.etag.clone())
        ],
        "a common prefix whose keys are all deleted is not listed"
    );
    // With max_keys 1 the page after "half/" is "live", and nothing is truncated after it.
    let page = catalog
        .list_objects("b", query("", Some("/"), None, 1))
        .await
        .expect("list");
    assert_eq!(object_items(&page), vec![Item::Prefix("half/".into())]);
    assert!(page.truncated);
    let page = catalog
        .list_objects("b", query("", Some("/"), Some("half/"), 1))
        .await
        .expect("list");
    assert_eq!(object_items(&page), vec![Item::Key("live".into(), live.etag.clone())]);
    assert!(!page.truncated, "only deleted keys follow");
    let page = catalog
        .list_objects("b", query("dir/", Some("/"), None, 10))
        .await
        .expect("list");
    assert!(page.items.is_empty() && !page.truncated, "{:?}", object_items(&page));

    // ListObjectVersions shows the delete markers, and which version is the latest.
    let versions = list_all_versions(&catalog, "b", "k", None, 1000).await;
    assert_eq!(
        versions,
        vec![
            ("k".to_owned(), marker.version_id.clone(), true, true, String::new()),
            ("k".to_owned(), k1.version_id.clone(), false, false, k1.etag.clone()),
        ]
    );
    let page = catalog
        .list_versions("b", query("", Some("/"), None, 1000), None)
        .await
        .expect("versions");
    let names: Vec<&str> = page
        .items
        .iter()
        .map(|i| match i {
            ListItem::Entry(k, _) | ListItem::Prefix(k) => k.as_str(),
        })
        .collect();
    assert_eq!(
        names,
        ["dir/", "half/", "k", "k", "live"],
        "versions of deleted keys still roll up into their prefix"
    );
}

/// One ListObjectVersions entry: key, version id, delete marker, is latest, ETag.
type VersionRow = (String, Option<String>, bool, bool, String);

/// Pages through ListObjectVersions with key and version-id markers, `max_keys` at a time;
/// returns the entries (common prefixes are checked to appear once and left out).
async fn list_all_versions(
    catalog: &Catalog,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    max_keys: usize,
) -> Vec<VersionRow> {
    let mut rows = Vec::new();
    let mut prefixes = Vec::new();
    let mut key_marker: Option<String> = None;
    let mut version_marker: Option<String> = None;
    loop {
        let page = catalog
            .list_versions(
                bucket,
                query(prefix, delimiter, key_marker.as_deref(), max_keys),
                version_marker.clone(),
            )
            .await
            .expect("list versions");
        assert!(page.items.len() <= max_keys);
        assert!(!page.truncated || !page.items.is_empty());
        for item in &page.items {
            match item {
                ListItem::Entry(key, entry) => {
                    rows.push((
                        key.clone(),
                        entry.version.version_id.clone(),
                        entry.version.delete_marker,
                        entry.is_latest,
                        entry.version.etag.clone(),
                    ));
                    key_marker = Some(key.clone());
                    version_marker = Some(entry.version.version_id.clone().unwrap_or_else(|| "null".into()));
                }
                ListItem::Prefix(p) => {
                    prefixes.push(p.clone());
                    key_marker = Some(p.clone());
                    version_marker = None;
                }
            }
        }
        if !page.truncated {
            break;
        }
    }
    let distinct: BTreeSet<&String> = prefixes.iter().collect();
    assert_eq!(
        distinct.len(),
        prefixes.len(),
        "a common prefix was listed twice: {prefixes:?}"
    );
    rows
}

async fn list_versions_pages_every_version_once(env: Env) {
    let catalog = env.catalog();
    catalog.create_bucket("vv", None).await.expect("bucket");
    let mut rng = StdRng::seed_from_u64(99);
    let keys = ["a", "a/1", "a/2", "a/b/3", "b", "b c", "c%+?#", "é", "z/z", "zz"];
    // Model: key → versions newest first (version id, delete marker, ETag).
    let mut model: BTreeMap<String, Vec<(Option<String>, bool, String)>> = BTreeMap::new();
    // Null versions written before versioning is enabled.
    for key in ["a", "a/2", "zz"] {
        let v = put_inline_object(&catalog, "vv", key, format!("null {key}").as_bytes()).await;
        model
            .entry(key.to_owned())
            .or_default()
            .insert(0, (None, false, v.etag));
    }
    set_versioning(&catalog, "vv", Versioning::Enabled).await;
    for round in 0..5 {
        for key in keys {
            match rng.random_range(0..4) {
                0 => {}
                1 => {
                    let outcome = catalog.delete_object("vv", key, None).await.expect("delete");
                    model
                        .entry(key.to_owned())
                        .or_default()
                        .insert(0, (outcome.version_id, true, String::new()));
                }
                _ => {
                    let v = put_inline_object(&catalog, "vv", key, format!("{key} #{round}").as_bytes()).await;
                    model
                        .entry(key.to_owned())
                        .or_default()
                        .insert(0, (v.version_id, false, v.etag));
                }
            }
        }
    }
    let total: usize = model.values().map(Vec::len).sum();
    assert!(total > 20, "{total} versions");

    let expected = |prefix: &str| -> Vec<VersionRow> {
        model
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .flat_map(|(k, versions)| {
                versions
                    .iter()
                    .enumerate()
                    .map(move |(i, (id, marker, etag))| (k.clone(), id.clone(), *marker, i == 0, etag.clone()))
            })
            .collect()
    };
    for prefix in ["", "a", "a/", "z"] {
        for max_keys in [1, 2, 3, 7, 1000] {
            let rows = list_all_versions(&catalog, "vv", prefix, None, max_keys).await;
            assert_eq!(
                rows,
                expected(prefix),
                "all versions under {prefix:?}, {max_keys} per page"
            );
        }
    }
    // With a delimiter, only the keys that do not roll up are listed as versions.
    for max_keys in [1, 2, 1000] {
        let rows = list_all_versions(&catalog, "vv", "", Some("/"), max_keys).await;
        let flat: Vec<VersionRow> = expected("").into_iter().filter(|r| !r.0.contains('/')).collect();
        assert_eq!(rows, flat, "{max_keys} per page with a delimiter");
    }
    // Resuming from a version in the middle of a key marks none of that key's later versions
    // as the latest.
    let a_versions = &model["a"];
    assert!(a_versions.len() >= 2);
    let marker_id = a_versions[0].0.clone().unwrap_or_else(|| "null".into());
    let page = catalog
        .list_versions("vv", query("", None, Some("a"), 1), Some(marker_id))
        .await
        .expect("resume");
    match &page.items[..] {
        [ListItem::Entry(k, e)] => {
            assert_eq!(k, "a");
            assert_eq!(e.version.version_id, a_versions[1].0);
            assert!(!e.is_latest);
        }
        other => panic!("unexpected page {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Catalog: multipart uploads
// ---------------------------------------------------------------------------------------------

fn upload_record(upload_id: &str) -> UploadRecord {
    UploadRecord {
        upload_id: upload_id.to_owned(),
        created_unix_ns: 1,
        headers: Default::default(),
        tags: vec![("team".into(), "storage".into())],
        checksum_algorithm: None,
        initiator: None,
        acl: None,
        sealing: None,
    }
}

async fn multipart_uploads_older_than_the_cutoff_expire(env: Env) {
    let catalog = env.catalog();
    for bucket in ["old", "mixed"] {
        catalog.create_bucket(bucket, None).await.expect("bucket");
    }
    let at = |id: &str, ns: u64| UploadRecord {
        created_unix_ns: ns,
        ..upload_record(id)
    };
    catalog.create_upload("old", "k", at("u1", 100)).await.expect("create");
    catalog
        .create_upload("mixed", "a/b", at("u2", 150))
        .await
        .expect("create");
    catalog
        .create_upload("mixed", "a/b", at("u3", 300))
        .await
        .expect("create");
    put_part(&catalog, "old", "k", "u1", 1, b"abandoned").await;
    put_part(&catalog, "mixed", "a/b", "u2", 1, b"abandoned too").await;
    put_part(&catalog, "mixed", "a/b", "u3", 1, b"in progress").await;
    assert_eq!(blob_count(&catalog).await, 3);
    assert_eq!(catalog.expire_uploads(200).await.expect("expire"), 2);
    // The parts of the expired uploads are gone; the newer upload and its part stay.
    assert_eq!(blob_count(&catalog).await, 1);
    assert_err!(catalog.upload("old", "k", "u1").await, StoreError::NoSuchUpload(_));
    assert_err!(catalog.upload("mixed", "a/b", "u2").await, StoreError::NoSuchUpload(_));
    catalog.upload("mixed", "a/b", "u3").await.expect("kept");
    assert_eq!(catalog.expire_uploads(200).await.expect("again"), 0);
}

/// Writes a part's blob and records it; returns its ETag.
async fn put_part(catalog: &Catalog, bucket: &str, key: &str, upload_id: &str, number: u32, data: &[u8]) -> String {
    let id = write_blob(catalog.blobs().as_ref(), data).await;
    let etag = md5_hex(data);
    let part = PartRecord {
        etag: etag.clone(),
        size: data.len() as u64,
        blob: BlobRef {
            id,
            size: data.len() as u64,
        },
        last_modified_unix_ns: 1,
        checksums: Default::default(),
    };
    catalog
        .put_part(bucket, key, upload_id, number, part)
        .await
        .expect("put part");
    etag
}

async fn multipart_complete(env: Env) {
    const MIB: usize = 1024 * 1024;
    let catalog = env.catalog();
    catalog.create_bucket("mp", None).await.expect("bucket");
    let mut rng = StdRng::seed_from_u64(5);
    let (bucket, key, upload_id) = ("mp", "big/object", "upload-1");
    catalog
        .create_upload(bucket, key, upload_record(upload_id))
        .await
        .expect("create");
    assert_eq!(
        catalog.upload(bucket, key, upload_id).await.expect("upload").upload_id,
        upload_id
    );
    assert_err!(
        catalog.upload(bucket, "other", upload_id).await,
        StoreError::NoSuchUpload(_)
    );

    let p1 = random_bytes(&mut rng, 5 * MIB);
    let p2_old = random_bytes(&mut rng, 5 * MIB + 3);
    let p2 = random_bytes(&mut rng, 5 * MIB + 1);
    let p3 = random_bytes(&mut rng, 1000);
    let p4 = random_bytes(&mut rng, 10);
    let e1 = put_part(&catalog, bucket, key, upload_id, 1, &p1).await;
    let e2_old = put_part(&catalog, bucket, key, upload_id, 2, &p2_old).await;
    let e3 = put_part(&catalog, bucket, key, upload_id, 3, &p3).await;
    let e4 = put_part(&catalog, bucket, key, upload_id, 4, &p4).await;
    assert_eq!(blob_count(&catalog).await, 4);
    let e2 = put_part(&catalog, bucket, key, upload_id, 2, &p2).await;
    assert_eq!(blob_count(&catalog).await, 4, "replacing part 2 frees its old blob");

    // list_parts, paged.
    let (all, truncated) = catalog
        .list_parts(bucket, key, upload_id, 0, 1000)
        .await
        .expect("parts");
    assert!(!truncated);
    let numbered: Vec<(u32, String, u64)> = all.iter().map(|(n, p)| (*n, p.etag.clone(), p.size)).collect();
    assert_eq!(
        numbered,
        vec![
            (1, e1.clone(), p1.len() as u64),
            (2, e2.clone(), p2.len() as u64),
            (3, e3.clone(), 1000),
            (4, e4.clone(), 10)
        ]
    );
    for max in [1, 2, 3] {
        let mut marker = 0;
        let mut seen = Vec::new();
        loop {
            let (page, truncated) = catalog
                .list_parts(bucket, key, upload_id, marker, max)
                .await
                .expect("parts");
            assert!(page.len() <= max);
            seen.extend(page.iter().map(|(n, _)| *n));
            if !truncated {
                break;
            }
            marker = page.last().expect("truncated page is not empty").0;
        }
        assert_eq!(seen, [1, 2, 3, 4], "paging parts {max} at a time");
    }
    let (page, truncated) = catalog.list_parts(bucket, key, upload_id, 2, 1).await.expect("parts");
    assert_eq!(page.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [3]);
    assert!(truncated);
    let (page, truncated) = catalog.list_parts(bucket, key, upload_id, 4, 10).await.expect("parts");
    assert!(page.is_empty() && !truncated);

    // Completion checks; a refused completion changes nothing.
    let complete = |chosen: &[(u32, &String)]| {
        let chosen: Vec<(u32, String)> = chosen.iter().map(|(n, e)| (*n, (*e).clone())).collect();
        catalog.complete_upload(bucket, key, upload_id, chosen, None)
    };
    assert_err!(complete(&[]).await, StoreError::InvalidPart(_));
    assert_err!(complete(&[(2, &e2), (1, &e1)]).await, StoreError::InvalidPartOrder);
    assert_err!(complete(&[(1, &e1), (1, &e1)]).await, StoreError::InvalidPartOrder);
    assert_err!(complete(&[(1, &e1), (2, &e2_old)]).await, StoreError::InvalidPart(_));
    assert_err!(complete(&[(1, &e1), (5, &e4)]).await, StoreError::InvalidPart(_));
    assert_err!(
        complete(&[(1, &e1), (3, &e3), (4, &e4)]).await,
        StoreError::EntityTooSmall {
            part_number: 3,
            size: 1000,
            ..
        }
    );
    assert_eq!(
        catalog.upload(bucket, key, upload_id).await.expect("upload").upload_id,
        upload_id
    );
    assert_eq!(
        catalog
            .list_parts(bucket, key, upload_id, 0, 1000)
            .await
            .expect("parts")
            .0
            .len(),
        4
    );
    assert_eq!(blob_count(&catalog).await, 4);
    assert_err!(catalog.object(bucket, key, None).await, StoreError::NoSuchKey(_));

    // Success: parts 1, 2 and 3 (ETags as clients send them, quoted); part 4 is left out.
    let quoted = |e: &str| format!("\"{e}\"");
    let stored = catalog
        .complete_upload(
            bucket,
            key,
            upload_id,
            vec![(1, quoted(&e1)), (2, quoted(&e2)), (3, e3.clone())],
            None,
        )
        .await
        .expect("complete");
    let mut md5_of_md5s = Md5::new();
    for part in [&p1, &p2, &p3] {
        md5_of_md5s.update(Md5::digest(part.as_slice()));
    }
    assert_eq!(stored.etag, format!("{}-3", hex::encode(md5_of_md5s.finalize())));
    let whole: Vec<u8> = [p1.as_slice(), &p2, &p3].concat();
    assert_eq!(stored.size, whole.len() as u64);
    assert_eq!(stored.part_sizes, [p1.len() as u64, p2.len() as u64, 1000]);
    assert_eq!(
        stored.tags,
        upload_record(upload_id).tags,
        "the upload's tags carry over"
    );
    let latest = catalog.object(bucket, key, None).await.expect("latest");
    assert_eq!(latest, stored);
    assert!(
        read_object(&catalog, bucket, key, &latest).await == whole,
        "object bytes are the parts' concatenation"
    );
    for (offset, len) in [
        (5 * MIB as u64 - 10, 20),
        (10 * MIB as u64, 500),
        (0, 1),
        (whole.len() as u64 - 1, 1),
    ] {
        assert!(
            read_range(&catalog, bucket, key, &latest, offset, len).await
                == whole[offset as usize..(offset + len) as usize],
            "range {offset}+{len} across part boundaries"
        );
    }
    assert_eq!(blob_count(&catalog).await, 3, "the unused part's blob is freed");
    let blobs = blob_set(catalog.blobs().as_ref()).await;
    let referenced: BTreeSet<BlobId> = stored.data.blobs().iter().map(|b| b.id.clone()).collect();
    assert_eq!(blobs, referenced);

    // The upload is gone.
    assert_err!(
        catalog.upload(bucket, key, upload_id).await,
        StoreError::NoSuchUpload(_)
    );
    assert_err!(
        catalog.list_parts(bucket, key, upload_id, 0, 10).await,
        StoreError::NoSuchUpload(_)
    );
    assert_err!(
        catalog
            .complete_upload(bucket, key, upload_id, vec![(1, e1.clone())], None)
            .await,
        StoreError::NoSuchUpload(_)
    );
    let uploads = catalog
        .list_uploads(bucket, query("", None, None, 10), None)
        .await
        .expect("uploads");
    assert!(uploads.items.is_empty());

    // A single small part is a valid upload; completing over an existing unversioned object
    // frees the old object's blobs.
    catalog
        .create_upload(bucket, key, upload_record("upload-2"))
        .await
        .expect("create");
    let e = put_part(&catalog, bucket, key, "upload-2", 7, b"tiny").await;
    let small = catalog
        .complete_upload(bucket, key, "upload-2", vec![(7, e.clone())], None)
        .await
        .expect("complete");
    let expected_etag = format!("{}-1", hex::encode(Md5::digest(Md5::digest(b"tiny"))));
    assert_eq!(small.etag, expected_etag);
    assert_eq!(read_object(&catalog, bucket, key, &small).await, b"tiny");
    assert_eq!(
        blob_count(&catalog).await,
        1,
        "the replaced object's three blobs are freed"
    );
}

async fn multipart_abort_and_list_uploads(env: Env) {
    let catalog = env.catalog();
    catalog.create_bucket("mp", None).await.expect("bucket");
    assert_err!(
        catalog.create_upload("missing", "k", upload_record("u")).await,
        StoreError::NoSuchBucket(_)
    );
    // (key, upload id): two uploads of one key, nested keys, odd characters.
    let uploads = [
        ("a", "u1"),
        ("a", "u2"),
        ("a/b", "u3"),
        ("a/c/d", "u4"),
        ("b c%+?#", "u5"),
        ("é", "u6"),
        ("z", "u7"),
    ];
    for (key, id) in uploads {
        catalog
            .create_upload("mp", key, upload_record(id))
            .await
            .expect("create");
    }
    put_part(&catalog, "mp", "a", "u1", 1, b"part one").await;
    put_part(&catalog, "mp", "a", "u1", 2, b"part two").await;
    put_part(&catalog, "mp", "a", "u2", 1, b"other upload").await;
    put_part(&catalog, "mp", "z", "u7", 1, b"z part").await;
    assert_eq!(blob_count(&catalog).await, 4);

    // Every upload exactly once, in key then upload-id order, at every page size.
    for max_keys in [1, 2, 3, 100] {
        let mut got = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = catalog
                .list_uploads(
                    "mp",
                    query("", None, key_marker.as_deref(), max_keys),
                    id_marker.clone(),
                )
                .await
                .expect("uploads");
            assert!(page.items.len() <= max_keys);
            for item in &page.items {
                match item {
                    ListItem::Entry(key, upload) => {
                        got.push((key.clone(), upload.upload_id.clone()));
                        key_marker = Some(key.clone());
                        id_marker = Some(upload.upload_id.clone());
                    }
                    ListItem::Prefix(p) => panic!("no delimiter, yet a prefix {p:?}"),
                }
            }
            if !page.truncated {
                break;
            }
        }
        let mut expected: Vec<(String, String)> = uploads
            .iter()
            .map(|(k, u)| ((*k).to_owned(), (*u).to_owned()))
            .collect();
        expected.sort(); // byte order: "é" after "z"

        assert_eq!(got, expected, "{max_keys} per page");
    }
    let page = catalog
        .list_uploads("mp", query("a", Some("/"), None, 100), None)
        .await
        .expect("uploads");
    let names: Vec<String> = page
        .items
        .iter()
        .map(|i| match i {
            ListItem::Entry(k, u) => format!("{k}#{}", u.upload_id),
            ListItem::Prefix(p) => format!("prefix {p}"),
        })
        .collect();
    assert_eq!(names, ["a#u1", "a#u2", "prefix a/"]);
    let page = catalog
        .list_uploads("mp", query("", None, Some("a"), 100), None)
        .await
        .expect("uploads");
    assert_eq!(page.items.len(), 5, "a key marker alone skips every upload of that key");

    // Abort frees every part's blob and nothing else.
    catalog.abort_upload("mp", "a", "u1").await.expect("abort");
    assert_eq!(blob_count(&catalog).await, 2);
    assert_err!(catalog.upload("mp", "a", "u1").await, StoreError::NoSuchUpload(_));
    assert_err!(catalog.abort_upload("mp", "a", "u1").await, StoreError::NoSuchUpload(_));
    assert_eq!(
        catalog.list_parts("mp", "a", "u2", 0, 10).await.expect("parts").0.len(),
        1,
        "the other upload of the key keeps its part"
    );
    // A part for an aborted upload is refused and its blob freed.
    let id = write_blob(catalog.blobs().as_ref(), b"late").await;
    let late = PartRecord {
        etag: md5_hex(b"late"),
        size: 4,
        blob: BlobRef { id, size: 4 },
        last_modified_unix_ns: 1,
        checksums: Default::default(),
    };
    assert_err!(
        catalog.put_part("mp", "a", "u1", 3, late).await,
        StoreError::NoSuchUpload(_)
    );
    assert_eq!(blob_count(&catalog).await, 2, "the refused part's blob is freed");

    for (key, id) in uploads.iter().skip(1) {
        catalog.abort_upload("mp", key, id).await.expect("abort");
    }
    assert_eq!(blob_count(&catalog).await, 0);
    let page = catalog
        .list_uploads("mp", query("", None, None, 100), None)
        .await
        .expect("uploads");
    assert!(page.items.is_empty());
    catalog
        .delete_bucket("mp")
        .await
        .expect("empty once all uploads are aborted");
}

// ---------------------------------------------------------------------------------------------
// Catalog: orphan collection
// ---------------------------------------------------------------------------------------------

async fn collect_orphans_removes_only_unreferenced_blobs(env: Env) {
    let catalog = env.catalog();
    catalog.create_bucket("o", None).await.expect("bucket");
    catalog.create_bucket("ov", None).await.expect("bucket");
    set_versioning(&catalog, "ov", Versioning::Enabled).await;
    put_blob_object(&catalog, "o", "plain", b"plain").await;
    let old = put_blob_object(&catalog, "ov", "k", b"old version").await;
    put_blob_object(&catalog, "ov", "k", b"new version").await;
    catalog.delete_object("ov", "k", None).await.expect("delete marker");
    catalog
        .create_upload("o", "mp", upload_record("u"))
        .await
        .expect("upload");
    put_part(&catalog, "o", "mp", "u", 1, b"open part").await;
    let committed = blob_set(catalog.blobs().as_ref()).await;
    assert_eq!(committed.len(), 4);

    // Blobs written but never committed: as after a crash between blob write and commit.
    let orphan1 = write_blob(catalog.blobs().as_ref(), b"orphan").await;
    let orphan2 = write_blob(catalog.blobs().as_ref(), b"").await;
    assert_eq!(blob_count(&catalog).await, 6);

    assert_eq!(catalog.collect_orphans().await.expect("collect"), 2);
    let after = blob_set(catalog.blobs().as_ref()).await;
    assert_eq!(after, committed);
    assert!(!after.contains(&orphan1) && !after.contains(&orphan2));
    assert_eq!(latest_bytes(&catalog, "o", "plain").await, b"plain");
    let v = catalog.object("ov", "k", old.version_id.as_deref()).await.expect("old");
    assert_eq!(read_object(&catalog, "ov", "k", &v).await, b"old version");
    let stored = catalog
        .complete_upload("o", "mp", "u", vec![(1, md5_hex(b"open part"))], None)
        .await
        .expect("complete after collection");
    assert_eq!(read_object(&catalog, "o", "mp", &stored).await, b"open part");
    assert_eq!(catalog.collect_orphans().await.expect("collect again"), 0);
    assert_eq!(blob_count(&catalog).await, 4);
}

/// A replica of `data` as another hub would send it: stamped `hlc` at hub `origin`.
fn replica_version(data: &[u8], hlc: u64, origin: &str, versioned: bool) -> ObjectVersion {
    let mut v = version_of(ObjectData::Inline(Vec::new()), data.len() as u64, md5_hex(data));
    v.hlc = hlc;
    v.origin = origin.to_owned();
    if versioned {
        v.version_id = Some(valley_store::keys::version_id_of(v.stamp()));
    }
    v
}

async fn replica_staged_chunks_resume_assemble_and_survive_collection(env: Env) {
    let catalog = env.catalog();
    catalog.create_bucket("r", None).await.expect("bucket");
    let data: Vec<u8> = (0..30u8).collect();
    let version = replica_version(&data, 1_000, "far-hub", false);
    let stamp = version.stamp();
    let first = write_blob(catalog.blobs().as_ref(), &data[..10]).await;
    catalog
        .stage_chunk("r", "k", stamp, 0, BlobRef { id: first, size: 10 })
        .await
        .expect("stage 0");
    // A restart between chunks: staged chunks are referenced, not orphans.
    assert_eq!(catalog.collect_orphans().await.expect("collect"), 0);
    let staged = catalog.staged_chunks("r", "k", stamp).await.expect("staged");
    assert_eq!(staged.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![0]);
    // Committing with a chunk missing is refused and changes nothing.
    assert_err!(
        catalog.apply_staged_replica("r", "k", version.clone()).await,
        StoreError::Corrupt { .. }
    );
    assert_err!(catalog.object("r", "k", None).await, StoreError::NoSuchKey(_));
    for (index, range) in [(2u32, 20..30), (1, 10..20)] {
        let id = write_blob(catalog.blobs().as_ref(), &data[range]).await;
        catalog
            .stage_chunk("r", "k", stamp, index, BlobRef { id, size: 10 })
            .await
            .expect("stage");
    }
    let outcome = catalog
        .apply_staged_replica("r", "k", version.clone())
        .await
        .expect("apply");
    assert_eq!(outcome, valley_store::ReplicaOutcome::Applied);
    assert_eq!(latest_bytes(&catalog, "r", "k").await, data);
    assert!(catalog.staged_chunks("r", "k", stamp).await.expect("staged").is_empty());
    assert_eq!(catalog.collect_orphans().await.expect("collect"), 0);
    assert_eq!(blob_count(&catalog).await, 3);
    // Chunks staged for a transfer that fails its check are dropped with their blobs.
    let other = replica_version(b"zz", 2_000, "far-hub", false);
    let id = write_blob(catalog.blobs().as_ref(), b"zz").await;
    catalog
        .stage_chunk("r", "k2", other.stamp(), 0, BlobRef { id, size: 2 })
        .await
        .expect("stage");
    catalog.drop_staged("r", "k2", other.stamp()).await.expect("drop");
    assert_eq!(blob_count(&catalog).await, 3);
}

async fn replica_deleted_versions_stay_deleted(env: Env) {
    let catalog = env.catalog();
    catalog.create_bucket("v", None).await.expect("bucket");
    set_versioning(&catalog, "v", Versioning::Enabled).await;
    let data = b"versioned replica";
    let mut version = replica_version(data, 5_000, "far-hub", true);
    version.data = ObjectData::Inline(data.to_vec());
    let id = version.version_id.clone().expect("id");
    let applied = catalog.apply_replica("v", "k", version.clone()).await.expect("apply");
    assert_eq!(applied, valley_store::ReplicaOutcome::Applied);
    assert!(
        catalog
            .holds_or_superseded("v", "k", version.stamp(), true)
            .await
            .expect("holds")
    );
    catalog
        .delete_object("v", "k", Some(&id))
        .await
        .expect("delete version");
    // A late or repeated copy (an outbox retry, an anti-entropy push) must not bring it back.
    let again = catalog
        .apply_replica("v", "k", version.clone())
        .await
        .expect("apply again");
    assert_eq!(again, valley_store::ReplicaOutcome::Superseded);
    assert_err!(catalog.object("v", "k", Some(&id)).await, StoreError::NoSuchVersion(_));
    assert!(
        catalog
            .holds_or_superseded("v", "k", version.stamp(), true)
            .await
            .expect("buried")
    );
    // An unversioned key: a newer null version supersedes an older replica.
    catalog.create_bucket("u", None).await.expect("bucket");
    put_inline_object(&catalog, "u", "k", b"written here, later").await;
    let older = replica_version(b"older", 1, "far-hub", false);
    assert!(
        catalog
            .holds_or_superseded("u", "k", older.stamp(), false)
            .await
            .expect("superseded")
    );
    let unknown = replica_version(b"elsewhere", 1, "far-hub", false);
    assert!(
        !catalog
            .holds_or_superseded("u", "other", unknown.stamp(), false)
            .await
            .expect("absent")
    );
}

async fn replica_summaries_and_dropping_a_local_copy(env: Env) {
    let catalog = env.catalog();
    catalog.create_bucket("s", None).await.expect("bucket");
    let a = put_blob_object(&catalog, "s", "a", b"alpha").await;
    put_inline_object(&catalog, "s", "b/c", b"beta").await;
    let summaries = catalog.version_summaries("s").await.expect("summaries");
    let keys: Vec<&str> = summaries.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, vec!["a", "b/c"]);
    assert_eq!(summaries[0].hlc, a.hlc);
    assert_eq!(summaries[0].size, 5);
    assert!(catalog.drop_local_copy("s", "a", a.stamp()).await.expect("drop"));
    assert!(!catalog.drop_local_copy("s", "a", a.stamp()).await.expect("drop again"));
    assert_err!(catalog.object("s", "a", None).await, StoreError::NoSuchKey(_));
    assert_eq!(blob_count(&catalog).await, 0);
    assert_eq!(catalog.version_summaries("s").await.expect("summaries").len(), 1);
}

// ---------------------------------------------------------------------------------------------
// RedbMeta + FsBlobs only: durability across reopening
// ---------------------------------------------------------------------------------------------

fn open_embedded(root: &Path) -> Catalog {
    let meta = RedbMeta::open(&root.join("meta.redb")).expect("open redb");
    let blobs = FsBlobs::open(&root.join("data")).expect("open blobs");
    Catalog::new(Arc::new(meta), Arc::new(blobs))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_reopen_keeps_committed_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();

    let catalog = open_embedded(root);
    catalog.create_bucket("d", None).await.expect("bucket");
    set_versioning(&catalog, "d", Versioning::Enabled).await;
    let v1 = put_blob_object(&catalog, "d", "k", b"version one").await;
    let v2 = put_blob_object(&catalog, "d", "k", &vec![9u8; 300_000]).await;
    catalog
        .create_upload("d", "mp", upload_record("u"))
        .await
        .expect("upload");
    let part_etag = put_part(&catalog, "d", "mp", "u", 1, b"part").await;
    put(catalog.meta().as_ref(), Table::Control, b"raw", b"value");
    let failed = run(catalog.meta().as_ref(), |txn| {
        txn.put(Table::Control, b"failed", b"value");
        Err(test_error())
    });
    assert!(failed.is_err());
    // An unfinished blob: its temporary file is removed when the blob store is opened again.
    let mut unfinished = catalog.blobs().create().await.expect("create");
    unfinished
        .write(bytes::Bytes::from_static(b"torn"))
        .await
        .expect("write");
    drop(unfinished);
    drop(catalog);

    // Reopen several times in quick succession: each must see everything committed.
    for round in 0..3 {
        let catalog = open_embedded(root);
        assert_eq!(
            catalog.bucket("d").await.expect("bucket").versioning,
            Versioning::Enabled,
            "round {round}"
        );
        if round < 2 {
            assert_eq!(catalog.object("d", "k", None).await.expect("latest"), v2);
        }
        let old = catalog.object("d", "k", v1.version_id.as_deref()).await.expect("v1");
        assert_eq!(read_object(&catalog, "d", "k", &old).await, b"version one");
        let stored_v2 = catalog.object("d", "k", v2.version_id.as_deref()).await.expect("v2");
        assert_eq!(stored_v2, v2);
        assert_eq!(read_object(&catalog, "d", "k", &stored_v2).await, vec![9u8; 300_000]);
        if round < 2 {
            let (parts, _) = catalog.list_parts("d", "mp", "u", 0, 10).await.expect("parts");
            assert_eq!(parts.len(), 1);
        }
        assert_eq!(
            get(catalog.meta().as_ref(), Table::Control, b"raw").as_deref(),
            Some(&b"value"[..])
        );
        assert_eq!(get(catalog.meta().as_ref(), Table::Control, b"failed"), None);
        assert_eq!(
            catalog.collect_orphans().await.expect("collect"),
            0,
            "nothing committed is an orphan"
        );
        // v1, v2 and the part; after round 1 also v3 (the part moved into an object, uncopied).
        assert_eq!(blob_count(&catalog).await, if round == 2 { 4 } else { 3 });
        assert_eq!(std::fs::read_dir(root.join("data/tmp")).expect("tmp").count(), 0);
        if round == 1 {
            // A version written after reopening sorts after every stored one.
            let v3 = put_blob_object(&catalog, "d", "k", b"after reopen").await;
            assert!(v3.hlc > v2.hlc);
            catalog
                .complete_upload("d", "mp", "u", vec![(1, part_etag.clone())], None)
                .await
                .expect("complete");
        }
        if round == 2 {
            assert_eq!(latest_bytes(&catalog, "d", "k").await, b"after reopen");
            assert_eq!(latest_bytes(&catalog, "d", "mp").await, b"part");
            assert_err!(catalog.upload("d", "mp", "u").await, StoreError::NoSuchUpload(_));
        }
        drop(catalog);
    }
}

/// Rows in `table` (whole table).
fn row_count(meta: &dyn MetaStore, table: Table) -> usize {
    meta.snapshot()
        .expect("snapshot")
        .scan(table, &[], None, usize::MAX)
        .expect("scan")
        .len()
}

/// Small objects keep their bytes in the inline-data table, out of the version record; the
/// row follows its version through overwrite, tagging, deletion by id and replicated deletes,
/// and a record written before the table existed (bytes inside) still reads.
async fn inline_bytes_live_apart_and_go_with_their_version(env: Env) {
    let catalog = env.catalog();
    catalog.create_bucket("i", None).await.expect("create");
    let meta = env.meta.as_ref();

    let stored = put_inline_object(&catalog, "i", "k", b"inline bytes").await;
    assert_eq!(
        stored.data,
        ObjectData::Inline(b"inline bytes".to_vec()),
        "the caller's version is unchanged"
    );
    let found = catalog.object("i", "k", None).await.expect("object");
    assert_eq!(found.data, ObjectData::InlineApart, "the record holds no bytes");
    assert_eq!(read_object(&catalog, "i", "k", &found).await, b"inline bytes");
    assert_eq!(read_range(&catalog, "i", "k", &found, 7, 5).await, b"bytes");
    assert_eq!(row_count(meta, Table::InlineData), 1);

    // Tagging rewrites the record, not the bytes.
    catalog
        .set_object_tags("i", "k", None, vec![("t".into(), "1".into())])
        .await
        .expect("tag");
    assert_eq!(latest_bytes(&catalog, "i", "k").await, b"inline bytes");

    // An unversioned overwrite replaces the row; a delete removes it.
    put_inline_object(&catalog, "i", "k", b"second").await;
    assert_eq!(latest_bytes(&catalog, "i", "k").await, b"second");
    assert_eq!(row_count(meta, Table::InlineData), 1);
    // Reading a version whose row is gone is an error, never another object's bytes.
    catalog.delete_object("i", "k", None).await.expect("delete");
    assert_eq!(row_count(meta, Table::InlineData), 0);
    assert!(matches!(
        catalog.read("i", "k", &found, 0, found.size).await,
        Err(StoreError::NoSuchKey(_))
    ));

    // Versioned: each version has its own bytes; deleting one by id removes only its row.
    set_versioning(&catalog, "i", Versioning::Enabled).await;
    let v1 = put_inline_object(&catalog, "i", "v", b"one").await;
    let v2 = put_inline_object(&catalog, "i", "v", b"two").await;
    assert_eq!(row_count(meta, Table::InlineData), 2);
    catalog
        .delete_object("i", "v", v1.version_id.as_deref())
        .await
        .expect("delete v1");
    assert_eq!(row_count(meta, Table::InlineData), 1);
    assert_eq!(latest_bytes(&catalog, "i", "v").await, b"two");
    catalog
        .apply_remote_deletes(vec![valley_store::RemoteDelete {
            bucket: "i".into(),
            key: "v".into(),
            version_id: v2.version_id.clone(),
            stamp: v2.stamp(),
            newer_only: false,
            exact: false,
        }])
        .await
        .expect("remote delete");
    assert_eq!(row_count(meta, Table::InlineData), 0);

    // A record of the first format (bytes inside the record, no part checksums), written directly.
    let mut legacy = version_of(ObjectData::Inline(b"legacy".to_vec()), 6, md5_hex(b"legacy"));
    legacy.hlc = 42;
    legacy.origin = "old".into();
    let raw = valley_store::keys::version_key("i", "legacy", legacy.stamp());
    // Format 1 is today's struct without `part_checksums`, the last field: encode as format 1
    // and drop that field's (empty: one length byte) encoding.
    let mut value = valley_store::codec::encode(&legacy);
    assert_eq!(value.pop(), Some(0));
    run(meta, move |txn| {
        txn.put(Table::Versions, &raw, &value);
        Ok(())
    })
    .expect("write legacy record");
    assert_eq!(latest_bytes(&catalog, "i", "legacy").await, b"legacy");
    assert_eq!(row_count(meta, Table::InlineData), 0);
}

/// The counters' format mark (`valley_store::usage`): without it, usage is counted by scanning.
const USAGE_MARK: &[u8] = b"\0usage-format";

/// `bucket`'s usage from its counter and, with the mark taken away for the moment, from a scan
/// of its versions.
async fn usage_both_ways(env: &Env, catalog: &Catalog, bucket: &str) -> ((u64, u64), (u64, u64)) {
    let counted = catalog.bucket_usage(bucket).await.expect("usage");
    let mark = get(env.meta.as_ref(), Table::BucketUsage, USAGE_MARK).expect("the counters are built");
    run(env.meta.as_ref(), |txn| {
        txn.delete(Table::BucketUsage, USAGE_MARK);
        Ok(())
    })
    .expect("unmark");
    let scanned = catalog.bucket_usage(bucket).await.expect("usage by scan");
    put(env.meta.as_ref(), Table::BucketUsage, USAGE_MARK, &mark);
    (counted, scanned)
}

async fn usage_counters_agree_with_a_recount_through_every_change(env: Env) {
    let catalog = env.catalog();
    // A new store has nothing to count; it is marked, and counts from its first write.
    assert!(!catalog.prepare_usage().await.expect("prepare"));
    assert!(
        get(env.meta.as_ref(), Table::BucketUsage, USAGE_MARK).is_some(),
        "marked"
    );
    assert!(!catalog.prepare_usage().await.expect("prepare"));
    catalog.create_bucket("u", None).await.expect("bucket");
    catalog.create_bucket("w", None).await.expect("bucket");
    let mut expected = (0u64, 0u64);
    let check = |expected: (u64, u64), label: &'static str| {
        let (env, catalog) = (&env, &catalog);
        async move {
            let (counted, scanned) = usage_both_ways(env, catalog, "u").await;
            assert_eq!(counted, scanned, "{label}: counter against recount");
            assert_eq!(counted, expected, "{label}");
        }
    };
    put_inline_object(&catalog, "u", "a", b"12345").await;
    put_blob_object(&catalog, "u", "b", &[7u8; 100]).await;
    put_inline_object(&catalog, "w", "other", b"not counted in u").await;
    expected = (expected.0 + 2, expected.1 + 105);
    check(expected, "two puts").await;
    // An unversioned overwrite replaces the null version.
    put_inline_object(&catalog, "u", "a", b"123").await;
    expected.1 -= 2;
    check(expected, "overwrite").await;
    set_versioning(&catalog, "u", Versioning::Enabled).await;
    let v1 = put_inline_object(&catalog, "u", "a", b"version one").await;
    expected = (expected.0 + 1, expected.1 + 11);
    check(expected, "a new version beside the null one").await;
    // A delete marker is not counted; deleting a version is.
    catalog.delete_object("u", "a", None).await.expect("marker");
    check(expected, "delete marker").await;
    catalog
        .delete_object("u", "a", v1.version_id.as_deref())
        .await
        .expect("delete version");
    expected = (expected.0 - 1, expected.1 - 11);
    check(expected, "version deleted").await;
    // A replica arriving, then arriving again.
    let data = b"from afar";
    let mut replica = replica_version(data, 5_000, "far-hub", true);
    replica.data = ObjectData::Inline(data.to_vec());
    catalog.apply_replica("u", "r", replica.clone()).await.expect("apply");
    catalog.apply_replica("u", "r", replica).await.expect("apply again");
    expected = (expected.0 + 1, expected.1 + 9);
    check(expected, "replica applied once").await;
    // Tags rewrite a version's row without changing what it holds.
    catalog
        .set_object_tags("u", "b", None, vec![("k".into(), "v".into())])
        .await
        .expect("tags");
    check(expected, "tags").await;
    catalog.purge_bucket_data("u").await.expect("purge");
    check((0, 0), "purged").await;
    assert_eq!(
        usage_both_ways(&env, &catalog, "w").await,
        ((1, 16), (1, 16)),
        "the other bucket is its own"
    );
}

async fn usage_counters_are_built_once_for_a_store_from_before_them(env: Env) {
    let catalog = env.catalog();
    catalog.create_bucket("u", None).await.expect("bucket");
    put_inline_object(&catalog, "u", "a", b"12345").await;
    put_blob_object(&catalog, "u", "b", &[7u8; 100]).await;
    catalog.delete_object("u", "c", None).await.ok();
    // A store written before the counters: no counter rows, no mark.
    let rows: Vec<Vec<u8>> = scan(env.meta.as_ref(), Table::BucketUsage, &[], None, usize::MAX)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    run(env.meta.as_ref(), move |txn| {
        for key in rows {
            txn.delete(Table::BucketUsage, &key);
        }
        Ok(())
    })
    .expect("forget the counters");
    assert_eq!(
        catalog.bucket_usage("u").await.expect("scan"),
        (2, 105),
        "counted by scan"
    );
    assert!(catalog.prepare_usage().await.expect("build"));
    assert!(!catalog.prepare_usage().await.expect("built once"));
    assert_eq!(usage_both_ways(&env, &catalog, "u").await, ((2, 105), (2, 105)));
}

/// The retraction a hub sends for a copy of a write it then failed: a delete by the version id
/// of the copy's own stamp, from the copy's origin (`exact`).
fn retraction(bucket: &str, key: &str, v: &ObjectVersion, exact: bool) -> valley_store::RemoteDelete {
    valley_store::RemoteDelete {
        bucket: bucket.into(),
        key: key.into(),
        version_id: Some(valley_store::keys::version_id_of(v.stamp())),
        stamp: v.stamp(),
        newer_only: false,
        exact,
    }
}

async fn exact_retraction_removes_that_version_only(env: Env) {
    let catalog = env.catalog();
    catalog.create_bucket("x", None).await.expect("bucket");
    let inline = |mut v: ObjectVersion, data: &[u8]| {
        v.data = ObjectData::Inline(data.to_vec());
        v
    };
    // A null copy applied, then retracted by its origin: gone, and a late copy stays out.
    let copy = inline(replica_version(b"copy", 2_000, "origin-hub", false), b"copy");
    catalog.apply_replica("x", "k", copy.clone()).await.expect("apply");
    let removed = catalog
        .apply_remote_deletes(vec![retraction("x", "k", &copy, true)])
        .await
        .expect("retract");
    assert_eq!(removed, 1);
    assert_err!(catalog.object("x", "k", None).await, StoreError::NoSuchKey(_));
    let late = catalog.apply_replica("x", "k", copy.clone()).await.expect("late copy");
    assert_eq!(late, valley_store::ReplicaOutcome::Superseded);
    // An older version of the key than the retracted one is not touched, nor does the
    // retraction stop it from arriving later (no tombstone over the key).
    let older = inline(replica_version(b"older", 1_000, "other-hub", false), b"older");
    assert_eq!(
        catalog.apply_replica("x", "k", older.clone()).await.expect("older"),
        valley_store::ReplicaOutcome::Applied
    );
    catalog
        .apply_remote_deletes(vec![retraction("x", "k", &copy, true)])
        .await
        .expect("retract again");
    assert_eq!(latest_bytes(&catalog, "x", "k").await, b"older");
    // A newer version that replaced the copy here stays: the retraction names the copy only.
    let copy2 = inline(replica_version(b"copy2", 3_000, "origin-hub", false), b"copy2");
    catalog.apply_replica("x", "k", copy2.clone()).await.expect("copy2");
    let newer = inline(replica_version(b"newer", 4_000, "other-hub", false), b"newer");
    catalog.apply_replica("x", "k", newer).await.expect("newer");
    let removed = catalog
        .apply_remote_deletes(vec![retraction("x", "k", &copy2, true)])
        .await
        .expect("retract copy2");
    assert_eq!(removed, 0);
    assert_eq!(latest_bytes(&catalog, "x", "k").await, b"newer");
    // Without `exact` (the sender is not the origin), a null version is never removed this way.
    let copy3 = inline(replica_version(b"copy3", 5_000, "origin-hub", false), b"copy3");
    catalog.apply_replica("x", "k", copy3.clone()).await.expect("copy3");
    let removed = catalog
        .apply_remote_deletes(vec![retraction("x", "k", &copy3, false)])
        .await
        .expect("not exact");
    assert_eq!(removed, 0);
    assert_eq!(latest_bytes(&catalog, "x", "k").await, b"copy3");
    // A version id that does not name the message's stamp removes nothing either.
    let mut mismatched = retraction("x", "k", &copy3, true);
    mismatched.stamp.hlc += 1;
    assert_eq!(
        catalog.apply_remote_deletes(vec![mismatched]).await.expect("mismatch"),
        0
    );
    assert_eq!(latest_bytes(&catalog, "x", "k").await, b"copy3");
    // Versioned: only the retracted version goes; the versions around it stay.
    catalog.create_bucket("xv", None).await.expect("bucket");
    set_versioning(&catalog, "xv", Versioning::Enabled).await;
    let mut ids = Vec::new();
    for (hlc, data) in [(1_000, &b"one"[..]), (2_000, b"two"), (3_000, b"three")] {
        let v = inline(replica_version(data, hlc, "origin-hub", true), data);
        catalog.apply_replica("xv", "k", v.clone()).await.expect("apply");
        ids.push(v);
    }
    catalog
        .apply_remote_deletes(vec![retraction("xv", "k", &ids[1], true)])
        .await
        .expect("retract two");
    assert_eq!(latest_bytes(&catalog, "xv", "k").await, b"three");
    assert!(catalog.object("xv", "k", ids[0].version_id.as_deref()).await.is_ok());
    assert_err!(
        catalog.object("xv", "k", ids[1].version_id.as_deref()).await,
        StoreError::NoSuchVersion(_)
    );
}

async fn stamped_commit_keeps_its_stamp_and_loses_to_newer(env: Env) {
    let catalog = env.catalog();
    catalog.create_bucket("s", None).await.expect("bucket");
    let data = b"stamped";
    let unstamped = version_of(ObjectData::Inline(data.to_vec()), data.len() as u64, md5_hex(data));
    let stamped = catalog.stamp_version("s", unstamped.clone()).await.expect("stamp");
    assert!(stamped.hlc > 0 && stamped.version_id.is_none());
    let outcome = catalog
        .put_stamped("s", "k", stamped.clone(), None)
        .await
        .expect("commit");
    assert_eq!(outcome.version().stamp(), stamped.stamp());
    assert!(matches!(outcome, valley_store::StampedOutcome::Stored(_)));
    assert_eq!(latest_bytes(&catalog, "s", "k").await, data);
    // Committed twice: refused, the stored version stays.
    assert!(catalog.put_stamped("s", "k", stamped.clone(), None).await.is_err());
    // Stamped, then a newer write commits before it: last-writer-wins keeps the newer.
    let early = catalog.stamp_version("s", unstamped.clone()).await.expect("stamp");
    put_inline_object(&catalog, "s", "k", b"later").await;
    let outcome = catalog.put_stamped("s", "k", early, None).await.expect("commit early");
    assert!(matches!(outcome, valley_store::StampedOutcome::Superseded(_)));
    assert_eq!(latest_bytes(&catalog, "s", "k").await, b"later");
    // Versioned: the stamp's version id, kept as stamped.
    set_versioning(&catalog, "s", Versioning::Enabled).await;
    let v = catalog.stamp_version("s", unstamped).await.expect("stamp");
    assert_eq!(v.version_id, Some(valley_store::keys::version_id_of(v.stamp())));
    let stored = catalog.put_stamped("s", "k", v.clone(), None).await.expect("commit");
    assert_eq!(stored.version().version_id, v.version_id);
}
