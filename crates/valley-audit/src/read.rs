//! Reading a log line by line, in memory bounded by [`MAX_LINE_BYTES`] whatever the file's
//! size, and filtering it.
//!
//! Readers may run while the hub appends: a final line without its newline is an append in
//! flight (or a torn one the next open repairs) and is skipped, not reported.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::error::{AuditError, AuditResult};
use crate::event::{AuditKind, DETAIL_TRUNCATION_MARKER, MAX_DETAIL_BYTES, MAX_FIELD_BYTES};
use crate::record::AuditRecord;

/// Longest line a reader accepts, newline excluded. Every line this crate writes fits: the
/// worst case is every byte of every string field escaped as `\u00xx` (6 bytes).
pub const MAX_LINE_BYTES: usize = 128 * 1024;

/// Identifier fields (hub, bucket, key, peer, grant, rule), names, numbers, hashes, punctuation.
const LINE_WORST_CASE_BYTES: usize =
    6 * (6 * MAX_FIELD_BYTES + MAX_DETAIL_BYTES + DETAIL_TRUNCATION_MARKER.len()) + 1024;
const _: () = assert!(LINE_WORST_CASE_BYTES <= MAX_LINE_BYTES);

/// Bytes read per call when scanning; also the read buffer of line readers.
pub(crate) const READ_CHUNK_BYTES: usize = 64 * 1024;

/// One line of a log file, numbered from 1.
pub(crate) enum Line {
    Complete {
        number: u64,
        bytes: Vec<u8>,
    },
    /// Longer than [`MAX_LINE_BYTES`]; its bytes were skipped, not kept.
    TooLong {
        number: u64,
    },
    /// The file ends without a newline after this many bytes.
    Unterminated {
        bytes: u64,
    },
}

pub(crate) struct LineReader {
    reader: BufReader<File>,
    number: u64,
}

impl LineReader {
    pub(crate) fn open(path: &Path) -> AuditResult<Self> {
        let file = File::open(path).map_err(|e| AuditError::io(path, e))?;
        Ok(LineReader {
            reader: BufReader::with_capacity(READ_CHUNK_BYTES, file),
            number: 0,
        })
    }

    pub(crate) fn next_line(&mut self) -> io::Result<Option<Line>> {
        let mut bytes = Vec::new();
        let mut len: u64 = 0;
        let mut too_long = false;
        loop {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                return Ok((len > 0).then_some(Line::Unterminated { bytes: len }));
            }
            let (chunk, consumed, complete) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            len += chunk.len() as u64;
            if !too_long {
                if bytes.len() + chunk.len() > MAX_LINE_BYTES {
                    too_long = true;
                    bytes = Vec::new();
                } else {
                    bytes.extend_from_slice(chunk);
                }
            }
            self.reader.consume(consumed);
            if complete {
                self.number += 1;
                let number = self.number;
                return Ok(Some(if too_long {
                    Line::TooLong { number }
                } else {
                    Line::Complete { number, bytes }
                }));
            }
        }
    }
}

/// Which records [`read_filtered`] returns; every field that is set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub bucket: Option<String>,
    pub hub: Option<String>,
    pub grant: Option<String>,
    pub kind: Option<AuditKind>,
    /// Records with this seq and later.
    pub since_seq: Option<u64>,
}

impl Filter {
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let e = &record.event;
        self.since_seq.is_none_or(|since| record.seq >= since)
            && self.kind.is_none_or(|kind| e.kind == kind)
            && self.hub.as_ref().is_none_or(|hub| &e.hub == hub)
            && matches_optional(&self.bucket, &e.bucket)
            && matches_optional(&self.grant, &e.grant)
    }
}

fn matches_optional(wanted: &Option<String>, actual: &Option<String>) -> bool {
    wanted.is_none() || wanted == actual
}

/// Every record of the log at `path`, in file order, parsed but not verified (see
/// [`crate::verify_file`]). Stops after the first line that does not parse, yielding it as
/// [`AuditError::Corrupt`].
pub struct Records {
    path: PathBuf,
    lines: LineReader,
    done: bool,
}

impl Records {
    pub fn open(path: impl AsRef<Path>) -> AuditResult<Records> {
        let path = path.as_ref().to_path_buf();
        let lines = LineReader::open(&path)?;
        Ok(Records {
            path,
            lines,
            done: false,
        })
    }

    fn corrupt(&mut self, line: u64, problem: String) -> Option<AuditResult<AuditRecord>> {
        self.done = true;
        Some(Err(AuditError::Corrupt {
            path: self.path.clone(),
            line,
            problem,
        }))
    }
}

impl Iterator for Records {
    type Item = AuditResult<AuditRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.lines.next_line() {
            Ok(Some(Line::Complete { number, bytes })) => match AuditRecord::from_line(&bytes) {
                Ok(record) => Some(Ok(record)),
                Err(problem) => self.corrupt(number, problem),
            },
            Ok(Some(Line::TooLong { number })) => {
                self.corrupt(number, format!("line longer than {MAX_LINE_BYTES} bytes"))
            }
            Ok(Some(Line::Unterminated { .. })) | Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(AuditError::io(&self.path, e)))
            }
        }
    }
}

/// The records of the log at `path` that match `filter`, in order. Reads one line at a time:
/// memory follows the number of matches, not the size of the file. Does not verify hashes.
pub fn read_filtered(path: impl AsRef<Path>, filter: &Filter) -> AuditResult<Vec<AuditRecord>> {
    let mut out = Vec::new();
    for record in Records::open(path)? {
        let record = record?;
        if filter.matches(&record) {
            out.push(record);
        }
    }
    Ok(out)
}
