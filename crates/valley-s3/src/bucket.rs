//! Bucket operations: create, head, list, delete, location, versioning, tagging.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use valley_store::record::Versioning;

use crate::convert::{s3_err, timestamp_of_unix_ns};
use crate::service::ValleyS3;
use crate::tags;

/// The tenant a request acts for, as the access check found it (none: the hub runs without
/// access checks, as in unit tests: the default tenant).
pub(crate) fn principal_tenant(extensions: &http::Extensions) -> String {
    extensions
        .get::<std::sync::Arc<valley_tenants::Principal>>()
        .map_or_else(|| valley_tenants::DEFAULT_TENANT.to_owned(), |p| p.tenant.clone())
}

pub async fn create(s: &ValleyS3, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
    let input = req.input;
    let location = input
        .create_bucket_configuration
        .and_then(|c| c.location_constraint)
        .map(|l| l.as_str().to_owned())
        .filter(|l| !l.is_empty());
    check_bucket_name(&input.bucket)?;
    if input.object_lock_enabled_for_bucket == Some(true) {
        return Err(s3_error!(NotImplemented, "Object lock is not supported yet."));
    }
    let tenant = principal_tenant(&req.extensions);
    // The bucket, its owner and its placement policy are kept together or not at all.
    let mut changes = vec![s.directory.bucket_owner_change(&input.bucket, &tenant, false)];
    let ownership = match req
        .headers
        .get("x-amz-object-ownership")
        .map(|v| v.to_str().unwrap_or(""))
    {
        None => None,
        Some("BucketOwnerEnforced") => Some(valley_access::ObjectOwnership::BucketOwnerEnforced),
        Some("BucketOwnerPreferred") => Some(valley_access::ObjectOwnership::BucketOwnerPreferred),
        Some("ObjectWriter") => Some(valley_access::ObjectOwnership::ObjectWriter),
        Some(other) => return Err(s3_error!(InvalidArgument, "unknown x-amz-object-ownership {other:?}")),
    };
    if let Some(o) = ownership {
        let value = serde_json::to_string(&o).unwrap_or_default();
        changes.push(s.directory.bucket_setting_change(
            &input.bucket,
            valley_tenants::BucketSetting::Ownership,
            Some(value),
        ));
    }
    let requested_acl = crate::acl::requested(&req.headers, &tenant)?;
    if let Some(acl) = requested_acl.clone() {
        if ownership
            .unwrap_or(valley_tenants::DEFAULT_OWNERSHIP)
            .refuses_acl(&acl, &tenant)
        {
            return Err(s3_error!(
                InvalidBucketAclWithObjectOwnership,
                "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting"
            ));
        }
        changes.push(s.directory.bucket_setting_change(
            &input.bucket,
            valley_tenants::BucketSetting::Acl,
            Some(crate::acl::encode(&acl)),
        ));
    }
    let owner_writes = s.directory.writes(changes.clone());
    let network = s.bucket_created_writes(&input.bucket)?;
    let network_write = network.write;
    let records = move |txn: &mut dyn valley_store::WriteTxn| {
        owner_writes(txn)?;
        network_write(txn)
    };
    match s.catalog.create_bucket_and(&input.bucket, location, records).await {
        Ok(()) => {
            s.directory.committed(&changes);
            (network.committed)().await;
        }
        // Held here with no owner on record: a bucket from before tenants, the default's.
        Err(valley_store::StoreError::BucketExists(_))
            if s.directory.holder_of(&input.bucket).is_none() && tenant != valley_tenants::DEFAULT_TENANT =>
        {
            return Err(s3_error!(
                BucketAlreadyExists,
                "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again."
            ));
        }
        // Re-creating one's bucket with another ACL than it has would change it: refused, as
        // S3 does (the same ACL, or none on a private bucket, is the us-east-1 no-op below).
        Err(valley_store::StoreError::BucketExists(_))
            if s.directory.holder_of(&input.bucket).as_deref() == Some(tenant.as_str())
                && requested_acl.as_ref().unwrap_or(&valley_access::Acl::private(&tenant))
                    != &s
                        .directory
                        .bucket_access(&input.bucket)
                        .acl
                        .map_or_else(|| valley_access::Acl::private(&tenant), |a| (*a).clone()) =>
        {
            return Err(s3_error!(
                BucketAlreadyExists,
                "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again."
            ));
        }
        // In us-east-1, S3 answers 200 to re-creating a bucket you own; elsewhere 409.
        Err(valley_store::StoreError::BucketExists(_)) if s.region == "us-east-1" => {}
        Err(e) => return Err(s3_err(e)),
    }
    Ok(S3Response::new(CreateBucketOutput {
        location: Some(format!("/{}", input.bucket)),
    }))
}

pub async fn head(s: &ValleyS3, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
    let record = s.catalog.bucket(&req.input.bucket).await.map_err(s3_err)?;
    Ok(S3Response::new(HeadBucketOutput {
        bucket_region: Some(record.location.unwrap_or_else(|| s.region.clone())),
        ..Default::default()
    }))
}

/// Most buckets one ListBuckets page returns (S3's own limit for `max-buckets`).
const LIST_BUCKETS_MAX: usize = 10_000;

pub async fn list(s: &ValleyS3, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
    let input = req.input;
    let max = match input.max_buckets {
        None => LIST_BUCKETS_MAX,
        Some(n) if (1..=10_000).contains(&n) => usize::try_from(n).unwrap_or(LIST_BUCKETS_MAX),
        Some(_) => return Err(s3_error!(InvalidArgument, "max-buckets must be between 1 and 10000.")),
    };
    // The continuation token is the last bucket name of the previous page, hex-encoded.
    let after = match input.continuation_token.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(
            hex::decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| s3_error!(InvalidArgument, "The continuation token provided is incorrect"))?,
        ),
    };
    let prefix = input.prefix.clone().unwrap_or_default();
    let tenant = principal_tenant(&req.extensions);
    let mut matching = s
        .catalog
        .list_buckets()
        .await
        .map_err(s3_err)?
        .into_iter()
        .filter(|(name, _)| {
            name.starts_with(&prefix) && after.as_ref().is_none_or(|a| name > a) && s.directory.owner_of(name) == tenant
        });
    let page: Vec<_> = matching.by_ref().take(max).collect();
    let more = matching.next().is_some();
    let next = more.then(|| page.last().map(|(name, _)| hex::encode(name))).flatten();
    let buckets = page
        .into_iter()
        .map(|(name, record)| Bucket {
            name: Some(name),
            creation_date: Some(timestamp_of_unix_ns(record.created_unix_ns)),
            bucket_region: Some(record.location.unwrap_or_else(|| s.region.clone())),
        })
        .collect();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(crate::service::tenant_owner(&tenant)),
        continuation_token: next,
        prefix: input.prefix,
    }))
}

pub async fn delete(s: &ValleyS3, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
    let bucket = &req.input.bucket;
    // The name is freed and the bucket's policy and settings go with it, in its transaction.
    let changes = s.directory.bucket_deleted_changes(bucket);
    let records = s.directory.writes(changes.clone());
    s.catalog.delete_bucket_and(bucket, records).await.map_err(s3_err)?;
    s.directory.committed(&changes);
    Ok(S3Response::new(DeleteBucketOutput {}))
}

pub async fn location(
    s: &ValleyS3,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    let record = s.catalog.bucket(&req.input.bucket).await.map_err(s3_err)?;
    Ok(S3Response::new(GetBucketLocationOutput {
        // S3 reports us-east-1 as an empty constraint.
        location_constraint: record.location.map(BucketLocationConstraint::from),
    }))
}

pub async fn get_versioning(
    s: &ValleyS3,
    req: S3Request<GetBucketVersioningInput>,
) -> S3Result<S3Response<GetBucketVersioningOutput>> {
    let record = s.catalog.bucket(&req.input.bucket).await.map_err(s3_err)?;
    let status = match record.versioning {
        Versioning::Unversioned => None,
        Versioning::Enabled => Some(BucketVersioningStatus::from_static(BucketVersioningStatus::ENABLED)),
        Versioning::Suspended => Some(BucketVersioningStatus::from_static(BucketVersioningStatus::SUSPENDED)),
    };
    Ok(S3Response::new(GetBucketVersioningOutput {
        status,
        ..Default::default()
    }))
}

pub async fn put_versioning(
    s: &ValleyS3,
    req: S3Request<PutBucketVersioningInput>,
) -> S3Result<S3Response<PutBucketVersioningOutput>> {
    let input = req.input;
    let versioning = match input
        .versioning_configuration
        .status
        .as_ref()
        .map(BucketVersioningStatus::as_str)
    {
        Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
        Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
        _ => {
            return Err(s3_error!(
                MalformedXML,
                "The versioning Status must be Enabled or Suspended."
            ));
        }
    };
    // The bucket's record and the network's are set together or not at all.
    let network = s.versioning_writes(&input.bucket, versioning);
    s.catalog
        .update_bucket_and(
            &input.bucket,
            move |record| {
                record.versioning = versioning;
            },
            network.write,
        )
        .await
        .map_err(s3_err)?;
    (network.committed)().await;
    Ok(S3Response::new(PutBucketVersioningOutput {}))
}

pub async fn get_tagging(
    s: &ValleyS3,
    req: S3Request<GetBucketTaggingInput>,
) -> S3Result<S3Response<GetBucketTaggingOutput>> {
    let record = s.catalog.bucket(&req.input.bucket).await.map_err(s3_err)?;
    if record.tags.is_empty() {
        return Err(s3_error!(NoSuchTagSet, "The TagSet does not exist"));
    }
    Ok(S3Response::new(GetBucketTaggingOutput {
        tag_set: tags::to_tag_set(&record.tags),
    }))
}

pub async fn put_tagging(
    s: &ValleyS3,
    req: S3Request<PutBucketTaggingInput>,
) -> S3Result<S3Response<PutBucketTaggingOutput>> {
    let input = req.input;
    let pairs = tags::from_tagging(input.tagging, valley_types::limits::BUCKET_TAGS_MAX)?;
    s.catalog
        .update_bucket(&input.bucket, move |record| record.tags = pairs)
        .await
        .map_err(s3_err)?;
    Ok(S3Response::new(PutBucketTaggingOutput {}))
}

pub async fn delete_tagging(
    s: &ValleyS3,
    req: S3Request<DeleteBucketTaggingInput>,
) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
    s.catalog
        .update_bucket(&req.input.bucket, |record| record.tags.clear())
        .await
        .map_err(s3_err)?;
    Ok(S3Response::new(DeleteBucketTaggingOutput {}))
}

/// What s3s's name check lets through but S3 refuses: a dot next to a dash.
fn check_bucket_name(name: &str) -> S3Result<()> {
    if name.contains(".-") || name.contains("-.") || name.contains("..") {
        return Err(s3_error!(InvalidBucketName, "The specified bucket is not valid."));
    }
    Ok(())
}
