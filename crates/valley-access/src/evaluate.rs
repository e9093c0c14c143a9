//! The one decision every request goes through.

use std::cell::OnceCell;
use std::fmt;

use crate::acl::{Acl, Grantee, Permission};
use crate::condition::KeyLookup;
use crate::context::ContextSource;
use crate::policy::{Effect, PolicyDocument, Statement};
use crate::principal::{Principal, PrincipalMatch};
use crate::public_access::{ObjectOwnership, PublicAccessBlock};

/// Everything a decision depends on. The caller looks these up; nothing here does I/O.
#[derive(Debug, Clone, Copy)]
pub struct AccessQuery<'a> {
    pub principal: &'a Principal,
    /// The IAM action, e.g. `s3:GetObject` (see [`crate::action_for`]).
    pub action: &'a str,
    /// The resource ARN, e.g. `arn:aws:s3:::bucket/key` (see [`crate::resource_for`]).
    pub resource: &'a str,
    /// The tenant owning the bucket.
    pub resource_owner: &'a str,
    /// The principal's own identity policies.
    pub identity_policies: &'a [&'a PolicyDocument],
    pub bucket_policy: Option<&'a PolicyDocument>,
    /// The ACL the action's permission is checked on: the bucket's for listings, PutObject
    /// and DeleteObject (WRITE on the bucket) and bucket ACL operations; the object's for
    /// reading an object or its ACL.
    pub acl: Option<&'a Acl>,
    /// Effective: the bucket's settings OR'ed with its tenant's.
    pub public_access_block: PublicAccessBlock,
    pub ownership: ObjectOwnership,
    /// The request's condition keys.
    pub context: &'a dyn ContextSource,
}

/// Which policy a statement belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// The principal's identity policy at this index of [`AccessQuery::identity_policies`].
    Identity(usize),
    Bucket,
}

/// A statement that decided, for the audit log and the AccessDenied message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRef {
    pub policy: PolicySource,
    /// Position in the policy's statements, from 0 (displayed from 1, as parse errors are).
    pub index: usize,
    pub sid: Option<String>,
}

/// A Public Access Block switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicAccessRule {
    RestrictPublicBuckets,
    IgnorePublicAcls,
}

/// Why a verdict came out as it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The requester administers the tenant that owns the resource.
    TenantAdmin,
    /// The owning tenant's admin may always read, put and delete the bucket policy, so an
    /// owner cannot lock itself out with a Deny (AWS does the same for the account root).
    OwnerManagesPolicy,
    /// A policy statement: an explicit Deny, or the Allow that granted.
    Statement(StatementRef),
    /// An ACL grant (index into [`Acl::grants`]).
    AclGrant {
        index: usize,
        grantee: Grantee,
        permission: Permission,
    },
    /// Cross-tenant access, granted by both sides.
    BothSides {
        resource: Box<Reason>,
        principal: Box<Reason>,
    },
    /// Default deny: nothing applicable allows.
    NoStatementAllows,
    /// Cross-tenant: the bucket allows, but nothing of the principal's own tenant does.
    PrincipalSideMissing { resource: Box<Reason> },
    /// Cross-tenant: the principal's side allows, but neither bucket policy nor ACL does.
    ResourceSideMissing,
    /// A grant that would have allowed was switched off by Public Access Block.
    PublicAccessBlock(PublicAccessRule),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed { by: Reason },
    Denied { by: Reason },
}

impl Verdict {
    #[must_use]
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed { .. })
    }

    #[must_use]
    pub fn reason(&self) -> &Reason {
        match self {
            Verdict::Allowed { by } | Verdict::Denied { by } => by,
        }
    }
}

impl fmt::Display for StatementRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.policy {
            PolicySource::Identity(p) => write!(f, "identity policy {} ", p + 1)?,
            PolicySource::Bucket => f.write_str("bucket policy ")?,
        }
        write!(f, "statement {}", self.index + 1)?;
        if let Some(sid) = &self.sid {
            write!(f, " (Sid {sid:?})")?;
        }
        Ok(())
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::TenantAdmin => f.write_str("tenant admin"),
            Reason::OwnerManagesPolicy => f.write_str("bucket owner's admin manages the policy"),
            Reason::Statement(s) => write!(f, "{s}"),
            Reason::AclGrant {
                index,
                grantee,
                permission,
            } => write!(f, "acl grant {} ({grantee:?} {permission:?})", index + 1),
            Reason::BothSides { resource, principal } => write!(f, "{resource} and {principal}"),
            Reason::NoStatementAllows => f.write_str("no statement allows"),
            Reason::PrincipalSideMissing { resource } => write!(
                f,
                "cross-tenant: {resource} allows, but no policy of the requester's tenant does"
            ),
            Reason::ResourceSideMissing => f.write_str("cross-tenant: no bucket policy statement or acl grant allows"),
            Reason::PublicAccessBlock(rule) => write!(f, "public access block ({rule:?})"),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Allowed { by } => write!(f, "allowed by {by}"),
            Verdict::Denied { by } => write!(f, "denied by {by}"),
        }
    }
}

/// Decides a request, as AWS does:
///
/// 1. An explicit Deny in any applicable statement (identity or bucket policy) wins.
/// 2. Same tenant (principal's tenant owns the bucket): allowed if the principal is the
///    tenant's admin, or an identity policy allows, or the bucket policy allows, or the ACL
///    permits (when ACLs apply). Statements and grants naming the whole tenant delegate to
///    it, so for a non-admin user they need an identity Allow anyway.
/// 3. Cross-tenant: the resource side (bucket policy or ACL) must allow AND the principal's
///    side (its tenant admin status or an identity policy). Anonymous: the resource side.
/// 4. Otherwise denied.
///
/// Public Access Block: with `restrict_public_buckets`, a public bucket policy grants only
/// the owning tenant's principals; with `ignore_public_acls`, AllUsers and
/// AuthenticatedUsers grants are skipped. The owning tenant's admin may always
/// Get/Put/DeleteBucketPolicy.
#[must_use]
pub fn authorize(q: &AccessQuery<'_>) -> Verdict {
    let lookup = Lookup::new(q.principal, q.context);
    let principal = q.principal;
    let same_tenant = principal.tenant() == Some(q.resource_owner);
    let admin = principal.is_admin();
    if same_tenant && admin && is_policy_management(q.action) {
        return Verdict::Allowed {
            by: Reason::OwnerManagesPolicy,
        };
    }
    // The owner's own admins are allowed whatever allows: only a Deny can change their verdict,
    // so Allow statements and ACLs are not evaluated for them.
    let only_denies = same_tenant && admin;
    let applies = |statement: &Statement| {
        statement.matches_action(q.action)
            && statement.matches_resource(q.resource, &lookup)
            && statement.conditions_hold(&lookup)
    };

    // Identity policies: the principal's own; anonymous requests have none.
    let identity: &[&PolicyDocument] = if principal.tenant().is_some() {
        q.identity_policies
    } else {
        &[]
    };
    let mut identity_allow = None;
    for (p, policy) in identity.iter().enumerate() {
        for (index, statement) in policy.statements().iter().enumerate() {
            if only_denies && statement.effect() == Effect::Allow || !applies(statement) {
                continue;
            }
            let found = || StatementRef {
                policy: PolicySource::Identity(p),
                index,
                sid: statement.sid().map(str::to_owned),
            };
            match statement.effect() {
                Effect::Deny => return denied(Reason::Statement(found())),
                Effect::Allow if identity_allow.is_none() => identity_allow = Some(found()),
                Effect::Allow => {}
            }
        }
    }

    let mut blocked = None;
    let mut bucket_allow = None;
    if let Some(policy) = q.bucket_policy {
        let restricted = q.public_access_block.restrict_public_buckets && policy.is_public();
        for (index, statement) in policy.statements().iter().enumerate() {
            if only_denies && statement.effect() == Effect::Allow {
                continue;
            }
            let Some(named) = statement.principal_match(principal) else {
                continue;
            };
            if !applies(statement) {
                continue;
            }
            let found = || StatementRef {
                policy: PolicySource::Bucket,
                index,
                sid: statement.sid().map(str::to_owned),
            };
            match statement.effect() {
                Effect::Deny => return denied(Reason::Statement(found())),
                Effect::Allow if bucket_allow.is_some() => {}
                // Naming the tenant delegates to it: its own non-admin users need an identity
                // Allow, which would allow by itself.
                Effect::Allow if same_tenant && !admin && named == PrincipalMatch::Tenant => {}
                Effect::Allow if restricted && !same_tenant => {
                    blocked = Some(PublicAccessRule::RestrictPublicBuckets);
                }
                Effect::Allow => bucket_allow = Some(Reason::Statement(found())),
            }
        }
    }

    let acl = q.acl.filter(|_| q.ownership.acls_apply() && !only_denies);
    let acl_allow = match (acl, acl.and_then(|_| Permission::for_action(q.action))) {
        (Some(acl), Some(needed)) => {
            let ignore_public = q.public_access_block.ignore_public_acls;
            let delegated = |g: &crate::acl::AclGrant| same_tenant && !admin && g.grantee.is_whole_tenant();
            let found = acl.find_grant(principal, needed, |g| {
                let ignored = ignore_public && g.grantee.is_public();
                !ignored && !delegated(g)
            });
            if found.is_none()
                && ignore_public
                && acl.find_grant(principal, needed, |g| g.grantee.is_public()).is_some()
            {
                blocked = blocked.or(Some(PublicAccessRule::IgnorePublicAcls));
            }
            found.map(|(index, g)| Reason::AclGrant {
                index,
                grantee: g.grantee.clone(),
                permission: g.permission,
            })
        }
        _ => None,
    };

    let resource_side = bucket_allow.or(acl_allow);
    let principal_side = if admin {
        Some(Reason::TenantAdmin)
    } else {
        identity_allow.map(Reason::Statement)
    };
    let nothing = || blocked.map_or(Reason::NoStatementAllows, Reason::PublicAccessBlock);
    if same_tenant {
        return match principal_side.or(resource_side) {
            Some(by) => Verdict::Allowed { by },
            None => denied(nothing()),
        };
    }
    if principal.tenant().is_none() {
        return match resource_side {
            Some(by) => Verdict::Allowed { by },
            None => denied(nothing()),
        };
    }
    match (resource_side, principal_side) {
        (Some(resource), Some(principal)) => Verdict::Allowed {
            by: Reason::BothSides {
                resource: Box::new(resource),
                principal: Box::new(principal),
            },
        },
        (Some(resource), None) => denied(Reason::PrincipalSideMissing {
            resource: Box::new(resource),
        }),
        (None, Some(_)) if blocked.is_none() => denied(Reason::ResourceSideMissing),
        (None, _) => denied(nothing()),
    }
}

fn denied(by: Reason) -> Verdict {
    Verdict::Denied { by }
}

fn is_policy_management(action: &str) -> bool {
    ["s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"]
        .iter()
        .any(|a| a.eq_ignore_ascii_case(action))
}

/// Request values with the principal's own keys derived from the principal, each computed
/// only when a policy asks for it.
struct Lookup<'a> {
    principal: &'a Principal,
    context: &'a dyn ContextSource,
    username: OnceCell<Option<[String; 1]>>,
    userid: OnceCell<Option<[String; 1]>>,
    arn: OnceCell<Option<[String; 1]>>,
    account: OnceCell<Option<[String; 1]>>,
    kind: OnceCell<[String; 1]>,
}

impl<'a> Lookup<'a> {
    fn new(principal: &'a Principal, context: &'a dyn ContextSource) -> Lookup<'a> {
        Lookup {
            principal,
            context,
            username: OnceCell::new(),
            userid: OnceCell::new(),
            arn: OnceCell::new(),
            account: OnceCell::new(),
            kind: OnceCell::new(),
        }
    }
}

fn one(cell: &OnceCell<Option<[String; 1]>>, make: impl FnOnce() -> Option<String>) -> Option<&[String]> {
    cell.get_or_init(|| make().map(|v| [v])).as_ref().map(|v| &v[..])
}

impl KeyLookup for Lookup<'_> {
    fn values(&self, key: &str) -> Option<&[String]> {
        let p = self.principal;
        match key {
            "aws:username" => one(&self.username, || p.user_name().map(str::to_owned)),
            "aws:userid" => one(&self.userid, || p.canonical_id()),
            "aws:principalarn" => one(&self.arn, || p.arn()),
            "aws:principalaccount" => one(&self.account, || p.tenant().map(str::to_owned)),
            "aws:principaltype" => Some(
                &self.kind.get_or_init(|| {
                    let kind = match p {
                        Principal::Anonymous => "Anonymous",
                        Principal::Authenticated { user: None, .. } => "Account",
                        Principal::Authenticated { .. } => "User",
                    };
                    [kind.to_owned()]
                })[..],
            ),
            _ => self.context.values(key),
        }
    }
}
