//! The durable outbox: what this hub still has to ship to each peer. Entries are written in the
//! same transaction as the change they ship, so an acknowledged write is never forgotten by
//! replication, and removed only once the peer acknowledged them (at-least-once delivery;
//! receivers apply idempotently).

use serde::{Deserialize, Serialize};
use valley_store::{ReadTxn, StoreError, StoreResult, Table, WriteTxn};

use crate::control::ControlChange;

/// Where the next sequence number is kept (control table).
const SEQ_KEY: &[u8] = b"outbox-seq";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Shipment {
    /// Ship the version of `key` with this stamp (read at send time; skipped if gone).
    Put {
        bucket: String,
        key: String,
        hlc: u64,
        origin: String,
    },
    /// Delete a version (with `version_id`) or the null version older than the stamp.
    Delete {
        bucket: String,
        key: String,
        version_id: Option<String>,
        hlc: u64,
        origin: String,
    },
    Control {
        change: ControlChange,
    },
    /// A version of `key` stamped `(hlc, origin)` exists (at other hubs): the receiver, which
    /// may hold older versions of the key, must not serve those as the latest.
    Newer {
        bucket: String,
        key: String,
        hlc: u64,
        origin: String,
    },
}

impl Shipment {
    #[must_use]
    pub fn bucket(&self) -> Option<&str> {
        match self {
            Shipment::Put { bucket, .. } | Shipment::Delete { bucket, .. } | Shipment::Newer { bucket, .. } => {
                Some(bucket)
            }
            Shipment::Control {
                change: ControlChange::Policy { bucket, .. },
            } => Some(bucket),
            Shipment::Control { .. } => None,
        }
    }

    /// The message a delete or a newer-version notice travels as (`None` for the others).
    #[must_use]
    pub fn delete_message(&self) -> Option<crate::wire::DeleteMessage> {
        match self {
            Shipment::Delete {
                bucket,
                key,
                version_id,
                hlc,
                origin,
            } => Some(crate::wire::DeleteMessage {
                bucket: bucket.clone(),
                key: key.clone(),
                version_id: version_id.clone(),
                hlc: *hlc,
                origin: origin.clone(),
                newer_only: false,
            }),
            Shipment::Newer {
                bucket,
                key,
                hlc,
                origin,
            } => Some(crate::wire::DeleteMessage {
                bucket: bucket.clone(),
                key: key.clone(),
                version_id: None,
                hlc: *hlc,
                origin: origin.clone(),
                newer_only: true,
            }),
            Shipment::Put { .. } | Shipment::Control { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub shipment: Shipment,
    /// Object bytes the entry will move (0 for deletes and control changes).
    pub bytes: u64,
    pub created_unix_ms: u64,
}

fn entry_key(peer: &str, seq: u64) -> Vec<u8> {
    let mut k = peer.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// `peer \0 bucket \0`: the prefix of one (link, bucket) pair's index rows and counter.
fn pair_prefix(peer: &str, bucket: &str) -> Vec<u8> {
    let mut k = peer.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k
}

fn index_key(peer: &str, bucket: &str, seq: u64) -> Vec<u8> {
    let mut k = pair_prefix(peer, bucket);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Control-table keys of the backlog counters: one per (link, bucket) and one per link.
const PAIR_COUNT: &[u8] = b"outbox-count\0";
const LINK_COUNT: &[u8] = b"outbox-total\0";
/// Set once the index and the counters describe the whole outbox (outboxes written before
/// they existed are indexed at start, [`index_existing`]).
const INDEX_MARK: &[u8] = b"outbox-index-version";
const INDEX_VERSION: u8 = 1;

fn pair_count_key(peer: &str, bucket: &str) -> Vec<u8> {
    let mut k = PAIR_COUNT.to_vec();
    k.extend_from_slice(&pair_prefix(peer, bucket));
    k
}

fn link_count_key(peer: &str) -> Vec<u8> {
    let mut k = LINK_COUNT.to_vec();
    k.extend_from_slice(peer.as_bytes());
    k
}

/// Entries and bytes still owed, and when the oldest of them was queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub entries: u64,
    pub bytes: u64,
    pub oldest_unix_ms: Option<u64>,
}

impl Backlog {
    /// Age of the oldest entry at `now_ms`, in seconds (0 when nothing is owed): the link's
    /// (or bucket's) recovery point.
    #[must_use]
    pub fn lag_seconds(&self, now_ms: u64) -> f64 {
        self.oldest_unix_ms
            .map_or(0.0, |t| now_ms.saturating_sub(t) as f64 / 1000.0)
    }
}

fn read_count(txn: &dyn ReadTxn, key: &[u8]) -> StoreResult<(u64, u64)> {
    Ok(match txn.get(Table::Control, key)? {
        Some(raw) if raw.len() == 16 => (
            u64::from_be_bytes(raw[..8].try_into().unwrap_or_default()),
            u64::from_be_bytes(raw[8..].try_into().unwrap_or_default()),
        ),
        _ => (0, 0),
    })
}

fn add_count(txn: &mut dyn WriteTxn, key: &[u8], entries: i64, bytes: i64) -> StoreResult<()> {
    let (e, b) = read_count(txn, key)?;
    let e = e.saturating_add_signed(entries);
    let b = b.saturating_add_signed(bytes);
    if e == 0 {
        txn.delete(Table::Control, key);
    } else {
        let mut raw = e.to_be_bytes().to_vec();
        raw.extend_from_slice(&b.to_be_bytes());
        txn.put(Table::Control, key, &raw);
    }
    Ok(())
}

fn index_value(entry: &OutboxEntry) -> Vec<u8> {
    let mut raw = entry.created_unix_ms.to_be_bytes().to_vec();
    raw.extend_from_slice(&entry.bytes.to_be_bytes());
    raw
}

/// Records `entry` (sequence `seq`) in the index and the counters.
fn count_in(txn: &mut dyn WriteTxn, peer: &str, seq: u64, entry: &OutboxEntry) -> StoreResult<()> {
    let bucket = entry.shipment.bucket().unwrap_or("");
    let bytes = i64::try_from(entry.bytes).unwrap_or(i64::MAX);
    txn.put(
        Table::OutboxByBucket,
        &index_key(peer, bucket, seq),
        &index_value(entry),
    );
    add_count(txn, &pair_count_key(peer, bucket), 1, bytes)?;
    add_count(txn, &link_count_key(peer), 1, bytes)
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        what: "outbox entry",
        detail: e.to_string(),
    }
}

/// Queues `entry` for `peer`; returns its sequence number.
pub fn push(txn: &mut dyn WriteTxn, peer: &str, entry: &OutboxEntry) -> StoreResult<u64> {
    let seq = txn
        .get(Table::Control, SEQ_KEY)?
        .and_then(|raw| raw.try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(1);
    txn.put(Table::Control, SEQ_KEY, &(seq + 1).to_be_bytes());
    let raw = serde_json::to_vec(entry).map_err(corrupt)?;
    txn.put(Table::Outbox, &entry_key(peer, seq), &raw);
    count_in(txn, peer, seq, entry)?;
    Ok(seq)
}

/// Queues `shipment` (moving `bytes` of object data) for each of `peers`.
pub fn push_to_each<P: AsRef<str>>(
    txn: &mut dyn WriteTxn,
    peers: impl IntoIterator<Item = P>,
    shipment: &Shipment,
    bytes: u64,
) -> StoreResult<()> {
    for peer in peers {
        let entry = OutboxEntry {
            shipment: shipment.clone(),
            bytes,
            created_unix_ms: crate::hook::now_unix_ms(),
        };
        push(txn, peer.as_ref(), &entry)?;
    }
    Ok(())
}

/// Up to `limit` pending entries for `peer`, oldest first.
pub fn pending(txn: &dyn ReadTxn, peer: &str, limit: usize) -> StoreResult<Vec<(u64, OutboxEntry)>> {
    pending_from(txn, peer, 0, limit)
}

fn link_end(peer: &str) -> Vec<u8> {
    let mut end = peer.as_bytes().to_vec();
    end.push(1);
    end
}

/// Up to `limit` pending entries for `peer` with sequence numbers from `first_seq` on. Entries
/// become visible in sequence order (one committer assigns and commits them), so a worker can
/// read only what is new since its last scan.
pub fn pending_from(
    txn: &dyn ReadTxn,
    peer: &str,
    first_seq: u64,
    limit: usize,
) -> StoreResult<Vec<(u64, OutboxEntry)>> {
    let start = entry_key(peer, first_seq);
    txn.scan(Table::Outbox, &start, Some(&link_end(peer)), limit)?
        .into_iter()
        .map(|(k, v)| Ok((seq_of(&k), serde_json::from_slice(&v).map_err(corrupt)?)))
        .collect()
}

fn seq_of(key: &[u8]) -> u64 {
    key.get(key.len().saturating_sub(8)..)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

/// Every pending entry, for every peer (a full read: for checks, never on a hot path).
pub fn all_pending(txn: &dyn ReadTxn) -> StoreResult<Vec<OutboxEntry>> {
    txn.scan(Table::Outbox, &[], None, usize::MAX)?
        .into_iter()
        .map(|(_, v)| serde_json::from_slice(&v).map_err(corrupt))
        .collect()
}

/// Removes entry `seq` of `peer`'s outbox (delivered or refused), with its index row and its
/// share of the counters. Removing an entry already gone is a no-op.
pub fn remove(txn: &mut dyn WriteTxn, peer: &str, seq: u64) -> StoreResult<()> {
    let key = entry_key(peer, seq);
    let Some(raw) = txn.get(Table::Outbox, &key)? else {
        return Ok(());
    };
    let entry: OutboxEntry = serde_json::from_slice(&raw).map_err(corrupt)?;
    txn.delete(Table::Outbox, &key);
    let bucket = entry.shipment.bucket().unwrap_or("");
    let bytes = i64::try_from(entry.bytes).unwrap_or(i64::MAX);
    txn.delete(Table::OutboxByBucket, &index_key(peer, bucket, seq));
    add_count(txn, &pair_count_key(peer, bucket), -1, -bytes)?;
    add_count(txn, &link_count_key(peer), -1, -bytes)
}

/// What `peer` is still owed: read from counters kept as entries come and go, and the oldest
/// entry (one seek), never by reading the backlog.
pub fn link_backlog(txn: &dyn ReadTxn, peer: &str) -> StoreResult<Backlog> {
    let (entries, bytes) = read_count(txn, &link_count_key(peer))?;
    let oldest = pending(txn, peer, 1)?.first().map(|(_, e)| e.created_unix_ms);
    Ok(Backlog {
        entries,
        bytes,
        oldest_unix_ms: oldest,
    })
}

/// When the oldest entry of `bucket` for `peer` was queued, if any is owed (one seek).
pub fn bucket_oldest(txn: &dyn ReadTxn, peer: &str, bucket: &str) -> StoreResult<Option<u64>> {
    let start = pair_prefix(peer, bucket);
    let mut end = start.clone();
    if let Some(last) = end.last_mut() {
        *last = 1;
    }
    Ok(txn
        .scan(Table::OutboxByBucket, &start, Some(&end), 1)?
        .first()
        .and_then(|(_, v)| v.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes)))
}

/// What `peer` is owed per bucket (entries without a bucket under `""`): one counter and one
/// seek per bucket with a backlog.
pub fn bucket_backlogs(txn: &dyn ReadTxn, peer: &str) -> StoreResult<Vec<(String, Backlog)>> {
    let mut start = PAIR_COUNT.to_vec();
    start.extend_from_slice(peer.as_bytes());
    start.push(0);
    let mut end = start.clone();
    if let Some(last) = end.last_mut() {
        *last = 1;
    }
    let mut rows = Vec::new();
    for (key, _) in txn.scan(Table::Control, &start, Some(&end), usize::MAX)? {
        let Some(bucket) = key
            .get(start.len()..key.len().saturating_sub(1))
            .and_then(|b| std::str::from_utf8(b).ok())
        else {
            continue;
        };
        let (entries, bytes) = read_count(txn, &key)?;
        rows.push((
            bucket.to_owned(),
            Backlog {
                entries,
                bytes,
                oldest_unix_ms: bucket_oldest(txn, peer, bucket)?,
            },
        ));
    }
    Ok(rows)
}

/// Builds the index and the counters of an outbox written before they existed (format 0),
/// once; returns the entries indexed. Safe to call at every start.
pub fn index_existing(txn: &mut dyn WriteTxn) -> StoreResult<u64> {
    if txn.get(Table::Control, INDEX_MARK)?.is_some() {
        return Ok(0);
    }
    let mut indexed = 0;
    let mut from: Vec<u8> = Vec::new();
    loop {
        let page = txn.scan(Table::Outbox, &from, None, 4096)?;
        let Some((last, _)) = page.last() else { break };
        from = last.clone();
        from.push(0);
        for (key, raw) in &page {
            let Some(split) = key.len().checked_sub(9) else {
                continue;
            };
            let Ok(peer) = std::str::from_utf8(&key[..split]) else {
                continue;
            };
            let entry: OutboxEntry = serde_json::from_slice(raw).map_err(corrupt)?;
            count_in(txn, peer, seq_of(key), &entry)?;
            indexed += 1;
        }
    }
    txn.put(Table::Control, INDEX_MARK, &[INDEX_VERSION]);
    Ok(indexed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use valley_store::{MemMeta, MetaStore};

    fn put(bucket: &str, bytes: u64, at: u64) -> OutboxEntry {
        OutboxEntry {
            shipment: Shipment::Put {
                bucket: bucket.into(),
                key: "k".into(),
                hlc: 1,
                origin: "a".into(),
            },
            bytes,
            created_unix_ms: at,
        }
    }

    fn write(meta: &MemMeta, job: impl FnOnce(&mut dyn WriteTxn) -> StoreResult<()> + Send + 'static) {
        meta.write(Box::new(job)).expect("write");
    }

    #[test]
    fn counters_and_oldest_follow_pushes_and_removals() {
        let meta = MemMeta::new();
        write(&meta, |txn| {
            push(txn, "b", &put("x", 10, 100))?;
            push(txn, "b", &put("y", 20, 200))?;
            push(txn, "b", &put("x", 30, 300))?;
            push(txn, "c", &put("x", 5, 50))?;
            Ok(())
        });
        let snap = meta.snapshot().expect("snapshot");
        assert_eq!(
            link_backlog(snap.as_ref(), "b").expect("read"),
            Backlog {
                entries: 3,
                bytes: 60,
                oldest_unix_ms: Some(100)
            }
        );
        let rows = bucket_backlogs(snap.as_ref(), "b").expect("read");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, "x");
        assert_eq!(
            (rows[0].1.entries, rows[0].1.bytes, rows[0].1.oldest_unix_ms),
            (2, 40, Some(100))
        );
        // Delivering the oldest moves the recovery point on; removing twice changes nothing.
        write(&meta, |txn| {
            remove(txn, "b", 1)?;
            remove(txn, "b", 1)
        });
        let snap = meta.snapshot().expect("snapshot");
        assert_eq!(bucket_oldest(snap.as_ref(), "b", "x").expect("read"), Some(300));
        assert_eq!(
            link_backlog(snap.as_ref(), "b").expect("read").oldest_unix_ms,
            Some(200)
        );
        assert_eq!(link_backlog(snap.as_ref(), "b").expect("read").entries, 2);
        write(&meta, |txn| {
            remove(txn, "b", 2)?;
            remove(txn, "b", 3)
        });
        let snap = meta.snapshot().expect("snapshot");
        assert_eq!(link_backlog(snap.as_ref(), "b").expect("read"), Backlog::default());
        assert!(bucket_backlogs(snap.as_ref(), "b").expect("read").is_empty());
        assert_eq!(link_backlog(snap.as_ref(), "c").expect("read").entries, 1);
    }

    #[test]
    fn an_outbox_of_the_previous_format_is_indexed_once() {
        let meta = MemMeta::new();
        // As written before the index and counters existed: entries only.
        write(&meta, |txn| {
            for (i, peer) in ["b", "b", "c"].iter().enumerate() {
                let raw = serde_json::to_vec(&put("x", 7, 10 + i as u64)).expect("json");
                txn.put(Table::Outbox, &entry_key(peer, i as u64 + 1), &raw);
            }
            txn.put(Table::Control, SEQ_KEY, &4u64.to_be_bytes());
            Ok(())
        });
        let indexed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        for _ in 0..2 {
            let counter = indexed.clone();
            write(&meta, move |txn| {
                counter.fetch_add(index_existing(txn)?, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            });
        }
        assert_eq!(indexed.load(std::sync::atomic::Ordering::SeqCst), 3, "indexed once");
        let snap = meta.snapshot().expect("snapshot");
        let b = link_backlog(snap.as_ref(), "b").expect("read");
        assert_eq!((b.entries, b.bytes, b.oldest_unix_ms), (2, 14, Some(10)));
        assert_eq!(bucket_oldest(snap.as_ref(), "c", "x").expect("read"), Some(12));
        write(&meta, |txn| remove(txn, "b", 1));
        let snap = meta.snapshot().expect("snapshot");
        assert_eq!(link_backlog(snap.as_ref(), "b").expect("read").entries, 1);
    }
}
