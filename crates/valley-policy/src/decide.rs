//! The one decision every transfer of object bytes or query results goes through.

use serde::{Deserialize, Serialize};

use crate::Day;
use crate::grant::Grant;
use crate::placement::PlacementPolicy;
use crate::topology::Topology;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransferKind {
    /// A client writes to a hub (from = to = that hub).
    Write,
    Replication,
    Tiering,
    ReadThrough,
    Migration,
    QueryResult,
    /// A server-side copy (CopyObject, UploadPartCopy) of one bucket's data into another: the
    /// source's policy decides, for every hub the destination's policy allows.
    Copy,
}

impl TransferKind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Write => "write",
            TransferKind::Replication => "replication",
            TransferKind::Tiering => "tiering",
            TransferKind::ReadThrough => "read-through",
            TransferKind::Migration => "migration",
            TransferKind::QueryResult => "query-result",
            TransferKind::Copy => "copy",
        }
    }
}

/// A proposed movement of a bucket's data into hub `to`.
#[derive(Debug, Clone)]
pub struct Transfer<'a> {
    pub kind: TransferKind,
    pub bucket: &'a str,
    /// The tenant whose data moves (the bucket's owner): only its own grants count.
    pub tenant: &'a str,
    pub policy: &'a PlacementPolicy,
    pub from: &'a str,
    pub to: &'a str,
    pub bytes: u64,
    /// Individuals whose data the object carries, as it declares (`None`: it declares none).
    pub individuals: Option<u64>,
    /// Individuals the tenant has sent out of the source's jurisdiction this calendar year, by
    /// classification, as far as the deciding hub knows (the accountant's count is the one
    /// that holds: see [`crate::rules::export_accountant`]).
    pub exported: &'a crate::rules::ExportedVolumes,
    pub today: Day,
}

/// The rule that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    UnknownHub,
    HubNotAllowed,
    JurisdictionNotAllowed,
    PolicyAllows,
    SameJurisdiction,
    UnclassifiedCrossBorder,
    GrantCovers,
    NoValidGrant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    pub rule: Rule,
    /// Human-readable, naming the bucket, hubs, jurisdictions and grant involved.
    pub reason: String,
    /// The grant that allowed a cross-border flow.
    pub grant: Option<String>,
}

fn deny(rule: Rule, reason: String) -> Decision {
    Decision {
        allowed: false,
        rule,
        reason,
        grant: None,
    }
}

fn allow(rule: Rule, reason: String, grant: Option<String>) -> Decision {
    Decision {
        allowed: true,
        rule,
        reason,
        grant,
    }
}

/// Decides a transfer: the destination must be allowed by the bucket's placement policy; a
/// flow that crosses a border with classified data also needs a valid grant covering every
/// classification, its direction, today, and its volume caps.
#[must_use]
pub fn decide(topology: &Topology, grants: &[Grant], t: &Transfer<'_>) -> Decision {
    let kind = t.kind.as_str();
    let Some(to) = topology.hub(t.to) else {
        return deny(Rule::UnknownHub, format!("{kind} to unknown hub {:?} refused", t.to));
    };
    if !t.policy.jurisdictions.is_empty() && !t.policy.jurisdictions.contains(&to.jurisdiction) {
        return deny(
            Rule::JurisdictionNotAllowed,
            format!(
                "{kind} refused: bucket {:?} may hold data only in jurisdictions [{}]; hub {} is in {}",
                t.bucket,
                t.policy.jurisdictions.join(", "),
                to.id,
                to.jurisdiction
            ),
        );
    }
    if !t.policy.hubs.is_empty() && !t.policy.hubs.contains(&to.id) {
        return deny(
            Rule::HubNotAllowed,
            format!(
                "{kind} refused: bucket {:?} may hold data only in hubs [{}]; {} is not one of them",
                t.bucket,
                t.policy.hubs.join(", "),
                to.id
            ),
        );
    }
    if t.kind == TransferKind::Write {
        return allow(
            Rule::PolicyAllows,
            format!("bucket {:?} may hold data in hub {}", t.bucket, to.id),
            None,
        );
    }
    let Some(from) = topology.hub(t.from) else {
        return deny(
            Rule::UnknownHub,
            format!("{kind} from unknown hub {:?} refused", t.from),
        );
    };
    if from.jurisdiction == to.jurisdiction {
        return allow(
            Rule::SameJurisdiction,
            format!("{kind} {} -> {} stays in {}", from.id, to.id, to.jurisdiction),
            None,
        );
    }
    if t.policy.classifications.is_empty() {
        return allow(
            Rule::UnclassifiedCrossBorder,
            format!(
                "{kind} {} ({}) -> {} ({}): bucket {:?} is unclassified and its policy allows {}",
                from.id, from.jurisdiction, to.id, to.jurisdiction, t.bucket, to.jurisdiction
            ),
            None,
        );
    }
    let mut refusals = Vec::new();
    for g in grants
        .iter()
        .filter(|g| g.tenant == t.tenant && g.from == from.jurisdiction && g.to == to.jurisdiction)
    {
        if let Some(missing) = t.policy.classifications.iter().find(|c| !g.classifications.contains(c)) {
            refusals.push(format!("grant {} does not cover {missing}", g.id));
            continue;
        }
        // A grant whose basis the rule packs do not accept (any more), or not for this volume,
        // carries nothing.
        let volume = crate::rules::Volume {
            individuals: t.individuals,
            bytes: t.bytes,
            exported: t.exported,
        };
        let judged = topology
            .rules()
            .judge_flow(g, &t.policy.classifications, t.today, volume);
        if !judged.accepted {
            refusals.push(format!("grant {} is not accepted: {}", g.id, judged.reason));
            continue;
        }
        match g.refusal(t.today, t.bytes, t.individuals) {
            Some(why) => refusals.push(why),
            None => {
                let pack = if judged.packs.is_empty() {
                    String::new()
                } else {
                    format!(", accepted by rule pack {}", judged.packs.join(", "))
                };
                return allow(
                    Rule::GrantCovers,
                    format!(
                        "{kind} {} ({}) -> {} ({}) of [{}] data allowed by grant {} ({:?}, ref {}){pack}",
                        from.id,
                        from.jurisdiction,
                        to.id,
                        to.jurisdiction,
                        t.policy.classifications.join(", "),
                        g.id,
                        g.basis,
                        g.reference
                    ),
                    Some(g.id.clone()),
                );
            }
        }
    }
    let detail = if refusals.is_empty() {
        format!("tenant {:?} has no grant for this direction", t.tenant)
    } else {
        refusals.join("; ")
    };
    deny(
        Rule::NoValidGrant,
        format!(
            "{kind} refused: [{}] data of bucket {:?} may leave {} for {} only under a valid grant: {detail}",
            t.policy.classifications.join(", "),
            t.bucket,
            from.jurisdiction,
            to.jurisdiction
        ),
    )
}
