//! Taking in a batch: every version judged by this hub's own view of the policy and checked
//! against its ETag, the accepted ones applied in one transaction, the transfers audited
//! together.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use valley_audit::AuditKind;
use valley_policy::PlacementPolicy;
use valley_store::{ReplicaOutcome, StoreError};

use super::{BatchAnswer, BatchItem, ItemOutcome, decode};
use crate::control;
use crate::hub::Hub;
use crate::receive::{check_hlc, json, kind_of, reply};
use crate::wire::{self, EtagCheck};

/// Answers `POST batch`: one outcome per version, in the order sent.
pub(crate) async fn receive_batch(hub: &Arc<Hub>, from: &str, query: &str, body: &Bytes) -> Response<Bytes> {
    let items = match decode(body) {
        Ok(items) => items,
        Err(e) => return reply(StatusCode::BAD_REQUEST, format!("malformed batch: {e}")),
    };
    if let Some(newest) = items.iter().map(|i| i.version.hlc).max()
        && let Err(r) = check_hlc(hub, from, "version", newest).await
    {
        return r;
    }
    let kind = kind_of(query);
    let (policies, grants) = match policies_and_grants(hub, &items).await {
        Ok(read) => read,
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; items.len()];
    let mut refusals = Vec::new();
    let mut accepted = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let Some(policy) = policies.get(&item.bucket) else {
            outcomes[index] = Some(ItemOutcome::Retry {
                reason: format!("bucket {:?} is not known here yet", item.bucket),
            });
            continue;
        };
        let (decision, refusal) = hub.decide_with(
            &grants,
            kind,
            &item.bucket,
            &item.key,
            policy,
            from,
            &hub.id,
            item.version.size,
            valley_policy::placement::declared_individuals(&item.version.headers.user_metadata, policy),
        );
        if !decision.allowed {
            refusals.extend(refusal);
            outcomes[index] = Some(ItemOutcome::Refused {
                reason: decision.reason,
            });
            continue;
        }
        if let Err(why) = check_data(&item) {
            outcomes[index] = Some(ItemOutcome::Retry { reason: why });
            continue;
        }
        accepted.push((index, item));
    }
    hub.auditor.record_batch(refusals).await;
    // The commit and its audit records run as a task of their own, so a connection cut
    // mid-commit (the request's future dropped) can neither lose the record of a transfer that
    // happened nor record one that did not.
    let task = {
        let (hub, from) = (hub.clone(), from.to_owned());
        tokio::spawn(async move { apply(&hub, &from, kind, accepted).await })
    };
    match task.await {
        Ok(Ok(applied)) => {
            for (index, outcome) in applied {
                outcomes[index] = Some(outcome);
            }
            json(&BatchAnswer {
                outcomes: outcomes
                    .into_iter()
                    .map(|o| {
                        o.unwrap_or(ItemOutcome::Retry {
                            reason: "not applied".into(),
                        })
                    })
                    .collect(),
            })
        }
        Ok(Err(e)) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The policies of the batch's buckets (held to their floors) and the grants, read once.
async fn policies_and_grants(
    hub: &Arc<Hub>,
    items: &[BatchItem],
) -> Result<(BTreeMap<String, PlacementPolicy>, Vec<valley_policy::Grant>), StoreError> {
    let buckets: Vec<String> = items
        .iter()
        .map(|i| i.bucket.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let topology = hub.topology.clone();
    hub.read(move |txn| {
        let mut policies = BTreeMap::new();
        for bucket in buckets {
            if let Some(record) = control::load_policy(txn, &bucket)? {
                let policy = crate::hook::held_to_floors(txn, &topology, &bucket, &record.policy)?;
                policies.insert(bucket, policy);
            }
        }
        Ok((policies, control::grants(txn)?))
    })
    .await
}

/// The version's bytes against its size and ETag.
fn check_data(item: &BatchItem) -> Result<(), String> {
    let valley_store::record::ObjectData::Inline(data) = &item.version.data else {
        return Err("batched data must be inline".into());
    };
    let mut check = EtagCheck::for_stored(&item.version);
    check.update(data);
    wire::check_body(&item.version, data.len() as u64, &check.finish())
}

/// Applies the accepted versions in one transaction and audits those stored.
async fn apply(
    hub: &Arc<Hub>,
    from: &str,
    kind: valley_policy::TransferKind,
    accepted: Vec<(usize, BatchItem)>,
) -> Result<Vec<(usize, ItemOutcome)>, StoreError> {
    let mut records = Vec::with_capacity(accepted.len());
    let mut indices = Vec::with_capacity(accepted.len());
    let mut batch = Vec::with_capacity(accepted.len());
    for (index, item) in accepted {
        records.push((
            item.bucket.clone(),
            item.key.clone(),
            item.version.size,
            crate::residency::version_tag(item.version.hlc, &item.version.origin),
        ));
        indices.push(index);
        batch.push((item.bucket, item.key, item.version));
    }
    let results = hub.catalog.apply_replicas(batch).await?;
    let mut outcomes = Vec::with_capacity(results.len());
    let mut events = Vec::new();
    for ((index, result), (bucket, key, size, tag)) in indices.into_iter().zip(results).zip(records) {
        let outcome = match result {
            Ok(ReplicaOutcome::Applied) => {
                events.push(
                    hub.auditor
                        .event(
                            AuditKind::Transfer,
                            format!("{} received from {from} {tag}", kind.as_str()),
                        )
                        .with_bucket(&bucket)
                        .with_key(&key)
                        .with_peer(from)
                        .with_allowed(true)
                        .with_bytes(size),
                );
                ItemOutcome::Applied
            }
            Ok(ReplicaOutcome::Duplicate) => ItemOutcome::Duplicate,
            Ok(ReplicaOutcome::Superseded) => ItemOutcome::Superseded,
            Err(e) => ItemOutcome::Retry { reason: e.to_string() },
        };
        outcomes.push((index, outcome));
    }
    hub.auditor.record_batch(events).await;
    Ok(outcomes)
}
