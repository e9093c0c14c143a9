//! ACLs, for compatibility: canned ACLs and `x-amz-grant-*` headers on create, put and copy,
//! Get/PutBucketAcl, Get/PutObjectAcl, ownership controls and Public Access Block. A bucket's
//! ACL and settings are tenant control records (they apply at every hub); an object's ACL is
//! part of its version (it travels with it). Decisions are `valley_access::authorize`'s.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};
use valley_access::{Acl, AclGrant, Grantee as AclGrantee, Permission as AclPermission};
use valley_tenants::BucketSetting;

use crate::convert::s3_err;
use crate::service::ValleyS3;

const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
const AUTHENTICATED_USERS: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
const LOG_DELIVERY: &str = "http://acs.amazonaws.com/groups/s3/LogDelivery";

fn acl_error(e: &valley_access::AclError) -> s3s::S3Error {
    match e {
        valley_access::AclError::EmailGranteeUnsupported(_) => {
            s3_error!(UnresolvableGrantByEmailAddress, "{e}")
        }
        _ => s3_error!(InvalidArgument, "{e}"),
    }
}

/// The ACL a request's `x-amz-acl` or `x-amz-grant-*` headers ask for, owned by `owner`
/// (`None`: it asks for none).
pub(crate) fn requested(headers: &http::HeaderMap, owner: &str) -> S3Result<Option<Acl>> {
    requested_in(headers, owner, owner)
}

/// [`requested`] for an object in a bucket of `bucket_owner` (the `bucket-owner-*` canned
/// ACLs grant to it).
fn requested_in(headers: &http::HeaderMap, owner: &str, bucket_owner: &str) -> S3Result<Option<Acl>> {
    let canned = headers.get("x-amz-acl").and_then(|v| v.to_str().ok());
    let grants: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-amz-grant-"))
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    match (canned, grants.is_empty()) {
        (Some(_), false) => Err(s3_error!(
            InvalidRequest,
            "Specifying both Canned ACLs and Header Grants is not allowed"
        )),
        (Some(name), true) => Acl::canned(name, owner, bucket_owner)
            .map(Some)
            .map_err(|e| acl_error(&e)),
        (None, false) => Acl::from_grant_headers(owner, grants)
            .map(Some)
            .map_err(|e| acl_error(&e)),
        (None, true) => Ok(None),
    }
}

/// The ACL a write into `bucket` asks for (headers, or a form POST's canned `acl` field),
/// checked against the bucket's settings, as stored in the new version.
pub(crate) fn for_write(
    s: &ValleyS3,
    bucket: &str,
    writer: &str,
    headers: &http::HeaderMap,
    canned: Option<&str>,
) -> S3Result<Option<String>> {
    let bucket_owner = s.directory.owner_of(bucket);
    let ownership = s.directory.bucket_access(bucket).ownership;
    let canned = headers.get("x-amz-acl").and_then(|v| v.to_str().ok()).or(canned);
    // Who owns the new object: the writer, under ObjectWriter (and BucketOwnerPreferred unless
    // it hands the object over with bucket-owner-full-control); else the bucket's owner.
    if !ownership.acls_apply() {
        // ACLs are off: only bucket-owner-full-control, or an ACL that comes to the bucket
        // owner's full control alone (its own private), is accepted, as S3 does; none is kept.
        let refused = || {
            s3_error!(
                AccessControlListNotSupported,
                "The bucket does not allow ACLs (object ownership BucketOwnerEnforced)"
            )
        };
        if let Some(name) = canned
            && ownership.refuses_canned_acl(name)
        {
            return Err(refused());
        }
        if canned.is_none()
            && let Some(acl) = requested_in(headers, &bucket_owner, &bucket_owner)?
            && !acl.is_owner_full_control_only(&bucket_owner)
        {
            return Err(refused());
        }
        return Ok(None);
    }
    let owner = ownership.object_owner(writer, &bucket_owner, canned);
    let acl = match requested_in(headers, owner, &bucket_owner)? {
        Some(acl) => Some(acl),
        None => match canned {
            Some(name) => Some(Acl::canned(name, owner, &bucket_owner).map_err(|e| acl_error(&e))?),
            None => None,
        },
    };
    // Nothing asked: private to its owner, recorded when that is not the bucket's owner.
    let acl = acl.or_else(|| (owner != bucket_owner).then(|| Acl::private(owner)));
    match acl {
        Some(acl) => {
            check_allowed(s, bucket, &acl)?;
            Ok(Some(encode(&acl)))
        }
        None => Ok(None),
    }
}

/// With ACLs off (BucketOwnerEnforced), no ACL is set on the bucket or its objects, whatever
/// it says (S3 answers AccessControlListNotSupported even for `private`).
fn refuse_when_enforced(s: &ValleyS3, bucket: &str) -> S3Result<()> {
    if s.directory.bucket_access(bucket).ownership.acls_apply() {
        return Ok(());
    }
    Err(s3_error!(
        AccessControlListNotSupported,
        "The bucket does not allow ACLs (object ownership BucketOwnerEnforced)"
    ))
}

/// Refuses an ACL the bucket's settings do not allow, or that names someone unknown.
pub(crate) fn check_allowed(s: &ValleyS3, bucket: &str, acl: &Acl) -> S3Result<()> {
    for grant in &acl.grants {
        if let AclGrantee::Tenant(id) = &grant.grantee {
            let tenant = id.split_once('$').map_or(id.as_str(), |(t, _)| t);
            if !s.directory.tenant_exists(tenant) {
                return Err(s3_error!(
                    InvalidArgument,
                    "Invalid id: no tenant {tenant:?} (a grant's id is a tenant id, or tenant$user)"
                ));
            }
        }
    }
    let access = s.directory.bucket_access(bucket);
    let owner = s.directory.owner_of(bucket);
    if access.ownership.refuses_acl(acl, &owner) {
        return Err(s3_error!(
            AccessControlListNotSupported,
            "The bucket does not allow ACLs (object ownership BucketOwnerEnforced)"
        ));
    }
    if access.public_access_block.refuses_acl(acl) {
        return Err(s3_error!(
            AccessDenied,
            "Access Denied: the bucket's Public Access Block (BlockPublicAcls) refuses public ACLs"
        ));
    }
    Ok(())
}

/// The ACL of a request to set one: its body, or its headers.
fn of_put(policy: Option<AccessControlPolicy>, headers: &http::HeaderMap, owner: &str) -> S3Result<Acl> {
    if let Some(policy) = policy {
        if headers.contains_key("x-amz-acl") {
            return Err(s3_error!(UnexpectedContent, "This request does not support content"));
        }
        return from_policy(policy, owner);
    }
    requested(headers, owner)?.ok_or_else(|| {
        s3_error!(
            MalformedACLError,
            "The request has no ACL: give a body, x-amz-acl or x-amz-grant-* headers"
        )
    })
}

fn from_policy(policy: AccessControlPolicy, owner: &str) -> S3Result<Acl> {
    let mut grants = Vec::new();
    for grant in policy.grants.unwrap_or_default() {
        let (Some(grantee), Some(permission)) = (grant.grantee, grant.permission) else {
            return Err(s3_error!(MalformedACLError, "A grant needs a Grantee and a Permission"));
        };
        let permission = match permission.as_str() {
            "READ" => AclPermission::Read,
            "WRITE" => AclPermission::Write,
            "READ_ACP" => AclPermission::ReadAcp,
            "WRITE_ACP" => AclPermission::WriteAcp,
            "FULL_CONTROL" => AclPermission::FullControl,
            other => return Err(s3_error!(MalformedACLError, "unknown permission {other:?}")),
        };
        let grantee = match (grantee.type_.as_str(), grantee.id, grantee.uri) {
            ("CanonicalUser", Some(id), _) if !id.is_empty() => AclGrantee::Tenant(id),
            ("Group", _, Some(uri)) => match uri.as_str() {
                ALL_USERS => AclGrantee::AllUsers,
                AUTHENTICATED_USERS => AclGrantee::AuthenticatedUsers,
                LOG_DELIVERY => AclGrantee::LogDelivery,
                _ => return Err(s3_error!(InvalidArgument, "unknown grantee group {uri:?}")),
            },
            ("AmazonCustomerByEmail", ..) => {
                return Err(s3_error!(
                    UnresolvableGrantByEmailAddress,
                    "Grants by email address are not supported"
                ));
            }
            _ => return Err(s3_error!(MalformedACLError, "A grantee needs an ID or a group URI")),
        };
        grants.push(AclGrant { grantee, permission });
    }
    Ok(Acl {
        owner: owner.to_owned(),
        grants,
    })
}

/// The ACL's grants as S3 lists them: groups first, then canonical users, each in the order
/// they were given (clients that compare in order expect this one).
fn to_grants(acl: &Acl) -> Grants {
    let (groups, users): (Vec<&AclGrant>, Vec<&AclGrant>) = acl
        .grants
        .iter()
        .partition(|g| !matches!(g.grantee, AclGrantee::Tenant(_)));
    groups
        .into_iter()
        .chain(users)
        .map(|g| {
            let grantee = match &g.grantee {
                AclGrantee::Tenant(id) => Grantee {
                    display_name: Some(id.clone()),
                    email_address: None,
                    id: Some(id.clone()),
                    type_: Type::from_static(Type::CANONICAL_USER),
                    uri: None,
                },
                group => Grantee {
                    display_name: None,
                    email_address: None,
                    id: None,
                    type_: Type::from_static(Type::GROUP),
                    uri: Some(
                        match group {
                            AclGrantee::AllUsers => ALL_USERS,
                            AclGrantee::AuthenticatedUsers => AUTHENTICATED_USERS,
                            _ => LOG_DELIVERY,
                        }
                        .to_owned(),
                    ),
                },
            };
            let permission = match g.permission {
                AclPermission::Read => Permission::READ,
                AclPermission::Write => Permission::WRITE,
                AclPermission::ReadAcp => Permission::READ_ACP,
                AclPermission::WriteAcp => Permission::WRITE_ACP,
                AclPermission::FullControl => Permission::FULL_CONTROL,
            };
            Grant {
                grantee: Some(grantee),
                permission: Some(Permission::from_static(permission)),
            }
        })
        .collect()
}

/// An ACL as stored in a version or a bucket record.
pub(crate) fn encode(acl: &Acl) -> String {
    serde_json::to_string(acl).unwrap_or_default()
}

/// The ACL of an object version: its own, or private to the bucket's owner.
pub(crate) fn of_version(stored: Option<&str>, owner: &str) -> Acl {
    stored
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| Acl::private(owner))
}

pub async fn get_bucket(s: &ValleyS3, req: S3Request<GetBucketAclInput>) -> S3Result<S3Response<GetBucketAclOutput>> {
    let bucket = &req.input.bucket;
    s.catalog.bucket(bucket).await.map_err(s3_err)?;
    let owner = s.directory.owner_of(bucket);
    let acl = s
        .directory
        .bucket_access(bucket)
        .acl
        .map_or_else(|| Acl::private(&owner), |a| (*a).clone());
    Ok(S3Response::new(GetBucketAclOutput {
        grants: Some(to_grants(&acl)),
        owner: Some(crate::service::tenant_owner(&owner)),
    }))
}

pub async fn put_bucket(s: &ValleyS3, req: S3Request<PutBucketAclInput>) -> S3Result<S3Response<PutBucketAclOutput>> {
    let bucket = req.input.bucket.clone();
    s.catalog.bucket(&bucket).await.map_err(s3_err)?;
    refuse_when_enforced(s, &bucket)?;
    let owner = s.directory.owner_of(&bucket);
    let acl = of_put(req.input.access_control_policy, &req.headers, &owner)?;
    check_allowed(s, &bucket, &acl)?;
    s.directory
        .set_bucket_setting(&bucket, BucketSetting::Acl, Some(encode(&acl)))
        .await
        .map_err(|e| s3_error!(InternalError, "{e}"))?;
    Ok(S3Response::new(PutBucketAclOutput {}))
}

pub async fn get_object(s: &ValleyS3, req: S3Request<GetObjectAclInput>) -> S3Result<S3Response<GetObjectAclOutput>> {
    let input = req.input;
    let version = s
        .catalog
        .object(&input.bucket, &input.key, input.version_id.as_deref())
        .await
        .map_err(s3_err)?;
    let owner = s.directory.owner_of(&input.bucket);
    let acl = of_version(version.acl.as_deref(), &owner);
    Ok(S3Response::new(GetObjectAclOutput {
        grants: Some(to_grants(&acl)),
        owner: Some(crate::service::tenant_owner(&acl.owner)),
        ..Default::default()
    }))
}

pub async fn put_object(s: &ValleyS3, req: S3Request<PutObjectAclInput>) -> S3Result<S3Response<PutObjectAclOutput>> {
    refuse_when_enforced(s, &req.input.bucket)?;
    let bucket_owner = s.directory.owner_of(&req.input.bucket);
    let input = req.input;
    // The object keeps its owner (the writer's, under ObjectWriter).
    let current = s
        .catalog
        .object(&input.bucket, &input.key, input.version_id.as_deref())
        .await
        .map_err(s3_err)?;
    let owner = of_version(current.acl.as_deref(), &bucket_owner).owner;
    let acl = of_put(input.access_control_policy, &req.headers, &owner)?;
    check_allowed(s, &input.bucket, &acl)?;
    s.catalog
        .set_object_acl(
            &input.bucket,
            &input.key,
            input.version_id.as_deref(),
            Some(encode(&acl)),
        )
        .await
        .map_err(s3_err)?;
    Ok(S3Response::new(PutObjectAclOutput::default()))
}

pub async fn put_ownership(
    s: &ValleyS3,
    req: S3Request<PutBucketOwnershipControlsInput>,
) -> S3Result<S3Response<PutBucketOwnershipControlsOutput>> {
    let input = req.input;
    s.catalog.bucket(&input.bucket).await.map_err(s3_err)?;
    let [rule] = input.ownership_controls.rules.as_slice() else {
        return Err(s3_error!(MalformedXML, "OwnershipControls takes exactly one rule"));
    };
    let ownership = match rule.object_ownership.as_str() {
        "BucketOwnerEnforced" => valley_access::ObjectOwnership::BucketOwnerEnforced,
        "BucketOwnerPreferred" => valley_access::ObjectOwnership::BucketOwnerPreferred,
        "ObjectWriter" => valley_access::ObjectOwnership::ObjectWriter,
        other => return Err(s3_error!(MalformedXML, "unknown ObjectOwnership {other:?}")),
    };
    let owner = s.directory.owner_of(&input.bucket);
    if let Some(acl) = s.directory.bucket_access(&input.bucket).acl
        && ownership.refuses_acl(&acl, &owner)
    {
        return Err(s3_error!(
            InvalidBucketAclWithObjectOwnership,
            "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting: set the bucket's ACL to private first"
        ));
    }
    let value = serde_json::to_string(&ownership).unwrap_or_default();
    s.directory
        .set_bucket_setting(&input.bucket, BucketSetting::Ownership, Some(value))
        .await
        .map_err(|e| s3_error!(InternalError, "{e}"))?;
    Ok(S3Response::new(PutBucketOwnershipControlsOutput {}))
}

pub async fn get_ownership(
    s: &ValleyS3,
    req: S3Request<GetBucketOwnershipControlsInput>,
) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
    let bucket = &req.input.bucket;
    s.catalog.bucket(bucket).await.map_err(s3_err)?;
    if !s.directory.has_setting(bucket, BucketSetting::Ownership) {
        return Err(s3_error!(
            OwnershipControlsNotFoundError,
            "The bucket ownership controls were not found"
        ));
    }
    let name = match s.directory.bucket_access(bucket).ownership {
        valley_access::ObjectOwnership::BucketOwnerEnforced => ObjectOwnership::BUCKET_OWNER_ENFORCED,
        valley_access::ObjectOwnership::BucketOwnerPreferred => ObjectOwnership::BUCKET_OWNER_PREFERRED,
        valley_access::ObjectOwnership::ObjectWriter => ObjectOwnership::OBJECT_WRITER,
    };
    Ok(S3Response::new(GetBucketOwnershipControlsOutput {
        ownership_controls: Some(OwnershipControls {
            rules: vec![OwnershipControlsRule {
                object_ownership: ObjectOwnership::from_static(name),
            }],
        }),
    }))
}

pub async fn delete_ownership(
    s: &ValleyS3,
    req: S3Request<DeleteBucketOwnershipControlsInput>,
) -> S3Result<S3Response<DeleteBucketOwnershipControlsOutput>> {
    let bucket = &req.input.bucket;
    s.catalog.bucket(bucket).await.map_err(s3_err)?;
    s.directory
        .set_bucket_setting(bucket, BucketSetting::Ownership, None)
        .await
        .map_err(|e| s3_error!(InternalError, "{e}"))?;
    Ok(S3Response::new(DeleteBucketOwnershipControlsOutput {}))
}

pub async fn put_public_access_block(
    s: &ValleyS3,
    req: S3Request<PutPublicAccessBlockInput>,
) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
    let input = req.input;
    s.catalog.bucket(&input.bucket).await.map_err(s3_err)?;
    let c = input.public_access_block_configuration;
    let block = valley_access::PublicAccessBlock {
        block_public_acls: c.block_public_acls.unwrap_or(false),
        ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
        block_public_policy: c.block_public_policy.unwrap_or(false),
        restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
    };
    let value = serde_json::to_string(&block).unwrap_or_default();
    s.directory
        .set_bucket_setting(&input.bucket, BucketSetting::PublicAccessBlock, Some(value))
        .await
        .map_err(|e| s3_error!(InternalError, "{e}"))?;
    Ok(S3Response::new(PutPublicAccessBlockOutput {}))
}

pub async fn get_public_access_block(
    s: &ValleyS3,
    req: S3Request<GetPublicAccessBlockInput>,
) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
    let bucket = &req.input.bucket;
    s.catalog.bucket(bucket).await.map_err(s3_err)?;
    if !s.directory.has_setting(bucket, BucketSetting::PublicAccessBlock) {
        let mut e = s3s::S3Error::with_message(
            s3s::S3ErrorCode::Custom("NoSuchPublicAccessBlockConfiguration".into()),
            "The public access block configuration was not found",
        );
        e.set_status_code(http::StatusCode::NOT_FOUND);
        return Err(e);
    }
    let b = s.directory.bucket_access(bucket).public_access_block;
    Ok(S3Response::new(GetPublicAccessBlockOutput {
        public_access_block_configuration: Some(PublicAccessBlockConfiguration {
            block_public_acls: Some(b.block_public_acls),
            ignore_public_acls: Some(b.ignore_public_acls),
            block_public_policy: Some(b.block_public_policy),
            restrict_public_buckets: Some(b.restrict_public_buckets),
        }),
    }))
}

pub async fn delete_public_access_block(
    s: &ValleyS3,
    req: S3Request<DeletePublicAccessBlockInput>,
) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
    let bucket = &req.input.bucket;
    s.catalog.bucket(bucket).await.map_err(s3_err)?;
    s.directory
        .set_bucket_setting(bucket, BucketSetting::PublicAccessBlock, None)
        .await
        .map_err(|e| s3_error!(InternalError, "{e}"))?;
    Ok(S3Response::new(DeletePublicAccessBlockOutput {}))
}
