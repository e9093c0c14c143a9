//! Server-side encryption (SSE-S3 and SSE-KMS): which key a write is sealed under, the
//! sealing record a version carries, and the plaintext a reader gets back.
//!
//! Envelope encryption (`valley-crypto`): each version's bytes are sealed under a fresh data
//! key; the data key is wrapped by a bucket key, which is wrapped by the tenant's
//! key-encryption key in the key service. The version's record carries both wrapped keys, so
//! any hub holding the bytes holds everything but the key-encryption key: replication and
//! repair move ciphertext only, and a reader needs the tenant's key service.
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
const RECORD_FORMAT: u32 = 1;

/// S3's two modes with server-held keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// `x-amz-server-side-encryption: AES256`: the tenant's default key.
    #[serde(rename = "AES256")]
    S3,
    /// `x-amz-server-side-encryption: aws:kms` with a key id the tenant created.
    #[serde(rename = "aws:kms")]
    Kms,
}

impl Mode {
    #[must_use]
    pub fn header(self) -> &'static str {
        match self {
            Mode::S3 => "AES256",
            Mode::Kms => "aws:kms",
        }
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
    /// The bucket key, wrapped by the tenant's key-encryption key (its `wrapping_key`).
    pub bucket_key: WrappedKey,
    /// The data key, wrapped by the bucket key.
    pub data_key: WrappedKey,
    /// Random per version: with bucket and key, what every chunk is bound to.
    pub data_id: String,
}

impl SealRecord {
    pub fn parse(sealing: &Sealing) -> S3Result<SealRecord> {
        let record: SealRecord = serde_json::from_str(&sealing.record)
            .map_err(|e| crate::convert::internal(format!("unreadable sealing record: {e}")))?;
        if record.format != RECORD_FORMAT {
            return Err(crate::convert::internal(format!(
                "sealing record format {} (this build reads {RECORD_FORMAT})",
                record.format
            )));
        }
        Ok(record)
    }

    /// The key-encryption key's id in the key service.
    #[must_use]
    pub fn kek(&self) -> &str {
        &self.bucket_key.wrapping_key
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

/// The key-service id of a tenant's key: tenants name keys in their own space.
#[must_use]
pub fn kek_id(tenant: &str, requested: &Requested) -> String {
    match (&requested.mode, &requested.key_id) {
        (Mode::Kms, Some(id)) => format!("{tenant}/{}", client_key_name(id)),
        _ => format!("{tenant}/default"),
    }
}

/// A client's key id, also in ARN form (`arn:aws:kms:REGION:ACCOUNT:key/NAME`), as its name.
fn client_key_name(id: &str) -> &str {
    id.rsplit_once(":key/").map_or(id, |(_, name)| name)
}

struct WriteKey {
    key: DataKey,
    wrapped: WrappedKey,
    made: Instant,
}

struct ReadKey {
    key: DataKey,
    made: Instant,
}

/// The hub's encryption: its key service and the bucket keys in use.
pub struct Encryption {
    kms: Arc<dyn Kms>,
    writing: Mutex<HashMap<(String, String), WriteKey>>,
    reading: Mutex<HashMap<String, ReadKey>>,
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

/// A write being sealed: the sealer its body goes through and the record its version gets.
pub struct Sealer {
    pub incremental: IncrementalSealer,
    pub record: SealRecord,
}

impl SealRecord {
    /// The version's sealing, once its stored bytes are known.
    #[must_use]
    pub fn sealing(&self, stored_size: u64, stored_md5: String) -> Sealing {
        Sealing {
            record: serde_json::to_string(self).expect("a sealing record serializes"),
            stored_size,
            stored_md5,
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
        }
    }

    /// The bucket key new objects of `bucket` are sealed under with key-encryption key `kek`.
    /// SSE-S3's default key is made on first use; an SSE-KMS key must exist.
    fn write_key(&self, bucket: &str, kek: &str, mode: Mode) -> S3Result<(DataKey, WrappedKey)> {
        let slot = (kek.to_owned(), bucket.to_owned());
        if let Some(k) = self.writing.lock().expect("bucket keys").get(&slot)
            && k.made.elapsed() < BUCKET_KEY_LIFETIME
        {
            return Ok((k.key.clone(), k.wrapped.clone()));
        }
        if mode == Mode::S3 && !self.kms.has_key(kek).map_err(kms_error)? {
            match self.kms.create_key(kek) {
                Ok(()) | Err(valley_crypto::CryptoError::KeyExists(_)) => {}
                Err(e) => return Err(kms_error(e)),
            }
        }
        let key = DataKey::generate();
        let wrapped = self
            .kms
            .wrap(kek, &key, &bucket_key_context(bucket))
            .map_err(kms_error)?;
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

    /// The sealer of a new version of `bucket`/`key` owned by `tenant`.
    pub fn sealer(&self, tenant: &str, bucket: &str, key: &str, requested: &Requested) -> S3Result<Sealer> {
        let kek = kek_id(tenant, requested);
        let (bucket_key, wrapped_bucket_key) = self.write_key(bucket, &kek, requested.mode)?;
        let data_key = DataKey::generate();
        let data_id = hex::encode(rand::random::<[u8; 16]>());
        let bound = binding(bucket, key, &data_id);
        let record = SealRecord {
            format: RECORD_FORMAT,
            mode: requested.mode,
            client_key_id: requested.key_id.clone(),
            data_key: bucket_key.wrap("bucket-key", &data_key, &bound),
            bucket_key: wrapped_bucket_key,
            data_id,
        };
        Ok(Sealer {
            incremental: IncrementalSealer::new(SegmentSealer::new(&data_key, &bound, 0)),
            record,
        })
    }

    /// The bucket key a record's data key is wrapped by, from the cache or the key service.
    fn read_key(&self, bucket: &str, record: &SealRecord) -> S3Result<DataKey> {
        let slot = record.bucket_key.sealed.clone();
        if let Some(k) = self.reading.lock().expect("bucket keys").get(&slot)
            && k.made.elapsed() < BUCKET_KEY_LIFETIME
        {
            return Ok(k.key.clone());
        }
        let key = self
            .kms
            .unwrap(&record.bucket_key, &bucket_key_context(bucket))
            .map_err(kms_error)?;
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
                made: Instant::now(),
            },
        );
        Ok(key)
    }

    /// Forgets every bucket key made under `kek`, so that nothing sealed or opened after its
    /// destruction uses a cached copy.
    pub fn forget(&self, kek: &str) {
        self.writing.lock().expect("bucket keys").retain(|(k, _), _| k != kek);
        self.reading.lock().expect("bucket keys").clear();
    }

    /// The opener of a sealed version of `bucket`/`key`.
    fn opener(&self, bucket: &str, key: &str, record: &SealRecord) -> S3Result<SegmentSealer> {
        let bucket_key = self.read_key(bucket, record)?;
        let bound = binding(bucket, key, &record.data_id);
        let data_key = bucket_key
            .unwrap_key(&record.data_key, &bound)
            .map_err(|e| s3_error!(InternalError, "the object's data key does not open: {e}"))?;
        Ok(SegmentSealer::new(&data_key, &bound, 0))
    }
}

/// The sealer of a new version of `bucket`/`key`, under its owner's keys.
pub fn sealer_for(s: &crate::ValleyS3, bucket: &str, key: &str, requested: &Requested) -> S3Result<Sealer> {
    let Some(enc) = &s.sse else {
        return Err(s3_error!(
            NotImplemented,
            "Server-side encryption needs a key service: start the hub with --kms-master-key-file (or VALLEY_KMS_MASTER_KEY). The request was not stored."
        ));
    };
    enc.sealer(&s.directory.owner_of(bucket), bucket, key, requested)
}

/// Where a read of `start..start+len` of a version's plaintext comes from: the stored range
/// to fetch, and how to turn it into the plaintext.
pub enum PlainRead {
    /// Not sealed: the stored bytes are the plaintext.
    Plain,
    Sealed(Box<SealedRead>),
}

/// A read of sealed chunks: the opener, the segment's layout, the stored range covering it.
pub struct SealedRead {
    opener: SegmentSealer,
    layout: ChunkLayout,
    stored: std::ops::Range<u64>,
}

/// Plans a plaintext read of `version` (of `bucket`/`key`).
pub fn plan_read(
    enc: Option<&Encryption>,
    bucket: &str,
    key: &str,
    version: &ObjectVersion,
    start: u64,
    len: u64,
) -> S3Result<PlainRead> {
    let Some(sealing) = &version.sealing else {
        return Ok(PlainRead::Plain);
    };
    let Some(enc) = enc else {
        return Err(s3_error!(
            InvalidRequest,
            "This object is encrypted and this hub has no key service configured (--kms-master-key-file)."
        ));
    };
    let record = SealRecord::parse(sealing)?;
    let opener = enc.opener(bucket, key, &record)?;
    let layout = ChunkLayout::new(version.size);
    let (_, stored) = layout.sealed_span(start, start + len);
    Ok(PlainRead::Sealed(Box::new(SealedRead { opener, layout, stored })))
}

impl PlainRead {
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
                let SealedRead { opener, layout, .. } = *read;
                valley_crypto::stream::open(stored, opener, layout, start, start + len)
            }
        }
    }
}

/// The `x-amz-server-side-encryption` (and key id) a version's responses carry.
#[must_use]
pub fn response_headers(version: &ObjectVersion) -> (Option<s3s::dto::ServerSideEncryption>, Option<String>) {
    let Some(record) = version.sealing.as_ref().and_then(|s| SealRecord::parse(s).ok()) else {
        return (None, None);
    };
    (
        Some(s3s::dto::ServerSideEncryption::from(record.mode.header().to_owned())),
        record.client_key_id.filter(|_| record.mode == Mode::Kms),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        assert_eq!(requested(None, None).unwrap(), None);
        assert_eq!(requested(Some("AES256"), None).unwrap().unwrap().mode, Mode::S3);
        let kms = requested(Some("aws:kms"), Some("testkey-1")).unwrap().unwrap();
        assert_eq!((kms.mode, kms.key_id.as_deref()), (Mode::Kms, Some("testkey-1")));
        assert!(requested(Some("AES128"), None).is_err());
        assert!(requested(None, Some("k")).is_err());
        assert!(requested(Some("AES256"), Some("k")).is_err());
        assert_eq!(kek_id("acme", &kms), "acme/testkey-1");
        let arn = requested(Some("aws:kms"), Some("arn:aws:kms:us-east-1:123:key/testkey-2"))
            .unwrap()
            .unwrap();
        assert_eq!(kek_id("acme", &arn), "acme/testkey-2");
        assert_eq!(
            kek_id("acme", &requested(Some("AES256"), None).unwrap().unwrap()),
            "acme/default"
        );
    }
}
