//! Valley's per-hub tamper-evident audit log.
//!
//! Every access, policy decision and transfer a hub makes is appended to one file as a line of
//! JSON, and each record carries the hash of the one before it. Anyone holding the file can
//! check it offline with [`verify_file`], without Valley's keys or services: an edited,
//! deleted, reordered or forged-in record breaks the chain at a line that
//! [`verify_file`] names.
//!
//! # File format
//!
//! UTF-8, one record per line, each line ended by `\n`:
//!
//! ```text
//! {"v":2,"seq":1,"time_unix_ms":1736000000123,"hub":"cn-east-1","kind":"transfer","bucket":"sales",
//!  "key":"a.csv","peer":"cn-west-2","grant":null,"allowed":true,"rule":"residency:CN","bytes":1048576,
//!  "detail":"replicate","prev":"0000…0000","hash":"…"}
//! ```
//! (shown wrapped; on disk it is one line).
//!
//! - `v`: the format version: [`RECORD_VERSION`] = 2 for records written now; version 1
//!   records (older logs) are read and verified too. Readers refuse versions they do not know.
//! - `seq`: 1 for the first record, then +1 per record, no gaps.
//! - `time_unix_ms`: wall-clock time of the append. Order is `seq`, not time.
//! - `hub`, `kind` (kebab-case, see [`AuditKind`]), `detail`: strings.
//! - `bucket`, `key`, `peer`, `grant`, `rule`: string or `null`; `allowed`: `true`, `false`
//!   or `null`; `bytes`: integer or `null`.
//! - `prev`: the previous record's `hash`; 64 `0`s for the first record.
//! - `hash`: SHA-256, 64 lowercase hex digits, of the record's canonical form.
//!
//! # Canonical form (what `hash` covers)
//!
//! JSON objects written by [`AuditRecord::canonical`] with
//! - no whitespace anywhere (`{"v":2,"seq":…}`), absent optional fields as `null`;
//! - integers in plain decimal, booleans as `true`/`false`, hashes as lowercase hex strings;
//! - strings with minimal escaping: `"` as `\"`, `\` as `\\`, U+0008, U+000C, U+000A, U+000D,
//!   U+0009 as `\b \f \n \r \t`, other characters below U+0020 as `\u00xx` with lowercase hex,
//!   every other character (including `/`, U+007F and all non-ASCII) as its UTF-8 bytes.
//!
//! Version 2: the *subject* is the object of the fields `bucket, key, peer, grant, allowed,
//! rule, bytes, detail` in this order; the canonical form is the object of `v, seq,
//! time_unix_ms, hub, kind, subject, prev`, where `subject` is the SHA-256 (hex) of the
//! subject's form. Version 1: the canonical form is the object of every field but `hash`, in
//! the order `v, seq, time_unix_ms, hub, kind, bucket, key, peer, grant, allowed, rule, bytes,
//! detail, prev`.
//!
//! That is the output of ECMAScript `JSON.stringify` and of Python's
//! `json.dumps(fields, separators=(",", ":"), ensure_ascii=False)` for the fields in that
//! order, so a verifier in another language takes a few lines. In Python:
//!
//! ```text
//! HEADER = ["v", "seq", "time_unix_ms", "hub", "kind"]
//! SUBJECT = ["bucket", "key", "peer", "grant", "allowed", "rule", "bytes", "detail"]
//! dumps = lambda fields: json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
//! sha = lambda text: hashlib.sha256(text.encode()).hexdigest()
//! prev, seq = "0" * 64, 1
//! for line in open(path, encoding="utf-8", newline="\n"):
//!     r = json.loads(line)
//!     if r["v"] == 1:
//!         canonical = dumps({k: r[k] for k in HEADER + SUBJECT + ["prev"]})
//!     else:
//!         subject = r.get("subject") or sha(dumps({k: r[k] for k in SUBJECT}))
//!         canonical = dumps({**{k: r[k] for k in HEADER}, "subject": subject, "prev": r["prev"]})
//!     assert sha(canonical) == r["hash"]
//!     assert r["prev"] == prev and r["seq"] == seq
//!     prev, seq = r["hash"], seq + 1
//! ```
//!
//! A record may be shown *redacted* ([`AuditRecord::redacted`], version 2 only): its line then
//! has `subject` (the hash) in place of the subject fields. It verifies and links exactly as
//! the full record does, so a chain can be checked by someone who may not read what it is
//! about (hubs check each other's chains this way, see valley-replicate's `heads`).
//!
//! A line on disk is every field, in the version 1 order above, with `,"hash":"…"` last (for
//! version 1 that is the canonical form with the hash inserted before the closing brace).
//! Verification parses the line and recomputes the canonical form from the parsed fields, so
//! only a change of content, not of JSON spelling, counts as an edit; unknown fields are
//! refused. Both versions are pinned by golden tests whose expected hashes were computed in
//! Python.
//!
//! # What the chain does and does not prove
//!
//! - An edited field fails that record's hash; a deleted, inserted or moved record breaks the
//!   `prev` link of the line after it; a record added by hand without the right hash fails its
//!   hash. [`verify_file`] reports the first bad line and what is wrong with it.
//! - **Removal of the newest records is not detectable from the file alone**: a shortened
//!   chain is still a valid chain. Neither is a chain recomputed from some point on by someone
//!   who can write the file: the hash has no secret. Both are caught by comparing with a head
//!   recorded elsewhere. [`AuditLog::head`] gives the newest durable record's seq and hash;
//!   hubs sign it and send it to their peers, which record it (`peer-head` records), and
//!   [`verify_file_anchored`] / [`verify_file_anchors`] check that recorded heads are still in
//!   the file.
//!
//! # Durability, concurrency and crashes
//!
//! - [`AuditLog::append`] returns only after its record is fsync'd. Concurrent appenders share
//!   fsyncs (group commit); [`AuditLog::append_batch`] writes many events with one write and
//!   one fsync. A record whose append returned survives a crash; one whose append was cut
//!   short by the crash may or may not be in the log afterwards, but never half of it.
//! - One writer per file: [`AuditLog::open`] takes an exclusive file lock, because two writers
//!   would fork the chain. Readers ([`verify_file`], [`read_filtered`], [`Records`]) need no
//!   lock and may run while the hub appends; they skip a final line without its newline.
//! - A crash mid-append leaves a final line without its newline. [`AuditLog::open`] truncates
//!   it with a warning (or, if it is a whole record that only lost its newline, completes it),
//!   checks the newest record's hash and link, and continues the chain. A damaged or edited
//!   newest record stops the open ([`AuditError::BadTail`]) rather than being built upon.
//! - After a failed fsync nothing written since the last good one can be trusted, so the log
//!   refuses further appends ([`AuditError::Failed`]) until it is reopened.
//!
//! # Limits
//!
//! Identifiers over [`MAX_FIELD_BYTES`] are refused; a detail over [`MAX_DETAIL_BYTES`] is cut
//! and marked with [`DETAIL_TRUNCATION_MARKER`]; readers refuse lines over [`MAX_LINE_BYTES`],
//! which every record this crate writes fits within.

pub mod error;
pub mod event;
pub mod log;
pub mod read;
pub mod record;
pub mod verify;

pub use error::{AuditError, AuditResult};
pub use event::{AuditEvent, AuditKind, DETAIL_TRUNCATION_MARKER, MAX_DETAIL_BYTES, MAX_FIELD_BYTES};
pub use log::AuditLog;
pub use read::{Filter, MAX_LINE_BYTES, Records, read_filtered};
pub use record::{AuditRecord, ChainHash, Head, RECORD_VERSION};
pub use verify::{
    BadRecord, Problem, VerifiedLog, VerifyReport, verify_file, verify_file_anchored, verify_file_anchors,
};
