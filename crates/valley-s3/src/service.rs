//! [`ValleyS3`]: the S3 trait, each operation delegated to its module.

use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};
use valley_store::Catalog;

use crate::convert::s3_err;
use crate::{bucket, copy, listing, multipart, object, tags};

/// The S3 API of one hub, over its catalog.
pub struct ValleyS3 {
    pub(crate) catalog: Catalog,
    /// The region name this hub answers to (clients may also sign for `us-east-1`).
    pub(crate) region: String,
    pub(crate) directory: std::sync::Arc<valley_tenants::Directory>,
    pub(crate) gate: Option<std::sync::Arc<dyn crate::NetworkGate>>,
    /// Server-side encryption, when a key service is configured.
    pub(crate) sse: Option<std::sync::Arc<crate::sse::Encryption>>,
}

impl ValleyS3 {
    #[must_use]
    pub fn new(
        catalog: Catalog,
        region: impl Into<String>,
        directory: std::sync::Arc<valley_tenants::Directory>,
    ) -> Self {
        Self {
            catalog,
            region: region.into(),
            directory,
            gate: None,
            sse: None,
        }
    }

    /// Seals objects written with server-side encryption under keys held by `encryption`'s
    /// key service.
    #[must_use]
    pub fn with_encryption(mut self, encryption: std::sync::Arc<crate::sse::Encryption>) -> Self {
        self.sse = Some(encryption);
        self
    }

    /// Puts this hub's S3 API under the network's residency rules.
    #[must_use]
    pub fn with_gate(mut self, gate: std::sync::Arc<dyn crate::NetworkGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Refuses, as AccessDenied naming the rule, a write this hub may not hold.
    pub(crate) async fn check_write(&self, bucket: &str) -> s3s::S3Result<()> {
        match &self.gate {
            Some(gate) => gate
                .check_write(bucket)
                .await
                .map_err(|why| s3s::s3_error!(AccessDenied, "{why}")),
            None => Ok(()),
        }
    }

    /// Refuses, as AccessDenied naming the rule, a server-side copy that would take the
    /// source's data where its policy forbids (decided before a byte is read).
    pub(crate) async fn check_copy(&self, source: &crate::copy::Source, dest_bucket: &str) -> s3s::S3Result<()> {
        match &self.gate {
            Some(gate) => gate
                .check_copy(&source.bucket, &source.key, dest_bucket)
                .await
                .map_err(|why| s3s::s3_error!(AccessDenied, "{why}")),
            None => Ok(()),
        }
    }

    pub(crate) fn bucket_created_writes(&self, bucket: &str) -> s3s::S3Result<crate::NetworkWrites> {
        match &self.gate {
            Some(gate) => gate
                .bucket_created_writes(bucket)
                .map_err(|why| s3s::s3_error!(InternalError, "{why}")),
            None => Ok(crate::NetworkWrites::none()),
        }
    }

    pub(crate) fn versioning_writes(
        &self,
        bucket: &str,
        versioning: valley_store::record::Versioning,
    ) -> crate::NetworkWrites {
        match &self.gate {
            Some(gate) => gate.versioning_writes(bucket, versioning),
            None => crate::NetworkWrites::none(),
        }
    }

    /// The owner S3 shows for `bucket` and its objects: the tenant that owns the bucket (its
    /// canonical id is the tenant id).
    pub(crate) fn owner(&self, bucket: &str) -> Owner {
        tenant_owner(&self.directory.owner_of(bucket))
    }
}

pub(crate) fn tenant_owner(tenant: &str) -> Owner {
    Owner {
        id: Some(tenant.to_owned()),
        display_name: Some(tenant.to_owned()),
    }
}

#[async_trait::async_trait]
impl S3 for ValleyS3 {
    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        bucket::create(self, req).await
    }
    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        bucket::head(self, req).await
    }
    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        bucket::list(self, req).await
    }
    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        bucket::delete(self, req).await
    }
    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        bucket::location(self, req).await
    }
    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        bucket::get_versioning(self, req).await
    }
    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        bucket::put_versioning(self, req).await
    }
    async fn put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        crate::bucket_encryption::put(self, req).await
    }
    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        crate::bucket_encryption::get(self, req).await
    }
    async fn delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        crate::bucket_encryption::delete(self, req).await
    }
    async fn put_bucket_cors(&self, req: S3Request<PutBucketCorsInput>) -> S3Result<S3Response<PutBucketCorsOutput>> {
        crate::cors::put(self, req).await
    }
    async fn get_bucket_cors(&self, req: S3Request<GetBucketCorsInput>) -> S3Result<S3Response<GetBucketCorsOutput>> {
        crate::cors::get(self, req).await
    }
    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        crate::cors::delete(self, req).await
    }
    async fn get_bucket_acl(&self, req: S3Request<GetBucketAclInput>) -> S3Result<S3Response<GetBucketAclOutput>> {
        crate::acl::get_bucket(self, req).await
    }
    async fn put_bucket_acl(&self, req: S3Request<PutBucketAclInput>) -> S3Result<S3Response<PutBucketAclOutput>> {
        crate::acl::put_bucket(self, req).await
    }
    async fn get_object_acl(&self, req: S3Request<GetObjectAclInput>) -> S3Result<S3Response<GetObjectAclOutput>> {
        crate::acl::get_object(self, req).await
    }
    async fn put_object_acl(&self, req: S3Request<PutObjectAclInput>) -> S3Result<S3Response<PutObjectAclOutput>> {
        crate::acl::put_object(self, req).await
    }
    async fn put_bucket_ownership_controls(
        &self,
        req: S3Request<PutBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<PutBucketOwnershipControlsOutput>> {
        crate::acl::put_ownership(self, req).await
    }
    async fn get_bucket_ownership_controls(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
        crate::acl::get_ownership(self, req).await
    }
    async fn delete_bucket_ownership_controls(
        &self,
        req: S3Request<DeleteBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<DeleteBucketOwnershipControlsOutput>> {
        crate::acl::delete_ownership(self, req).await
    }
    async fn put_public_access_block(
        &self,
        req: S3Request<PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
        crate::acl::put_public_access_block(self, req).await
    }
    async fn get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        crate::acl::get_public_access_block(self, req).await
    }
    async fn delete_public_access_block(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
        crate::acl::delete_public_access_block(self, req).await
    }
    async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        crate::policy::put(self, req).await
    }
    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        crate::policy::get(self, req).await
    }
    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        crate::policy::delete(self, req).await
    }
    async fn get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        crate::policy::status(self, req).await
    }
    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        bucket::get_tagging(self, req).await
    }
    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        bucket::put_tagging(self, req).await
    }
    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        bucket::delete_tagging(self, req).await
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        // A signed request without a region was signed with SigV2: the front refuses those in
        // headers and queries, where nothing bounds how long a signature stays good (this is a
        // second line for writes, should a spelling get past the front). A browser
        // form (a POST, which s3s turns into a PUT) signs its policy document, which must name
        // its expiration (s3s refuses a form past it, and one whose fields break the policy):
        // SigV2 is accepted there, as S3 does.
        if req.credentials.is_some() && req.region.is_none() && req.method != http::Method::POST {
            return Err(s3s::s3_error!(
                InvalidRequest,
                "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
            ));
        }
        object::put(self, req).await
    }
    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        object::get(self, req).await
    }
    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        object::head(self, req).await
    }
    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        object::attributes(self, req).await
    }
    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        object::delete(self, req).await
    }
    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        object::delete_many(self, req).await
    }
    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        copy::copy_object(self, req).await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let input = req.input;
        let version = self
            .catalog
            .object(&input.bucket, &input.key, input.version_id.as_deref())
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set: tags::to_tag_set(&version.tags),
            version_id: version.version_id,
        }))
    }
    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let input = req.input;
        let pairs = tags::from_tagging(input.tagging, valley_types::limits::OBJECT_TAGS_MAX)?;
        let version_id = self
            .catalog
            .set_object_tags(&input.bucket, &input.key, input.version_id.as_deref(), pairs)
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(PutObjectTaggingOutput { version_id }))
    }
    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let input = req.input;
        let version_id = self
            .catalog
            .set_object_tags(&input.bucket, &input.key, input.version_id.as_deref(), Vec::new())
            .await
            .map_err(s3_err)?;
        Ok(S3Response::new(DeleteObjectTaggingOutput { version_id }))
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        listing::list_v1(self, req).await
    }
    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        listing::list_v2(self, req).await
    }
    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        listing::list_versions(self, req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        multipart::create(self, req).await
    }
    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        multipart::upload_part(self, req).await
    }
    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        multipart::upload_part_copy(self, req).await
    }
    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        multipart::list_parts(self, req).await
    }
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        multipart::complete(self, req).await
    }
    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        multipart::abort(self, req).await
    }
    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        multipart::list_uploads(self, req).await
    }
}
