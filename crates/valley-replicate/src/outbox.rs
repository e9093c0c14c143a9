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
    let mut end = peer.as_bytes().to_vec();
    end.push(1);
    txn.scan(Table::Outbox, &start, Some(&end), limit)?
        .into_iter()
        .map(|(k, v)| {
            let seq = k
                .get(k.len().saturating_sub(8)..)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            Ok((seq, serde_json::from_slice(&v).map_err(corrupt)?))
        })
        .collect()
}

/// Every pending entry, for every peer.
pub fn all_pending(txn: &dyn ReadTxn) -> StoreResult<Vec<OutboxEntry>> {
    txn.scan(Table::Outbox, &[], None, usize::MAX)?
        .into_iter()
        .map(|(_, v)| serde_json::from_slice(&v).map_err(corrupt))
        .collect()
}

pub fn remove(txn: &mut dyn WriteTxn, peer: &str, seq: u64) {
    txn.delete(Table::Outbox, &entry_key(peer, seq));
}
