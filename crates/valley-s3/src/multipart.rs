//! Multipart uploads. Parts are blobs; completing an upload commits an object whose data is
//! the list of its parts' blobs, so no part is copied.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use valley_store::list::{ListItem, ListQuery};
use valley_store::record::{BlobRef, Checksums, ObjectData, ObjectHeaders, PartRecord, UploadRecord};
use valley_types::limits::{PART_NUMBER_MAX, PART_SIZE_BYTES_MAX};

use crate::body::{self, Declared};
use crate::conditions::{Conditions, write_precondition};
use crate::convert::{check_key, check_metadata, etag, format_http_date, metadata_pairs, s3_err, timestamp_of_unix_ns};
use crate::copy;
use crate::listing::max_keys;
use crate::part_checksum;
use crate::service::ValleyS3;
use crate::tags;

fn part_number_of(n: i32) -> S3Result<u32> {
    if !(1..=PART_NUMBER_MAX).contains(&n) {
        return Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and {PART_NUMBER_MAX}, inclusive"
        ));
    }
    Ok(u32::try_from(n).unwrap_or(1))
}

fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub async fn create(
    s: &ValleyS3,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
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
    let asked = crate::sse::requested(
        input.server_side_encryption.as_ref().map(|e| e.as_str()),
        input.ssekms_key_id.as_deref(),
    )?;
    // Decided once for the upload: every part is sealed under the same data key, each as a
    // segment of its own (its part number).
    let sealing = crate::sse::new_sealing(s, &input.bucket, &input.key, asked, customer.as_ref())?
        .map(|(record, _)| serde_json::to_string(&record).expect("a sealing record serializes"));
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
    // The completed object's ACL is decided now, as for a PUT, and kept with the upload.
    let writer = crate::bucket::principal_tenant(&req.extensions);
    let acl = crate::acl::for_write(
        s,
        &input.bucket,
        &writer,
        &req.headers,
        input.acl.as_ref().map(|a| a.as_str()),
    )?;
    let upload = UploadRecord {
        upload_id: hex::encode(rand::random::<[u8; 16]>()),
        created_unix_ns: now_unix_ns(),
        headers,
        tags: tags::parse_header(input.tagging.as_deref())?,
        checksum_algorithm: part_checksum::stored_choice(
            input.checksum_algorithm.as_ref(),
            input.checksum_type.as_ref(),
        )?,
        initiator: Some(writer.clone()),
        acl,
        sealing,
    };
    let sse = upload_headers(&upload, customer.as_ref());
    let upload_id = upload.upload_id.clone();
    let checksum_type = part_checksum::checksum_type(&upload);
    s.catalog.bucket(&input.bucket).await.map_err(s3_err)?;
    s.check_write(&input.bucket).await?;
    s.catalog
        .create_upload(&input.bucket, &input.key, upload)
        .await
        .map_err(s3_err)?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload_id),
        checksum_type,
        checksum_algorithm: input.checksum_algorithm,
        server_side_encryption: sse.sse,
        ssekms_key_id: sse.kms_key_id,
        sse_customer_algorithm: sse.customer_algorithm,
        sse_customer_key_md5: sse.customer_key_md5,
        ..Default::default()
    }))
}

/// The encryption headers of the answers about a (sealed) upload.
fn upload_headers(upload: &UploadRecord, customer: Option<&crate::sse::CustomerKey>) -> crate::sse::ResponseHeaders {
    upload
        .sealing
        .as_deref()
        .and_then(|r| serde_json::from_str::<crate::sse::SealRecord>(r).ok())
        .map(|r| crate::sse::headers_of(&r, customer))
        .unwrap_or_default()
}

fn not_customer_sealed() -> s3s::S3Error {
    s3_error!(
        InvalidRequest,
        "The upload was not started with Server Side Encryption with a customer provided key."
    )
}

/// The sealer of part `number` of `upload`, when the upload is sealed (an SSE-C upload's
/// parts carry its key); a customer key given to an unsealed upload is refused.
fn part_sealer(
    s: &ValleyS3,
    upload: &UploadRecord,
    customer: Option<&crate::sse::CustomerKey>,
    bucket: &str,
    key: &str,
    number: u32,
) -> S3Result<Option<crate::sse::Sealer>> {
    match &upload.sealing {
        Some(record) => crate::sse::part_sealer(s, customer, bucket, key, record, number).map(Some),
        None if customer.is_some() => Err(not_customer_sealed()),
        None => Ok(None),
    }
}

pub async fn upload_part(s: &ValleyS3, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
    let trailers = req.trailing_headers;
    let input = req.input;
    let number = part_number_of(input.part_number)?;
    let upload = s
        .catalog
        .upload(&input.bucket, &input.key, &input.upload_id)
        .await
        .map_err(s3_err)?;
    s.check_write(&input.bucket).await?;
    let customer = crate::sse::request_customer_key(
        &req.extensions,
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    let sealer = part_sealer(s, &upload, customer.as_ref(), &input.bucket, &input.key, number)?;
    let mut declared = Declared {
        algorithm: input
            .checksum_algorithm
            .clone()
            .or_else(|| part_checksum::algorithm(&upload)),
        crc32: input.checksum_crc32.clone(),
        crc32c: input.checksum_crc32c.clone(),
        sha1: input.checksum_sha1.clone(),
        sha256: input.checksum_sha256.clone(),
        crc64nvme: input.checksum_crc64nvme.clone(),
        content_md5: input.content_md5.clone(),
    };
    let ingested = body::ingest(
        s.catalog.blobs().as_ref(),
        input.body,
        &mut declared,
        trailers,
        false,
        PART_SIZE_BYTES_MAX,
        sealer,
    )
    .await?;
    let ObjectData::Blobs(mut blobs) = ingested.data else {
        return Err(crate::convert::internal("a part was kept inline"));
    };
    let blob = blobs.pop().unwrap_or(BlobRef {
        id: valley_store::BlobId::random(),
        size: 0,
    });
    // A sealed part's ETag is the MD5 of its stored bytes (as S3's for SSE-KMS and SSE-C is no
    // MD5 of the plaintext): the object's ETag is then what its stored bytes hash to.
    let part_etag = ingested
        .sealing
        .as_ref()
        .map_or_else(|| ingested.md5_hex.clone(), |s| s.stored_digest.clone());
    let part = PartRecord {
        etag: part_etag.clone(),
        size: ingested.size,
        blob,
        last_modified_unix_ns: now_unix_ns(),
        checksums: ingested.checksums.clone(),
    };
    s.catalog
        .put_part(&input.bucket, &input.key, &input.upload_id, number, part)
        .await
        .map_err(s3_err)?;
    let sums = crate::convert::checksum_fields(&ingested.checksums, true);
    let sse = upload_headers(&upload, customer.as_ref());
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(etag(&part_etag)),
        server_side_encryption: sse.sse,
        ssekms_key_id: sse.kms_key_id,
        sse_customer_algorithm: sse.customer_algorithm,
        sse_customer_key_md5: sse.customer_key_md5,
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_crc64nvme: sums.crc64nvme,
        ..Default::default()
    }))
}

/// Parses `bytes=first-last` (both required, inclusive) against the source's size.
fn copy_range(range: Option<&str>, size: u64) -> S3Result<(u64, u64)> {
    let Some(range) = range else { return Ok((0, size)) };
    let bad = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        )
    };
    let spec = range.strip_prefix("bytes=").ok_or_else(bad)?;
    let (first, last) = spec.split_once('-').ok_or_else(bad)?;
    let first: u64 = first.trim().parse().map_err(|_| bad())?;
    let last: u64 = last.trim().parse().map_err(|_| bad())?;
    if first > last || last >= size {
        return Err(s3_error!(InvalidRange, "The requested range is not satisfiable"));
    }
    Ok((first, last - first + 1))
}

pub async fn upload_part_copy(
    s: &ValleyS3,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let input = req.input;
    let number = part_number_of(input.part_number)?;
    let upload = s
        .catalog
        .upload(&input.bucket, &input.key, &input.upload_id)
        .await
        .map_err(s3_err)?;
    s.check_write(&input.bucket).await?;
    let conditions = Conditions {
        if_match: input.copy_source_if_match.clone(),
        if_none_match: input.copy_source_if_none_match.clone(),
        if_modified_since: input.copy_source_if_modified_since.clone(),
        if_unmodified_since: input.copy_source_if_unmodified_since.clone(),
    };
    let source = copy::resolve(s, &input.copy_source, &conditions).await?;
    s.check_copy(&source, &input.bucket).await?;
    let (offset, len) = copy_range(input.copy_source_range.as_deref(), source.version.size)?;
    if len > PART_SIZE_BYTES_MAX {
        return Err(s3_error!(
            EntityTooLarge,
            "A part may be at most {PART_SIZE_BYTES_MAX} bytes."
        ));
    }
    let source_customer = crate::sse::request_customer_key(
        &req.extensions,
        input.copy_source_sse_customer_algorithm.as_deref(),
        input.copy_source_sse_customer_key.as_deref(),
        input.copy_source_sse_customer_key_md5.as_deref(),
    )?;
    let customer = crate::sse::request_customer_key(
        &req.extensions,
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    let sealer = part_sealer(s, &upload, customer.as_ref(), &input.bucket, &input.key, number)?;
    let stream = copy::read_source(s, &source, source_customer.as_ref(), offset, len).await?;
    let algorithm = part_checksum::algorithm(&upload);
    let ingested = body::ingest_stream(s.catalog.blobs().as_ref(), stream, algorithm, false, sealer).await?;
    let ObjectData::Blobs(mut blobs) = ingested.data else {
        return Err(crate::convert::internal("a part was kept inline"));
    };
    let blob = blobs.pop().unwrap_or(BlobRef {
        id: valley_store::BlobId::random(),
        size: 0,
    });
    let last_modified = now_unix_ns();
    let part_etag = ingested
        .sealing
        .as_ref()
        .map_or_else(|| ingested.md5_hex.clone(), |s| s.stored_digest.clone());
    let part = PartRecord {
        etag: part_etag.clone(),
        size: ingested.size,
        blob,
        last_modified_unix_ns: last_modified,
        checksums: ingested.checksums,
    };
    s.catalog
        .put_part(&input.bucket, &input.key, &input.upload_id, number, part)
        .await
        .map_err(s3_err)?;
    let sse = upload_headers(&upload, customer.as_ref());
    Ok(S3Response::new(UploadPartCopyOutput {
        server_side_encryption: sse.sse,
        ssekms_key_id: sse.kms_key_id,
        sse_customer_algorithm: sse.customer_algorithm,
        sse_customer_key_md5: sse.customer_key_md5,
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(etag(&part_etag)),
            last_modified: Some(timestamp_of_unix_ns(last_modified)),
            ..Default::default()
        }),
        copy_source_version_id: source.version.version_id,
        ..Default::default()
    }))
}

pub async fn list_parts(s: &ValleyS3, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
    let input = req.input;
    let max = max_keys(input.max_parts)?;
    let marker = u32::try_from(input.part_number_marker.unwrap_or(0).max(0)).unwrap_or(0);
    let upload = s
        .catalog
        .upload(&input.bucket, &input.key, &input.upload_id)
        .await
        .map_err(s3_err)?;
    let (parts, truncated) = s
        .catalog
        .list_parts(&input.bucket, &input.key, &input.upload_id, marker, max)
        .await
        .map_err(s3_err)?;
    let next_marker = parts.last().map(|(n, _)| i32::try_from(*n).unwrap_or(0));
    let (owner, initiator) = upload_parties(s, &input.bucket, &upload);
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: next_marker,
        max_parts: Some(i32::try_from(max).unwrap_or(i32::MAX)),
        is_truncated: Some(truncated),
        initiator: Some(Initiator {
            id: initiator.id,
            display_name: initiator.display_name,
        }),
        owner: Some(owner),
        storage_class: Some(StorageClass::from(
            upload
                .headers
                .storage_class
                .clone()
                .unwrap_or_else(|| "STANDARD".into()),
        )),
        checksum_algorithm: part_checksum::algorithm(&upload),
        parts: Some(
            parts
                .into_iter()
                .map(|(n, p)| Part {
                    part_number: i32::try_from(n).ok(),
                    e_tag: Some(etag(&p.etag)),
                    size: i64::try_from(p.size).ok(),
                    last_modified: Some(timestamp_of_unix_ns(p.last_modified_unix_ns)),
                    checksum_crc32: p.checksums.crc32,
                    checksum_crc32c: p.checksums.crc32c,
                    checksum_sha1: p.checksums.sha1,
                    checksum_sha256: p.checksums.sha256,
                    checksum_crc64nvme: p.checksums.crc64nvme,
                })
                .collect(),
        ),
        ..Default::default()
    }))
}

pub async fn complete(
    s: &ValleyS3,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let input = req.input;
    let chosen = input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let number = part_number_of(p.part_number.unwrap_or(0))?;
            let tag = p.e_tag.map(|e| e.value().to_owned()).unwrap_or_default();
            Ok((number, tag))
        })
        .collect::<S3Result<Vec<_>>>()?;
    if chosen.is_empty() {
        return Err(s3_error!(MalformedXML, "You must specify at least one part."));
    }
    // An SSE-C upload is completed with its key, as its parts were uploaded (as S3).
    let customer = crate::sse::request_customer_key(
        &req.extensions,
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    if let Ok(upload) = s.catalog.upload(&input.bucket, &input.key, &input.upload_id).await {
        match &upload.sealing {
            Some(record) => {
                crate::sse::check_upload_key(record, customer.as_ref())?;
            }
            None if customer.is_some() => return Err(not_customer_sealed()),
            None => {}
        }
    }
    let checksums = match upload_checksum(s, &input.bucket, &input.key, &input.upload_id, &chosen).await {
        Err(e) if *e.code() == s3s::S3ErrorCode::NoSuchUpload => {
            return completed_before(s, &input.bucket, &input.key, &chosen)
                .await
                .ok_or(e)
                .map(S3Response::new);
        }
        other => other?,
    };
    let declared = [
        (&input.checksum_crc32, &checksums.crc32),
        (&input.checksum_crc32c, &checksums.crc32c),
        (&input.checksum_sha1, &checksums.sha1),
        (&input.checksum_sha256, &checksums.sha256),
        (&input.checksum_crc64nvme, &checksums.crc64nvme),
    ];
    for (sent, computed) in declared {
        let base = |v: &str| v.split('-').next().unwrap_or_default().to_owned();
        if let Some(sent) = sent
            && computed.as_deref().map(base) != Some(base(sent))
        {
            return Err(s3_error!(
                BadDigest,
                "The checksum you specified did not match the parts' checksums."
            ));
        }
    }
    let precondition = write_precondition(input.if_match, input.if_none_match);
    if crate::sync::wanted(s, &input.bucket).await {
        let version = s
            .catalog
            .assemble_upload(&input.bucket, &input.key, &input.upload_id, chosen.clone(), checksums)
            .await
            .map_err(s3_err)?;
        let (bucket, key, upload_id) = (input.bucket.clone(), input.key.clone(), input.upload_id.clone());
        // The parts stay with the upload if the write fails: the client may complete it again.
        let written = crate::sync::write(s, &input.bucket, &input.key, version, false, |v| async move {
            s.catalog
                .complete_upload_stamped(&bucket, &key, &upload_id, chosen, precondition, v)
                .await
        })
        .await?;
        let header = written.header.clone();
        let sse = crate::sse::response_headers(&written.version, customer.as_ref());
        let mut response = S3Response::new(complete_output(&input.bucket, &input.key, written.version));
        if let Some(h) = header {
            response.headers.insert(crate::sync::REPLICATION_HEADER, h);
        }
        add_customer_headers(&mut response.headers, &sse);
        return Ok(response);
    }
    let stored = s
        .catalog
        .complete_upload_with_checksums(
            &input.bucket,
            &input.key,
            &input.upload_id,
            chosen,
            precondition,
            checksums,
        )
        .await
        .map_err(s3_err)?;
    let sse = crate::sse::response_headers(&stored, customer.as_ref());
    let mut response = S3Response::new(complete_output(&input.bucket, &input.key, stored));
    add_customer_headers(&mut response.headers, &sse);
    Ok(response)
}

/// The SSE-C headers of a completion, which s3s's output has no fields for.
fn add_customer_headers(headers: &mut http::HeaderMap, sse: &crate::sse::ResponseHeaders) {
    let pairs = [
        (
            "x-amz-server-side-encryption-customer-algorithm",
            &sse.customer_algorithm,
        ),
        ("x-amz-server-side-encryption-customer-key-md5", &sse.customer_key_md5),
    ];
    for (name, value) in pairs {
        if let Some(v) = value.as_deref().and_then(|v| http::HeaderValue::from_str(v).ok()) {
            headers.insert(name, v);
        }
    }
}

pub async fn abort(
    s: &ValleyS3,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = req.input;
    s.catalog
        .abort_upload(&input.bucket, &input.key, &input.upload_id)
        .await
        .map_err(s3_err)?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub async fn list_uploads(
    s: &ValleyS3,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let input = req.input;
    let max = max_keys(input.max_uploads)?;
    let query = ListQuery {
        prefix: input.prefix.clone().unwrap_or_default(),
        delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
        marker: input.key_marker.clone().filter(|m| !m.is_empty()),
        max_keys: max.max(1),
    };
    let page = if max == 0 {
        s.catalog.bucket(&input.bucket).await.map_err(s3_err)?;
        valley_store::list::ListPage {
            items: Vec::new(),
            truncated: false,
        }
    } else {
        s.catalog
            .list_uploads(
                &input.bucket,
                query,
                input.upload_id_marker.clone().filter(|m| !m.is_empty()),
            )
            .await
            .map_err(s3_err)?
    };
    let mut uploads = Vec::new();
    let mut prefixes = Vec::new();
    let mut last: Option<(String, Option<String>)> = None;
    for item in &page.items {
        match item {
            ListItem::Entry(key, u) => {
                last = Some((key.clone(), Some(u.upload_id.clone())));
                let (owner, initiator) = upload_parties(s, &input.bucket, u);
                uploads.push(MultipartUpload {
                    key: Some(key.clone()),
                    upload_id: Some(u.upload_id.clone()),
                    initiated: Some(timestamp_of_unix_ns(u.created_unix_ns)),
                    owner: Some(owner),
                    initiator: Some(Initiator {
                        id: initiator.id,
                        display_name: initiator.display_name,
                    }),
                    storage_class: Some(StorageClass::from(
                        u.headers.storage_class.clone().unwrap_or_else(|| "STANDARD".into()),
                    )),
                    checksum_algorithm: part_checksum::algorithm(u),
                    ..Default::default()
                });
            }
            ListItem::Prefix(p) => {
                last = Some((p.clone(), None));
                prefixes.push(CommonPrefix {
                    prefix: Some(p.clone()),
                });
            }
        }
    }
    let (next_key, next_upload) = match (page.truncated, last) {
        (true, Some((k, u))) => (Some(k), u),
        _ => (None, None),
    };
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        delimiter: input.delimiter,
        key_marker: input.key_marker,
        upload_id_marker: input.upload_id_marker,
        max_uploads: Some(i32::try_from(max).unwrap_or(i32::MAX)),
        is_truncated: Some(page.truncated),
        next_key_marker: next_key,
        next_upload_id_marker: next_upload,
        uploads: Some(uploads),
        common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}

/// A retried CompleteMultipartUpload (its first answer lost): the upload is gone, but if the
/// key's current version is exactly the object those parts make (the multipart ETag is derived
/// from the part ETags the request lists), answer as the first completion did.
async fn completed_before(
    s: &ValleyS3,
    bucket: &str,
    key: &str,
    chosen: &[(u32, String)],
) -> Option<CompleteMultipartUploadOutput> {
    use md5::Digest as _;
    let mut md5_of_md5s = md5::Md5::new();
    for (_, tag) in chosen {
        md5_of_md5s.update(hex::decode(tag.trim_matches('"')).ok()?);
    }
    let expected = format!("{}-{}", hex::encode(md5_of_md5s.finalize()), chosen.len());
    let current = s.catalog.object(bucket, key, None).await.ok()?;
    (current.etag == expected).then(|| complete_output(bucket, key, current))
}

/// The answer to a CompleteMultipartUpload that stored (or, on a retry, had stored) `version`.
fn complete_output(
    bucket: &str,
    key: &str,
    version: valley_store::record::ObjectVersion,
) -> CompleteMultipartUploadOutput {
    let sums = crate::convert::checksum_fields(&version.checksums, true);
    let sse = crate::sse::response_headers(&version, None);
    CompleteMultipartUploadOutput {
        server_side_encryption: sse.sse,
        ssekms_key_id: sse.kms_key_id,
        location: Some(format!("/{bucket}/{key}")),
        bucket: Some(bucket.to_owned()),
        key: Some(key.to_owned()),
        e_tag: Some(etag(&version.etag)),
        version_id: version.version_id,
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_crc64nvme: sums.crc64nvme,
        checksum_type: sums.checksum_type,
        ..Default::default()
    }
}

/// The checksum a multipart object gets on completion from its chosen parts' checksums (see
/// [`part_checksum`]); none when the upload named no algorithm or a part lacks its checksum.
async fn upload_checksum(
    s: &ValleyS3,
    bucket: &str,
    key: &str,
    upload_id: &str,
    chosen: &[(u32, String)],
) -> S3Result<Checksums> {
    let upload = s.catalog.upload(bucket, key, upload_id).await.map_err(s3_err)?;
    if upload.checksum_algorithm.is_none() {
        return Ok(Checksums::default());
    }
    let (parts, _) = s
        .catalog
        .list_parts(bucket, key, upload_id, 0, PART_NUMBER_MAX as usize)
        .await
        .map_err(s3_err)?;
    let by_number: std::collections::HashMap<u32, &PartRecord> = parts.iter().map(|(n, p)| (*n, p)).collect();
    let Some(in_order) = chosen
        .iter()
        .map(|(number, _)| by_number.get(number).copied())
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(Checksums::default());
    };
    Ok(part_checksum::of_parts(&upload, &in_order))
}

/// Who will own an upload's object (its ACL's owner, or the bucket's) and who started it.
fn upload_parties(s: &ValleyS3, bucket: &str, upload: &UploadRecord) -> (Owner, Owner) {
    let bucket_owner = s.directory.owner_of(bucket);
    let owner = crate::acl::of_version(upload.acl.as_deref(), &bucket_owner).owner;
    let initiator = upload.initiator.clone().unwrap_or(bucket_owner);
    (
        crate::service::tenant_owner(&owner),
        crate::service::tenant_owner(&initiator),
    )
}
