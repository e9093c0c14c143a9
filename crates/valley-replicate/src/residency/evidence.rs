//! What each hub says it holds of a bucket, and its audit chain's word on how it got there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use valley_audit::{AuditKind, AuditRecord, Filter, Head, VerifyReport};
use valley_policy::{Grant, PlacementPolicy};
use valley_store::{StoreError, VersionSummary};

use crate::control;
use crate::hook::now_unix_ms;
use crate::hub::{Hub, HubError};

/// A hub's audit chain as it verified it when asked: its newest record, and the first
/// problem if it does not verify (or does not hold the anchor it was asked to check).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainState {
    pub head: Head,
    pub ok: bool,
    pub problem: Option<String>,
}

/// One hub's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HubEvidence {
    pub hub: String,
    pub versions: Vec<VersionSummary>,
    /// The transfer records of this hub's chain that name the bucket (when asked for).
    #[serde(default)]
    pub transfers: Vec<AuditRecord>,
    pub chain: Option<ChainState>,
}

/// Every hub's answer, with the policy, lost hubs and grants of the hub that gathered them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evidence {
    pub bucket: String,
    pub gathered_by: String,
    pub gathered_unix_ms: u64,
    pub topology_hash: String,
    /// The bucket's policy, held to its floors.
    pub policy: PlacementPolicy,
    pub lost: BTreeSet<String>,
    /// The bucket's owner (absent from evidence of the previous release, whose buckets were
    /// all the default tenant's).
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// The owner's grants: the only ones its data may cross a border under.
    pub grants: Vec<Grant>,
    pub hubs: Vec<HubEvidence>,
    /// Hubs that did not answer, with why.
    pub unreachable: BTreeMap<String, String>,
}

fn default_tenant() -> String {
    valley_types::DEFAULT_TENANT.to_owned()
}

impl Evidence {
    pub fn hub(&self, id: &str) -> Option<&HubEvidence> {
        self.hubs.iter().find(|h| h.hub == id)
    }
}

/// The largest number of versions one hub reports for one bucket (a report of more is cut,
/// and says so rather than run a hub out of memory).
pub const VERSIONS_MAX: usize = 1_000_000;

/// This hub's answer for `bucket`. With `audit`, the chain is verified (against `anchor`, when
/// given: a head it signed or reported before) and its transfer records for the bucket read.
pub async fn local_evidence(
    hub: &Arc<Hub>,
    bucket: &str,
    audit: bool,
    anchor: Option<Head>,
) -> Result<HubEvidence, HubError> {
    let versions = match hub.catalog.version_summaries(bucket).await {
        Ok(summaries) => summaries.into_iter().take(VERSIONS_MAX).collect(),
        // A hub that never heard of the bucket holds none of it.
        Err(StoreError::NoSuchBucket(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let (transfers, chain) = if audit {
        let path = hub.auditor.path().to_owned();
        let bucket = bucket.to_owned();
        tokio::task::spawn_blocking(move || -> Result<_, HubError> {
            let report = valley_audit::verify_file_anchored(&path, anchor.unwrap_or(Head::EMPTY))?;
            let filter = Filter {
                bucket: Some(bucket),
                kind: Some(AuditKind::Transfer),
                ..Filter::default()
            };
            let records = valley_audit::read_filtered(&path, &filter)?;
            let chain = match report {
                VerifyReport::Ok(log) => ChainState {
                    head: log.head,
                    ok: true,
                    problem: None,
                },
                VerifyReport::Bad(bad) => ChainState {
                    head: Head::EMPTY,
                    ok: false,
                    problem: Some(bad.to_string()),
                },
            };
            // Records past the verified head are not vouched for yet.
            let records = records.into_iter().filter(|r| r.seq <= chain.head.seq).collect();
            Ok((records, Some(chain)))
        })
        .await
        .map_err(|e| HubError::Invalid(format!("audit read failed: {e}")))??
    } else {
        (Vec::new(), None)
    };
    Ok(HubEvidence {
        hub: hub.id.clone(),
        versions,
        transfers,
        chain,
    })
}

/// Whether hub `who` may see `bucket`'s evidence: its key names and sizes are the bucket's
/// data as much as its bytes, so only a hub the bucket's policy (held to its floors) allows
/// gathers or receives them. `Err` says why not.
pub async fn may_see(hub: &Arc<Hub>, bucket: &str, who: &str) -> Result<(), String> {
    let policy = hub.policy(bucket).await.map_err(|e| e.to_string())?;
    visible_to(&hub.topology, &policy, bucket, who)
}

/// [`may_see`] under `policy` (the bucket's, already read).
fn visible_to(
    topology: &valley_policy::Topology,
    policy: &PlacementPolicy,
    bucket: &str,
    who: &str,
) -> Result<(), String> {
    let place = topology
        .hub(who)
        .ok_or_else(|| format!("{who} is not a hub of this network"))?;
    if policy.allows(place) {
        return Ok(());
    }
    let allowed: Vec<&str> = topology
        .hubs()
        .filter(|h| policy.allows(h))
        .map(|h| h.id.as_str())
        .collect();
    Err(format!(
        "the residency evidence of bucket {bucket:?} names its objects, which may be only at [{}]; hub {who} is not one of them: ask one that is",
        allowed.join(", ")
    ))
}

/// The peer call's query for [`local_evidence`].
pub(crate) fn evidence_route(bucket: &str, audit: bool, anchor: Option<Head>) -> String {
    let mut params = vec![("bucket", bucket.to_owned()), ("audit", u8::from(audit).to_string())];
    if let Some(anchor) = anchor {
        params.push(("anchor", format!("{}:{}", anchor.seq, anchor.hash)));
    }
    let refs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let path = crate::wire::path("residency", &refs);
    path.strip_prefix(crate::wire::PREFIX).unwrap_or(&path).to_owned()
}

/// Parses an `anchor` parameter (`SEQ:HASH`).
pub(crate) fn parse_anchor(value: &str) -> Option<Head> {
    let (seq, hash) = value.split_once(':')?;
    Some(Head {
        seq: seq.parse().ok()?,
        hash: hash.parse().ok()?,
    })
}

/// Calls for one peer's evidence before it is listed as unreachable.
const EVIDENCE_ATTEMPTS: u32 = 3;

/// Evidence from every hub of the network (this one included) for `bucket`. `anchors` are
/// heads to check per hub (a report's). A hub that does not answer is listed as unreachable.
pub async fn gather(
    hub: &Arc<Hub>,
    bucket: &str,
    audit: bool,
    anchors: &BTreeMap<String, Head>,
) -> Result<Evidence, HubError> {
    let policy = hub.policy(bucket).await?;
    visible_to(&hub.topology, &policy, bucket, &hub.id).map_err(HubError::Invalid)?;
    let lost = hub.read(control::lost_hubs).await?;
    let tenant = hub.owner_of(bucket);
    let grants = hub.grants_of(&tenant).await?;
    let mut hubs = vec![local_evidence(hub, bucket, audit, anchors.get(&hub.id).copied()).await?];
    let mut unreachable = BTreeMap::new();
    let answers = futures::future::join_all(hub.peers.ids().into_iter().map(|peer| {
        let route = evidence_route(bucket, audit, anchors.get(&peer).copied());
        let hub = hub.clone();
        async move {
            // A cut connection is not an unreachable hub: ask again, a few times, before the
            // report lists it as one.
            let mut answer = hub.peers.get_large(&peer, &route).await;
            for attempt in 1..EVIDENCE_ATTEMPTS {
                if !matches!(answer, Err(crate::client::PeerError::Unreachable(_))) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt))).await;
                answer = hub.peers.get_large(&peer, &route).await;
            }
            (peer, answer)
        }
    }))
    .await;
    for (peer, answer) in answers {
        let parsed = answer
            .map_err(|e| e.to_string())
            .and_then(|body| serde_json::from_slice::<HubEvidence>(&body).map_err(|e| e.to_string()));
        match parsed {
            Ok(evidence) if evidence.hub == peer => hubs.push(evidence),
            Ok(evidence) => {
                unreachable.insert(peer, format!("answered as hub {:?}", evidence.hub));
            }
            Err(why) => {
                unreachable.insert(peer, why);
            }
        }
    }
    hubs.sort_by(|a, b| a.hub.cmp(&b.hub));
    Ok(Evidence {
        bucket: bucket.to_owned(),
        gathered_by: hub.id.clone(),
        gathered_unix_ms: now_unix_ms(),
        topology_hash: hub.topology.hash().to_owned(),
        policy,
        lost,
        tenant,
        grants,
        hubs,
        unreachable,
    })
}
