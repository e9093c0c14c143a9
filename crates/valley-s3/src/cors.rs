//! Put/Get/DeleteBucketCors: a bucket's CORS configuration, a tenant setting replicated to
//! every hub. The front answers preflights and adds the headers from it.

use s3s::dto::{
    CORSConfiguration, CORSRule, DeleteBucketCorsInput, DeleteBucketCorsOutput, GetBucketCorsInput,
    GetBucketCorsOutput, PutBucketCorsInput, PutBucketCorsOutput,
};
use s3s::{S3Request, S3Response, S3Result, s3_error};
use valley_access::{CorsConfiguration, CorsRule};
use valley_tenants::BucketSetting;

use crate::ValleyS3;
use crate::convert::s3_err;

fn rule_of(rule: CORSRule) -> CorsRule {
    CorsRule {
        id: rule.id,
        allowed_origins: rule.allowed_origins,
        allowed_methods: rule.allowed_methods,
        allowed_headers: rule.allowed_headers.unwrap_or_default(),
        expose_headers: rule.expose_headers.unwrap_or_default(),
        max_age_seconds: rule.max_age_seconds,
    }
}

fn rule_to(rule: &CorsRule) -> CORSRule {
    let listed = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    CORSRule {
        id: rule.id.clone(),
        allowed_origins: rule.allowed_origins.clone(),
        allowed_methods: rule.allowed_methods.clone(),
        allowed_headers: listed(&rule.allowed_headers),
        expose_headers: listed(&rule.expose_headers),
        max_age_seconds: rule.max_age_seconds,
    }
}

pub async fn put(s: &ValleyS3, req: S3Request<PutBucketCorsInput>) -> S3Result<S3Response<PutBucketCorsOutput>> {
    let input = req.input;
    s.catalog.bucket(&input.bucket).await.map_err(s3_err)?;
    let CORSConfiguration { cors_rules } = input.cors_configuration;
    let config = CorsConfiguration::new(cors_rules.into_iter().map(rule_of).collect())
        .map_err(|e| s3_error!(MalformedXML, "{e}"))?;
    let value = serde_json::to_string(&config).map_err(|e| s3_error!(InternalError, "{e}"))?;
    s.directory
        .set_bucket_setting(&input.bucket, BucketSetting::Cors, Some(value))
        .await
        .map_err(|e| s3_error!(InternalError, "{e}"))?;
    Ok(S3Response::new(PutBucketCorsOutput {}))
}

pub async fn get(s: &ValleyS3, req: S3Request<GetBucketCorsInput>) -> S3Result<S3Response<GetBucketCorsOutput>> {
    let bucket = &req.input.bucket;
    s.catalog.bucket(bucket).await.map_err(s3_err)?;
    let Some(config) = s.directory.bucket_cors(bucket) else {
        return Err(s3_error!(
            NoSuchCORSConfiguration,
            "The CORS configuration does not exist"
        ));
    };
    Ok(S3Response::new(GetBucketCorsOutput {
        cors_rules: Some(config.rules.iter().map(rule_to).collect()),
    }))
}

pub async fn delete(
    s: &ValleyS3,
    req: S3Request<DeleteBucketCorsInput>,
) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
    let bucket = &req.input.bucket;
    s.catalog.bucket(bucket).await.map_err(s3_err)?;
    if s.directory.has_setting(bucket, BucketSetting::Cors) {
        s.directory
            .set_bucket_setting(bucket, BucketSetting::Cors, None)
            .await
            .map_err(|e| s3_error!(InternalError, "{e}"))?;
    }
    Ok(S3Response::new(DeleteBucketCorsOutput {}))
}
