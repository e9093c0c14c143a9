//! Per-bucket usage (object versions and bytes, delete markers not counted), kept in the
//! [`Table::BucketUsage`] counters by the one function that writes a new version row and the
//! one that removes a row, in the same transaction: inventory, status and metrics read a
//! counter instead of every version of a bucket.

use crate::error::StoreResult;
use crate::meta::{ReadTxn, Table, WriteTxn};
use crate::record::ObjectVersion;

/// Set once the counters were built from the versions (bucket names are never empty, so the
/// key cannot be a bucket's). Format 1: `objects u64 BE, bytes u64 BE` per bucket.
const MARK: &[u8] = b"\0usage-format";
const FORMAT: u8 = 1;

/// The bucket of a versions-table key (`bucket \0 key \0 stamp`).
fn bucket_of(raw: &[u8]) -> &[u8] {
    raw.split(|b| *b == 0).next().unwrap_or(raw)
}

fn read(txn: &dyn ReadTxn, bucket: &[u8]) -> StoreResult<(u64, u64)> {
    Ok(match txn.get(Table::BucketUsage, bucket)? {
        Some(raw) if raw.len() == 16 => (
            u64::from_be_bytes(raw[..8].try_into().unwrap_or_default()),
            u64::from_be_bytes(raw[8..].try_into().unwrap_or_default()),
        ),
        _ => (0, 0),
    })
}

fn write(txn: &mut dyn WriteTxn, bucket: &[u8], objects: u64, bytes: u64) {
    if objects == 0 && bytes == 0 {
        txn.delete(Table::BucketUsage, bucket);
    } else {
        let mut raw = objects.to_be_bytes().to_vec();
        raw.extend_from_slice(&bytes.to_be_bytes());
        txn.put(Table::BucketUsage, bucket, &raw);
    }
}

/// Counts `version`, stored under `raw`, in (`added`) or out of its bucket's usage.
pub(crate) fn count(txn: &mut dyn WriteTxn, raw: &[u8], version: &ObjectVersion, added: bool) -> StoreResult<()> {
    if version.delete_marker {
        return Ok(());
    }
    let bucket = bucket_of(raw);
    let (objects, bytes) = read(txn, bucket)?;
    let (objects, bytes) = if added {
        (objects.saturating_add(1), bytes.saturating_add(version.size))
    } else {
        (objects.saturating_sub(1), bytes.saturating_sub(version.size))
    };
    write(txn, bucket, objects, bytes);
    Ok(())
}

/// `bucket`'s usage from its counter, or `None` while the counters are not built yet.
pub(crate) fn of(txn: &dyn ReadTxn, bucket: &str) -> StoreResult<Option<(u64, u64)>> {
    if txn.get(Table::BucketUsage, MARK)?.is_none() {
        return Ok(None);
    }
    read(txn, bucket.as_bytes()).map(Some)
}

/// Builds the counters from the versions, once (a store written before they existed); in one
/// transaction, so a crash leaves either none or all. Answers whether there was anything to count.
pub(crate) fn build_if_missing(txn: &mut dyn WriteTxn) -> StoreResult<bool> {
    if txn.get(Table::BucketUsage, MARK)?.is_some() {
        return Ok(false);
    }
    for (key, _) in txn.scan(Table::BucketUsage, &[], None, usize::MAX)? {
        txn.delete(Table::BucketUsage, &key);
    }
    let mut totals: std::collections::BTreeMap<Vec<u8>, (u64, u64)> = std::collections::BTreeMap::new();
    let mut cursor = Vec::new();
    loop {
        let page = txn.scan(Table::Versions, &cursor, None, 1024)?;
        let Some(last) = page.last() else { break };
        let mut next = last.0.clone();
        next.push(0);
        for (raw, value) in &page {
            let version = ObjectVersion::from_record(value)?;
            if !version.delete_marker {
                let total = totals.entry(bucket_of(raw).to_vec()).or_default();
                total.0 += 1;
                total.1 += version.size;
            }
        }
        cursor = next;
    }
    let counted = !totals.is_empty();
    for (bucket, (objects, bytes)) in totals {
        write(txn, &bucket, objects, bytes);
    }
    txn.put(Table::BucketUsage, MARK, &[FORMAT]);
    Ok(counted)
}
