//! Property tests of the policy engine over the shipped example network.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use valley_policy::{
    Basis, Floor, Grant, PlacementPolicy, Role, Tiering, Topology, Transfer, TransferKind, day_of, decide, place,
    place_avoiding,
};

/// No exports counted yet.
static EXPORTED: valley_policy::rules::ExportedVolumes = valley_policy::rules::ExportedVolumes::new();

fn network() -> Topology {
    Topology::parse(include_str!("../../../examples/network.toml")).expect("example network parses")
}

const JURISDICTIONS: [&str; 3] = ["CN", "HK", "EU"];
const CLASSES: [&str; 2] = ["personal-info", "important-data"];

fn hub_ids() -> Vec<String> {
    network().hubs().map(|h| h.id.clone()).collect()
}

fn arb_policy() -> impl Strategy<Value = PlacementPolicy> {
    let n = hub_ids().len();
    (
        proptest::sample::subsequence(JURISDICTIONS.to_vec(), 0..=3),
        proptest::sample::subsequence((0..n).collect::<Vec<_>>(), 0..=4),
        1u32..=4,
        any::<bool>(),
        proptest::sample::subsequence(CLASSES.to_vec(), 0..=2),
        proptest::option::of((0u32..60, prop_oneof![Just(Role::East), Just(Role::West)])),
    )
        .prop_map(|(js, hub_idx, copies, distinct, classes, tier)| {
            let ids = hub_ids();
            let mut jurisdictions: Vec<String> = js.into_iter().map(str::to_owned).collect();
            let hubs: Vec<String> = hub_idx.into_iter().map(|i| ids[i].clone()).collect();
            if jurisdictions.is_empty() && hubs.is_empty() {
                jurisdictions.push("CN".into());
            }
            PlacementPolicy {
                jurisdictions,
                hubs,
                copies,
                distinct_failure_domains: distinct,
                home_hub: None,
                classifications: classes.into_iter().map(str::to_owned).collect(),
                tiering: tier.map(|(after_days, role)| Tiering { after_days, role }),
                ..PlacementPolicy::default()
            }
        })
}

/// Whose data a transfer moves, and whose grants there are.
const TENANTS: [&str; 2] = ["default", "acme"];

fn arb_grant() -> impl Strategy<Value = Grant> {
    (
        0usize..3,
        0usize..3,
        proptest::sample::subsequence(CLASSES.to_vec(), 0..=2),
        any::<bool>(),
        20_000i64..21_000,
        proptest::option::of(0u64..10_000),
        proptest::sample::select(TENANTS.to_vec()),
        // Every basis, so that grants the rule packs refuse are generated too.
        proptest::sample::select(Basis::ALL.to_vec()),
    )
        .prop_map(|(f, t, classes, revoked, expires, cap, tenant, basis)| Grant {
            id: format!("g-{f}-{t}-{expires}-{tenant}"),
            tenant: tenant.into(),
            from: JURISDICTIONS[f].into(),
            to: JURISDICTIONS[t].into(),
            classifications: classes.into_iter().map(str::to_owned).collect(),
            basis,
            reference: "ref".into(),
            companions: [("piia".to_owned(), "PIIA-1".to_owned())].into(),
            expires,
            volume_cap_bytes: cap,
            volume_cap_individuals: None,
            revoked,
            usage_year: 0,
            used_bytes: 0,
            used_individuals: 0,
        })
}

fn arb_kind() -> impl Strategy<Value = TransferKind> {
    prop_oneof![
        Just(TransferKind::Write),
        Just(TransferKind::Replication),
        Just(TransferKind::Tiering),
        Just(TransferKind::ReadThrough),
        Just(TransferKind::Migration),
        Just(TransferKind::QueryResult),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn placement_uses_only_allowed_hubs_and_distinct_domains(policy in arb_policy(), origin in 0usize..12, tiered in any::<bool>()) {
        let net = network();
        let origin = &hub_ids()[origin];
        if let Ok(hubs) = place(&policy, &net, origin, tiered) {
            prop_assert_eq!(hubs.len(), policy.copies as usize);
            let unique: BTreeSet<_> = hubs.iter().collect();
            prop_assert_eq!(unique.len(), hubs.len());
            let mut domains = BTreeSet::new();
            for id in &hubs {
                let hub = net.hub(id).unwrap();
                prop_assert!(policy.allows(hub), "{} not allowed", id);
                if tiered && let Some(t) = &policy.tiering {
                    prop_assert_eq!(hub.role, t.role);
                }
                if policy.distinct_failure_domains {
                    prop_assert!(domains.insert(hub.failure_domain.clone()), "domain repeated");
                }
            }
            prop_assert_eq!(place(&policy, &net, origin, tiered).unwrap(), hubs, "deterministic");
        }
    }

    #[test]
    fn losing_hubs_moves_copies_only_to_other_allowed_hubs(
        policy in arb_policy(), origin in 0usize..12, tiered in any::<bool>(),
        lost_idx in proptest::sample::subsequence((0..12usize).collect::<Vec<_>>(), 0..=4),
    ) {
        let net = network();
        let ids = hub_ids();
        let lost: BTreeSet<String> = lost_idx.into_iter().map(|i| ids[i].clone()).collect();
        let whole = place(&policy, &net, &ids[origin], tiered);
        let degraded = place_avoiding(&policy, &net, &ids[origin], tiered, &lost);
        // Satisfiable on the whole network: losing hubs never makes placement fail.
        prop_assert_eq!(whole.is_ok(), degraded.is_ok());
        if let (Ok(whole), Ok(degraded)) = (whole, degraded) {
            prop_assert!(degraded.len() <= whole.len());
            for id in &degraded {
                prop_assert!(!lost.contains(id), "{} is lost", id);
                prop_assert!(policy.allows(net.hub(id).unwrap()), "{} not allowed", id);
            }
            // Copies at hubs that survive stay where they were.
            for id in whole.iter().filter(|h| !lost.contains(*h)) {
                prop_assert!(degraded.contains(id), "{} lost its copy though it survives", id);
            }
        }
    }

    #[test]
    fn no_transfer_of_any_kind_reaches_a_forbidden_hub(
        policy in arb_policy(), grants in proptest::collection::vec(arb_grant(), 0..4),
        kind in arb_kind(), from in 0usize..12, to in 0usize..12, bytes in 0u64..20_000, today in 19_990i64..21_010,
        tenant in proptest::sample::select(TENANTS.to_vec()),
    ) {
        let net = network();
        let ids = hub_ids();
        let t = Transfer { kind, bucket: "b", tenant, policy: &policy, from: &ids[from], to: &ids[to], bytes, individuals: Some(0), exported: &EXPORTED, today };
        let d = decide(&net, &grants, &t);
        let to_hub = net.hub(&ids[to]).unwrap();
        let from_hub = net.hub(&ids[from]).unwrap();
        if d.allowed {
            prop_assert!(policy.allows(to_hub), "allowed into forbidden hub: {}", d.reason);
            let crosses = from_hub.jurisdiction != to_hub.jurisdiction && kind != TransferKind::Write;
            if crosses && !policy.classifications.is_empty() {
                let g = grants.iter().find(|g| Some(&g.id) == d.grant.as_ref()).expect("names its grant");
                prop_assert!(!g.revoked && today <= g.expires);
                prop_assert_eq!(&g.tenant, tenant, "another tenant's grant carried the data");
                prop_assert_eq!(&g.from, &from_hub.jurisdiction);
                prop_assert_eq!(&g.to, &to_hub.jurisdiction);
                prop_assert!(policy.classifications.iter().all(|c| g.classifications.contains(c)));
                prop_assert!(g.volume_cap_bytes.is_none_or(|cap| bytes <= cap));
                // Never under a basis the rule packs do not accept for this flow.
                let judged = net.rules().judge(g, today);
                prop_assert!(judged.accepted, "moved under a basis the law does not accept: {}", judged.reason);
            }
        } else {
            prop_assert!(!d.reason.is_empty());
        }
    }
}

/// One step of a random history: writes, replication toward the placement, policy changes
/// (which strand data that must then be removed) and grant changes.
#[derive(Debug, Clone)]
enum Step {
    Write { hub: usize },
    Replicate,
    SetPolicy(PlacementPolicy),
    AddGrant(Grant),
    RevokeGrants,
    Advance(i64),
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0usize..12).prop_map(|hub| Step::Write { hub }),
        Just(Step::Replicate),
        arb_policy().prop_map(Step::SetPolicy),
        arb_grant().prop_map(Step::AddGrant),
        Just(Step::RevokeGrants),
        (0i64..400).prop_map(Step::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the sequence of writes, replications and policy or grant changes, once the
    /// planner has acted on a step no hub holds a byte the current policy forbids it, and every
    /// byte that moved was allowed by `decide` at the time it moved.
    #[test]
    fn no_history_places_a_byte_where_the_policy_forbids(steps in proptest::collection::vec(arb_step(), 1..40)) {
        let net = network();
        let ids = hub_ids();
        let mut policy = PlacementPolicy::local_default(net.hub("zhangjiakou").unwrap());
        let mut grants: Vec<Grant> = Vec::new();
        let mut today = day_of("2026-11-28").unwrap();
        // object number -> (origin, holders)
        let mut objects: BTreeMap<usize, (String, BTreeSet<String>)> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Write { hub } => {
                    let hub = &ids[hub];
                    let t = Transfer { kind: TransferKind::Write, bucket: "b", tenant: "default", policy: &policy, from: hub, to: hub, bytes: 100, individuals: Some(1), exported: &EXPORTED, today };
                    if decide(&net, &grants, &t).allowed {
                        let n = objects.len();
                        objects.insert(n, (hub.clone(), BTreeSet::from([hub.clone()])));
                    }
                }
                Step::Replicate => {
                    for (origin, holders) in objects.values_mut() {
                        let Ok(targets) = place(&policy, &net, origin, false) else { continue };
                        let Some(source) = holders.iter().next().cloned() else { continue };
                        for target in targets {
                            if holders.contains(&target) { continue; }
                            let t = Transfer { kind: TransferKind::Replication, bucket: "b", tenant: "default", policy: &policy, from: &source, to: &target, bytes: 100, individuals: Some(1), exported: &EXPORTED, today };
                            let d = decide(&net, &grants, &t);
                            if d.allowed {
                                if let Some(id) = &d.grant && let Some(g) = grants.iter_mut().find(|g| &g.id == id) {
                                    g.record_use(today, 100, 1);
                                }
                                holders.insert(target);
                            }
                        }
                    }
                }
                Step::SetPolicy(p) => {
                    if p.validate(&net).is_ok() {
                        policy = p;
                        // Stranded copies are removed.
                        for (_, holders) in objects.values_mut() {
                            holders.retain(|h| policy.allows(net.hub(h).unwrap()));
                        }
                    }
                }
                Step::AddGrant(g) => grants.push(g),
                Step::RevokeGrants => grants.iter_mut().for_each(|g| g.revoked = true),
                Step::Advance(days) => today += days,
            }
            for (_, holders) in objects.values() {
                for h in holders {
                    prop_assert!(policy.allows(net.hub(h).unwrap()), "hub {} holds data the policy forbids", h);
                }
            }
        }
    }
}

#[test]
fn a_cn_only_personal_info_bucket_never_reaches_eu_or_hk_even_with_a_grant() {
    let net = network();
    let policy = PlacementPolicy {
        jurisdictions: vec!["CN".into()],
        hubs: vec![],
        copies: 2,
        distinct_failure_domains: true,
        home_hub: None,
        classifications: vec!["personal-info".into()],
        tiering: None,
        ..PlacementPolicy::default()
    };
    let grant = Grant {
        id: "g1".into(),
        tenant: "default".into(),
        from: "CN".into(),
        to: "EU".into(),
        classifications: vec!["personal-info".into()],
        basis: Basis::StandardContract,
        reference: "CAC-2026-1".into(),
        companions: [("piia".to_owned(), "PIIA-1".to_owned())].into(),
        expires: day_of("2030-01-01").unwrap(),
        volume_cap_bytes: None,
        volume_cap_individuals: None,
        revoked: false,
        usage_year: 0,
        used_bytes: 0,
        used_individuals: 0,
    };
    for to in ["frankfurt", "hong-kong"] {
        let t = Transfer {
            kind: TransferKind::Replication,
            bucket: "pi",
            tenant: "default",
            policy: &policy,
            from: "zhangjiakou",
            to,
            bytes: 1,
            individuals: Some(1),
            exported: &EXPORTED,
            today: day_of("2026-11-28").unwrap(),
        };
        let d = decide(&net, std::slice::from_ref(&grant), &t);
        assert!(!d.allowed, "{to}: {}", d.reason);
        assert!(d.reason.contains("only in jurisdictions [CN]"), "{}", d.reason);
    }
}

#[test]
fn an_expired_grant_stops_the_flow_and_says_so() {
    let net = network();
    let policy = PlacementPolicy {
        jurisdictions: vec!["CN".into(), "EU".into()],
        hubs: vec![],
        copies: 1,
        distinct_failure_domains: false,
        home_hub: None,
        classifications: vec!["personal-info".into()],
        tiering: None,
        ..PlacementPolicy::default()
    };
    let mut grant = Grant {
        id: "g1".into(),
        tenant: "default".into(),
        from: "CN".into(),
        to: "EU".into(),
        classifications: vec!["personal-info".into()],
        basis: Basis::StandardContract,
        reference: "CAC-2026-1".into(),
        companions: [("piia".to_owned(), "PIIA-1".to_owned())].into(),
        expires: day_of("2027-06-30").unwrap(),
        volume_cap_bytes: Some(1000),
        volume_cap_individuals: None,
        revoked: false,
        usage_year: 0,
        used_bytes: 0,
        used_individuals: 0,
    };
    let mut t = Transfer {
        kind: TransferKind::Replication,
        bucket: "pi",
        tenant: "default",
        policy: &policy,
        from: "yrd-demo-zone",
        to: "frankfurt",
        bytes: 600,
        individuals: Some(0),
        exported: &EXPORTED,
        today: day_of("2027-06-30").unwrap(),
    };
    let d = decide(&net, std::slice::from_ref(&grant), &t);
    assert!(d.allowed && d.grant.as_deref() == Some("g1"), "{}", d.reason);
    grant.record_use(t.today, 600, 0);
    let d = decide(&net, std::slice::from_ref(&grant), &t);
    assert!(!d.allowed && d.reason.contains("cap of 1000 bytes"), "{}", d.reason);
    t.today = day_of("2027-07-01").unwrap();
    let d = decide(&net, std::slice::from_ref(&grant), &t);
    assert!(!d.allowed && d.reason.contains("expired on 2027-06-30"), "{}", d.reason);
}

/// What a copy (CopyObject or UploadPartCopy) at `at` of `source`'s data into a bucket under
/// `dest` is decided as, the way the hub decides it: every hub the destination allows must be
/// one the source's policy and grants allow the data to go to.
fn copy_allowed(
    net: &Topology,
    grants: &[Grant],
    source: &PlacementPolicy,
    dest: &PlacementPolicy,
    at: &str,
    today: i64,
) -> bool {
    net.hubs().filter(|h| dest.allows(h)).all(|h| {
        decide(
            net,
            grants,
            &Transfer {
                kind: TransferKind::Copy,
                bucket: "src",
                tenant: "default",
                policy: source,
                from: at,
                to: &h.id,
                bytes: 0,
                individuals: Some(0),
                exported: &EXPORTED,
                today,
            },
        )
        .allowed
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random histories of copies (object or part: decided alike), chains of copies, policy
    /// edits of every bucket and grants that expire or are revoked: no placement and no allowed
    /// transfer of any bucket holding copied data ever reaches a hub the policy of the data's
    /// origin bucket forbids.
    #[test]
    fn copied_data_never_reaches_a_hub_its_origin_forbids(
        origin_policy in arb_policy(),
        steps in proptest::collection::vec((0usize..3, arb_policy(), 0usize..12, any::<bool>()), 1..12),
        grants in proptest::collection::vec(arb_grant(), 0..4),
        day in 20_000i64..21_000,
        kind in arb_kind(),
    ) {
        let net = network();
        let ids = hub_ids();
        // Bucket 0 is the origin; buckets 1 and 2 start empty. holds[b]: bucket b holds origin
        // data; floors[b]: its floors.
        let mut policies = vec![origin_policy.clone(), arb_default(), arb_default()];
        let mut floors: Vec<Vec<Floor>> = vec![Vec::new(), Vec::new(), Vec::new()];
        let mut holds = [true, false, false];
        for (target, new_policy, at, is_copy) in steps {
            let effective = |b: usize, policies: &Vec<PlacementPolicy>, floors: &Vec<Vec<Floor>>| {
                policies[b].within_floors(&floors[b], &net)
            };
            if is_copy && target != 0 {
                // Copy from a bucket holding origin data (the origin, or a copy of it) into target.
                let from = if holds[3 - target] && target != 3 - target { 3 - target } else { 0 };
                let source = effective(from, &policies, &floors);
                let at = &ids[at];
                if source.allows(net.hub(at).unwrap()) {
                    let dest = effective(target, &policies, &floors);
                    if copy_allowed(&net, &grants, &source, &dest, at, day) {
                        let floor = Floor::of("src", &source, &net);
                        floors[target].push(floor);
                        holds[target] = true;
                    }
                }
            } else if target != 0 {
                policies[target] = new_policy;
            }
            // The property, after every step: every bucket that holds origin data is placed
            // and may send only within what the origin's policy allows.
            for (b, _) in holds.iter().enumerate().filter(|(_, held)| **held) {
                let eff = effective(b, &policies, &floors);
                for origin in &ids {
                    if let Ok(hubs) = place(&eff, &net, origin, false) {
                        for h in hubs {
                            prop_assert!(origin_policy.allows(net.hub(&h).unwrap()), "bucket {} placed on {}", b, h);
                        }
                    }
                }
                for to in &ids {
                    let d = decide(&net, &grants, &Transfer {
                        kind, bucket: "b", tenant: "default", policy: &eff, from: &ids[0], to, bytes: 1, individuals: Some(0), exported: &EXPORTED, today: day,
                    });
                    if d.allowed {
                        prop_assert!(origin_policy.allows(net.hub(to).unwrap()), "bucket {} may send to {}", b, to);
                    }
                }
            }
        }
    }
}

/// A new bucket's policy at a CN hub: its jurisdiction, one copy.
fn arb_default() -> PlacementPolicy {
    PlacementPolicy::local_default(network().hub("zhangjiakou").expect("a CN hub"))
}

#[test]
fn a_grant_carries_only_its_own_tenants_data() {
    let net = network();
    let policy = PlacementPolicy {
        jurisdictions: vec!["CN".into(), "EU".into()],
        copies: 2,
        classifications: vec!["personal-info".into()],
        ..PlacementPolicy::default()
    };
    let grant = Grant {
        id: "acme-scc".into(),
        tenant: "acme".into(),
        from: "CN".into(),
        to: "EU".into(),
        classifications: vec!["personal-info".into()],
        basis: Basis::StandardContract,
        reference: "SCC-ACME-1".into(),
        companions: [("piia".to_owned(), "PIIA-1".to_owned())].into(),
        expires: day_of("2030-01-01").unwrap(),
        volume_cap_bytes: None,
        volume_cap_individuals: None,
        revoked: false,
        usage_year: 0,
        used_bytes: 0,
        used_individuals: 0,
    };
    let transfer = |tenant| Transfer {
        kind: TransferKind::Replication,
        bucket: "pi",
        tenant,
        policy: &policy,
        from: "zhangjiakou",
        to: "frankfurt",
        bytes: 1,
        individuals: Some(1),
        exported: &EXPORTED,
        today: day_of("2026-11-28").unwrap(),
    };
    let own = decide(&net, std::slice::from_ref(&grant), &transfer("acme"));
    assert!(
        own.allowed && own.grant.as_deref() == Some("acme-scc"),
        "{}",
        own.reason
    );
    let neighbour = decide(&net, std::slice::from_ref(&grant), &transfer("globex"));
    assert!(!neighbour.allowed, "{}", neighbour.reason);
    assert!(
        neighbour.reason.contains("tenant \"globex\" has no grant"),
        "{}",
        neighbour.reason
    );
}

#[test]
fn a_grant_recorded_before_tenants_is_the_default_tenants() {
    let old = r#"{"id":"g1","from":"CN","to":"EU","classifications":["personal-info"],"basis":"standard-contract",
        "reference":"r","expires":20000,"volume_cap_bytes":null,"volume_cap_individuals":null,"revoked":false,
        "usage_year":0,"used_bytes":0,"used_individuals":0}"#;
    let grant: Grant = serde_json::from_str(old).unwrap();
    assert_eq!(grant.tenant, "default");
}
