//! Who makes a request, and how policies name principals.

use serde::{Deserialize, Serialize};

/// The requester.
///
/// A tenant is Valley's AWS account. `user: None` is the tenant itself (its root
/// credentials), which is always an admin. A tenant admin has, within its own tenant, every
/// permission an AWS account root has; a non-admin user has only what policies allow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Principal {
    /// An unsigned request.
    Anonymous,
    Authenticated {
        tenant: String,
        user: Option<String>,
        admin: bool,
    },
}

impl Principal {
    /// A non-admin user.
    #[must_use]
    pub fn user(tenant: &str, name: &str) -> Principal {
        Principal::Authenticated {
            tenant: tenant.to_owned(),
            user: Some(name.to_owned()),
            admin: false,
        }
    }

    /// An admin user of its tenant.
    #[must_use]
    pub fn admin(tenant: &str, name: &str) -> Principal {
        Principal::Authenticated {
            tenant: tenant.to_owned(),
            user: Some(name.to_owned()),
            admin: true,
        }
    }

    /// The tenant itself (like an AWS account's root user).
    #[must_use]
    pub fn tenant_root(tenant: &str) -> Principal {
        Principal::Authenticated {
            tenant: tenant.to_owned(),
            user: None,
            admin: true,
        }
    }

    #[must_use]
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Principal::Anonymous => None,
            Principal::Authenticated { tenant, .. } => Some(tenant),
        }
    }

    #[must_use]
    pub fn user_name(&self) -> Option<&str> {
        match self {
            Principal::Authenticated { user: Some(u), .. } => Some(u),
            _ => None,
        }
    }

    /// Whether this is an admin (or the root) of its tenant.
    #[must_use]
    pub fn is_admin(&self) -> bool {
        match self {
            Principal::Anonymous => false,
            Principal::Authenticated { user, admin, .. } => *admin || user.is_none(),
        }
    }

    /// Whether this is an admin of `tenant` in particular.
    #[must_use]
    pub fn is_admin_of(&self, tenant: &str) -> bool {
        self.is_admin() && self.tenant() == Some(tenant)
    }

    /// `arn:aws:iam::TENANT:user/NAME`, or `arn:aws:iam::TENANT:root` for the tenant itself.
    #[must_use]
    pub fn arn(&self) -> Option<String> {
        match self {
            Principal::Anonymous => None,
            Principal::Authenticated {
                tenant, user: Some(u), ..
            } => Some(format!("arn:aws:iam::{tenant}:user/{u}")),
            Principal::Authenticated { tenant, .. } => Some(format!("arn:aws:iam::{tenant}:root")),
        }
    }

    /// The canonical user id, as ACL grants name grantees: `TENANT` for the tenant itself,
    /// `TENANT$USER` for one of its users (`$` cannot occur in tenant or user names).
    #[must_use]
    pub fn canonical_id(&self) -> Option<String> {
        match self {
            Principal::Anonymous => None,
            Principal::Authenticated {
                tenant, user: Some(u), ..
            } => Some(format!("{tenant}${u}")),
            Principal::Authenticated { tenant, .. } => Some(tenant.clone()),
        }
    }
}

/// A principal as a policy's `Principal`/`NotPrincipal` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PrincipalEntry {
    /// `"*"` or `{"AWS": "*"}`: everyone, anonymous included.
    Everyone,
    /// `arn:aws:iam::T:root`, a bare `T`, or canonical id `T`: the tenant as a whole.
    Tenant(String),
    /// `arn:aws:iam::T:user/U` or canonical id `T$U`.
    User { tenant: String, name: String },
    /// `{"Service": "logging.s3.amazonaws.com"}`: an AWS service. None acts in a Valley
    /// network, so it names nobody; accepted so that policies written for S3 (log delivery,
    /// CloudTrail) can be set unchanged.
    Service(String),
}

/// How specifically a statement's principal names the requester. A statement that names a
/// whole tenant delegates to that tenant: its users still need their own identity policy,
/// exactly as an AWS account principal does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrincipalMatch {
    Everyone,
    Tenant,
    User,
}

impl PrincipalEntry {
    pub(crate) fn matches(&self, principal: &Principal) -> Option<PrincipalMatch> {
        match (self, principal) {
            (PrincipalEntry::Everyone, _) => Some(PrincipalMatch::Everyone),
            (PrincipalEntry::Service(_), _) | (_, Principal::Anonymous) => None,
            (PrincipalEntry::Tenant(t), Principal::Authenticated { tenant, .. }) => {
                (t == tenant).then_some(PrincipalMatch::Tenant)
            }
            (PrincipalEntry::User { tenant: t, name }, Principal::Authenticated { tenant, user, .. }) => {
                (t == tenant && user.as_deref() == Some(name.as_str())).then_some(PrincipalMatch::User)
            }
        }
    }

    /// From an `AWS` value: `*`, an IAM ARN, or a bare tenant id.
    pub(crate) fn parse_aws(text: &str) -> Option<PrincipalEntry> {
        if text == "*" {
            return Some(PrincipalEntry::Everyone);
        }
        if let Some(rest) = text.strip_prefix("arn:aws:iam::") {
            let (tenant, resource) = rest.split_once(':')?;
            if !is_tenant_id(tenant) {
                return None;
            }
            if resource == "root" {
                return Some(PrincipalEntry::Tenant(tenant.to_owned()));
            }
            let name = resource.strip_prefix("user/")?;
            return is_user_name(name).then(|| PrincipalEntry::User {
                tenant: tenant.to_owned(),
                name: name.to_owned(),
            });
        }
        is_tenant_id(text).then(|| PrincipalEntry::Tenant(text.to_owned()))
    }

    /// From a `CanonicalUser` value: `T` or `T$U`.
    pub(crate) fn parse_canonical(text: &str) -> Option<PrincipalEntry> {
        match text.split_once('$') {
            Some((tenant, name)) => (is_tenant_id(tenant) && is_user_name(name)).then(|| PrincipalEntry::User {
                tenant: tenant.to_owned(),
                name: name.to_owned(),
            }),
            None => is_tenant_id(text).then(|| PrincipalEntry::Tenant(text.to_owned())),
        }
    }
}

/// Tenant ids: 1–64 of ASCII letters, digits, `-`, `_`, `.`.
pub(crate) fn is_tenant_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// User names: 1–64 of ASCII letters, digits and `+=,.@_-` (IAM's set).
pub(crate) fn is_user_name(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_and_canonical_ids() {
        let bob = Principal::user("acme", "bob");
        assert_eq!(bob.arn().as_deref(), Some("arn:aws:iam::acme:user/bob"));
        assert_eq!(bob.canonical_id().as_deref(), Some("acme$bob"));
        let root = Principal::tenant_root("acme");
        assert_eq!(root.arn().as_deref(), Some("arn:aws:iam::acme:root"));
        assert!(root.is_admin_of("acme") && !root.is_admin_of("other"));
        assert!(!bob.is_admin());
        assert_eq!(Principal::Anonymous.arn(), None);
    }

    #[test]
    fn entries_match_by_specificity() {
        let bob = Principal::user("acme", "bob");
        let parse = |t: &str| PrincipalEntry::parse_aws(t).unwrap();
        assert_eq!(parse("*").matches(&bob), Some(PrincipalMatch::Everyone));
        assert_eq!(parse("acme").matches(&bob), Some(PrincipalMatch::Tenant));
        assert_eq!(
            parse("arn:aws:iam::acme:root").matches(&bob),
            Some(PrincipalMatch::Tenant)
        );
        assert_eq!(
            parse("arn:aws:iam::acme:user/bob").matches(&bob),
            Some(PrincipalMatch::User)
        );
        assert_eq!(parse("arn:aws:iam::acme:user/eve").matches(&bob), None);
        assert_eq!(parse("globex").matches(&bob), None);
        assert_eq!(parse("acme").matches(&Principal::Anonymous), None);
        assert_eq!(
            PrincipalEntry::parse_canonical("acme$bob").unwrap().matches(&bob),
            Some(PrincipalMatch::User)
        );
        for bad in ["", "arn:aws:iam::acme:group/x", "arn:aws:iam:::root", "a b", "x$y"] {
            assert_eq!(PrincipalEntry::parse_aws(bad), None, "{bad:?}");
        }
    }
}
