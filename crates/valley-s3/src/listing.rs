//! ListObjects (v1 and v2) and ListObjectVersions.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use valley_store::list::{ListItem, ListPage, ListQuery};
use valley_store::record::ObjectVersion;
use valley_types::limits::LIST_KEYS_MAX;

use crate::convert::{etag, s3_err, timestamp_of_unix_ns};
use crate::service::ValleyS3;

/// What `encoding-type=url` leaves as it is: RFC 3986 unreserved characters and `/`.
const URL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Encodes names in a listing response when the client asked for `encoding-type=url`.
struct Names {
    url: bool,
}

impl Names {
    fn new(encoding: Option<&EncodingType>) -> S3Result<Self> {
        match encoding.map(EncodingType::as_str) {
            None => Ok(Self { url: false }),
            Some(EncodingType::URL) => Ok(Self { url: true }),
            Some(other) => Err(s3_error!(
                InvalidArgument,
                "Invalid Encoding Method specified in Request: {other:?}"
            )),
        }
    }

    fn name(&self, s: &str) -> String {
        if self.url {
            utf8_percent_encode(s, URL_ENCODE).to_string()
        } else {
            s.to_owned()
        }
    }

    fn opt(&self, s: Option<&String>) -> Option<String> {
        s.map(|s| self.name(s))
    }
}

pub fn max_keys(asked: Option<i32>) -> S3Result<usize> {
    match asked {
        None => Ok(LIST_KEYS_MAX),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must be a non-negative integer.")),
        Some(n) => Ok(usize::try_from(n).unwrap_or(LIST_KEYS_MAX).min(LIST_KEYS_MAX)),
    }
}

fn object_entry(names: &Names, key: &str, v: &ObjectVersion, owner: Option<Owner>) -> Object {
    Object {
        key: Some(names.name(key)),
        last_modified: Some(timestamp_of_unix_ns(v.hlc)),
        e_tag: Some(etag(&v.etag)),
        size: i64::try_from(v.size).ok(),
        storage_class: Some(ObjectStorageClass::from(
            v.headers.storage_class.clone().unwrap_or_else(|| "STANDARD".into()),
        )),
        owner,
        ..Default::default()
    }
}

fn split<T>(page: &ListPage<T>) -> (Vec<(&str, &T)>, Vec<CommonPrefix>, &ListPage<T>) {
    let mut entries = Vec::new();
    let mut prefixes = Vec::new();
    for item in &page.items {
        match item {
            ListItem::Entry(k, v) => entries.push((k.as_str(), v)),
            ListItem::Prefix(p) => prefixes.push(CommonPrefix {
                prefix: Some(p.clone()),
            }),
        }
    }
    (entries, prefixes, page)
}

async fn page(
    s: &ValleyS3,
    bucket: &str,
    prefix: Option<&str>,
    delimiter: Option<&str>,
    marker: Option<String>,
    max: usize,
) -> S3Result<ListPage<ObjectVersion>> {
    if max == 0 {
        s.catalog.bucket(bucket).await.map_err(s3_err)?;
        return Ok(ListPage {
            items: Vec::new(),
            truncated: false,
        });
    }
    let query = ListQuery {
        prefix: prefix.unwrap_or_default().to_owned(),
        delimiter: delimiter.filter(|d| !d.is_empty()).map(str::to_owned),
        marker,
        max_keys: max,
    };
    s.catalog.list_objects(bucket, query).await.map_err(s3_err)
}

pub async fn list_v1(s: &ValleyS3, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
    let input = req.input;
    let names = Names::new(input.encoding_type.as_ref())?;
    let max = max_keys(input.max_keys)?;
    let page = page(
        s,
        &input.bucket,
        input.prefix.as_deref(),
        input.delimiter.as_deref(),
        input.marker.clone().filter(|m| !m.is_empty()),
        max,
    )
    .await?;
    let (entries, prefixes, page) = split(&page);
    let owner = Some(s.owner(&input.bucket));
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket),
        // S3 returns v1's Prefix as sent, even with encoding-type=url (clients do not decode it).
        prefix: Some(input.prefix.clone().unwrap_or_default()),
        marker: Some(names.opt(input.marker.as_ref()).unwrap_or_default()),
        delimiter: names.opt(input.delimiter.as_ref().filter(|d| !d.is_empty())),
        max_keys: Some(i32::try_from(max).unwrap_or(i32::MAX)),
        is_truncated: Some(page.truncated),
        next_marker: page
            .truncated
            .then(|| page.last_name().map(|n| names.name(n)))
            .flatten(),
        contents: Some(
            entries
                .iter()
                .map(|(k, v)| object_entry(&names, k, v, owner.clone()))
                .collect(),
        ),
        common_prefixes: Some(
            prefixes
                .into_iter()
                .map(|p| CommonPrefix {
                    prefix: names.opt(p.prefix.as_ref()),
                })
                .collect(),
        ),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}

pub async fn list_v2(s: &ValleyS3, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
    let input = req.input;
    let names = Names::new(input.encoding_type.as_ref())?;
    let max = max_keys(input.max_keys)?;
    let token_marker = match input.continuation_token.as_deref() {
        None => None,
        Some(t) => Some(
            hex::decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| s3_error!(InvalidArgument, "The continuation token provided is incorrect"))?,
        ),
    };
    let marker = token_marker.or_else(|| input.start_after.clone().filter(|m| !m.is_empty()));
    let page = page(
        s,
        &input.bucket,
        input.prefix.as_deref(),
        input.delimiter.as_deref(),
        marker,
        max,
    )
    .await?;
    let (entries, prefixes, page) = split(&page);
    let owner = input.fetch_owner.unwrap_or(false).then(|| s.owner(&input.bucket));
    let key_count = entries.len() + prefixes.len();
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(input.bucket),
        prefix: Some(names.opt(input.prefix.as_ref()).unwrap_or_default()),
        delimiter: names.opt(input.delimiter.as_ref().filter(|d| !d.is_empty())),
        max_keys: Some(i32::try_from(max).unwrap_or(i32::MAX)),
        key_count: Some(i32::try_from(key_count).unwrap_or(i32::MAX)),
        is_truncated: Some(page.truncated),
        continuation_token: input.continuation_token,
        next_continuation_token: page
            .truncated
            .then(|| page.last_name().map(|n| hex::encode(n.as_bytes())))
            .flatten(),
        start_after: names.opt(input.start_after.as_ref()),
        contents: Some(
            entries
                .iter()
                .map(|(k, v)| object_entry(&names, k, v, owner.clone()))
                .collect(),
        ),
        common_prefixes: Some(
            prefixes
                .into_iter()
                .map(|p| CommonPrefix {
                    prefix: names.opt(p.prefix.as_ref()),
                })
                .collect(),
        ),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}

pub async fn list_versions(
    s: &ValleyS3,
    req: S3Request<ListObjectVersionsInput>,
) -> S3Result<S3Response<ListObjectVersionsOutput>> {
    let input = req.input;
    let names = Names::new(input.encoding_type.as_ref())?;
    let max = max_keys(input.max_keys)?;
    let key_marker = input.key_marker.clone().filter(|m| !m.is_empty());
    let version_marker = input
        .version_id_marker
        .clone()
        .filter(|m| !m.is_empty() && key_marker.is_some());
    let page = if max == 0 {
        s.catalog.bucket(&input.bucket).await.map_err(s3_err)?;
        ListPage {
            items: Vec::new(),
            truncated: false,
        }
    } else {
        let query = ListQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            marker: key_marker,
            max_keys: max,
        };
        s.catalog
            .list_versions(&input.bucket, query, version_marker)
            .await
            .map_err(s3_err)?
    };
    let owner = Some(s.owner(&input.bucket));
    let mut versions = Vec::new();
    let mut markers = Vec::new();
    let mut prefixes = Vec::new();
    let mut last: Option<(String, String)> = None;
    for item in &page.items {
        match item {
            ListItem::Entry(key, entry) => {
                let v = &entry.version;
                let id = v.version_id.clone().unwrap_or_else(|| "null".into());
                last = Some((key.clone(), id.clone()));
                if v.delete_marker {
                    markers.push(DeleteMarkerEntry {
                        key: Some(names.name(key)),
                        version_id: Some(id),
                        is_latest: Some(entry.is_latest),
                        last_modified: Some(timestamp_of_unix_ns(v.hlc)),
                        owner: owner.clone(),
                    });
                } else {
                    versions.push(s3s::dto::ObjectVersion {
                        key: Some(names.name(key)),
                        version_id: Some(id),
                        is_latest: Some(entry.is_latest),
                        last_modified: Some(timestamp_of_unix_ns(v.hlc)),
                        e_tag: Some(etag(&v.etag)),
                        size: i64::try_from(v.size).ok(),
                        storage_class: Some(ObjectVersionStorageClass::from_static(
                            ObjectVersionStorageClass::STANDARD,
                        )),
                        owner: owner.clone(),
                        ..Default::default()
                    });
                }
            }
            ListItem::Prefix(p) => {
                last = Some((p.clone(), String::new()));
                prefixes.push(CommonPrefix {
                    prefix: Some(names.name(p)),
                });
            }
        }
    }
    let (next_key, next_version) = match (page.truncated, last) {
        (true, Some((k, v))) => (Some(names.name(&k)), (!v.is_empty()).then_some(v)),
        _ => (None, None),
    };
    Ok(S3Response::new(ListObjectVersionsOutput {
        name: Some(input.bucket),
        prefix: Some(names.opt(input.prefix.as_ref()).unwrap_or_default()),
        delimiter: names.opt(input.delimiter.as_ref()),
        key_marker: Some(names.opt(input.key_marker.as_ref()).unwrap_or_default()),
        version_id_marker: Some(input.version_id_marker.unwrap_or_default()),
        max_keys: Some(i32::try_from(max).unwrap_or(i32::MAX)),
        is_truncated: Some(page.truncated),
        next_key_marker: next_key,
        next_version_id_marker: next_version,
        versions: Some(versions),
        delete_markers: Some(markers),
        common_prefixes: Some(prefixes),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}
