//! Put/Get/DeleteBucketEncryption: a bucket's default server-side encryption, a tenant bucket
//! setting replicated to every hub. Writes that ask for none are sealed as it says.

use s3s::dto::{
    DeleteBucketEncryptionInput, DeleteBucketEncryptionOutput, GetBucketEncryptionInput, GetBucketEncryptionOutput,
    PutBucketEncryptionInput, PutBucketEncryptionOutput, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use s3s::{S3Request, S3Response, S3Result, s3_error};
use serde::{Deserialize, Serialize};
use valley_tenants::BucketSetting;

use crate::ValleyS3;
use crate::convert::s3_err;
use crate::sse::{Mode, Requested};

const FORMAT: u32 = 1;

/// A bucket's default encryption as stored, format 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultEncryption {
    pub format: u32,
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub bucket_key_enabled: bool,
}

/// What a write to `bucket` that names no encryption is sealed with.
pub fn default_for(s: &ValleyS3, bucket: &str) -> S3Result<Option<Requested>> {
    let Some(value) = s.directory.bucket_setting(bucket, BucketSetting::Encryption) else {
        return Ok(None);
    };
    // A default that does not parse here seals with the tenant's default key rather than
    // storing plaintext the tenant asked to have encrypted.
    let config = serde_json::from_str::<DefaultEncryption>(&value).unwrap_or(DefaultEncryption {
        format: FORMAT,
        mode: Mode::S3,
        kms_key_id: None,
        bucket_key_enabled: true,
    });
    Ok(Some(Requested {
        mode: config.mode,
        key_id: config.kms_key_id.filter(|_| config.mode == Mode::Kms),
    }))
}

pub async fn put(
    s: &ValleyS3,
    req: S3Request<PutBucketEncryptionInput>,
) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
    let input = req.input;
    s.catalog.bucket(&input.bucket).await.map_err(s3_err)?;
    let rules = input.server_side_encryption_configuration.rules;
    let [rule] = rules.as_slice() else {
        return Err(s3_error!(MalformedXML, "give exactly one Rule (got {})", rules.len()));
    };
    let Some(by_default) = &rule.apply_server_side_encryption_by_default else {
        return Err(s3_error!(
            MalformedXML,
            "the Rule needs ApplyServerSideEncryptionByDefault"
        ));
    };
    let requested = crate::sse::requested(
        Some(by_default.sse_algorithm.as_str()),
        by_default.kms_master_key_id.as_deref(),
    )?
    .ok_or_else(|| s3_error!(MalformedXML, "SSEAlgorithm is required"))?;
    let config = DefaultEncryption {
        format: FORMAT,
        mode: requested.mode,
        kms_key_id: requested.key_id,
        bucket_key_enabled: rule.bucket_key_enabled.unwrap_or(false),
    };
    let value = serde_json::to_string(&config).map_err(|e| s3_error!(InternalError, "{e}"))?;
    s.directory
        .set_bucket_setting(&input.bucket, BucketSetting::Encryption, Some(value))
        .await
        .map_err(|e| s3_error!(InternalError, "{e}"))?;
    Ok(S3Response::new(PutBucketEncryptionOutput {}))
}

pub async fn get(
    s: &ValleyS3,
    req: S3Request<GetBucketEncryptionInput>,
) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
    let bucket = &req.input.bucket;
    s.catalog.bucket(bucket).await.map_err(s3_err)?;
    let config = s
        .directory
        .bucket_setting(bucket, BucketSetting::Encryption)
        .and_then(|v| serde_json::from_str::<DefaultEncryption>(&v).ok())
        .ok_or_else(|| {
            s3_error!(
                ServerSideEncryptionConfigurationNotFoundError,
                "The server side encryption configuration was not found"
            )
        })?;
    Ok(S3Response::new(GetBucketEncryptionOutput {
        server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration {
            rules: vec![ServerSideEncryptionRule {
                apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                    sse_algorithm: ServerSideEncryption::from(config.mode.header().to_owned()),
                    kms_master_key_id: config.kms_key_id,
                }),
                bucket_key_enabled: Some(config.bucket_key_enabled),
            }],
        }),
    }))
}

pub async fn delete(
    s: &ValleyS3,
    req: S3Request<DeleteBucketEncryptionInput>,
) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
    let bucket = &req.input.bucket;
    s.catalog.bucket(bucket).await.map_err(s3_err)?;
    if s.directory.has_setting(bucket, BucketSetting::Encryption) {
        s.directory
            .set_bucket_setting(bucket, BucketSetting::Encryption, None)
            .await
            .map_err(|e| s3_error!(InternalError, "{e}"))?;
    }
    Ok(S3Response::new(DeleteBucketEncryptionOutput {}))
}
