//! Single-object operations: PUT, GET, HEAD, DELETE and batch DELETE.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use valley_store::StoreError;
use valley_store::record::{ObjectHeaders, ObjectVersion};
use valley_types::limits::{DELETE_OBJECTS_KEYS_MAX, PART_SIZE_BYTES_MAX};

use crate::body::{self, Declared};
use crate::conditions::{Conditions, write_precondition};
use crate::convert::{
    check_key, check_metadata, checksum_fields, etag, format_http_date, metadata_pairs, s3_err, timestamp_of_unix_ns,
};
use crate::service::ValleyS3;
use crate::tags;

pub async fn put(s: &ValleyS3, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
    let trailers = req.trailing_headers;
    let input = req.input;
    check_key(&input.key)?;
    crate::sse::refuse_conflict(
        input.server_side_encryption.is_some(),
        input.sse_customer_algorithm.is_some(),
    )?;
    let customer = crate::sse::request_customer_key(
        &req.extensions,
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    let encryption = crate::sse::requested(
        input.server_side_encryption.as_ref().map(|e| e.as_str()),
        input.ssekms_key_id.as_deref(),
    )?;
    if let Some(class) = &input.storage_class
        && !matches!(
            class.as_str(),
            "STANDARD" | "REDUCED_REDUNDANCY" | "STANDARD_IA" | "ONEZONE_IA" | "INTELLIGENT_TIERING" | "GLACIER_IR"
        )
    {
        return Err(s3_error!(
            InvalidStorageClass,
            "The storage class you specified is not valid."
        ));
    }
    let headers = ObjectHeaders {
        content_type: input.content_type.clone(),
        content_encoding: crate::body::stored_content_encoding(input.content_encoding.clone()),
        content_disposition: input.content_disposition.clone(),
        content_language: input.content_language.clone(),
        cache_control: input.cache_control.clone(),
        expires: input.expires.as_ref().and_then(format_http_date),
        website_redirect_location: input.website_redirect_location.clone(),
        storage_class: input.storage_class.as_ref().map(|c| c.as_str().to_owned()),
        user_metadata: metadata_pairs(input.metadata.clone()),
    };
    check_metadata(&headers)?;
    let object_tags = tags::parse_header(input.tagging.as_deref())?;
    // Refuse early, before taking in the body, when the bucket is missing or may not live here.
    s.catalog.bucket(&input.bucket).await.map_err(s3_err)?;
    s.check_write(&input.bucket).await?;
    let writer = crate::bucket::principal_tenant(&req.extensions);
    let acl = crate::acl::for_write(
        s,
        &input.bucket,
        &writer,
        &req.headers,
        input.acl.as_ref().map(|a| a.as_str()),
    )?;
    let mut declared = Declared {
        algorithm: input.checksum_algorithm.clone(),
        crc32: input.checksum_crc32.clone(),
        crc32c: input.checksum_crc32c.clone(),
        sha1: input.checksum_sha1.clone(),
        sha256: input.checksum_sha256.clone(),
        crc64nvme: input.checksum_crc64nvme.clone(),
        content_md5: input.content_md5.clone(),
    };
    let sealer = crate::sse::write_sealer(s, &input.bucket, &input.key, encryption, customer.as_ref())?;
    let ingested = body::ingest(
        s.catalog.blobs().as_ref(),
        input.body,
        &mut declared,
        trailers,
        true,
        PART_SIZE_BYTES_MAX,
        sealer,
    )
    .await?;
    let version = ObjectVersion {
        version_id: None,
        hlc: 0,
        origin: String::new(),
        delete_marker: false,
        size: ingested.size,
        etag: ingested.md5_hex,
        data: ingested.data,
        headers,
        checksums: ingested.checksums,
        tags: object_tags,
        part_sizes: Vec::new(),
        part_checksums: Vec::new(),
        acl,
        sealing: ingested.sealing,
    };
    let precondition = write_precondition(input.if_match, input.if_none_match);
    let written = if crate::sync::wanted(s, &input.bucket).await {
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        crate::sync::write(s, &input.bucket, &input.key, version, true, |v| async move {
            s.catalog.put_stamped(&bucket, &key, v, precondition).await
        })
        .await?
    } else {
        crate::sync::Written {
            version: s
                .catalog
                .put_object(&input.bucket, &input.key, version, precondition)
                .await
                .map_err(s3_err)?,
            header: None,
        }
    };
    let mut response = S3Response::new(PutObjectOutput::default());
    let stored = written.apply(&mut response);
    let sums = checksum_fields(&stored.checksums, true);
    let sse = crate::sse::response_headers(&stored, customer.as_ref());
    response.output = PutObjectOutput {
        e_tag: Some(etag(&stored.etag)),
        server_side_encryption: sse.sse,
        ssekms_key_id: sse.kms_key_id,
        sse_customer_algorithm: sse.customer_algorithm,
        sse_customer_key_md5: sse.customer_key_md5,
        version_id: stored.version_id,
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_type: sums.checksum_type,
        size: i64::try_from(stored.size).ok(),
        ..Default::default()
    };
    Ok(response)
}

/// Where the version a GET or HEAD names was found.
enum Found {
    Here(ObjectVersion),
    /// At another hub, read through this one (the policy engine allowed it).
    Elsewhere(crate::gate::RemoteVersion),
}

impl Found {
    fn version(&self) -> &ObjectVersion {
        match self {
            Found::Here(v) => v,
            Found::Elsewhere(r) => &r.version,
        }
    }
}

/// Looks up the version a GET or HEAD names: here, else (on a hub of a network) at a hub that
/// holds it. A delete marker named by version id is 405, as S3.
async fn lookup(
    s: &ValleyS3,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    checked: Option<crate::auth::CheckedRead>,
) -> S3Result<Found> {
    check_key(key)?;
    let here = match checked {
        Some(crate::auth::CheckedRead(version)) => Ok(version),
        None => s.catalog.object(bucket, key, version_id).await,
    };
    let found = match here {
        Ok(v) => match (&s.gate, version_id) {
            // This hub's latest may not be the network's (a versioned write placed elsewhere).
            (Some(gate), None) => match gate.newer_elsewhere(bucket, key, &v).await {
                Ok(Some(remote)) => Found::Elsewhere(remote),
                _ => Found::Here(v),
            },
            _ => Found::Here(v),
        },
        Err(e @ (StoreError::NoSuchKey(_) | StoreError::NoSuchVersion(_))) => match &s.gate {
            Some(gate) => match gate.find_elsewhere(bucket, key, version_id).await {
                Ok(Some(remote)) => Found::Elsewhere(remote),
                Ok(None) => return Err(s3_err(e)),
                Err(why) => return Err(s3_error!(AccessDenied, "{why}")),
            },
            None => return Err(s3_err(e)),
        },
        // Deleted here, but perhaps written again at another hub since.
        Err(e @ StoreError::DeleteMarker(_)) => match (&s.gate, s.catalog.latest_any(bucket, key).await) {
            (Some(gate), Ok(Some(marker))) => match gate.newer_elsewhere(bucket, key, &marker).await {
                Ok(Some(remote)) => Found::Elsewhere(remote),
                _ => return Err(s3_err(e)),
            },
            _ => return Err(s3_err(e)),
        },
        Err(e) => return Err(s3_err(e)),
    };
    if found.version().delete_marker && version_id.is_none() {
        // The newest version, found at another hub, is a delete marker.
        return Err(s3_err(StoreError::DeleteMarker(key.to_owned())));
    }
    if found.version().delete_marker {
        let mut err = s3_error!(
            MethodNotAllowed,
            "The specified method is not allowed against this resource."
        );
        let mut h = http::HeaderMap::new();
        h.insert("x-amz-delete-marker", http::HeaderValue::from_static("true"));
        err.set_headers(h);
        return Err(err);
    }
    Ok(found)
}

/// The checksums a GET or HEAD reports: part `n`'s for a `partNumber` read of a multipart
/// object (typed as the object's checksum is, as S3 does; none when not kept), none for a read
/// that is not `whole`, else the object's.
fn reported_checksums(
    version: &ObjectVersion,
    part_number: Option<i32>,
    whole: bool,
) -> valley_store::record::Checksums {
    let part = |n: i32| {
        let index = usize::try_from(n).ok()?.checked_sub(1)?;
        let mut sums = version.part_checksums.get(index)?.clone();
        sums.composite = version.checksums.composite;
        Some(sums)
    };
    match part_number {
        Some(n) if !version.part_sizes.is_empty() => part(n).unwrap_or_default(),
        _ if whole => version.checksums.clone(),
        _ => Default::default(),
    }
}

/// The byte range a GET (or HEAD) asks for, from `Range` or `partNumber`.
fn select_range(
    version: &ObjectVersion,
    range: Option<&Range>,
    part_number: Option<i32>,
) -> S3Result<Option<std::ops::Range<u64>>> {
    if let Some(n) = part_number {
        if range.is_some() {
            return Err(s3_error!(InvalidRequest, "Cannot specify both Range and partNumber."));
        }
        let index = usize::try_from(n).ok().and_then(|n| n.checked_sub(1));
        if version.part_sizes.is_empty() {
            return if n == 1 { Ok(None) } else { Err(invalid_part_number()) };
        }
        let index = index
            .filter(|i| *i < version.part_sizes.len())
            .ok_or_else(invalid_part_number)?;
        let start: u64 = version.part_sizes[..index].iter().sum();
        return Ok(Some(start..start + version.part_sizes[index]));
    }
    match range {
        None => Ok(None),
        Some(r) => r
            .check(version.size)
            .map(Some)
            .map_err(|_| s3_error!(InvalidRange, "The requested range is not satisfiable")),
    }
}

pub async fn get(s: &ValleyS3, mut req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
    crate::sse::refuse_on_read(&req.headers)?;
    let checked = req.extensions.remove::<crate::auth::CheckedRead>();
    let input = req.input;
    let customer = crate::sse::request_customer_key(
        &req.extensions,
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    let found = lookup(s, &input.bucket, &input.key, input.version_id.as_deref(), checked).await?;
    let version = found.version();
    Conditions {
        if_match: input.if_match,
        if_none_match: input.if_none_match,
        if_modified_since: input.if_modified_since,
        if_unmodified_since: input.if_unmodified_since,
    }
    .check_read(&version.etag, version.hlc)?;
    let range = select_range(version, input.range.as_ref(), input.part_number)?;
    let (start, len) = match &range {
        Some(r) => (r.start, r.end - r.start),
        None => (0, version.size),
    };
    // A sealed version is read as the stored chunks covering the range, then opened.
    let plan = crate::sse::plan_read(s, customer.as_ref(), &input.bucket, &input.key, version, start, len)?;
    let (stored_start, stored_len) = plan.stored_range(start, len);
    let stored = match &found {
        Found::Here(v) => s
            .catalog
            .read(&input.bucket, &input.key, v, stored_start, stored_len)
            .await
            .map_err(s3_err)?,
        Found::Elsewhere(remote) => match &s.gate {
            Some(gate) => gate
                .read_elsewhere(remote, stored_start, stored_len)
                .await
                .map_err(|why| s3_error!(ServiceUnavailable, "reading through from hub {}: {why}", remote.holder))?,
            None => return Err(s3_error!(InternalError, "no network to read through")),
        },
    };
    let sse = plan.response_headers();
    let stream = plan.plaintext(stored, start, len);
    // A range has no checksum; a part of a multipart object has its own, when it was kept.
    let stored = reported_checksums(version, input.part_number, range.is_none());
    let sums = checksum_fields(&stored, input.checksum_mode.is_some());
    let h = &version.headers;
    Ok(S3Response::new(GetObjectOutput {
        body: Some(StreamingBlob::wrap(sync_wrapper::SyncStream::new(stream))),
        server_side_encryption: sse.sse,
        ssekms_key_id: sse.kms_key_id,
        sse_customer_algorithm: sse.customer_algorithm,
        sse_customer_key_md5: sse.customer_key_md5,
        content_length: i64::try_from(len).ok(),
        content_range: range
            .as_ref()
            .map(|r| format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), version.size)),
        accept_ranges: Some("bytes".into()),
        last_modified: Some(timestamp_of_unix_ns(version.hlc)),
        e_tag: Some(etag(&version.etag)),
        version_id: version.version_id.clone(),
        metadata: crate::convert::metadata_map(&h.user_metadata),
        content_type: h.content_type.clone().or_else(|| Some("binary/octet-stream".into())),
        content_encoding: h.content_encoding.clone(),
        content_disposition: h.content_disposition.clone(),
        content_language: h.content_language.clone(),
        cache_control: h.cache_control.clone(),
        expires: h.expires.as_deref().and_then(crate::convert::parse_http_date),
        website_redirect_location: h.website_redirect_location.clone(),
        storage_class: h.storage_class.clone().map(StorageClass::from),
        tag_count: (!version.tags.is_empty()).then(|| i32::try_from(version.tags.len()).unwrap_or(i32::MAX)),
        parts_count: input
            .part_number
            .and_then(|_| i32::try_from(version.part_sizes.len().max(1)).ok()),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_type: sums.checksum_type,
        ..Default::default()
    }))
}

pub async fn head(s: &ValleyS3, mut req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
    crate::sse::refuse_on_read(&req.headers)?;
    let checked = req.extensions.remove::<crate::auth::CheckedRead>();
    let input = req.input;
    let customer = crate::sse::request_customer_key(
        &req.extensions,
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    let found = lookup(s, &input.bucket, &input.key, input.version_id.as_deref(), checked).await?;
    let version = found.version();
    let sealed = crate::sse::check_customer(version, customer.as_ref())?;
    Conditions {
        if_match: input.if_match,
        if_none_match: input.if_none_match,
        if_modified_since: input.if_modified_since,
        if_unmodified_since: input.if_unmodified_since,
    }
    .check_read(&version.etag, version.hlc)?;
    let range = select_range(version, input.range.as_ref(), input.part_number)?;
    let len = range.as_ref().map_or(version.size, |r| r.end - r.start);
    let stored = reported_checksums(version, input.part_number, true);
    let sums = checksum_fields(&stored, input.checksum_mode.is_some());
    let h = &version.headers;
    let sse = sealed
        .as_ref()
        .map(|record| crate::sse::headers_of(record, customer.as_ref()))
        .unwrap_or_default();
    let tag_count = version.tags.len();
    let mut response = S3Response::new(HeadObjectOutput {
        server_side_encryption: sse.sse,
        ssekms_key_id: sse.kms_key_id,
        sse_customer_algorithm: sse.customer_algorithm,
        sse_customer_key_md5: sse.customer_key_md5,
        content_length: i64::try_from(len).ok(),
        content_range: range
            .as_ref()
            .map(|r| format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), version.size)),
        accept_ranges: Some("bytes".into()),
        last_modified: Some(timestamp_of_unix_ns(version.hlc)),
        e_tag: Some(etag(&version.etag)),
        version_id: version.version_id.clone(),
        metadata: crate::convert::metadata_map(&h.user_metadata),
        content_type: h.content_type.clone().or_else(|| Some("binary/octet-stream".into())),
        content_encoding: h.content_encoding.clone(),
        content_disposition: h.content_disposition.clone(),
        content_language: h.content_language.clone(),
        cache_control: h.cache_control.clone(),
        expires: h.expires.as_deref().and_then(crate::convert::parse_http_date),
        website_redirect_location: h.website_redirect_location.clone(),
        storage_class: h.storage_class.clone().map(StorageClass::from),
        parts_count: input
            .part_number
            .and_then(|_| i32::try_from(version.part_sizes.len().max(1)).ok()),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_type: sums.checksum_type,
        ..Default::default()
    });
    // As GET's `TagCount` (S3 answers it on HEAD too; s3s's HEAD output has no field for it).
    if tag_count > 0 {
        response
            .headers
            .insert("x-amz-tagging-count", http::HeaderValue::from(tag_count));
    }
    Ok(response)
}

pub async fn delete(s: &ValleyS3, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
    let input = req.input;
    check_key(&input.key)?;
    let outcome = s
        .catalog
        .delete_object(&input.bucket, &input.key, input.version_id.as_deref())
        .await
        .map_err(s3_err)?;
    Ok(S3Response::new(DeleteObjectOutput {
        delete_marker: outcome.delete_marker.then_some(true),
        version_id: outcome
            .version_id
            .or_else(|| outcome.delete_marker.then(|| "null".to_owned())),
        ..Default::default()
    }))
}

pub async fn delete_many(
    s: &ValleyS3,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let input = req.input;
    let objects = input.delete.objects;
    if objects.len() > DELETE_OBJECTS_KEYS_MAX {
        return Err(s3_error!(
            MalformedXML,
            "A DeleteObjects request names at most {DELETE_OBJECTS_KEYS_MAX} keys."
        ));
    }
    s.catalog.bucket(&input.bucket).await.map_err(s3_err)?;
    let quiet = input.delete.quiet.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for object in objects {
        let result = match check_key(&object.key) {
            Err(e) => Err(e),
            Ok(()) => s
                .catalog
                .delete_object(&input.bucket, &object.key, object.version_id.as_deref())
                .await
                .map_err(s3_err),
        };
        match result {
            Ok(outcome) => {
                if !quiet {
                    let marker_version = outcome
                        .delete_marker
                        .then(|| outcome.version_id.clone().unwrap_or_else(|| "null".into()));
                    deleted.push(DeletedObject {
                        key: Some(object.key),
                        version_id: object.version_id,
                        delete_marker: outcome.delete_marker.then_some(true),
                        delete_marker_version_id: marker_version,
                    });
                }
            }
            Err(e) => errors.push(Error {
                key: Some(object.key),
                version_id: object.version_id,
                code: Some(e.code().as_str().to_owned()),
                message: e.message().map(str::to_owned),
            }),
        }
    }
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: (!errors.is_empty()).then_some(errors),
        ..Default::default()
    }))
}

/// A partNumber past the object's last part: 400 InvalidPart, as s3-tests' AWS-passing
/// `test_multipart_get_part` and `test_non_multipart_get_part` expect.
fn invalid_part_number() -> s3s::S3Error {
    s3_error!(
        InvalidPart,
        "The requested partnumber is not satisfiable: the object has no such part."
    )
}

/// GetObjectAttributes: ETag, checksum, parts, storage class and size, as asked.
pub async fn attributes(
    s: &ValleyS3,
    req: S3Request<GetObjectAttributesInput>,
) -> S3Result<S3Response<GetObjectAttributesOutput>> {
    let input = req.input;
    let customer = crate::sse::request_customer_key(
        &req.extensions,
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    let found = lookup(s, &input.bucket, &input.key, input.version_id.as_deref(), None).await?;
    let version = found.version();
    // An SSE-C object's attributes are told only to whoever holds its key (as S3).
    crate::sse::check_customer(version, customer.as_ref())?;
    // Clients send the list as one comma-separated header; s3s may hand it over unsplit.
    let wants = |name: &str| {
        input
            .object_attributes
            .iter()
            .flat_map(|a| a.as_str().split(','))
            .any(|a| a.trim() == name)
    };
    let sums = checksum_fields(&version.checksums, true);
    let checksum = (wants(ObjectAttributes::CHECKSUM) && sums.checksum_type.is_some()).then_some(Checksum {
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_type: sums.checksum_type,
    });
    let object_parts = (wants(ObjectAttributes::OBJECT_PARTS) && !version.part_sizes.is_empty()).then(|| {
        let marker = usize::try_from(input.part_number_marker.unwrap_or(0).max(0)).unwrap_or(0);
        let max = usize::try_from(input.max_parts.unwrap_or(1000).max(0)).unwrap_or(1000);
        let parts: Vec<ObjectPart> = version
            .part_sizes
            .iter()
            .enumerate()
            .skip(marker)
            .take(max)
            .map(|(i, size)| {
                let sums = version.part_checksums.get(i).cloned().unwrap_or_default();
                ObjectPart {
                    part_number: i32::try_from(i + 1).ok(),
                    size: i64::try_from(*size).ok(),
                    checksum_crc32: sums.crc32,
                    checksum_crc32c: sums.crc32c,
                    checksum_sha1: sums.sha1,
                    checksum_sha256: sums.sha256,
                    checksum_crc64nvme: sums.crc64nvme,
                }
            })
            .collect();
        let last = marker + parts.len();
        GetObjectAttributesParts {
            total_parts_count: i32::try_from(version.part_sizes.len()).ok(),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: i32::try_from(last).ok(),
            max_parts: i32::try_from(max).ok(),
            is_truncated: Some(last < version.part_sizes.len()),
            parts: Some(parts),
        }
    });
    Ok(S3Response::new(GetObjectAttributesOutput {
        e_tag: wants(ObjectAttributes::ETAG).then(|| etag(&version.etag)),
        checksum,
        object_parts,
        storage_class: wants(ObjectAttributes::STORAGE_CLASS).then(|| {
            StorageClass::from(
                version
                    .headers
                    .storage_class
                    .clone()
                    .unwrap_or_else(|| "STANDARD".into()),
            )
        }),
        object_size: wants(ObjectAttributes::OBJECT_SIZE).then(|| i64::try_from(version.size).unwrap_or(i64::MAX)),
        last_modified: Some(timestamp_of_unix_ns(version.hlc)),
        version_id: version.version_id.clone(),
        ..Default::default()
    }))
}
