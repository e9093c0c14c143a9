//! Property: no sequence of grants, rule-pack changes, writes, volume growth and new years moves
//! data under a basis the loaded pack does not accept, or past a volume threshold it sets.
//!
//! Drives the production engine (`decide`, `RuleBook::judge` at recording, `judge_flow` at the
//! exports accountant, `ExportVolume` counting) and checks every transfer it allows against an
//! oracle written straight from the pack's rules.

use std::collections::BTreeMap;

use proptest::prelude::*;
use valley_policy::rules::{ExportVolume, ExportedVolumes, FlowRule, RuleBook, Sent, Volume};
use valley_policy::{Basis, Grant, PlacementPolicy, Topology, Transfer, TransferKind, day_of, decide};

const CLASSES: [&str; 2] = ["personal-info", "sensitive-personal-info"];
const BASES: [Basis; 4] = [
    Basis::ExemptVolume,
    Basis::StandardContract,
    Basis::Certification,
    Basis::SecurityAssessment,
];

fn network(pack: usize) -> Topology {
    Topology::parse(include_str!("../../../examples/network.toml"))
        .expect("example network parses")
        .with_rules(pack_variant(pack))
}

/// 0: the shipped packs; 1: tightened thresholds, certification withdrawn; 2: no exemption by
/// volume at all.
fn pack_variant(which: usize) -> RuleBook {
    let mut book = RuleBook::shipped();
    for pack in &mut book.packs {
        for rule in pack.rules.iter_mut().filter(|r| r.from == ["CN"]) {
            match which {
                1 => {
                    rule.bases.retain(|b| *b != Basis::Certification);
                    rule.individuals_below.remove(&Basis::Certification);
                    for limit in rule.individuals_below.values_mut() {
                        *limit /= 5;
                    }
                }
                2 => {
                    rule.bases.retain(|b| *b != Basis::ExemptVolume);
                    rule.individuals_below.remove(&Basis::ExemptVolume);
                }
                _ => {}
            }
        }
    }
    book
}

#[derive(Debug, Clone)]
enum Step {
    Grant { basis: usize, class: usize },
    Write { class: usize, individuals: Option<u64> },
    Pack(usize),
    Days(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0..BASES.len(), 0..CLASSES.len()).prop_map(|(basis, class)| Step::Grant { basis, class }),
        4 => (0..CLASSES.len(), proptest::option::of(prop_oneof![0u64..20_000, 20_000u64..400_000]))
            .prop_map(|(class, individuals)| Step::Write { class, individuals }),
        1 => (0usize..3).prop_map(Step::Pack),
        1 => (1i64..40).prop_map(Step::Days),
    ]
}

/// The oracle: whether the pack accepts moving `n` more individuals' `class` data CN -> EU
/// under `basis` after `sent` this year.
fn oracle_accepts(book: &RuleBook, basis: Basis, class: &str, sent: u64, n: Option<u64>) -> bool {
    let rules: Vec<&FlowRule> = book
        .packs
        .iter()
        .flat_map(|p| &p.rules)
        .filter(|r| r.classification == class && r.from.iter().any(|j| j == "CN" || j == "*"))
        .filter(|r| r.to.iter().any(|j| j == "EU" || j == "*"))
        .collect();
    rules
        .iter()
        .filter(|r| r.bases.contains(&basis))
        .any(|r| match r.individuals_below.get(&basis) {
            None => true,
            Some(limit) => n.is_some_and(|n| sent + n < *limit),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_transfer_rests_on_a_basis_the_pack_does_not_accept(steps in proptest::collection::vec(step(), 1..40)) {
        let mut pack = 0;
        let mut topology = network(pack);
        let mut today = day_of("2026-12-01").unwrap();
        let mut grants: Vec<Grant> = Vec::new();
        let mut counts: BTreeMap<String, ExportVolume> = BTreeMap::new();
        for (i, step) in steps.into_iter().enumerate() {
            match step {
                Step::Pack(p) => {
                    pack = p;
                    topology = network(pack);
                }
                Step::Days(d) => today += d,
                Step::Grant { basis, class } => {
                    let grant = Grant {
                        id: format!("g{i}"),
                        tenant: "default".into(),
                        from: "CN".into(),
                        to: "EU".into(),
                        classifications: vec![CLASSES[class].into()],
                        basis: BASES[basis],
                        reference: "REF".into(),
                        companions: [("piia".to_owned(), "PIIA-1".to_owned())].into(),
                        expires: today + 365,
                        volume_cap_bytes: None,
                        volume_cap_individuals: None,
                        revoked: false,
                        usage_year: 0,
                        used_bytes: 0,
                        used_individuals: 0,
                    };
                    // Recorded only when the pack accepts it, as `Hub::add_grant` does.
                    if topology.rules().judge(&grant, today).accepted {
                        grants.push(grant);
                    }
                }
                Step::Write { class, individuals } => {
                    let class = CLASSES[class];
                    let policy = PlacementPolicy {
                        jurisdictions: vec!["CN".into(), "EU".into()],
                        classifications: vec![class.into()],
                        ..PlacementPolicy::default()
                    };
                    let sent = counts.get(class).map_or(0, |v| v.this_year(today).individuals);
                    let exported: ExportedVolumes = counts.iter().map(|(c, v)| (c.clone(), v.this_year(today))).collect();
                    // The sender decides; the accountant judges the grant chosen with its count
                    // and sets it aside if it cannot carry the volume (as `decide_and_reserve`).
                    let mut candidates = grants.clone();
                    loop {
                        let transfer = Transfer {
                            kind: TransferKind::Replication,
                            bucket: "b",
                            tenant: "default",
                            policy: &policy,
                            from: "zhangjiakou",
                            to: "frankfurt",
                            bytes: 1,
                            individuals,
                            exported: &ExportedVolumes::new(),
                            today,
                        };
                        let decision = decide(&topology, &candidates, &transfer);
                        let Some(id) = decision.grant.clone() else {
                            prop_assert!(!decision.allowed);
                            break;
                        };
                        let grant = candidates.iter().find(|g| g.id == id).unwrap().clone();
                        let volume = Volume { individuals: Some(individuals.unwrap_or(0)), bytes: 1, exported: &exported };
                        let accountant = topology.rules().judge_flow(&grant, &policy.classifications, today, volume);
                        if !accountant.accepted {
                            candidates.retain(|g| g.id != id);
                            continue;
                        }
                        prop_assert!(
                            oracle_accepts(topology.rules(), grant.basis, class, sent, individuals),
                            "pack {pack}: {class} moved under {:?} with {sent} sent and {individuals:?} more",
                            grant.basis
                        );
                        counts.entry(class.to_owned()).or_default().add(today, Sent { individuals: individuals.unwrap_or(0), bytes: 1 });
                        break;
                    }
                }
            }
        }
    }
}

#[test]
fn the_export_count_starts_again_each_calendar_year() {
    let sent = |individuals, bytes| Sent { individuals, bytes };
    let mut volume = ExportVolume::default();
    volume.add(day_of("2026-12-31").unwrap(), sent(90_000, 1_000));
    assert_eq!(volume.this_year(day_of("2026-12-31").unwrap()), sent(90_000, 1_000));
    assert_eq!(volume.this_year(day_of("2027-01-01").unwrap()), sent(0, 0));
    volume.add(day_of("2027-01-01").unwrap(), sent(5, 6));
    assert_eq!(volume.this_year(day_of("2027-01-02").unwrap()), sent(5, 6));
    // The persisted form of format 1 (no bytes) reads back; format 2 round-trips.
    let old: ExportVolume = serde_json::from_str(r#"{"format":1,"year":2026,"individuals":7}"#).unwrap();
    assert_eq!(old.this_year(day_of("2026-06-01").unwrap()), sent(7, 0));
    let now: ExportVolume = serde_json::from_slice(&serde_json::to_vec(&volume).unwrap()).unwrap();
    assert_eq!(now, volume);
    assert_eq!(now.format, ExportVolume::FORMAT);
}
