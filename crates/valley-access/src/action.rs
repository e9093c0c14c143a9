//! S3 action names: the table a policy's `s3:` actions are checked against, the mapping from
//! S3 operations (as s3s names them) to the action a request needs, and resource ARNs.

/// Every `s3:` action a policy may name (AWS's list for S3 proper; S3 Control/Outposts and
/// Express actions are not served by Valley and are refused).
pub const S3_ACTIONS: &[&str] = &[
    "s3:AbortMultipartUpload",
    "s3:BypassGovernanceRetention",
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:DeleteBucketPolicy",
    "s3:DeleteBucketWebsite",
    "s3:DeleteObject",
    "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersion",
    "s3:DeleteObjectVersionTagging",
    "s3:GetAccelerateConfiguration",
    "s3:GetAccountPublicAccessBlock",
    "s3:GetAnalyticsConfiguration",
    "s3:GetBucketAcl",
    "s3:GetBucketCORS",
    "s3:GetBucketLocation",
    "s3:GetBucketLogging",
    "s3:GetBucketNotification",
    "s3:GetBucketObjectLockConfiguration",
    "s3:GetBucketOwnershipControls",
    "s3:GetBucketPolicy",
    "s3:GetBucketPolicyStatus",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketRequestPayment",
    "s3:GetBucketTagging",
    "s3:GetBucketVersioning",
    "s3:GetBucketWebsite",
    "s3:GetEncryptionConfiguration",
    "s3:GetIntelligentTieringConfiguration",
    "s3:GetInventoryConfiguration",
    "s3:GetLifecycleConfiguration",
    "s3:GetMetricsConfiguration",
    "s3:GetObject",
    "s3:GetObjectAcl",
    "s3:GetObjectAttributes",
    "s3:GetObjectLegalHold",
    "s3:GetObjectRetention",
    "s3:GetObjectTagging",
    "s3:GetObjectTorrent",
    "s3:GetObjectVersion",
    "s3:GetObjectVersionAcl",
    "s3:GetObjectVersionAttributes",
    "s3:GetObjectVersionForReplication",
    "s3:GetObjectVersionTagging",
    "s3:GetObjectVersionTorrent",
    "s3:GetReplicationConfiguration",
    "s3:ListAllMyBuckets",
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:ListBucketVersions",
    "s3:ListMultipartUploadParts",
    "s3:ObjectOwnerOverrideToBucketOwner",
    "s3:PutAccelerateConfiguration",
    "s3:PutAccountPublicAccessBlock",
    "s3:PutAnalyticsConfiguration",
    "s3:PutBucketAcl",
    "s3:PutBucketCORS",
    "s3:PutBucketLogging",
    "s3:PutBucketNotification",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutBucketOwnershipControls",
    "s3:PutBucketPolicy",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketRequestPayment",
    "s3:PutBucketTagging",
    "s3:PutBucketVersioning",
    "s3:PutBucketWebsite",
    "s3:PutEncryptionConfiguration",
    "s3:PutIntelligentTieringConfiguration",
    "s3:PutInventoryConfiguration",
    "s3:PutLifecycleConfiguration",
    "s3:PutMetricsConfiguration",
    "s3:PutObject",
    "s3:PutObjectAcl",
    "s3:PutObjectLegalHold",
    "s3:PutObjectRetention",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionAcl",
    "s3:PutObjectVersionTagging",
    "s3:PutReplicationConfiguration",
    "s3:ReplicateDelete",
    "s3:ReplicateObject",
    "s3:ReplicateTags",
    "s3:RestoreObject",
];

/// What [`action_for`] answers for an operation it does not know: an action no table entry
/// has, so only `*` and `s3:*` statements (and tenant admins) allow it. Unknown operations are
/// thereby denied to everyone else rather than mistaken for a known action.
pub const UNMAPPED_ACTION: &str = "s3:UnmappedOperation";

/// Whether `action` (any case) is in [`S3_ACTIONS`].
#[must_use]
pub fn is_known_s3_action(action: &str) -> bool {
    S3_ACTIONS.iter().any(|a| a.eq_ignore_ascii_case(action))
}

/// The IAM action an S3 operation needs, by the operation's s3s name (`GetObject`,
/// `ListObjectsV2`, ...). `has_version_id` selects the `...Version...` action for operations
/// that address one version. Unknown operations give [`UNMAPPED_ACTION`].
///
/// Operations that need two permissions name the one checked on their own resource:
/// `CopyObject` and `UploadPartCopy` also need `s3:GetObject` on the source, which the caller
/// checks with a second query on the source's ARN.
#[must_use]
pub fn action_for(op: &str, has_version_id: bool) -> &'static str {
    try_action_for(op, has_version_id).unwrap_or(UNMAPPED_ACTION)
}

/// [`action_for`], but `None` for an operation it does not know.
#[must_use]
pub fn try_action_for(op: &str, has_version_id: bool) -> Option<&'static str> {
    let v = has_version_id;
    let action = match op {
        "CreateBucket" => "s3:CreateBucket",
        "DeleteBucket" => "s3:DeleteBucket",
        "HeadBucket" | "ListObjects" | "ListObjectsV2" => "s3:ListBucket",
        "ListBuckets" => "s3:ListAllMyBuckets",
        "ListObjectVersions" => "s3:ListBucketVersions",
        "ListMultipartUploads" => "s3:ListBucketMultipartUploads",
        "GetObject" | "HeadObject" if v => "s3:GetObjectVersion",
        "GetObject" | "HeadObject" => "s3:GetObject",
        "GetObjectAttributes" if v => "s3:GetObjectVersionAttributes",
        "GetObjectAttributes" => "s3:GetObjectAttributes",
        "PutObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "CompleteMultipartUpload"
        | "CopyObject"
        | "UploadPartCopy" => "s3:PutObject",
        "AbortMultipartUpload" => "s3:AbortMultipartUpload",
        "ListParts" => "s3:ListMultipartUploadParts",
        "DeleteObject" | "DeleteObjects" if v => "s3:DeleteObjectVersion",
        "DeleteObject" | "DeleteObjects" => "s3:DeleteObject",
        "GetObjectTagging" if v => "s3:GetObjectVersionTagging",
        "GetObjectTagging" => "s3:GetObjectTagging",
        "PutObjectTagging" if v => "s3:PutObjectVersionTagging",
        "PutObjectTagging" => "s3:PutObjectTagging",
        "DeleteObjectTagging" if v => "s3:DeleteObjectVersionTagging",
        "DeleteObjectTagging" => "s3:DeleteObjectTagging",
        "GetObjectAcl" if v => "s3:GetObjectVersionAcl",
        "GetObjectAcl" => "s3:GetObjectAcl",
        "PutObjectAcl" if v => "s3:PutObjectVersionAcl",
        "PutObjectAcl" => "s3:PutObjectAcl",
        "GetObjectRetention" => "s3:GetObjectRetention",
        "PutObjectRetention" => "s3:PutObjectRetention",
        "GetObjectLegalHold" => "s3:GetObjectLegalHold",
        "PutObjectLegalHold" => "s3:PutObjectLegalHold",
        "RestoreObject" => "s3:RestoreObject",
        "GetObjectTorrent" => "s3:GetObjectTorrent",
        "GetBucketPolicy" => "s3:GetBucketPolicy",
        "PutBucketPolicy" => "s3:PutBucketPolicy",
        "DeleteBucketPolicy" => "s3:DeleteBucketPolicy",
        "GetBucketPolicyStatus" => "s3:GetBucketPolicyStatus",
        "GetBucketAcl" => "s3:GetBucketAcl",
        "PutBucketAcl" => "s3:PutBucketAcl",
        "GetBucketVersioning" => "s3:GetBucketVersioning",
        "PutBucketVersioning" => "s3:PutBucketVersioning",
        "GetBucketTagging" => "s3:GetBucketTagging",
        // AWS has no s3:DeleteBucketTagging: deleting tags is putting none.
        "PutBucketTagging" | "DeleteBucketTagging" => "s3:PutBucketTagging",
        "GetBucketLocation" => "s3:GetBucketLocation",
        "GetBucketOwnershipControls" => "s3:GetBucketOwnershipControls",
        "PutBucketOwnershipControls" | "DeleteBucketOwnershipControls" => "s3:PutBucketOwnershipControls",
        "GetPublicAccessBlock" => "s3:GetBucketPublicAccessBlock",
        "PutPublicAccessBlock" | "DeletePublicAccessBlock" => "s3:PutBucketPublicAccessBlock",
        "GetBucketLifecycleConfiguration" | "GetBucketLifecycle" => "s3:GetLifecycleConfiguration",
        "PutBucketLifecycleConfiguration" | "PutBucketLifecycle" | "DeleteBucketLifecycle" => {
            "s3:PutLifecycleConfiguration"
        }
        "GetBucketCors" => "s3:GetBucketCORS",
        "PutBucketCors" | "DeleteBucketCors" => "s3:PutBucketCORS",
        "GetBucketEncryption" => "s3:GetEncryptionConfiguration",
        "PutBucketEncryption" | "DeleteBucketEncryption" => "s3:PutEncryptionConfiguration",
        "GetBucketWebsite" => "s3:GetBucketWebsite",
        "PutBucketWebsite" => "s3:PutBucketWebsite",
        "DeleteBucketWebsite" => "s3:DeleteBucketWebsite",
        "GetObjectLockConfiguration" => "s3:GetBucketObjectLockConfiguration",
        "PutObjectLockConfiguration" => "s3:PutBucketObjectLockConfiguration",
        "GetBucketNotificationConfiguration" => "s3:GetBucketNotification",
        "PutBucketNotificationConfiguration" => "s3:PutBucketNotification",
        "GetBucketLogging" => "s3:GetBucketLogging",
        "PutBucketLogging" => "s3:PutBucketLogging",
        "GetBucketReplication" => "s3:GetReplicationConfiguration",
        "PutBucketReplication" | "DeleteBucketReplication" => "s3:PutReplicationConfiguration",
        "GetBucketRequestPayment" => "s3:GetBucketRequestPayment",
        "PutBucketRequestPayment" => "s3:PutBucketRequestPayment",
        "GetBucketAccelerateConfiguration" => "s3:GetAccelerateConfiguration",
        "PutBucketAccelerateConfiguration" => "s3:PutAccelerateConfiguration",
        _ => return None,
    };
    Some(action)
}

/// The ARN of a bucket (`key` `None`) or of an object in it.
#[must_use]
pub fn resource_for(bucket: &str, key: Option<&str>) -> String {
    // Built by hand: once per authorized request, and `format!` costs several times as much.
    const PREFIX: &str = "arn:aws:s3:::";
    let mut arn = String::with_capacity(PREFIX.len() + bucket.len() + key.map_or(0, |k| k.len() + 1));
    arn.push_str(PREFIX);
    arn.push_str(bucket);
    if let Some(key) = key {
        arn.push('/');
        arn.push_str(key);
    }
    arn
}

/// The bucket an S3 ARN names, and whether it names an object in it.
#[must_use]
pub fn split_resource(resource: &str) -> Option<(&str, Option<&str>)> {
    let path = resource.strip_prefix("arn:aws:s3:::")?;
    Some(match path.split_once('/') {
        Some((bucket, key)) => (bucket, Some(key)),
        None => (path, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapped_action_is_in_the_table() {
        let ops = [
            "CreateBucket",
            "DeleteBucket",
            "HeadBucket",
            "ListBuckets",
            "ListObjects",
            "ListObjectsV2",
            "ListObjectVersions",
            "ListMultipartUploads",
            "GetObject",
            "HeadObject",
            "GetObjectAttributes",
            "PutObject",
            "CreateMultipartUpload",
            "UploadPart",
            "CompleteMultipartUpload",
            "CopyObject",
            "UploadPartCopy",
            "AbortMultipartUpload",
            "ListParts",
            "DeleteObject",
            "DeleteObjects",
            "GetObjectTagging",
            "PutObjectTagging",
            "DeleteObjectTagging",
            "GetBucketPolicy",
            "PutBucketPolicy",
            "DeleteBucketPolicy",
            "GetBucketPolicyStatus",
            "GetBucketAcl",
            "PutBucketAcl",
            "GetObjectAcl",
            "PutObjectAcl",
            "GetBucketVersioning",
            "PutBucketVersioning",
            "GetBucketTagging",
            "PutBucketTagging",
            "DeleteBucketTagging",
            "GetBucketLocation",
            "PutBucketOwnershipControls",
            "GetBucketOwnershipControls",
            "DeleteBucketOwnershipControls",
            "PutPublicAccessBlock",
            "GetPublicAccessBlock",
            "DeletePublicAccessBlock",
            "GetBucketCors",
            "PutBucketEncryption",
            "GetObjectLockConfiguration",
        ];
        for op in ops {
            for versioned in [false, true] {
                let action = try_action_for(op, versioned).unwrap_or_else(|| panic!("{op}"));
                assert!(is_known_s3_action(action), "{op} -> {action}");
            }
        }
        assert!(!is_known_s3_action(UNMAPPED_ACTION));
        assert_eq!(try_action_for("Frobnicate", false), None);
    }

    #[test]
    fn versions_select_version_actions() {
        assert_eq!(action_for("HeadObject", false), "s3:GetObject");
        assert_eq!(action_for("HeadObject", true), "s3:GetObjectVersion");
        assert_eq!(action_for("DeleteObjects", true), "s3:DeleteObjectVersion");
        assert_eq!(action_for("PutObjectAcl", true), "s3:PutObjectVersionAcl");
        assert_eq!(action_for("HeadBucket", true), "s3:ListBucket");
    }

    #[test]
    fn resources_round_trip() {
        let object = resource_for("b", Some("dir/k"));
        assert_eq!(split_resource(&object), Some(("b", Some("dir/k"))));
        assert_eq!(split_resource(&resource_for("b", None)), Some(("b", None)));
        assert_eq!(split_resource("arn:aws:iam::acme:root"), None);
    }
}
