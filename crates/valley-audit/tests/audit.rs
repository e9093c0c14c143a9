//! The audit log against real files: chaining across reopen, crash recovery, every tamper case
//! `verify_file` must catch (with the right first bad line), filters, concurrency and group
//! commit.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use valley_audit::{
    AuditError, AuditEvent, AuditKind, AuditLog, AuditRecord, BadRecord, ChainHash, Filter, Head, MAX_FIELD_BYTES,
    Problem, VerifyReport, read_filtered, verify_file, verify_file_anchored, verify_file_anchors,
};

fn event(i: u64) -> AuditEvent {
    let kind = AuditKind::ALL[(i % AuditKind::ALL.len() as u64) as usize];
    AuditEvent::new(
        if i.is_multiple_of(2) { "cn-east-1" } else { "cn-west-2" },
        kind,
        format!("event {i}"),
    )
    .with_bucket(if i.is_multiple_of(3) { "sales" } else { "logs" })
    .with_key(format!("k/{i}"))
    .with_bytes(i * 100)
}

fn log_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("audit.log")
}

/// A log of `n` records, closed.
fn log_with(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let log = AuditLog::open(&path).expect("open");
    for i in 1..=n {
        log.append(event(i)).expect("append");
    }
    (dir, path)
}

fn read_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).expect("write");
}

fn verify_ok(path: &Path) -> valley_audit::VerifiedLog {
    match verify_file(path).expect("verify") {
        VerifyReport::Ok(log) => log,
        VerifyReport::Bad(bad) => panic!("expected a valid log, got {bad}"),
    }
}

fn verify_bad(path: &Path) -> BadRecord {
    match verify_file(path).expect("verify") {
        VerifyReport::Bad(bad) => bad,
        VerifyReport::Ok(log) => panic!("expected tampering to be found, got OK with {} records", log.records),
    }
}

/// A record with a correct hash for whatever fields it is given, as a forger would make it.
fn forged_line(seq: u64, prev: ChainHash, detail: &str) -> String {
    let mut record = AuditRecord {
        version: valley_audit::RECORD_VERSION,
        redacted_subject: None,
        seq,
        time_unix_ms: 1,
        event: AuditEvent::new("cn-east-1", AuditKind::Access, detail),
        prev,
        hash: ChainHash::ZERO,
    };
    record.hash = record.computed_hash();
    record.to_line()
}

fn parse(line: &str) -> AuditRecord {
    AuditRecord::from_line(line.as_bytes()).expect("parse")
}

// ---------------------------------------------------------------- appending and reopening

#[test]
fn records_chain_from_zero_and_return_what_is_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let log = AuditLog::open(&path).expect("open");
    assert_eq!(log.head(), Head::EMPTY);
    let first = log.append(event(1)).expect("append");
    let second = log.append(event(2)).expect("append");
    assert_eq!((first.seq, first.prev), (1, ChainHash::ZERO));
    assert_eq!((second.seq, second.prev), (2, first.hash));
    assert!(first.hash_is_valid() && second.hash_is_valid());
    assert_eq!(log.head(), second.head());
    assert_eq!(read_lines(&path), vec![first.to_line(), second.to_line()]);
    assert_eq!(verify_ok(&path).head, second.head());
}

#[test]
fn reopening_continues_the_chain() {
    let (_dir, path) = log_with(3);
    let head_before = verify_ok(&path).head;
    let log = AuditLog::open(&path).expect("reopen");
    assert_eq!(log.head(), head_before);
    let next = log.append(event(4)).expect("append");
    assert_eq!((next.seq, next.prev), (4, head_before.hash));
    drop(log);
    let log = AuditLog::open(&path).expect("reopen again");
    log.append_batch([event(5), event(6)]).expect("batch");
    let report = verify_ok(&path);
    assert_eq!(report.records, 6);
    assert_eq!(report.head, log.head());
}

#[test]
fn an_empty_or_new_log_verifies_with_no_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    drop(AuditLog::open(&path).expect("create"));
    let report = verify_ok(&path);
    assert_eq!((report.records, report.head), (0, Head::EMPTY));
}

#[test]
fn a_second_writer_is_refused_while_the_first_is_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let log = AuditLog::open(&path).expect("open");
    assert!(matches!(AuditLog::open(&path), Err(AuditError::Locked { .. })));
    drop(log);
    AuditLog::open(&path).expect("open after the first writer closed");
}

// ---------------------------------------------------------------- crash recovery at open

#[test]
fn a_torn_final_line_is_truncated_and_the_chain_continues() {
    let (_dir, path) = log_with(3);
    let good_len = fs::metadata(&path).expect("meta").len();
    let head = verify_ok(&path).head;
    // The first half of the line a crashed append was writing.
    let torn = forged_line(4, head.hash, "never finished");
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(&torn.as_bytes()[..torn.len() / 2]))
        .expect("tear");

    let log = AuditLog::open(&path).expect("open repairs the tail");
    assert_eq!(fs::metadata(&path).expect("meta").len(), good_len);
    assert_eq!(log.head(), head);
    assert_eq!(log.append(event(4)).expect("append").seq, 4);
    assert_eq!(verify_ok(&path).records, 4);
}

#[test]
fn a_torn_tail_of_zeros_is_truncated() {
    // What some filesystems leave when a crash lands after the size grew but before the data.
    let (_dir, path) = log_with(2);
    let good_len = fs::metadata(&path).expect("meta").len();
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(&[0; 700]))
        .expect("zeros");
    let log = AuditLog::open(&path).expect("open");
    assert_eq!(fs::metadata(&path).expect("meta").len(), good_len);
    assert_eq!(log.append(event(3)).expect("append").seq, 3);
    assert_eq!(verify_ok(&path).records, 3);
}

#[test]
fn a_file_holding_only_a_torn_line_becomes_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    fs::write(&path, b"{\"v\":1,\"seq\":1,\"ti").expect("write");
    let log = AuditLog::open(&path).expect("open");
    assert_eq!(log.head(), Head::EMPTY);
    assert_eq!(log.append(event(1)).expect("append").seq, 1);
    assert_eq!(verify_ok(&path).records, 1);
}

#[test]
fn a_whole_final_record_that_lost_only_its_newline_is_kept() {
    let (_dir, path) = log_with(3);
    let head = verify_ok(&path).head;
    let text = fs::read_to_string(&path).expect("read");
    fs::write(&path, text.trim_end_matches('\n')).expect("drop the newline");
    let log = AuditLog::open(&path).expect("open");
    assert_eq!(log.head(), head);
    assert_eq!(fs::read_to_string(&path).expect("read"), text);
    assert_eq!(log.append(event(4)).expect("append").prev, head.hash);
    assert_eq!(verify_ok(&path).records, 4);
}

#[test]
fn open_refuses_to_build_on_a_bad_newest_record() {
    let (_dir, path) = log_with(3);
    let original = read_lines(&path);

    let mut edited = original.clone();
    edited[2] = edited[2].replace("event 3", "event 9");
    write_lines(&path, &edited);
    let err = AuditLog::open(&path).err().expect("edited newest record refused");
    assert!(matches!(err, AuditError::BadTail { .. }), "{err}");
    assert!(err.to_string().contains("hash mismatch"), "{err}");
    assert_eq!(read_lines(&path), edited, "a refused open leaves the file alone");

    let mut forged = original.clone();
    forged.push(forged_line(4, ChainHash::ZERO, "inserted by hand"));
    write_lines(&path, &forged);
    let err = AuditLog::open(&path).err().expect("unlinked newest record refused");
    assert!(err.to_string().contains("prev link broken"), "{err}");

    let mut lone = original[..1].to_vec();
    lone[0] = forged_line(1, parse(&original[0]).hash, "first record with a non-zero prev");
    write_lines(&path, &lone);
    let err = AuditLog::open(&path).err().expect("first record must link to zeros");
    assert!(err.to_string().contains("prev link broken"), "{err}");
}

#[test]
fn open_checks_only_the_tail_and_verify_finds_older_edits() {
    let (_dir, path) = log_with(4);
    let mut lines = read_lines(&path);
    lines[1] = lines[1].replace("\"bytes\":200", "\"bytes\":201");
    write_lines(&path, &lines);
    drop(AuditLog::open(&path).expect("tail is intact, so open succeeds"));
    let bad = verify_bad(&path);
    assert_eq!((bad.line, bad.seq, bad.problem), (2, Some(2), Problem::HashMismatch));
}

// ---------------------------------------------------------------- tampering found by verify_file

#[test]
fn an_edited_field_in_any_record_is_a_hash_mismatch_at_that_line() {
    let (_dir, path) = log_with(5);
    let original = read_lines(&path);
    let edits: [(usize, &str, &str); 6] = [
        (0, "\"detail\":\"event 1\"", "\"detail\":\"event one\""),
        (2, "\"bucket\":\"sales\"", "\"bucket\":\"public\""),
        (1, "\"allowed\":null", "\"allowed\":true"),
        (3, "\"hub\":\"cn-east-1\"", "\"hub\":\"eu-west-1\""),
        (4, "\"seq\":5", "\"seq\":6"),
        (4, "\"hash\":\"", "\"hash\":\"0"),
    ];
    for (index, from, to) in edits {
        let mut lines = original.clone();
        assert!(lines[index].contains(from), "line {index} lacks {from}");
        lines[index] = lines[index].replacen(from, to, 1);
        if to.starts_with("\"hash\"") {
            // Keep it 64 hex digits: drop the last one.
            let cut = lines[index].len() - 3;
            lines[index].replace_range(cut..cut + 1, "");
        }
        write_lines(&path, &lines);
        let bad = verify_bad(&path);
        assert_eq!(bad.line, index as u64 + 1, "edit {from} -> {to}: {bad}");
        assert_eq!(bad.problem, Problem::HashMismatch, "edit {from} -> {to}: {bad}");
        assert_eq!(bad.problem.to_string(), "hash mismatch (record edited)");
    }
}

#[test]
fn an_edited_prev_is_a_hash_mismatch_not_a_silent_relink() {
    let (_dir, path) = log_with(3);
    let mut lines = read_lines(&path);
    let prev_of_3 = parse(&lines[2]).prev.to_hex();
    lines[2] = lines[2].replace(&prev_of_3, &"ab".repeat(32));
    write_lines(&path, &lines);
    let bad = verify_bad(&path);
    assert_eq!((bad.line, bad.problem), (3, Problem::HashMismatch));
}

#[test]
fn a_deleted_middle_record_breaks_the_next_prev_link() {
    let (_dir, path) = log_with(5);
    let mut lines = read_lines(&path);
    lines.remove(2);
    write_lines(&path, &lines);
    let bad = verify_bad(&path);
    assert_eq!(
        (bad.line, bad.seq, bad.problem),
        (3, Some(4), Problem::PrevLinkBroken),
        "{bad}"
    );
    assert_eq!(
        bad.problem.to_string(),
        "prev link broken (record deleted or reordered)"
    );
}

#[test]
fn a_deleted_first_record_breaks_the_first_prev_link() {
    let (_dir, path) = log_with(3);
    let lines = read_lines(&path);
    write_lines(&path, &lines[1..]);
    let bad = verify_bad(&path);
    assert_eq!(
        (bad.line, bad.seq, bad.problem),
        (1, Some(2), Problem::PrevLinkBroken),
        "{bad}"
    );
}

#[test]
fn two_swapped_records_break_the_link_at_the_first_of_them() {
    let (_dir, path) = log_with(5);
    let mut lines = read_lines(&path);
    lines.swap(1, 2);
    write_lines(&path, &lines);
    let bad = verify_bad(&path);
    assert_eq!(
        (bad.line, bad.seq, bad.problem),
        (2, Some(3), Problem::PrevLinkBroken),
        "{bad}"
    );

    let mut lines = read_lines(&path);
    lines.swap(1, 2);
    lines.swap(0, 4);
    write_lines(&path, &lines);
    let bad = verify_bad(&path);
    assert_eq!((bad.line, bad.problem), (1, Problem::PrevLinkBroken), "{bad}");
}

#[test]
fn a_record_appended_by_hand_with_a_wrong_hash_is_found() {
    let (_dir, path) = log_with(3);
    let head = verify_ok(&path).head;
    let mut lines = read_lines(&path);
    // Right seq and prev, but the hash of something else.
    let mut forged = parse(&forged_line(4, head.hash, "looks legitimate"));
    forged.event.detail = "but was edited after hashing".to_string();
    lines.push(forged.to_line());
    write_lines(&path, &lines);
    let bad = verify_bad(&path);
    assert_eq!(
        (bad.line, bad.seq, bad.problem),
        (4, Some(4), Problem::HashMismatch),
        "{bad}"
    );

    // A copy of a genuine record has a valid hash but does not link.
    let mut lines = read_lines(&path);
    lines[3] = lines[1].clone();
    write_lines(&path, &lines);
    let bad = verify_bad(&path);
    assert_eq!((bad.line, bad.problem), (4, Problem::PrevLinkBroken), "{bad}");
}

#[test]
fn a_seq_gap_with_valid_hashes_and_links_is_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let first = forged_line(1, ChainHash::ZERO, "one");
    let second = forged_line(3, parse(&first).hash, "skips two");
    write_lines(&path, &[first, second]);
    let bad = verify_bad(&path);
    assert_eq!((bad.line, bad.seq, bad.problem), (2, Some(3), Problem::SeqGap), "{bad}");
    assert_eq!(bad.problem.to_string(), "seq gap");
}

#[test]
fn an_unparseable_line_is_reported_with_its_number() {
    let (_dir, path) = log_with(4);
    let mut lines = read_lines(&path);
    lines[1] = "this is not json".to_string();
    write_lines(&path, &lines);
    let bad = verify_bad(&path);
    assert_eq!(
        (bad.line, bad.seq, bad.problem),
        (2, None, Problem::Unparseable),
        "{bad}"
    );
    assert_eq!(bad.problem.to_string(), "unparseable line");

    let mut lines = read_lines(&path);
    lines[1] = String::new();
    write_lines(&path, &lines);
    assert_eq!(verify_bad(&path).line, 2, "a blank line is unparseable too");

    let mut lines = read_lines(&path);
    lines[1] = "x".repeat(valley_audit::MAX_LINE_BYTES + 10);
    write_lines(&path, &lines);
    let bad = verify_bad(&path);
    assert_eq!((bad.line, bad.problem), (2, Problem::Unparseable), "{bad}");
}

#[test]
fn removing_the_newest_records_is_caught_only_against_an_anchored_head() {
    let (_dir, path) = log_with(5);
    let anchored = verify_ok(&path).head;
    assert_eq!(
        verify_file_anchored(&path, anchored).expect("verify"),
        verify_file(&path).expect("verify")
    );

    let lines = read_lines(&path);
    write_lines(&path, &lines[..3]);
    // The limitation: a shortened chain is still a valid chain.
    assert_eq!(verify_ok(&path).records, 3);
    let VerifyReport::Bad(bad) = verify_file_anchored(&path, anchored).expect("verify") else {
        panic!("the anchored head must be missed");
    };
    assert_eq!(
        (bad.line, bad.seq, bad.problem),
        (4, Some(5), Problem::AnchorMissing),
        "{bad}"
    );

    // A chain recomputed by hand from record 4 on verifies on its own, but not against the anchor.
    let mut rewritten = lines[..3].to_vec();
    let four = forged_line(4, parse(&lines[2]).hash, "rewritten");
    let five = forged_line(5, parse(&four).hash, "rewritten");
    rewritten.extend([four, five]);
    write_lines(&path, &rewritten);
    assert_eq!(verify_ok(&path).records, 5);
    let VerifyReport::Bad(bad) = verify_file_anchored(&path, anchored).expect("verify") else {
        panic!("a rewritten chain must not match the anchor");
    };
    assert_eq!((bad.line, bad.problem), (5, Problem::AnchorMissing), "{bad}");
    assert!(verify_file_anchored(&path, Head::EMPTY).expect("verify").is_ok());
}

#[test]
fn many_anchors_are_checked_at_once_and_a_fork_between_them_is_named() {
    let (_dir, path) = log_with(6);
    let lines = read_lines(&path);
    let heads: Vec<Head> = lines.iter().map(|l| parse(l).head()).collect();
    // A peer's signed heads over time: all in the chain.
    assert!(
        verify_file_anchors(&path, &[heads[1], heads[3], heads[5]])
            .expect("verify")
            .is_ok()
    );
    // Rewritten from record 3 on: every head from there on is missed, the first one named.
    let mut rewritten = lines[..2].to_vec();
    let mut prev = parse(&lines[1]).hash;
    for seq in 3..=6 {
        let line = forged_line(seq, prev, "rewritten");
        prev = parse(&line).hash;
        rewritten.push(line);
    }
    write_lines(&path, &rewritten);
    assert_eq!(verify_ok(&path).records, 6);
    let VerifyReport::Bad(bad) = verify_file_anchors(&path, &[heads[0], heads[3], heads[5]]).expect("verify") else {
        panic!("a rewritten chain must not match its heads");
    };
    assert_eq!((bad.seq, bad.problem), (Some(4), Problem::AnchorMissing), "{bad}");
    // Two heads of one seq that differ: the chain forked, whatever the file holds.
    let fork = Head {
        seq: 2,
        hash: ChainHash::ZERO,
    };
    let VerifyReport::Bad(bad) = verify_file_anchors(&path, &[heads[1], fork]).expect("verify") else {
        panic!("a fork must be named");
    };
    assert!(bad.detail.contains("two heads at seq 2"), "{bad}");
}

// ---------------------------------------------------------------- readers

#[test]
fn readers_skip_an_append_in_flight() {
    let (_dir, path) = log_with(3);
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(b"{\"v\":1,\"se"))
        .expect("tear");
    let report = verify_ok(&path);
    assert_eq!((report.records, report.unterminated_tail_bytes), (3, 10));
    assert_eq!(read_filtered(&path, &Filter::default()).expect("read").len(), 3);
}

#[test]
fn read_filtered_reports_an_unparseable_line() {
    let (_dir, path) = log_with(3);
    let mut lines = read_lines(&path);
    lines[2] = "{".to_string();
    write_lines(&path, &lines);
    let err = read_filtered(&path, &Filter::default()).unwrap_err();
    assert!(matches!(err, AuditError::Corrupt { line: 3, .. }), "{err}");
}

#[test]
fn filters_match_every_set_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let log = AuditLog::open(&path).expect("open");
    log.append_batch([
        AuditEvent::new("cn-east-1", AuditKind::PolicyDecision, "allow")
            .with_bucket("sales")
            .with_grant("g-eu-1")
            .with_allowed(true),
        AuditEvent::new("cn-east-1", AuditKind::Transfer, "copy")
            .with_bucket("sales")
            .with_grant("g-eu-1"),
        AuditEvent::new("cn-west-2", AuditKind::Transfer, "copy").with_bucket("logs"),
        AuditEvent::new("cn-east-1", AuditKind::Access, "get").with_bucket("logs"),
        AuditEvent::new("cn-east-1", AuditKind::GrantChange, "revoke").with_grant("g-eu-1"),
    ])
    .expect("batch");

    let seqs = |filter: Filter| -> Vec<u64> {
        read_filtered(&path, &filter)
            .expect("read")
            .iter()
            .map(|r| r.seq)
            .collect()
    };
    assert_eq!(seqs(Filter::default()), [1, 2, 3, 4, 5]);
    assert_eq!(
        seqs(Filter {
            bucket: Some("sales".into()),
            ..Filter::default()
        }),
        [1, 2]
    );
    assert_eq!(
        seqs(Filter {
            hub: Some("cn-west-2".into()),
            ..Filter::default()
        }),
        [3]
    );
    assert_eq!(
        seqs(Filter {
            grant: Some("g-eu-1".into()),
            ..Filter::default()
        }),
        [1, 2, 5]
    );
    assert_eq!(
        seqs(Filter {
            kind: Some(AuditKind::Transfer),
            ..Filter::default()
        }),
        [2, 3]
    );
    assert_eq!(
        seqs(Filter {
            since_seq: Some(4),
            ..Filter::default()
        }),
        [4, 5]
    );
    assert_eq!(
        seqs(Filter {
            bucket: Some("sales".into()),
            hub: Some("cn-east-1".into()),
            grant: Some("g-eu-1".into()),
            kind: Some(AuditKind::Transfer),
            since_seq: Some(2),
        }),
        [2]
    );
    assert!(
        seqs(Filter {
            bucket: Some("nope".into()),
            ..Filter::default()
        })
        .is_empty()
    );
    let first = &read_filtered(
        &path,
        &Filter {
            since_seq: Some(1),
            ..Filter::default()
        },
    )
    .expect("read")[0];
    assert_eq!(first.event.allowed, Some(true));
}

// ---------------------------------------------------------------- concurrency and group commit

#[test]
fn concurrent_appends_from_eight_threads_make_one_gapless_chain() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 50;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let log = Arc::new(AuditLog::open(&path).expect("open"));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|i| log.append(event(t * PER_THREAD + i)).expect("append").seq)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs = HashSet::new();
    for handle in handles {
        let mine = handle.join().expect("thread");
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "one thread's records stay in its order"
        );
        seqs.extend(mine);
    }
    let total = THREADS * PER_THREAD;
    assert_eq!(seqs, (1..=total).collect::<HashSet<_>>());
    let report = verify_ok(&path);
    assert_eq!(report.records, total);
    assert_eq!(report.head, log.head());
    assert!(log.syncs() <= total, "never more than one fsync per append");
}

#[test]
fn append_batch_writes_consecutive_records_with_one_fsync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let log = AuditLog::open(&path).expect("open");
    log.append(event(0)).expect("append");
    let syncs = log.syncs();
    let records = log.append_batch((1..=50).map(event)).expect("batch");
    assert_eq!(log.syncs(), syncs + 1);
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (2..=51).collect::<Vec<_>>()
    );
    assert!(records.windows(2).all(|w| w[1].prev == w[0].hash));
    assert_eq!(log.head(), records[49].head());
    assert_eq!(verify_ok(&path).records, 51);

    assert!(log.append_batch([]).expect("empty batch").is_empty());
    assert_eq!(log.syncs(), syncs + 1, "an empty batch does not fsync");
}

#[test]
fn a_batch_with_one_refused_event_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let log = AuditLog::open(&path).expect("open");
    let too_long = event(2).with_key("k".repeat(MAX_FIELD_BYTES + 1));
    let err = log.append_batch([event(1), too_long]).unwrap_err();
    assert!(matches!(err, AuditError::FieldTooLong { field: "key", .. }), "{err}");
    assert_eq!(fs::metadata(&path).expect("meta").len(), 0);
    assert_eq!(log.head(), Head::EMPTY);
    assert_eq!(log.append(event(1)).expect("append").seq, 1);
}

#[test]
fn awkward_strings_are_stored_and_verified_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let log = AuditLog::open(&path).expect("open");
    let detail = "quote \" backslash \\ newline \n cr \r tab \t nul \u{0} del \u{7f} 中文 😀 \u{2028}";
    let record = log
        .append(AuditEvent::new("hub", AuditKind::RefusedRequest, detail).with_key("a\nb/\"c\""))
        .expect("append");
    assert_eq!(read_lines(&path).len(), 1, "one record, one line");
    let back = read_filtered(&path, &Filter::default()).expect("read");
    assert_eq!(back, vec![record]);
    assert_eq!(back[0].event.detail, detail);
    verify_ok(&path);
}

#[test]
fn the_tail_is_found_across_read_chunks_with_worst_case_lines() {
    // Every string byte escaped as \u00xx: the longest lines this crate writes, several per
    // 64 KiB read chunk boundary.
    let worst = |i: u64| {
        let ids = "\u{1}".repeat(MAX_FIELD_BYTES);
        AuditEvent::new(
            ids.clone(),
            AuditKind::Access,
            "\u{2}".repeat(2 * valley_audit::MAX_DETAIL_BYTES),
        )
        .with_bucket(ids.clone())
        .with_key(ids.clone())
        .with_peer(ids.clone())
        .with_grant(ids.clone())
        .with_rule(ids)
        .with_bytes(i)
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let log = AuditLog::open(&path).expect("open");
    let records = log.append_batch((1..=6).map(worst)).expect("batch");
    drop(log);
    let longest = read_lines(&path).iter().map(String::len).max().unwrap_or(0);
    assert!(longest > 60_000 && longest <= valley_audit::MAX_LINE_BYTES, "{longest}");

    let torn = records[5].to_line();
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(&torn.as_bytes()[..torn.len() - 10]))
        .expect("tear");
    let log = AuditLog::open(&path).expect("reopen");
    assert_eq!(log.head(), records[5].head());
    assert_eq!(log.append(worst(7)).expect("append").seq, 7);
    assert_eq!(verify_ok(&path).records, 7);
}

#[test]
fn a_log_begun_under_version_1_goes_on_under_version_2_and_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = log_path(&dir);
    let mut prev = ChainHash::ZERO;
    let mut lines = Vec::new();
    for seq in 1..=3 {
        let mut record = AuditRecord {
            version: 1,
            redacted_subject: None,
            seq,
            time_unix_ms: 1,
            event: event(seq),
            prev,
            hash: ChainHash::ZERO,
        };
        record.hash = record.computed_hash();
        prev = record.hash;
        lines.push(record.to_line());
    }
    write_lines(&path, &lines);
    let log = AuditLog::open(&path).expect("open a version 1 log");
    let appended = log.append(event(4)).expect("append");
    assert_eq!((appended.version, appended.seq, appended.prev), (2, 4, prev));
    drop(log);
    assert_eq!(verify_ok(&path).records, 4);
}
