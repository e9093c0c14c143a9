//! The writer: one [`AuditLog`] per file, appending sealed records and fsyncing before it
//! answers.
//!
//! Appends are serialized by one lock (`chain`) that assigns seq and prev and writes the lines
//! with a single `write` call. Durability is a second step outside that lock: a caller waits
//! until some fsync started after its write has finished, and if none is running it runs one
//! itself for everything written so far. Concurrent appenders therefore share fsyncs (group
//! commit) without delaying each other's writes; [`AuditLog::append_batch`] gives the same
//! saving to a single caller with many events.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use crate::error::{AuditError, AuditResult};
use crate::event::AuditEvent;
use crate::read::{MAX_LINE_BYTES, READ_CHUNK_BYTES};
use crate::record::{AuditRecord, Head};

/// An open, append-only audit log file. Share it between threads by reference or `Arc`.
pub struct AuditLog {
    path: PathBuf,
    /// Opened for append; written only under `chain`, synced without it.
    file: File,
    chain: Mutex<Chain>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    /// Set when a write could not be undone or an fsync failed; see [`AuditError::Failed`].
    failed: AtomicBool,
}

/// Where the next record goes.
struct Chain {
    /// The newest record written (not necessarily synced yet).
    written: Head,
    /// File length after the newest complete line, for undoing a failed write.
    len: u64,
}

struct SyncState {
    /// The newest record known to be on disk.
    durable: Head,
    /// Whether some caller is inside an fsync now.
    syncing: bool,
    syncs: u64,
}

impl AuditLog {
    /// Opens or creates the log at `path` and takes an exclusive lock on it, so no other
    /// writer forks the chain. Checks the newest record's hash and its link to the one before
    /// (a full check is [`crate::verify_file`]), repairs a torn final line, and continues the
    /// chain from the newest good record.
    pub fn open(path: impl AsRef<Path>) -> AuditResult<AuditLog> {
        let path = path.as_ref().to_path_buf();
        let io_err = |e| AuditError::io(&path, e);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(AuditError::Locked { path }),
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        let (head, len) = recover(&file, &path)?;
        // A previous process may have crashed before its fsync, and a new file needs its
        // directory entry on disk: make what is there durable before building on it.
        file.sync_all().map_err(io_err)?;
        sync_parent_dir(&path).map_err(io_err)?;
        Ok(AuditLog {
            path,
            file,
            chain: Mutex::new(Chain { written: head, len }),
            sync: Mutex::new(SyncState {
                durable: head,
                syncing: false,
                syncs: 0,
            }),
            synced: Condvar::new(),
            failed: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The newest durable record's seq and hash; [`Head::EMPTY`] for an empty log. Export it
    /// (metrics, status, peers) so that removal of the newest records can be detected with
    /// [`crate::verify_file_anchored`].
    pub fn head(&self) -> Head {
        self.lock_sync().durable
    }

    /// fsyncs run since open; for metrics.
    pub fn syncs(&self) -> u64 {
        self.lock_sync().syncs
    }

    /// Records one event and returns once it is on disk.
    pub fn append(&self, event: AuditEvent) -> AuditResult<AuditRecord> {
        let mut records = self.append_batch([event])?;
        records.pop().ok_or_else(|| AuditError::Failed {
            path: self.path.clone(),
        })
    }

    /// Records several events as consecutive records with one write and one fsync, and
    /// returns once all are on disk. All events are checked against the limits first: if one
    /// is refused, none is written.
    pub fn append_batch(&self, events: impl IntoIterator<Item = AuditEvent>) -> AuditResult<Vec<AuditRecord>> {
        let events = events
            .into_iter()
            .map(AuditEvent::checked)
            .collect::<AuditResult<Vec<_>>>()?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let records = self.write(events)?;
        let newest = records.last().map_or(0, |r| r.seq);
        self.wait_durable(newest)?;
        Ok(records)
    }

    /// Seals the events after the newest record and writes their lines in one call.
    fn write(&self, events: Vec<AuditEvent>) -> AuditResult<Vec<AuditRecord>> {
        let mut chain = self.chain.lock().map_err(|_| self.fail())?;
        if self.failed.load(Ordering::Acquire) {
            return Err(AuditError::Failed {
                path: self.path.clone(),
            });
        }
        let mut head = chain.written;
        let mut buf = Vec::new();
        let mut records = Vec::with_capacity(events.len());
        for event in events {
            let (record, line) = AuditRecord::seal(event, head.seq + 1, now_unix_ms(), head.hash);
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            head = record.head();
            records.push(record);
        }
        if let Err(e) = (&self.file).write_all(&buf) {
            // Take back whatever part of the lines reached the file, so the chain on disk
            // still ends at `chain.written`; if even that fails, stop appending.
            if let Err(undo) = self.file.set_len(chain.len) {
                warn!(path = %self.path.display(), error = %undo, "cannot undo a failed audit append");
                self.failed.store(true, Ordering::Release);
            }
            return Err(AuditError::io(&self.path, e));
        }
        chain.len += buf.len() as u64;
        chain.written = head;
        Ok(records)
    }

    /// Returns once the record `seq` is on disk, running an fsync if no one else is.
    fn wait_durable(&self, seq: u64) -> AuditResult<()> {
        let mut state = self.lock_sync();
        loop {
            if state.durable.seq >= seq {
                return Ok(());
            }
            if self.failed.load(Ordering::Acquire) {
                return Err(AuditError::Failed {
                    path: self.path.clone(),
                });
            }
            if state.syncing {
                state = self.synced.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            state.syncing = true;
            drop(state);
            // Everything written before this point is covered by the fsync below.
            let target = self.chain.lock().map(|chain| chain.written);
            let outcome = match target {
                Ok(target) => self
                    .file
                    .sync_data()
                    .map(|()| target)
                    .map_err(|e| AuditError::io(&self.path, e)),
                Err(_) => Err(self.fail()),
            };
            state = self.lock_sync();
            state.syncing = false;
            state.syncs += 1;
            let result = match outcome {
                Ok(target) => {
                    if target.seq > state.durable.seq {
                        state.durable = target;
                    }
                    Ok(())
                }
                Err(e) => {
                    self.failed.store(true, Ordering::Release);
                    Err(e)
                }
            };
            self.synced.notify_all();
            result?;
        }
    }

    /// The sync state is a few plain fields updated without panicking, so a poisoned lock
    /// still holds consistent values.
    fn lock_sync(&self) -> MutexGuard<'_, SyncState> {
        self.sync.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A panic while holding `chain` may have left it out of step with the file.
    fn fail(&self) -> AuditError {
        self.failed.store(true, Ordering::Release);
        AuditError::Failed {
            path: self.path.clone(),
        }
    }
}

fn now_unix_ms() -> u64 {
    // A clock before 1970 is recorded as 0 rather than refusing the event.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Finds the newest record, checks it, and repairs a torn final line. Returns the head and
/// the file length after repair.
fn recover(file: &File, path: &Path) -> AuditResult<(Head, u64)> {
    let io_err = |e| AuditError::io(path, e);
    let len = file.metadata().map_err(io_err)?.len();
    let complete_end = find_newline_before(file, len, 0).map_err(io_err)?.map_or(0, |p| p + 1);
    let head = check_tail(file, path, complete_end)?;
    if complete_end == len {
        return Ok((head, len));
    }
    // A crash mid-append leaves the start of a line without its newline. If it is in fact a
    // whole record that follows the chain, only the newline was lost: keep the record.
    let fragment_len = len - complete_end;
    if fragment_len <= MAX_LINE_BYTES as u64 {
        let fragment = read_range(file, complete_end, fragment_len).map_err(io_err)?;
        if let Ok(record) = AuditRecord::from_line(&fragment)
            && record.hash_is_valid()
            && record.prev == head.hash
            && head.seq.checked_add(1) == Some(record.seq)
        {
            info!(path = %path.display(), seq = record.seq, "audit log: completing final record that lost its newline");
            let mut writer = file;
            writer.write_all(b"\n").map_err(io_err)?;
            return Ok((record.head(), len + 1));
        }
    }
    warn!(
        path = %path.display(),
        offset = complete_end,
        bytes = fragment_len,
        "audit log: truncating torn final line (crash mid-append)"
    );
    file.set_len(complete_end).map_err(io_err)?;
    Ok((head, complete_end))
}

/// Checks the last complete line (ending at `end`): its own hash, and its seq and prev against
/// the line before it, or against the start of the chain if it is the first line.
fn check_tail(file: &File, path: &Path, end: u64) -> AuditResult<Head> {
    if end == 0 {
        return Ok(Head::EMPTY);
    }
    let bad = |offset, problem: String| AuditError::BadTail {
        path: path.to_path_buf(),
        offset,
        problem,
    };
    let (last_start, last) = line_ending_at(file, path, end)?;
    let last = AuditRecord::from_line(&last).map_err(|e| bad(last_start, format!("unparseable line: {e}")))?;
    if !last.hash_is_valid() {
        return Err(bad(last_start, "hash mismatch (record edited)".to_string()));
    }
    let before = if last_start == 0 {
        Head::EMPTY
    } else {
        let (start, line) = line_ending_at(file, path, last_start)?;
        AuditRecord::from_line(&line)
            .map_err(|e| bad(start, format!("unparseable line: {e}")))?
            .head()
    };
    if last.prev != before.hash {
        return Err(bad(
            last_start,
            "prev link broken (record deleted or reordered)".to_string(),
        ));
    }
    // A forged record may carry any seq: no arithmetic on it may overflow.
    if before.seq.checked_add(1) != Some(last.seq) {
        return Err(bad(
            last_start,
            format!("seq gap: expected the one after {}, found {}", before.seq, last.seq),
        ));
    }
    Ok(last.head())
}

/// The line whose newline is the byte before `end`, without the newline, and its offset.
fn line_ending_at(file: &File, path: &Path, end: u64) -> AuditResult<(u64, Vec<u8>)> {
    let io_err = |e| AuditError::io(path, e);
    let newline = end - 1;
    let floor = newline.saturating_sub(MAX_LINE_BYTES as u64 + 1);
    let start = find_newline_before(file, newline, floor)
        .map_err(io_err)?
        .map_or(floor, |p| p + 1);
    if newline - start > MAX_LINE_BYTES as u64 {
        let problem = format!("line longer than {MAX_LINE_BYTES} bytes");
        return Err(AuditError::BadTail {
            path: path.to_path_buf(),
            offset: newline,
            problem,
        });
    }
    Ok((start, read_range(file, start, newline - start).map_err(io_err)?))
}

/// The offset of the last `\n` in `[floor, end)`, scanning backwards a chunk at a time.
fn find_newline_before(file: &File, end: u64, floor: u64) -> io::Result<Option<u64>> {
    let mut chunk_end = end;
    while chunk_end > floor {
        let chunk_start = chunk_end.saturating_sub(READ_CHUNK_BYTES as u64).max(floor);
        let chunk = read_range(file, chunk_start, chunk_end - chunk_start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(chunk_start + i as u64));
        }
        chunk_end = chunk_start;
    }
    Ok(None)
}

fn read_range(mut file: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let len = usize::try_from(len).map_err(io::Error::other)?;
    let mut buf = vec![0; len];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}
