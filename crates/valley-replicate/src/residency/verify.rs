//! Checks a residency report claim by claim against fresh evidence from the hubs: the summary
//! against the entries, every hub's chain against the head the report names, every copy
//! against what its hub holds now, every rule and grant against the engine, every audit record
//! against the chain of the hub that holds it; and, unless the report is of a past time, that
//! no copy the hubs hold is missing from it.

use std::collections::{BTreeMap, BTreeSet};

use valley_policy::Topology;

use valley_store::VersionSummary;

use super::evidence::Evidence;
use super::report::{REPORT_FORMAT, Report, copy_decision, records_arrival, summarize};

/// What a verified report covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub versions: u64,
    pub copies: u64,
    pub records: u64,
    pub hubs: u64,
}

/// `Err` names the first claim of `report` the evidence does not confirm.
pub fn verify_report(report: &Report, evidence: &Evidence, topology: &Topology) -> Result<Verified, String> {
    if report.format != REPORT_FORMAT {
        return Err(format!(
            "format {:?} is not {REPORT_FORMAT:?}: not a report this version can check",
            report.format
        ));
    }
    if report.bucket != evidence.bucket {
        return Err(format!(
            "the report is of bucket {:?}, the evidence of {:?}",
            report.bucket, evidence.bucket
        ));
    }
    if report.topology_hash != topology.hash() {
        return Err(format!(
            "the report was made on topology {}, this network runs {}",
            report.topology_hash,
            topology.hash()
        ));
    }
    let live = report.at_unix_ms.is_none();
    if live && report.policy != evidence.policy {
        return Err(format!(
            "the report names policy {} for bucket {:?}; the bucket's policy is now {}",
            serde_json::to_string(&report.policy).unwrap_or_default(),
            report.bucket,
            serde_json::to_string(&evidence.policy).unwrap_or_default()
        ));
    }
    let unreachable: Vec<String> = report
        .hubs
        .iter()
        .filter(|h| !h.reachable)
        .map(|h| h.hub.clone())
        .collect();
    let recomputed = summarize(&report.versions, unreachable);
    if recomputed != report.summary {
        return Err(summary_difference(&report.summary, &recomputed));
    }
    check_hubs(report, evidence, topology)?;
    // What each hub holds, for one lookup per claimed copy.
    let held: BTreeMap<&str, BTreeSet<&VersionSummary>> = evidence
        .hubs
        .iter()
        .map(|h| (h.hub.as_str(), h.versions.iter().collect()))
        .collect();
    // Each hub's transfer records by seq, for one lookup per cited record.
    let by_seq: BTreeMap<&str, BTreeMap<u64, &valley_audit::AuditRecord>> = evidence
        .hubs
        .iter()
        .map(|h| (h.hub.as_str(), h.transfers.iter().map(|r| (r.seq, r)).collect()))
        .collect();
    let today = i64::try_from(report.at_unix_ms.unwrap_or(report.generated_unix_ms) / 86_400_000).unwrap_or(0);
    let mut claimed: BTreeSet<(String, VersionSummary)> = BTreeSet::new();
    let mut seen_versions = BTreeSet::new();
    let mut records = 0;
    for v in &report.versions {
        let version = VersionSummary {
            key: v.key.clone(),
            hlc: v.hlc,
            origin: v.origin.clone(),
            size: v.size,
            delete_marker: v.delete_marker,
        };
        let name = format!("version {}@{} of {:?}", v.hlc, v.origin, v.key);
        if !seen_versions.insert((v.key.clone(), v.hlc, v.origin.clone())) {
            return Err(format!("{name} is listed twice"));
        }
        let mut hubs_seen = BTreeSet::new();
        for c in &v.copies {
            if !hubs_seen.insert(c.hub.as_str()) {
                return Err(format!("the copy of {name} at {} is listed twice", c.hub));
            }
            let place = topology
                .hub(&c.hub)
                .ok_or_else(|| format!("the copy of {name} is at {:?}, not a hub of this network", c.hub))?;
            if place.jurisdiction != c.jurisdiction || place.failure_domain != c.failure_domain {
                return Err(format!(
                    "the copy of {name} at {} claims jurisdiction {} / failure domain {}; the topology says {} / {}",
                    c.hub, c.jurisdiction, c.failure_domain, place.jurisdiction, place.failure_domain
                ));
            }
            let decision = copy_decision(
                topology,
                &evidence.grants,
                &report.bucket,
                &evidence.tenant,
                &report.policy,
                &v.origin,
                &c.hub,
                today,
            );
            if decision.allowed != c.allowed || decision.rule != c.rule {
                return Err(format!(
                    "the copy of {name} at {} claims {} by rule {:?}; the policy engine decides {} by rule {:?} ({})",
                    c.hub,
                    if c.allowed { "allowed" } else { "not allowed" },
                    c.rule,
                    if decision.allowed { "allowed" } else { "not allowed" },
                    decision.rule,
                    decision.reason
                ));
            }
            let claimed_grant = c.grant.as_ref().map(|g| g.id.as_str());
            if claimed_grant != decision.grant.as_deref() {
                return Err(format!(
                    "the copy of {name} at {} names grant {:?}; the grant that covers it is {:?}",
                    c.hub, claimed_grant, decision.grant
                ));
            }
            if let Some(g) = &c.grant {
                let known = evidence.grants.iter().find(|k| k.id == g.id);
                let matches = known.is_some_and(|k| {
                    k.basis == g.basis
                        && k.reference == g.reference
                        && valley_policy::date_of(k.expires) == g.expires
                        && k.from == g.from
                        && k.to == g.to
                });
                if !matches {
                    return Err(format!(
                        "grant {} as the report describes it (basis, reference, expiry, direction) is not the grant on record",
                        g.id
                    ));
                }
            }
            for r in &c.records {
                records += 1;
                check_record(evidence, &by_seq, r, &version, &c.hub, &name)?;
            }
            if live {
                let holder = held
                    .get(c.hub.as_str())
                    .ok_or_else(|| format!("cannot confirm the copy of {name} at {}: the hub did not answer", c.hub))?;
                if !holder.contains(&version) {
                    return Err(format!(
                        "the copy of {name} ({} bytes) at {} is not held there",
                        v.size, c.hub
                    ));
                }
            } else if c.hub != v.origin && c.records.is_empty() {
                return Err(format!(
                    "the copy of {name} at {} is in a report of a past time without a record of its arrival",
                    c.hub
                ));
            }
            claimed.insert((c.hub.clone(), version.clone()));
        }
    }
    if live {
        let cutoff_hlc = report.generated_unix_ms.saturating_mul(1_000_000);
        for hub in &evidence.hubs {
            if !report.hubs.iter().any(|h| h.hub == hub.hub && h.reachable) {
                continue;
            }
            for version in hub.versions.iter().filter(|v| v.hlc <= cutoff_hlc) {
                if !claimed.contains(&(hub.hub.clone(), version.clone())) {
                    return Err(format!(
                        "hub {} holds version {}@{} of {:?} ({} bytes), which the report does not list",
                        hub.hub, version.hlc, version.origin, version.key, version.size
                    ));
                }
            }
        }
    }
    Ok(Verified {
        versions: report.versions.len() as u64,
        copies: claimed.len() as u64,
        records,
        hubs: report.hubs.iter().filter(|h| h.reachable).count() as u64,
    })
}

fn check_hubs(report: &Report, evidence: &Evidence, topology: &Topology) -> Result<(), String> {
    let mut listed = BTreeMap::new();
    for h in &report.hubs {
        if topology.hub(&h.hub).is_none() {
            return Err(format!("hub {:?} of the report is not in this network", h.hub));
        }
        listed.insert(h.hub.as_str(), h);
        let Some(head) = h.head else { continue };
        let fresh = evidence.hub(&h.hub).ok_or_else(|| {
            format!(
                "cannot confirm hub {}'s audit head (seq {}): it did not answer",
                h.hub, head.seq
            )
        })?;
        let chain = fresh
            .chain
            .as_ref()
            .ok_or_else(|| format!("hub {} sent no audit chain state", h.hub))?;
        if !chain.ok {
            return Err(format!(
                "hub {}'s audit chain does not hold the head the report names (seq {}, {}): {}",
                h.hub,
                head.seq,
                head.hash,
                chain.problem.clone().unwrap_or_default()
            ));
        }
    }
    if let Some(missing) = topology.hubs().find(|h| !listed.contains_key(h.id.as_str())) {
        return Err(format!("the report leaves out hub {}", missing.id));
    }
    Ok(())
}

fn check_record(
    evidence: &Evidence,
    by_seq: &BTreeMap<&str, BTreeMap<u64, &valley_audit::AuditRecord>>,
    r: &super::report::RecordRef,
    version: &VersionSummary,
    hub: &str,
    name: &str,
) -> Result<(), String> {
    let holder = evidence.hub(&r.hub).ok_or_else(|| {
        format!(
            "cannot confirm record {}#{}: hub {} did not answer",
            r.hub, r.seq, r.hub
        )
    })?;
    let record = by_seq.get(r.hub.as_str()).and_then(|m| m.get(&r.seq)).ok_or_else(|| {
        format!(
            "record {}#{} (the arrival of {name} at {hub}) is not a transfer record of bucket {:?} in {}'s audit chain",
            r.hub, r.seq, evidence.bucket, r.hub
        )
    })?;
    if record.hash != r.hash || record.time_unix_ms != r.time_unix_ms {
        return Err(format!(
            "record {}#{} has hash {} in {}'s audit chain, the report says {}",
            r.hub, r.seq, record.hash, r.hub, r.hash
        ));
    }
    if !records_arrival(record, version, hub) {
        return Err(format!(
            "record {}#{} does not record the arrival of {name} at {hub} (it says: {})",
            r.hub, r.seq, record.event.detail
        ));
    }
    if holder.chain.as_ref().is_none_or(|c| !c.ok || c.head.seq < record.seq) {
        return Err(format!(
            "record {}#{} is past what {}'s audit chain verifies",
            r.hub, r.seq, r.hub
        ));
    }
    Ok(())
}

fn summary_difference(claimed: &super::report::Summary, recomputed: &super::report::Summary) -> String {
    let pairs = [
        ("objects", claimed.objects, recomputed.objects),
        ("versions", claimed.versions, recomputed.versions),
        ("bytes", claimed.bytes, recomputed.bytes),
        ("copies", claimed.copies, recomputed.copies),
        (
            "versions_short_of_policy",
            claimed.versions_short_of_policy,
            recomputed.versions_short_of_policy,
        ),
        (
            "copies_not_allowed",
            claimed.copies_not_allowed,
            recomputed.copies_not_allowed,
        ),
        (
            "copies_not_allowed_removal_due",
            claimed.copies_not_allowed_removal_due,
            recomputed.copies_not_allowed_removal_due,
        ),
        (
            "copies_not_allowed_waiting",
            claimed.copies_not_allowed_waiting,
            recomputed.copies_not_allowed_waiting,
        ),
    ];
    for (field, c, r) in pairs {
        if c != r {
            return format!("the summary claims {field} = {c}; the report's entries give {r}");
        }
    }
    format!(
        "the summary claims copies per jurisdiction {:?} and unreachable hubs {:?}; the entries give {:?} and {:?}",
        claimed.copies_per_jurisdiction,
        claimed.hubs_unreachable,
        recomputed.copies_per_jurisdiction,
        recomputed.hubs_unreachable
    )
}
