//! The peer protocol's paths and bodies, shared by client and server.
//!
//! | call | meaning |
//! |---|---|
//! | `GET  /_valley/peer/v1/hello` | who are you, which topology (hash) |
//! | `PUT  /_valley/peer/v1/object?bucket=B&key=K` | a version: `x-valley-version` header, bytes as body |
//! | `POST /_valley/peer/v1/batch?kind=K` | many small versions, framed and checked each by its ETag, applied in one transaction ([`crate::batch`]); answers a [`crate::batch::BatchAnswer`] |
//! | `POST /_valley/peer/v1/deletes` | a batch of deletes ([`DeleteMessage`]s), applied in one transaction |
//! | `POST /_valley/peer/v1/control` | a control-plane change |
//! | `GET  /_valley/peer/v1/inventory` | objects and bytes held per bucket |
//! | `POST /_valley/peer/v1/stage?bucket=B&key=K` | start or resume a chunked transfer: `x-valley-version` header; answers [`StageState`] |
//! | `PUT  /_valley/peer/v1/chunk?bucket=B&key=K&hlc=H&origin=O&index=I` | one chunk, `x-valley-chunk-md5` header |
//! | `PUT  /_valley/peer/v1/object?…` with `x-valley-staged: 1` | commit the staged chunks as the version |
//! | `GET  /_valley/peer/v1/stat?bucket=B&key=K[&version_id=V]` | the version a read-through would get (no data) |
//! | `GET  /_valley/peer/v1/read?bucket=B&key=K[&version_id=V]` | its bytes, `Range` honoured (read-through) |
//! | `POST /_valley/peer/v1/digest` | anti-entropy: per-partition digests of the versions both hubs should hold |
//! | `POST /_valley/peer/v1/digest-items` | anti-entropy: the versions in some partitions |
//! | `GET  /_valley/peer/v1/control-digest` | a hash of every control record held |
//! | `POST /_valley/peer/v1/grant-use` | count a transfer against a grant's caps at its accountant ([`GrantUse`]; 403 when exhausted) |
//!
//! Every call carries the caller's hub id, time and HMAC signature (see [`crate::auth`]) and its
//! topology hash; a hub refuses a peer whose topology differs (409) or whose data it may not
//! hold (403) — the receiver checks residency itself rather than trusting the sender.

use md5::{Digest, Md5};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

pub const PREFIX: &str = "/_valley/peer/v1/";
pub const HEADER_VERSION: &str = "x-valley-version";
/// On an object PUT: the bytes are already here as staged chunks (no body).
pub const HEADER_STAGED: &str = "x-valley-staged";
/// On a chunk PUT: the hex MD5 of the chunk, checked before it is staged.
pub const HEADER_CHUNK_MD5: &str = "x-valley-chunk-md5";

const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

#[must_use]
pub fn object_path(bucket: &str, key: &str) -> String {
    path("object", &[("bucket", bucket), ("key", key)])
}

/// `PREFIX route ? name=value & …`, values percent-encoded.
#[must_use]
pub fn path(route: &str, params: &[(&str, &str)]) -> String {
    let mut out = format!("{PREFIX}{route}");
    for (i, (name, value)) in params.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(name);
        out.push('=');
        out.push_str(&utf8_percent_encode(value, QUERY_VALUE).to_string());
    }
    out
}

/// The version header: a version's record without its data, as base64 JSON.
#[must_use]
pub fn encode_version(version: &valley_store::record::ObjectVersion) -> String {
    use base64::Engine;
    let mut meta = version.clone();
    meta.data = valley_store::record::ObjectData::Inline(Vec::new());
    let json = serde_json::to_vec(&meta).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(json)
}

#[must_use]
pub fn decode_version(header: &str) -> Option<valley_store::record::ObjectVersion> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.decode(header).ok()?;
    serde_json::from_slice(&raw).ok()
}

/// Reads `name` from a query string.
#[must_use]
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .ok()
                .map(|c| c.into_owned())
        })?
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub hub: String,
    pub topology: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteMessage {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub hlc: u64,
    pub origin: String,
    /// Not a delete: a newer version of the key exists elsewhere.
    #[serde(default)]
    pub newer_only: bool,
}

impl DeleteMessage {
    /// The delete as the receiving store applies it.
    #[must_use]
    pub fn into_remote_delete(self) -> valley_store::RemoteDelete {
        self.into_remote_delete_from("")
    }

    /// The delete as the receiving store applies it, sent by hub `from`: a delete naming a
    /// version by its own stamp (version id and stamp agree) that `from` made itself is an
    /// exact retraction (see [`retraction`]), which also removes a null version at exactly
    /// that stamp. A hub can retract only versions it originated.
    #[must_use]
    pub fn into_remote_delete_from(self, from: &str) -> valley_store::RemoteDelete {
        let exact = !from.is_empty() && self.origin == from && !self.newer_only;
        valley_store::RemoteDelete {
            exact,
            stamp: valley_store::keys::Stamp {
                hlc: self.hlc,
                origin_tag: valley_store::keys::origin_tag(&self.origin),
            },
            bucket: self.bucket,
            key: self.key,
            version_id: self.version_id,
            newer_only: self.newer_only,
        }
    }
}

/// The outbox entry that retracts exactly the version of `bucket/key` stamped `(hlc, origin)`
/// at a peer: a delete by the version id of that stamp, which a receiver applies to that one
/// version only (never to a newer or an older one) and remembers, so the copy never applies
/// there later. It travels as any versioned delete does: the message format is unchanged.
#[must_use]
pub fn retraction(bucket: &str, key: &str, hlc: u64, origin: &str) -> crate::outbox::Shipment {
    let stamp = valley_store::keys::Stamp {
        hlc,
        origin_tag: valley_store::keys::origin_tag(origin),
    };
    crate::outbox::Shipment::Delete {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        version_id: Some(valley_store::keys::version_id_of(stamp)),
        hlc,
        origin: origin.to_owned(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub outcome: String,
}

/// A request to the accountant of a grant to count a transfer against its volume caps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantUse {
    pub grant: String,
    /// Names the transfer, so a retry is counted once.
    pub transfer: String,
    pub bytes: u64,
    /// Individuals the object declares (`None`: none declared, or a sender of an earlier
    /// release). New in session 11.
    #[serde(default)]
    pub individuals: Option<u64>,
}

/// A request to the accountant of a jurisdiction's exports
/// ([`valley_policy::rules::export_accountant`]) to count an object's individuals against its
/// tenant's yearly volume, if the rule packs accept that volume under `grant`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportUse {
    /// 1.
    pub format: u32,
    pub tenant: String,
    /// The jurisdiction the data leaves.
    pub from: String,
    /// The grant the transfer rests on.
    pub grant: String,
    /// The classifications of the data (its bucket's).
    pub classifications: Vec<String>,
    /// Names the object version, so that it is counted once however many hubs abroad it goes
    /// to and however often a transfer is retried.
    pub export: String,
    pub individuals: u64,
    /// The object's bytes.
    #[serde(default)]
    pub bytes: u64,
}

impl ExportUse {
    pub const FORMAT: u32 = 1;
}

/// What a receiver already has of a chunked transfer.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct StageState {
    /// The version is already here, or can never apply here (deleted, superseded): stop.
    pub done: bool,
    /// Indices of the chunks already staged.
    pub staged: Vec<u32>,
}

/// Anti-entropy: "these are the partition digests of what we should both hold of `bucket`".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DigestRequest {
    pub bucket: String,
    /// The asking hub (the other end of the pair).
    pub hub: String,
    /// When set, answer the items in these partitions instead of the digests.
    #[serde(default)]
    pub partitions: Vec<u16>,
    /// Items are answered a page of about this many at a time (absent, from hubs of earlier
    /// releases: all at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// The page begins after this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct DigestReply {
    pub digests: Vec<u64>,
}

/// One version, as anti-entropy names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ItemId {
    pub key: String,
    pub hlc: u64,
    pub origin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ItemsReply {
    pub items: Vec<ItemId>,
    /// Set when the page is not the last: the next page begins after this key (every version
    /// of it is in this page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more_after: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct BucketHoldings {
    pub bucket: String,
    pub objects: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Inventory {
    pub hub: String,
    pub buckets: Vec<BucketHoldings>,
}

/// Whether `received` bytes hashing to `etag` (an [`EtagCheck`]'s answer) are the body of
/// `version`, as the origin recorded it; `Err` says what differs. A delete marker carries no
/// bytes and no ETag: only its size (0) is checked.
pub fn check_body(version: &valley_store::record::ObjectVersion, received: u64, etag: &str) -> Result<(), String> {
    if received != version.stored_size() {
        return Err(format!("got {received} of {} bytes", version.stored_size()));
    }
    let expected = version.stored_digest().1;
    if !version.delete_marker && etag != expected {
        return Err(format!(
            "checksum mismatch: bytes hash to {etag}, the origin recorded {expected}"
        ));
    }
    Ok(())
}

/// Recomputes what a version's bytes hash to while they stream past: an S3 ETag (plain MD5,
/// or for a multipart object the MD5 of its parts' MD5s with `-N`), or a sealed version's
/// stored CRC64 ([`valley_store::digest`]). Replication checks every transfer against what the
/// origin recorded, so a flipped bit anywhere on the way is caught end to end.
pub struct EtagCheck {
    kind: CheckKind,
}

enum CheckKind {
    Etag(PartsMd5),
    Crc64(valley_store::digest::Crc64),
}

struct PartsMd5 {
    part_sizes: Vec<u64>,
    part_index: usize,
    in_part: u64,
    current: Md5,
    digests: Vec<u8>,
}

impl EtagCheck {
    /// The check of a version's stored bytes, as its stored digest says.
    #[must_use]
    pub fn for_stored(version: &valley_store::record::ObjectVersion) -> Self {
        let (part_sizes, digest) = version.stored_digest();
        if valley_store::digest::is_crc64(digest) {
            Self {
                kind: CheckKind::Crc64(valley_store::digest::Crc64::default()),
            }
        } else {
            Self::new(part_sizes)
        }
    }

    /// An ETag check of bytes in parts of `part_sizes` (none: a single MD5).
    #[must_use]
    pub fn new(part_sizes: &[u64]) -> Self {
        Self {
            kind: CheckKind::Etag(PartsMd5 {
                part_sizes: part_sizes.to_vec(),
                part_index: 0,
                in_part: 0,
                current: Md5::new(),
                digests: Vec::new(),
            }),
        }
    }

    pub fn update(&mut self, chunk: &[u8]) {
        match &mut self.kind {
            CheckKind::Crc64(crc) => crc.update(chunk),
            CheckKind::Etag(md5) => md5.update(chunk),
        }
    }

    #[must_use]
    pub fn finish(self) -> String {
        match self.kind {
            CheckKind::Crc64(crc) => crc.finish(),
            CheckKind::Etag(md5) => md5.finish(),
        }
    }
}

impl PartsMd5 {
    fn update(&mut self, mut chunk: &[u8]) {
        if self.part_sizes.is_empty() {
            self.current.update(chunk);
            return;
        }
        while !chunk.is_empty() {
            let part_size = self.part_sizes.get(self.part_index).copied().unwrap_or(u64::MAX);
            let room = usize::try_from(part_size - self.in_part).unwrap_or(usize::MAX);
            let take = room.min(chunk.len());
            self.current.update(&chunk[..take]);
            self.in_part += take as u64;
            chunk = &chunk[take..];
            if self.in_part == part_size {
                let done = std::mem::replace(&mut self.current, Md5::new());
                self.digests.extend_from_slice(&done.finalize());
                self.part_index += 1;
                self.in_part = 0;
            }
        }
    }

    fn finish(self) -> String {
        if self.part_sizes.is_empty() {
            return hex::encode(self.current.finalize());
        }
        let mut digests = self.digests;
        if self.in_part > 0 {
            digests.extend_from_slice(&self.current.finalize());
        }
        format!("{}-{}", hex::encode(Md5::digest(&digests)), self.part_sizes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retraction_travels_as_a_delete_of_the_previous_format_and_is_exact_only_from_its_origin() {
        let shipment = retraction("b", "k", 42, "hub-a");
        let message = shipment.delete_message().expect("a delete");
        let json: serde_json::Value = serde_json::to_value(&message).expect("json");
        // The fields a receiver of the previous release reads, and no new one.
        let mut fields: Vec<&str> = json.as_object().expect("object").keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["bucket", "hlc", "key", "newer_only", "origin", "version_id"]);
        let stamp = valley_store::keys::Stamp {
            hlc: 42,
            origin_tag: valley_store::keys::origin_tag("hub-a"),
        };
        assert_eq!(json["version_id"], valley_store::keys::version_id_of(stamp));
        // A message of the first format (no `newer_only`) still reads.
        let old = r#"{"bucket":"b","key":"k","version_id":null,"hlc":7,"origin":"hub-a"}"#;
        let parsed: DeleteMessage = serde_json::from_str(old).expect("old format");
        assert!(!parsed.newer_only);
        // Exact only when the sender is the version's origin.
        assert!(message.clone().into_remote_delete_from("hub-a").exact);
        assert!(!message.clone().into_remote_delete_from("hub-b").exact);
        assert!(!message.into_remote_delete().exact);
    }

    #[test]
    fn a_sealed_versions_stored_crc_is_checked_and_catches_a_flipped_bit() {
        let stored: Vec<u8> = (0..70_000u32).map(|i| (i % 241) as u8).collect();
        let mut crc = valley_store::digest::Crc64::default();
        crc.update(&stored);
        let mut version = valley_store::record::ObjectVersion::delete_marker(1, "hub-a");
        version.delete_marker = false;
        version.size = 69_000;
        version.etag = "plaintext-md5".into();
        version.sealing = Some(valley_store::record::Sealing {
            record: "{}".into(),
            stored_size: stored.len() as u64,
            stored_digest: crc.finish(),
            stored_part_sizes: Vec::new(),
            part_numbers: Vec::new(),
        });
        let digest = |bytes: &[u8]| {
            let mut check = EtagCheck::for_stored(&version);
            for piece in bytes.chunks(4099) {
                check.update(piece);
            }
            check.finish()
        };
        assert!(check_body(&version, stored.len() as u64, &digest(&stored)).is_ok());
        let mut flipped = stored.clone();
        flipped[65_000] ^= 0x10;
        let why = check_body(&version, stored.len() as u64, &digest(&flipped)).unwrap_err();
        assert!(why.contains("checksum mismatch"), "{why}");
        assert!(check_body(&version, 5, &digest(&stored[..5])).is_err());
    }

    #[test]
    fn multipart_etag_matches_s3s_rule_whatever_the_chunking() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let parts = [4000u64, 4000, 2000];
        let mut expected = Vec::new();
        let mut at = 0usize;
        for p in parts {
            expected.extend_from_slice(&Md5::digest(&data[at..at + p as usize]));
            at += p as usize;
        }
        let want = format!("{}-3", hex::encode(Md5::digest(&expected)));
        for chunk in [1usize, 7, 999, 4000, 10_000] {
            let mut check = EtagCheck::new(&parts);
            for c in data.chunks(chunk) {
                check.update(c);
            }
            assert_eq!(check.finish(), want, "chunk {chunk}");
        }
        let mut single = EtagCheck::new(&[]);
        single.update(&data);
        assert_eq!(single.finish(), hex::encode(Md5::digest(&data)));
    }

    /// Paged digest answers: a request or an answer of the previous release reads as whole,
    /// and an unpaged request is written as that release wrote it.
    #[test]
    fn digest_messages_of_the_previous_release_read_as_whole_answers() {
        let request: DigestRequest = serde_json::from_str(r#"{"bucket":"b","hub":"h","partitions":[3,4]}"#).unwrap();
        assert_eq!((request.page, request.after.as_deref()), (None, None));
        let reply: ItemsReply = serde_json::from_str(r#"{"items":[{"key":"k","hlc":5,"origin":"h"}]}"#).unwrap();
        assert_eq!((reply.items.len(), reply.more_after), (1, None));
        let unpaged = DigestRequest {
            bucket: "b".into(),
            hub: "h".into(),
            partitions: vec![3],
            page: None,
            after: None,
        };
        assert_eq!(
            serde_json::to_string(&unpaged).unwrap(),
            r#"{"bucket":"b","hub":"h","partitions":[3]}"#
        );
    }

    #[test]
    fn query_values_round_trip() {
        let path = object_path("b", "dir/ä b&c=d%");
        let query = path.split_once('?').unwrap().1;
        assert_eq!(query_param(query, "key").as_deref(), Some("dir/ä b&c=d%"));
        assert_eq!(query_param(query, "bucket").as_deref(), Some("b"));
    }
}
