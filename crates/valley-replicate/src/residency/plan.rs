//! The dry-run of a policy change: what the network would copy where, drop where, which grants
//! it would draw on, and what it would strand, computed from every hub's holdings with the
//! same placement, engine and hand-off rules the change itself then runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use valley_policy::{Grant, PlacementPolicy, Topology, Transfer, TransferKind};
use valley_store::VersionSummary;

use super::evidence::{Evidence, gather};
use crate::hub::{Hub, HubError};
use crate::repair::Placement;

/// Versions and bytes at (or to) one hub.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub hub: String,
    pub versions: u64,
    pub bytes: u64,
}

/// Copies the engine would refuse, per destination, with the first reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub hub: String,
    pub versions: u64,
    pub bytes: u64,
    pub reason: String,
}

/// What the change needs of the grants of one direction across a border.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantNeed {
    pub from: String,
    pub to: String,
    /// The grant the engine would use; `None` when none covers the flow (the copies are refused).
    pub grant: Option<String>,
    pub versions: u64,
    pub bytes: u64,
    /// Bytes the grant may still carry this year (`None`: no cap).
    pub volume_left_bytes: Option<u64>,
    /// Whether the grant's cap leaves room for all of it.
    pub enough: bool,
    /// What the rule packs say of the grant: the rule (pack, basis, source) that accepts it.
    /// New in session 11.
    #[serde(default)]
    pub rule: String,
}

/// The dry-run's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyPlan {
    pub bucket: String,
    pub current: PlacementPolicy,
    /// The proposed policy held to the bucket's floors: what the hubs would place by.
    pub proposed: PlacementPolicy,
    pub versions: u64,
    pub bytes: u64,
    /// New copies, per hub that would receive them.
    pub copies: Vec<Flow>,
    /// Copies the engine would refuse (no grant, a cap reached).
    pub refused: Vec<Refused>,
    /// Copies dropped at hubs the policy no longer places them on, once every placed hub holds
    /// them (never before).
    pub removals: Vec<Flow>,
    /// Copies at hubs the policy would no longer allow that could not be handed anywhere: kept,
    /// reported as stranded, until `valley bucket purge-stranded`.
    pub stranded: Vec<Flow>,
    /// Copies at hubs the policy still allows but no longer places them on: kept.
    pub kept: Vec<Flow>,
    /// Versions that would stay short of their copies: no hub that holds them sends them on
    /// (all their holders keep them as allowed extra copies), or the copies are refused.
    pub short: u64,
    pub grants: Vec<GrantNeed>,
    /// Hubs whose holdings are unknown (the plan leaves their copies out).
    pub unreachable: Vec<String>,
    /// Whether any copy would be stranded.
    pub strands: bool,
}

/// The dry-run of setting `bucket`'s policy to `proposed`, gathered from every hub.
pub async fn plan_change(hub: &Arc<Hub>, bucket: &str, proposed: &PlacementPolicy) -> Result<PolicyPlan, HubError> {
    proposed.validate(&hub.topology).map_err(HubError::Invalid)?;
    let effective = hub.held_to_floors(bucket, proposed).await?;
    let evidence = gather(hub, bucket, false, &BTreeMap::new()).await?;
    Ok(plan(&evidence, &hub.topology, &effective, crate::hook::today()))
}

fn add(flows: &mut BTreeMap<String, Flow>, hub: &str, bytes: u64) {
    let flow = flows.entry(hub.to_owned()).or_insert_with(|| Flow {
        hub: hub.to_owned(),
        ..Flow::default()
    });
    flow.versions += 1;
    flow.bytes += bytes;
}

/// The plan of placing `evidence`'s versions by `proposed` (already held to the floors).
#[must_use]
pub fn plan(
    evidence: &Evidence,
    topology: &Topology,
    proposed: &PlacementPolicy,
    today: valley_policy::Day,
) -> PolicyPlan {
    let mut holders: BTreeMap<&VersionSummary, BTreeSet<&str>> = BTreeMap::new();
    for hub in &evidence.hubs {
        for version in &hub.versions {
            holders.entry(version).or_default().insert(hub.hub.as_str());
        }
    }
    let allows = |hub: &str| topology.hub(hub).is_some_and(|h| proposed.allows(h));
    let mut placement = Placement::new(topology, proposed, &evidence.lost);
    let (mut copies, mut removals, mut stranded, mut kept) =
        (BTreeMap::new(), BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    let mut refused: BTreeMap<String, Refused> = BTreeMap::new();
    let mut grants: BTreeMap<(String, String, Option<String>), GrantNeed> = BTreeMap::new();
    let (mut versions, mut bytes, mut short) = (0, 0, 0);
    for (version, held) in &holders {
        versions += 1;
        bytes += version.size;
        let tiered = placement.tiered(version.hlc);
        let targets: Vec<String> = placement.targets(version).to_vec();
        // Who sends the missing copies, as the hubs do it: a holder that is itself placed
        // (anti-entropy), else a holder the policy no longer allows or whose copy aged into the
        // tiering rule (hand-off). Holders that are allowed and keep an extra copy send nothing.
        let placed_holder = held.iter().find(|h| targets.iter().any(|t| t == *h)).copied();
        let leaving = |h: &str| !allows(h) || (tiered && !targets.iter().any(|t| t == h));
        let sender = placed_holder.or_else(|| held.iter().find(|h| leaving(h)).copied());
        let kind = match (placed_holder, sender) {
            (Some(_), _) => TransferKind::Replication,
            (None, Some(h)) if !allows(h) => TransferKind::Migration,
            _ => TransferKind::Tiering,
        };
        let mut all_placed_will_hold = !targets.is_empty();
        for t in targets.iter().filter(|t| !held.contains(t.as_str())) {
            let Some(from) = sender else {
                all_placed_will_hold = false;
                continue;
            };
            let decision = decide(
                topology,
                &evidence.grants,
                evidence,
                proposed,
                kind,
                from,
                t,
                version.size,
                today,
            );
            if decision.allowed {
                add(&mut copies, t, version.size);
                note_grant(
                    &mut grants,
                    topology,
                    &evidence.grants,
                    from,
                    t,
                    decision.grant,
                    version.size,
                    today,
                );
            } else {
                all_placed_will_hold = false;
                let entry = refused.entry(t.clone()).or_insert_with(|| Refused {
                    hub: t.clone(),
                    reason: decision.reason.clone(),
                    ..Refused::default()
                });
                entry.versions += 1;
                entry.bytes += version.size;
            }
        }
        if !all_placed_will_hold {
            short += 1;
        }
        for h in held.iter().filter(|h| !targets.iter().any(|t| t == *h)) {
            if leaving(h) && all_placed_will_hold {
                add(&mut removals, h, version.size);
            } else if !allows(h) {
                add(&mut stranded, h, version.size);
            } else {
                add(&mut kept, h, version.size);
            }
        }
    }
    let stranded: Vec<Flow> = stranded.into_values().collect();
    PolicyPlan {
        bucket: evidence.bucket.clone(),
        current: evidence.policy.clone(),
        proposed: proposed.clone(),
        versions,
        bytes,
        copies: copies.into_values().collect(),
        refused: refused.into_values().collect(),
        removals: removals.into_values().collect(),
        strands: !stranded.is_empty(),
        stranded,
        kept: kept.into_values().collect(),
        short,
        grants: grants.into_values().collect(),
        unreachable: evidence.unreachable.keys().cloned().collect(),
    }
}

#[allow(clippy::too_many_arguments)]
fn decide(
    topology: &Topology,
    grants: &[Grant],
    evidence: &Evidence,
    policy: &PlacementPolicy,
    kind: TransferKind,
    from: &str,
    to: &str,
    bytes: u64,
    today: valley_policy::Day,
) -> valley_policy::Decision {
    valley_policy::decide(
        topology,
        grants,
        &Transfer {
            kind,
            bucket: &evidence.bucket,
            tenant: &evidence.tenant,
            policy,
            from,
            to,
            bytes,
            // The bucket's declaration, as the copies would be judged when made (an object's
            // own metadata is not read here); the volumes counted are the exports
            // accountant's (a transfer is held to them when it is made).
            individuals: policy.individuals_per_object,
            exported: &valley_policy::rules::ExportedVolumes::new(),
            today,
        },
    )
}

#[allow(clippy::too_many_arguments)]
fn note_grant(
    needs: &mut BTreeMap<(String, String, Option<String>), GrantNeed>,
    topology: &Topology,
    grants: &[Grant],
    from: &str,
    to: &str,
    grant: Option<String>,
    bytes: u64,
    today: valley_policy::Day,
) {
    let Some(id) = grant else { return };
    let (Some(from), Some(to)) = (topology.hub(from), topology.hub(to)) else {
        return;
    };
    let recorded = grants.iter().find(|g| g.id == id);
    let left = recorded.and_then(|g| g.volume_cap_bytes.map(|cap| cap.saturating_sub(g.used_in(today).0)));
    let rule = recorded
        .map(|g| topology.rules().judge(g, today).reason)
        .unwrap_or_default();
    let need = needs
        .entry((from.jurisdiction.clone(), to.jurisdiction.clone(), Some(id.clone())))
        .or_insert_with(|| GrantNeed {
            from: from.jurisdiction.clone(),
            to: to.jurisdiction.clone(),
            grant: Some(id),
            volume_left_bytes: left,
            enough: true,
            rule,
            ..GrantNeed::default()
        });
    need.versions += 1;
    need.bytes += bytes;
    need.enough = need.volume_left_bytes.is_none_or(|left| need.bytes <= left);
}
