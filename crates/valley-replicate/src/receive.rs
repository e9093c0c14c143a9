//! The peer API: what a hub does with requests from other hubs.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use valley_audit::AuditKind;
use valley_policy::TransferKind;
use valley_store::record::{BlobRef, ObjectData, ObjectVersion};
use valley_store::{ReplicaOutcome, StoreError};
use valley_types::limits::INLINE_OBJECT_BYTES_MAX;

use crate::auth;
use crate::body_timeout::TimedBody;
use crate::client;
use crate::control::{self, ControlChange};
use crate::hub::Hub;
use crate::read_through;
use crate::wire::{self, EtagCheck};

/// Largest JSON body a peer may send (control changes and deletes are small).
const JSON_BODY_BYTES_MAX: usize = 1024 * 1024;

pub(crate) fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r
}

pub(crate) fn json(value: &impl serde::Serialize) -> Response<Bytes> {
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

/// Handles a request under [`wire::PREFIX`]; `peer_hub` is the hub the connection's verified
/// client certificate names.
pub async fn handle(hub: Arc<Hub>, req: Request<Incoming>, peer_hub: Option<&str>) -> Response<client::Body> {
    let (parts, body) = req.into_parts();
    let body = TimedBody::new(body);
    let body_read = body.read_to_end();
    let mut response = answer(&hub, parts, body, peer_hub).await;
    // An answer given before the body was read (a refusal, a malformed body) closes the
    // connection: the unread bytes would otherwise be taken for the next request, or the
    // connection dropped under a client that had every reason to reuse it.
    if !body_read.load(std::sync::atomic::Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    response
}

async fn answer(
    hub: &Arc<Hub>,
    parts: http::request::Parts,
    body: TimedBody<Incoming>,
    peer_hub: Option<&str>,
) -> Response<client::Body> {
    let from = match authenticate(hub, &parts, peer_hub).await {
        Ok(from) => from,
        Err(r) => return r.map(client::full),
    };
    let route = parts.uri.path().strip_prefix(wire::PREFIX).unwrap_or("").to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let streamed = from.content_sha256 == auth::STREAMING_CHECKED;
    match (&parts.method, route.as_str()) {
        // Bodies bound end to end by a signed header (the version's ETag and size, the
        // chunk's MD5) may stream; every other body is read whole and checked by its hash.
        (&http::Method::PUT, "object") if streamed => {
            return receive_object(hub, &from.identity, &query, &parts.headers, Some(body))
                .await
                .map(client::full);
        }
        (&http::Method::PUT, "chunk") if streamed => {
            return receive_chunk(hub, &from.identity, &query, &parts.headers, body)
                .await
                .map(client::full);
        }
        _ => {}
    }
    // A batch of small versions is the one large body read whole: it is bound by the
    // signed hash like any other, then each version by its own ETag.
    let limit = if parts.method == http::Method::POST && route == "batch" {
        crate::batch::BATCH_BODY_BYTES_MAX
    } else {
        JSON_BODY_BYTES_MAX
    };
    let body = match auth::read_body(body, &from, limit).await {
        Ok(body) => body,
        Err(e) => return reply(StatusCode::BAD_REQUEST, e.to_string()).map(client::full),
    };
    if parts.method == http::Method::GET && route == "read" {
        return match read_through::serve_read(hub, &from.identity, &query).await {
            Ok(r) => r,
            Err(r) => r.map(client::full),
        };
    }
    dispatch(hub.clone(), from.identity, &route, &query, &parts, body)
        .await
        .map(client::full)
}

/// A refusal of a call nobody vouches for: counted, audited at most once per interval, answered.
async fn refuse_stranger(
    hub: &Arc<Hub>,
    kind: &'static str,
    status: StatusCode,
    why: String,
    peer: Option<&str>,
) -> Response<Bytes> {
    if let Some(detail) = hub.peers.refusals.note(kind, &why) {
        let mut event = hub.auditor.event(AuditKind::RefusedRequest, detail).with_allowed(false);
        if let Some(peer) = peer {
            event = event.with_peer(peer);
        }
        hub.auditor.record(event).await;
    }
    reply(status, why)
}

/// Checks the caller's signature, freshness, topology and membership; answers who it is and
/// what its signature vouches for.
async fn authenticate(
    hub: &Arc<Hub>,
    req: &http::request::Parts,
    peer_hub: Option<&str>,
) -> Result<auth::Verified, Response<Bytes>> {
    let path_and_query = req.uri.path_and_query().map_or("", |p| p.as_str()).to_owned();
    let verified = match auth::verify(&hub.peers.secret, req.method.as_str(), &path_and_query, &req.headers) {
        Ok(verified) => verified,
        Err(why) => {
            return Err(refuse_stranger(hub, "signature", StatusCode::UNAUTHORIZED, why.to_string(), None).await);
        }
    };
    let from = verified.identity.clone();
    let their_topology = req
        .headers
        .get(auth::HEADER_TOPOLOGY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if their_topology != hub.topology.hash() {
        let why = format!(
            "topology mismatch: hub {} loaded topology {}, peer {from} sent {their_topology}; both must load the same file",
            hub.id,
            hub.topology.hash()
        );
        return Err(refuse_stranger(hub, "topology", StatusCode::CONFLICT, why, Some(&from)).await);
    }
    // A hub that judges transfers by other rule packs would let through what this one refuses
    // (or the reverse): the network runs one law. Hubs of earlier releases do not say.
    if let Some(theirs) = req.headers.get(auth::HEADER_RULES).and_then(|v| v.to_str().ok())
        && theirs != hub.topology.rules_hash()
    {
        let why = format!(
            "rule packs mismatch: hub {} judges by packs {} ({}), peer {from} by packs {theirs}; every hub must load the same packs",
            hub.id,
            hub.topology.rules().versions().join(", "),
            hub.topology.rules_hash()
        );
        return Err(refuse_stranger(hub, "rules", StatusCode::CONFLICT, why, Some(&from)).await);
    }
    if hub.topology.hub(&from).is_none() || from == hub.id {
        let why = format!("{from:?} is not another hub of this network");
        return Err(refuse_stranger(hub, "stranger", StatusCode::FORBIDDEN, why, None).await);
    }
    // In a network with TLS a peer is who its certificate says: the shared secret alone
    // does not let one hub speak as another.
    if hub.topology.tls().is_some() && peer_hub != Some(from.as_str()) {
        let why = match peer_hub {
            None => format!("a call signed as hub {from:?} came without a client certificate"),
            Some(cert) => format!("a call signed as hub {from:?} came with the certificate of hub {cert:?}"),
        };
        return Err(refuse_stranger(hub, "certificate", StatusCode::FORBIDDEN, why, Some(&from)).await);
    }
    if let Err(why) = hub.peers.replays.admit(&verified) {
        let status = if why == auth::AuthError::Busy {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::UNAUTHORIZED
        };
        return Err(refuse_stranger(hub, "replay", status, why.to_string(), Some(&from)).await);
    }
    Ok(verified)
}

/// Refuses a timestamp from `from` that is implausibly far ahead of this hub's clock (it would
/// win last-writer-wins over every honest write); audited.
pub(crate) async fn check_hlc(hub: &Arc<Hub>, from: &str, what: &str, hlc: u64) -> Result<(), Response<Bytes>> {
    if valley_types::hlc::plausible(hlc) {
        return Ok(());
    }
    let why = format!(
        "{what} from {from} carries a timestamp ({hlc}) more than {}s ahead of this hub's clock: refused",
        valley_types::hlc::AHEAD_OF_WALL_CLOCK_MAX_NANOS / 1_000_000_000
    );
    Err(refuse_stranger(hub, "clock", StatusCode::BAD_REQUEST, why, Some(from)).await)
}

async fn dispatch(
    hub: Arc<Hub>,
    from: String,
    route: &str,
    query: &str,
    parts: &http::request::Parts,
    body: Bytes,
) -> Response<Bytes> {
    match (parts.method.clone(), route) {
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
            let change: ControlChange = match parse_json(&body) {
                Ok(c) => c,
                Err(r) => return r,
            };
            if let Err(r) = check_hlc(&hub, &from, "control record", change.hlc()).await {
                return r;
            }
            match hub.receive_control(&from, change).await {
                Ok(applied) => json(&wire::Outcome {
                    outcome: if applied { "applied" } else { "superseded" }.into(),
                }),
                Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        (http::Method::POST, "deletes") => {
            let messages: Vec<wire::DeleteMessage> = match parse_json(&body) {
                Ok(m) => m,
                Err(r) => return r,
            };
            if let Some(m) = messages.iter().max_by_key(|m| m.hlc)
                && let Err(r) = check_hlc(&hub, &from, "delete", m.hlc).await
            {
                return r;
            }
            let batch = messages.into_iter().map(|m| m.into_remote_delete_from(&from)).collect();
            match hub.catalog.apply_remote_deletes(batch).await {
                Ok(applied) => json(&wire::Outcome {
                    outcome: format!("{applied} applied"),
                }),
                Err(e) => reply(store_status(&e), e.to_string()),
            }
        }
        (http::Method::POST, "batch") => crate::batch::receive::receive_batch(&hub, &from, query, &body).await,
        (http::Method::PUT, "object") if body.is_empty() => {
            receive_object(&hub, &from, query, &parts.headers, None).await
        }
        (http::Method::GET, "stat") => read_through::serve_stat(&hub, &from, query).await,
        (http::Method::POST, "head") => {
            let head: crate::heads::SignedHead = match parse_json(&body) {
                Ok(h) => h,
                Err(r) => return r,
            };
            use crate::heads::HeadRefusal;
            match crate::heads::receive_head(&hub, &from, head).await {
                Ok(outcome) => json(&wire::Outcome {
                    outcome: outcome.into(),
                }),
                Err(HeadRefusal::NotSigning) => reply(
                    StatusCode::CONFLICT,
                    "this hub checks no signed heads (its network runs without TLS)",
                ),
                Err(HeadRefusal::Malformed(why)) => reply(StatusCode::BAD_REQUEST, why),
                Err(HeadRefusal::BadSignature(why)) => {
                    let why = format!("signed audit head from {from} refused: {why}");
                    refuse_stranger(&hub, "head-signature", StatusCode::FORBIDDEN, why, Some(&from)).await
                }
            }
        }
        (http::Method::GET, "audit-chain") => match crate::heads::own_chain(&hub, &from).await {
            Ok(chain) => reply(StatusCode::OK, chain),
            Err(why) => reply(StatusCode::FORBIDDEN, why),
        },
        (http::Method::GET, "residency") => {
            let Some(bucket) = wire::query_param(query, "bucket") else {
                return reply(StatusCode::BAD_REQUEST, "bucket is required");
            };
            let audit = wire::query_param(query, "audit").as_deref() == Some("1");
            let anchor = match wire::query_param(query, "anchor") {
                None => None,
                Some(a) => match crate::residency::evidence::parse_anchor(&a) {
                    Some(anchor) => Some(anchor),
                    None => return reply(StatusCode::BAD_REQUEST, "anchor is SEQ:HASH"),
                },
            };
            if let Err(why) = crate::residency::evidence::may_see(&hub, &bucket, &from).await {
                return reply(StatusCode::FORBIDDEN, why);
            }
            match crate::residency::local_evidence(&hub, &bucket, audit, anchor).await {
                Ok(evidence) => json(&evidence),
                Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        (http::Method::GET, "control-digest") => match crate::repair::control_digest(&hub).await {
            Ok(d) => reply(StatusCode::OK, d),
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        (http::Method::POST, "digest") => {
            let request: wire::DigestRequest = match parse_json(&body) {
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
            let request: wire::GrantUse = match parse_json(&body) {
                Ok(r) => r,
                Err(r) => return r,
            };
            match hub
                .account_grant_use(&request.grant, &request.transfer, request.bytes, request.individuals)
                .await
            {
                Ok(()) => json(&wire::Outcome {
                    outcome: "counted".into(),
                }),
                Err(why) => reply(StatusCode::FORBIDDEN, why),
            }
        }
        (http::Method::POST, "export-use") => {
            let request: wire::ExportUse = match parse_json(&body) {
                Ok(r) => r,
                Err(r) => return r,
            };
            match hub.account_export(&from, request).await {
                Ok(()) => json(&wire::Outcome {
                    outcome: "counted".into(),
                }),
                Err(why) => reply(StatusCode::FORBIDDEN, why),
            }
        }
        (http::Method::POST, "stage") => stage(&hub, &from, query, &parts.headers).await,
        (http::Method::PUT, "object" | "chunk") => reply(
            StatusCode::BAD_REQUEST,
            "an object or chunk body is streamed and checked end to end (x-valley-content-sha256: streaming-checked)",
        ),
        _ => reply(StatusCode::NOT_FOUND, "no such peer call"),
    }
}

// The error is the answer to send; it is built once per refused call, so its size is no cost.
#[allow(clippy::result_large_err)]
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Response<Bytes>> {
    serde_json::from_slice(bytes).map_err(|e| reply(StatusCode::BAD_REQUEST, format!("malformed body: {e}")))
}

/// The transfer kind named in the query (replication when absent).
pub(crate) fn kind_of(query: &str) -> TransferKind {
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
    individuals: Option<&ObjectVersion>,
) -> Result<(), Response<Bytes>> {
    let record = {
        let (b, topology) = (bucket.to_owned(), hub.topology.clone());
        hub.read(move |txn| {
            control::load_policy(txn, &b)?
                .map(|r| crate::hook::held_to_floors(txn, &topology, &b, &r.policy))
                .transpose()
        })
        .await
    };
    let policy = match record {
        Ok(Some(policy)) => policy,
        Ok(None) => {
            return Err(reply(
                StatusCode::NOT_FOUND,
                format!("bucket {bucket:?} is not known here yet"),
            ));
        }
        Err(e) => return Err(reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    };
    // A chunk comes before its version's metadata: it is staged, not applied, and its sender
    // reserved the object's individuals before sending; the version is admitted again whole.
    let individuals = individuals.map_or(Some(0), |v| {
        valley_policy::placement::declared_individuals(&v.headers.user_metadata, &policy)
    });
    let decision = hub
        .judge(kind, bucket, key, &policy, from, &hub.id, bytes, individuals)
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
fn version_call(query: &str, headers: &http::HeaderMap) -> Result<(String, String, ObjectVersion), Response<Bytes>> {
    let (Some(bucket), Some(key)) = (wire::query_param(query, "bucket"), wire::query_param(query, "key")) else {
        return Err(reply(StatusCode::BAD_REQUEST, "bucket and key are required"));
    };
    let header = headers
        .get(wire::HEADER_VERSION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let version = wire::decode_version(header)
        .ok_or_else(|| reply(StatusCode::BAD_REQUEST, "missing or malformed x-valley-version"))?;
    Ok((bucket, key, version))
}

/// A version arriving whole (`body`) or as the commit of its staged chunks (no body).
async fn receive_object(
    hub: &Arc<Hub>,
    from: &str,
    query: &str,
    headers: &http::HeaderMap,
    body: Option<TimedBody<Incoming>>,
) -> Response<Bytes> {
    let (bucket, key, version) = match version_call(query, headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(r) = check_hlc(hub, from, "version", version.hlc).await {
        return r;
    }
    let kind = kind_of(query);
    if let Err(r) = admit(hub, from, kind, &bucket, &key, version.size, Some(&version)).await {
        return r;
    }
    let staged = headers.contains_key(wire::HEADER_STAGED);
    let size = version.size;
    let tag = crate::residency::version_tag(version.hlc, &version.origin);
    // The bytes are taken in under the request; the commit and its audit record run as one task
    // of their own, so a connection cut mid-commit (the request's future dropped) can neither
    // lose the record of a transfer that happened nor record one that did not.
    let commit = if let Some(body) = body {
        if staged {
            return reply(StatusCode::BAD_REQUEST, "a staged commit carries no body");
        }
        let data = match take_body(hub, body, &version).await {
            Ok(data) => data,
            Err(r) => return r,
        };
        let mut version = version;
        version.data = data;
        Commit::Whole(version)
    } else {
        if !staged {
            return reply(
                StatusCode::BAD_REQUEST,
                "a version without a body must be a staged commit",
            );
        }
        if let Err(r) = check_staged(hub, &bucket, &key, &version).await {
            return r;
        }
        Commit::Staged(version)
    };
    let task = {
        let (hub, bucket, key, from) = (hub.clone(), bucket.clone(), key.clone(), from.to_owned());
        tokio::spawn(async move {
            let applied = match commit {
                Commit::Whole(version) => hub.catalog.apply_replica(&bucket, &key, version).await,
                Commit::Staged(version) => hub.catalog.apply_staged_replica(&bucket, &key, version).await,
            };
            if matches!(applied, Ok(ReplicaOutcome::Applied)) {
                hub.auditor
                    .record(
                        hub.auditor
                            .event(
                                AuditKind::Transfer,
                                format!("{} received from {from} {tag}", kind.as_str()),
                            )
                            .with_bucket(&bucket)
                            .with_key(&key)
                            .with_peer(&from)
                            .with_allowed(true)
                            .with_bytes(size),
                    )
                    .await;
            }
            applied
        })
    };
    match task.await {
        Ok(Ok(outcome)) => json(&wire::Outcome {
            outcome: format!("{outcome:?}").to_lowercase(),
        }),
        Ok(Err(e)) => reply(store_status(&e), e.to_string()),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// What a received version's commit takes in.
enum Commit {
    /// Bytes received whole with the call.
    Whole(ObjectVersion),
    /// Chunks staged by earlier calls.
    Staged(ObjectVersion),
}

/// Reads the staged chunks of `version` back through the ETag check; on a mismatch they are
/// dropped (the sender starts over).
async fn check_staged(hub: &Arc<Hub>, bucket: &str, key: &str, version: &ObjectVersion) -> Result<(), Response<Bytes>> {
    let internal = |e: StoreError| reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let stamp = version.stamp();
    let staged = hub.catalog.staged_chunks(bucket, key, stamp).await.map_err(internal)?;
    let total: u64 = staged.iter().map(|(_, b)| b.size).sum();
    if total != version.stored_size() || staged.iter().enumerate().any(|(i, (index, _))| *index as usize != i) {
        return Err(reply(
            StatusCode::CONFLICT,
            format!(
                "{} of {} bytes staged; send the missing chunks",
                total,
                version.stored_size()
            ),
        ));
    }
    let mut check = EtagCheck::for_stored(version);
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
    let expected = version.stored_digest().1;
    if etag != expected {
        let _ = hub.catalog.drop_staged(bucket, key, stamp).await;
        return Err(reply(
            StatusCode::BAD_REQUEST,
            format!("checksum mismatch: staged bytes hash to {etag}, the origin recorded {expected}"),
        ));
    }
    Ok(())
}

/// Starts or resumes a chunked transfer: says which chunks are here already.
async fn stage(hub: &Arc<Hub>, from: &str, query: &str, headers: &http::HeaderMap) -> Response<Bytes> {
    let (bucket, key, version) = match version_call(query, headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(r) = check_hlc(hub, from, "version", version.hlc).await {
        return r;
    }
    if let Err(r) = admit(hub, from, kind_of(query), &bucket, &key, version.size, Some(&version)).await {
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
async fn receive_chunk(
    hub: &Arc<Hub>,
    from: &str,
    query: &str,
    headers: &http::HeaderMap,
    body: TimedBody<Incoming>,
) -> Response<Bytes> {
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
    if let Err(r) = check_hlc(hub, from, "chunk", hlc).await {
        return r;
    }
    let Some(md5) = headers
        .get(wire::HEADER_CHUNK_MD5)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return reply(StatusCode::BAD_REQUEST, "x-valley-chunk-md5 is required");
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if declared > crate::transfer::CHUNK_BYTES_MAX {
        return reply(StatusCode::BAD_REQUEST, "chunk larger than the chunk size");
    }
    if let Err(r) = admit(hub, from, kind_of(query), &bucket, &key, declared, None).await {
        return r;
    }
    let blobs = hub.catalog.blobs().clone();
    let mut writer = match blobs.create().await {
        Ok(w) => w,
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut digest = <md5::Md5 as md5::Digest>::new();
    let mut received = 0u64;
    let mut stream = http_body_util::BodyStream::new(body);
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
async fn take_body(
    hub: &Arc<Hub>,
    body: TimedBody<Incoming>,
    version: &ObjectVersion,
) -> Result<ObjectData, Response<Bytes>> {
    let blobs = hub.catalog.blobs().clone();
    let mut check = EtagCheck::for_stored(version);
    let mut received = 0u64;
    let inline = version.stored_size() <= INLINE_OBJECT_BYTES_MAX;
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
        if received > version.stored_size() {
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
    if failure.is_none()
        && let Err(why) = wire::check_body(version, received, &check.finish())
    {
        failure = Some(reply(StatusCode::BAD_REQUEST, why));
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
