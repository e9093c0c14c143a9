//! S3 access control lists: grants of five permissions to tenants, users and the predefined
//! groups; canned ACLs; the `x-amz-grant-*` headers; and which permission an action needs.
//!
//! A grantee is named by its canonical user id. Valley's canonical ids are the tenant id
//! (`acme`: the tenant as a whole, like an AWS account's canonical id) and `tenant$user`
//! (`acme$bob`: one user, a Valley extension; `$` cannot occur in either name). A grant to a
//! tenant is a grant to the tenant: its users still need their own identity policy, exactly
//! as for a policy statement that names the tenant.

use serde::{Deserialize, Serialize};

use crate::principal::{Principal, is_tenant_id, is_user_name};

pub const ALL_USERS_URI: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
pub const AUTHENTICATED_USERS_URI: &str = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
pub const LOG_DELIVERY_URI: &str = "http://acs.amazonaws.com/groups/s3/LogDelivery";

/// The canned ACL names S3 accepts in `x-amz-acl`.
pub const CANNED_ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("unknown canned ACL {0:?}")]
    UnknownCannedAcl(String),
    #[error("grantee type emailAddress is not supported: {0:?}")]
    EmailGranteeUnsupported(String),
    #[error("unknown grantee group {0:?}")]
    UnknownGroup(String),
    #[error("invalid canonical user id {0:?}")]
    InvalidCanonicalId(String),
    #[error("malformed grant {0:?} (expected id=\"...\" or uri=\"...\")")]
    MalformedGrant(String),
    #[error("unknown grant header {0:?}")]
    UnknownGrantHeader(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Grantee {
    /// A canonical user id: `tenant` or `tenant$user` (see the module documentation).
    Tenant(String),
    /// Everyone, anonymous requests included.
    AllUsers,
    /// Every authenticated requester, of any tenant.
    AuthenticatedUsers,
    /// S3's log delivery group; no Valley requester belongs to it.
    LogDelivery,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Permission {
    Read,
    Write,
    ReadAcp,
    WriteAcp,
    FullControl,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclGrant {
    pub grantee: Grantee,
    pub permission: Permission,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    /// The owning tenant.
    pub owner: String,
    pub grants: Vec<AclGrant>,
}

impl Permission {
    /// Whether holding `self` gives `needed`: FULL_CONTROL gives all four others.
    #[must_use]
    pub fn includes(self, needed: Permission) -> bool {
        self == needed || self == Permission::FullControl
    }

    /// The ACL permission that allows `action` (any case), or `None` for actions no ACL can
    /// grant (policy, versioning, tagging... are for policies only, as in S3). The caller
    /// passes the ACL the permission is checked on: the bucket's for listings and for
    /// PutObject/DeleteObject (WRITE on a bucket), the object's for reading an object.
    #[must_use]
    pub fn for_action(action: &str) -> Option<Permission> {
        const TABLE: &[(&str, Permission)] = &[
            ("s3:ListBucket", Permission::Read),
            ("s3:ListBucketVersions", Permission::Read),
            ("s3:ListBucketMultipartUploads", Permission::Read),
            ("s3:GetObject", Permission::Read),
            ("s3:GetObjectVersion", Permission::Read),
            ("s3:GetObjectTorrent", Permission::Read),
            ("s3:PutObject", Permission::Write),
            ("s3:DeleteObject", Permission::Write),
            ("s3:DeleteObjectVersion", Permission::Write),
            ("s3:GetBucketAcl", Permission::ReadAcp),
            ("s3:GetObjectAcl", Permission::ReadAcp),
            ("s3:GetObjectVersionAcl", Permission::ReadAcp),
            ("s3:PutBucketAcl", Permission::WriteAcp),
            ("s3:PutObjectAcl", Permission::WriteAcp),
            ("s3:PutObjectVersionAcl", Permission::WriteAcp),
        ];
        TABLE
            .iter()
            .find(|(a, _)| a.eq_ignore_ascii_case(action))
            .map(|&(_, p)| p)
    }

    fn from_header(name: &str) -> Option<Permission> {
        const HEADERS: &[(&str, Permission)] = &[
            ("x-amz-grant-read", Permission::Read),
            ("x-amz-grant-write", Permission::Write),
            ("x-amz-grant-read-acp", Permission::ReadAcp),
            ("x-amz-grant-write-acp", Permission::WriteAcp),
            ("x-amz-grant-full-control", Permission::FullControl),
        ];
        HEADERS
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(name))
            .map(|&(_, p)| p)
    }
}

impl Grantee {
    /// Whether `principal` is (or belongs to) this grantee.
    #[must_use]
    pub fn includes(&self, principal: &Principal) -> bool {
        match self {
            Grantee::AllUsers => true,
            Grantee::AuthenticatedUsers => principal.tenant().is_some(),
            Grantee::LogDelivery => false,
            Grantee::Tenant(id) => match id.split_once('$') {
                Some((tenant, user)) => principal.tenant() == Some(tenant) && principal.user_name() == Some(user),
                None => principal.tenant() == Some(id.as_str()),
            },
        }
    }

    /// AllUsers and AuthenticatedUsers: what AWS counts as public (any AWS account can
    /// authenticate).
    #[must_use]
    pub fn is_public(&self) -> bool {
        matches!(self, Grantee::AllUsers | Grantee::AuthenticatedUsers)
    }

    /// Whether this names a whole tenant (not one user, not a group).
    pub(crate) fn is_whole_tenant(&self) -> bool {
        matches!(self, Grantee::Tenant(id) if !id.contains('$'))
    }

    fn canonical(id: &str) -> Result<Grantee, AclError> {
        let valid = match id.split_once('$') {
            Some((tenant, user)) => is_tenant_id(tenant) && is_user_name(user),
            None => is_tenant_id(id),
        };
        if valid {
            Ok(Grantee::Tenant(id.to_owned()))
        } else {
            Err(AclError::InvalidCanonicalId(id.to_owned()))
        }
    }

    fn group(uri: &str) -> Result<Grantee, AclError> {
        match uri {
            ALL_USERS_URI => Ok(Grantee::AllUsers),
            AUTHENTICATED_USERS_URI => Ok(Grantee::AuthenticatedUsers),
            LOG_DELIVERY_URI => Ok(Grantee::LogDelivery),
            other => Err(AclError::UnknownGroup(other.to_owned())),
        }
    }
}

impl Acl {
    /// The default ACL: the owner has FULL_CONTROL, no one else anything.
    #[must_use]
    pub fn private(owner: &str) -> Acl {
        Acl {
            owner: owner.to_owned(),
            grants: vec![grant(Grantee::Tenant(owner.to_owned()), Permission::FullControl)],
        }
    }

    /// A canned ACL for a resource owned by `owner` in a bucket owned by `bucket_owner` (for a
    /// bucket's own ACL pass the same tenant twice). `aws-exec-read`'s grant to EC2 has no
    /// counterpart in Valley, so it is `private`.
    pub fn canned(name: &str, owner: &str, bucket_owner: &str) -> Result<Acl, AclError> {
        let mut acl = Acl::private(owner);
        let mut add = |grantee, permission| acl.grants.push(grant(grantee, permission));
        match name {
            "private" | "aws-exec-read" => {}
            "public-read" => add(Grantee::AllUsers, Permission::Read),
            "public-read-write" => {
                add(Grantee::AllUsers, Permission::Read);
                add(Grantee::AllUsers, Permission::Write);
            }
            "authenticated-read" => add(Grantee::AuthenticatedUsers, Permission::Read),
            "bucket-owner-read" if owner != bucket_owner => {
                add(Grantee::Tenant(bucket_owner.to_owned()), Permission::Read);
            }
            "bucket-owner-full-control" if owner != bucket_owner => {
                add(Grantee::Tenant(bucket_owner.to_owned()), Permission::FullControl);
            }
            "bucket-owner-read" | "bucket-owner-full-control" => {}
            "log-delivery-write" => {
                add(Grantee::LogDelivery, Permission::Write);
                add(Grantee::LogDelivery, Permission::ReadAcp);
            }
            other => return Err(AclError::UnknownCannedAcl(other.to_owned())),
        }
        Ok(acl)
    }

    /// An ACL from `x-amz-grant-*` headers (other headers are skipped, so all of a request's
    /// headers can be passed). As in S3, the grants are exactly those listed: the owner gets
    /// no implicit FULL_CONTROL grant.
    pub fn from_grant_headers<'h>(
        owner: &str,
        headers: impl IntoIterator<Item = (&'h str, &'h str)>,
    ) -> Result<Acl, AclError> {
        let mut grants = Vec::new();
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            if !lower.starts_with("x-amz-grant-") {
                continue;
            }
            let permission =
                Permission::from_header(&lower).ok_or_else(|| AclError::UnknownGrantHeader(name.to_owned()))?;
            for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let (kind, id) = item
                    .split_once('=')
                    .ok_or_else(|| AclError::MalformedGrant(item.to_owned()))?;
                let id = id.trim();
                let id = id.strip_prefix('"').and_then(|i| i.strip_suffix('"')).unwrap_or(id);
                let grantee = match kind.trim() {
                    k if k.eq_ignore_ascii_case("id") => Grantee::canonical(id)?,
                    k if k.eq_ignore_ascii_case("uri") => Grantee::group(id)?,
                    k if k.eq_ignore_ascii_case("emailAddress") => {
                        return Err(AclError::EmailGranteeUnsupported(id.to_owned()));
                    }
                    _ => return Err(AclError::MalformedGrant(item.to_owned())),
                };
                grants.push(grant(grantee, permission));
            }
        }
        Ok(Acl {
            owner: owner.to_owned(),
            grants,
        })
    }

    /// Whether some grant gives `principal` `permission`.
    #[must_use]
    pub fn permits(&self, principal: &Principal, permission: Permission) -> bool {
        self.find_grant(principal, permission, |_| true).is_some()
    }

    /// The first grant giving `principal` `permission` among those `consider` accepts.
    pub(crate) fn find_grant(
        &self,
        principal: &Principal,
        permission: Permission,
        consider: impl Fn(&AclGrant) -> bool,
    ) -> Option<(usize, &AclGrant)> {
        self.grants
            .iter()
            .enumerate()
            .find(|(_, g)| g.permission.includes(permission) && g.grantee.includes(principal) && consider(g))
    }

    /// Whether any grant goes to AllUsers or AuthenticatedUsers.
    #[must_use]
    pub fn is_public(&self) -> bool {
        self.grants.iter().any(|g| g.grantee.is_public())
    }

    /// Whether the only grants are FULL_CONTROL to `tenant` — what a bucket with
    /// BucketOwnerEnforced ownership accepts.
    #[must_use]
    pub fn is_owner_full_control_only(&self, tenant: &str) -> bool {
        self.grants
            .iter()
            .all(|g| g.permission == Permission::FullControl && g.grantee == Grantee::Tenant(tenant.into()))
    }
}

fn grant(grantee: Grantee, permission: Permission) -> AclGrant {
    AclGrant { grantee, permission }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_acls() {
        let public = Acl::canned("public-read", "acme", "acme").unwrap();
        assert!(public.is_public());
        assert!(public.permits(&Principal::Anonymous, Permission::Read));
        assert!(!public.permits(&Principal::Anonymous, Permission::Write));
        let rw = Acl::canned("public-read-write", "acme", "acme").unwrap();
        assert!(rw.permits(&Principal::Anonymous, Permission::Write));
        let authenticated = Acl::canned("authenticated-read", "acme", "acme").unwrap();
        assert!(authenticated.is_public());
        assert!(!authenticated.permits(&Principal::Anonymous, Permission::Read));
        assert!(authenticated.permits(&Principal::user("globex", "x"), Permission::Read));
        let private = Acl::canned("private", "acme", "acme").unwrap();
        assert!(!private.is_public());
        assert_eq!(private, Acl::private("acme"));
        assert!(private.permits(&Principal::tenant_root("acme"), Permission::WriteAcp));
        assert!(!private.permits(&Principal::user("globex", "x"), Permission::Read));
        let read = Acl::canned("bucket-owner-read", "writer", "owner").unwrap();
        assert!(read.permits(&Principal::tenant_root("owner"), Permission::Read));
        assert!(!read.permits(&Principal::tenant_root("owner"), Permission::Write));
        let full = Acl::canned("bucket-owner-full-control", "writer", "owner").unwrap();
        assert!(full.permits(&Principal::tenant_root("owner"), Permission::WriteAcp));
        assert!(full.permits(&Principal::tenant_root("writer"), Permission::WriteAcp));
        let logs = Acl::canned("log-delivery-write", "acme", "acme").unwrap();
        assert!(!logs.is_public());
        assert!(logs.grants.iter().any(|g| g.grantee == Grantee::LogDelivery));
        for name in CANNED_ACLS {
            assert!(Acl::canned(name, "a", "b").is_ok(), "{name}");
        }
        assert_eq!(
            Acl::canned("public", "a", "a"),
            Err(AclError::UnknownCannedAcl("public".into()))
        );
    }

    #[test]
    fn grant_headers() {
        let acl = Acl::from_grant_headers(
            "acme",
            [
                ("Content-Type", "text/plain"),
                (
                    "x-amz-grant-read",
                    &format!("id=\"globex\", uri=\"{ALL_USERS_URI}\"")[..],
                ),
                ("X-Amz-Grant-Full-Control", "id=acme$bob"),
            ],
        )
        .unwrap();
        assert_eq!(acl.grants.len(), 3);
        assert!(acl.is_public());
        assert!(acl.permits(&Principal::user("globex", "x"), Permission::Read));
        assert!(acl.permits(&Principal::user("acme", "bob"), Permission::WriteAcp));
        assert!(!acl.permits(&Principal::user("acme", "eve"), Permission::WriteAcp));
        assert!(!acl.permits(&Principal::tenant_root("acme"), Permission::ReadAcp));

        let email = Acl::from_grant_headers("acme", [("x-amz-grant-read", "emailAddress=\"a@b.c\"")]);
        assert_eq!(email, Err(AclError::EmailGranteeUnsupported("a@b.c".into())));
        let group = Acl::from_grant_headers("acme", [("x-amz-grant-read", "uri=\"http://x/y\"")]);
        assert_eq!(group, Err(AclError::UnknownGroup("http://x/y".into())));
        let header = Acl::from_grant_headers("acme", [("x-amz-grant-everything", "id=a")]);
        assert!(matches!(header, Err(AclError::UnknownGrantHeader(_))));
        let malformed = Acl::from_grant_headers("acme", [("x-amz-grant-write", "globex")]);
        assert!(matches!(malformed, Err(AclError::MalformedGrant(_))));
        let bad_id = Acl::from_grant_headers("acme", [("x-amz-grant-write", "id=\"a b\"")]);
        assert!(matches!(bad_id, Err(AclError::InvalidCanonicalId(_))));
        let groups = Acl::from_grant_headers(
            "acme",
            [(
                "x-amz-grant-write",
                &format!("uri={AUTHENTICATED_USERS_URI},uri={LOG_DELIVERY_URI}")[..],
            )],
        )
        .unwrap();
        assert_eq!(groups.grants[1].grantee, Grantee::LogDelivery);
    }

    #[test]
    fn permissions_for_actions() {
        assert_eq!(Permission::for_action("s3:ListBucket"), Some(Permission::Read));
        assert_eq!(Permission::for_action("S3:GETOBJECT"), Some(Permission::Read));
        assert_eq!(Permission::for_action("s3:PutObject"), Some(Permission::Write));
        assert_eq!(Permission::for_action("s3:GetBucketAcl"), Some(Permission::ReadAcp));
        assert_eq!(Permission::for_action("s3:PutObjectAcl"), Some(Permission::WriteAcp));
        assert_eq!(Permission::for_action("s3:PutBucketPolicy"), None);
        for p in [
            Permission::Read,
            Permission::Write,
            Permission::ReadAcp,
            Permission::WriteAcp,
        ] {
            assert!(Permission::FullControl.includes(p));
            assert!(!p.includes(Permission::FullControl));
        }
        assert!(!Permission::Read.includes(Permission::Write));
    }
}
