//! Read-through: a hub asked for a version it does not hold (yet) finds it at a hub that does
//! and streams it to the client, without keeping a copy. The policy engine decides the
//! transfer at both ends: the reading hub refuses before asking anyone when the bucket's data
//! may not come to it (the client gets AccessDenied naming the rule), and the holder refuses
//! again rather than trust the reader.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Response, StatusCode};
use valley_audit::AuditKind;
use valley_policy::{Transfer, TransferKind, decide};
use valley_store::keys::{Stamp, origin_tag};
use valley_store::record::ObjectVersion;
use valley_store::{ByteStream, StoreError};

use crate::client::{self, PeerError};
use crate::control;
use crate::hook::{effective_policy, today};
use crate::hub::Hub;
use crate::wire;

/// How long a reader waits for holders to say whether they have a version.
const STAT_TIMEOUT: Duration = Duration::from_secs(5);

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r
}

/// The holder's decision on sending `bucket`'s data (`version`) to `reader`; a refusal is
/// audited. Data crossing a border under a grant is reserved under it first, as a replica's
/// would be (`transfer::decide_and_reserve`): its bytes and individuals against the grant's
/// caps, its individuals against its tenant's exports, once per version however many ranges
/// are read.
async fn release(
    hub: &Arc<Hub>,
    reader: &str,
    bucket: &str,
    key: &str,
    version: &ObjectVersion,
) -> Result<(), Response<Bytes>> {
    let internal = |e: StoreError| reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let policy = hub.effective_policy(bucket).await.map_err(internal)?;
    let grants = hub
        .grants()
        .await
        .map_err(|e| reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let decided = crate::transfer::decide_and_reserve(
        hub,
        &grants,
        TransferKind::ReadThrough,
        bucket,
        key,
        version,
        reader,
        &policy,
    )
    .await;
    let (decision, refusal) = match decided {
        Ok(decided) => decided,
        Err(PeerError::Refused(why)) => return Err(reply(StatusCode::FORBIDDEN, why)),
        Err(e) => return Err(reply(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    };
    if let Some(event) = refusal {
        hub.auditor.record(event).await;
    }
    if !decision.allowed {
        return Err(reply(StatusCode::FORBIDDEN, decision.reason));
    }
    Ok(())
}

fn store_reply(e: &StoreError) -> Response<Bytes> {
    match e {
        StoreError::NoSuchBucket(_)
        | StoreError::NoSuchKey(_)
        | StoreError::NoSuchVersion(_)
        | StoreError::DeleteMarker(_) => reply(StatusCode::NOT_FOUND, e.to_string()),
        _ => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `stat`: the version a read-through would get (its record without data), if held here.
pub(crate) async fn serve_stat(hub: &Arc<Hub>, reader: &str, query: &str) -> Response<Bytes> {
    let (Some(bucket), Some(key)) = (wire::query_param(query, "bucket"), wire::query_param(query, "key")) else {
        return reply(StatusCode::BAD_REQUEST, "bucket and key are required");
    };
    let version_id = wire::query_param(query, "version_id");
    // The latest may be a delete marker: the reader must learn that too (it is the newest).
    let found = match &version_id {
        Some(id) => hub.catalog.object(&bucket, &key, Some(id)).await.map(Some),
        None => hub.catalog.latest_any(&bucket, &key).await,
    };
    let version = match found {
        Ok(Some(v)) => v,
        Ok(None) => return reply(StatusCode::NOT_FOUND, format!("key {key:?} is not here")),
        Err(e) => return store_reply(&e),
    };
    if let Err(r) = release(hub, reader, &bucket, &key, &version).await {
        return r;
    }
    reply(StatusCode::OK, wire::encode_version(&version))
}

/// `read`: bytes `start..start + len` of the version stamped `hlc`/`origin`.
pub(crate) async fn serve_read(
    hub: &Arc<Hub>,
    reader: &str,
    query: &str,
) -> Result<Response<client::Body>, Response<Bytes>> {
    let param = |name| wire::query_param(query, name);
    let number = |name| param(name).and_then(|v| v.parse::<u64>().ok());
    let (Some(bucket), Some(key), Some(hlc), Some(origin), Some(start), Some(len)) = (
        param("bucket"),
        param("key"),
        number("hlc"),
        param("origin"),
        number("start"),
        number("len"),
    ) else {
        return Err(reply(
            StatusCode::BAD_REQUEST,
            "bucket, key, hlc, origin, start and len are required",
        ));
    };
    let stamp = Stamp {
        hlc,
        origin_tag: origin_tag(&origin),
    };
    let version = match hub.catalog.object_at(&bucket, &key, stamp).await {
        Ok(Some(v)) => v,
        Ok(None) => return Err(reply(StatusCode::NOT_FOUND, "that version is not here")),
        Err(e) => return Err(store_reply(&e)),
    };
    if start.checked_add(len).is_none_or(|end| end > version.stored_size()) {
        return Err(reply(StatusCode::RANGE_NOT_SATISFIABLE, "range outside the version"));
    }
    release(hub, reader, &bucket, &key, &version).await?;
    let stream = hub
        .catalog
        .read(&bucket, &key, &version, start, len)
        .await
        .map_err(|e| store_reply(&e))?;
    hub.auditor
        .record(
            hub.auditor
                .event(AuditKind::Transfer, format!("read-through to {reader}"))
                .with_bucket(&bucket)
                .with_key(&key)
                .with_peer(reader)
                .with_allowed(true)
                .with_bytes(len),
        )
        .await;
    let mut response = Response::new(client::streaming(stream));
    response.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from_str(&len.to_string())
            .map_err(|e| reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
    );
    Ok(response)
}

impl Hub {
    /// Finds the newest copy of `bucket/key` (or of `version_id`) at the hubs that may hold the
    /// bucket, nearest first. `Err` names the rule when the policy forbids reading it here.
    pub async fn find_elsewhere(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<(String, ObjectVersion)>, String> {
        let (topology, id, b) = (self.topology.clone(), self.id.clone(), bucket.to_owned());
        let (policy, grants, lost) = self
            .read(move |txn| {
                Ok((
                    effective_policy(txn, &topology, &id, &b)?,
                    control::grants(txn)?,
                    control::lost_hubs(txn)?,
                ))
            })
            .await
            .map_err(|e| e.to_string())?;
        let tenant = self.owner_of(bucket);
        let mut holders: Vec<&valley_policy::Hub> = self
            .topology
            .hubs()
            .filter(|h| h.id != self.id && !lost.contains(&h.id) && policy.allows(h))
            .collect();
        holders.sort_by(|a, b| {
            let rtt = |h: &valley_policy::Hub| self.topology.link(&self.id, &h.id).map_or(f64::MAX, |l| l.rtt_ms);
            rtt(a).total_cmp(&rtt(b)).then_with(|| a.id.cmp(&b.id))
        });
        let mut refusal = None;
        let mut allowed = Vec::new();
        for holder in holders {
            let decision = decide(
                &self.topology,
                &grants,
                &Transfer {
                    kind: TransferKind::ReadThrough,
                    bucket,
                    tenant: &tenant,
                    policy: &policy,
                    from: &holder.id,
                    to: &self.id,
                    bytes: 0,
                    // Which holders may serve is judged here; the holder judges the version
                    // itself, with what it declares, before it sends a byte.
                    individuals: policy.individuals_per_object.or(Some(0)),
                    exported: &valley_policy::rules::ExportedVolumes::new(),
                    today: today(),
                },
            );
            if decision.allowed {
                allowed.push(holder.id.clone());
            } else if refusal.is_none() {
                refusal = Some(decision);
            }
        }
        if allowed.is_empty() {
            let Some(decision) = refusal else { return Ok(None) };
            self.auditor
                .record(
                    self.auditor
                        .event(
                            AuditKind::RefusedRequest,
                            format!("read-through refused: {}", decision.reason),
                        )
                        .with_bucket(bucket)
                        .with_key(key)
                        .with_allowed(false)
                        .with_rule(format!("{:?}", decision.rule)),
                )
                .await;
            return Err(decision.reason);
        }
        let mut params = vec![("bucket", bucket), ("key", key)];
        if let Some(v) = version_id {
            params.push(("version_id", v));
        }
        let route = wire::path("stat", &params);
        let route = route.strip_prefix(wire::PREFIX).unwrap_or(&route).to_owned();
        let answers = futures::future::join_all(allowed.iter().map(|holder| {
            let route = route.clone();
            async move {
                let answer = tokio::time::timeout(STAT_TIMEOUT, self.peers.get(holder, &route)).await;
                (holder.clone(), answer)
            }
        }))
        .await;
        let mut newest: Option<(String, ObjectVersion)> = None;
        for (holder, answer) in answers {
            let Ok(Ok(body)) = answer else { continue };
            let Some(version) = std::str::from_utf8(&body).ok().and_then(wire::decode_version) else {
                continue;
            };
            if newest.as_ref().is_none_or(|(_, v)| version.stamp() > v.stamp()) {
                newest = Some((holder, version));
            }
        }
        // A copy elsewhere that this hub knows to be deleted (a tombstone whose delete has not
        // reached the holder yet) must not come back through a read.
        if let Some((_, version)) = &newest {
            let gone = self
                .catalog
                .holds_or_superseded(bucket, key, version.stamp(), version.version_id.is_some())
                .await
                .map_err(|e| e.to_string())?;
            if gone {
                return Ok(None);
            }
        }
        Ok(newest)
    }

    /// A version newer than `local` (the latest held here) that another hub holds, when this
    /// hub has heard of one: a versioned write placed elsewhere.
    pub async fn newer_elsewhere(
        self: &Arc<Self>,
        bucket: &str,
        key: &str,
        local: &ObjectVersion,
    ) -> Result<Option<(String, ObjectVersion)>, String> {
        let hint = self.catalog.newer_hint(bucket, key).await.map_err(|e| e.to_string())?;
        if hint.is_none_or(|h| h <= local.stamp()) {
            return Ok(None);
        }
        Ok(self
            .find_elsewhere(bucket, key, None)
            .await?
            .filter(|(_, remote)| remote.stamp() > local.stamp()))
    }

    /// Streams bytes `start..start + len` of `version` from `holder` (found by
    /// [`Hub::find_elsewhere`]).
    pub async fn read_elsewhere(
        self: &Arc<Self>,
        holder: &str,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, String> {
        let endpoint = self.peers.endpoint_of(holder).map_err(|e| e.to_string())?;
        let (hlc, start_text, len_text) = (version.hlc.to_string(), start.to_string(), len.to_string());
        let path = wire::path(
            "read",
            &[
                ("bucket", bucket),
                ("key", key),
                ("hlc", &hlc),
                ("origin", &version.origin),
                ("start", &start_text),
                ("len", &len_text),
            ],
        );
        let response = tokio::time::timeout(
            STAT_TIMEOUT * 4,
            self.peers
                .client
                .open(http::Method::GET, &endpoint, &path, &[], client::Payload::empty()),
        )
        .await
        .map_err(|_| format!("hub {holder} did not answer"))?
        .map_err(|e: PeerError| e.to_string())?;
        self.auditor
            .record(
                self.auditor
                    .event(AuditKind::Transfer, format!("read-through from {holder}"))
                    .with_bucket(bucket)
                    .with_key(key)
                    .with_peer(holder)
                    .with_allowed(true)
                    .with_bytes(len),
            )
            .await;
        let stream = http_body_util::BodyStream::new(response.into_body()).filter_map(|frame| async move {
            match frame {
                Ok(f) => f.into_data().ok().map(Ok),
                Err(e) => Some(Err(std::io::Error::other(e))),
            }
        });
        Ok(Box::pin(stream))
    }
}
