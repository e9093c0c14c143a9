//! The residency report: for every version of a bucket, every hub holding it, why it may be
//! there, and the audit records of the transfers that put it there; a summary on top.
//!
//! The report is a versioned JSON document ([`REPORT_FORMAT`]); [`build_report`] makes it from
//! [`Evidence`] alone, and `verify` checks every claim of one against fresh evidence.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use valley_audit::{AuditRecord, ChainHash, Head};
use valley_policy::{Basis, Decision, Grant, PlacementPolicy, Rule, Topology, Transfer, TransferKind};
use valley_store::VersionSummary;

use super::evidence::{Evidence, HubEvidence};
use super::tagged_version;
use crate::repair::Placement;

/// The report format; a reader refuses others.
pub const REPORT_FORMAT: &str = "valley-residency-report/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub format: String,
    pub bucket: String,
    /// The hub that gathered the evidence.
    pub generated_by: String,
    pub generated_unix_ms: u64,
    /// `--at`: the report shows the copies whose arrival was recorded by then.
    pub at_unix_ms: Option<u64>,
    pub topology_hash: String,
    /// The bucket's policy (held to its floors) when the report was made; rules are judged by it.
    pub policy: PlacementPolicy,
    pub summary: Summary,
    pub hubs: Vec<HubEntry>,
    pub versions: Vec<VersionEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Keys with at least one version that is not a delete marker.
    pub objects: u64,
    pub versions: u64,
    /// Bytes of all versions, one copy each.
    pub bytes: u64,
    pub copies: u64,
    pub copies_per_jurisdiction: BTreeMap<String, u64>,
    /// Versions held at fewer of the hubs the policy places them on than it asks.
    pub versions_short_of_policy: u64,
    /// Copies at hubs the policy (or a lapsed grant) no longer allows.
    pub copies_not_allowed: u64,
    /// Of those, the ones whose version is already at every hub placed for it: each is dropped
    /// at its hub's next anti-entropy round.
    pub copies_not_allowed_removal_due: u64,
    /// Of those, the ones still waiting for the placed hubs to hold them (stranded when there
    /// are none), kept until then or until `valley bucket purge-stranded`.
    pub copies_not_allowed_waiting: u64,
    pub hubs_unreachable: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubEntry {
    pub hub: String,
    pub jurisdiction: String,
    pub failure_domain: String,
    pub reachable: bool,
    /// The newest record of its audit chain when asked; `verify` checks the chain still holds it.
    pub head: Option<Head>,
    /// Why the hub could not be asked, or why its chain did not verify.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionEntry {
    pub key: String,
    pub hlc: u64,
    /// The hub a client wrote it to.
    pub origin: String,
    pub size: u64,
    pub delete_marker: bool,
    /// The hubs the policy places it on.
    pub placed: Vec<String>,
    pub copies: Vec<CopyEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyEntry {
    pub hub: String,
    pub jurisdiction: String,
    pub failure_domain: String,
    /// Whether the policy allows the origin's data at this hub today.
    pub allowed: bool,
    pub rule: Rule,
    pub reason: String,
    /// The grant that allows a copy across a border.
    pub grant: Option<GrantRef>,
    /// The transfer records (sender's and receiver's) of this version's arrival here; none for
    /// the origin's own copy, written there by a client.
    pub records: Vec<RecordRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRef {
    pub id: String,
    pub from: String,
    pub to: String,
    pub basis: Basis,
    pub reference: String,
    /// Last valid day, YYYY-MM-DD.
    pub expires: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordRef {
    /// The hub whose chain holds the record.
    pub hub: String,
    pub seq: u64,
    pub hash: ChainHash,
    pub time_unix_ms: u64,
}

impl RecordRef {
    fn of(record: &AuditRecord) -> Self {
        RecordRef {
            hub: record.event.hub.clone(),
            seq: record.seq,
            hash: record.hash,
            time_unix_ms: record.time_unix_ms,
        }
    }
}

fn day_of_unix_ms(ms: u64) -> valley_policy::Day {
    i64::try_from(ms / 86_400_000).unwrap_or(0)
}

/// The engine's decision on the origin's data being at `hub` (a client's write at the origin
/// itself, a replication anywhere else), as of `today`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn copy_decision(
    topology: &Topology,
    grants: &[Grant],
    bucket: &str,
    tenant: &str,
    policy: &PlacementPolicy,
    origin: &str,
    hub: &str,
    today: valley_policy::Day,
) -> Decision {
    let kind = if hub == origin {
        TransferKind::Write
    } else {
        TransferKind::Replication
    };
    valley_policy::decide(
        topology,
        grants,
        &Transfer {
            kind,
            bucket,
            tenant,
            policy,
            from: origin,
            to: hub,
            bytes: 0,
            // Which basis allows a copy is judged here; the volumes it counts are the
            // exports accountant's (a transfer is held to them when it is made).
            individuals: policy.individuals_per_object.or(Some(0)),
            exported: &valley_policy::rules::ExportedVolumes::new(),
            today,
        },
    )
}

/// Whether `record` is one of the transfers that put `version` at `hub`: the receiver's record
/// there, or a sender's record naming `hub` as its peer.
pub(crate) fn records_arrival(record: &AuditRecord, version: &VersionSummary, hub: &str) -> bool {
    let e = &record.event;
    let names_version = e.key.as_deref() == Some(version.key.as_str())
        && tagged_version(&e.detail) == Some((version.hlc, version.origin.as_str()));
    if !names_version {
        return false;
    }
    let received = e.detail.contains(" received from ");
    if e.hub == hub {
        received
    } else {
        !received && e.peer.as_deref() == Some(hub)
    }
}

/// Builds the report of `evidence` (`at_unix_ms`: only copies whose arrival was recorded by
/// then, and versions written by then).
#[must_use]
pub fn build_report(evidence: &Evidence, topology: &Topology, at_unix_ms: Option<u64>) -> Report {
    let today = day_of_unix_ms(at_unix_ms.unwrap_or(evidence.gathered_unix_ms));
    let cutoff_ms = at_unix_ms.unwrap_or(u64::MAX);
    let mut holders: BTreeMap<&VersionSummary, Vec<&HubEvidence>> = BTreeMap::new();
    for hub in &evidence.hubs {
        for version in &hub.versions {
            holders.entry(version).or_default().push(hub);
        }
    }
    // Transfer records by the version they name (key, hlc, origin), so each copy finds its
    // own in one lookup.
    let mut records: std::collections::HashMap<(&str, u64, &str), Vec<&AuditRecord>> = std::collections::HashMap::new();
    for r in evidence
        .hubs
        .iter()
        .flat_map(|h| h.transfers.iter())
        .filter(|r| r.time_unix_ms <= cutoff_ms)
    {
        if let (Some(key), Some((hlc, origin))) = (r.event.key.as_deref(), tagged_version(&r.event.detail)) {
            records.entry((key, hlc, origin)).or_default().push(r);
        }
    }
    let mut placement = Placement::new(topology, &evidence.policy, &evidence.lost);
    let mut versions = Vec::new();
    for (version, at) in holders {
        if version.hlc / 1_000_000 > cutoff_ms {
            continue;
        }
        let placed = placement.targets(version).to_vec();
        let mut copies = Vec::new();
        for hub in at {
            let arrivals: Vec<RecordRef> = records
                .get(&(version.key.as_str(), version.hlc, version.origin.as_str()))
                .into_iter()
                .flatten()
                .filter(|r| records_arrival(r, version, &hub.hub))
                .map(|r| RecordRef::of(r))
                .collect();
            if at_unix_ms.is_some() && hub.hub != version.origin && arrivals.is_empty() {
                continue;
            }
            copies.push(copy_entry(
                topology,
                &evidence.grants,
                &evidence.bucket,
                &evidence.tenant,
                &evidence.policy,
                version,
                &hub.hub,
                today,
                arrivals,
            ));
        }
        versions.push(VersionEntry {
            key: version.key.clone(),
            hlc: version.hlc,
            origin: version.origin.clone(),
            size: version.size,
            delete_marker: version.delete_marker,
            placed,
            copies,
        });
    }
    let hubs = hub_entries(evidence, topology);
    let unreachable: Vec<String> = hubs.iter().filter(|h| !h.reachable).map(|h| h.hub.clone()).collect();
    Report {
        format: REPORT_FORMAT.to_owned(),
        bucket: evidence.bucket.clone(),
        generated_by: evidence.gathered_by.clone(),
        generated_unix_ms: evidence.gathered_unix_ms,
        at_unix_ms,
        topology_hash: evidence.topology_hash.clone(),
        policy: evidence.policy.clone(),
        summary: summarize(&versions, unreachable),
        hubs,
        versions,
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn copy_entry(
    topology: &Topology,
    grants: &[Grant],
    bucket: &str,
    tenant: &str,
    policy: &PlacementPolicy,
    version: &VersionSummary,
    hub: &str,
    today: valley_policy::Day,
    records: Vec<RecordRef>,
) -> CopyEntry {
    let decision = copy_decision(topology, grants, bucket, tenant, policy, &version.origin, hub, today);
    let place = topology.hub(hub);
    let grant = decision
        .grant
        .as_ref()
        .and_then(|id| grants.iter().find(|g| &g.id == id))
        .map(|g| GrantRef {
            id: g.id.clone(),
            from: g.from.clone(),
            to: g.to.clone(),
            basis: g.basis,
            reference: g.reference.clone(),
            expires: valley_policy::date_of(g.expires),
        });
    CopyEntry {
        hub: hub.to_owned(),
        jurisdiction: place.map(|h| h.jurisdiction.clone()).unwrap_or_default(),
        failure_domain: place.map(|h| h.failure_domain.clone()).unwrap_or_default(),
        allowed: decision.allowed,
        rule: decision.rule,
        reason: decision.reason,
        grant,
        records,
    }
}

fn hub_entries(evidence: &Evidence, topology: &Topology) -> Vec<HubEntry> {
    topology
        .hubs()
        .map(|h| {
            let answer = evidence.hub(&h.id);
            let chain = answer.and_then(|a| a.chain.as_ref());
            let problem = match (answer, chain) {
                (None, _) => Some(
                    evidence
                        .unreachable
                        .get(&h.id)
                        .cloned()
                        .unwrap_or_else(|| "did not answer".into()),
                ),
                (Some(_), Some(chain)) if !chain.ok => chain.problem.clone(),
                _ => None,
            };
            HubEntry {
                hub: h.id.clone(),
                jurisdiction: h.jurisdiction.clone(),
                failure_domain: h.failure_domain.clone(),
                reachable: answer.is_some(),
                head: chain.filter(|c| c.ok).map(|c| c.head),
                problem,
            }
        })
        .collect()
}

/// The summary of `versions`: `verify` recomputes it to check the one a report carries.
#[must_use]
pub fn summarize(versions: &[VersionEntry], hubs_unreachable: Vec<String>) -> Summary {
    let mut summary = Summary {
        hubs_unreachable,
        ..Summary::default()
    };
    let mut objects = BTreeSet::new();
    for v in versions {
        summary.versions += 1;
        summary.bytes += v.size;
        if !v.delete_marker {
            objects.insert(v.key.as_str());
        }
        let held: BTreeSet<&str> = v.copies.iter().map(|c| c.hub.as_str()).collect();
        if v.placed.iter().filter(|p| held.contains(p.as_str())).count() < v.placed.len() {
            summary.versions_short_of_policy += 1;
        }
        let all_placed_hold = v.placed.iter().all(|p| held.contains(p.as_str())) && !v.placed.is_empty();
        for c in &v.copies {
            summary.copies += 1;
            *summary
                .copies_per_jurisdiction
                .entry(c.jurisdiction.clone())
                .or_default() += 1;
            if !c.allowed {
                summary.copies_not_allowed += 1;
                if all_placed_hold {
                    summary.copies_not_allowed_removal_due += 1;
                } else {
                    summary.copies_not_allowed_waiting += 1;
                }
            }
        }
    }
    summary.objects = objects.len() as u64;
    summary
}
