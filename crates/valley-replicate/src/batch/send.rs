//! Sending a batch: each version judged at send time as a single transfer would be (policy,
//! grant, audit), the allowed ones framed into one call, the answer taken version by version.

use std::collections::BTreeMap;
use std::sync::Arc;

use valley_policy::{PlacementPolicy, TransferKind};
use valley_store::keys::{Stamp, origin_tag};
use valley_store::record::ObjectData;

use super::{BatchAnswer, BatchItem, ItemOutcome, encode};
use crate::client::{self, PeerError};
use crate::control;
use crate::hub::Hub;
use crate::transfer::{self, Sent};
use crate::wire;

/// A version to send, as the outbox names it.
#[derive(Debug, Clone)]
pub struct VersionRef {
    pub bucket: String,
    pub key: String,
    pub hlc: u64,
    pub origin: String,
}

/// Sends the versions `wanted` to `peer` in one call (those not stored inline, one call each);
/// answers what became of each, in order.
pub async fn send_batch(
    hub: &Arc<Hub>,
    peer: &str,
    wanted: &[VersionRef],
    kind: TransferKind,
) -> Vec<Result<Sent, PeerError>> {
    match prepare_and_send(hub, peer, wanted, kind).await {
        Ok(results) => results,
        Err(e) => wanted.iter().map(|_| Err(e.clone())).collect(),
    }
}

async fn prepare_and_send(
    hub: &Arc<Hub>,
    peer: &str,
    wanted: &[VersionRef],
    kind: TransferKind,
) -> Result<Vec<Result<Sent, PeerError>>, PeerError> {
    let local = |e: valley_store::StoreError| PeerError::Unreachable(format!("local store: {e}"));
    let endpoint = hub.peers.endpoint_of(peer)?;
    let stamps = wanted
        .iter()
        .map(|v| {
            let stamp = Stamp {
                hlc: v.hlc,
                origin_tag: origin_tag(&v.origin),
            };
            (v.bucket.clone(), v.key.clone(), stamp)
        })
        .collect();
    let versions = hub.catalog.objects_at(stamps).await.map_err(local)?;
    let (policies, grants) = policies_and_grants(hub, wanted).await.map_err(local)?;
    let mut results: Vec<Option<Result<Sent, PeerError>>> = vec![None; wanted.len()];
    let mut refusals = Vec::new();
    // (index into `wanted`, the item, the decision that allowed it)
    let mut batch = Vec::new();
    for (index, (want, version)) in wanted.iter().zip(versions).enumerate() {
        // Superseded or deleted since: nothing left to send.
        let Some(version) = version else {
            results[index] = Some(Ok(Sent::Nothing));
            continue;
        };
        let Some(policy) = policies.get(&want.bucket) else {
            results[index] = Some(Err(PeerError::Unreachable(format!(
                "no policy for bucket {:?} here",
                want.bucket
            ))));
            continue;
        };
        if !matches!(version.data, ObjectData::Inline(_)) || version.stored_size() > super::BATCH_ITEM_BYTES_MAX {
            results[index] =
                Some(transfer::send_known_version(hub, peer, &want.bucket, &want.key, &version, kind).await);
            continue;
        }
        let decided =
            transfer::decide_and_reserve(hub, &grants, kind, &want.bucket, &want.key, &version, peer, policy).await;
        let decision = match decided {
            Ok((decision, refusal)) => {
                refusals.extend(refusal);
                decision
            }
            Err(e) => {
                results[index] = Some(Err(e));
                continue;
            }
        };
        if !decision.allowed {
            results[index] = Some(Ok(Sent::Refused(decision.reason)));
            continue;
        }
        let item = BatchItem {
            bucket: want.bucket.clone(),
            key: want.key.clone(),
            version,
        };
        batch.push((index, item, decision));
    }
    hub.auditor.record_batch(refusals).await;
    if !batch.is_empty() {
        let items: Vec<BatchItem> = batch.iter().map(|(_, item, _)| item.clone()).collect();
        let outcomes = call(hub, peer, &endpoint, &items, kind).await?;
        let mut events = Vec::new();
        for ((index, item, decision), outcome) in batch.into_iter().zip(outcomes) {
            results[index] = Some(match outcome {
                // The bytes crossed the link (a duplicate may be an earlier attempt of ours
                // whose answer was lost): the transfer is recorded.
                ItemOutcome::Applied | ItemOutcome::Duplicate | ItemOutcome::Superseded => {
                    hub.moved.delivered(&item.bucket, peer, item.version.size);
                    events.push(transfer::transfer_event(
                        &hub.auditor,
                        kind,
                        peer,
                        &item.bucket,
                        &item.key,
                        &item.version,
                        decision,
                    ));
                    Ok(Sent::Delivered)
                }
                ItemOutcome::Refused { reason } => Ok(Sent::Refused(reason)),
                ItemOutcome::Retry { reason } => Err(PeerError::Failed {
                    status: 503,
                    message: reason,
                }),
            });
        }
        hub.auditor.record_batch(events).await;
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(PeerError::Unreachable("not sent".into()))))
        .collect())
}

/// The call itself: the body paced by the link's limit, the answer checked to hold one outcome
/// per version.
async fn call(
    hub: &Arc<Hub>,
    peer: &str,
    endpoint: &str,
    items: &[BatchItem],
    kind: TransferKind,
) -> Result<Vec<ItemOutcome>, PeerError> {
    let body = encode(items);
    if let Some(limit) = hub.links.rate_limit(peer) {
        limit.take(body.len()).await;
    }
    let len = body.len() as u64;
    let path = wire::path("batch", &[("kind", kind.as_str())]);
    let answer = hub
        .peers
        .client
        .call(
            http::Method::POST,
            endpoint,
            &path,
            &[("content-type", "application/octet-stream".to_owned())],
            client::Payload::Bytes(body.into()),
            len,
        )
        .await?;
    let answer: BatchAnswer = serde_json::from_slice(&answer).map_err(|e| PeerError::Failed {
        status: 200,
        message: format!("malformed batch answer: {e}"),
    })?;
    if answer.outcomes.len() != items.len() {
        return Err(PeerError::Failed {
            status: 200,
            message: format!(
                "batch answer holds {} outcomes for {} versions",
                answer.outcomes.len(),
                items.len()
            ),
        });
    }
    Ok(answer.outcomes)
}

async fn policies_and_grants(
    hub: &Arc<Hub>,
    wanted: &[VersionRef],
) -> valley_store::StoreResult<(BTreeMap<String, PlacementPolicy>, Vec<valley_policy::Grant>)> {
    let buckets: std::collections::BTreeSet<String> = wanted.iter().map(|w| w.bucket.clone()).collect();
    let (topology, id) = (hub.topology.clone(), hub.id.clone());
    hub.read(move |txn| {
        let mut policies = BTreeMap::new();
        for bucket in buckets {
            let policy = crate::hook::effective_policy(txn, &topology, &id, &bucket)?;
            policies.insert(bucket, policy);
        }
        Ok((policies, control::grants(txn)?))
    })
    .await
}
