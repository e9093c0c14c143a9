//! Valley's S3 authorization. Pure: no I/O, no clock (the request's time is a context value),
//! so every decision is reproducible and property-testable.
//!
//! The model is AWS's, with tenants in the place of accounts:
//!
//! - A **tenant** (`acme`) owns buckets; a [`Principal`] is one of its users, the tenant
//!   itself, or anonymous. A tenant **admin** has, within its own tenant, everything an AWS
//!   account root has; other users have what policies allow. ARNs:
//!   `arn:aws:iam::acme:user/bob`, `arn:aws:iam::acme:root`; resources
//!   `arn:aws:s3:::bucket` and `arn:aws:s3:::bucket/key`.
//! - **Policies** are IAM JSON ([`parse_bucket_policy`], [`parse_identity_policy`]),
//!   validated when put, with errors that name the problem; [`PolicyDocument::source`] keeps
//!   the text for GetBucketPolicy.
//! - **ACLs** ([`Acl`]) grant READ/WRITE/READ_ACP/WRITE_ACP/FULL_CONTROL to tenants, users
//!   and groups, unless [`ObjectOwnership::BucketOwnerEnforced`] switches them off;
//!   [`PublicAccessBlock`] can refuse or ignore public ones.
//! - [`authorize`] combines it all: an explicit Deny wins; within a tenant one Allow
//!   suffices; across tenants both the bucket's side and the requester's side must allow.
//!
//! Modules: `wildcard` (globs and policy variables, private), [`condition`] operators,
//! [`policy`] documents, [`acl`], [`public_access`], [`action`] names, [`context`],
//! [`evaluate`].

pub mod acl;
pub mod action;
pub mod condition;
pub mod context;
pub mod cors;
pub mod evaluate;
pub mod policy;
pub mod principal;
pub mod public_access;
mod wildcard;

pub use acl::{
    ALL_USERS_URI, AUTHENTICATED_USERS_URI, Acl, AclError, AclGrant, CANNED_ACLS, Grantee, LOG_DELIVERY_URI, Permission,
};
pub use action::{
    S3_ACTIONS, UNMAPPED_ACTION, action_for, is_known_s3_action, resource_for, split_resource, try_action_for,
};
pub use condition::{Condition, Operator, SetQualifier};
pub use context::{ContextSource, RequestContext, ip_text, normalize_key};
pub use cors::{CorsConfiguration, CorsError, CorsRule, PreflightRefusal};
pub use evaluate::{AccessQuery, PolicySource, PublicAccessRule, Reason, StatementRef, Verdict, authorize};
pub use policy::{
    Effect, MAX_BUCKET_POLICY_BYTES, MAX_IDENTITY_POLICY_BYTES, MAX_STATEMENTS, MalformedPolicy, PolicyDocument,
    PolicyKind, Statement, parse_bucket_policy, parse_identity_policy,
};
pub use principal::Principal;
pub use public_access::{ObjectOwnership, PublicAccessBlock};
