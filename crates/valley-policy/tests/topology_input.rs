//! Property tests of the policy crate's decoders of untrusted text: the topology file
//! (`Topology::parse`) and a bucket's placement policy as the admin API decodes it
//! (`toml::from_str::<PlacementPolicy>`, then `validate`). Arbitrary and mutated input must give
//! an error or a value, never a panic, a hang or an unbounded allocation.

use proptest::prelude::*;
use valley_policy::{PlacementPolicy, Topology, TopologyError};

const NETWORK: &str = include_str!("../../../examples/network.toml");

fn network() -> Topology {
    Topology::parse(NETWORK).expect("example network parses")
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

/// Lines a line number may name: 1 ..= lines + 1 (an error at the very end of the file, after
/// its last newline, is on the line after it).
fn line_in_range(source: &str, line: usize) -> bool {
    (1..=source.split('\n').count().max(1)).contains(&line)
}

/// What `parse` promises: an error names a line of the source (`Invalid`) or is about the
/// whole file (`Parse`); a topology it returns satisfies the checks it documents.
fn check_parse(source: &str) -> Result<(), TestCaseError> {
    match Topology::parse(source) {
        Err(TopologyError::Invalid { line, message }) => {
            prop_assert!(
                line_in_range(source, line),
                "line {line} is outside a source of {} lines ({message})",
                source.split('\n').count()
            );
            prop_assert!(!message.is_empty());
        }
        Err(TopologyError::Parse(message)) => prop_assert!(!message.is_empty()),
        Ok(t) => {
            prop_assert!(t.hubs().count() >= 1);
            for hub in t.hubs() {
                prop_assert!(!hub.id.is_empty());
                prop_assert!(
                    hub.id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                    "{:?}",
                    hub.id
                );
                prop_assert!(!hub.jurisdiction.is_empty());
                prop_assert!((-90.0..=90.0).contains(&hub.lat) && (-180.0..=180.0).contains(&hub.lon));
            }
            for link in t.links() {
                prop_assert!(t.hub(&link.a).is_some() && t.hub(&link.b).is_some(), "{link:?}");
                prop_assert!(link.a != link.b);
                prop_assert!((0.0..1.0).contains(&link.loss), "{link:?}");
                prop_assert!(link.rtt_ms >= 0.0 && link.bandwidth_mbit > 0.0, "{link:?}");
                prop_assert!(
                    link.replication_limit_mbit.is_none_or(|m| m > 0.0 && m.is_finite()),
                    "{link:?}"
                );
            }
            // Parsing is a function of the text: the same text, the same network and hash.
            let again = Topology::parse(source).expect("parses twice");
            prop_assert_eq!(again.hash(), t.hash());
            prop_assert_eq!(again, t);
        }
    }
    Ok(())
}

/// A byte-level edit; the result is taken as text lossily (the hub reads the file as UTF-8).
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
    /// Replaces the value of the `n`th `key = value` line with `value`.
    Value {
        n: usize,
        value: String,
    },
    DeleteLine {
        n: usize,
    },
    DuplicateLine {
        n: usize,
    },
    SwapLines {
        a: usize,
        b: usize,
    },
}

/// Values that a hand-edited file could hold: wrong types, extreme and special numbers,
/// strings with quotes and escapes, arrays, inline tables. (`nan` is left to
/// `links_with_nan_or_infinite_figures_are_refused`.)
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("inf".to_owned()),
        Just("-inf".to_owned()),
        Just("-0.0".to_owned()),
        Just("1e400".to_owned()),
        Just("-1".to_owned()),
        Just("0".to_owned()),
        Just("1".to_owned()),
        Just("0.99999999999".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("true".to_owned()),
        Just("\"\"".to_owned()),
        Just("\"east\"".to_owned()),
        Just("\"west\"".to_owned()),
        Just("\"frankfurt\"".to_owned()),
        Just("\"hong-kong\"".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        Just("\"\\uD800\"".to_owned()),
        Just("'''multi\nline'''".to_owned()),
        Just("[1, \"a\", [2]]".to_owned()),
        Just("{ a = 1 }".to_owned()),
        Just("1979-05-27T07:32:00Z".to_owned()),
        "-?[0-9]{1,6}(\\.[0-9]{1,4})?",
        "\"[a-z0-9 _-]{0,12}\"",
        any::<String>(),
    ]
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        1 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Set { at, byte }),
        1 => (
            any::<usize>(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 1..8),
                prop_oneof![
                    Just(&b"[[hub]]\n"[..]),
                    Just(&b"[[link]]\n"[..]),
                    Just(&b"\n"[..]),
                    Just(&b"\""[..]),
                    Just(&b"="[..]),
                    Just(&b"#"[..]),
                    Just(&b"[hub]\n"[..]),
                    Just(&b"colour = \"red\"\n"[..]),
                ]
                .prop_map(<[u8]>::to_vec),
            ]
        )
            .prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        1 => (any::<usize>(), 1usize..32).prop_map(|(at, len)| Edit::Delete { at, len }),
        1 => any::<usize>().prop_map(|at| Edit::Truncate { at }),
        3 => (any::<usize>(), value()).prop_map(|(n, value)| Edit::Value { n, value }),
        1 => any::<usize>().prop_map(|n| Edit::DeleteLine { n }),
        1 => any::<usize>().prop_map(|n| Edit::DuplicateLine { n }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines { a, b }),
    ];
    proptest::collection::vec(edit, 1..4)
}

fn mutate(source: &str, edits: &[Edit]) -> String {
    let mut text = source.to_owned();
    for edit in edits {
        let mut bytes = text.into_bytes();
        let n = bytes.len();
        let mut lines: Vec<String> = String::from_utf8_lossy(&bytes).split('\n').map(str::to_owned).collect();
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
            Edit::Value { n: which, value } => {
                let assignments: Vec<usize> = (0..m).filter(|&i| lines[i].contains(" = ")).collect();
                if !assignments.is_empty() {
                    let i = assignments[which % assignments.len()];
                    let key = lines[i].split(" = ").next().unwrap_or_default().to_owned();
                    lines[i] = format!("{key} = {value}");
                }
                bytes = lines.join("\n").into_bytes();
            }
            Edit::DeleteLine { n: i } => {
                lines.remove(i % m);
                bytes = lines.join("\n").into_bytes();
            }
            Edit::DuplicateLine { n: i } => {
                let line = lines[i % m].clone();
                lines.insert(i % m, line);
                bytes = lines.join("\n").into_bytes();
            }
            Edit::SwapLines { a, b } => {
                lines.swap(a % m, b % m);
                bytes = lines.join("\n").into_bytes();
            }
            _ => {}
        }
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    text
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn topology_arbitrary_text_never_panics(source in any::<String>()) {
        check_parse(&source)?;
    }

    /// Text shaped like a topology: tables, keys and values in random order.
    #[test]
    fn topology_random_tables_never_panic(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("[[hub]]".to_owned()),
                Just("[[link]]".to_owned()),
                Just("[hub]".to_owned()),
                ("(id|jurisdiction|role|lat|lon|failure_domain|a|b|rtt_ms|bandwidth_mbit|loss|replication_limit_mbit|name)", value())
                    .prop_map(|(k, v)| format!("{k} = {v}")),
            ],
            0..40,
        )
    ) {
        check_parse(&lines.join("\n"))?;
    }

    /// Mutations of the shipped network: never a panic; an error names a line of the mutated
    /// text; an accepted network satisfies every documented check.
    #[test]
    fn topology_mutations_never_panic_and_errors_name_a_line(edits in edits()) {
        let source = mutate(NETWORK, &edits);
        check_parse(&source)?;
    }

    /// An unknown key inserted anywhere a key can go is refused, naming its line.
    #[test]
    fn topology_unknown_key_names_its_line(at in any::<usize>()) {
        let mut lines: Vec<&str> = NETWORK.split('\n').collect();
        // After a table header or a key (not inside the leading comment block, not before the
        // first table: a top-level unknown key is also refused, on its own line).
        let slots: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].starts_with("[[") || (lines[i].contains(" = ") && !lines[i].starts_with('#')))
            .collect();
        let after = slots[at % slots.len()];
        lines.insert(after + 1, "colour = \"red\"");
        let source = lines.join("\n");
        match Topology::parse(&source) {
            Err(TopologyError::Invalid { line, message }) => {
                prop_assert_eq!(line, after + 2, "{}", message);
                prop_assert!(message.contains("colour"), "{}", message);
            }
            other => prop_assert!(false, "unknown key accepted or no line: {:?}", other.map(|t| t.hash().to_owned())),
        }
    }
}

#[test]
fn topology_pathological_inputs_return_promptly() {
    let deep_array = format!("x = {}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_table = format!("x = {}1{}", "{ a = ".repeat(100_000), " }".repeat(100_000));
    let many_tables = "[[hub]]\n".repeat(100_000);
    let long_key = format!("{} = 1", "k".repeat(1_000_000));
    let dotted = format!("{} = 1", vec!["a"; 100_000].join("."));
    for (name, source) in [
        ("deep array", deep_array),
        ("deep inline table", deep_table),
        ("many tables", many_tables),
        ("long key", long_key),
        ("dotted key", dotted),
    ] {
        let started = std::time::Instant::now();
        let result = Topology::parse(&source);
        assert!(result.is_err(), "{name} parsed");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{name} took {:?}",
            started.elapsed()
        );
    }
}

/// A link whose `rtt_ms` or `bandwidth_mbit` is `nan`, or whose `bandwidth_mbit` is `inf`, is
/// refused (it was accepted once: `nan < 0.0` and `nan <= 0.0` are false).
#[test]
fn links_with_nan_or_infinite_figures_are_refused() {
    let first_link = NETWORK.find("[[link]]").expect("a link");
    for (key, value) in [("rtt_ms", "nan"), ("bandwidth_mbit", "nan"), ("bandwidth_mbit", "inf")] {
        let (head, tail) = NETWORK.split_at(first_link);
        let start = tail.find(&format!("\n{key} = ")).expect("key in the first link") + 1;
        let end = start + tail[start..].find('\n').expect("line end");
        let source = format!("{head}{}{key} = {value}{}", &tail[..start], &tail[end..]);
        assert!(
            matches!(Topology::parse(&source), Err(TopologyError::Invalid { .. })),
            "{key} = {value} was accepted"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Placement policies as the admin API decodes them
// ---------------------------------------------------------------------------------------------

/// The admin API's path: TOML text to a policy, then checked against the network.
fn decode_and_validate(topology: &Topology, text: &str) -> Result<(), TestCaseError> {
    if let Ok(policy) = toml::from_str::<PlacementPolicy>(text) {
        // What decodes re-encodes to the same policy (GET policy answers with toml::to_string).
        let again: PlacementPolicy = toml::from_str(&toml::to_string(&policy).expect("encode")).expect("decode");
        prop_assert_eq!(&again, &policy);
        if policy.validate(topology).is_ok() {
            prop_assert!(policy.copies >= 1);
            prop_assert!(!(policy.jurisdictions.is_empty() && policy.hubs.is_empty()));
            let origin = policy
                .home_hub
                .clone()
                .or_else(|| topology.hubs().find(|h| policy.allows(h)).map(|h| h.id.clone()));
            let placed = valley_policy::place(&policy, topology, origin.as_deref().unwrap_or_default(), false)
                .expect("a validated policy places");
            prop_assert_eq!(placed.len(), policy.copies as usize);
            for id in &placed {
                prop_assert!(policy.allows(topology.hub(id).expect("placed on a declared hub")));
            }
        }
    }
    Ok(())
}

fn policy_line() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::subsequence(vec!["\"CN\"", "\"HK\"", "\"EU\"", "\"XX\"", "\"\""], 0..=3)
            .prop_map(|js| format!("jurisdictions = [{}]", js.join(", "))),
        proptest::sample::subsequence(
            vec!["\"frankfurt\"", "\"hong-kong\"", "\"zhangjiakou\"", "\"nowhere\""],
            0..=3
        )
        .prop_map(|hs| format!("hubs = [{}]", hs.join(", "))),
        // Bounded here (a copy count beyond the hubs is refused by validate); see
        // `a_huge_copies_is_refused_without_aborting` for u32::MAX.
        prop_oneof![0u64..20, Just(4_294_967_296), Just(u64::MAX)].prop_map(|c| format!("copies = {c}")),
        prop_oneof![Just("-1"), Just("1.5"), Just("\"2\""), Just("nan")].prop_map(|c| format!("copies = {c}")),
        any::<bool>().prop_map(|b| format!("distinct_failure_domains = {b}")),
        prop_oneof![Just("\"frankfurt\""), Just("\"nowhere\""), Just("\"\""), Just("1")]
            .prop_map(|h| format!("home_hub = {h}")),
        "classifications = \\[(\"[a-zA-Z0-9 -]{0,10}\"(, )?){0,3}\\]",
        (any::<u32>(), prop_oneof![Just("east"), Just("west"), Just("north")])
            .prop_map(|(d, r)| format!("tiering = {{ after_days = {d}, role = \"{r}\" }}")),
        Just("[tiering]".to_owned()),
        Just("after_days = 30".to_owned()),
        Just("role = \"west\"".to_owned()),
        Just("extra = 1".to_owned()),
        any::<String>(),
    ]
}

#[test]
fn policy_decoder_accepts_and_checks_a_valid_policy() {
    let text = "jurisdictions = [\"CN\"]\ncopies = 2\ndistinct_failure_domains = true\n\
                classifications = [\"personal-info\"]\ntiering = { after_days = 30, role = \"west\" }\n";
    let policy: PlacementPolicy = toml::from_str(text).expect("decodes");
    policy.validate(&network()).expect("valid on the example network");
    decode_and_validate(&network(), text).expect("the checks hold");
    let bad: PlacementPolicy = toml::from_str("jurisdictions = [\"CN\"]\ncopies = 99\n").expect("decodes");
    assert!(bad.validate(&network()).is_err());
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn policy_arbitrary_text_never_panics(text in any::<String>()) {
        decode_and_validate(&network(), &text)?;
    }

    #[test]
    fn policy_random_lines_never_panic(lines in proptest::collection::vec(policy_line(), 0..8)) {
        decode_and_validate(&network(), &lines.join("\n"))?;
    }
}

/// `copies = 4294967295` decodes (`copies` is a u32); `place` once reserved room for that many
/// hubs (32 GiB) before finding the network has 14, and the process aborted. The admin API
/// decodes exactly this, and a peer's policy record reaches `place` too. Run in a child
/// process so that an abort fails this test rather than killing the whole test binary.
#[test]
fn a_huge_copies_is_refused_without_aborting() {
    if std::env::var_os("VALLEY_POLICY_CHILD").is_some() {
        let topology = network();
        let policy: PlacementPolicy =
            toml::from_str("jurisdictions = [\"CN\"]\ncopies = 4294967295\n").expect("a u32 copies decodes");
        assert!(
            policy.validate(&topology).is_err(),
            "more copies than hubs must be refused"
        );
        // Placing it directly (as a peer's record is) answers without reserving 32 GiB.
        if let Ok(placed) = valley_policy::place(&policy, &topology, "zhangjiakou", false) {
            assert!(placed.len() <= topology.hubs().count());
        }
        println!("CHILD-RAN");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "a_huge_copies_is_refused_without_aborting", "--nocapture"])
        .env("VALLEY_POLICY_CHILD", "1")
        .output()
        .expect("run the child");
    assert!(
        out.status.success(),
        "validate() of copies = u32::MAX did not return an error: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("CHILD-RAN"),
        "the child ran the check"
    );
}

#[test]
fn a_policy_of_the_previous_format_reads_as_asynchronous_without_a_lag_limit() {
    // As stored and replicated before synchronous copies and lag limits existed.
    let json = r#"{"jurisdictions":["CN"],"hubs":[],"copies":2,"distinct_failure_domains":true,"home_hub":null,"classifications":[],"tiering":null}"#;
    let policy: PlacementPolicy = serde_json::from_str(json).expect("the previous format decodes");
    assert_eq!(policy.ack_copies, 1);
    assert_eq!(policy.ack_fallback, valley_policy::AckFallback::Fail);
    assert_eq!(policy.max_lag_seconds, None);
    policy.validate(&network()).expect("valid");
}

#[test]
fn synchronous_copies_and_lag_limits_are_checked() {
    let ok = "jurisdictions = [\"CN\"]\ncopies = 2\ndistinct_failure_domains = true\nack_copies = 2\n\
              ack_timeout_seconds = 5\nack_fallback = \"degrade\"\nmax_lag_seconds = 30\n";
    let policy: PlacementPolicy = toml::from_str(ok).expect("decodes");
    policy.validate(&network()).expect("valid");
    assert_eq!(policy.ack_fallback, valley_policy::AckFallback::Degrade);
    for (text, why) in [
        (
            "copies = 2\ndistinct_failure_domains = true\nack_copies = 3\n",
            "between 1 and copies",
        ),
        ("copies = 2\nack_copies = 2\n", "distinct_failure_domains"),
        (
            "copies = 2\ndistinct_failure_domains = true\nack_copies = 0\n",
            "between 1 and copies",
        ),
        ("ack_timeout_seconds = 0\n", "ack_timeout_seconds"),
        ("ack_timeout_seconds = 100000\n", "ack_timeout_seconds"),
        ("max_lag_seconds = 0\n", "max_lag_seconds"),
    ] {
        let policy: PlacementPolicy = toml::from_str(&format!("jurisdictions = [\"CN\"]\n{text}")).expect("decodes");
        let err = policy.validate(&network()).expect_err(text);
        assert!(err.contains(why), "{text}: {err}");
    }
    assert!(toml::from_str::<PlacementPolicy>("jurisdictions = [\"CN\"]\nack_fallback = \"maybe\"\n").is_err());
}
