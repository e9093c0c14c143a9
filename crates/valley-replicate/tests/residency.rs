//! The residency report, its verification and the policy dry-run as pure functions of evidence:
//! a report of a large bucket verifies against the evidence it was made from, every kind of edit
//! is named, and a dry-run counts what placement would do. (The e2e tests drive the same code
//! through real hubs; this one runs a bucket of 20,000 versions to keep the checks linear.)

use std::collections::{BTreeMap, BTreeSet};

use valley_audit::{AuditEvent, AuditKind, AuditRecord, ChainHash, Head};
use valley_policy::{PlacementPolicy, Topology};
use valley_replicate::residency::evidence::ChainState;
use valley_replicate::residency::{Evidence, HubEvidence, build_report, plan::plan, verify_report, version_tag};
use valley_store::VersionSummary;

const VERSIONS: u64 = 20_000;

fn topology() -> Topology {
    let hub = |id: &str, j: &str, fd: &str, port: u16| {
        format!(
            "[[hub]]\nid = \"{id}\"\njurisdiction = \"{j}\"\nrole = \"east\"\nlat = 30.0\nlon = 110.0\n\
             failure_domain = \"{fd}\"\ns3_endpoint = \"http://127.0.0.1:{port}\"\n\
             peer_endpoint = \"http://127.0.0.1:{}\"\n",
            port + 1
        )
    };
    Topology::parse(
        &[
            hub("a", "CN", "fa", 7000),
            hub("b", "CN", "fb", 7002),
            hub("c", "EU", "fc", 7004),
        ]
        .join("\n"),
    )
    .expect("topology")
}

fn policy(hubs: &[&str]) -> PlacementPolicy {
    PlacementPolicy {
        jurisdictions: Vec::new(),
        hubs: hubs.iter().map(|h| (*h).to_owned()).collect(),
        copies: 2,
        distinct_failure_domains: false,
        home_hub: None,
        classifications: Vec::new(),
        tiering: None,
        ..PlacementPolicy::default()
    }
}

fn record(hub: &str, seq: u64, peer: &str, key: &str, detail: String) -> AuditRecord {
    AuditRecord {
        version: valley_audit::RECORD_VERSION,
        redacted_subject: None,
        seq,
        time_unix_ms: 1_000,
        event: AuditEvent::new(hub, AuditKind::Transfer, detail)
            .with_bucket("b1")
            .with_key(key)
            .with_peer(peer),
        prev: ChainHash::ZERO,
        hash: ChainHash::of(format!("{hub}{seq}").as_bytes()),
    }
}

/// Every version written at `a`, copied to `b`, with both sides' records.
fn evidence() -> Evidence {
    let mut a = HubEvidence {
        hub: "a".into(),
        versions: Vec::new(),
        transfers: Vec::new(),
        chain: None,
    };
    let mut b = HubEvidence {
        hub: "b".into(),
        ..a.clone()
    };
    for i in 0..VERSIONS {
        let v = VersionSummary {
            key: format!("k{i:05}"),
            hlc: 1_000_000 + i,
            origin: "a".into(),
            size: 100 + i,
            delete_marker: false,
        };
        let tag = version_tag(v.hlc, &v.origin);
        a.transfers.push(record(
            "a",
            i + 1,
            "b",
            &v.key,
            format!("replicated to b: stays in CN {tag}"),
        ));
        b.transfers.push(record(
            "b",
            i + 1,
            "a",
            &v.key,
            format!("replication received from a {tag}"),
        ));
        a.versions.push(v.clone());
        b.versions.push(v);
    }
    for hub in [&mut a, &mut b] {
        hub.chain = Some(ChainState {
            head: Head {
                seq: VERSIONS,
                hash: ChainHash::of(b"head"),
            },
            ok: true,
            problem: None,
        });
    }
    let c = HubEvidence {
        hub: "c".into(),
        versions: Vec::new(),
        transfers: Vec::new(),
        chain: Some(ChainState {
            head: Head::EMPTY,
            ok: true,
            problem: None,
        }),
    };
    Evidence {
        bucket: "b1".into(),
        gathered_by: "a".into(),
        gathered_unix_ms: 10_000_000,
        topology_hash: topology().hash().to_owned(),
        policy: policy(&["a", "b"]),
        lost: BTreeSet::new(),
        tenant: "default".into(),
        grants: Vec::new(),
        hubs: vec![a, b, c],
        unreachable: BTreeMap::new(),
    }
}

#[test]
fn a_large_report_verifies_and_edits_are_named() {
    let (topology, evidence) = (topology(), evidence());
    let report = build_report(&evidence, &topology, None);
    assert_eq!(report.summary.versions, VERSIONS);
    assert_eq!(report.summary.copies, 2 * VERSIONS);
    assert_eq!(report.summary.copies_per_jurisdiction.get("CN"), Some(&(2 * VERSIONS)));
    let copy_b = report.versions[7]
        .copies
        .iter()
        .find(|c| c.hub == "b")
        .expect("copy at b");
    assert_eq!(copy_b.records.len(), 2, "sender's and receiver's records");
    let verified = verify_report(&report, &evidence, &topology).expect("verifies");
    assert_eq!((verified.copies, verified.records), (2 * VERSIONS, 2 * VERSIONS));

    let fails = |edit: &dyn Fn(&mut valley_replicate::residency::Report), expected: &str| {
        let mut edited = report.clone();
        edit(&mut edited);
        let why = verify_report(&edited, &evidence, &topology).expect_err("an edited report must fail");
        assert!(why.contains(expected), "{why}");
    };
    fails(
        &|r| {
            r.versions[3].copies.retain(|c| c.hub != "b");
            r.summary.copies -= 1;
            *r.summary.copies_per_jurisdiction.get_mut("CN").expect("CN") -= 1;
            r.summary.versions_short_of_policy += 1;
        },
        "which the report does not list",
    );
    fails(&|r| r.versions[5].copies[1].records[0].seq += 1, "the report says");
    fails(&|r| r.versions[9].size += 1, "the summary claims bytes");
    fails(
        &|r| {
            r.versions[9].size += 1;
            r.summary.bytes += 1;
        },
        "is not held there",
    );
    fails(&|r| r.hubs.retain(|h| h.hub != "c"), "leaves out hub c");
    let mut stale = evidence.clone();
    stale.hubs[1].chain = Some(ChainState {
        head: Head::EMPTY,
        ok: false,
        problem: Some("anchored head missing".into()),
    });
    let why = verify_report(&report, &stale, &topology).expect_err("a rewritten chain must fail");
    assert!(why.contains("hub b's audit chain does not hold the head"), "{why}");
}

#[test]
fn a_dry_run_counts_copies_and_removals_of_a_move() {
    let (topology, evidence) = (topology(), evidence());
    // From a and b to b and c (unclassified: the EU hub may take it without a grant).
    let planned = plan(&evidence, &topology, &policy(&["b", "c"]), 0);
    let bytes: u64 = (0..VERSIONS).map(|i| 100 + i).sum();
    assert_eq!(planned.versions, VERSIONS);
    assert_eq!(planned.copies.len(), 1);
    assert_eq!(
        (planned.copies[0].hub.as_str(), planned.copies[0].versions),
        ("c", VERSIONS)
    );
    assert_eq!(planned.copies[0].bytes, bytes);
    assert_eq!(planned.removals.len(), 1);
    assert_eq!(
        (planned.removals[0].hub.as_str(), planned.removals[0].bytes),
        ("a", bytes)
    );
    assert!(planned.stranded.is_empty() && !planned.strands && planned.refused.is_empty());
    // Narrowed to c alone while classified, with no grant: every copy refused, a and b strand.
    let mut classified = policy(&["c"]);
    classified.copies = 1;
    classified.classifications = vec!["personal-info".into()];
    let planned = plan(&evidence, &topology, &classified, 0);
    assert!(planned.copies.is_empty() && planned.removals.is_empty());
    assert_eq!(planned.refused.len(), 1);
    assert_eq!(planned.refused[0].versions, VERSIONS);
    assert_eq!(
        planned.stranded.iter().map(|f| f.hub.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(planned.strands);
}
