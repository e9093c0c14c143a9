//! Server-side encryption (SSE-S3, SSE-KMS and SSE-C): which key a write is sealed under, the
//! sealing record a version carries, and the plaintext a reader gets back.
//!
//! SSE-C: the customer's key, sent with every request, wraps the version's data key; the hub
//! keeps only the wrapped data key and a salted HMAC of the customer's key (to tell a wrong
//! key by name). Without the customer's key nobody, operator included, opens the object.
//!
//! Envelope encryption (`valley-crypto`): each version's bytes are sealed under a fresh data
//! key; the data key is wrapped by a bucket key, which is wrapped by the tenant's
//! key-encryption key in the key service. The version's record carries both wrapped keys, so
//! any hub holding the bytes holds everything but the key-encryption key: replication and
//! repair move ciphertext only, and a reader needs the tenant's key service.
//!
//! A bucket key comes from two shares, each wrapped in the key service: one by the tenant's
//! key-encryption key, one by the bucket's own key (`TENANT/bucket/BUCKET/GENERATION`).
//! Destroying either key in the key service (crypto-shredding, `valley key destroy`) makes
//! every bucket key it took part in unrecoverable: a tenant key shreds every object sealed
//! under it, a bucket's key shreds that bucket's objects, whatever copies of their bytes and
//! records exist at any hub. The destruction also travels as a control record, so every hub
//! forgets the keys it has cached and refuses reads at once.
//!
//! Bucket keys keep the key service off the hot path: a writer reuses its bucket's key for up
//! to [`BUCKET_KEY_LIFETIME`], and a reader keeps unwrapped bucket keys for as long, so steady
//! state makes one key-service call per bucket key per lifetime, not one per object.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use s3s::{S3Error, S3Result, s3_error};
use serde::{Deserialize, Serialize};
use valley_crypto::{ChunkLayout, DataKey, IncrementalSealer, Kms, SegmentSealer, WrappedKey};
use valley_store::ByteStream;
use valley_store::record::{ObjectVersion, Sealing};

/// How long a bucket key seals new objects, and how long an unwrapped one is kept for readers.
pub const BUCKET_KEY_LIFETIME: Duration = Duration::from_secs(300);
/// Unwrapped bucket keys kept for readers at most (a bound on memory, not a tuning knob).
const READ_CACHE_MAX: usize = 4096;
/// Versions kept opened for readers at most (their records parsed and data keys expanded),
/// for as long as a bucket key: a hot object is not unwrapped again on every GET.
const OPENED_CACHE_MAX: usize = 4096;
/// Format 2 adds the bucket share ([`SealRecord::bucket_share`]); format 1 (no share) is still
/// read.
const RECORD_FORMAT: u32 = 2;
const RECORD_FORMAT_V1: u32 = 1;

/// S3's three modes: two with server-held keys, one with the customer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// `x-amz-server-side-encryption: AES256`: the tenant's default key.
    #[serde(rename = "AES256")]
    S3,
    /// `x-amz-server-side-encryption: aws:kms` with a key id the tenant created.
    #[serde(rename = "aws:kms")]
    Kms,
    /// `x-amz-server-side-encryption-customer-*`: the client's own key, never kept.
    #[serde(rename = "SSE-C")]
    Customer,
}

impl Mode {
    /// The `x-amz-server-side-encryption` value (SSE-C answers with its algorithm instead).
    #[must_use]
    pub fn header(self) -> &'static str {
        match self {
            Mode::S3 | Mode::Customer => "AES256",
            Mode::Kms => "aws:kms",
        }
    }
}

/// A customer's key (SSE-C), from a request's three headers, checked.
pub struct CustomerKey {
    key: DataKey,
    /// The key's MD5 as the client sent it (base64), echoed in responses.
    md5: String,
}

/// The SSE-C key a request gives (`None` when it gives none), checked as S3 checks it: the
/// algorithm AES256, a 256-bit key, and its MD5.
pub fn customer_key(algorithm: Option<&str>, key: Option<&str>, md5: Option<&str>) -> S3Result<Option<CustomerKey>> {
    use base64::Engine as _;
    if algorithm.is_none() && key.is_none() && md5.is_none() {
        return Ok(None);
    }
    if algorithm != Some("AES256") {
        return Err(s3_error!(
            InvalidArgument,
            "Requests specifying Server Side Encryption with Customer provided keys must provide a valid encryption algorithm (AES256)."
        ));
    }
    let raw = key
        .and_then(|k| base64::engine::general_purpose::STANDARD.decode(k).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key."
            )
        })?;
    let key = DataKey::from_slice(&raw).map_err(|_| {
        s3_error!(
            InvalidArgument,
            "The secret key was invalid for the specified algorithm."
        )
    })?;
    let Some(md5) = md5 else {
        return Err(s3_error!(
            InvalidArgument,
            "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key."
        ));
    };
    let computed = base64::engine::general_purpose::STANDARD.encode(<md5::Md5 as md5::Digest>::digest(&raw));
    if computed != md5 {
        return Err(s3_error!(
            InvalidArgument,
            "The calculated MD5 hash of the key did not match the hash that was provided."
        ));
    }
    Ok(Some(CustomerKey {
        key,
        md5: md5.to_owned(),
    }))
}

/// SSE-C keys travel only inside TLS (or on loopback, where there is no wire to read): S3
/// refuses them over plain HTTP.
pub fn refuse_plain_transport(client: Option<&crate::ClientInfo>) -> S3Result<()> {
    let ok = client.is_some_and(|c| c.secure || c.ip.is_some_and(|ip| ip.is_loopback()));
    if ok {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidRequest,
            "Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection."
        ))
    }
}

/// Salt and HMAC-SHA256 of a customer's key: tells a wrong key from the right one without
/// keeping anything that opens the object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCheck {
    pub salt: String,
    pub hmac: String,
}

impl KeyCheck {
    fn of(key: &DataKey, salt: [u8; 16]) -> KeyCheck {
        let mac = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &salt), key.expose());
        KeyCheck {
            salt: hex::encode(salt),
            hmac: hex::encode(mac.as_ref()),
        }
    }

    fn matches(&self, key: &DataKey) -> bool {
        let Some(salt) = hex::decode(&self.salt).ok().and_then(|s| <[u8; 16]>::try_from(s).ok()) else {
            return false;
        };
        let Ok(expected) = hex::decode(&self.hmac) else {
            return false;
        };
        ring::hmac::verify(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &salt),
            key.expose(),
            &expected,
        )
        .is_ok()
    }
}

/// What a write asks for: the mode, and for SSE-KMS the client's key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub mode: Mode,
    pub key_id: Option<String>,
}

/// The request's `x-amz-server-side-encryption` (and key id), checked.
pub fn requested(sse: Option<&str>, key_id: Option<&str>) -> S3Result<Option<Requested>> {
    match (sse, key_id) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(s3_error!(
            InvalidArgument,
            "x-amz-server-side-encryption-aws-kms-key-id needs x-amz-server-side-encryption: aws:kms"
        )),
        (Some("AES256"), None) => Ok(Some(Requested {
            mode: Mode::S3,
            key_id: None,
        })),
        (Some("AES256"), Some(_)) => Err(s3_error!(
            InvalidArgument,
            "a KMS key id goes with x-amz-server-side-encryption: aws:kms, not AES256"
        )),
        (Some("aws:kms"), id) => Ok(Some(Requested {
            mode: Mode::Kms,
            key_id: id.map(str::to_owned),
        })),
        (Some(other), _) => Err(s3_error!(
            InvalidArgument,
            "x-amz-server-side-encryption must be AES256 or aws:kms, not {other:?}"
        )),
    }
}

/// A write may ask for server-held keys or its own key (SSE-C), not both (as S3).
pub fn refuse_conflict(sse: bool, sse_c: bool) -> S3Result<()> {
    if sse && sse_c {
        return Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with Customer provided key is incompatible with the encryption method specified"
        ));
    }
    Ok(())
}

/// A read names no server-held encryption: S3 answers 400 to `x-amz-server-side-encryption`
/// (or its key id) on GET and HEAD; the object's own sealing decides how it is opened.
pub fn refuse_on_read(headers: &http::HeaderMap) -> S3Result<()> {
    for name in [
        "x-amz-server-side-encryption",
        "x-amz-server-side-encryption-aws-kms-key-id",
    ] {
        if headers.contains_key(name) {
            return Err(s3_error!(
                InvalidArgument,
                "The {name} header is not supported for this operation."
            ));
        }
    }
    Ok(())
}

/// The sealing record a version carries (in [`Sealing::record`]), format 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealRecord {
    pub format: u32,
    pub mode: Mode,
    /// The key id the client named (SSE-KMS), for the response headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_id: Option<String>,
    /// SSE-S3/KMS: the bucket key, wrapped by the tenant's key-encryption key (its
    /// `wrapping_key`). SSE-C has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_key: Option<WrappedKey>,
    /// SSE-S3/KMS, format 2: the bucket key's second share, wrapped by the bucket's own key
    /// in the key service (its `wrapping_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_share: Option<WrappedKey>,
    /// The data key, wrapped by the bucket key (SSE-S3/KMS) or the customer's key (SSE-C).
    pub data_key: WrappedKey,
    /// Random per version: with bucket and key, what every chunk is bound to.
    pub data_id: String,
    /// SSE-C: the check of the customer's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_key_check: Option<KeyCheck>,
}

impl SealRecord {
    pub fn parse(sealing: &Sealing) -> S3Result<SealRecord> {
        let record: SealRecord = serde_json::from_str(&sealing.record)
            .map_err(|e| crate::convert::internal(format!("unreadable sealing record: {e}")))?;
        if record.format != RECORD_FORMAT && record.format != RECORD_FORMAT_V1 {
            return Err(crate::convert::internal(format!(
                "sealing record format {} (this build reads {RECORD_FORMAT})",
                record.format
            )));
        }
        Ok(record)
    }
}

fn bucket_key_context(bucket: &str) -> Vec<u8> {
    format!("bucket-key/{bucket}").into_bytes()
}

fn binding(bucket: &str, key: &str, data_id: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(bucket.len() + key.len() + data_id.len() + 2);
    for (i, part) in [bucket, key, data_id].into_iter().enumerate() {
        if i > 0 {
            b.push(0);
        }
        b.extend_from_slice(part.as_bytes());
    }
    b
}

/// The key-service id of a tenant's key: tenants name keys in their own space. A name with a
/// '/' is refused: it could name another space's key (a bucket's own, see [`bucket_kek_id`]).
pub fn kek_id(tenant: &str, requested: &Requested) -> S3Result<String> {
    match (&requested.mode, &requested.key_id) {
        (Mode::Kms, Some(id)) => {
            let name = client_key_name(id);
            if name.is_empty() || name.contains('/') {
                return Err(s3_error!(InvalidArgument, "invalid KMS key id {id:?}"));
            }
            Ok(format!("{tenant}/{name}"))
        }
        _ => Ok(format!("{tenant}/default")),
    }
}

/// The key-service id of `bucket`'s own key; `generation` tells this bucket from an earlier
/// one of the same name (its owner record's stamp). Clients cannot name it: their key names
/// have no '/'.
#[must_use]
pub fn bucket_kek_id(tenant: &str, bucket: &str, generation: u64) -> String {
    format!("{}{generation}", bucket_kek_prefix(tenant, bucket))
}

/// What the key-service ids of every generation of `bucket`'s own key start with.
#[must_use]
pub fn bucket_kek_prefix(tenant: &str, bucket: &str) -> String {
    format!("{tenant}/bucket/{bucket}/")
}

/// A client's key id, also in ARN form (`arn:aws:kms:REGION:ACCOUNT:key/NAME`), as its name.
fn client_key_name(id: &str) -> &str {
    id.rsplit_once(":key/").map_or(id, |(_, name)| name)
}

/// A bucket key as a record carries it: its two shares, wrapped.
#[derive(Clone)]
struct WrappedShares {
    tenant_share: WrappedKey,
    bucket_share: WrappedKey,
}

struct WriteKey {
    key: DataKey,
    wrapped: WrappedShares,
    made: Instant,
}

struct ReadKey {
    key: DataKey,
    /// The key-service keys it came from, so destroying one forgets it.
    keks: [String; 2],
    made: Instant,
}

/// The answer to a request that needs a destroyed key.
fn destroyed(record: &valley_tenants::KmsKeyRecord) -> S3Error {
    let what = match &record.bucket {
        Some(bucket) => format!("the key of bucket {bucket:?}"),
        None => format!("the key {}", record.key_id),
    };
    let mut err = S3Error::with_message(
        s3s::S3ErrorCode::Custom("KMS.KMSInvalidStateException".into()),
        format!(
            "{what} was destroyed (crypto-shredded) at unix ms {} by {}: the objects sealed under it can never be read, and it seals nothing new",
            record.destroyed_unix_ms, record.by
        ),
    );
    err.set_status_code(http::StatusCode::BAD_REQUEST);
    err
}

/// Refuses a request that needs key-service key `key_id` once it was destroyed.
fn refuse_destroyed(directory: &valley_tenants::Directory, key_id: &str) -> S3Result<()> {
    match directory.key_destroyed(key_id) {
        Some(record) => Err(destroyed(&record)),
        None => Ok(()),
    }
}

/// A version sealed under server-held keys, opened: its record parsed and a sealer holding
/// its data key, for the object it is bound to.
struct Opened {
    bucket: String,
    key: String,
    record: Arc<SealRecord>,
    sealer: SegmentSealer,
    made: Instant,
}

impl Opened {
    /// The key-service keys its bucket key came from.
    fn keks(&self) -> impl Iterator<Item = &str> {
        self.record
            .bucket_key
            .iter()
            .chain(self.record.bucket_share.iter())
            .map(|w| w.wrapping_key.as_str())
    }
}

/// The hub's encryption: its key service and the bucket keys in use.
pub struct Encryption {
    kms: Arc<dyn Kms>,
    writing: Mutex<HashMap<(String, String), WriteKey>>,
    reading: Mutex<HashMap<String, ReadKey>>,
    /// Versions opened lately, by their sealing record (as stored).
    opened: Mutex<HashMap<String, Arc<Opened>>>,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field("kms", &self.kms)
            .finish_non_exhaustive()
    }
}

fn kms_error(e: valley_crypto::CryptoError) -> S3Error {
    match e {
        valley_crypto::CryptoError::NoSuchKey(id) => {
            let mut err = S3Error::with_message(
                s3s::S3ErrorCode::Custom("KMS.NotFoundException".into()),
                format!("the key {id:?} does not exist in the key service (never created, or destroyed)"),
            );
            err.set_status_code(http::StatusCode::BAD_REQUEST);
            err
        }
        valley_crypto::CryptoError::InvalidKeyId(id) => s3_error!(InvalidArgument, "invalid KMS key id {id:?}"),
        other => s3_error!(InternalError, "key service: {other}"),
    }
}

/// A write being sealed: the sealer its body goes through, the record its version gets, and
/// the digest of its stored bytes being computed.
pub struct Sealer {
    pub incremental: IncrementalSealer,
    pub record: SealRecord,
    pub stored: StoredHash,
}

/// The digest of a sealed write's stored bytes (see `valley_store::digest`): CRC64-NVME for a
/// single write; MD5 for a multipart part, whose ETag it is (the completed object's ETag is
/// then the MD5 of its parts' stored MD5s, what a copy of its stored bytes hashes to).
pub enum StoredHash {
    Crc64(Box<valley_store::digest::Crc64>),
    Md5(md5::Md5),
}

impl StoredHash {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            StoredHash::Crc64(crc) => crc.update(bytes),
            StoredHash::Md5(md5) => md5::Digest::update(md5, bytes),
        }
    }

    #[must_use]
    pub fn finish(self) -> String {
        match self {
            StoredHash::Crc64(crc) => crc.finish(),
            StoredHash::Md5(md5) => hex::encode(md5::Digest::finalize(md5)),
        }
    }

    /// Whether the stored digest is the write's ETag (a part's): then the plaintext's MD5 is
    /// needed only to check a Content-MD5.
    #[must_use]
    pub fn is_etag(&self) -> bool {
        matches!(self, StoredHash::Md5(_))
    }
}

impl SealRecord {
    /// The version's sealing, once its stored bytes are known.
    #[must_use]
    pub fn sealing(&self, stored_size: u64, stored_digest: String) -> Sealing {
        Sealing {
            record: serde_json::to_string(self).expect("a sealing record serializes"),
            stored_size,
            stored_digest,
            stored_part_sizes: Vec::new(),
            part_numbers: Vec::new(),
        }
    }
}

impl Encryption {
    #[must_use]
    pub fn new(kms: Arc<dyn Kms>) -> Self {
        Self {
            kms,
            writing: Mutex::new(HashMap::new()),
            reading: Mutex::new(HashMap::new()),
            opened: Mutex::new(HashMap::new()),
        }
    }

    /// The key service's key ids.
    pub fn list_keys(&self) -> Result<Vec<String>, valley_crypto::CryptoError> {
        self.kms.list_keys()
    }

    /// Whether the key service holds key `id`.
    pub fn has_key(&self, id: &str) -> Result<bool, valley_crypto::CryptoError> {
        self.kms.has_key(id)
    }

    /// Key-service key `id`, made if it does not exist yet.
    fn ensure_key(&self, id: &str) -> S3Result<()> {
        if !self.kms.has_key(id).map_err(kms_error)? {
            match self.kms.create_key(id) {
                Ok(()) | Err(valley_crypto::CryptoError::KeyExists(_)) => {}
                Err(e) => return Err(kms_error(e)),
            }
        }
        Ok(())
    }

    /// The bucket key new objects of `bucket` are sealed under with key-encryption key `kek`
    /// and the bucket's own key `bucket_kek`. SSE-S3's default key and a bucket's key are made
    /// on first use; an SSE-KMS key must exist.
    fn write_key(&self, bucket: &str, kek: &str, bucket_kek: &str, mode: Mode) -> S3Result<(DataKey, WrappedShares)> {
        let slot = (kek.to_owned(), bucket_kek.to_owned());
        if let Some(k) = self.writing.lock().expect("bucket keys").get(&slot)
            && k.made.elapsed() < BUCKET_KEY_LIFETIME
        {
            return Ok((k.key.clone(), k.wrapped.clone()));
        }
        if mode == Mode::S3 {
            self.ensure_key(kek)?;
        }
        self.ensure_key(bucket_kek)?;
        let (tenant_share, bucket_share) = (DataKey::generate(), DataKey::generate());
        let context = bucket_key_context(bucket);
        let wrapped = WrappedShares {
            tenant_share: self.kms.wrap(kek, &tenant_share, &context).map_err(kms_error)?,
            bucket_share: self.kms.wrap(bucket_kek, &bucket_share, &context).map_err(kms_error)?,
        };
        let key = DataKey::from_shares(&tenant_share, &bucket_share);
        self.writing.lock().expect("bucket keys").insert(
            slot,
            WriteKey {
                key: key.clone(),
                wrapped: wrapped.clone(),
                made: Instant::now(),
            },
        );
        Ok((key, wrapped))
    }

    /// Forgets every cached bucket key that key-service key `key_id` took part in, and
    /// destroys the key in this hub's key service (it may be gone already: destroyed through
    /// another hub sharing the service). Called when this hub learns the key was destroyed.
    pub fn forget_destroyed(&self, key_id: &str) {
        self.writing
            .lock()
            .expect("bucket keys")
            .retain(|(kek, bucket_kek), _| kek != key_id && bucket_kek != key_id);
        self.reading
            .lock()
            .expect("bucket keys")
            .retain(|_, k| !k.keks.iter().any(|kek| kek == key_id));
        self.opened
            .lock()
            .expect("opened versions")
            .retain(|_, o| !o.keks().any(|kek| kek == key_id));
        match self.kms.destroy_key(key_id) {
            Ok(()) => tracing::warn!(
                key = key_id,
                "key destroyed in this hub's key service (crypto-shredding)"
            ),
            Err(valley_crypto::CryptoError::NoSuchKey(_)) => {
                tracing::info!(key = key_id, "key destroyed: not in this hub's key service (any more)");
            }
            Err(e) => {
                tracing::error!(key = key_id, error = %e, "destroying a key in this hub's key service failed: reads under it are refused all the same")
            }
        }
    }

    /// The sealing record of a new version of `bucket`/`key`, and its data key. Refused when
    /// a key it would be sealed under was destroyed.
    pub fn new_record(
        &self,
        directory: &valley_tenants::Directory,
        bucket: &str,
        key: &str,
        requested: &Requested,
    ) -> S3Result<(SealRecord, DataKey)> {
        let tenant = directory.owner_of(bucket);
        let kek = kek_id(&tenant, requested)?;
        let bucket_kek = bucket_kek_id(&tenant, bucket, directory.bucket_generation(bucket));
        refuse_destroyed(directory, &kek)?;
        refuse_destroyed(directory, &bucket_kek)?;
        let (bucket_key, wrapped) = self.write_key(bucket, &kek, &bucket_kek, requested.mode)?;
        let data_key = DataKey::generate();
        let data_id = hex::encode(rand::random::<[u8; 16]>());
        let bound = binding(bucket, key, &data_id);
        let record = SealRecord {
            format: RECORD_FORMAT,
            mode: requested.mode,
            client_key_id: requested.key_id.clone(),
            data_key: bucket_key.wrap("bucket-key", &data_key, &bound),
            bucket_key: Some(wrapped.tenant_share),
            bucket_share: Some(wrapped.bucket_share),
            data_id,
            customer_key_check: None,
        };
        Ok((record, data_key))
    }

    /// The bucket key of a record's wrapped shares (a format-1 record has the first alone),
    /// from the cache or the key service.
    fn read_key(&self, bucket: &str, wrapped: &WrappedKey, share: Option<&WrappedKey>) -> S3Result<DataKey> {
        let slot = wrapped.sealed.clone();
        if let Some(k) = self.reading.lock().expect("bucket keys").get(&slot)
            && k.made.elapsed() < BUCKET_KEY_LIFETIME
        {
            return Ok(k.key.clone());
        }
        let context = bucket_key_context(bucket);
        let first = self.kms.unwrap(wrapped, &context).map_err(kms_error)?;
        let (key, second_id) = match share {
            Some(share) => {
                let second = self.kms.unwrap(share, &context).map_err(kms_error)?;
                (DataKey::from_shares(&first, &second), share.wrapping_key.clone())
            }
            None => (first, wrapped.wrapping_key.clone()),
        };
        let mut cache = self.reading.lock().expect("bucket keys");
        if cache.len() >= READ_CACHE_MAX {
            cache.retain(|_, k| k.made.elapsed() < BUCKET_KEY_LIFETIME);
            if cache.len() >= READ_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(
            slot,
            ReadKey {
                key: key.clone(),
                keks: [wrapped.wrapping_key.clone(), second_id],
                made: Instant::now(),
            },
        );
        Ok(key)
    }

    /// The version sealed as `record` (as stored) if it was opened lately for `bucket`/`key`.
    fn opened(&self, bucket: &str, key: &str, record: &str) -> Option<Arc<Opened>> {
        let cache = self.opened.lock().expect("opened versions");
        let hit = cache.get(record)?;
        (hit.bucket == bucket && hit.key == key && hit.made.elapsed() < BUCKET_KEY_LIFETIME).then(|| hit.clone())
    }

    fn remember(&self, record_text: &str, opened: Opened) {
        let mut cache = self.opened.lock().expect("opened versions");
        if cache.len() >= OPENED_CACHE_MAX {
            cache.retain(|_, o| o.made.elapsed() < BUCKET_KEY_LIFETIME);
            if cache.len() >= OPENED_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(record_text.to_owned(), Arc::new(opened));
    }

    /// The bucket key a server-held record's data key is wrapped by; refused when a key it
    /// came from was destroyed (whatever this hub's key service or cache still holds).
    fn bucket_key_of(
        &self,
        directory: &valley_tenants::Directory,
        bucket: &str,
        record: &SealRecord,
    ) -> S3Result<DataKey> {
        let wrapped = record
            .bucket_key
            .as_ref()
            .ok_or_else(|| crate::convert::internal("a server-held sealing without a bucket key"))?;
        refuse_destroyed(directory, &wrapped.wrapping_key)?;
        if let Some(share) = &record.bucket_share {
            refuse_destroyed(directory, &share.wrapping_key)?;
        }
        self.read_key(bucket, wrapped, record.bucket_share.as_ref())
    }
}

/// The sealing record of a new version of `bucket`/`key` under a customer's key (SSE-C), and
/// its data key.
#[must_use]
pub fn customer_record(bucket: &str, key: &str, customer: &CustomerKey) -> (SealRecord, DataKey) {
    let data_key = DataKey::generate();
    let data_id = hex::encode(rand::random::<[u8; 16]>());
    let bound = binding(bucket, key, &data_id);
    let record = SealRecord {
        format: RECORD_FORMAT,
        mode: Mode::Customer,
        client_key_id: None,
        bucket_key: None,
        bucket_share: None,
        data_key: customer.key.wrap("customer-key", &data_key, &bound),
        data_id,
        customer_key_check: Some(KeyCheck::of(&customer.key, rand::random())),
    };
    (record, data_key)
}

/// Whether a read's SSE-C key fits the version: required, and right, for an SSE-C object;
/// not given for any other (as S3: 400 either way).
pub fn check_customer(version: &ObjectVersion, customer: Option<&CustomerKey>) -> S3Result<Option<SealRecord>> {
    let record = version.sealing.as_ref().map(SealRecord::parse).transpose()?;
    check_record_key(record, customer)
}

/// [`check_customer`] on a parsed record (`None`: not sealed).
fn check_record_key(record: Option<SealRecord>, customer: Option<&CustomerKey>) -> S3Result<Option<SealRecord>> {
    let customer_mode = record.as_ref().is_some_and(|r| r.mode == Mode::Customer);
    match (customer_mode, customer) {
        (true, None) => Err(s3_error!(
            InvalidRequest,
            "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object."
        )),
        (false, Some(_)) => Err(s3_error!(
            InvalidRequest,
            "The encryption parameters are not applicable to this object."
        )),
        (true, Some(c)) => {
            let check = record.as_ref().and_then(|r| r.customer_key_check.as_ref());
            if check.is_some_and(|k| k.matches(&c.key)) {
                Ok(record)
            } else {
                Err(s3_error!(
                    InvalidRequest,
                    "The provided customer key is not the one the object was encrypted with."
                ))
            }
        }
        (false, None) => Ok(record),
    }
}

fn no_key_service() -> S3Error {
    s3_error!(
        NotImplemented,
        "Server-side encryption needs a key service: start the hub with --kms-master-key-file (or VALLEY_KMS_MASTER_KEY). The request was not stored."
    )
}

/// The sealing of a new version (or upload) of `bucket`/`key`: under the request's SSE-C key,
/// else as it asks for server-held keys, else as the bucket's default encryption says; `None`
/// for plaintext.
pub fn new_sealing(
    s: &crate::ValleyS3,
    bucket: &str,
    key: &str,
    asked: Option<Requested>,
    customer: Option<&CustomerKey>,
) -> S3Result<Option<(SealRecord, DataKey)>> {
    if let Some(customer) = customer {
        return Ok(Some(customer_record(bucket, key, customer)));
    }
    let requested = match asked {
        Some(asked) => Some(asked),
        None => crate::bucket_encryption::default_for(s, bucket)?,
    };
    let Some(requested) = requested else {
        return Ok(None);
    };
    let enc = s.sse.as_ref().ok_or_else(no_key_service)?;
    enc.new_record(&s.directory, bucket, key, &requested).map(Some)
}

/// The sealer of a single write (segment 0), as [`new_sealing`] decides.
pub fn write_sealer(
    s: &crate::ValleyS3,
    bucket: &str,
    key: &str,
    asked: Option<Requested>,
    customer: Option<&CustomerKey>,
) -> S3Result<Option<Sealer>> {
    Ok(new_sealing(s, bucket, key, asked, customer)?.map(|(record, data_key)| {
        let bound = binding(bucket, key, &record.data_id);
        Sealer {
            incremental: IncrementalSealer::new(SegmentSealer::new(&data_key, &bound, 0)),
            record,
            stored: StoredHash::Crc64(Box::default()),
        }
    }))
}

/// The data key of a version sealed as `record`: unwrapped with the customer's key (SSE-C) or
/// the bucket key from the key service.
fn data_key_of(
    s: &crate::ValleyS3,
    customer: Option<&CustomerKey>,
    bucket: &str,
    key: &str,
    record: &SealRecord,
) -> S3Result<DataKey> {
    let bound = binding(bucket, key, &record.data_id);
    let wrapping = match (record.mode, customer, s.sse.as_deref()) {
        (Mode::Customer, Some(c), _) => c.key.clone(),
        (Mode::Customer, None, _) => return Err(crate::convert::internal("SSE-C read without its key")),
        (_, _, Some(enc)) => enc.bucket_key_of(&s.directory, bucket, record)?,
        (_, _, None) => {
            return Err(s3_error!(
                InvalidRequest,
                "This object is encrypted and this hub has no key service configured (--kms-master-key-file)."
            ));
        }
    };
    wrapping
        .unwrap_key(&record.data_key, &bound)
        .map_err(|e| s3_error!(InternalError, "the object's data key does not open: {e}"))
}

/// Whether a request's SSE-C key fits an upload sealed as `record` (its JSON record): required,
/// and right, for an SSE-C upload (its completion as much as its parts).
pub fn check_upload_key(record: &str, customer: Option<&CustomerKey>) -> S3Result<SealRecord> {
    let record: SealRecord = serde_json::from_str(record)
        .map_err(|e| crate::convert::internal(format!("unreadable sealing record: {e}")))?;
    Ok(check_record_key(Some(record), customer)?.expect("given"))
}

/// The sealer of part `part` of an upload sealed as `record` (the upload's JSON record); an
/// SSE-C upload's parts carry its key, checked against the upload's.
pub fn part_sealer(
    s: &crate::ValleyS3,
    customer: Option<&CustomerKey>,
    bucket: &str,
    key: &str,
    record: &str,
    part: u32,
) -> S3Result<Sealer> {
    let record = check_upload_key(record, customer)?;
    let data_key = data_key_of(s, customer, bucket, key, &record)?;
    let bound = binding(bucket, key, &record.data_id);
    Ok(Sealer {
        incremental: IncrementalSealer::new(SegmentSealer::new(&data_key, &bound, part)),
        record,
        stored: StoredHash::Md5(<md5::Md5 as md5::Digest>::new()),
    })
}

/// The SSE-C key of a request's headers (checked, and refused off TLS except on loopback).
pub fn request_customer_key(
    extensions: &http::Extensions,
    algorithm: Option<&str>,
    key: Option<&str>,
    md5: Option<&str>,
) -> S3Result<Option<CustomerKey>> {
    let customer = customer_key(algorithm, key, md5)?;
    if customer.is_some() {
        refuse_plain_transport(extensions.get::<crate::ClientInfo>())?;
    }
    Ok(customer)
}

/// Where a read of `start..start+len` of a version's plaintext comes from: the stored range
/// to fetch, and how to turn it into the plaintext.
pub enum PlainRead {
    /// Not sealed: the stored bytes are the plaintext.
    Plain,
    Sealed(Box<SealedRead>),
}

/// A read of sealed chunks: the segments it covers (one, or the parts of a multipart
/// object), and the stored range holding their chunks.
pub struct SealedRead {
    segments: Vec<valley_crypto::stream::SegmentRead>,
    stored: std::ops::Range<u64>,
    headers: ResponseHeaders,
}

/// `version` of `bucket`/`key` opened for reading: its record and a sealer keyed with its data
/// key (`None`: not sealed). Server-held versions opened lately come from the cache, still
/// refused once a key they came from was destroyed; SSE-C versions are opened with the
/// request's key every time.
fn open_version(
    s: &crate::ValleyS3,
    customer: Option<&CustomerKey>,
    bucket: &str,
    key: &str,
    version: &ObjectVersion,
) -> S3Result<Option<(Arc<SealRecord>, SegmentSealer)>> {
    let Some(sealing) = &version.sealing else {
        check_record_key(None, customer)?;
        return Ok(None);
    };
    let enc = s.sse.as_deref();
    if customer.is_none()
        && let Some(hit) = enc.and_then(|e| e.opened(bucket, key, &sealing.record))
    {
        for kek in hit.keks() {
            refuse_destroyed(&s.directory, kek)?;
        }
        return Ok(Some((hit.record.clone(), hit.sealer.clone())));
    }
    let record = check_record_key(Some(SealRecord::parse(sealing)?), customer)?.expect("given");
    let data_key = data_key_of(s, customer, bucket, key, &record)?;
    let sealer = SegmentSealer::new(&data_key, &binding(bucket, key, &record.data_id), 0);
    let record = Arc::new(record);
    if record.mode != Mode::Customer
        && let Some(enc) = enc
    {
        enc.remember(
            &sealing.record,
            Opened {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                record: record.clone(),
                sealer: sealer.clone(),
                made: Instant::now(),
            },
        );
    }
    Ok(Some((record, sealer)))
}

/// Plans a plaintext read of `version` (of `bucket`/`key`).
pub fn plan_read(
    s: &crate::ValleyS3,
    customer: Option<&CustomerKey>,
    bucket: &str,
    key: &str,
    version: &ObjectVersion,
    start: u64,
    len: u64,
) -> S3Result<PlainRead> {
    let Some((record, opener)) = open_version(s, customer, bucket, key, version)? else {
        return Ok(PlainRead::Plain);
    };
    let sealing = version.sealing.as_ref().expect("opened: sealed");
    let end = start + len;
    // Each part is a segment of its own (a single PUT: one segment, number 0).
    let parts: Vec<(u32, u64, u64)> = if sealing.stored_part_sizes.is_empty() {
        vec![(0, version.size, sealing.stored_size)]
    } else {
        sealing
            .part_numbers
            .iter()
            .zip(&version.part_sizes)
            .zip(&sealing.stored_part_sizes)
            .map(|((n, p), st)| (*n, *p, *st))
            .collect()
    };
    let (mut plain_at, mut stored_at) = (0u64, 0u64);
    let mut segments = Vec::new();
    // The stored span covering every segment read: (first start, last end).
    let mut span_of_read: Option<(u64, u64)> = None;
    for (number, plain_len, stored_len) in parts {
        let (p0, p1) = (plain_at, plain_at + plain_len);
        if p0 < end && p1 > start {
            let layout = ChunkLayout::new(plain_len);
            let (a, b) = (start.max(p0) - p0, end.min(p1) - p0);
            let (_, span) = layout.sealed_span(a, b);
            let (from, to) = (stored_at + span.start, stored_at + span.end);
            span_of_read = Some(span_of_read.map_or((from, to), |(a, b)| (a.min(from), b.max(to))));
            segments.push(valley_crypto::stream::SegmentRead {
                sealer: opener.for_segment(number),
                layout,
                start: a,
                end: b,
            });
        }
        plain_at = p1;
        stored_at += stored_len;
    }
    let stored = span_of_read.map_or(0..0, |(from, to)| from..to);
    let headers = headers_of(&record, customer);
    Ok(PlainRead::Sealed(Box::new(SealedRead {
        segments,
        stored,
        headers,
    })))
}

impl PlainRead {
    /// The encryption headers of the response (the sealing record is parsed once a read).
    #[must_use]
    pub fn response_headers(&self) -> ResponseHeaders {
        match self {
            PlainRead::Plain => ResponseHeaders::default(),
            PlainRead::Sealed(read) => read.headers.clone(),
        }
    }

    /// The stored range to read for plaintext `start..start+len`.
    #[must_use]
    pub fn stored_range(&self, start: u64, len: u64) -> (u64, u64) {
        match self {
            PlainRead::Plain => (start, len),
            PlainRead::Sealed(read) => (read.stored.start, read.stored.end - read.stored.start),
        }
    }

    /// The plaintext of `start..start+len` from the stored bytes read.
    #[must_use]
    pub fn plaintext(self, stored: ByteStream, start: u64, len: u64) -> ByteStream {
        match self {
            PlainRead::Plain => stored,
            PlainRead::Sealed(read) => {
                let _ = (start, len);
                valley_crypto::stream::open_segments(stored, read.segments)
            }
        }
    }
}

/// The encryption headers a version's responses carry.
#[derive(Debug, Default, Clone)]
pub struct ResponseHeaders {
    pub sse: Option<s3s::dto::ServerSideEncryption>,
    pub kms_key_id: Option<String>,
    pub customer_algorithm: Option<String>,
    pub customer_key_md5: Option<String>,
}

/// What `version`'s responses say of its encryption (`customer`: the request's SSE-C key).
#[must_use]
pub fn response_headers(version: &ObjectVersion, customer: Option<&CustomerKey>) -> ResponseHeaders {
    match version.sealing.as_ref().and_then(|s| SealRecord::parse(s).ok()) {
        Some(record) => headers_of(&record, customer),
        None => ResponseHeaders::default(),
    }
}

/// What the responses of a version sealed as `record` say of its encryption.
#[must_use]
pub fn headers_of(record: &SealRecord, customer: Option<&CustomerKey>) -> ResponseHeaders {
    match record.mode {
        Mode::Customer => ResponseHeaders {
            customer_algorithm: Some("AES256".to_owned()),
            customer_key_md5: customer.map(|c| c.md5.clone()),
            ..ResponseHeaders::default()
        },
        mode => ResponseHeaders {
            sse: Some(s3s::dto::ServerSideEncryption::from(mode.header().to_owned())),
            kms_key_id: record.client_key_id.clone().filter(|_| mode == Mode::Kms),
            ..ResponseHeaders::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_keys_are_checked_and_travel_only_inside_tls_or_on_loopback() {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let key = [7u8; 32];
        let md5 = b64(&<md5::Md5 as md5::Digest>::digest(key));
        assert!(customer_key(None, None, None).unwrap().is_none());
        let ok = customer_key(Some("AES256"), Some(&b64(&key)), Some(&md5))
            .unwrap()
            .unwrap();
        assert_eq!(ok.md5, md5);
        assert!(customer_key(Some("AES128"), Some(&b64(&key)), Some(&md5)).is_err());
        assert!(customer_key(None, Some(&b64(&key)), Some(&md5)).is_err());
        assert!(
            customer_key(Some("AES256"), Some(&b64(&[7u8; 16])), Some(&md5)).is_err(),
            "128-bit key"
        );
        assert!(customer_key(Some("AES256"), Some(&b64(&key)), None).is_err());
        assert!(customer_key(Some("AES256"), Some(&b64(&key)), Some("AAAAAAAAAAAAAAAAAAAAAA==")).is_err());
        let client = |ip: &str, secure| crate::ClientInfo {
            ip: Some(ip.parse().unwrap()),
            secure,
        };
        assert!(refuse_plain_transport(Some(&client("127.0.0.1", false))).is_ok());
        assert!(refuse_plain_transport(Some(&client("::1", false))).is_ok());
        assert!(refuse_plain_transport(Some(&client("10.0.0.5", true))).is_ok());
        assert!(refuse_plain_transport(Some(&client("10.0.0.5", false))).is_err());
        assert!(refuse_plain_transport(None).is_err());
        // The salted check tells the right key from another, and keeps neither.
        let check = KeyCheck::of(&ok.key, [1; 16]);
        assert!(check.matches(&ok.key));
        assert!(!check.matches(&DataKey::from_bytes([8; 32])));
        assert!(!check.hmac.contains(&hex::encode(key)));
    }

    fn keystore(dir: &tempfile::TempDir) -> Arc<valley_crypto::LocalKeystore> {
        Arc::new(valley_crypto::LocalKeystore::open(&dir.path().join("ks.json"), DataKey::from_bytes([3; 32])).unwrap())
    }

    #[test]
    fn a_bucket_key_needs_both_shares_and_a_destroyed_one_forgets_it() {
        let dir = tempfile::tempdir().unwrap();
        let kms = keystore(&dir);
        let enc = Encryption::new(kms.clone());
        let (kek, bucket_kek) = ("acme/default", bucket_kek_id("acme", "photos", 9));
        let (key, shares) = enc.write_key("photos", kek, &bucket_kek, Mode::S3).unwrap();
        assert_eq!(shares.tenant_share.wrapping_key, kek);
        assert_eq!(shares.bucket_share.wrapping_key, bucket_kek);
        let (again, _) = enc.write_key("photos", kek, &bucket_kek, Mode::S3).unwrap();
        assert_eq!(key.expose(), again.expose(), "cached for the bucket key's lifetime");
        let read = enc
            .read_key("photos", &shares.tenant_share, Some(&shares.bucket_share))
            .unwrap();
        assert_eq!(read.expose(), key.expose());
        // Without its bucket share (a format-1 reader), the first share alone is another key.
        let fresh = Encryption::new(kms.clone());
        assert_ne!(
            fresh.read_key("photos", &shares.tenant_share, None).unwrap().expose(),
            key.expose()
        );
        // Destroying the bucket's key forgets the cached keys and the key service's copy:
        // the bucket key cannot be made again, here or by another process.
        enc.forget_destroyed(&bucket_kek);
        assert!(!kms.has_key(&bucket_kek).unwrap());
        assert!(
            enc.read_key("photos", &shares.tenant_share, Some(&shares.bucket_share))
                .is_err()
        );
        assert!(enc.writing.lock().unwrap().is_empty() && enc.reading.lock().unwrap().is_empty());
    }

    #[test]
    fn a_format_1_record_still_opens() {
        // Format 1 (session 9): the bucket key wrapped by the tenant's key alone.
        let dir = tempfile::tempdir().unwrap();
        let kms = keystore(&dir);
        kms.create_key("default/default").unwrap();
        let bucket_key = DataKey::from_bytes([5; 32]);
        let wrapped = kms
            .wrap("default/default", &bucket_key, &bucket_key_context("b"))
            .unwrap();
        let data_key = DataKey::from_bytes([6; 32]);
        let v1 = serde_json::json!({
            "format": 1,
            "mode": "AES256",
            "bucket_key": wrapped,
            "data_key": bucket_key.wrap("bucket-key", &data_key, &binding("b", "k", "d1")),
            "data_id": "d1",
        });
        let sealing = Sealing {
            record: v1.to_string(),
            stored_size: 0,
            stored_digest: String::new(),
            stored_part_sizes: Vec::new(),
            part_numbers: Vec::new(),
        };
        let record = SealRecord::parse(&sealing).unwrap();
        assert!(record.bucket_share.is_none());
        let enc = Encryption::new(kms);
        let opened = enc
            .read_key("b", record.bucket_key.as_ref().unwrap(), None)
            .unwrap()
            .unwrap_key(&record.data_key, &binding("b", "k", "d1"))
            .unwrap();
        assert_eq!(opened.expose(), data_key.expose());
        let mut v3 = v1.clone();
        v3["format"] = 3.into();
        let sealing = Sealing {
            record: v3.to_string(),
            ..sealing
        };
        assert!(
            SealRecord::parse(&sealing).is_err(),
            "a newer format is refused by name"
        );
    }

    #[test]
    fn requests_are_checked() {
        assert_eq!(requested(None, None).unwrap(), None);
        assert_eq!(requested(Some("AES256"), None).unwrap().unwrap().mode, Mode::S3);
        let kms = requested(Some("aws:kms"), Some("testkey-1")).unwrap().unwrap();
        assert_eq!((kms.mode, kms.key_id.as_deref()), (Mode::Kms, Some("testkey-1")));
        assert!(requested(Some("AES128"), None).is_err());
        assert!(requested(None, Some("k")).is_err());
        assert!(requested(Some("AES256"), Some("k")).is_err());
        assert_eq!(kek_id("acme", &kms).unwrap(), "acme/testkey-1");
        let sneaky = requested(Some("aws:kms"), Some("bucket/photos/0")).unwrap().unwrap();
        assert!(
            kek_id("acme", &sneaky).is_err(),
            "a client cannot name a bucket's own key"
        );
        let arn = requested(Some("aws:kms"), Some("arn:aws:kms:us-east-1:123:key/testkey-2"))
            .unwrap()
            .unwrap();
        assert_eq!(kek_id("acme", &arn).unwrap(), "acme/testkey-2");
        assert_eq!(
            kek_id("acme", &requested(Some("AES256"), None).unwrap().unwrap()).unwrap(),
            "acme/default"
        );
    }
}
