//! Public Access Block: the four switches S3 offers to keep a bucket from being public, and
//! object ownership, which can switch ACLs off altogether.

use serde::{Deserialize, Serialize};

use crate::acl::Acl;
use crate::policy::PolicyDocument;

/// The effective Public Access Block of a bucket: the bucket's own settings OR'ed with its
/// tenant's (see [`PublicAccessBlock::combined`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PublicAccessBlock {
    /// Refuse putting a public ACL (on a bucket or an object).
    pub block_public_acls: bool,
    /// Evaluate ACLs as if their AllUsers/AuthenticatedUsers grants were not there.
    pub ignore_public_acls: bool,
    /// Refuse putting a public bucket policy.
    pub block_public_policy: bool,
    /// A public bucket policy grants only principals of the bucket's own tenant.
    pub restrict_public_buckets: bool,
}

impl PublicAccessBlock {
    /// All four switches on.
    #[must_use]
    pub fn all() -> PublicAccessBlock {
        PublicAccessBlock {
            block_public_acls: true,
            ignore_public_acls: true,
            block_public_policy: true,
            restrict_public_buckets: true,
        }
    }

    /// The effective block of a bucket and its tenant: a switch is on when either has it on.
    #[must_use]
    pub fn combined(self, other: PublicAccessBlock) -> PublicAccessBlock {
        PublicAccessBlock {
            block_public_acls: self.block_public_acls || other.block_public_acls,
            ignore_public_acls: self.ignore_public_acls || other.ignore_public_acls,
            block_public_policy: self.block_public_policy || other.block_public_policy,
            restrict_public_buckets: self.restrict_public_buckets || other.restrict_public_buckets,
        }
    }

    /// Whether putting `acl` (a PutBucketAcl/PutObjectAcl, or the ACL a PutObject or
    /// CreateBucket asks for) must be refused.
    #[must_use]
    pub fn refuses_acl(&self, acl: &Acl) -> bool {
        self.block_public_acls && acl.is_public()
    }

    /// Whether PutBucketPolicy of `policy` must be refused.
    #[must_use]
    pub fn refuses_policy(&self, policy: &PolicyDocument) -> bool {
        self.block_public_policy && policy.is_public()
    }

    /// Whether evaluation skips public ACL grants.
    #[must_use]
    pub fn ignores_public_acls(&self) -> bool {
        self.ignore_public_acls
    }

    /// Whether a public bucket policy grants only the owning tenant's principals.
    #[must_use]
    pub fn restricts_public_policy(&self) -> bool {
        self.restrict_public_buckets
    }
}

/// S3 Object Ownership of a bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ObjectOwnership {
    /// The bucket owner owns every object and ACLs are off: not evaluated, and puts of any
    /// ACL but the owner's full control refused. S3's default for new buckets.
    #[default]
    BucketOwnerEnforced,
    /// The bucket owner owns objects written with `bucket-owner-full-control`.
    BucketOwnerPreferred,
    /// The writer owns what it writes.
    ObjectWriter,
}

impl ObjectOwnership {
    /// Whether ACLs take part in authorization.
    #[must_use]
    pub fn acls_apply(self) -> bool {
        self != ObjectOwnership::BucketOwnerEnforced
    }

    /// Whether putting `acl` on a bucket owned by `bucket_owner` (or an object in it) must be
    /// refused: with BucketOwnerEnforced anything but FULL_CONTROL for the bucket owner
    /// alone (what `private` and `bucket-owner-full-control` come to) is, as S3 answers
    /// AccessControlListNotSupported.
    #[must_use]
    pub fn refuses_acl(self, acl: &Acl, bucket_owner: &str) -> bool {
        !self.acls_apply() && !acl.is_owner_full_control_only(bucket_owner)
    }

    /// Whether a request's `x-amz-acl` canned ACL must be refused.
    #[must_use]
    pub fn refuses_canned_acl(self, canned: &str) -> bool {
        // As S3: only bucket-owner-full-control, not even `private` (which would name the
        // writer as owner).
        !self.acls_apply() && canned != "bucket-owner-full-control"
    }

    /// Who owns an object `writer` puts into a bucket of `bucket_owner`, given the canned ACL
    /// of the request, if any.
    #[must_use]
    pub fn object_owner<'t>(self, writer: &'t str, bucket_owner: &'t str, canned: Option<&str>) -> &'t str {
        match self {
            ObjectOwnership::BucketOwnerEnforced => bucket_owner,
            ObjectOwnership::BucketOwnerPreferred if canned == Some("bucket-owner-full-control") => bucket_owner,
            _ => writer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_bucket_policy;

    fn policy(principal: &str, condition: &str) -> PolicyDocument {
        let json = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{principal},
            "Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"{condition}}}]}}"#
        );
        parse_bucket_policy(&json, "b").unwrap()
    }

    #[test]
    fn public_policies() {
        assert!(policy(r#""*""#, "").is_public());
        assert!(policy(r#"{"AWS":["acme","*"]}"#, "").is_public());
        assert!(!policy(r#"{"AWS":"acme"}"#, "").is_public());
        let narrow = r#","Condition":{"IpAddress":{"aws:SourceIp":"10.1.0.0/16"}}"#;
        assert!(!policy(r#""*""#, narrow).is_public());
        let wide = r#","Condition":{"IpAddress":{"aws:SourceIp":["10.1.0.0/16","0.0.0.0/1"]}}"#;
        assert!(policy(r#""*""#, wide).is_public());
        let v6 = r#","Condition":{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#;
        assert!(!policy(r#""*""#, v6).is_public());
        let account = r#","Condition":{"StringEquals":{"aws:PrincipalAccount":"acme"}}"#;
        assert!(!policy(r#""*""#, account).is_public());
        let if_exists = r#","Condition":{"StringEqualsIfExists":{"aws:PrincipalAccount":"acme"}}"#;
        assert!(policy(r#""*""#, if_exists).is_public());
        let wildcard = r#","Condition":{"StringLike":{"aws:PrincipalAccount":"a*"}}"#;
        assert!(policy(r#""*""#, wildcard).is_public());
        let not = r#","Condition":{"StringNotEquals":{"aws:PrincipalAccount":"acme"}}"#;
        assert!(policy(r#""*""#, not).is_public());
        let unrelated = r#","Condition":{"Bool":{"aws:SecureTransport":"true"}}"#;
        assert!(policy(r#""*""#, unrelated).is_public());
        let source_arn = r#","Condition":{"ArnEquals":{"aws:SourceArn":"arn:aws:s3:::logs"}}"#;
        assert!(!policy(r#""*""#, source_arn).is_public());
        // An Allow to "everyone but" is refused when parsed, as AWS does.
        assert!(
            parse_bucket_policy(
                r#"{"Statement":{"Effect":"Allow","NotPrincipal":{"AWS":"acme"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#,
                "b",
            )
            .is_err()
        );
        let deny = parse_bucket_policy(
            r#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b/*"}}"#,
            "b",
        )
        .unwrap();
        assert!(!deny.is_public(), "a Deny grants nothing");
    }

    #[test]
    fn block_switches() {
        let public_acl = Acl::canned("public-read", "acme", "acme").unwrap();
        let public_policy = policy(r#""*""#, "");
        let off = PublicAccessBlock::default();
        assert!(!off.refuses_acl(&public_acl) && !off.refuses_policy(&public_policy));
        let acls = PublicAccessBlock {
            block_public_acls: true,
            ..PublicAccessBlock::default()
        };
        assert!(acls.refuses_acl(&public_acl));
        assert!(!acls.refuses_acl(&Acl::private("acme")));
        assert!(!acls.refuses_policy(&public_policy));
        let policies = PublicAccessBlock {
            block_public_policy: true,
            ..PublicAccessBlock::default()
        };
        assert!(policies.refuses_policy(&public_policy));
        assert!(!policies.refuses_policy(&policy(r#"{"AWS":"acme"}"#, "")));
        let both = acls.combined(policies);
        assert!(both.refuses_acl(&public_acl) && both.refuses_policy(&public_policy));
        assert!(!both.ignores_public_acls() && !both.restricts_public_policy());
        assert!(PublicAccessBlock::all().ignores_public_acls());
    }

    #[test]
    fn ownership() {
        let enforced = ObjectOwnership::BucketOwnerEnforced;
        assert!(!enforced.acls_apply());
        assert!(enforced.refuses_acl(&Acl::canned("public-read", "o", "o").unwrap(), "o"));
        assert!(!enforced.refuses_acl(&Acl::private("o"), "o"));
        assert!(enforced.refuses_acl(&Acl::private("writer"), "o"));
        assert!(enforced.refuses_canned_acl("public-read"));
        assert!(enforced.refuses_canned_acl("private"));
        assert!(!enforced.refuses_canned_acl("bucket-owner-full-control"));
        assert_eq!(enforced.object_owner("w", "o", None), "o");
        let preferred = ObjectOwnership::BucketOwnerPreferred;
        assert!(preferred.acls_apply());
        assert!(!preferred.refuses_acl(&Acl::canned("public-read", "o", "o").unwrap(), "o"));
        assert!(!preferred.refuses_canned_acl("public-read"));
        assert_eq!(preferred.object_owner("w", "o", Some("bucket-owner-full-control")), "o");
        assert_eq!(preferred.object_owner("w", "o", Some("private")), "w");
        assert_eq!(
            ObjectOwnership::ObjectWriter.object_owner("w", "o", Some("bucket-owner-full-control")),
            "w"
        );
    }
}
