//! What the policy decision costs one PUT, measured on its own: the work the write hook does
//! inside every write transaction (read the bucket's policy, the grants and the lost hubs from
//! the embedded store, decide residency, place the copies), repeated many times against a redb
//! store holding a policy and a few grants. `scripts/bench_replication.py` sets the figure
//! against a measured PUT latency.
//!
//!     cargo run --release -p valley-replicate --example policy_check_cost [ITERATIONS]

use std::sync::Arc;
use std::time::Instant;

use valley_policy::{Basis, Grant, PlacementPolicy, Topology};
use valley_replicate::control::{self, GrantRecord, PolicyRecord};
use valley_store::{MetaStore, RedbMeta};

fn main() {
    let iterations: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let topology =
        Arc::new(Topology::parse(include_str!("../../../examples/network.toml")).expect("example network parses"));
    let dir = std::env::temp_dir().join(format!("valley-policy-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let meta = RedbMeta::open(&dir.join("meta.redb")).expect("open redb");
    let policy = PlacementPolicy {
        jurisdictions: vec!["CN".into()],
        hubs: Vec::new(),
        copies: 2,
        distinct_failure_domains: true,
        home_hub: None,
        classifications: vec!["personal-info".into()],
        tiering: None,
        ..PlacementPolicy::default()
    };
    meta.write(Box::new(move |txn| {
        let record = PolicyRecord {
            policy,
            hlc: 1,
            origin: "zhangjiakou".into(),
            deleted: false,
        };
        control::put_policy(txn, "photos", &record)?;
        for (i, to) in ["EU", "HK", "EU"].iter().enumerate() {
            let grant = Grant {
                id: format!("g-{i}"),
                tenant: "default".into(),
                from: "CN".into(),
                to: (*to).into(),
                classifications: vec!["personal-info".into()],
                basis: Basis::StandardContract,
                reference: format!("REF-{i}"),
                companions: [("piia".to_owned(), "PIIA-1".to_owned())].into(),
                expires: 30_000,
                volume_cap_bytes: Some(1 << 40),
                volume_cap_individuals: None,
                revoked: false,
                usage_year: 0,
                used_bytes: 0,
                used_individuals: 0,
            };
            control::put_grant(
                txn,
                &GrantRecord {
                    grant,
                    hlc: 1,
                    origin: "zhangjiakou".into(),
                },
            )?;
        }
        Ok(())
    }))
    .expect("seed the store");
    let hook = valley_replicate::outbox_hook("zhangjiakou", topology, Arc::new(tokio::sync::Notify::new()));
    let snapshot = meta.snapshot().expect("snapshot");
    let started = Instant::now();
    for _ in 0..iterations {
        let (_, targets) = hook.decide_write(snapshot.as_ref(), "photos", 4096).expect("allowed");
        std::hint::black_box(targets);
    }
    let per_call_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations);
    println!("{{\"iterations\": {iterations}, \"per_write_us\": {per_call_us:.3}}}");
    drop(snapshot);
    drop(meta);
    let _ = std::fs::remove_dir_all(&dir);
}
