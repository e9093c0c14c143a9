//! The directory: every tenant, user, key and bucket owner this hub knows, in memory, kept in
//! step with the store. Requests are authenticated against it without touching the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock, RwLock};

use valley_store::{MetaStore, StoreResult, WriteTxn};
use valley_types::hlc::HlcClock;

use valley_access::PolicyDocument;

use crate::record::{
    self, BucketOwnerRecord, BucketPolicyRecord, BucketSetting, BucketSettingRecord, Change, DEFAULT_TENANT, KeyRecord,
    KmsKeyRecord, Quota, Stamp, TenantRecord, UserRecord,
};
use crate::{Sealer, TenantError, names};

/// The user the root credentials are, in the default tenant.
pub const ROOT_USER: &str = "root";

/// Who a request comes from, once its access key is known.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: String,
    pub user: String,
    pub access_key: String,
    /// Every right within its own tenant (an AWS account's root user).
    pub admin: bool,
    /// The root credentials: runs the network and its tenants (not their data).
    pub operator: bool,
    /// The user's identity policy, if any.
    pub policy: Option<Arc<PolicyDocument>>,
}

impl Principal {
    /// The ARN to name this user by in policies.
    #[must_use]
    pub fn arn(&self) -> String {
        format!("arn:aws:iam::{}:user/{}", self.tenant, self.user)
    }
}

/// How a hub in a network ships a change to every other hub: in the transaction that applies
/// it (an outbox entry per peer), then a wake-up for the senders once it committed.
pub trait Replicate: Send + Sync {
    fn queue(&self, txn: &mut dyn WriteTxn, change: &Change) -> StoreResult<()>;
    fn committed(&self);
}

#[derive(Default)]
struct State {
    tenants: BTreeMap<String, TenantRecord>,
    users: BTreeMap<(String, String), UserRecord>,
    /// Access key → its record and, if it could be unsealed, its secret.
    keys: HashMap<String, (KeyRecord, Option<String>)>,
    owners: HashMap<String, BucketOwnerRecord>,
    /// Parsed identity policies, by (tenant, user).
    identity_policies: HashMap<(String, String), Arc<PolicyDocument>>,
    bucket_policies: HashMap<String, (BucketPolicyRecord, Option<Arc<PolicyDocument>>)>,
    settings: HashMap<(String, BucketSetting), BucketSettingRecord>,
    /// Parsed settings, by bucket.
    acls: HashMap<String, Arc<valley_access::Acl>>,
    cors: HashMap<String, Arc<valley_access::CorsConfiguration>>,
    ownership: HashMap<String, valley_access::ObjectOwnership>,
    public_access_blocks: HashMap<String, valley_access::PublicAccessBlock>,
    /// Key-service keys destroyed (crypto-shredded), by key id.
    destroyed_keys: HashMap<String, KmsKeyRecord>,
    /// Every working access key's principal and secret, built when a tenant, user or key
    /// changes, so authenticating a request is one lookup and no allocation.
    credentials: HashMap<String, Credential>,
}

/// A working access key: who it stands for and its secret.
pub type Credential = (Arc<Principal>, Arc<str>);

/// The access settings of one bucket as requests are decided by them.
#[derive(Debug, Clone, Default)]
pub struct BucketAccess {
    /// `None`: the default, private to the owner.
    pub acl: Option<Arc<valley_access::Acl>>,
    pub ownership: valley_access::ObjectOwnership,
    pub public_access_block: valley_access::PublicAccessBlock,
}

/// A bucket's object ownership when none was set: ACLs apply (as S3 before 2023 and every
/// S3-compatible store; a bucket asks for `BucketOwnerEnforced` to turn them off).
pub const DEFAULT_OWNERSHIP: valley_access::ObjectOwnership = valley_access::ObjectOwnership::ObjectWriter;

/// What a stored policy that does not parse here stands for (it parsed where it was set: a
/// newer grammar): a policy that denies everything, so it never grants more than it meant to.
fn deny_all(bucket: Option<&str>) -> Arc<PolicyDocument> {
    let parsed = match bucket {
        Some(b) => valley_access::parse_bucket_policy(
            &format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"UnreadablePolicy","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::{b}","arn:aws:s3:::{b}/*"]}}]}}"#
            ),
            b,
        ),
        None => valley_access::parse_identity_policy(
            r#"{"Version":"2012-10-17","Statement":[{"Sid":"UnreadablePolicy","Effect":"Deny","Action":"*","Resource":"*"}]}"#,
        ),
    };
    Arc::new(parsed.expect("the deny-all policy parses"))
}

pub struct Directory {
    meta: Arc<dyn MetaStore>,
    clock: Arc<HlcClock>,
    origin: String,
    sealer: Sealer,
    root_access_key: String,
    /// The root credentials' principal (the default tenant's admin and the operator).
    root: Credential,
    state: RwLock<State>,
    replicate: OnceLock<Arc<dyn Replicate>>,
    /// Told of every key-service key destroyed, here or at another hub (see
    /// [`Directory::on_key_destroyed`]).
    key_destroyed: OnceLock<KeyDestroyedHook>,
}

/// What a hub does when it learns a key-service key was destroyed: forget it and destroy its
/// own copy.
pub type KeyDestroyedHook = Arc<dyn Fn(&KmsKeyRecord) + Send + Sync>;

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A new access key pair: 20 characters as AWS's, 40 hex characters of secret.
fn new_key_pair() -> (String, String) {
    (
        format!("VK{}", hex::encode_upper(rand::random::<[u8; 9]>())),
        hex::encode(rand::random::<[u8; 20]>()),
    )
}

impl State {
    fn note(&mut self, sealer: &Sealer, change: &Change) {
        self.note_record(sealer, change);
        match change {
            Change::Tenant(r) => self.index_credentials(|(key, _)| key.tenant == r.id),
            Change::User(r) => self.index_credentials(|(key, _)| key.tenant == r.tenant && key.user == r.name),
            Change::Key(r) => self.index_credentials(|(key, _)| key.access_key == r.access_key),
            _ => {}
        }
    }

    /// Builds again the credentials of the keys `affected` picks out.
    fn index_credentials(&mut self, affected: impl Fn(&(KeyRecord, Option<String>)) -> bool) {
        let keys: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, entry)| affected(entry))
            .map(|(access_key, _)| access_key.clone())
            .collect();
        for access_key in keys {
            match self.credential(&access_key) {
                Some(credential) => self.credentials.insert(access_key, credential),
                None => self.credentials.remove(&access_key),
            };
        }
    }

    /// What `access_key` authenticates as: none for an unknown or revoked key, one whose
    /// secret did not open here, or one whose user or tenant was removed.
    fn credential(&self, access_key: &str) -> Option<Credential> {
        let (key, secret) = self.keys.get(access_key)?;
        let secret = secret.as_deref()?;
        if key.revoked {
            return None;
        }
        let user = self.user_live(&key.tenant, &key.user)?;
        let principal = Principal {
            tenant: key.tenant.clone(),
            user: key.user.clone(),
            access_key: access_key.to_owned(),
            admin: user.admin,
            operator: false,
            policy: self
                .identity_policies
                .get(&(key.tenant.clone(), key.user.clone()))
                .cloned(),
        };
        Some((Arc::new(principal), Arc::from(secret)))
    }

    fn note_record(&mut self, sealer: &Sealer, change: &Change) {
        match change {
            Change::Tenant(r) => {
                if self.tenants.get(&r.id).is_none_or(|old| r.stamp > old.stamp) {
                    self.tenants.insert(r.id.clone(), r.clone());
                }
            }
            Change::User(r) => {
                let id = (r.tenant.clone(), r.name.clone());
                if self.users.get(&id).is_none_or(|old| r.stamp > old.stamp) {
                    match r.policy.as_deref().filter(|_| !r.removed) {
                        Some(text) => {
                            let parsed = valley_access::parse_identity_policy(text).map_or_else(
                                |e| {
                                    tracing::error!(tenant = %r.tenant, user = %r.name, error = %e, "an identity policy does not parse here: it denies everything");
                                    deny_all(None)
                                },
                                Arc::new,
                            );
                            self.identity_policies.insert(id.clone(), parsed);
                        }
                        None => {
                            self.identity_policies.remove(&id);
                        }
                    }
                    self.users.insert(id, r.clone());
                }
            }
            Change::Key(r) => {
                let replaces = self
                    .keys
                    .get(&r.access_key)
                    .is_none_or(|(old, _)| record::replaces(&Change::Key(old.clone()), change));
                if replaces {
                    let secret = match sealer.open(&r.access_key, &r.secret) {
                        Ok(s) => Some(s),
                        Err(e) => {
                            tracing::error!(access_key = %r.access_key, error = %e, "an access key's secret does not open here: the key will not work at this hub");
                            None
                        }
                    };
                    self.keys.insert(r.access_key.clone(), (r.clone(), secret));
                }
            }
            Change::BucketOwner(r) => {
                if self.owners.get(&r.bucket).is_none_or(|old| r.stamp > old.stamp) {
                    self.owners.insert(r.bucket.clone(), r.clone());
                }
            }
            Change::BucketPolicy(r) => {
                if self
                    .bucket_policies
                    .get(&r.bucket)
                    .is_none_or(|(old, _)| r.stamp > old.stamp)
                {
                    let parsed = r.policy.as_deref().map(|text| {
                        valley_access::parse_bucket_policy(text, &r.bucket).map_or_else(
                            |e| {
                                tracing::error!(bucket = %r.bucket, error = %e, "a bucket policy does not parse here: it denies everything");
                                deny_all(Some(&r.bucket))
                            },
                            Arc::new,
                        )
                    });
                    self.bucket_policies.insert(r.bucket.clone(), (r.clone(), parsed));
                }
            }
            Change::BucketSetting(r) => {
                let id = (r.bucket.clone(), r.setting);
                if self.settings.get(&id).is_none_or(|old| r.stamp > old.stamp) {
                    self.parse_setting(r);
                    self.settings.insert(id, r.clone());
                }
            }
            Change::KmsKey(r) => {
                self.destroyed_keys.entry(r.key_id.clone()).or_insert_with(|| r.clone());
            }
        }
    }

    fn parse_setting(&mut self, r: &BucketSettingRecord) {
        let bucket = r.bucket.clone();
        let value = r.value.as_deref();
        let failed = |e: serde_json::Error| {
            tracing::error!(bucket = %r.bucket, setting = ?r.setting, error = %e, "a bucket setting does not parse here: the strictest value applies");
        };
        match r.setting {
            BucketSetting::Acl => match value.map(serde_json::from_str::<valley_access::Acl>) {
                None => {
                    self.acls.remove(&bucket);
                }
                Some(Ok(acl)) => {
                    self.acls.insert(bucket, Arc::new(acl));
                }
                Some(Err(e)) => {
                    failed(e);
                    self.acls.remove(&bucket);
                }
            },
            BucketSetting::Ownership => match value.map(serde_json::from_str) {
                None => {
                    self.ownership.remove(&bucket);
                }
                Some(Ok(o)) => {
                    self.ownership.insert(bucket, o);
                }
                Some(Err(e)) => {
                    failed(e);
                    self.ownership
                        .insert(bucket, valley_access::ObjectOwnership::BucketOwnerEnforced);
                }
            },
            // A configuration that does not parse here allows no cross-origin call.
            BucketSetting::Cors => match value.map(serde_json::from_str::<valley_access::CorsConfiguration>) {
                Some(Ok(cors)) => {
                    self.cors.insert(bucket, Arc::new(cors));
                }
                None => {
                    self.cors.remove(&bucket);
                }
                Some(Err(e)) => {
                    failed(e);
                    self.cors.remove(&bucket);
                }
            },
            // Read where it is used (valley-s3), from the record itself.
            BucketSetting::Encryption => {}
            BucketSetting::PublicAccessBlock => match value.map(serde_json::from_str) {
                None => {
                    self.public_access_blocks.remove(&bucket);
                }
                Some(Ok(b)) => {
                    self.public_access_blocks.insert(bucket, b);
                }
                Some(Err(e)) => {
                    failed(e);
                    self.public_access_blocks
                        .insert(bucket, valley_access::PublicAccessBlock::all());
                }
            },
        }
    }

    fn tenant_live(&self, id: &str) -> bool {
        id == DEFAULT_TENANT || self.tenants.get(id).is_some_and(|t| !t.removed)
    }

    fn user_live(&self, tenant: &str, name: &str) -> Option<&UserRecord> {
        self.users
            .get(&(tenant.to_owned(), name.to_owned()))
            .filter(|u| !u.removed && self.tenant_live(tenant))
    }
}

/// A tenant as `valley tenant show` prints it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TenantView {
    pub id: String,
    pub quota: Quota,
    #[serde(default)]
    pub public_access_block: valley_access::PublicAccessBlock,
    pub users: Vec<UserView>,
    pub buckets: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UserView {
    pub name: String,
    pub arn: String,
    pub admin: bool,
    pub has_policy: bool,
    pub keys: Vec<KeyView>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KeyView {
    pub access_key: String,
    pub tenant: String,
    pub user: String,
    pub revoked: bool,
    pub created_unix_ms: u64,
}

/// A new user's or key's credentials: the secret is shown once, here, and never again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewCredentials {
    pub tenant: String,
    pub user: String,
    pub arn: String,
    pub access_key: String,
    pub secret_key: String,
}

impl Directory {
    /// The directory of the records in `meta`, sealing secrets with `sealer`; the root
    /// credentials are the default tenant's admin and the operator.
    pub fn open(
        meta: Arc<dyn MetaStore>,
        clock: Arc<HlcClock>,
        origin: &str,
        sealer: Sealer,
        root_access_key: &str,
        root_secret: &str,
    ) -> Result<Self, TenantError> {
        let mut state = State::default();
        for change in record::all_changes(meta.snapshot()?.as_ref())? {
            state.note_record(&sealer, &change);
        }
        state.index_credentials(|_| true);
        Ok(Self {
            meta,
            clock,
            origin: origin.to_owned(),
            sealer,
            root_access_key: root_access_key.to_owned(),
            root: (
                Arc::new(Principal {
                    tenant: DEFAULT_TENANT.to_owned(),
                    user: ROOT_USER.to_owned(),
                    access_key: root_access_key.to_owned(),
                    admin: true,
                    operator: true,
                    policy: None,
                }),
                Arc::from(root_secret),
            ),
            state: RwLock::new(state),
            replicate: OnceLock::new(),
            key_destroyed: OnceLock::new(),
        })
    }

    /// From now on every change is shipped to the network's other hubs.
    pub fn set_replicate(&self, replicate: Arc<dyn Replicate>) {
        let _ = self.replicate.set(replicate);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stamps with the catalog's clock and origin: in a network, the hub's id, and a clock
    /// that has observed every stamp received.
    fn stamp(&self) -> Stamp {
        Stamp {
            hlc: self.clock.now().0,
            origin: self.origin.clone(),
        }
    }

    /// The principal an access key stands for, and its secret: none for an unknown or revoked
    /// key, or one whose user or tenant was removed.
    #[must_use]
    pub fn authenticate(&self, access_key: &str) -> Option<Credential> {
        if access_key == self.root_access_key {
            return Some(self.root.clone());
        }
        self.read().credentials.get(access_key).cloned()
    }

    /// The tenant that owns `bucket` (a bucket from before tenants: the default tenant).
    #[must_use]
    pub fn owner_of(&self, bucket: &str) -> String {
        self.read()
            .owners
            .get(bucket)
            .filter(|o| !o.deleted)
            .map_or_else(|| DEFAULT_TENANT.to_owned(), |o| o.tenant.clone())
    }

    /// `bucket`'s ACL, ownership and effective Public Access Block (the bucket's own OR its
    /// tenant's).
    #[must_use]
    pub fn bucket_access(&self, bucket: &str) -> BucketAccess {
        let state = self.read();
        let own = state.public_access_blocks.get(bucket).copied().unwrap_or_default();
        let tenant = state
            .owners
            .get(bucket)
            .filter(|o| !o.deleted)
            .and_then(|o| state.tenants.get(&o.tenant))
            .map(|t| t.public_access_block)
            .unwrap_or_default();
        BucketAccess {
            acl: state.acls.get(bucket).cloned(),
            ownership: state.ownership.get(bucket).copied().unwrap_or(DEFAULT_OWNERSHIP),
            public_access_block: own.combined(tenant),
        }
    }

    /// Sets a tenant's Public Access Block, at every hub.
    pub async fn set_tenant_public_access_block(
        &self,
        id: &str,
        block: valley_access::PublicAccessBlock,
    ) -> Result<(), TenantError> {
        let record = self.tenant_record(id)?;
        let record = TenantRecord {
            public_access_block: block,
            stamp: self.stamp(),
            ..record
        };
        self.commit(vec![Change::Tenant(record)]).await
    }

    /// A live tenant's record (the default tenant's, made on first change, if it has none).
    fn tenant_record(&self, id: &str) -> Result<TenantRecord, TenantError> {
        let state = self.read();
        match state.tenants.get(id).filter(|t| !t.removed) {
            Some(t) => Ok(t.clone()),
            None if id == DEFAULT_TENANT => Ok(TenantRecord {
                id: id.to_owned(),
                created_unix_ms: now_unix_ms(),
                quota: Quota::default(),
                public_access_block: valley_access::PublicAccessBlock::default(),
                removed: false,
                stamp: self.stamp(),
            }),
            None => Err(TenantError::NotFound(format!("no tenant {id}"))),
        }
    }

    /// Whether `bucket` has `setting` set (not the default).
    #[must_use]
    pub fn has_setting(&self, bucket: &str, setting: BucketSetting) -> bool {
        self.read()
            .settings
            .get(&(bucket.to_owned(), setting))
            .is_some_and(|r| r.value.is_some())
    }

    /// The change setting (`None`: back to the default) one of `bucket`'s settings, stamped
    /// now; `value` is the setting as JSON.
    #[must_use]
    pub fn bucket_setting_change(&self, bucket: &str, setting: BucketSetting, value: Option<String>) -> Change {
        Change::BucketSetting(BucketSettingRecord {
            bucket: bucket.to_owned(),
            setting,
            value,
            stamp: self.stamp(),
        })
    }

    /// Sets one of `bucket`'s settings, at every hub.
    pub async fn set_bucket_setting(
        &self,
        bucket: &str,
        setting: BucketSetting,
        value: Option<String>,
    ) -> Result<(), TenantError> {
        self.commit(vec![self.bucket_setting_change(bucket, setting, value)])
            .await
    }

    /// The changes that reset every access record of a deleted bucket (in its transaction).
    #[must_use]
    pub fn bucket_deleted_changes(&self, bucket: &str) -> Vec<Change> {
        let mut changes = vec![self.bucket_owner_change(bucket, &self.owner_of(bucket), true)];
        if self.bucket_policy(bucket).is_some() {
            changes.push(self.bucket_policy_change(bucket, None));
        }
        for setting in [
            BucketSetting::Acl,
            BucketSetting::Ownership,
            BucketSetting::PublicAccessBlock,
            BucketSetting::Cors,
            BucketSetting::Encryption,
        ] {
            if self.has_setting(bucket, setting) {
                changes.push(self.bucket_setting_change(bucket, setting, None));
            }
        }
        changes
    }

    /// The value of one of `bucket`'s settings (JSON), if set.
    #[must_use]
    pub fn bucket_setting(&self, bucket: &str, setting: BucketSetting) -> Option<String> {
        self.read()
            .settings
            .get(&(bucket.to_owned(), setting))
            .and_then(|r| r.value.clone())
    }

    /// `bucket`'s CORS configuration, if it has one.
    #[must_use]
    pub fn bucket_cors(&self, bucket: &str) -> Option<Arc<valley_access::CorsConfiguration>> {
        self.read().cors.get(bucket).cloned()
    }

    /// `bucket`'s policy, parsed.
    #[must_use]
    pub fn bucket_policy(&self, bucket: &str) -> Option<Arc<PolicyDocument>> {
        self.read().bucket_policies.get(bucket).and_then(|(_, p)| p.clone())
    }

    /// The change setting (or, `None`, deleting) `bucket`'s policy, stamped now; the caller has
    /// checked the text with `valley_access::parse_bucket_policy`.
    #[must_use]
    pub fn bucket_policy_change(&self, bucket: &str, policy: Option<String>) -> Change {
        Change::BucketPolicy(BucketPolicyRecord {
            bucket: bucket.to_owned(),
            policy,
            stamp: self.stamp(),
        })
    }

    /// Sets or deletes `bucket`'s policy, at every hub.
    pub async fn set_bucket_policy(&self, bucket: &str, policy: Option<String>) -> Result<(), TenantError> {
        if let Some(text) = &policy {
            valley_access::parse_bucket_policy(text, bucket).map_err(|e| TenantError::Invalid(e.to_string()))?;
        }
        self.commit(vec![self.bucket_policy_change(bucket, policy)]).await
    }

    /// Sets or removes a user's identity policy (IAM JSON), at every hub.
    pub async fn set_user_policy(&self, tenant: &str, name: &str, policy: Option<String>) -> Result<(), TenantError> {
        if let Some(text) = &policy {
            valley_access::parse_identity_policy(text).map_err(|e| TenantError::Invalid(e.to_string()))?;
        }
        let Some(user) = self.read().user_live(tenant, name).cloned() else {
            return Err(TenantError::NotFound(format!("no user {tenant}/{name}")));
        };
        let user = UserRecord {
            policy,
            stamp: self.stamp(),
            ..user
        };
        self.commit(vec![Change::User(user)]).await
    }

    /// A user's identity policy as it was given.
    pub fn user_policy(&self, tenant: &str, name: &str) -> Result<Option<String>, TenantError> {
        match self.read().user_live(tenant, name) {
            Some(user) => Ok(user.policy.clone()),
            None => Err(TenantError::NotFound(format!("no user {tenant}/{name}"))),
        }
    }

    /// The tenant that holds the name `bucket`, if this hub knows of one.
    #[must_use]
    pub fn holder_of(&self, bucket: &str) -> Option<String> {
        self.read()
            .owners
            .get(bucket)
            .filter(|o| !o.deleted)
            .map(|o| o.tenant.clone())
    }

    /// The buckets `tenant` owns, as far as this hub knows.
    #[must_use]
    pub fn buckets_of(&self, tenant: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .read()
            .owners
            .values()
            .filter(|o| !o.deleted && o.tenant == tenant)
            .map(|o| o.bucket.clone())
            .collect();
        out.sort();
        out
    }

    #[must_use]
    pub fn tenant_exists(&self, id: &str) -> bool {
        self.read().tenant_live(id)
    }

    #[must_use]
    pub fn quota(&self, id: &str) -> Quota {
        self.read()
            .tenants
            .get(id)
            .filter(|t| !t.removed)
            .map(|t| t.quota.clone())
            .unwrap_or_default()
    }

    /// The change recording `bucket` as `tenant`'s (or, `deleted`, free again), stamped now;
    /// write it with [`Directory::writes`] in the bucket's own transaction.
    #[must_use]
    pub fn bucket_owner_change(&self, bucket: &str, tenant: &str, deleted: bool) -> Change {
        Change::BucketOwner(BucketOwnerRecord {
            bucket: bucket.to_owned(),
            tenant: tenant.to_owned(),
            deleted,
            stamp: self.stamp(),
        })
    }

    /// What writes `changes` (and queues them for the network) inside another transaction.
    /// Once that transaction committed, call [`Directory::committed`].
    pub fn writes(&self, changes: Vec<Change>) -> impl FnOnce(&mut dyn WriteTxn) -> StoreResult<()> + Send + 'static {
        let replicate = self.replicate.get().cloned();
        move |txn| {
            for change in &changes {
                if record::apply(txn, change)?
                    && let Some(r) = &replicate
                {
                    r.queue(txn, change)?;
                }
            }
            Ok(())
        }
    }

    /// Takes `changes`, committed to the store, into the in-memory view.
    pub fn committed(&self, changes: &[Change]) {
        {
            let mut state = self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            for change in changes {
                state.note(&self.sealer, change);
            }
        }
        if let Some(r) = self.replicate.get() {
            r.committed();
        }
        changes.iter().for_each(|c| self.tell_key_destroyed(c));
    }

    /// Takes a change another hub sent, already applied to the store, into the view.
    pub fn received(&self, change: &Change) {
        self.clock.observe(valley_types::Hlc(change.stamp().hlc));
        {
            let mut state = self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            state.note(&self.sealer, change);
        }
        self.tell_key_destroyed(change);
    }

    fn tell_key_destroyed(&self, change: &Change) {
        if let (Change::KmsKey(r), Some(hook)) = (change, self.key_destroyed.get()) {
            hook(r);
        }
    }

    /// Calls `hook` for every key-service key destroyed: at once for those already known (a
    /// restart may have cut short what the hook did for them), then for each one learned.
    pub fn on_key_destroyed(&self, hook: KeyDestroyedHook) {
        if self.key_destroyed.set(hook.clone()).is_ok() {
            let known: Vec<KmsKeyRecord> = self.read().destroyed_keys.values().cloned().collect();
            for record in &known {
                hook(record);
            }
        }
    }

    /// The record of key-service key `key_id`'s destruction, if it was destroyed.
    #[must_use]
    pub fn key_destroyed(&self, key_id: &str) -> Option<KmsKeyRecord> {
        let state = self.read();
        if state.destroyed_keys.is_empty() {
            return None;
        }
        state.destroyed_keys.get(key_id).cloned()
    }

    /// The key-service keys of `tenant` destroyed so far.
    #[must_use]
    pub fn destroyed_keys(&self, tenant: &str) -> Vec<KmsKeyRecord> {
        let mut out: Vec<KmsKeyRecord> = self
            .read()
            .destroyed_keys
            .values()
            .filter(|r| r.tenant == tenant)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        out
    }

    /// Records key-service key `key_id` of `tenant` (of `bucket`, for a bucket's key) destroyed
    /// by `by`, at this hub and, through the network, at every hub. Destroying a destroyed key
    /// again is a no-op that answers the first record.
    pub async fn destroy_kms_key(
        &self,
        tenant: &str,
        key_id: &str,
        bucket: Option<&str>,
        by: &str,
    ) -> Result<KmsKeyRecord, TenantError> {
        if let Some(done) = self.key_destroyed(key_id) {
            return Ok(done);
        }
        let record = KmsKeyRecord {
            key_id: key_id.to_owned(),
            tenant: tenant.to_owned(),
            bucket: bucket.map(str::to_owned),
            by: by.to_owned(),
            destroyed_unix_ms: now_unix_ms(),
            stamp: self.stamp(),
        };
        self.commit(vec![Change::KmsKey(record.clone())]).await?;
        Ok(record)
    }

    /// The stamp of `bucket`'s owner record: tells this bucket apart from an earlier bucket
    /// of the same name (0 for a bucket from before tenants).
    #[must_use]
    pub fn bucket_generation(&self, bucket: &str) -> u64 {
        self.read()
            .owners
            .get(bucket)
            .filter(|o| !o.deleted)
            .map_or(0, |o| o.stamp.hlc)
    }

    async fn commit(&self, changes: Vec<Change>) -> Result<(), TenantError> {
        let meta = self.meta.clone();
        let work = self.writes(changes.clone());
        tokio_free_blocking(move || meta.write(Box::new(work))).await?;
        self.committed(&changes);
        Ok(())
    }

    // ---- what the admin API calls ----

    pub async fn add_tenant(&self, id: &str, quota: Quota) -> Result<(), TenantError> {
        names::check_tenant_id(id)?;
        if self.tenant_exists(id) {
            return Err(TenantError::Conflict(format!("tenant {id} exists")));
        }
        let record = TenantRecord {
            id: id.to_owned(),
            created_unix_ms: now_unix_ms(),
            quota,
            public_access_block: valley_access::PublicAccessBlock::default(),
            removed: false,
            stamp: self.stamp(),
        };
        self.commit(vec![Change::Tenant(record)]).await
    }

    pub async fn set_quota(&self, id: &str, quota: Quota) -> Result<(), TenantError> {
        let record = self.tenant_record(id)?;
        let record = TenantRecord {
            quota,
            stamp: self.stamp(),
            ..record
        };
        self.commit(vec![Change::Tenant(record)]).await
    }

    /// Removes a tenant that owns no bucket (its data is never removed on its say-so): its
    /// users and keys stop working at once.
    pub async fn remove_tenant(&self, id: &str) -> Result<(), TenantError> {
        if id == DEFAULT_TENANT {
            return Err(TenantError::Invalid("the default tenant cannot be removed".into()));
        }
        let record = {
            let state = self.read();
            let Some(t) = state.tenants.get(id).filter(|t| !t.removed) else {
                return Err(TenantError::NotFound(format!("no tenant {id}")));
            };
            t.clone()
        };
        let buckets = self.buckets_of(id);
        if !buckets.is_empty() {
            return Err(TenantError::Conflict(format!(
                "tenant {id} still owns {} bucket(s) ({}): delete them first",
                buckets.len(),
                buckets.join(", ")
            )));
        }
        let record = TenantRecord {
            removed: true,
            stamp: self.stamp(),
            ..record
        };
        self.commit(vec![Change::Tenant(record)]).await
    }

    /// Adds a user to `tenant` with a first access key; the secret is in the answer only.
    pub async fn add_user(&self, tenant: &str, name: &str, admin: bool) -> Result<NewCredentials, TenantError> {
        names::check_user_name(name)?;
        if !self.tenant_exists(tenant) {
            return Err(TenantError::NotFound(format!("no tenant {tenant}")));
        }
        if tenant == DEFAULT_TENANT && name == ROOT_USER {
            return Err(TenantError::Conflict(format!(
                "{DEFAULT_TENANT}/{ROOT_USER} is the root credentials' user"
            )));
        }
        if self.read().user_live(tenant, name).is_some() {
            return Err(TenantError::Conflict(format!("user {tenant}/{name} exists")));
        }
        let user = UserRecord {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            admin,
            policy: None,
            removed: false,
            created_unix_ms: now_unix_ms(),
            stamp: self.stamp(),
        };
        let (key, creds) = self.new_key(tenant, name);
        self.commit(vec![Change::User(user), Change::Key(key)]).await?;
        Ok(creds)
    }

    fn new_key(&self, tenant: &str, user: &str) -> (KeyRecord, NewCredentials) {
        let (access_key, secret_key) = new_key_pair();
        let record = KeyRecord {
            access_key: access_key.clone(),
            tenant: tenant.to_owned(),
            user: user.to_owned(),
            secret: self.sealer.seal(&access_key, &secret_key),
            revoked: false,
            created_unix_ms: now_unix_ms(),
            stamp: self.stamp(),
        };
        let creds = NewCredentials {
            tenant: tenant.to_owned(),
            user: user.to_owned(),
            arn: format!("arn:aws:iam::{tenant}:user/{user}"),
            access_key,
            secret_key,
        };
        (record, creds)
    }

    /// Another access key for an existing user.
    pub async fn add_key(&self, tenant: &str, user: &str) -> Result<NewCredentials, TenantError> {
        if self.read().user_live(tenant, user).is_none() {
            return Err(TenantError::NotFound(format!("no user {tenant}/{user}")));
        }
        let (key, creds) = self.new_key(tenant, user);
        self.commit(vec![Change::Key(key)]).await?;
        Ok(creds)
    }

    /// Revokes a key for good, at every hub once the change reaches it. `tenant` limits
    /// whose keys the caller may revoke (a tenant admin: its own).
    pub async fn revoke_key(&self, access_key: &str, tenant: Option<&str>) -> Result<(), TenantError> {
        let record = {
            let state = self.read();
            let found = state
                .keys
                .get(access_key)
                .map(|(k, _)| k.clone())
                .filter(|k| tenant.is_none_or(|t| t == k.tenant));
            let Some(k) = found else {
                return Err(TenantError::NotFound(format!("no access key {access_key}")));
            };
            k
        };
        if record.revoked {
            return Ok(());
        }
        let record = KeyRecord {
            revoked: true,
            stamp: self.stamp(),
            ..record
        };
        self.commit(vec![Change::Key(record)]).await
    }

    /// Removes a user: its keys stop working.
    pub async fn remove_user(&self, tenant: &str, name: &str) -> Result<(), TenantError> {
        let Some(user) = self.read().user_live(tenant, name).cloned() else {
            return Err(TenantError::NotFound(format!("no user {tenant}/{name}")));
        };
        let user = UserRecord {
            removed: true,
            stamp: self.stamp(),
            ..user
        };
        self.commit(vec![Change::User(user)]).await
    }

    #[must_use]
    pub fn tenants(&self) -> Vec<String> {
        let state = self.read();
        let mut out = vec![DEFAULT_TENANT.to_owned()];
        out.extend(
            state
                .tenants
                .values()
                .filter(|t| !t.removed && t.id != DEFAULT_TENANT)
                .map(|t| t.id.clone()),
        );
        out
    }

    #[must_use]
    pub fn keys(&self, tenant: Option<&str>) -> Vec<KeyView> {
        let state = self.read();
        let mut out: Vec<KeyView> = state
            .keys
            .values()
            .filter(|(k, _)| tenant.is_none_or(|t| t == k.tenant))
            .map(|(k, _)| KeyView {
                access_key: k.access_key.clone(),
                tenant: k.tenant.clone(),
                user: k.user.clone(),
                revoked: k.revoked,
                created_unix_ms: k.created_unix_ms,
            })
            .collect();
        out.sort_by(|a, b| (&a.tenant, &a.user, a.created_unix_ms).cmp(&(&b.tenant, &b.user, b.created_unix_ms)));
        out
    }

    pub fn show(&self, id: &str) -> Result<TenantView, TenantError> {
        if !self.tenant_exists(id) {
            return Err(TenantError::NotFound(format!("no tenant {id}")));
        }
        let keys = self.keys(Some(id));
        let state = self.read();
        let users = state
            .users
            .values()
            .filter(|u| u.tenant == id && !u.removed)
            .map(|u| UserView {
                name: u.name.clone(),
                arn: format!("arn:aws:iam::{id}:user/{}", u.name),
                admin: u.admin,
                has_policy: u.policy.is_some(),
                keys: keys.iter().filter(|k| k.user == u.name).cloned().collect(),
            })
            .collect();
        let quota = state.tenants.get(id).map(|t| t.quota.clone()).unwrap_or_default();
        let public_access_block = state.tenants.get(id).map(|t| t.public_access_block).unwrap_or_default();
        drop(state);
        Ok(TenantView {
            id: id.to_owned(),
            quota,
            public_access_block,
            users,
            buckets: self.buckets_of(id),
        })
    }
}

/// Runs blocking store work off the async threads when there are any.
async fn tokio_free_blocking<R>(work: impl FnOnce() -> StoreResult<R> + Send + 'static) -> StoreResult<R>
where
    R: Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(work)
            .await
            .map_err(|e| valley_store::StoreError::Meta(e.to_string()))?,
        Err(_) => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use valley_store::MemMeta;

    fn directory(meta: &Arc<MemMeta>) -> Directory {
        Directory::open(
            meta.clone(),
            Arc::new(HlcClock::new()),
            "hub-a",
            Sealer::from_secret(b"network secret"),
            "ROOTKEY",
            "rootsecret",
        )
        .unwrap()
    }

    #[tokio::test]
    async fn bucket_settings_and_destroyed_keys_survive_a_reopen() {
        let meta = Arc::new(MemMeta::new());
        let dir = directory(&meta);
        let block = r#"{"block_public_acls":true,"ignore_public_acls":true,"block_public_policy":true,"restrict_public_buckets":true}"#;
        let change = dir.bucket_setting_change("photos", BucketSetting::PublicAccessBlock, Some(block.to_owned()));
        dir.commit(vec![change]).await.unwrap();
        assert_eq!(
            dir.bucket_setting("photos", BucketSetting::PublicAccessBlock)
                .as_deref(),
            Some(block)
        );
        let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
        let first = dir
            .destroy_kms_key("default", "default/testkey-1", None, "arn:root")
            .await
            .unwrap();
        let again = dir
            .destroy_kms_key("default", "default/testkey-1", None, "arn:other")
            .await
            .unwrap();
        assert_eq!(first, again, "a destroyed key stays destroyed as first recorded");

        // A restart must not forget a bucket's Public Access Block (it would expose what a
        // public ACL grants) nor a destroyed key.
        let reopened = directory(&meta);
        assert_eq!(
            reopened
                .bucket_setting("photos", BucketSetting::PublicAccessBlock)
                .as_deref(),
            Some(block)
        );
        assert!(reopened.bucket_access("photos").public_access_block.ignore_public_acls);
        assert_eq!(reopened.key_destroyed("default/testkey-1"), Some(first.clone()));
        assert!(reopened.key_destroyed("default/default").is_none());
        let sink = heard.clone();
        reopened.on_key_destroyed(Arc::new(move |r: &KmsKeyRecord| {
            sink.lock().unwrap().push(r.key_id.clone())
        }));
        assert_eq!(
            *heard.lock().unwrap(),
            vec!["default/testkey-1".to_owned()],
            "told at once of known ones"
        );
        reopened
            .destroy_kms_key("acme", "acme/bucket/b/7", Some("b"), "arn:alice")
            .await
            .unwrap();
        assert_eq!(heard.lock().unwrap().len(), 2, "told of a new one");
        assert_eq!(reopened.destroyed_keys("acme").len(), 1);
    }

    #[tokio::test]
    async fn users_keys_and_revocations_survive_a_reopen() {
        let meta = Arc::new(MemMeta::new());
        let dir = directory(&meta);
        let (root, secret) = dir.authenticate("ROOTKEY").unwrap();
        assert!(root.operator && root.admin && root.tenant == DEFAULT_TENANT && &*secret == "rootsecret");
        dir.add_tenant("acme", Quota::default()).await.unwrap();
        assert!(matches!(
            dir.add_tenant("acme", Quota::default()).await,
            Err(TenantError::Conflict(_))
        ));
        let alice = dir.add_user("acme", "alice", true).await.unwrap();
        let spare = dir.add_key("acme", "alice").await.unwrap();
        let (p, s) = dir.authenticate(&alice.access_key).unwrap();
        assert_eq!(
            (p.tenant.as_str(), p.user.as_str(), p.admin, p.operator),
            ("acme", "alice", true, false)
        );
        assert_eq!(&*s, alice.secret_key);
        dir.revoke_key(&spare.access_key, Some("other")).await.unwrap_err();
        dir.revoke_key(&spare.access_key, Some("acme")).await.unwrap();
        assert!(dir.authenticate(&spare.access_key).is_none());

        let reopened = directory(&meta);
        assert_eq!(&*reopened.authenticate(&alice.access_key).unwrap().1, alice.secret_key);
        assert!(reopened.authenticate(&spare.access_key).is_none(), "revoked for good");
        assert!(reopened.tenants().contains(&"acme".to_owned()));

        reopened.remove_user("acme", "alice").await.unwrap();
        assert!(
            reopened.authenticate(&alice.access_key).is_none(),
            "a removed user's keys stop"
        );
    }

    /// Authentication answers from an index built as records change: it must follow every
    /// change that alters what a key stands for, in whatever order the records arrive.
    #[tokio::test]
    async fn the_credential_index_follows_policies_and_late_records() {
        let meta = Arc::new(MemMeta::new());
        let dir = directory(&meta);
        dir.add_tenant("acme", Quota::default()).await.unwrap();
        let alice = dir.add_user("acme", "alice", false).await.unwrap();
        assert!(dir.authenticate(&alice.access_key).unwrap().0.policy.is_none());
        let policy =
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;
        dir.set_user_policy("acme", "alice", Some(policy.to_owned()))
            .await
            .unwrap();
        assert!(
            dir.authenticate(&alice.access_key).unwrap().0.policy.is_some(),
            "a policy set later is carried"
        );
        dir.set_user_policy("acme", "alice", None).await.unwrap();
        assert!(
            dir.authenticate(&alice.access_key).unwrap().0.policy.is_none(),
            "and so is its removal"
        );

        // Other hubs learn the tenant, user and key records in every order: the key works from
        // the moment the last of them arrives, not before.
        let changes = record::all_changes(meta.snapshot().unwrap().as_ref()).unwrap();
        let kind = |c: &Change| match c {
            Change::Tenant(_) => 0,
            Change::User(_) => 1,
            Change::Key(_) => 2,
            _ => 3,
        };
        for order in [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
            let elsewhere = directory(&Arc::new(MemMeta::new()));
            for (step, wanted) in order.iter().enumerate() {
                for change in changes.iter().filter(|c| kind(c) == *wanted) {
                    elsewhere.received(change);
                }
                let works = elsewhere.authenticate(&alice.access_key).is_some();
                assert_eq!(works, step == 2, "order {order:?}, after step {step}");
            }
        }
    }

    #[tokio::test]
    async fn a_tenant_with_buckets_cannot_be_removed() {
        let meta = Arc::new(MemMeta::new());
        let dir = directory(&meta);
        dir.add_tenant("acme", Quota::default()).await.unwrap();
        let bob = dir.add_user("acme", "bob", true).await.unwrap();
        let owned = dir.bucket_owner_change("photos", "acme", false);
        dir.commit(vec![owned]).await.unwrap();
        assert_eq!(dir.owner_of("photos"), "acme");
        assert_eq!(dir.owner_of("never-made"), DEFAULT_TENANT);
        let why = dir.remove_tenant("acme").await.unwrap_err().to_string();
        assert!(why.contains("photos"), "{why}");
        dir.commit(vec![dir.bucket_owner_change("photos", "acme", true)])
            .await
            .unwrap();
        assert_eq!(dir.holder_of("photos"), None);
        dir.remove_tenant("acme").await.unwrap();
        assert!(
            dir.authenticate(&bob.access_key).is_none(),
            "a removed tenant's keys stop"
        );
        assert!(dir.remove_tenant(DEFAULT_TENANT).await.is_err());
    }

    #[tokio::test]
    async fn a_key_sealed_under_another_network_secret_does_not_work_here() {
        let meta = Arc::new(MemMeta::new());
        let dir = directory(&meta);
        dir.add_tenant("acme", Quota::default()).await.unwrap();
        let alice = dir.add_user("acme", "alice", true).await.unwrap();
        let elsewhere = Directory::open(
            meta.clone(),
            Arc::new(HlcClock::new()),
            "hub-b",
            Sealer::from_secret(b"another secret"),
            "ROOTKEY",
            "rootsecret",
        )
        .unwrap();
        assert!(elsewhere.authenticate(&alice.access_key).is_none());
    }

    proptest::proptest! {
        /// Hubs that learn the same changes in any order hold the same records.
        #[test]
        fn the_order_changes_arrive_in_does_not_matter(order in proptest::collection::vec(0usize..6, 6..24)) {
            let sealer = Sealer::from_secret(b"s");
            let changes: Vec<Change> = (0u64..6)
                .map(|i| {
                    Change::Key(KeyRecord {
                        access_key: "VKA".into(),
                        tenant: "acme".into(),
                        user: "alice".into(),
                        secret: sealer.seal("VKA", "x"),
                        // Stamped below the newest record: revocation must still win.
                        revoked: i == 1,
                        created_unix_ms: 1,
                        stamp: Stamp { hlc: 10 + i % 4, origin: format!("hub-{}", i % 2) },
                    })
                })
                .collect();
            // Both orders hold every change at least once: the given order then all forwards,
            // and its reverse then all backwards.
            let forwards: Vec<usize> = order.iter().copied().chain(0..6).collect();
            let backwards: Vec<usize> = order.iter().rev().copied().chain((0..6).rev()).collect();
            let mut held = Vec::new();
            for sequence in [forwards, backwards] {
                let meta = MemMeta::new();
                for i in sequence {
                    let change = changes[i].clone();
                    meta.write(Box::new(move |txn| record::apply(txn, &change).map(|_| ()))).unwrap();
                }
                held.push(record::all_changes(meta.snapshot().unwrap().as_ref()).unwrap());
            }
            proptest::prop_assert_eq!(&held[0], &held[1]);
            proptest::prop_assert!(matches!(&held[0][0], Change::Key(k) if k.revoked));
        }
    }
}
