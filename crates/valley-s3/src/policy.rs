//! Bucket policies: Put/Get/DeleteBucketPolicy and GetBucketPolicyStatus. A policy is checked
//! (`valley_access::parse_bucket_policy`) before it is stored; a malformed one is
//! MalformedPolicy naming the problem. Stored as the tenant control record of its bucket, so
//! it applies at every hub.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use crate::convert::s3_err;
use crate::service::ValleyS3;

fn store_error(e: &valley_tenants::TenantError) -> s3s::S3Error {
    s3_error!(InternalError, "{e}")
}

pub async fn put(s: &ValleyS3, req: S3Request<PutBucketPolicyInput>) -> S3Result<S3Response<PutBucketPolicyOutput>> {
    let input = req.input;
    s.catalog.bucket(&input.bucket).await.map_err(s3_err)?;
    let parsed = valley_access::parse_bucket_policy(&input.policy, &input.bucket)
        .map_err(|e| s3_error!(MalformedPolicy, "{e}"))?;
    if s.directory
        .bucket_access(&input.bucket)
        .public_access_block
        .refuses_policy(&parsed)
    {
        return Err(s3_error!(
            AccessDenied,
            "Access Denied: the bucket's Public Access Block (BlockPublicPolicy) refuses public policies"
        ));
    }
    s.directory
        .set_bucket_policy(&input.bucket, Some(input.policy))
        .await
        .map_err(|e| store_error(&e))?;
    Ok(S3Response::new(PutBucketPolicyOutput {}))
}

pub async fn get(s: &ValleyS3, req: S3Request<GetBucketPolicyInput>) -> S3Result<S3Response<GetBucketPolicyOutput>> {
    let bucket = &req.input.bucket;
    s.catalog.bucket(bucket).await.map_err(s3_err)?;
    match s.directory.bucket_policy(bucket) {
        Some(policy) => Ok(S3Response::new(GetBucketPolicyOutput {
            policy: Some(policy.source().to_owned()),
        })),
        None => Err(s3_error!(NoSuchBucketPolicy, "The bucket policy does not exist")),
    }
}

pub async fn delete(
    s: &ValleyS3,
    req: S3Request<DeleteBucketPolicyInput>,
) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
    let bucket = &req.input.bucket;
    s.catalog.bucket(bucket).await.map_err(s3_err)?;
    if s.directory.bucket_policy(bucket).is_some() {
        s.directory
            .set_bucket_policy(bucket, None)
            .await
            .map_err(|e| store_error(&e))?;
    }
    Ok(S3Response::new(DeleteBucketPolicyOutput {}))
}

/// Whether the bucket is public: its policy grants everyone, or its ACL does.
pub async fn status(
    s: &ValleyS3,
    req: S3Request<GetBucketPolicyStatusInput>,
) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
    let bucket = &req.input.bucket;
    s.catalog.bucket(bucket).await.map_err(s3_err)?;
    let by_policy = s.directory.bucket_policy(bucket).is_some_and(|p| p.is_public());
    let by_acl = s.directory.bucket_access(bucket).acl.is_some_and(|a| a.is_public());
    Ok(S3Response::new(GetBucketPolicyStatusOutput {
        policy_status: Some(PolicyStatus {
            is_public: Some(by_policy || by_acl),
        }),
    }))
}
