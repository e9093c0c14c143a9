//! Sending one object version to a peer: the policy decision at send time, the bytes (whole
//! for small versions; in checksummed chunks that resume after a cut for large ones), the
//! per-link bandwidth limit, grant usage and the audit record. Used by the outbox workers
//! (replication), anti-entropy (repair) and tiering.
//!
//! Chunks of one object travel on several connections at once: over a long, lossy link one
//! TCP stream stalls at every loss, and a few streams in parallel keep the link busy.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use md5::{Digest, Md5};
use valley_audit::AuditKind;
use valley_policy::TransferKind;
use valley_policy::placement::declared_individuals;
use valley_store::ByteStream;
use valley_store::keys::{Stamp, origin_tag};
use valley_store::record::ObjectVersion;

use crate::auditor::Auditor;
use crate::client::{self, PeerError};
use crate::hub::Hub;
use crate::wire;

/// Smallest chunk: versions larger than this move in chunks.
pub const CHUNK_BYTES_MIN: u64 = 1024 * 1024;
/// Largest chunk a receiver takes.
pub const CHUNK_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Chunks of one version in flight at once (each also needs one of the link's stream slots).
const CHUNKS_IN_FLIGHT: usize = 16;
/// Chunk streams open at once on a link the topology does not describe.
pub const LINK_STREAMS_DEFAULT: usize = 48;
/// Bounds on the streams of any link.
const LINK_STREAMS_MIN: usize = 8;
const LINK_STREAMS_MAX: usize = 160;

/// Chunk streams to keep open at once on `link`, over all versions: enough parallel TCP
/// streams to fill it. One TCP stream over a lossy link carries about
/// `MSS / RTT * 1.22 / sqrt(loss)` (Mathis et al., 1997) whatever the link's capacity — some
/// 62 KB/s at 200 ms and 2 % loss — so a link declared with capacity `C` needs about `C` over
/// that, with half again for stalls that overlap. A loss-free link needs few.
#[must_use]
pub fn link_streams(link: Option<&valley_policy::Link>) -> usize {
    let Some(link) = link else { return LINK_STREAMS_DEFAULT };
    let capacity = link
        .replication_limit_mbit
        .unwrap_or(link.bandwidth_mbit)
        .min(link.bandwidth_mbit)
        * 125_000.0;
    if link.loss <= 0.0 {
        return LINK_STREAMS_MIN;
    }
    let rtt = (link.rtt_ms / 1000.0).max(0.001);
    let per_stream = 1448.0 / rtt * 1.22 / link.loss.sqrt();
    let wanted = (1.5 * capacity / per_stream).ceil();
    (wanted as usize).clamp(LINK_STREAMS_MIN, LINK_STREAMS_MAX)
}

/// The chunk size for a version of `size` bytes: small chunks (many parallel streams, little
/// lost to a cut) until a version would need more than about a thousand of them.
#[must_use]
pub fn chunk_bytes(size: u64) -> u64 {
    (size / 1024)
        .next_power_of_two()
        .clamp(CHUNK_BYTES_MIN, CHUNK_BYTES_MAX)
}
/// Attempts at one chunk within one transfer before the transfer is retried later as a whole
/// (chunks already staged are not sent again).
const CHUNK_ATTEMPTS: usize = 3;

/// A per-link bandwidth limit shared by every transfer to one peer: each piece of a body
/// reserves its share of the link's time before it is sent.
pub struct RateLimit {
    bytes_per_sec: f64,
    next_free: Mutex<Instant>,
}

/// Reservations further ahead than this are capped, so a limit raised or idle time does not
/// become a burst larger than this much link time.
const RATE_BURST: Duration = Duration::from_millis(50);

impl RateLimit {
    #[must_use]
    pub fn new(bytes_per_sec: f64) -> Self {
        Self {
            bytes_per_sec,
            next_free: Mutex::new(Instant::now()),
        }
    }

    /// Waits until `bytes` may be sent.
    pub async fn take(&self, bytes: usize) {
        let start = {
            let Ok(mut next) = self.next_free.lock() else { return };
            let now = Instant::now();
            let start = (*next).max(now.checked_sub(RATE_BURST).unwrap_or(now));
            *next = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec);
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }
}

/// `stream`, paced by `limit` when there is one.
pub fn throttle(stream: ByteStream, limit: Option<Arc<RateLimit>>) -> ByteStream {
    let Some(limit) = limit else { return stream };
    Box::pin(stream.then(move |item| {
        let limit = limit.clone();
        async move {
            if let Ok(bytes) = &item {
                limit.take(bytes.len()).await;
            }
            item
        }
    }))
}

/// How to reach one peer: its endpoint, its link's bandwidth limit and stream slots.
struct Route {
    peer: String,
    endpoint: String,
    limit: Option<Arc<RateLimit>>,
    slots: Arc<tokio::sync::Semaphore>,
}

/// What became of a version sent to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The peer holds it now.
    Delivered,
    /// Nothing to send: the version is gone here, or the peer already had it.
    Nothing,
    /// The policy engine refused (here or at the peer): retrying will not help.
    Refused(String),
}

/// Sends the version of `bucket/key` stamped `(hlc, origin)` to `peer`, if this hub still has
/// it and the policy allows the transfer.
pub async fn send_version(
    hub: &Arc<Hub>,
    peer: &str,
    bucket: &str,
    key: &str,
    hlc: u64,
    origin: &str,
    kind: TransferKind,
) -> Result<Sent, PeerError> {
    let local = |e: valley_store::StoreError| PeerError::Unreachable(format!("local store: {e}"));
    let stamp = Stamp {
        hlc,
        origin_tag: origin_tag(origin),
    };
    let Some(version) = hub.catalog.object_at(bucket, key, stamp).await.map_err(local)? else {
        // Superseded or deleted since: nothing left to send.
        return Ok(Sent::Nothing);
    };
    send_known_version(hub, peer, bucket, key, &version, kind).await
}

/// Sends `version` of `bucket/key`, as given (it need not be committed here yet: a synchronous
/// copy goes out before the local commit), if the policy allows the transfer; the decision,
/// grant accounting and audit record are those of [`send_version`].
pub async fn send_known_version(
    hub: &Arc<Hub>,
    peer: &str,
    bucket: &str,
    key: &str,
    version: &ObjectVersion,
    kind: TransferKind,
) -> Result<Sent, PeerError> {
    let local = |e: valley_store::StoreError| PeerError::Unreachable(format!("local store: {e}"));
    let endpoint = hub.peers.endpoint_of(peer)?;
    let policy = hub.effective_policy(bucket).await.map_err(local)?;
    let grants = hub.read(crate::control::grants).await.map_err(local)?;
    let (decision, refusal) = decide_and_reserve(hub, &grants, kind, bucket, key, version, peer, &policy).await?;
    if let Some(event) = refusal {
        hub.auditor.record(event).await;
    }
    if !decision.allowed {
        return Ok(Sent::Refused(decision.reason));
    }
    let route = Route {
        peer: peer.to_owned(),
        endpoint,
        limit: hub.links.rate_limit(peer),
        slots: hub.links.chunk_slots(peer),
    };
    let sent = if version.stored_size() > CHUNK_BYTES_MIN {
        send_chunked(hub, &route, bucket, key, version, kind).await?
    } else {
        send_whole(hub, &route, bucket, key, version, kind).await?;
        Sent::Delivered
    };
    if sent != Sent::Delivered {
        return Ok(sent);
    }
    hub.moved.delivered(bucket, peer, version.size);
    hub.auditor
        .record(transfer_event(&hub.auditor, kind, peer, bucket, key, version, decision))
        .await;
    Ok(Sent::Delivered)
}

/// Decides sending `version` of `bucket/key` to `peer` under `grants`, and reserves its
/// volumes under the grant that allows it. A grant its accountants refuse (a cap or a rule
/// pack's threshold reached, which only they know) is set aside and the decision taken again
/// without it, so a standard contract recorded beside an exhausted exemption carries what the
/// exemption no longer can. Answers the decision and the audit record of a refusal.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn decide_and_reserve(
    hub: &Arc<Hub>,
    grants: &[valley_policy::Grant],
    kind: TransferKind,
    bucket: &str,
    key: &str,
    version: &ObjectVersion,
    peer: &str,
    policy: &valley_policy::PlacementPolicy,
) -> Result<(valley_policy::Decision, Option<valley_audit::AuditEvent>), PeerError> {
    let individuals = declared_individuals(&version.headers.user_metadata, policy);
    let mut candidates = std::borrow::Cow::Borrowed(grants);
    let mut set_aside = Vec::new();
    loop {
        let (mut decision, refusal) = hub.decide_with(
            &candidates,
            kind,
            bucket,
            key,
            policy,
            &hub.id,
            peer,
            version.size,
            individuals,
        );
        let Some(grant_id) = decision.grant.clone() else {
            if !decision.allowed && !set_aside.is_empty() {
                decision.reason = format!("{}; set aside: {}", decision.reason, set_aside.join("; "));
            }
            return Ok((decision, refusal));
        };
        // The decision names one of the candidates; it is the one reserved under.
        let Some(grant) = candidates.iter().find(|g| g.id == grant_id).cloned() else {
            return Err(PeerError::Refused(format!("grant {grant_id} is unknown")));
        };
        match reserve_grant(hub, &grant, bucket, key, version, peer, kind, policy).await? {
            None => return Ok((decision, None)),
            Some(why) => {
                set_aside.push(why);
                candidates.to_mut().retain(|g| g.id != grant.id);
            }
        }
    }
}

/// Reserves `version`'s bytes and individuals under `grant_id`, and its individuals against
/// its tenant's yearly exports. A grant with volume caps is accounted at one hub for the whole
/// network (the hub that recorded it), a tenant's exports out of a jurisdiction at another
/// (its exports accountant), and both are reserved there before a byte is sent: a cap or a
/// rule pack's threshold holds however many hubs send, and a refusal sends nothing. Answers
/// the refusal (audited here), if any.
#[allow(clippy::too_many_arguments)]
async fn reserve_grant(
    hub: &Arc<Hub>,
    grant: &valley_policy::Grant,
    bucket: &str,
    key: &str,
    version: &ObjectVersion,
    peer: &str,
    kind: TransferKind,
    policy: &valley_policy::PlacementPolicy,
) -> Result<Option<String>, PeerError> {
    let individuals = declared_individuals(&version.headers.user_metadata, policy);
    let reserved = async {
        // Every crossing under a grant counts towards its tenant's yearly exports (the law's
        // thresholds count all of an exporter's flows); an undeclared object adds no
        // individuals, and was already refused every basis that counts them.
        hub.reserve_export(
            grant,
            &policy.classifications,
            &export_id(bucket, key, version),
            individuals.unwrap_or(0),
            version.size,
        )
        .await?;
        hub.reserve_grant(
            &grant.id,
            &transfer_id(bucket, key, version, peer),
            version.size,
            individuals,
        )
        .await
    };
    match reserved.await {
        Ok(()) => Ok(None),
        Err(PeerError::Refused(why)) => {
            hub.auditor
                .record(
                    hub.auditor
                        .event(AuditKind::PolicyDecision, format!("{} refused: {why}", kind.as_str()))
                        .with_bucket(bucket)
                        .with_key(key)
                        .with_peer(peer)
                        .with_grant(grant.id.clone())
                        .with_allowed(false)
                        .with_bytes(version.size),
                )
                .await;
            Ok(Some(why))
        }
        Err(e) => Err(e),
    }
}

/// The audit record of `version` sent to `peer` as `decision` allowed.
pub(crate) fn transfer_event(
    auditor: &Auditor,
    kind: TransferKind,
    peer: &str,
    bucket: &str,
    key: &str,
    version: &ObjectVersion,
    decision: valley_policy::Decision,
) -> valley_audit::AuditEvent {
    let mut event = auditor
        .event(
            AuditKind::Transfer,
            format!(
                "{} to {peer}: {} {}",
                past_tense(kind),
                decision.reason,
                crate::residency::version_tag(version.hlc, &version.origin)
            ),
        )
        .with_bucket(bucket)
        .with_key(key)
        .with_peer(peer)
        .with_allowed(true)
        .with_rule(format!("{:?}", decision.rule))
        .with_bytes(version.size);
    if let Some(g) = decision.grant {
        event = event.with_grant(g);
    }
    event
}

fn past_tense(kind: TransferKind) -> &'static str {
    match kind {
        TransferKind::Tiering => "tiered",
        TransferKind::Migration => "migrated",
        _ => "replicated",
    }
}

fn object_call_path(bucket: &str, key: &str, kind: TransferKind) -> String {
    wire::path("object", &[("bucket", bucket), ("key", key), ("kind", kind.as_str())])
}

async fn send_whole(
    hub: &Arc<Hub>,
    route: &Route,
    bucket: &str,
    key: &str,
    version: &ObjectVersion,
    kind: TransferKind,
) -> Result<(), PeerError> {
    let local = |e: valley_store::StoreError| PeerError::Unreachable(format!("local store: {e}"));
    let stream = hub
        .catalog
        .read(bucket, key, version, 0, version.stored_size())
        .await
        .map_err(local)?;
    hub.peers
        .client
        .call(
            http::Method::PUT,
            &route.endpoint,
            &object_call_path(bucket, key, kind),
            &[
                (wire::HEADER_VERSION, wire::encode_version(version)),
                ("content-length", version.stored_size().to_string()),
            ],
            client::Payload::Checked(throttle(stream, route.limit.clone())),
            version.stored_size(),
        )
        .await?;
    Ok(())
}

async fn send_chunked(
    hub: &Arc<Hub>,
    route: &Route,
    bucket: &str,
    key: &str,
    version: &ObjectVersion,
    kind: TransferKind,
) -> Result<Sent, PeerError> {
    let header = wire::encode_version(version);
    let state: wire::StageState = {
        let path = wire::path("stage", &[("bucket", bucket), ("key", key), ("kind", kind.as_str())]);
        let body = hub
            .peers
            .client
            .call(
                http::Method::POST,
                &route.endpoint,
                &path,
                &[(wire::HEADER_VERSION, header.clone())],
                client::Payload::empty(),
                0,
            )
            .await?;
        serde_json::from_slice(&body).map_err(|e| PeerError::Failed {
            status: 200,
            message: format!("malformed stage answer: {e}"),
        })?
    };
    let id = transfer_id(bucket, key, version, &route.peer);
    if state.done {
        // The peer holds it. If our own commit call went out and its answer was lost (a cut),
        // the transfer happened: it is recorded now, once. Otherwise another hub delivered it.
        return Ok(if hub.links.confirm_unanswered_commit(&id) {
            Sent::Delivered
        } else {
            Sent::Nothing
        });
    }
    let chunks = version.stored_size().div_ceil(chunk_bytes(version.stored_size()));
    let missing: Vec<u32> = (0..chunks)
        .filter_map(|i| u32::try_from(i).ok())
        .filter(|i| !state.staged.contains(i))
        .collect();
    let mut pending = missing.into_iter();
    let mut in_flight = FuturesUnordered::new();
    let mut failure = None;
    loop {
        while in_flight.len() < CHUNKS_IN_FLIGHT && failure.is_none() {
            let Some(index) = pending.next() else { break };
            in_flight.push(send_chunk(hub, route, bucket, key, version, index, kind));
        }
        match in_flight.next().await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                failure.get_or_insert(e);
            }
            None => break,
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let committed = hub
        .peers
        .client
        .call(
            http::Method::PUT,
            &route.endpoint,
            &object_call_path(bucket, key, kind),
            &[(wire::HEADER_VERSION, header), (wire::HEADER_STAGED, "1".to_owned())],
            client::Payload::empty(),
            // The receiver reads the staged chunks back to check the ETag: allow for that.
            version.stored_size() / 8,
        )
        .await;
    match committed {
        Ok(_) => Ok(Sent::Delivered),
        // No answer: the commit may have happened; the next attempt finds out (`confirm_…`).
        Err(e @ PeerError::Unreachable(_)) => {
            hub.links.note_unanswered_commit(id);
            Err(e)
        }
        Err(e) => Err(e),
    }
}

async fn send_chunk(
    hub: &Arc<Hub>,
    route: &Route,
    bucket: &str,
    key: &str,
    version: &ObjectVersion,
    index: u32,
    kind: TransferKind,
) -> Result<(), PeerError> {
    let local = |e: valley_store::StoreError| PeerError::Unreachable(format!("local store: {e}"));
    let chunk = chunk_bytes(version.stored_size());
    let offset = u64::from(index) * chunk;
    let len = chunk.min(version.stored_size() - offset);
    // A slot of the link's stream budget, held for the whole chunk (retries included).
    let _slot = route.slots.clone().acquire_owned().await;
    // The chunk's MD5 goes ahead of it, so the receiver refuses a damaged chunk at once; the
    // second read comes from the page cache.
    let mut md5 = Md5::new();
    let mut stream = hub
        .catalog
        .read(bucket, key, version, offset, len)
        .await
        .map_err(local)?;
    while let Some(piece) = stream.next().await {
        md5.update(&piece.map_err(|e| PeerError::Unreachable(format!("local read: {e}")))?);
    }
    let digest = hex::encode(md5.finalize());
    let (hlc, index_text) = (version.hlc.to_string(), index.to_string());
    let path = wire::path(
        "chunk",
        &[
            ("bucket", bucket),
            ("key", key),
            ("hlc", &hlc),
            ("origin", &version.origin),
            ("index", &index_text),
            ("kind", kind.as_str()),
        ],
    );
    let mut last = None;
    for _ in 0..CHUNK_ATTEMPTS {
        let stream = hub
            .catalog
            .read(bucket, key, version, offset, len)
            .await
            .map_err(local)?;
        let result = hub
            .peers
            .client
            .call(
                http::Method::PUT,
                &route.endpoint,
                &path,
                &[
                    (wire::HEADER_CHUNK_MD5, digest.clone()),
                    ("content-length", len.to_string()),
                ],
                client::Payload::Checked(throttle(stream, route.limit.clone())),
                len,
            )
            .await;
        match result {
            Ok(_) => return Ok(()),
            Err(PeerError::Refused(why)) => return Err(PeerError::Refused(why)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| PeerError::Unreachable("chunk not sent".into())))
}

/// Names one transfer of one version to one peer, so a retried transfer reserves grant volume
/// once (and a copy to a second peer, which crosses the border again, is counted again).
fn transfer_id(bucket: &str, key: &str, version: &ObjectVersion, peer: &str) -> String {
    format!("{bucket}/{key}@{}@{}->{peer}", version.hlc, version.origin)
}

/// Names one version, so its individuals count once against its tenant's exports however many
/// hubs abroad it goes to: they are the same people.
pub(crate) fn export_id(bucket: &str, key: &str, version: &ObjectVersion) -> String {
    format!("{bucket}/{key}@{}@{}", version.hlc, version.origin)
}
