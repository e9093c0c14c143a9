//! Full, offline verification of a log file: every hash, every `prev` link, seq continuity.
//!
//! Checks run per line in the order parse, hash, prev, seq, and the first failure is reported:
//! an edited record fails its own hash; a deleted or moved record breaks the `prev` link of the
//! line that now follows its old neighbour; a seq gap with intact hashes and links means the
//! chain was recomputed by hand or written by a faulty writer.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::error::{AuditError, AuditResult};
use crate::read::{Line, LineReader, MAX_LINE_BYTES};
use crate::record::{AuditRecord, ChainHash, Head};

/// What is wrong with the first bad record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Problem {
    Unparseable,
    HashMismatch,
    PrevLinkBroken,
    SeqGap,
    /// [`verify_file_anchored`] only: the anchored head is not in the file.
    AnchorMissing,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Problem::Unparseable => "unparseable line",
            Problem::HashMismatch => "hash mismatch (record edited)",
            Problem::PrevLinkBroken => "prev link broken (record deleted or reordered)",
            Problem::SeqGap => "seq gap",
            Problem::AnchorMissing => "anchored head missing (records removed from the end, or chain rewritten)",
        })
    }
}

/// The first record that failed verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BadRecord {
    /// Line number in the file, from 1.
    pub line: u64,
    /// The record's seq, when the line parsed.
    pub seq: Option<u64>,
    pub problem: Problem,
    /// Expected and found values, or the parser's message.
    pub detail: String,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        write!(f, ": {}: {}", self.problem, self.detail)
    }
}

/// A log whose every record verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifiedLog {
    pub records: u64,
    /// Compare with a head recorded elsewhere to detect removal of the newest records.
    pub head: Head,
    /// Bytes after the last newline, not verified: an append in flight, or a torn one that
    /// the next open repairs.
    pub unterminated_tail_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyReport {
    Ok(VerifiedLog),
    Bad(BadRecord),
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        matches!(self, VerifyReport::Ok(_))
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyReport::Ok(log) => write!(f, "OK: {} records, head {}", log.records, log.head.hash),
            VerifyReport::Bad(bad) => write!(f, "BAD: {bad}"),
        }
    }
}

/// Verifies the whole log at `path`, streaming it. `Err` only when the file cannot be read;
/// damage and tampering are reported in the [`VerifyReport`].
pub fn verify_file(path: impl AsRef<Path>) -> AuditResult<VerifyReport> {
    verify(path.as_ref(), &std::collections::BTreeMap::new())
}

/// [`verify_file`], and also checks that the record with `anchor.seq` has `anchor.hash`: the
/// only way to detect that the newest records were removed. `Head::EMPTY` anchors nothing.
pub fn verify_file_anchored(path: impl AsRef<Path>, anchor: Head) -> AuditResult<VerifyReport> {
    verify_file_anchors(path, &[anchor])
}

/// [`verify_file_anchored`] for many heads at once (a peer's signed heads over time): every
/// one must be in the file, with its hash. The first that is not is reported.
pub fn verify_file_anchors(path: impl AsRef<Path>, anchors: &[Head]) -> AuditResult<VerifyReport> {
    let mut wanted: std::collections::BTreeMap<u64, ChainHash> = std::collections::BTreeMap::new();
    for anchor in anchors.iter().filter(|a| a.seq > 0) {
        if let Some(other) = wanted.insert(anchor.seq, anchor.hash)
            && other != anchor.hash
        {
            // Two heads of the same seq with different hashes: the chain forked.
            return Ok(VerifyReport::Bad(BadRecord {
                line: anchor.seq,
                seq: Some(anchor.seq),
                problem: Problem::AnchorMissing,
                detail: format!("two heads at seq {}: {other} and {}", anchor.seq, anchor.hash),
            }));
        }
    }
    verify(path.as_ref(), &wanted)
}

fn verify(path: &Path, anchors: &std::collections::BTreeMap<u64, ChainHash>) -> AuditResult<VerifyReport> {
    let mut lines = LineReader::open(path)?;
    let mut head = Head::EMPTY;
    let mut unterminated_tail_bytes = 0;
    let bad = |line, seq, problem, detail| {
        Ok(VerifyReport::Bad(BadRecord {
            line,
            seq,
            problem,
            detail,
        }))
    };
    while let Some(line) = lines.next_line().map_err(|e| AuditError::io(path, e))? {
        let (number, bytes) = match line {
            Line::Complete { number, bytes } => (number, bytes),
            Line::TooLong { number } => {
                return bad(
                    number,
                    None,
                    Problem::Unparseable,
                    format!("line longer than {MAX_LINE_BYTES} bytes"),
                );
            }
            Line::Unterminated { bytes } => {
                unterminated_tail_bytes = bytes;
                break;
            }
        };
        let record = match AuditRecord::from_line(&bytes) {
            Ok(record) => record,
            Err(e) => return bad(number, None, Problem::Unparseable, e),
        };
        let seq = Some(record.seq);
        let computed = record.computed_hash();
        if computed != record.hash {
            return bad(
                number,
                seq,
                Problem::HashMismatch,
                format!("stored {}, computed {computed}", record.hash),
            );
        }
        if record.prev != head.hash {
            let detail = format!("prev {}, expected {}", record.prev, describe(head.hash));
            return bad(number, seq, Problem::PrevLinkBroken, detail);
        }
        // A forged record may carry any seq: no arithmetic on it may overflow.
        if head.seq.checked_add(1) != Some(record.seq) {
            return bad(
                number,
                seq,
                Problem::SeqGap,
                format!("expected the seq after {}, found {}", head.seq, record.seq),
            );
        }
        if let Some(anchored) = anchors.get(&record.seq)
            && *anchored != record.hash
        {
            let detail = format!("anchored hash {anchored}, found {}", record.hash);
            return bad(number, seq, Problem::AnchorMissing, detail);
        }
        head = record.head();
    }
    if let Some((&last, _)) = anchors.last_key_value()
        && last > head.seq
    {
        let detail = format!("anchored seq {last} but the log ends at seq {}", head.seq);
        return bad(head.seq.saturating_add(1), Some(last), Problem::AnchorMissing, detail);
    }
    Ok(VerifyReport::Ok(VerifiedLog {
        records: head.seq,
        head,
        unterminated_tail_bytes,
    }))
}

fn describe(hash: ChainHash) -> String {
    if hash == ChainHash::ZERO {
        "zeros (first record)".to_string()
    } else {
        hash.to_hex()
    }
}
