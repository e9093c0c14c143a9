//! The peer API: what a hub does with requests from other hubs.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use valley_audit::AuditKind;
use valley_policy::{Transfer, TransferKind, decide};
use valley_store::record::{BlobRef, ObjectData, ObjectVersion};
use valley_store::{ReplicaOutcome, StoreError};
use valley_types::limits::INLINE_OBJECT_BYTES_MAX;

use crate::auth;
use crate::control::{self, ControlChange};
use crate::hook::today;
use crate::hub::Hub;
use crate::wire::{self, EtagCheck};

/// Largest JSON body a peer may send (control changes and deletes are small).
const JSON_BODY_BYTES_MAX: usize = 1024 * 1024;

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r
}

fn json(value: &impl serde::Serialize) -> Response<Bytes> {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut r = reply(StatusCode::OK, body);
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn store_status(e: &StoreError) -> StatusCode {
    match e {
        StoreError::NoSuchBucket(_) => StatusCode::NOT_FOUND,
        StoreError::Refused(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Handles a request under [`wire::PREFIX`].
pub async fn handle(hub: Arc<Hub>, req: Request<Incoming>) -> Response<Bytes> {
    let path_and_query = req.uri().path_and_query().map_or("", |p| p.as_str()).to_owned();
    let from = match auth::verify(&hub.secret, req.method().as_str(), &path_and_query, req.headers()) {
        Ok(identity) => identity,
        Err(why) => {
            hub.audit(
                hub.event(AuditKind::RefusedRequest, format!("peer request refused: {why}"))
                    .with_allowed(false),
            )
            .await;
            return reply(StatusCode::UNAUTHORIZED, why);
        }
    };
    let their_topology = req
        .headers()
        .get(auth::HEADER_TOPOLOGY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if their_topology != hub.topology.hash() {
        let why = format!(
            "topology mismatch: hub {} loaded topology {}, peer {from} sent {their_topology}; both must load the same file",
            hub.id,
            hub.topology.hash()
        );
        hub.audit(
            hub.event(AuditKind::RefusedRequest, why.clone())
                .with_peer(&from)
                .with_allowed(false),
        )
        .await;
        return reply(StatusCode::CONFLICT, why);
    }
    if hub.topology.hub(&from).is_none() {
        return reply(StatusCode::FORBIDDEN, format!("{from:?} is not a hub of this network"));
    }
    let route = req.uri().path().strip_prefix(wire::PREFIX).unwrap_or("").to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    match (req.method().clone(), route.as_str()) {
        (http::Method::GET, "hello") => json(&wire::Hello {
            hub: hub.id.clone(),
            topology: hub.topology.hash().to_owned(),
        }),
        (http::Method::GET, "links") => json(&hub.link_status().await),
        (http::Method::GET, "backlog") => match hub.bucket_backlog().await {
            Ok(rows) => json(&rows),
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        (http::Method::GET, "inventory") => match hub.inventory().await {
            Ok(inv) => json(&inv),
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        (http::Method::POST, "control") => {
            let change: ControlChange = match read_json(req).await {
                Ok(c) => c,
                Err(r) => return r,
            };
            match hub.receive_control(&from, change).await {
                Ok(applied) => json(&wire::Outcome {
                    outcome: if applied { "applied" } else { "superseded" }.into(),
                }),
                Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        (http::Method::POST, "delete") => {
            let message: wire::DeleteMessage = match read_json(req).await {
                Ok(m) => m,
                Err(r) => return r,
            };
            let stamp = valley_store::keys::Stamp {
                hlc: message.hlc,
                origin_tag: valley_store::keys::origin_tag(&message.origin),
            };
            match hub
                .catalog
                .apply_remote_delete(&message.bucket, &message.key, message.version_id.as_deref(), stamp)
                .await
            {
                Ok(outcome) => json(&wire::Outcome {
                    outcome: format!("{outcome:?}").to_lowercase(),
                }),
                Err(e) => reply(store_status(&e), e.to_string()),
            }
        }
        (http::Method::PUT, "object") => receive_object(&hub, &from, &query, req).await,
        _ => reply(StatusCode::NOT_FOUND, "no such peer call"),
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Response<Bytes>> {
    let limited = http_body_util::Limited::new(req.into_body(), JSON_BODY_BYTES_MAX);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| reply(StatusCode::BAD_REQUEST, format!("reading body: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| reply(StatusCode::BAD_REQUEST, format!("malformed body: {e}")))
}

async fn receive_object(hub: &Arc<Hub>, from: &str, query: &str, req: Request<Incoming>) -> Response<Bytes> {
    let (Some(bucket), Some(key)) = (wire::query_param(query, "bucket"), wire::query_param(query, "key")) else {
        return reply(StatusCode::BAD_REQUEST, "bucket and key are required");
    };
    let version: ObjectVersion = {
        use base64::Engine;
        let header = req
            .headers()
            .get(wire::HEADER_VERSION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let decoded = base64::engine::general_purpose::STANDARD.decode(header).ok();
        match decoded.and_then(|raw| serde_json::from_slice(&raw).ok()) {
            Some(v) => v,
            None => return reply(StatusCode::BAD_REQUEST, "missing or malformed x-valley-version"),
        }
    };
    // The receiver decides for itself: a misconfigured or malicious sender must not be able
    // to place data here that this hub's view of the policy forbids.
    let residency = {
        let (topology, id, b) = (hub.topology.clone(), hub.id.clone(), bucket.clone());
        hub.read(move |txn| {
            let Some(record) = control::load_policy(txn, &b)? else {
                return Ok(None);
            };
            let grants = control::grants(txn)?;
            let _ = (&topology, &id);
            Ok(Some((record.policy, grants)))
        })
        .await
    };
    let (policy, grants) = match residency {
        Ok(Some(found)) => found,
        // The bucket's policy has not arrived yet: the sender retries later.
        Ok(None) => {
            return reply(
                StatusCode::NOT_FOUND,
                format!("bucket {bucket:?} is not known here yet"),
            );
        }
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let decision = decide(
        &hub.topology,
        &grants,
        &Transfer {
            kind: TransferKind::Replication,
            bucket: &bucket,
            policy: &policy,
            from,
            to: &hub.id,
            bytes: version.size,
            individuals: 0,
            today: today(),
        },
    );
    if !decision.allowed {
        hub.audit(
            hub.event(
                AuditKind::PolicyDecision,
                format!("incoming replica refused: {}", decision.reason),
            )
            .with_bucket(&bucket)
            .with_key(&key)
            .with_peer(from)
            .with_allowed(false)
            .with_rule(format!("{:?}", decision.rule))
            .with_bytes(version.size),
        )
        .await;
        return reply(StatusCode::FORBIDDEN, decision.reason);
    }
    let data = match take_body(hub, req.into_body(), &version).await {
        Ok(data) => data,
        Err(r) => return r,
    };
    let mut version = version;
    version.data = data;
    let size = version.size;
    match hub.catalog.apply_replica(&bucket, &key, version).await {
        Ok(outcome) => {
            if outcome == ReplicaOutcome::Applied {
                hub.audit(
                    hub.event(AuditKind::Transfer, format!("replica received from {from}"))
                        .with_bucket(&bucket)
                        .with_key(&key)
                        .with_peer(from)
                        .with_allowed(true)
                        .with_bytes(size),
                )
                .await;
            }
            json(&wire::Outcome {
                outcome: format!("{outcome:?}").to_lowercase(),
            })
        }
        Err(e) => reply(store_status(&e), e.to_string()),
    }
}

/// Streams a replica's bytes into the store, checking length and ETag end to end.
async fn take_body(hub: &Arc<Hub>, body: Incoming, version: &ObjectVersion) -> Result<ObjectData, Response<Bytes>> {
    let blobs = hub.catalog.blobs().clone();
    let mut check = EtagCheck::new(&version.part_sizes);
    let mut received = 0u64;
    let inline = version.size <= INLINE_OBJECT_BYTES_MAX;
    let mut buffer = Vec::new();
    let mut writer = if inline {
        None
    } else {
        Some(
            blobs
                .create()
                .await
                .map_err(|e| reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
        )
    };
    let mut stream = http_body_util::BodyStream::new(body);
    let mut failure = None;
    while let Some(frame) = stream.next().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                failure = Some(reply(StatusCode::BAD_REQUEST, format!("transfer broke off: {e}")));
                break;
            }
        };
        let Ok(chunk) = frame.into_data() else { continue };
        received += chunk.len() as u64;
        if received > version.size {
            failure = Some(reply(StatusCode::BAD_REQUEST, "more bytes than the version's size"));
            break;
        }
        check.update(&chunk);
        match &mut writer {
            None => buffer.extend_from_slice(&chunk),
            Some(w) => {
                if let Err(e) = w.write(&chunk).await {
                    failure = Some(reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
                    break;
                }
            }
        }
    }
    if failure.is_none() && received != version.size {
        failure = Some(reply(
            StatusCode::BAD_REQUEST,
            format!("got {received} of {} bytes", version.size),
        ));
    }
    if failure.is_none() {
        let etag = check.finish();
        if etag != version.etag {
            failure = Some(reply(
                StatusCode::BAD_REQUEST,
                format!(
                    "checksum mismatch: bytes hash to {etag}, the origin recorded {}",
                    version.etag
                ),
            ));
        }
    }
    if let Some(response) = failure {
        if let Some(w) = writer {
            w.abort().await;
        }
        return Err(response);
    }
    match writer {
        None => Ok(ObjectData::Inline(buffer)),
        Some(w) => {
            let id = w
                .finish()
                .await
                .map_err(|e| reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            Ok(ObjectData::Blobs(vec![BlobRef { id, size: received }]))
        }
    }
}
