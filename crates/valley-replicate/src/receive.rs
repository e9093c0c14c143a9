//! The peer API: what a hub does with requests from other hubs.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use valley_audit::AuditKind;
use valley_policy::TransferKind;
use valley_store::record::{BlobRef, ObjectData, ObjectVersion};
use valley_store::{ReplicaOutcome, StoreError};
use valley_types::limits::INLINE_OBJECT_BYTES_MAX;

use crate::auth;
use crate::client;
use crate::control::{self, ControlChange};
use crate::hub::Hub;
use crate::read_through;
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
pub async fn handle(hub: Arc<Hub>, req: Request<Incoming>) -> Response<client::Body> {
    let from = match authenticate(&hub, &req).await {
        Ok(from) => from,
        Err(r) => return r.map(client::full),
    };
    let route = req.uri().path().strip_prefix(wire::PREFIX).unwrap_or("").to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    if req.method() == http::Method::GET && route == "read" {
        return match read_through::serve_read(&hub, &from, &query).await {
            Ok(r) => r,
            Err(r) => r.map(client::full),
        };
    }
    dispatch(hub, from, &route, &query, req).await.map(client::full)
}

/// Checks the caller's signature, topology and membership; answers who it is.
async fn authenticate(hub: &Arc<Hub>, req: &Request<Incoming>) -> Result<String, Response<Bytes>> {
    let path_and_query = req.uri().path_and_query().map_or("", |p| p.as_str()).to_owned();
    let from = match auth::verify(&hub.secret, req.method().as_str(), &path_and_query, req.headers()) {
        Ok(identity) => identity,
        Err(why) => {
            hub.audit(
                hub.event(AuditKind::RefusedRequest, format!("peer request refused: {why}"))
                    .with_allowed(false),
            )
            .await;
            return Err(reply(StatusCode::UNAUTHORIZED, why));
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
        return Err(reply(StatusCode::CONFLICT, why));
    }
    if hub.topology.hub(&from).is_none() {
        return Err(reply(
            StatusCode::FORBIDDEN,
            format!("{from:?} is not a hub of this network"),
        ));
    }
    Ok(from)
}

async fn dispatch(hub: Arc<Hub>, from: String, route: &str, query: &str, req: Request<Incoming>) -> Response<Bytes> {
    let (route, query) = (route.to_owned(), query.to_owned());
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
        (http::Method::POST, "deletes") => {
            let messages: Vec<wire::DeleteMessage> = match read_json(req).await {
                Ok(m) => m,
                Err(r) => return r,
            };
            let batch = messages
                .into_iter()
                .map(|m| valley_store::RemoteDelete {
                    stamp: valley_store::keys::Stamp {
                        hlc: m.hlc,
                        origin_tag: valley_store::keys::origin_tag(&m.origin),
                    },
                    bucket: m.bucket,
                    key: m.key,
                    version_id: m.version_id,
                    newer_only: m.newer_only,
                })
                .collect();
            match hub.catalog.apply_remote_deletes(batch).await {
                Ok(applied) => json(&wire::Outcome {
                    outcome: format!("{applied} applied"),
                }),
                Err(e) => reply(store_status(&e), e.to_string()),
            }
        }
        (http::Method::PUT, "object") => receive_object(&hub, &from, &query, req).await,
        (http::Method::GET, "stat") => read_through::serve_stat(&hub, &from, &query).await,
        (http::Method::GET, "control-digest") => match crate::repair::control_digest(&hub).await {
            Ok(d) => reply(StatusCode::OK, d),
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        (http::Method::POST, "digest") => {
            let request: wire::DigestRequest = match read_json(req).await {
                Ok(r) => r,
                Err(r) => return r,
            };
            if hub.topology.hub(&request.hub).is_none() || request.hub != from {
                return reply(StatusCode::BAD_REQUEST, "a digest is asked for the calling hub");
            }
            match crate::repair::answer_digest(&hub, &request).await {
                Ok(answer) => json(&answer),
                Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        (http::Method::POST, "grant-use") => {
            let request: wire::GrantUse = match read_json(req).await {
                Ok(r) => r,
                Err(r) => return r,
            };
            match hub
                .account_grant_use(&request.grant, &request.transfer, request.bytes)
                .await
            {
                Ok(()) => json(&wire::Outcome {
                    outcome: "counted".into(),
                }),
                Err(why) => reply(StatusCode::FORBIDDEN, why),
            }
        }
        (http::Method::POST, "stage") => stage(&hub, &from, &query, &req).await,
        (http::Method::PUT, "chunk") => receive_chunk(&hub, &from, &query, req).await,
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

/// The transfer kind named in the query (replication when absent).
fn kind_of(query: &str) -> TransferKind {
    wire::query_param(query, "kind")
        .and_then(|k| serde_json::from_value(serde_json::Value::String(k)).ok())
        .unwrap_or(TransferKind::Replication)
}

/// The receiver's own residency decision on data coming in from `from`: a misconfigured or
/// malicious sender must not be able to place data here that this hub's view of the policy
/// forbids. A refusal is audited and answered 403; a bucket whose policy has not arrived yet
/// is answered 404 (the sender retries later).
async fn admit(
    hub: &Arc<Hub>,
    from: &str,
    kind: TransferKind,
    bucket: &str,
    key: &str,
    bytes: u64,
) -> Result<(), Response<Bytes>> {
    let record = {
        let b = bucket.to_owned();
        hub.read(move |txn| control::load_policy(txn, &b)).await
    };
    let policy = match record {
        Ok(Some(record)) => record.policy,
        Ok(None) => {
            return Err(reply(
                StatusCode::NOT_FOUND,
                format!("bucket {bucket:?} is not known here yet"),
            ));
        }
        Err(e) => return Err(reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    let decision = hub
        .judge(kind, bucket, key, &policy, from, &hub.id, bytes)
        .await
        .map_err(|e| reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if decision.allowed {
        return Ok(());
    }
    Err(reply(StatusCode::FORBIDDEN, decision.reason))
}

/// The version named by `x-valley-version`, and the bucket and key from the query.
// The error is the answer to send; it is built once per refused call, so its size is no cost.
#[allow(clippy::result_large_err)]
fn version_call(query: &str, req: &Request<Incoming>) -> Result<(String, String, ObjectVersion), Response<Bytes>> {
    let (Some(bucket), Some(key)) = (wire::query_param(query, "bucket"), wire::query_param(query, "key")) else {
        return Err(reply(StatusCode::BAD_REQUEST, "bucket and key are required"));
    };
    let header = req
        .headers()
        .get(wire::HEADER_VERSION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let version = wire::decode_version(header)
        .ok_or_else(|| reply(StatusCode::BAD_REQUEST, "missing or malformed x-valley-version"))?;
    Ok((bucket, key, version))
}

async fn receive_object(hub: &Arc<Hub>, from: &str, query: &str, req: Request<Incoming>) -> Response<Bytes> {
    let (bucket, key, version) = match version_call(query, &req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let kind = kind_of(query);
    if let Err(r) = admit(hub, from, kind, &bucket, &key, version.size).await {
        return r;
    }
    let staged = req.headers().contains_key(wire::HEADER_STAGED);
    let size = version.size;
    let applied = if staged {
        if let Err(r) = check_staged(hub, &bucket, &key, &version).await {
            return r;
        }
        hub.catalog.apply_staged_replica(&bucket, &key, version).await
    } else {
        let data = match take_body(hub, req.into_body(), &version).await {
            Ok(data) => data,
            Err(r) => return r,
        };
        let mut version = version;
        version.data = data;
        hub.catalog.apply_replica(&bucket, &key, version).await
    };
    match applied {
        Ok(outcome) => {
            if outcome == ReplicaOutcome::Applied {
                hub.audit(
                    hub.event(AuditKind::Transfer, format!("{} received from {from}", kind.as_str()))
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

/// Reads the staged chunks of `version` back through the ETag check; on a mismatch they are
/// dropped (the sender starts over).
async fn check_staged(hub: &Arc<Hub>, bucket: &str, key: &str, version: &ObjectVersion) -> Result<(), Response<Bytes>> {
    let internal = |e: StoreError| reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let stamp = version.stamp();
    let staged = hub.catalog.staged_chunks(bucket, key, stamp).await.map_err(internal)?;
    let total: u64 = staged.iter().map(|(_, b)| b.size).sum();
    if total != version.size || staged.iter().enumerate().any(|(i, (index, _))| *index as usize != i) {
        return Err(reply(
            StatusCode::CONFLICT,
            format!("{} of {} bytes staged; send the missing chunks", total, version.size),
        ));
    }
    let mut check = EtagCheck::new(&version.part_sizes);
    for (_, blob) in &staged {
        let mut stream = hub
            .catalog
            .blobs()
            .read(&blob.id, 0, blob.size)
            .await
            .map_err(|e| reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        while let Some(piece) = stream.next().await {
            check.update(&piece.map_err(|e| reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?);
        }
    }
    let etag = check.finish();
    if etag != version.etag {
        let _ = hub.catalog.drop_staged(bucket, key, stamp).await;
        return Err(reply(
            StatusCode::BAD_REQUEST,
            format!(
                "checksum mismatch: staged bytes hash to {etag}, the origin recorded {}",
                version.etag
            ),
        ));
    }
    Ok(())
}

/// Starts or resumes a chunked transfer: says which chunks are here already.
async fn stage(hub: &Arc<Hub>, from: &str, query: &str, req: &Request<Incoming>) -> Response<Bytes> {
    let (bucket, key, version) = match version_call(query, req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(r) = admit(hub, from, kind_of(query), &bucket, &key, version.size).await {
        return r;
    }
    let stamp = version.stamp();
    let versioned = version.version_id.is_some();
    let done = match hub.catalog.holds_or_superseded(&bucket, &key, stamp, versioned).await {
        Ok(done) => done,
        Err(e) => return reply(store_status(&e), e.to_string()),
    };
    let staged = if done {
        Vec::new()
    } else {
        match hub.catalog.staged_chunks(&bucket, &key, stamp).await {
            Ok(chunks) => chunks.into_iter().map(|(i, _)| i).collect(),
            Err(e) => return reply(store_status(&e), e.to_string()),
        }
    };
    json(&wire::StageState { done, staged })
}

/// One chunk of a chunked transfer: checked against its MD5, made durable, staged.
async fn receive_chunk(hub: &Arc<Hub>, from: &str, query: &str, req: Request<Incoming>) -> Response<Bytes> {
    let param = |name| wire::query_param(query, name);
    let (Some(bucket), Some(key), Some(hlc), Some(origin), Some(index)) = (
        param("bucket"),
        param("key"),
        param("hlc").and_then(|h| h.parse::<u64>().ok()),
        param("origin"),
        param("index").and_then(|i| i.parse::<u32>().ok()),
    ) else {
        return reply(
            StatusCode::BAD_REQUEST,
            "bucket, key, hlc, origin and index are required",
        );
    };
    let Some(md5) = req
        .headers()
        .get(wire::HEADER_CHUNK_MD5)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return reply(StatusCode::BAD_REQUEST, "x-valley-chunk-md5 is required");
    };
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if declared > crate::transfer::CHUNK_BYTES_MAX {
        return reply(StatusCode::BAD_REQUEST, "chunk larger than the chunk size");
    }
    if let Err(r) = admit(hub, from, kind_of(query), &bucket, &key, declared).await {
        return r;
    }
    let blobs = hub.catalog.blobs().clone();
    let mut writer = match blobs.create().await {
        Ok(w) => w,
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut digest = <md5::Md5 as md5::Digest>::new();
    let mut received = 0u64;
    let mut stream = http_body_util::BodyStream::new(req.into_body());
    let mut failure = None;
    while let Some(frame) = stream.next().await {
        let chunk = match frame {
            Ok(f) => match f.into_data() {
                Ok(c) => c,
                Err(_) => continue,
            },
            Err(e) => {
                failure = Some(reply(StatusCode::BAD_REQUEST, format!("transfer broke off: {e}")));
                break;
            }
        };
        received += chunk.len() as u64;
        if received > crate::transfer::CHUNK_BYTES_MAX {
            failure = Some(reply(StatusCode::BAD_REQUEST, "chunk larger than the chunk size"));
            break;
        }
        md5::Digest::update(&mut digest, &chunk);
        if let Err(e) = writer.write(chunk).await {
            failure = Some(reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()));
            break;
        }
    }
    if failure.is_none() && hex::encode(md5::Digest::finalize(digest)) != md5 {
        failure = Some(reply(StatusCode::BAD_REQUEST, "chunk checksum mismatch"));
    }
    if let Some(r) = failure {
        writer.abort().await;
        return r;
    }
    let id = match writer.finish().await {
        Ok(id) => id,
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let stamp = valley_store::keys::Stamp {
        hlc,
        origin_tag: valley_store::keys::origin_tag(&origin),
    };
    let blob = BlobRef { id, size: received };
    match hub.catalog.stage_chunk(&bucket, &key, stamp, index, blob).await {
        Ok(()) => json(&wire::Outcome {
            outcome: "staged".into(),
        }),
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
                if let Err(e) = w.write(chunk).await {
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
