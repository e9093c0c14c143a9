//! Seeded simulation of replication through the production apply path. Each hub is a real
//! [`Catalog`] over the in-memory stores (`MemMeta`, `MemBlobs`), built as `valley serve` builds
//! it (`with_origin` and the production outbox hook, [`valley_replicate::outbox_hook`]); clients
//! write with `Catalog::put_object` and `Catalog::delete_object`, which stamp versions with the
//! hub's HLC clock and fill the durable outbox ([`valley_replicate::outbox`]) in the same
//! transaction. Per-link workers built on [`valley_replicate::core`] (`LinkQueue`, `Backoff`)
//! ship the outbox as `link.rs` does (a put is read at send time with `Catalog::object_at` and
//! `Catalog::read`, and needs no sending when gone; small versions travel in batches framed by
//! [`valley_replicate::batch`] and applied with `Catalog::apply_replicas`; deletes and notices
//! in batches of [`wire::DeleteMessage`]) through a network that drops, duplicates, reorders and delays
//! messages; receivers take them in as `receive.rs` does (the version header decoded, the bytes
//! checked against the ETag and stored inline or as a new blob, then `Catalog::apply_replica`;
//! delete batches through `Catalog::apply_remote_deletes`). Hubs crash: their link state is
//! lost, the catalog is reopened over the same stores (a fresh HLC clock, `collect_orphans`),
//! and the outbox persists. Buckets are unversioned, versioned, or versioned and then
//! suspended hub by hub, by seed.
//!
//! After the faults stop, every outbox must drain and, for every key, every hub must hold the
//! same versions and serve the same latest version (or none): the one an oracle computes from
//! the stamps the stores issued, by last-writer-wins on `(hlc, origin)`. No hub may leak blobs.
//!
//! It found two divergences of the production path, both fixed, both exercised by default
//! (`VALLEY_SIM_NO_DELETE_MARKERS=1` / `VALLEY_SIM_NO_DELETE_NULL_BY_ID=1` leave them out, to
//! bisect a new failure):
//!
//! - delete markers (DELETE without a version id in a versioned or suspended bucket): a
//!   marker's ETag is empty, and the receiver checked the empty body against it and answered
//!   400, so a marker never replicated and its outbox entry was retried for ever (now
//!   `wire::check_body`, shared with the receiver, checks only a marker's size);
//! - DELETE of the null version by its id, `"null"`: the deleting hub buried only that
//!   version's stamp while the other hubs took it as a null-version delete and raised a
//!   tombstone, so an older null version still on its way came back at the deleting hub alone
//!   (now the deleting hub raises the same tombstone).
//!
//! Each run prints its seed on failure; replay one with `VALLEY_SIM_SEED=<seed>`.

// Hubs are addressed by index throughout, as the messages name them.
#![allow(clippy::needless_range_loop)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use valley_policy::{PlacementPolicy, Topology};
use valley_replicate::batch;
use valley_replicate::control::{self, PolicyRecord};
use valley_replicate::core::{Backoff, LinkQueue};
use valley_replicate::hook::OutboxHook;
use valley_replicate::outbox::{self, OutboxEntry, Shipment};
use valley_replicate::wire::{self, DeleteMessage, EtagCheck};
use valley_store::keys::{Stamp, origin_tag};
use valley_store::record::{BlobRef, ObjectData, ObjectVersion, Versioning};
use valley_store::{Catalog, MemBlobs, MemMeta, MetaStore, StoreError, StoreResult, VersionHook, WriteTxn};
use valley_types::limits::INLINE_OBJECT_BYTES_MAX;

const HUBS: usize = 4;
const KEYS: u64 = 12;
const BUCKET: &str = "sim";
const FAULTY_UNTIL_MS: u64 = 3_000;
const END_MS: u64 = 60_000;
const STEP_MS: u64 = 10;

fn hub_name(i: usize) -> String {
    format!("hub-{i}")
}

/// Four hubs in one jurisdiction, no links: every transfer is allowed.
fn topology() -> Arc<Topology> {
    let mut text = String::new();
    for i in 0..HUBS {
        text.push_str(&format!(
            "[[hub]]\nid = \"{}\"\njurisdiction = \"CN\"\nrole = \"east\"\nlat = 30.0\nlon = 110.0\n\
             failure_domain = \"grid-{i}\"\npeer_endpoint = \"http://127.0.0.1:{}\"\n\n",
            hub_name(i),
            19_001 + 10 * i
        ));
    }
    Arc::new(Topology::parse(&text).expect("the simulated topology parses"))
}

/// What a store stamped at a hub, as the write hook saw it inside the write's transaction.
#[derive(Debug, Clone)]
enum Stamped {
    /// A version (or delete marker) written at its origin.
    Version(String, ObjectVersion),
    /// A version deleted at a hub: by id (`version_id` set), or the null version (an
    /// unversioned delete's tombstone, or the null version named by `"null"`) up to its stamp.
    Delete(String, ObjectVersion),
}

type Log = Arc<Mutex<Vec<Stamped>>>;

/// The production outbox hook, with a record of what it was shown (for the oracle).
struct Recorder {
    inner: Arc<OutboxHook>,
    log: Log,
}

impl VersionHook for Recorder {
    fn on_local_version(
        &self,
        txn: &mut dyn WriteTxn,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
    ) -> StoreResult<()> {
        self.inner.on_local_version(txn, bucket, key, version)?;
        let mut log = self.log.lock().expect("log lock");
        log.push(Stamped::Version(key.to_owned(), version.clone()));
        Ok(())
    }

    fn on_local_delete(
        &self,
        txn: &mut dyn WriteTxn,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
    ) -> StoreResult<()> {
        self.inner.on_local_delete(txn, bucket, key, version)?;
        let mut log = self.log.lock().expect("log lock");
        log.push(Stamped::Delete(key.to_owned(), version.clone()));
        Ok(())
    }
}

/// A hub's catalog as `valley serve` opens it: the hub's origin and the outbox hook.
fn open_catalog(i: usize, meta: &Arc<MemMeta>, blobs: &MemBlobs, topology: &Arc<Topology>, log: &Log) -> Catalog {
    let name = hub_name(i);
    let hook = Recorder {
        inner: valley_replicate::outbox_hook(&name, topology.clone(), Arc::new(tokio::sync::Notify::new())),
        log: log.clone(),
    };
    Catalog::new(meta.clone(), Arc::new(blobs.clone()))
        .with_origin(&name)
        .with_hook(Arc::new(hook))
}

/// One link's worker state (`link.rs`): in memory, lost on crash.
struct Link {
    queue: LinkQueue,
    known: HashMap<u64, OutboxEntry>,
    scan_from: u64,
    scan_now: bool,
    failing: bool,
}

impl Link {
    fn new() -> Self {
        Self {
            queue: LinkQueue::new(
                3,
                Backoff {
                    base_ms: 20,
                    max_ms: 400,
                },
            ),
            known: HashMap::new(),
            scan_from: 0,
            scan_now: true,
            failing: false,
        }
    }
}

struct Hub {
    /// Durable: survive crashes.
    meta: Arc<MemMeta>,
    blobs: MemBlobs,
    catalog: Catalog,
    /// In memory: lost on crash.
    links: Vec<Link>,
    /// Counts restarts: answers to calls made before a crash never arrive (the connection died).
    epoch: u64,
}

#[derive(Clone)]
enum Body {
    /// `PUT object`: the version header and its bytes.
    Object {
        bucket: String,
        key: String,
        header: String,
        bytes: Bytes,
    },
    /// `POST batch`: small versions framed by `valley_replicate::batch::encode`.
    Batch(Bytes),
    /// `POST deletes`.
    Deletes(Vec<DeleteMessage>),
    /// The answer to either, from the hub called back to the caller.
    Ack,
}

#[derive(Clone)]
struct Packet {
    /// The hub that made the call (for an answer too).
    from: usize,
    /// The hub called.
    to: usize,
    /// The caller's epoch when it made the call.
    epoch: u64,
    seqs: Vec<u64>,
    body: Body,
}

fn version_of(data: ObjectData, bytes: &[u8]) -> ObjectVersion {
    ObjectVersion {
        version_id: None,
        hlc: 0,
        origin: String::new(),
        delete_marker: false,
        size: bytes.len() as u64,
        etag: hex::encode(Md5::digest(bytes)),
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

async fn read_all(catalog: &Catalog, key: &str, version: &ObjectVersion) -> Vec<u8> {
    let mut stream = catalog
        .read(BUCKET, key, version, 0, version.size)
        .await
        .expect("read a stored version");
    let mut out = Vec::new();
    while let Some(piece) = stream.next().await {
        out.extend_from_slice(&piece.expect("read a stored version's bytes"));
    }
    out
}

struct Sim {
    hubs: Vec<Hub>,
    rng: StdRng,
    /// Packets in flight, by arrival time then sending order.
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    packets: HashMap<u64, Packet>,
    sent: u64,
    drop_p: f64,
    dup_p: f64,
    now: u64,
    faulty: bool,
    /// The bucket is versioned (a DELETE without a version id makes a delete marker).
    versioned: bool,
    /// Whether clients make delete markers (see the module doc).
    delete_markers: bool,
    /// Whether clients delete the null version by its id, `"null"` (see the module doc).
    delete_null_by_id: bool,
}

impl Sim {
    fn pop_due(&mut self) -> Option<Packet> {
        let Reverse((at, id)) = *self.heap.peek()?;
        if at > self.now {
            return None;
        }
        self.heap.pop();
        self.packets.remove(&id)
    }

    fn push(&mut self, at: u64, packet: Packet) {
        self.sent += 1;
        self.heap.push(Reverse((at, self.sent)));
        self.packets.insert(self.sent, packet);
    }

    /// The caller's side of a failed call: retry after a backoff (`link::settle`).
    fn fail(&mut self, from: usize, to: usize, epoch: u64, seqs: &[u64]) {
        if self.hubs[from].epoch != epoch {
            return;
        }
        let at = self.now + 50;
        let link = &mut self.hubs[from].links[to];
        link.failing = true;
        for seq in seqs {
            link.queue.fail(*seq, at, self.rng.random());
        }
    }

    /// The caller's side of a delivered call: the entries leave the outbox (`link::settle`).
    fn settle(&mut self, from: usize, to: usize, seqs: Vec<u64>) {
        let peer = hub_name(to);
        let removed = seqs.clone();
        self.hubs[from]
            .meta
            .write(Box::new(move |txn| {
                for seq in removed {
                    outbox::remove(txn, &peer, seq)?;
                }
                Ok(())
            }))
            .expect("remove delivered outbox entries");
        let link = &mut self.hubs[from].links[to];
        if link.failing {
            link.failing = false;
            link.queue.retry_all_now(self.now);
        }
        for seq in seqs {
            link.queue.ack(seq);
            link.known.remove(&seq);
        }
    }

    /// Puts `packet` on the network, maybe twice, maybe not at all; a call lost entirely fails
    /// at the caller through its request timeout.
    fn send(&mut self, packet: Packet) {
        let copies = if self.faulty && self.rng.random_bool(self.dup_p) {
            2
        } else {
            1
        };
        let mut delivered = false;
        for _ in 0..copies {
            if self.faulty && self.rng.random_bool(self.drop_p) {
                continue;
            }
            delivered = true;
            let delay = self.rng.random_range(1..if self.faulty { 200 } else { 20 });
            self.push(self.now + delay, packet.clone());
        }
        if !delivered {
            self.fail(packet.from, packet.to, packet.epoch, &packet.seqs);
        }
    }

    /// One turn of the worker of link `from → to` (`link::run`): read new outbox entries, ship
    /// what is due.
    async fn ship(&mut self, from: usize, to: usize) {
        let (now, peer) = (self.now, hub_name(to));
        let (catalog, epoch) = (self.hubs[from].catalog.clone(), self.hubs[from].epoch);
        let link = &mut self.hubs[from].links[to];
        if link.scan_now {
            link.scan_now = false;
            let snapshot = catalog.meta().snapshot().expect("snapshot");
            let entries =
                outbox::pending_from(snapshot.as_ref(), &peer, link.scan_from, 4096).expect("read the outbox");
            for (seq, entry) in entries {
                link.queue.enqueue(seq, now);
                link.known.entry(seq).or_insert(entry);
                link.scan_from = link.scan_from.max(seq + 1);
            }
        }
        let mut deletes = Vec::new();
        let mut nothing = Vec::new();
        let mut calls = Vec::new();
        // `link::ship_puts`: small versions go together, read in one snapshot at send time.
        let mut batch_seqs = Vec::new();
        let mut batch_items = Vec::new();
        for seq in link.queue.take_due(now) {
            let Some(entry) = link.known.get(&seq).cloned() else {
                link.queue.ack(seq);
                continue;
            };
            match entry.shipment {
                Shipment::Delete { .. } | Shipment::Newer { .. } => deletes.push((seq, entry.shipment)),
                Shipment::Put {
                    bucket,
                    key,
                    hlc,
                    origin,
                } => {
                    let stamp = Stamp {
                        hlc,
                        origin_tag: origin_tag(&origin),
                    };
                    // `transfer::send_version`: read at send time; gone, nothing to send.
                    let Some(version) = catalog.object_at(&bucket, &key, stamp).await.expect("object_at") else {
                        nothing.push(seq);
                        continue;
                    };
                    if version.size <= batch::BATCH_ITEM_BYTES_MAX {
                        let read = catalog
                            .objects_at(vec![(bucket.clone(), key.clone(), stamp)])
                            .await
                            .expect("objects_at");
                        if let Some(Some(version)) = read.into_iter().next()
                            && matches!(version.data, ObjectData::Inline(_))
                        {
                            batch_seqs.push(seq);
                            batch_items.push(batch::BatchItem { bucket, key, version });
                            continue;
                        }
                    }
                    let bytes = read_all(&catalog, &key, &version).await;
                    calls.push(Packet {
                        from,
                        to,
                        epoch,
                        seqs: vec![seq],
                        body: Body::Object {
                            header: wire::encode_version(&version),
                            bucket,
                            key,
                            bytes: Bytes::from(bytes),
                        },
                    });
                }
                Shipment::Control { .. } => panic!("the simulation changes no control records"),
            }
        }
        if !batch_items.is_empty() {
            calls.push(Packet {
                from,
                to,
                epoch,
                seqs: batch_seqs,
                body: Body::Batch(Bytes::from(batch::encode(&batch_items))),
            });
        }
        if !nothing.is_empty() {
            self.settle(from, to, nothing);
        }
        if !deletes.is_empty() {
            // `link::ship_deletes`: one call for the batch.
            let messages = deletes
                .iter()
                .filter_map(|(_, shipment)| shipment.delete_message())
                .collect();
            calls.push(Packet {
                from,
                to,
                epoch,
                seqs: deletes.iter().map(|(seq, _)| *seq).collect(),
                body: Body::Deletes(messages),
            });
        }
        for call in calls {
            self.send(call);
        }
    }

    /// Delivers what arrives now: calls are taken in and answered, answers settle.
    async fn deliver(&mut self) {
        while let Some(packet) = self.pop_due() {
            let Packet {
                from,
                to,
                epoch,
                seqs,
                body,
            } = packet;
            if let Body::Ack = body {
                // An answer to a call made before the caller crashed has nowhere to go.
                if self.hubs[from].epoch == epoch {
                    self.settle(from, to, seqs);
                }
                continue;
            }
            if !receive(&self.hubs[to], body).await {
                self.fail(from, to, epoch, &seqs);
                continue;
            }
            if self.faulty && self.rng.random_bool(self.drop_p) {
                // The answer is lost: the caller times out and sends again.
                self.fail(from, to, epoch, &seqs);
            } else {
                let at = self.now + self.rng.random_range(1..50);
                self.push(
                    at,
                    Packet {
                        from,
                        to,
                        epoch,
                        seqs,
                        body: Body::Ack,
                    },
                );
            }
        }
    }
}

/// What a receiver does with a call (`receive::receive_object` and the `deletes` route).
/// Answers whether the call succeeded.
async fn receive(hub: &Hub, body: Body) -> bool {
    match body {
        Body::Object {
            bucket,
            key,
            header,
            bytes,
        } => {
            let version = wire::decode_version(&header).expect("a well-formed version header");
            if !valley_types::hlc::plausible(version.hlc) {
                return false;
            }
            // `take_body`: length and ETag checked end to end; small versions inline, others
            // in a new blob. A mismatch is answered 400, and the caller retries.
            let mut check = EtagCheck::new(&version.part_sizes);
            check.update(&bytes);
            if wire::check_body(&version, bytes.len() as u64, &check.finish()).is_err() {
                return false;
            }
            let data = if version.size <= INLINE_OBJECT_BYTES_MAX {
                ObjectData::Inline(bytes.to_vec())
            } else {
                let mut writer = hub.catalog.blobs().create().await.expect("create a blob");
                writer.write(bytes).await.expect("write a blob");
                let id = writer.finish().await.expect("finish a blob");
                ObjectData::Blobs(vec![BlobRef { id, size: version.size }])
            };
            let mut version = version;
            version.data = data;
            hub.catalog
                .apply_replica(&bucket, &key, version)
                .await
                .expect("apply_replica");
            true
        }
        Body::Batch(body) => {
            // `batch::receive`: decoded whole, each version checked against its ETag, the
            // accepted ones applied in one transaction.
            let items = batch::decode(&body).expect("a well-formed batch");
            if items.iter().any(|i| !valley_types::hlc::plausible(i.version.hlc)) {
                return false;
            }
            let mut accepted = Vec::new();
            for item in items {
                let ObjectData::Inline(data) = &item.version.data else {
                    return false;
                };
                let mut check = EtagCheck::new(&item.version.part_sizes);
                check.update(data);
                if wire::check_body(&item.version, data.len() as u64, &check.finish()).is_err() {
                    return false;
                }
                accepted.push((item.bucket, item.key, item.version));
            }
            let outcomes = hub.catalog.apply_replicas(accepted).await.expect("apply_replicas");
            assert!(outcomes.iter().all(Result::is_ok), "every bucket exists at every hub");
            true
        }
        Body::Deletes(messages) => {
            if let Some(m) = messages.iter().max_by_key(|m| m.hlc)
                && !valley_types::hlc::plausible(m.hlc)
            {
                return false;
            }
            let batch = messages.into_iter().map(DeleteMessage::into_remote_delete).collect();
            hub.catalog
                .apply_remote_deletes(batch)
                .await
                .expect("apply_remote_deletes");
            true
        }
        Body::Ack => unreachable!("answers are handled by the caller"),
    }
}

/// The versions every hub must hold of `key`, newest first by `(hlc, origin)`, from what the
/// stores stamped: the versions with ids not deleted by id, and the null version that wins
/// last-writer-wins among null writes and null deletes (a delete wins a tie: deleting the null
/// version by id deletes it at its own stamp).
fn expected(log: &[Stamped], key: &str) -> Vec<ObjectVersion> {
    let mut with_ids: BTreeMap<String, ObjectVersion> = BTreeMap::new();
    let mut deleted_ids = BTreeSet::new();
    let mut null: Option<((u64, String, bool), Option<ObjectVersion>)> = None;
    for event in log {
        let (k, v, delete) = match event {
            Stamped::Version(k, v) => (k, v, false),
            Stamped::Delete(k, v) => (k, v, true),
        };
        if k != key {
            continue;
        }
        match (&v.version_id, delete) {
            (Some(id), false) => {
                with_ids.insert(id.clone(), v.clone());
            }
            (Some(id), true) => {
                deleted_ids.insert(id.clone());
            }
            (None, _) => {
                let order = (v.hlc, v.origin.clone(), delete);
                if null.as_ref().is_none_or(|(best, _)| order > *best) {
                    null = Some((order, (!delete).then(|| v.clone())));
                }
            }
        }
    }
    let mut out: Vec<ObjectVersion> = with_ids
        .into_iter()
        .filter(|(id, _)| !deleted_ids.contains(id))
        .map(|(_, v)| v)
        .chain(null.and_then(|(_, v)| v))
        .collect();
    out.sort_by(|a, b| (b.hlc, &b.origin).cmp(&(a.hlc, &a.origin)));
    out
}

/// What a hub serves for a key: the newest version (its id, stamp and bytes), a delete
/// marker's stamp, or nothing.
#[derive(Debug, PartialEq, Eq)]
enum Served {
    Object {
        version_id: Option<String>,
        hlc: u64,
        origin: String,
        bytes: Vec<u8>,
    },
    DeleteMarker,
    Nothing,
}

type Holding = Vec<(u64, String, bool, u64)>;

async fn served(catalog: &Catalog, key: &str) -> Served {
    match catalog.object(BUCKET, key, None).await {
        Ok(v) => Served::Object {
            bytes: read_all(catalog, key, &v).await,
            version_id: v.version_id,
            hlc: v.hlc,
            origin: v.origin,
        },
        Err(StoreError::DeleteMarker(_)) => Served::DeleteMarker,
        Err(StoreError::NoSuchKey(_)) => Served::Nothing,
        Err(e) => panic!("GET {key}: {e}"),
    }
}

async fn simulate(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let topology = topology();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    // Seed by seed: unversioned; versioned; versioned, then suspended at each hub in turn (as
    // the versioning control record reaches it).
    let variant = seed % 3;
    let suspend_at: Vec<u64> = (0..HUBS)
        .map(|_| rng.random_range(50..250) * STEP_MS)
        .map(|at| if variant == 2 { at } else { u64::MAX })
        .collect();
    let mut hubs = Vec::with_capacity(HUBS);
    for i in 0..HUBS {
        let meta = Arc::new(MemMeta::new());
        let blobs = MemBlobs::new();
        let catalog = open_catalog(i, &meta, &blobs, &topology, &log);
        catalog.create_bucket(BUCKET, None).await.expect("create the bucket");
        if variant != 0 {
            catalog
                .update_bucket(BUCKET, |b| b.versioning = Versioning::Enabled)
                .await
                .expect("enable versioning");
        }
        // Every hub holds every version (the policy record as control replication leaves it).
        let record = PolicyRecord {
            policy: PlacementPolicy {
                jurisdictions: vec!["CN".into()],
                hubs: Vec::new(),
                copies: HUBS as u32,
                distinct_failure_domains: false,
                home_hub: None,
                classifications: Vec::new(),
                tiering: None,
                ..PlacementPolicy::default()
            },
            hlc: 1,
            origin: hub_name(0),
            deleted: false,
        };
        meta.write(Box::new(move |txn| {
            control::put_policy(txn, BUCKET, &record).map(|_| ())
        }))
        .expect("store the policy");
        hubs.push(Hub {
            meta,
            blobs,
            catalog,
            links: (0..HUBS).map(|_| Link::new()).collect(),
            epoch: 0,
        });
    }
    let (drop_p, dup_p) = (rng.random_range(0.0..0.4), rng.random_range(0.0..0.3));
    let mut sim = Sim {
        hubs,
        rng,
        heap: BinaryHeap::new(),
        packets: HashMap::new(),
        sent: 0,
        drop_p,
        dup_p,
        now: 0,
        faulty: true,
        versioned: variant != 0,
        delete_markers: std::env::var_os("VALLEY_SIM_NO_DELETE_MARKERS").is_none(),
        delete_null_by_id: std::env::var_os("VALLEY_SIM_NO_DELETE_NULL_BY_ID").is_none(),
    };
    // The bytes of every version written, by stamp (the log keeps only blob references).
    let mut written: HashMap<(u64, String), Vec<u8>> = HashMap::new();
    while sim.now < END_MS {
        sim.faulty = sim.now < FAULTY_UNTIL_MS;
        for h in 0..HUBS {
            if sim.now == suspend_at[h] {
                sim.hubs[h]
                    .catalog
                    .update_bucket(BUCKET, |b| b.versioning = Versioning::Suspended)
                    .await
                    .expect("suspend versioning");
            }
        }
        // Writes and crashes happen only while faulty, so the tail checks convergence.
        if sim.faulty && sim.rng.random_bool(0.3) {
            let h = sim.rng.random_range(0..HUBS);
            let key = format!("k{}", sim.rng.random_range(0..KEYS));
            write(&mut sim, h, &key, &log, &mut written).await;
            // The hook wakes the hub's link workers.
            for link in &mut sim.hubs[h].links {
                link.scan_now = true;
            }
        }
        if sim.faulty && sim.rng.random_bool(0.01) {
            let h = sim.rng.random_range(0..HUBS);
            let hub = &mut sim.hubs[h];
            hub.epoch += 1;
            hub.links = (0..HUBS).map(|_| Link::new()).collect();
            // Restarted as `valley serve` starts: the catalog reopened, orphans collected.
            hub.catalog = open_catalog(h, &hub.meta, &hub.blobs, &topology, &log);
            let orphans = hub.catalog.collect_orphans().await.expect("collect_orphans");
            assert_eq!(orphans, 0, "seed {seed}: hub {h} had leaked {orphans} blobs at restart");
        }
        for from in 0..HUBS {
            for to in (0..HUBS).filter(|p| *p != from) {
                sim.ship(from, to).await;
            }
        }
        sim.deliver().await;
        sim.now += STEP_MS;
        // Stop early once everything is delivered.
        if !sim.faulty && sim.heap.is_empty() && sim.now.is_multiple_of(500) && outbox_entries(&sim.hubs) == 0 {
            break;
        }
    }
    let log = log.lock().expect("log lock").clone();
    check(seed, &sim.hubs, &log, &written).await;
}

fn outbox_entries(hubs: &[Hub]) -> usize {
    hubs.iter()
        .map(|hub| {
            outbox::all_pending(hub.meta.snapshot().expect("snapshot").as_ref())
                .expect("read the outbox")
                .len()
        })
        .sum()
}

/// A client's write at hub `h`: a PUT (small, inline; or larger, in a blob), a DELETE, or a
/// DELETE of one version by id.
async fn write(sim: &mut Sim, h: usize, key: &str, log: &Log, written: &mut HashMap<(u64, String), Vec<u8>>) {
    let catalog = sim.hubs[h].catalog.clone();
    let rng = &mut sim.rng;
    let op = rng.random_range(0..100);
    if op < 65 {
        let len = if rng.random_bool(0.1) {
            rng.random_range(INLINE_OBJECT_BYTES_MAX + 1..INLINE_OBJECT_BYTES_MAX + 2_048)
        } else {
            rng.random_range(0..48)
        };
        let mut bytes = vec![0u8; len as usize];
        rng.fill(&mut bytes[..]);
        // As the S3 front ingests a body: small ones inline, others in a blob first.
        let data = if len <= INLINE_OBJECT_BYTES_MAX {
            ObjectData::Inline(bytes.clone())
        } else {
            let mut writer = catalog.blobs().create().await.expect("create a blob");
            writer.write(Bytes::from(bytes.clone())).await.expect("write a blob");
            let id = writer.finish().await.expect("finish a blob");
            ObjectData::Blobs(vec![BlobRef { id, size: len }])
        };
        let stored = catalog
            .put_object(BUCKET, key, version_of(data, &bytes), None)
            .await
            .expect("put_object");
        assert_eq!(
            stored.origin,
            hub_name(h),
            "a version's origin is the hub that wrote it"
        );
        written.insert((stored.hlc, stored.origin), bytes);
    } else if op < 88 && (!sim.versioned || sim.delete_markers) {
        catalog.delete_object(BUCKET, key, None).await.expect("delete_object");
    } else {
        // Of a version some hub wrote (perhaps not here yet), or of the null version.
        let ids: Vec<String> = log
            .lock()
            .expect("log lock")
            .iter()
            .filter_map(|e| match e {
                Stamped::Version(k, v) if k == key => match &v.version_id {
                    Some(id) => Some(id.clone()),
                    None => sim.delete_null_by_id.then(|| "null".to_owned()),
                },
                _ => None,
            })
            .collect();
        if !ids.is_empty() {
            let id = &ids[rng.random_range(0..ids.len())];
            catalog
                .delete_object(BUCKET, key, Some(id))
                .await
                .expect("delete_object by id");
        }
    }
}

/// Converged: every outbox drained, and every hub holds and serves what the oracle says.
async fn check(seed: u64, hubs: &[Hub], log: &[Stamped], written: &HashMap<(u64, String), Vec<u8>>) {
    for (i, hub) in hubs.iter().enumerate() {
        let left = outbox_entries(std::slice::from_ref(hub));
        assert_eq!(left, 0, "seed {seed}: hub {i} still has {left} outbox entries");
    }
    let mut holdings: Vec<BTreeMap<String, Holding>> = Vec::new();
    for hub in hubs {
        let mut by_key: BTreeMap<String, Holding> = BTreeMap::new();
        for s in hub.catalog.version_summaries(BUCKET).await.expect("version_summaries") {
            by_key
                .entry(s.key)
                .or_default()
                .push((s.hlc, s.origin, s.delete_marker, s.size));
        }
        holdings.push(by_key);
    }
    for k in 0..KEYS {
        let key = format!("k{k}");
        let want = expected(log, &key);
        let want_held: Holding = want
            .iter()
            .map(|v| (v.hlc, v.origin.clone(), v.delete_marker, v.size))
            .collect();
        let want_served = match want.first() {
            None => Served::Nothing,
            Some(v) if v.delete_marker => Served::DeleteMarker,
            Some(v) => Served::Object {
                version_id: v.version_id.clone(),
                hlc: v.hlc,
                origin: v.origin.clone(),
                bytes: written[&(v.hlc, v.origin.clone())].clone(),
            },
        };
        for (i, hub) in hubs.iter().enumerate() {
            let mut held = holdings[i].get(&key).cloned().unwrap_or_default();
            held.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
            assert_eq!(
                held, want_held,
                "seed {seed}: hub {i} holds the wrong versions of {key}"
            );
            let got = served(&hub.catalog, &key).await;
            assert_eq!(
                got, want_served,
                "seed {seed}: hub {i} serves the wrong version of {key}"
            );
        }
    }
    for (i, hub) in hubs.iter().enumerate() {
        let orphans = hub.catalog.collect_orphans().await.expect("collect_orphans");
        assert_eq!(orphans, 0, "seed {seed}: hub {i} leaked {orphans} blobs");
    }
}

fn run(seed: u64) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(simulate(seed));
}

#[test]
fn replicas_converge_under_drops_duplicates_reordering_and_crashes() {
    if let Ok(seed) = std::env::var("VALLEY_SIM_SEED") {
        let seed: u64 = seed.parse().expect("VALLEY_SIM_SEED is a number");
        run(seed);
        return;
    }
    // 300 seeds take ~15 s in a release build on two cores (the suite's); VALLEY_SIM_SEEDS
    // runs more (or fewer).
    let seeds: u64 = std::env::var("VALLEY_SIM_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300);
    for seed in 0..seeds {
        let result = std::panic::catch_unwind(|| run(seed));
        if result.is_err() {
            panic!("simulation failed; replay with VALLEY_SIM_SEED={seed}");
        }
    }
}
