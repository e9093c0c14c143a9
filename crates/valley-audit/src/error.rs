//! The audit log's one error type. A tampered or damaged log found by [`crate::verify_file`] is
//! not an error but a [`crate::VerifyReport`]: errors are for what stops the work itself.

use std::io;
use std::path::{Path, PathBuf};

pub type AuditResult<T> = Result<T, AuditError>;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// Two writers on one file would fork the chain, so a second open is refused.
    #[error("audit log {path} is already open for writing (by this or another process)")]
    Locked { path: PathBuf },
    /// Found at open, before anything is appended: the operator must look before the hub
    /// writes on top of a damaged or edited tail.
    #[error("audit log {path}: record at byte {offset}: {problem}; run verify_file for a full report")]
    BadTail {
        path: PathBuf,
        offset: u64,
        problem: String,
    },
    /// A line a reader could not use; `line` counts from 1.
    #[error("audit log {path} line {line}: {problem}")]
    Corrupt { path: PathBuf, line: u64, problem: String },
    #[error("audit field {field} is {len} bytes, over the {max} byte limit")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    /// After an fsync failure the kernel may have dropped the unsynced pages, so nothing
    /// written since the last good fsync can be trusted to be on disk; reopening re-reads the
    /// file and repairs its tail.
    #[error("audit log {path} refuses appends after an earlier write or fsync failure; reopen it")]
    Failed { path: PathBuf },
}

impl AuditError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        AuditError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
