//! Who a request is and what it may touch. SigV4 secrets come from the tenant directory (the
//! root credentials are the default tenant's admin); an unknown or revoked key is S3's
//! InvalidAccessKeyId (s3s's `SimpleAuth` answers NotSignedUp, which clients do not expect).
//!
//! Until bucket policies and ACLs land, a bucket is its owner tenant's alone: its admin users
//! may do everything with it, nobody else anything, and anonymous requests nothing. Every
//! refusal names why. The operator is the default tenant's admin here: running the network is
//! no licence to read other tenants' data.

use std::sync::Arc;

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::{CopyObjectInput, CopySource, PutObjectInput, UploadPartCopyInput};
use s3s::path::S3Path;
use s3s::{S3Request, S3Result, s3_error};
use valley_tenants::{Directory, Principal};

use crate::request_keys::{RequestKeys, RequestParts};

pub struct TenantAuth {
    directory: Arc<Directory>,
}

impl TenantAuth {
    #[must_use]
    pub fn new(directory: Arc<Directory>) -> Self {
        Self { directory }
    }
}

#[async_trait::async_trait]
impl S3Auth for TenantAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.directory.authenticate(access_key) {
            Some((_, secret)) => Ok(SecretKey::from(secret.to_string())),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}

const EXPECTED_BUCKET_OWNER: http::HeaderName = http::HeaderName::from_static("x-amz-expected-bucket-owner");
const SOURCE_EXPECTED_BUCKET_OWNER: http::HeaderName =
    http::HeaderName::from_static("x-amz-source-expected-bucket-owner");

/// The object version a GET or HEAD names, as its access check read it from this hub's
/// catalogue: put in the request's extensions by the check, taken by the operation.
#[derive(Debug, Clone)]
pub(crate) struct CheckedRead(pub(crate) valley_store::record::ObjectVersion);

/// What the S3 front knows of a request's connection: the client's address and whether it
/// came over TLS (for `aws:SourceIp` and `aws:SecureTransport`). Put in the request's
/// extensions by the front.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    pub ip: Option<std::net::IpAddr>,
    pub secure: bool,
}

/// Decides, before a request's body is read, whether its principal may make it: bucket
/// policies and identity policies evaluated as AWS does (`valley_access::authorize`; ACLs
/// are not applied yet). Every refusal names the statement, or the missing allow, that
/// decided it.
pub struct TenantAccess {
    directory: Arc<Directory>,
    catalog: valley_store::Catalog,
    quotas: crate::quota::QuotaCheck,
    gate: Option<Arc<dyn crate::NetworkGate>>,
    count_request: Option<RequestCounter>,
}

/// Told the tenant each request is billed to: the bucket's owner, or for requests on no bucket
/// the caller's tenant. A request refused to someone outside the owner tenant is billed to
/// nobody (as S3 has done since 2024): a stranger's refused calls cannot run up a tenant's bill.
pub type RequestCounter = Arc<dyn Fn(&str) + Send + Sync>;

/// What a write adds to its tenant's usage, from its operation and headers (`None`: not a write).
fn incoming(op: &str, headers: &http::HeaderMap) -> Option<crate::quota::Incoming> {
    let object = match op {
        // (A form upload, "PostObject", is counted once its form is read: `put_object` below.)
        "PutObject" | "CopyObject" | "CompleteMultipartUpload" => true,
        "UploadPart" | "UploadPartCopy" => false,
        _ => return None,
    };
    let length = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    // A copy's size is the source's, unknown here: only a tenant already at its limit is refused.
    let bytes = match op {
        "CopyObject" | "UploadPartCopy" | "CompleteMultipartUpload" => 0,
        _ => length("x-amz-decoded-content-length")
            .or_else(|| length("content-length"))
            .unwrap_or(0),
    };
    Some(crate::quota::Incoming { bytes, object })
}

/// What a request's condition keys are made from (see [`crate::request_keys`]), and the
/// object version it names once read.
struct RequestFacts<'a> {
    parts: RequestParts<'a>,
    /// Keys given outright, which win over the request's own (a listing's `s3:prefix` when a
    /// missing key's refusal is decided as a listing would be).
    given: valley_access::RequestContext,
    /// The object version the request names, once read (`None` inside: none here).
    read: tokio::sync::OnceCell<Option<valley_store::record::ObjectVersion>>,
}

impl<'a> RequestFacts<'a> {
    fn new(uri: &'a http::Uri, headers: &'a http::HeaderMap, client: Option<ClientInfo>, signed: bool) -> Self {
        Self {
            parts: RequestParts {
                uri,
                headers,
                client,
                signed,
            },
            given: valley_access::RequestContext::new(),
            read: tokio::sync::OnceCell::new(),
        }
    }

    /// The same request with `given` keys winning over its own.
    fn with_given(&self, given: valley_access::RequestContext) -> RequestFacts<'a> {
        RequestFacts {
            parts: self.parts,
            given,
            read: tokio::sync::OnceCell::new(),
        }
    }

    /// The `versionId` the request names, if any.
    fn version_id(&self) -> Option<String> {
        url_query(self.parts.uri)
            .into_iter()
            .find(|(k, _)| k == "versionId")
            .map(|(_, v)| v)
    }
}

pub(crate) fn url_pairs(text: &str) -> impl Iterator<Item = (String, String)> + '_ {
    text.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        (decode(k), decode(v))
    })
}

pub(crate) fn url_query(uri: &http::Uri) -> Vec<(String, String)> {
    uri.query().map(|q| url_pairs(q).collect()).unwrap_or_default()
}

/// Actions on one object's bytes or ACL, which its ACL decides where ACLs apply.
fn is_object_read(action: &str) -> bool {
    matches!(
        action,
        "s3:GetObject"
            | "s3:GetObjectVersion"
            | "s3:GetObjectAcl"
            | "s3:GetObjectVersionAcl"
            | "s3:PutObjectAcl"
            | "s3:PutObjectVersionAcl"
    )
}

fn access_principal(principal: Option<&Principal>) -> valley_access::Principal {
    match principal {
        None => valley_access::Principal::Anonymous,
        Some(p) if p.admin => valley_access::Principal::admin(&p.tenant, &p.user),
        Some(p) => valley_access::Principal::user(&p.tenant, &p.user),
    }
}

fn denied(verdict: &valley_access::Verdict, who: &str, action: &str, resource: &str) -> s3s::S3Error {
    tracing::debug!(who, action, resource, %verdict, "request refused");
    s3_error!(
        AccessDenied,
        "Access Denied: {who} may not {action} on {resource}: {verdict}"
    )
}

impl TenantAccess {
    #[must_use]
    pub fn new(directory: Arc<Directory>, catalog: valley_store::Catalog) -> Self {
        Self {
            directory,
            catalog,
            quotas: crate::quota::QuotaCheck::default(),
            gate: None,
            count_request: None,
        }
    }

    /// Each request is counted for the tenant it is billed to.
    #[must_use]
    pub fn with_request_counter(mut self, counter: RequestCounter) -> Self {
        self.count_request = Some(counter);
        self
    }

    fn bill(&self, tenant: &str) {
        if let Some(count) = &self.count_request {
            count(tenant);
        }
    }

    /// Bills `owner` for a request decided as `decided`: always when allowed, when refused only
    /// if the caller is one of its own.
    fn bill_decided(&self, owner: &str, principal: Option<&Principal>, decided: &S3Result<()>) {
        if decided.is_ok() || principal.is_some_and(|p| p.tenant == owner) {
            self.bill(owner);
        }
    }

    /// Refusals go to the network's audit log.
    #[must_use]
    pub fn with_gate(mut self, gate: Arc<dyn crate::NetworkGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The tenant owning `bucket`; `None` when no such bucket exists (the operation answers
    /// NoSuchBucket).
    async fn owner(&self, bucket: &str) -> Option<String> {
        match self.directory.holder_of(bucket) {
            Some(owner) => Some(owner),
            None => match self.catalog.bucket(bucket).await {
                Err(valley_store::StoreError::NoSuchBucket(_)) => None,
                // A bucket held here with no owner on record is from before tenants.
                _ => Some(valley_tenants::DEFAULT_TENANT.to_owned()),
            },
        }
    }

    /// Whether `principal` may take `action` on `bucket` (and `key`).
    #[allow(clippy::too_many_arguments)]
    async fn decide(
        &self,
        principal: Option<&Principal>,
        action: &str,
        bucket: &str,
        key: Option<&str>,
        facts: &RequestFacts<'_>,
    ) -> S3Result<()> {
        let Some(owner) = self.owner(bucket).await else {
            return Ok(());
        };
        self.decide_owned(principal, action, bucket, key, &owner, facts).await
    }

    /// The ACL `action` is checked on: the object's for reading it or its ACL (looked up only
    /// for requesters from outside the owner's admins, whom no ACL adds anything to), the
    /// bucket's otherwise.
    async fn acl_for(
        &self,
        principal: Option<&Principal>,
        action: &str,
        bucket: &str,
        key: Option<&str>,
        owner: &str,
        facts: &RequestFacts<'_>,
    ) -> Option<valley_access::Acl> {
        let object_scoped = is_object_read(action);
        let insider = principal.is_some_and(|p| p.admin && p.tenant == owner);
        match key {
            Some(key) if object_scoped && !insider => {
                let version = self.existing(bucket, key, facts).await?;
                Some(crate::acl::of_version(version.acl.as_deref(), owner))
            }
            _ => Some(
                self.directory
                    .bucket_access(bucket)
                    .acl
                    .map_or_else(|| valley_access::Acl::private(owner), |a| (*a).clone()),
            ),
        }
    }

    /// The version a request on `key` is about, if it exists: read once per request (the
    /// access check may need it more than once, and GET and HEAD take it over, see
    /// [`CheckedRead`]).
    async fn existing<'f>(
        &self,
        bucket: &str,
        key: &str,
        facts: &'f RequestFacts<'_>,
    ) -> Option<&'f valley_store::record::ObjectVersion> {
        facts
            .read
            .get_or_init(|| async {
                let version_id = facts.version_id();
                self.catalog.object(bucket, key, version_id.as_deref()).await.ok()
            })
            .await
            .as_ref()
    }

    #[allow(clippy::too_many_arguments)]
    async fn decide_owned(
        &self,
        principal: Option<&Principal>,
        action: &str,
        bucket: &str,
        key: Option<&str>,
        owner: &str,
        facts: &RequestFacts<'_>,
    ) -> S3Result<()> {
        let verdict = self.verdict(principal, action, bucket, key, owner, facts).await;
        if verdict.is_allowed() {
            return Ok(());
        }
        let resource = valley_access::resource_for(bucket, key);
        let name = principal.map_or_else(|| "anonymous".to_owned(), Principal::arn);
        if let Some(gate) = &self.gate {
            gate.access_refused(bucket, format!("{name} may not {action} on {resource}: {verdict}"));
        }
        Err(denied(&verdict, &name, action, &resource))
    }

    /// `authorize()`'s verdict on `principal` taking `action` on `bucket` (and `key`) of
    /// `owner`, with the bucket's policy, settings and ACL.
    async fn verdict(
        &self,
        principal: Option<&Principal>,
        action: &str,
        bucket: &str,
        key: Option<&str>,
        owner: &str,
        facts: &RequestFacts<'_>,
    ) -> valley_access::Verdict {
        let identity_policy = principal.and_then(|p| p.policy.as_deref());
        let bucket_policy = self.directory.bucket_policy(bucket);
        let settings = self.directory.bucket_access(bucket);
        // Where ACLs apply, an object another tenant wrote is that tenant's (S3's
        // ObjectWriter): the bucket owner's own users read it, or its ACL, only as its ACL
        // grants. Looked up only then (ACLs are off by default).
        let mut object_acl = None;
        if settings.ownership.acls_apply()
            && is_object_read(action)
            && principal.is_some_and(|p| p.tenant == owner)
            && let Some(key) = key
            && let Some(version) = self.existing(bucket, key, facts).await
        {
            let acl = crate::acl::of_version(version.acl.as_deref(), owner);
            if acl.owner != owner {
                object_acl = Some(acl);
            }
        }
        let owner = object_acl.as_ref().map_or(owner, |acl| acl.owner.as_str());
        // The owner's own admins may do everything no policy denies them, whatever the ACL
        // says: without a policy there is nothing to evaluate (most requests).
        let insider = principal.is_some_and(|p| p.admin && p.tenant == owner);
        if insider && bucket_policy.is_none() && identity_policy.is_none() {
            return valley_access::Verdict::Allowed {
                by: valley_access::Reason::TenantAdmin,
            };
        }
        let who = access_principal(principal);
        let identity: Vec<&valley_access::PolicyDocument> = identity_policy.into_iter().collect();
        let resource = valley_access::resource_for(bucket, key);
        // The request's keys are built as the policies' conditions ask for them. A policy that
        // looks at the object's tags needs them read first.
        let policies = [bucket_policy.as_deref(), identity_policy];
        let mut given = std::borrow::Cow::Borrowed(&facts.given);
        if let Some(key) = key
            && policies
                .iter()
                .flatten()
                .any(|p| p.reads_prefixed("s3:existingobjecttag/"))
            && let Some(version) = self.existing(bucket, key, facts).await
        {
            given
                .to_mut()
                .set_existing_object_tags(version.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        let context = RequestKeys::new(facts.parts, &given, policies);
        // No ACL adds anything to an insider's rights.
        let acl = if object_acl.is_some() {
            object_acl.clone()
        } else if settings.ownership.acls_apply() && !insider {
            self.acl_for(principal, action, bucket, key, owner, facts).await
        } else {
            None
        };
        valley_access::authorize(&valley_access::AccessQuery {
            principal: &who,
            action,
            resource: &resource,
            resource_owner: owner,
            identity_policies: &identity,
            bucket_policy: bucket_policy.as_deref(),
            acl: acl.as_ref(),
            public_access_block: settings.public_access_block,
            ownership: settings.ownership,
            context: &context,
        })
    }

    /// As S3: a read refused on a key that does not exist answers NoSuchKey to a requester who
    /// may list that name (`s3:ListBucket` with `s3:prefix` the key), AccessDenied to anyone
    /// else; a key's absence is told only to whoever could list it anyway.
    async fn may_learn_missing(
        &self,
        principal: Option<&Principal>,
        bucket: &str,
        key: &str,
        owner: &str,
        facts: &RequestFacts<'_>,
    ) -> bool {
        if self.existing(bucket, key, facts).await.is_some() {
            return false;
        }
        let mut listing = valley_access::RequestContext::new();
        listing.set_prefix(key);
        let listing = facts.with_given(listing);
        self.verdict(principal, "s3:ListBucket", bucket, None, owner, &listing)
            .await
            .is_allowed()
    }

    async fn check_create(
        &self,
        principal: Option<&Principal>,
        bucket: &str,
        facts: &RequestFacts<'_>,
    ) -> S3Result<()> {
        let Some(p) = principal else {
            return Err(s3_error!(
                AccessDenied,
                "Access Denied: anonymous requests cannot create buckets"
            ));
        };
        if let Some(holder) = self.directory.holder_of(bucket)
            && holder != p.tenant
        {
            return Err(s3_error!(
                BucketAlreadyExists,
                "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again."
            ));
        }
        // The bucket would be the caller's tenant's: its own side decides.
        self.decide_owned(principal, "s3:CreateBucket", bucket, None, &p.tenant, facts)
            .await?;
        let quota = self.directory.quota(&p.tenant);
        if let Some(max) = quota.buckets {
            let held = self.directory.buckets_of(&p.tenant).len() as u64;
            if held >= max {
                return Err(s3_error!(
                    TooManyBuckets,
                    "You have attempted to create more buckets than allowed: tenant {} may hold {max}",
                    p.tenant
                ));
            }
        }
        Ok(())
    }

    /// A request naming the account it expects to own a bucket (`header`: the request's bucket,
    /// or a copy's source) is refused when another owns it, as S3 does: a client that made a
    /// bucket name up, or lost it to someone else, does not write into a stranger's bucket.
    ///
    /// Rare, so the check is a header lookup and the rest is boxed: the access check's future,
    /// moved with every request, does not carry it.
    async fn expect_owner(&self, headers: &http::HeaderMap, header: &http::HeaderName, bucket: &str) -> S3Result<()> {
        match headers.get(header) {
            None => Ok(()),
            Some(expected) => Box::pin(self.owned_by(expected, header, bucket)).await,
        }
    }

    async fn owned_by(&self, expected: &http::HeaderValue, header: &http::HeaderName, bucket: &str) -> S3Result<()> {
        match self.owner(bucket).await {
            Some(owner) if expected.as_bytes() != owner.as_bytes() => Err(s3_error!(
                AccessDenied,
                "Access Denied: bucket {bucket} is not owned by the account {header} names"
            )),
            _ => Ok(()),
        }
    }

    /// A server-side copy also reads its source: `s3:GetObject` there.
    async fn copy_source(&self, req: &S3Request<impl Send>, source: &CopySource) -> S3Result<()> {
        let CopySource::Bucket {
            bucket,
            key,
            version_id,
        } = source
        else {
            return Err(s3_error!(NotImplemented, "Access points are not supported."));
        };
        let facts = RequestFacts::new(
            &req.uri,
            &req.headers,
            req.extensions.get::<ClientInfo>().copied(),
            req.credentials.is_some(),
        );
        let action = if version_id.is_some() {
            "s3:GetObjectVersion"
        } else {
            "s3:GetObject"
        };
        self.decide(
            req.extensions.get::<Arc<Principal>>().map(|p| &**p),
            action,
            bucket,
            Some(key),
            &facts,
        )
        .await?;
        self.expect_owner(&req.headers, &SOURCE_EXPECTED_BUCKET_OWNER, bucket)
            .await
    }
}

#[async_trait::async_trait]
impl S3Access for TenantAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let principal = match cx.credentials() {
            None => None,
            // The signature was checked with this key's secret, so the key is known; it may
            // have been revoked since, between the two lookups.
            Some(credentials) => match self.directory.authenticate(&credentials.access_key) {
                Some((principal, _)) => Some(principal),
                None => {
                    return Err(s3_error!(
                        InvalidAccessKeyId,
                        "The AWS Access Key Id you provided does not exist in our records."
                    ));
                }
            },
        };
        let client = cx.extensions_mut().get::<ClientInfo>().copied();
        let op = cx.s3_op().name();
        let facts = RequestFacts::new(cx.uri(), cx.headers(), client, principal.is_some());
        let has_version = cx
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p.starts_with("versionId=")));
        let action = valley_access::action_for(op, has_version);
        match cx.s3_path() {
            S3Path::Root => {
                let Some(p) = &principal else {
                    return Err(s3_error!(
                        AccessDenied,
                        "Access Denied: anonymous requests cannot list buckets"
                    ));
                };
                self.bill(&p.tenant);
                self.decide_owned(principal.as_deref(), action, "*", None, &p.tenant, &facts)
                    .await?;
            }
            S3Path::Bucket { bucket } if op == "CreateBucket" => {
                if let Some(p) = &principal {
                    self.bill(&p.tenant);
                }
                self.check_create(principal.as_deref(), bucket, &facts).await?
            }
            // A form upload names its key in the form, read after this check: it is decided
            // on the object, as a PUT, once the form is read (`put_object` below).
            S3Path::Bucket { .. } if op == "PostObject" => {}
            S3Path::Bucket { bucket } => {
                // No such bucket: the operation answers NoSuchBucket, billed to nobody.
                if let Some(owner) = self.owner(bucket).await {
                    let decided = self
                        .decide_owned(principal.as_deref(), action, bucket, None, &owner, &facts)
                        .await;
                    self.bill_decided(&owner, principal.as_deref(), &decided);
                    decided?;
                }
            }
            S3Path::Object { bucket, key } => {
                let owner = self.owner(bucket).await;
                let decided = match &owner {
                    Some(owner) => {
                        let decided = self
                            .decide_owned(principal.as_deref(), action, bucket, Some(key), owner, &facts)
                            .await;
                        self.bill_decided(owner, principal.as_deref(), &decided);
                        decided
                    }
                    None => Ok(()),
                };
                if let Err(refusal) = decided {
                    // An upload's initiator may always list its parts and abort it, as in S3.
                    let upload_id = url_query(cx.uri())
                        .into_iter()
                        .find(|(k, _)| k == "uploadId")
                        .map(|(_, v)| v);
                    let own_upload = match (&principal, upload_id) {
                        (Some(p), Some(id)) if matches!(op, "AbortMultipartUpload" | "ListParts") => self
                            .catalog
                            .upload(bucket, key, &id)
                            .await
                            .is_ok_and(|u| u.initiator.as_deref() == Some(p.tenant.as_str())),
                        _ => false,
                    };
                    if !own_upload {
                        if let Some(owner) = &owner
                            && matches!(action, "s3:GetObject" | "s3:GetObjectVersion")
                            && self
                                .may_learn_missing(principal.as_deref(), bucket, key, owner, &facts)
                                .await
                        {
                            return Err(s3_error!(NoSuchKey, "The specified key does not exist."));
                        }
                        return Err(refusal);
                    }
                }
                if let Some(write) = incoming(op, cx.headers()) {
                    let owner = self.directory.owner_of(bucket);
                    self.quotas.check(&self.directory, &self.catalog, &owner, write).await?;
                }
            }
        }
        // Checked once the request is known to be allowed, so that it tells nobody without
        // access who owns a bucket.
        if let S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } = cx.s3_path()
            && op != "CreateBucket"
        {
            self.expect_owner(cx.headers(), &EXPECTED_BUCKET_OWNER, bucket).await?;
        }
        // GET and HEAD take over the version the check read (the same request names the same
        // version), instead of reading it again.
        let checked = matches!(op, "GetObject" | "HeadObject")
            .then(|| facts.read.into_inner().flatten())
            .flatten();
        if let Some(version) = checked {
            cx.extensions_mut().insert(CheckedRead(version));
        }
        if let Some(p) = principal {
            cx.extensions_mut().insert(p);
        }
        Ok(())
    }

    /// A browser form upload (POST to the bucket, the key and fields in the form) is decided
    /// here, once the form is read: as a PUT of that key by the form's signer (or anonymous),
    /// with the form's `acl` as `s3:x-amz-acl`, and against the owner's quota with the file's
    /// size. A PUT was decided by `check` already.
    async fn put_object(&self, req: &mut S3Request<PutObjectInput>) -> S3Result<()> {
        if req.method != http::Method::POST {
            return Ok(());
        }
        let principal = req.extensions.get::<Arc<Principal>>().cloned();
        let mut facts = RequestFacts::new(
            &req.uri,
            &req.headers,
            req.extensions.get::<ClientInfo>().copied(),
            principal.is_some(),
        );
        if let Some(acl) = &req.input.acl {
            facts.given.set("s3:x-amz-acl", acl.as_str());
        }
        let (bucket, key) = (&req.input.bucket, &req.input.key);
        let Some(owner) = self.owner(bucket).await else {
            return Ok(()); // the operation answers NoSuchBucket
        };
        let decided = self
            .decide_owned(principal.as_deref(), "s3:PutObject", bucket, Some(key), &owner, &facts)
            .await;
        self.bill_decided(&owner, principal.as_deref(), &decided);
        decided?;
        let bytes = req
            .input
            .content_length
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        let write = crate::quota::Incoming { bytes, object: true };
        self.quotas.check(&self.directory, &self.catalog, &owner, write).await
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        let source = req.input.copy_source.clone();
        self.copy_source(req, &source).await
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        let source = req.input.copy_source.clone();
        self.copy_source(req, &source).await
    }
}
