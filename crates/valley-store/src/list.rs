//! Listing: ListObjects (current versions), ListObjectVersions and ListMultipartUploads, with
//! prefix, delimiter roll-up into common prefixes, markers and page limits.
//!
//! Each walks the ordered table in batches, skipping past a whole common prefix in one seek,
//! so a page costs time in proportion to what it returns (plus the hidden entries it steps
//! over: older versions, delete markers), not to the bucket's size.

use crate::error::StoreResult;
use crate::keys;
use crate::meta::{ReadTxn, Table};
use crate::record::{ObjectVersion, UploadRecord};

/// Entries fetched per scan.
const SCAN_BATCH: usize = 256;

#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub prefix: String,
    pub delimiter: Option<String>,
    /// Return only keys (or common prefixes) strictly greater than this.
    pub marker: Option<String>,
    pub max_keys: usize,
}

#[derive(Debug, Clone)]
pub enum ListItem<T> {
    Entry(String, T),
    Prefix(String),
}

#[derive(Debug, Clone)]
pub struct ListPage<T> {
    pub items: Vec<ListItem<T>>,
    /// More items follow the last one returned.
    pub truncated: bool,
}

impl<T> ListPage<T> {
    /// The key or common prefix of the last item: where the next page starts after.
    #[must_use]
    pub fn last_name(&self) -> Option<&str> {
        self.items.last().map(|item| match item {
            ListItem::Entry(k, _) | ListItem::Prefix(k) => k.as_str(),
        })
    }
}

/// The common prefix `key` rolls up into, if any.
fn roll_up<'k>(key: &'k str, prefix: &str, delimiter: Option<&str>) -> Option<&'k str> {
    let delimiter = delimiter.filter(|d| !d.is_empty())?;
    let rest = key.get(prefix.len()..)?;
    rest.find(delimiter).map(|i| &key[..prefix.len() + i + delimiter.len()])
}

/// The first raw key after `raw` in byte order.
fn successor(raw: &[u8]) -> Vec<u8> {
    let mut next = raw.to_vec();
    next.push(0);
    next
}

/// What a walk does with one entry.
enum Step<T> {
    Skip,
    Emit(ListItem<T>),
}

/// Walks `table` over `bucket`'s entries under `query.prefix`, from `start`, calling `visit`
/// with each object key and raw entry; rolls keys up into common prefixes and fills one page.
fn walk<T>(
    txn: &dyn ReadTxn,
    table: Table,
    bucket: &str,
    query: &ListQuery,
    start: Vec<u8>,
    parse: impl Fn(&[u8]) -> Option<String>,
    mut visit: impl FnMut(&str, &[u8], &[u8]) -> StoreResult<Step<T>>,
) -> StoreResult<ListPage<T>> {
    let end = if query.prefix.is_empty() {
        keys::bucket_end(bucket)
    } else {
        keys::past_prefix(bucket, &query.prefix)
    };
    let mut cursor = start;
    let mut items = Vec::new();
    'scan: loop {
        let batch = txn.scan(table, &cursor, Some(&end), SCAN_BATCH)?;
        let Some(last) = batch.last() else {
            return Ok(ListPage {
                items,
                truncated: false,
            });
        };
        let next_cursor = successor(&last.0);
        for (raw_key, value) in &batch {
            let Some(key) = parse(raw_key) else { continue };
            if let Some(common) = roll_up(&key, &query.prefix, query.delimiter.as_deref()) {
                if query.marker.as_deref().is_some_and(|m| common <= m) {
                    cursor = keys::past_prefix(bucket, common);
                    continue 'scan;
                }
                // A common prefix is listed only if an entry under it would be listed itself:
                // in ListObjects a key whose latest version is a delete marker does not count,
                // so a "folder" of deleted keys disappears, as in S3. Step through hidden
                // entries until one that counts.
                if let Step::Skip = visit(&key, raw_key, value)? {
                    continue;
                }
                if items.len() == query.max_keys {
                    return Ok(ListPage { items, truncated: true });
                }
                items.push(ListItem::Prefix(common.to_owned()));
                cursor = keys::past_prefix(bucket, common);
                continue 'scan;
            }
            if let Step::Emit(item) = visit(&key, raw_key, value)? {
                if items.len() == query.max_keys {
                    return Ok(ListPage { items, truncated: true });
                }
                items.push(item);
            }
        }
        cursor = next_cursor;
    }
}

fn start_position(bucket: &str, query: &ListQuery) -> Vec<u8> {
    let mut from_prefix = keys::bucket_prefix(bucket);
    from_prefix.extend_from_slice(query.prefix.as_bytes());
    match &query.marker {
        Some(marker) => from_prefix.max(keys::object_end(bucket, marker)),
        None => from_prefix,
    }
}

/// ListObjects: the current version of each key, leaving out keys whose latest is a delete marker.
pub fn list_objects(txn: &dyn ReadTxn, bucket: &str, query: &ListQuery) -> StoreResult<ListPage<ObjectVersion>> {
    let mut previous_key: Option<String> = None;
    walk(
        txn,
        Table::Versions,
        bucket,
        query,
        start_position(bucket, query),
        |raw| keys::parse_version_key(bucket, raw).map(|(k, _)| k.to_owned()),
        |key, _raw, value| {
            if previous_key.as_deref() == Some(key) {
                return Ok(Step::Skip);
            }
            previous_key = Some(key.to_owned());
            let version = ObjectVersion::from_record(value)?;
            if version.delete_marker {
                return Ok(Step::Skip);
            }
            Ok(Step::Emit(ListItem::Entry(key.to_owned(), version)))
        },
    )
}

/// One version in a ListObjectVersions page.
#[derive(Debug, Clone)]
pub struct VersionEntry {
    pub version: ObjectVersion,
    pub is_latest: bool,
}

/// ListObjectVersions: every version, newest first within a key. `version_marker` (with
/// `query.marker` as the key marker) resumes after that version of that key.
pub fn list_versions(
    txn: &dyn ReadTxn,
    bucket: &str,
    query: &ListQuery,
    version_marker: Option<keys::Stamp>,
) -> StoreResult<ListPage<VersionEntry>> {
    let mut start = start_position(bucket, query);
    let mut query = query.clone();
    let mut resumed_key = None;
    if let (Some(key_marker), Some(stamp)) = (query.marker.clone(), version_marker) {
        // Resume inside the marker key, after the marker version.
        let mut from_prefix = keys::bucket_prefix(bucket);
        from_prefix.extend_from_slice(query.prefix.as_bytes());
        start = successor(&keys::version_key(bucket, &key_marker, stamp)).max(from_prefix);
        query.marker = None;
        resumed_key = Some(key_marker);
    }
    let mut previous_key: Option<String> = None;
    walk(
        txn,
        Table::Versions,
        bucket,
        &query,
        start,
        |raw| keys::parse_version_key(bucket, raw).map(|(k, _)| k.to_owned()),
        |key, _raw, value| {
            // The first version met of a key is its newest, unless the walk resumed inside it.
            let is_latest = previous_key.as_deref() != Some(key) && resumed_key.as_deref() != Some(key);
            previous_key = Some(key.to_owned());
            let version = ObjectVersion::from_record(value)?;
            Ok(Step::Emit(ListItem::Entry(
                key.to_owned(),
                VersionEntry { version, is_latest },
            )))
        },
    )
}

/// ListMultipartUploads: open uploads by key, then upload id.
pub fn list_uploads(
    txn: &dyn ReadTxn,
    bucket: &str,
    query: &ListQuery,
    upload_id_marker: Option<&str>,
) -> StoreResult<ListPage<UploadRecord>> {
    let mut start = start_position(bucket, query);
    let mut query = query.clone();
    if let (Some(key_marker), Some(upload_id)) = (&query.marker, upload_id_marker) {
        start = successor(&keys::upload_key(bucket, key_marker, upload_id));
        query.marker = None;
    }
    walk(
        txn,
        Table::Uploads,
        bucket,
        &query,
        start,
        |raw| keys::parse_upload_key(bucket, raw).map(|(k, _)| k.to_owned()),
        |key, _raw, value| {
            let upload = UploadRecord::from_record(value)?;
            Ok(Step::Emit(ListItem::Entry(key.to_owned(), upload)))
        },
    )
}
