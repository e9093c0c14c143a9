//! Tenants: the parties that share one hub network. A tenant owns buckets, users and access
//! keys; the operator (the hub's root credentials) manages tenants. So that a fresh hub works
//! with no setup, a `default` tenant always exists and the root credentials are its admin user.
//!
//! Every record here is a control record: it is stored in the metadata store's control table
//! and replicates to every hub (a tenant's key must work at any hub its data may be at), with
//! last-writer-wins on `(hlc, origin)`. Secret keys are sealed at rest with AES-256-GCM under a
//! key derived from the network secret (a lone hub: its own sealing key), so a copy of the
//! metadata store alone does not give anyone's credentials away.
//!
//! [`Directory`] is the in-memory view every request is authenticated against, kept in step
//! with the store by applying each change to both.

mod directory;
mod error;
mod names;
mod record;
mod seal;

pub use directory::{
    BucketAccess, DEFAULT_OWNERSHIP, Directory, KeyDestroyedHook, KeyView, NewCredentials, Principal, ROOT_USER,
    Replicate, TenantView, UserView,
};
pub use error::TenantError;
pub use names::{check_tenant_id, check_user_name};
pub use record::{
    BucketOwnerRecord, BucketPolicyRecord, BucketSetting, BucketSettingRecord, Change, DEFAULT_TENANT, KeyRecord,
    KmsKeyRecord, Quota, Stamp, TenantRecord, UserRecord, all_changes, apply,
};
pub use seal::{Sealed, Sealer};
