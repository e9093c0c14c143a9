//! CopyObject, and the copy-source resolution UploadPartCopy shares with it.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use valley_store::record::{ObjectHeaders, ObjectVersion};

use crate::body;
use crate::conditions::Conditions;
use crate::convert::{check_key, check_metadata, etag, format_http_date, metadata_pairs, s3_err, timestamp_of_unix_ns};
use crate::service::ValleyS3;
use crate::tags;

/// The source object a copy names, after its conditions held.
pub struct Source {
    pub bucket: String,
    pub key: String,
    pub version: ObjectVersion,
}

/// The plaintext of `start..start+len` of a copy's source (opened, when sealed).
pub async fn read_source(
    s: &ValleyS3,
    source: &Source,
    customer: Option<&crate::sse::CustomerKey>,
    start: u64,
    len: u64,
) -> S3Result<valley_store::ByteStream> {
    let plan = crate::sse::plan_read(s, customer, &source.bucket, &source.key, &source.version, start, len)?;
    let (stored_start, stored_len) = plan.stored_range(start, len);
    let stored = s
        .catalog
        .read(&source.bucket, &source.key, &source.version, stored_start, stored_len)
        .await
        .map_err(s3_err)?;
    Ok(plan.plaintext(stored, start, len))
}

pub async fn resolve(s: &ValleyS3, source: &CopySource, conditions: &Conditions) -> S3Result<Source> {
    let CopySource::Bucket {
        bucket,
        key,
        version_id,
    } = source
    else {
        return Err(s3_error!(
            NotImplemented,
            "Copying from access points or outposts is not supported."
        ));
    };
    check_key(key)?;
    let version = s
        .catalog
        .object(bucket, key, version_id.as_deref())
        .await
        .map_err(s3_err)?;
    if version.delete_marker {
        return Err(s3_error!(
            InvalidRequest,
            "The source of a copy request may not specifically refer to a delete marker by version id."
        ));
    }
    conditions.check_copy_source(&version.etag, version.hlc)?;
    Ok(Source {
        bucket: bucket.to_string(),
        key: key.to_string(),
        version,
    })
}

/// The checksum algorithm to compute for a copy: the one asked for, else the source's.
pub fn checksum_algorithm_for(asked: Option<ChecksumAlgorithm>, source: &ObjectVersion) -> Option<ChecksumAlgorithm> {
    asked.or_else(|| {
        let c = &source.checksums;
        let name = if c.crc32.is_some() {
            ChecksumAlgorithm::CRC32
        } else if c.crc32c.is_some() {
            ChecksumAlgorithm::CRC32C
        } else if c.sha1.is_some() {
            ChecksumAlgorithm::SHA1
        } else if c.sha256.is_some() {
            ChecksumAlgorithm::SHA256
        } else if c.crc64nvme.is_some() {
            ChecksumAlgorithm::CRC64NVME
        } else {
            return None;
        };
        Some(ChecksumAlgorithm::from_static(name))
    })
}

pub async fn copy_object(s: &ValleyS3, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
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
    let source_customer = crate::sse::request_customer_key(
        &req.extensions,
        input.copy_source_sse_customer_algorithm.as_deref(),
        input.copy_source_sse_customer_key.as_deref(),
        input.copy_source_sse_customer_key_md5.as_deref(),
    )?;
    // The copy is sealed as the request asks, whatever the source's sealing (as S3).
    let encryption = crate::sse::requested(
        input.server_side_encryption.as_ref().map(|e| e.as_str()),
        input.ssekms_key_id.as_deref(),
    )?;
    let conditions = Conditions {
        if_match: input.copy_source_if_match.clone(),
        if_none_match: input.copy_source_if_none_match.clone(),
        if_modified_since: input.copy_source_if_modified_since.clone(),
        if_unmodified_since: input.copy_source_if_unmodified_since.clone(),
    };
    let source = resolve(s, &input.copy_source, &conditions).await?;
    let replace_metadata = input
        .metadata_directive
        .as_ref()
        .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
    let replace_tags = input
        .tagging_directive
        .as_ref()
        .is_some_and(|d| d.as_str() == TaggingDirective::REPLACE);
    let same_object = source.bucket == input.bucket && source.key == input.key;
    if same_object
        && !replace_metadata
        && !replace_tags
        && input.storage_class.is_none()
        && encryption.is_none()
        && customer.is_none()
        && source.version.version_id.is_none()
    {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    let mut headers = if replace_metadata {
        ObjectHeaders {
            content_type: input.content_type.clone(),
            content_encoding: crate::body::stored_content_encoding(input.content_encoding.clone()),
            content_disposition: input.content_disposition.clone(),
            content_language: input.content_language.clone(),
            cache_control: input.cache_control.clone(),
            expires: input.expires.as_ref().and_then(format_http_date),
            website_redirect_location: input.website_redirect_location.clone(),
            storage_class: source.version.headers.storage_class.clone(),
            user_metadata: metadata_pairs(input.metadata.clone()),
        }
    } else {
        source.version.headers.clone()
    };
    if let Some(class) = &input.storage_class {
        headers.storage_class = Some(class.as_str().to_owned());
    }
    check_metadata(&headers)?;
    let object_tags = if replace_tags {
        tags::parse_header(input.tagging.as_deref())?
    } else {
        source.version.tags.clone()
    };
    s.catalog.bucket(&input.bucket).await.map_err(s3_err)?;
    s.check_write(&input.bucket).await?;
    s.check_copy(&source, &input.bucket).await?;
    // A copy's ACL is the request's, not the source's (as S3).
    let writer = crate::bucket::principal_tenant(&req.extensions);
    let acl = crate::acl::for_write(s, &input.bucket, &writer, &req.headers, None)?;

    let algorithm = checksum_algorithm_for(input.checksum_algorithm.clone(), &source.version);
    let stream = read_source(s, &source, source_customer.as_ref(), 0, source.version.size).await?;
    let sealer = crate::sse::write_sealer(s, &input.bucket, &input.key, encryption, customer.as_ref())?;
    let ingested = body::ingest_stream(s.catalog.blobs().as_ref(), stream, algorithm, true, sealer).await?;
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
    let written = if crate::sync::wanted(s, &input.bucket).await {
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        crate::sync::write(s, &input.bucket, &input.key, version, true, |v| async move {
            s.catalog.put_stamped(&bucket, &key, v, None).await
        })
        .await?
    } else {
        crate::sync::Written {
            version: s
                .catalog
                .put_object(&input.bucket, &input.key, version, None)
                .await
                .map_err(s3_err)?,
            header: None,
        }
    };
    let mut response = S3Response::new(CopyObjectOutput::default());
    let stored = written.apply(&mut response);
    let sums = crate::convert::checksum_fields(&stored.checksums, true);
    let sse = crate::sse::response_headers(&stored, customer.as_ref());
    response.output = CopyObjectOutput {
        server_side_encryption: sse.sse,
        ssekms_key_id: sse.kms_key_id,
        sse_customer_algorithm: sse.customer_algorithm,
        sse_customer_key_md5: sse.customer_key_md5,
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(etag(&stored.etag)),
            last_modified: Some(timestamp_of_unix_ns(stored.hlc)),
            checksum_crc32: sums.crc32,
            checksum_crc32c: sums.crc32c,
            checksum_sha1: sums.sha1,
            checksum_sha256: sums.sha256,
            checksum_crc64nvme: sums.crc64nvme,
            checksum_type: sums.checksum_type,
        }),
        version_id: stored.version_id,
        copy_source_version_id: source.version.version_id,
        ..Default::default()
    };
    Ok(response)
}
