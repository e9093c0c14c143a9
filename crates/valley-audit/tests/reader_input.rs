//! Property tests of the audit log's readers over damaged files: logs written by the real
//! writer, then bytes flipped, inserted, deleted or cut, and files of arbitrary bytes.
//!
//! The oracle is what the crate documents. A line counts as its parsed fields, not its JSON
//! spelling ("only a change of content, not of JSON spelling, counts as an edit"), and a final
//! line without its newline is skipped. So, splitting the damaged file at its newlines:
//! - `verify_file` is `Ok` exactly when every complete line parses to the record the writer
//!   wrote at that position, i.e. the file still holds a prefix of the original records
//!   (removal of the newest records "is not detectable from the file alone"); it then reports
//!   that many records and the last one's head;
//! - `verify_file_anchored` with the writer's final head is `Ok` exactly when the file holds
//!   all the original records;
//! - `Records` yields the parsed lines in order and stops with `Corrupt` at the first line that
//!   does not parse, naming it;
//! - a log that verifies can be reopened and appended to, and still verifies.
//!
//! None of it may panic, whatever the bytes.

use std::fs;
use std::path::Path;

use proptest::prelude::*;
use valley_audit::{
    AuditError, AuditEvent, AuditKind, AuditLog, AuditRecord, Filter, Head, MAX_LINE_BYTES, Problem, Records,
    VerifyReport, read_filtered, verify_file, verify_file_anchored,
};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 1_000,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9./-]{0,16}",
        1 => any::<String>(),
        // Everything the escaping has a rule for: quotes, backslashes, controls, U+2028, non-ASCII.
        1 => proptest::collection::vec(
            prop_oneof![
                Just('"'),
                Just('\\'),
                Just('\n'),
                Just('\r'),
                Just('\u{0}'),
                Just('\u{1f}'),
                Just('\u{7f}'),
                Just('\u{2028}'),
                Just('é'),
                Just('😀'),
                Just('/')
            ],
            0..12
        )
        .prop_map(|c| c.into_iter().collect()),
    ]
}

fn event() -> impl Strategy<Value = AuditEvent> {
    (
        (text(), proptest::sample::select(AuditKind::ALL.to_vec()), text()),
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(text()),
        ),
        (
            proptest::option::of(any::<bool>()),
            proptest::option::of(text()),
            proptest::option::of(any::<u64>()),
        ),
    )
        .prop_map(
            |((hub, kind, detail), (bucket, key, peer, grant), (allowed, rule, bytes))| AuditEvent {
                hub,
                kind,
                bucket,
                key,
                peer,
                grant,
                allowed,
                rule,
                bytes,
                detail,
            },
        )
}

#[derive(Debug, Clone)]
enum Edit {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    /// Removes the whole `n`th line (with its newline).
    DeleteLine {
        n: usize,
    },
    /// Swaps two whole lines.
    SwapLines {
        a: usize,
        b: usize,
    },
    /// Repeats a whole line.
    DuplicateLine {
        n: usize,
    },
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Set { at, byte }),
        2 => (
            any::<usize>(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 1..8),
                Just(b"\n".to_vec()),
                Just(b" ".to_vec()),
                Just(b"\r".to_vec()),
                Just(b"\\".to_vec()),
                Just(b"\"".to_vec()),
            ]
        )
            .prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        2 => (any::<usize>(), 1usize..64).prop_map(|(at, len)| Edit::Delete { at, len }),
        1 => any::<usize>().prop_map(|at| Edit::Truncate { at }),
        1 => any::<usize>().prop_map(|n| Edit::DeleteLine { n }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines { a, b }),
        1 => any::<usize>().prop_map(|n| Edit::DuplicateLine { n }),
    ];
    proptest::collection::vec(edit, 1..4)
}

/// The file's lines, each with its newline (the last one may have none).
fn lines_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

fn mutate(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for edit in edits {
        let n = bytes.len();
        let mut lines = lines_of(bytes);
        let m = lines.len();
        match edit {
            Edit::Flip { at, bit } if n > 0 => bytes[at % n] ^= 1 << bit,
            Edit::Set { at, byte } if n > 0 => bytes[at % n] = *byte,
            Edit::Insert { at, bytes: new } => {
                let at = at % (n + 1);
                bytes.splice(at..at, new.iter().copied());
            }
            Edit::Delete { at, len } if n > 0 => {
                let at = at % n;
                bytes.drain(at..(at + len).min(n));
            }
            Edit::Truncate { at } => bytes.truncate(at % (n + 1)),
            Edit::DeleteLine { n: i } if m > 0 => {
                lines.remove(i % m);
                *bytes = lines.concat();
            }
            Edit::SwapLines { a, b } if m > 0 => {
                lines.swap(a % m, b % m);
                *bytes = lines.concat();
            }
            Edit::DuplicateLine { n: i } if m > 0 => {
                let line = lines[i % m].clone();
                lines.insert(i % m, line);
                *bytes = lines.concat();
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------------

/// What the documentation says a reader sees in `bytes`: the complete lines, each parsed (or
/// the parser's complaint), and the length of the unterminated tail.
struct Expected {
    lines: Vec<Result<AuditRecord, String>>,
    tail: u64,
}

fn expected(bytes: &[u8]) -> Expected {
    let mut parts: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let tail = parts.pop().map_or(0, <[u8]>::len) as u64;
    let lines = parts
        .into_iter()
        .map(|line| {
            if line.len() > MAX_LINE_BYTES {
                Err("too long".to_owned())
            } else {
                AuditRecord::from_line(line)
            }
        })
        .collect();
    Expected { lines, tail }
}

impl Expected {
    /// How many original records the file still holds as a prefix, if that is all it holds.
    fn prefix_of(&self, original: &[AuditRecord]) -> Option<usize> {
        let k = self.lines.len();
        (k <= original.len()
            && self
                .lines
                .iter()
                .zip(original)
                .all(|(line, record)| line.as_ref().is_ok_and(|r| r == record)))
        .then_some(k)
    }
}

fn check_readers(path: &Path, bytes: &[u8], original: &[AuditRecord]) -> Result<(), TestCaseError> {
    fs::write(path, bytes).expect("write");
    let want = expected(bytes);
    let prefix = want.prefix_of(original);

    // verify_file: Ok exactly when the file holds a prefix of the original records.
    let report = verify_file(path).expect("verify reads the file");
    match (&report, prefix) {
        (VerifyReport::Ok(log), Some(k)) => {
            prop_assert_eq!(log.records, k as u64);
            let head = if k == 0 { Head::EMPTY } else { original[k - 1].head() };
            prop_assert_eq!(log.head, head);
            prop_assert_eq!(log.unterminated_tail_bytes, want.tail);
        }
        (VerifyReport::Bad(bad), None) => {
            prop_assert!(bad.line >= 1 && bad.line <= want.lines.len() as u64 + 1, "{bad}");
            // The first bad line is the first that is not the original record in its place,
            // or (a line edited into another record of the log) a later one.
            if let Some(first_unparseable) = want.lines.iter().position(Result::is_err)
                && bad.problem == Problem::Unparseable
            {
                prop_assert_eq!(bad.line, first_unparseable as u64 + 1, "{}", bad);
            }
        }
        (VerifyReport::Ok(log), None) => {
            prop_assert!(false, "damage not reported: verify says {log:?}")
        }
        (VerifyReport::Bad(bad), Some(k)) => {
            prop_assert!(false, "an intact prefix of {k} records reported bad: {bad}")
        }
    }

    // Anchored on the writer's final head: Ok exactly when nothing at all was lost.
    let anchor = original.last().map_or(Head::EMPTY, AuditRecord::head);
    let anchored = verify_file_anchored(path, anchor).expect("verify reads the file");
    prop_assert_eq!(
        anchored.is_ok(),
        prefix == Some(original.len()),
        "anchored verify {} for prefix {:?} of {}",
        anchored,
        prefix,
        original.len()
    );

    // Records: every parsed line in order, then Corrupt at the first that does not parse.
    let mut records = Records::open(path).expect("open");
    for (i, line) in want.lines.iter().enumerate() {
        match (records.next(), line) {
            (Some(Ok(got)), Ok(record)) => prop_assert_eq!(&got, record),
            (Some(Err(AuditError::Corrupt { line, .. })), Err(_)) => {
                prop_assert_eq!(line, i as u64 + 1);
                break;
            }
            (got, line) => prop_assert!(false, "line {}: reader gave {:?}, expected {:?}", i + 1, got, line),
        }
    }
    let parsed_all = want.lines.iter().all(Result::is_ok);
    if parsed_all {
        prop_assert!(records.next().is_none(), "a record after the last complete line");
    }
    prop_assert!(records.next().is_none(), "records after the end or after an error");

    // read_filtered agrees with Records.
    let filtered = read_filtered(path, &Filter::default());
    if parsed_all {
        let all: Vec<AuditRecord> = want.lines.iter().map(|l| l.clone().expect("parsed")).collect();
        prop_assert_eq!(filtered.expect("reads"), all);
    } else {
        prop_assert!(
            matches!(filtered, Err(AuditError::Corrupt { .. })),
            "{:?}",
            filtered.map(|r| r.len())
        );
    }
    Ok(())
}

/// Opening a damaged log never panics; one that verifies reopens, takes an append and still
/// verifies, with the appended record last.
fn check_reopen(path: &Path, bytes: &[u8]) -> Result<(), TestCaseError> {
    fs::write(path, bytes).expect("write");
    let before = verify_file(path).expect("verify");
    let opened = AuditLog::open(path);
    if let VerifyReport::Ok(log) = &before {
        let audit = match opened {
            Ok(audit) => audit,
            Err(e) => return Err(TestCaseError::fail(format!("a log that verifies does not open: {e}"))),
        };
        let head = audit.head();
        if log.unterminated_tail_bytes == 0 {
            prop_assert_eq!(head, log.head);
        } else {
            // The torn tail was cut, or completed when it was a whole record.
            prop_assert!(
                head.seq == log.records || head.seq == log.records + 1,
                "{head:?} {log:?}"
            );
        }
        let appended = audit
            .append(AuditEvent::new("h", AuditKind::Access, "after reopen"))
            .expect("append");
        prop_assert_eq!(appended.seq, head.seq + 1);
        prop_assert_eq!(appended.prev, head.hash);
        drop(audit);
        match verify_file(path).expect("verify") {
            VerifyReport::Ok(after) => {
                prop_assert_eq!(after.records, head.seq + 1);
                prop_assert_eq!(after.head, appended.head());
                prop_assert_eq!(after.unterminated_tail_bytes, 0);
            }
            VerifyReport::Bad(bad) => prop_assert!(false, "appended log does not verify: {bad}"),
        }
    } else {
        drop(opened);
    }
    Ok(())
}

/// A log of `events` written by the real writer; its bytes and records.
fn write_log(dir: &Path, events: Vec<AuditEvent>, batches: usize) -> (Vec<u8>, Vec<AuditRecord>) {
    let path = dir.join("original.log");
    let _ = fs::remove_file(&path);
    let log = AuditLog::open(&path).expect("open");
    let mut records = Vec::new();
    let per = events.len().div_ceil(batches.max(1)).max(1);
    for chunk in events.chunks(per) {
        records.extend(log.append_batch(chunk.iter().cloned()).expect("append"));
    }
    drop(log);
    let bytes = fs::read(&path).expect("read");
    (bytes, records)
}

proptest! {
    #![proptest_config(config(600))]

    /// Damage of a real log is reported exactly as documented (see the module docs).
    #[test]
    fn damaged_log_is_reported_as_documented(
        events in proptest::collection::vec(event(), 1..6),
        batches in 1usize..3,
        edits in edits(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (original_bytes, original) = write_log(dir.path(), events, batches);
        // The oracle agrees with the undamaged log first.
        prop_assert_eq!(expected(&original_bytes).prefix_of(&original), Some(original.len()));
        let mut bytes = original_bytes.clone();
        mutate(&mut bytes, &edits);
        check_readers(&dir.path().join("damaged.log"), &bytes, &original)?;
    }
}

proptest! {
    #![proptest_config(config(250))]

    /// Reopening a damaged log (the hub does so at every start) never panics; a log that
    /// verifies continues its chain.
    #[test]
    fn damaged_log_reopens_or_refuses(
        events in proptest::collection::vec(event(), 1..4),
        edits in edits(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut bytes, _) = write_log(dir.path(), events, 1);
        mutate(&mut bytes, &edits);
        check_reopen(&dir.path().join("damaged.log"), &bytes)?;
    }
}

proptest! {
    #![proptest_config(config(1_000))]

    /// Files of arbitrary bytes, and of arbitrary lines, never panic a reader.
    #[test]
    fn arbitrary_bytes_never_panic_a_reader(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            proptest::collection::vec(
                prop_oneof![
                    any::<String>(),
                    Just("{}".to_owned()),
                    Just("{\"v\":1}".to_owned()),
                    Just(String::new()),
                    "\\{\"v\":[0-9],\"seq\":[0-9]{1,20},\"time_unix_ms\":0,\"hub\":\"h\",\"kind\":\"access\"\\}",
                ],
                0..6,
            )
            .prop_map(|lines| lines.join("\n").into_bytes()),
        ],
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        check_readers(&dir.path().join("any.log"), &bytes, &[])?;
        check_reopen(&dir.path().join("any2.log"), &bytes)?;
    }

    /// Single lines straight to the line parser.
    #[test]
    fn arbitrary_line_never_panics_the_parser(line in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(record) = AuditRecord::from_line(&line) {
            // Whatever parsed re-serializes to a line that parses to the same record.
            prop_assert_eq!(AuditRecord::from_line(record.to_line().as_bytes()).expect("reparse"), record);
        }
    }
}

/// Records forged into a chain by someone who can write the file (the hash has no secret) with
/// extreme seqs: the readers must not overflow or panic on them.
#[test]
fn forged_extreme_seqs_do_not_panic() {
    use valley_audit::ChainHash;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("forged.log");
    let forge = |seq: u64, prev: ChainHash| -> AuditRecord {
        let mut record = AuditRecord {
            version: valley_audit::RECORD_VERSION,
            redacted_subject: None,
            seq,
            time_unix_ms: u64::MAX,
            event: AuditEvent::new("h", AuditKind::Access, "forged"),
            prev,
            hash: ChainHash::ZERO,
        };
        record.hash = record.computed_hash();
        record
    };
    for seqs in [
        vec![u64::MAX],
        vec![u64::MAX, 0],
        vec![1, u64::MAX],
        vec![0],
        vec![u64::MAX, 0, 1],
    ] {
        let mut prev = ChainHash::ZERO;
        let mut text = String::new();
        for &seq in &seqs {
            let record = forge(seq, prev);
            prev = record.hash;
            text.push_str(&record.to_line());
            text.push('\n');
        }
        fs::write(&path, &text).expect("write");
        let report = verify_file(&path).expect("verify");
        assert!(
            !report.is_ok(),
            "{seqs:?}: a chain that does not start at seq 1 verified"
        );
        assert_eq!(Records::open(&path).expect("open").count(), seqs.len());
        // Reopening may refuse (bad tail) or accept; it must not panic.
        let _ = AuditLog::open(&path);
    }
}

/// A line far longer than any record is skipped in bounded memory and reported, not read.
#[test]
fn overlong_lines_are_refused_promptly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("long.log");
    for len in [MAX_LINE_BYTES, MAX_LINE_BYTES + 1, 64 * 1024 * 1024] {
        let mut bytes = vec![b'x'; len];
        bytes.push(b'\n');
        fs::write(&path, &bytes).expect("write");
        let started = std::time::Instant::now();
        match verify_file(&path).expect("verify") {
            VerifyReport::Bad(bad) => {
                assert_eq!(bad.line, 1);
                assert_eq!(bad.problem, Problem::Unparseable);
                assert_eq!(bad.detail.contains("longer than"), len > MAX_LINE_BYTES, "{bad}");
            }
            ok => panic!("{len}-byte garbage line verified: {ok}"),
        }
        match Records::open(&path).expect("open").next() {
            Some(Err(AuditError::Corrupt { line: 1, .. })) => {}
            other => panic!("{len}: {other:?}"),
        }
        assert!(matches!(AuditLog::open(&path), Err(AuditError::BadTail { .. })));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{len}: {:?}",
            started.elapsed()
        );
    }
    // Unterminated: an append in flight, skipped.
    fs::write(&path, vec![b'x'; 8 * 1024 * 1024]).expect("write");
    match verify_file(&path).expect("verify") {
        VerifyReport::Ok(log) => {
            assert_eq!(log.records, 0);
            assert_eq!(log.unterminated_tail_bytes, 8 * 1024 * 1024);
        }
        bad => panic!("{bad}"),
    }
    assert!(Records::open(&path).expect("open").next().is_none());
}
