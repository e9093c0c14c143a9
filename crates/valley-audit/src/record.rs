//! One sealed record: its canonical form (the bytes the hash covers), its line on disk, and
//! parsing a line back.
//!
//! The canonical form is written field by field in a fixed order by [`AuditRecord::canonical`];
//! it does not depend on serde's field order or on serde_json's formatting choices. The exact
//! rules are in the crate documentation; the golden test at the end of this file pins them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::event::{AuditEvent, AuditKind};

/// The canonical form's version of the records this crate writes, the first field of every
/// record and part of its hash. A change to the canonical form, the hash or the set of fields
/// gets a new number; readers refuse numbers they do not know rather than guess.
///
/// - 1: the hash covers every field.
/// - 2: the hash covers the header fields and the SHA-256 of the subject fields (see
///   [`AuditRecord::canonical`]), so a record can be shown [`AuditRecord::redacted`] — its
///   subject withheld, its subject hash given — and a chain still verifies link by link.
pub const RECORD_VERSION: u32 = 2;
/// The versions this crate reads (a log begun under version 1 goes on under version 2).
pub const RECORD_VERSIONS_READ: [u32; 2] = [1, 2];

/// A SHA-256 digest, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The `prev` of the first record.
    pub const ZERO: ChainHash = ChainHash([0; 32]);

    pub fn of(bytes: &[u8]) -> ChainHash {
        ChainHash(Sha256::digest(bytes).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses exactly 64 hex digits.
    pub fn from_hex(s: &str) -> Option<ChainHash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(ChainHash(out))
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

impl FromStr for ChainHash {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ChainHash::from_hex(s).ok_or_else(|| format!("not a 64-digit hex hash: {s:?}"))
    }
}

impl Serialize for ChainHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The newest record of a log: its seq and its hash. Seqs start at one without gaps, so the seq
/// is also the number of records; a log without records has [`Head::EMPTY`]. Recording a head
/// somewhere the log's writer cannot rewrite is what makes removal of the newest records
/// detectable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: ChainHash,
}

impl Head {
    pub const EMPTY: Head = Head {
        seq: 0,
        hash: ChainHash::ZERO,
    };
}

/// An event as recorded: the event, its place in the chain and its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "WireRecord", try_from = "WireRecord")]
pub struct AuditRecord {
    /// The canonical form's version ([`RECORD_VERSION`] for records written now).
    pub version: u32,
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// Wall-clock time of the append. Order is given by `seq`; the clock may step backwards.
    pub time_unix_ms: u64,
    pub event: AuditEvent,
    /// The previous record's `hash`, or [`ChainHash::ZERO`] for the first record.
    pub prev: ChainHash,
    /// SHA-256 of [`AuditRecord::canonical`].
    pub hash: ChainHash,
    /// Set on a record shown redacted: the SHA-256 of its withheld subject (the event's
    /// subject fields are then empty).
    pub redacted_subject: Option<ChainHash>,
}

impl AuditRecord {
    /// Builds the record that follows `prev` and computes its hash; returns it with its line.
    pub(crate) fn seal(event: AuditEvent, seq: u64, time_unix_ms: u64, prev: ChainHash) -> (AuditRecord, String) {
        let mut record = AuditRecord {
            version: RECORD_VERSION,
            seq,
            time_unix_ms,
            event,
            prev,
            hash: ChainHash::ZERO,
            redacted_subject: None,
        };
        record.hash = record.computed_hash();
        let line = record.to_line();
        (record, line)
    }

    /// The exact bytes the hash covers, a one-line JSON object:
    /// - version 1: every field but `hash`, in the documented order;
    /// - version 2: `v, seq, time_unix_ms, hub, kind, subject, prev`, where `subject` is the
    ///   SHA-256 (hex) of [`AuditRecord::subject_canonical`].
    pub fn canonical(&self) -> String {
        if self.version == 1 {
            let mut body = self.full_body();
            body.push('}');
            return body;
        }
        let mut body = self.header_body(&self.subject_hash());
        body.push('}');
        body
    }

    /// The subject fields' canonical form (version 2): `bucket, key, peer, grant, allowed,
    /// rule, bytes, detail`, written as in the rest of the record.
    pub fn subject_canonical(&self) -> String {
        let e = &self.event;
        let mut out = String::with_capacity(128 + e.detail.len());
        out.push('{');
        let mut w = FieldWriter {
            out: &mut out,
            first: true,
        };
        Self::subject_fields(&mut w, e);
        out.push('}');
        out
    }

    /// The SHA-256 of the subject: given, for a redacted record; computed, for a full one.
    pub fn subject_hash(&self) -> ChainHash {
        self.redacted_subject
            .unwrap_or_else(|| ChainHash::of(self.subject_canonical().as_bytes()))
    }

    /// The hash this record should carry, recomputed from its fields.
    pub fn computed_hash(&self) -> ChainHash {
        ChainHash::of(self.canonical().as_bytes())
    }

    pub fn hash_is_valid(&self) -> bool {
        self.computed_hash() == self.hash
    }

    /// The record with its subject withheld: header, subject hash, prev and hash only. It
    /// verifies as the full record does, and links the chain the same, without saying which
    /// bucket, object or peer it was about. `None` for a version 1 record, whose hash covers
    /// the subject itself.
    pub fn redacted(&self) -> Option<AuditRecord> {
        if self.version == 1 {
            return None;
        }
        let mut event = AuditEvent::new(self.event.hub.clone(), self.event.kind, String::new());
        event.detail.clear();
        Some(AuditRecord {
            event,
            redacted_subject: Some(self.subject_hash()),
            ..self.clone()
        })
    }

    /// The record's line on disk, without the newline: every field (version 1: the canonical
    /// form) with `hash` added as the last; a redacted record's line has `subject` instead of
    /// the subject fields.
    pub fn to_line(&self) -> String {
        let mut body = match self.redacted_subject {
            Some(subject) => self.header_body(&subject),
            None => self.full_body(),
        };
        push_hash_and_close(&mut body, &self.hash);
        body
    }

    /// Parses one line (without its newline).
    pub fn from_line(line: &[u8]) -> Result<AuditRecord, String> {
        serde_json::from_slice(line).map_err(|e| e.to_string())
    }

    pub fn head(&self) -> Head {
        Head {
            seq: self.seq,
            hash: self.hash,
        }
    }

    /// `v, seq, time_unix_ms, hub, kind, subject, prev` without the closing brace: version 2's
    /// canonical form, and a redacted record's line before its hash.
    fn header_body(&self, subject: &ChainHash) -> String {
        let mut out = String::with_capacity(256);
        out.push('{');
        let mut w = FieldWriter {
            out: &mut out,
            first: true,
        };
        self.header(&mut w);
        w.string("subject", Some(&subject.to_hex()));
        w.string("prev", Some(&self.prev.to_hex()));
        out
    }

    fn header(&self, w: &mut FieldWriter<'_>) {
        w.number("v", u64::from(self.version));
        w.number("seq", self.seq);
        w.number("time_unix_ms", self.time_unix_ms);
        w.string("hub", Some(&self.event.hub));
        w.string("kind", Some(self.event.kind.as_str()));
    }

    fn subject_fields(w: &mut FieldWriter<'_>, e: &AuditEvent) {
        w.string("bucket", e.bucket.as_deref());
        w.string("key", e.key.as_deref());
        w.string("peer", e.peer.as_deref());
        w.string("grant", e.grant.as_deref());
        w.boolean("allowed", e.allowed);
        w.string("rule", e.rule.as_deref());
        w.optional_number("bytes", e.bytes);
        w.string("detail", Some(&e.detail));
    }

    /// Every field but `hash`, without the closing brace (version 1's canonical form, and the
    /// line of a full record of either version).
    fn full_body(&self) -> String {
        let e = &self.event;
        let mut out = String::with_capacity(256 + e.detail.len());
        out.push('{');
        let mut w = FieldWriter {
            out: &mut out,
            first: true,
        };
        self.header(&mut w);
        Self::subject_fields(&mut w, e);
        w.string("prev", Some(&self.prev.to_hex()));
        out
    }
}

fn push_hash_and_close(body: &mut String, hash: &ChainHash) {
    body.push_str(",\"hash\":\"");
    body.push_str(&hash.to_hex());
    body.push_str("\"}");
}

/// Writes `"name":value` pairs separated by commas, no whitespace. Names are fixed ASCII and
/// need no escaping.
struct FieldWriter<'a> {
    out: &'a mut String,
    first: bool,
}

impl FieldWriter<'_> {
    fn name(&mut self, name: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(name);
        self.out.push_str("\":");
    }

    fn number(&mut self, name: &str, value: u64) {
        self.name(name);
        self.out.push_str(&value.to_string());
    }

    fn optional_number(&mut self, name: &str, value: Option<u64>) {
        match value {
            Some(value) => self.number(name, value),
            None => self.null(name),
        }
    }

    fn boolean(&mut self, name: &str, value: Option<bool>) {
        self.name(name);
        self.out.push_str(match value {
            Some(true) => "true",
            Some(false) => "false",
            None => "null",
        });
    }

    fn string(&mut self, name: &str, value: Option<&str>) {
        match value {
            Some(value) => {
                self.name(name);
                push_json_string(self.out, value);
            }
            None => self.null(name),
        }
    }

    fn null(&mut self, name: &str) {
        self.name(name);
        self.out.push_str("null");
    }
}

/// JSON string with the minimal escaping of ECMAScript `JSON.stringify` and Python's
/// `json.dumps(..., ensure_ascii=False)`: `"` and `\` escaped, the controls `\b \f \n \r \t`
/// by their short forms, other characters below U+0020 as `\u00xx` (lowercase hex), every
/// other character as its UTF-8 bytes.
fn push_json_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let b = c as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[b >> 4]));
                out.push(char::from(HEX[b & 0xf]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A record's JSON shape, for parsing lines and for serde users. Unknown fields are refused: a
/// field the hash does not cover must not ride along in a verified log.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRecord {
    v: u32,
    seq: u64,
    time_unix_ms: u64,
    hub: String,
    kind: AuditKind,
    bucket: Option<String>,
    key: Option<String>,
    peer: Option<String>,
    grant: Option<String>,
    allowed: Option<bool>,
    rule: Option<String>,
    bytes: Option<u64>,
    /// Absent only in a redacted record.
    detail: Option<String>,
    /// Only in a redacted record (version 2): the hash of the withheld subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<ChainHash>,
    prev: ChainHash,
    hash: ChainHash,
}

impl TryFrom<WireRecord> for AuditRecord {
    type Error = String;

    fn try_from(w: WireRecord) -> Result<Self, Self::Error> {
        if !RECORD_VERSIONS_READ.contains(&w.v) {
            return Err(format!(
                "unsupported record version {} (this reader knows {RECORD_VERSIONS_READ:?})",
                w.v
            ));
        }
        let redacted_subject = match (w.subject, &w.detail) {
            (None, Some(_)) => None,
            (None, None) => return Err("missing field `detail`".into()),
            (Some(_), _) if w.v == 1 => return Err("a version 1 record cannot be redacted".into()),
            (Some(subject), None)
                if w.bucket.is_none()
                    && w.key.is_none()
                    && w.peer.is_none()
                    && w.grant.is_none()
                    && w.allowed.is_none()
                    && w.rule.is_none()
                    && w.bytes.is_none() =>
            {
                Some(subject)
            }
            (Some(_), _) => return Err("a redacted record carries `subject` and no subject fields".into()),
        };
        Ok(AuditRecord {
            version: w.v,
            seq: w.seq,
            time_unix_ms: w.time_unix_ms,
            event: AuditEvent {
                hub: w.hub,
                kind: w.kind,
                bucket: w.bucket,
                key: w.key,
                peer: w.peer,
                grant: w.grant,
                allowed: w.allowed,
                rule: w.rule,
                bytes: w.bytes,
                detail: w.detail.unwrap_or_default(),
            },
            prev: w.prev,
            hash: w.hash,
            redacted_subject,
        })
    }
}

impl From<AuditRecord> for WireRecord {
    fn from(r: AuditRecord) -> Self {
        let e = r.event;
        let redacted = r.redacted_subject.is_some();
        WireRecord {
            v: r.version,
            seq: r.seq,
            time_unix_ms: r.time_unix_ms,
            hub: e.hub,
            kind: e.kind,
            bucket: e.bucket,
            key: e.key,
            peer: e.peer,
            grant: e.grant,
            allowed: e.allowed,
            rule: e.rule,
            bytes: e.bytes,
            detail: (!redacted).then_some(e.detail),
            subject: r.redacted_subject,
            prev: r.prev,
            hash: r.hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden_event() -> AuditEvent {
        AuditEvent::new(
            "cn-east-1",
            AuditKind::PolicyDecision,
            "replicate \"a\\b\"\n\tto cn-west-2 ✓\u{1}",
        )
        .with_bucket("sales")
        .with_key("2025/q1/report.csv")
        .with_peer("cn-west-2")
        .with_allowed(true)
        .with_rule("residency:CN")
        .with_bytes(1_048_576)
    }

    /// A record sealed today must verify forever: if this fails, the canonical form changed and
    /// every existing log would stop verifying. Change [`RECORD_VERSION`] instead.
    ///
    /// The expected hash was computed independently of this crate, in Python:
    /// `hashlib.sha256(json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode())`.
    #[test]
    fn golden_version_1_record_still_verifies() {
        let prev =
            ChainHash::from_hex("8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4").expect("hex");
        let mut record = AuditRecord {
            version: 1,
            seq: 42,
            time_unix_ms: 1_736_000_000_123,
            event: golden_event(),
            prev,
            hash: ChainHash::ZERO,
            redacted_subject: None,
        };
        record.hash = record.computed_hash();
        let line = record.to_line();
        let expected_canonical = concat!(
            r#"{"v":1,"seq":42,"time_unix_ms":1736000000123,"hub":"cn-east-1","kind":"policy-decision","#,
            r#""bucket":"sales","key":"2025/q1/report.csv","peer":"cn-west-2","grant":null,"allowed":true,"#,
            r#""rule":"residency:CN","bytes":1048576,"detail":"replicate \"a\\b\"\n\tto cn-west-2 ✓\u0001","#,
            r#""prev":"8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"}"#
        );
        assert_eq!(record.canonical(), expected_canonical);
        assert_eq!(
            record.hash.to_hex(),
            "2883e4f03dc493debd0f4c3f68f692a3a23504ef090c232f0181096c1349ad41"
        );
        assert_eq!(line, record.to_line());
        assert!(line.starts_with(&expected_canonical[..expected_canonical.len() - 1]));
        assert!(line.ends_with(&format!(",\"hash\":\"{}\"}}", record.hash)));
        // A version 1 line read back verifies, and cannot be redacted (its hash covers all).
        let parsed = AuditRecord::from_line(line.as_bytes()).expect("a version 1 line parses");
        assert!(parsed.version == 1 && parsed.hash_is_valid());
        assert!(parsed.redacted().is_none());
    }

    /// Version 2, likewise pinned by hashes computed in Python: the subject's canonical form
    /// hashed, then the header with that hash.
    #[test]
    fn golden_version_2_record_hash_is_stable_and_survives_redaction() {
        let prev =
            ChainHash::from_hex("8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4").expect("hex");
        let (record, line) = AuditRecord::seal(golden_event(), 42, 1_736_000_000_123, prev);
        assert_eq!(
            record.subject_canonical(),
            concat!(
                r#"{"bucket":"sales","key":"2025/q1/report.csv","peer":"cn-west-2","grant":null,"allowed":true,"#,
                r#""rule":"residency:CN","bytes":1048576,"detail":"replicate \"a\\b\"\n\tto cn-west-2 ✓\u0001"}"#
            )
        );
        assert_eq!(
            record.subject_hash().to_hex(),
            "608dde5a5f20be34383553329d1bfeb84a282952be90863dd788d044f1e30c1e"
        );
        assert_eq!(
            record.canonical(),
            concat!(
                r#"{"v":2,"seq":42,"time_unix_ms":1736000000123,"hub":"cn-east-1","kind":"policy-decision","#,
                r#""subject":"608dde5a5f20be34383553329d1bfeb84a282952be90863dd788d044f1e30c1e","#,
                r#""prev":"8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"}"#
            )
        );
        assert_eq!(
            record.hash.to_hex(),
            "7b4c389d509cafb21d738bbe71aaaf65242a5af13d10a38cc0dc2043010abd19"
        );
        // The full line carries every field; the redacted one none of the subject's.
        assert!(line.contains(r#""key":"2025/q1/report.csv""#) && !line.contains("subject"));
        let redacted = record.redacted().expect("version 2 redacts");
        let shown = redacted.to_line();
        assert!(!shown.contains("report.csv") && !shown.contains("sales") && !shown.contains("cn-west-2"));
        assert!(shown.contains("608dde5a5f20be34383553329d1bfeb84a282952be90863dd788d044f1e30c1e"));
        let parsed = AuditRecord::from_line(shown.as_bytes()).expect("a redacted line parses");
        assert_eq!(parsed, redacted);
        assert!(parsed.hash_is_valid() && parsed.head() == record.head());
        // A redacted line with a subject field added, or a forged subject hash, fails.
        let mixed = shown.replacen(r#""subject""#, r#""key":"x","subject""#, 1);
        assert!(AuditRecord::from_line(mixed.as_bytes()).is_err());
        let forged = shown.replacen("608dde", "708dde", 1);
        assert!(
            !AuditRecord::from_line(forged.as_bytes())
                .expect("parses")
                .hash_is_valid()
        );
    }

    #[test]
    fn line_parses_back_to_the_same_record() {
        let (record, line) = AuditRecord::seal(golden_event(), 1, 5, ChainHash::ZERO);
        let parsed = AuditRecord::from_line(line.as_bytes()).expect("parse");
        assert_eq!(parsed, record);
        assert!(parsed.hash_is_valid());
        // serde users get the same shape as the line.
        assert_eq!(serde_json::to_string(&record).expect("serialize"), line);
    }

    #[test]
    fn every_control_character_stays_on_one_line_and_round_trips() {
        let detail: String = (0u32..0x80)
            .filter_map(char::from_u32)
            .chain("é€😀\u{2028}".chars())
            .collect();
        let event = AuditEvent::new("h", AuditKind::Access, detail.clone());
        let (record, line) = AuditRecord::seal(event, 1, 0, ChainHash::ZERO);
        assert!(!line.contains('\n') && !line.contains('\r'));
        // The escaping agrees with serde_json's for every character.
        assert!(line.contains(&serde_json::to_string(&detail).expect("json")));
        assert_eq!(AuditRecord::from_line(line.as_bytes()).expect("parse"), record);
    }

    #[test]
    fn unknown_fields_and_versions_are_refused() {
        let (_, line) = AuditRecord::seal(golden_event(), 1, 0, ChainHash::ZERO);
        let extra = line.replacen("{", "{\"extra\":1,", 1);
        assert!(AuditRecord::from_line(extra.as_bytes()).is_err());
        let v3 = line.replacen("\"v\":2", "\"v\":3", 1);
        let err = AuditRecord::from_line(v3.as_bytes()).unwrap_err();
        assert!(err.contains("unsupported record version 3"), "{err}");
        let bad_hash = line.replacen("\"prev\":\"0", "\"prev\":\"x", 1);
        assert!(AuditRecord::from_line(bad_hash.as_bytes()).is_err());
    }
}
