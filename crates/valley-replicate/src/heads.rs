//! Signed audit chain heads: each hub signs the newest record of its audit chain with its
//! certificate key and sends it to every peer, which checks the signature against the network
//! CA and records the head in its own chain (a `peer-head` record). A hub cannot then rewrite
//! or shorten its chain unseen: `valley audit verify` at any peer fetches the hub's chain and
//! checks that it still holds every head that hub signed ([`check_peer_chains`]); a head that
//! goes backwards or forks is recorded as such the moment it arrives.
//!
//! Heads are signed only on networks with TLS (the certificates carry the keys).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use valley_audit::{AuditKind, ChainHash, Filter, Head, VerifyReport};

use crate::hook::now_unix_ms;
use crate::hub::{Hub, HubError};

/// The version of [`SignedHead`] and of the signed message.
pub const HEAD_VERSION: u32 = 1;
/// Fewest milliseconds between two recorded heads of one peer (more frequent ones are checked,
/// answered, and not recorded), so a peer cannot grow this hub's chain quickly.
const RECORD_MIN_INTERVAL_MS: u64 = 10_000;
/// Largest audit chain one hub sends a peer to check.
pub const CHAIN_BYTES_MAX: u64 = 256 << 20;

/// A hub's signed head, as sent to its peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedHead {
    pub v: u32,
    pub hub: String,
    pub seq: u64,
    pub hash: ChainHash,
    pub time_unix_ms: u64,
    /// TLS signature scheme code point (Ed25519: 0x0807).
    pub scheme: u16,
    /// Base64 of the signature over [`SignedHead::message`].
    pub signature: String,
    /// Base64 of the DER certificate whose key signed.
    pub cert: String,
}

impl SignedHead {
    /// The exact bytes signed.
    #[must_use]
    pub fn message(hub: &str, seq: u64, hash: &ChainHash, time_unix_ms: u64) -> Vec<u8> {
        format!("valley-audit-head/{HEAD_VERSION}\n{hub}\n{seq}\n{hash}\n{time_unix_ms}").into_bytes()
    }

    fn signed(&self) -> Result<valley_tls::Signed, String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(valley_tls::Signed {
            scheme: self.scheme,
            signature: b64.decode(&self.signature).map_err(|e| format!("signature: {e}"))?,
            cert_der: b64.decode(&self.cert).map_err(|e| format!("certificate: {e}"))?,
        })
    }
}

/// The detail of a `peer-head` record: the head and its signature; the certificate itself only
/// when it differs from the one last recorded for that peer (by fingerprint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedHead {
    pub v: u32,
    pub seq: u64,
    pub hash: ChainHash,
    pub time_unix_ms: u64,
    pub scheme: u16,
    pub signature: String,
    pub cert_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// Set on a head that contradicts one recorded before (a shorter or forked chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contradicts: Option<String>,
}

/// What this hub last recorded of a peer's head.
#[derive(Debug, Clone)]
struct Known {
    head: Head,
    recorded_unix_ms: u64,
    cert_sha256: String,
}

/// The signing and checking side of one hub.
pub struct HeadSigning {
    signer: valley_tls::HubSigner,
    check: valley_tls::HubSignatureCheck,
    known: Mutex<HashMap<String, Known>>,
}

impl HeadSigning {
    #[must_use]
    pub fn new(signer: valley_tls::HubSigner, check: valley_tls::HubSignatureCheck) -> Self {
        Self {
            signer,
            check,
            known: Mutex::new(HashMap::new()),
        }
    }
}

/// Signs this hub's head now.
pub fn sign_head(hub: &Hub, signing: &HeadSigning) -> Result<SignedHead, String> {
    let head = hub.auditor.head();
    let time_unix_ms = now_unix_ms();
    let message = SignedHead::message(&hub.id, head.seq, &head.hash, time_unix_ms);
    let signed = signing.signer.sign(&message).map_err(|e| e.to_string())?;
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(SignedHead {
        v: HEAD_VERSION,
        hub: hub.id.clone(),
        seq: head.seq,
        hash: head.hash,
        time_unix_ms,
        scheme: signed.scheme,
        signature: b64.encode(&signed.signature),
        cert: b64.encode(&signed.cert_der),
    })
}

/// Sends this hub's signed head to every peer every `interval`.
pub fn start(hub: &Arc<Hub>, interval: Duration) {
    let hub = hub.clone();
    tokio::spawn(async move {
        if let Err(e) = load_known(&hub).await {
            tracing::warn!(error = %e, "reading the peer heads recorded before failed");
        }
        loop {
            tokio::time::sleep(interval).await;
            let Some(signing) = hub.auditor.head_signing() else {
                return;
            };
            let head = match sign_head(&hub, signing) {
                Ok(head) => head,
                Err(e) => {
                    tracing::warn!(error = %e, "signing the audit head failed");
                    continue;
                }
            };
            for peer in hub.peers.ids() {
                if let Err(e) = hub.peers.post_json::<crate::wire::Outcome>(&peer, "head", &head).await {
                    tracing::debug!(peer, error = %e, "sending the signed audit head failed");
                }
            }
        }
    });
}

/// Fills the memory of recorded heads from this hub's own chain (after a restart).
async fn load_known(hub: &Arc<Hub>) -> Result<(), HubError> {
    let records = read_recorded(hub).await?;
    let Some(signing) = hub.auditor.head_signing() else {
        return Ok(());
    };
    let mut known = signing.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for (peer, recorded, time_unix_ms) in records {
        if recorded.contradicts.is_some() {
            continue;
        }
        known.insert(
            peer,
            Known {
                head: Head {
                    seq: recorded.seq,
                    hash: recorded.hash,
                },
                recorded_unix_ms: time_unix_ms,
                cert_sha256: recorded.cert_sha256,
            },
        );
    }
    Ok(())
}

/// Every `peer-head` record of this hub's chain: (peer, head, record time), oldest first.
async fn read_recorded(hub: &Arc<Hub>) -> Result<Vec<(String, RecordedHead, u64)>, HubError> {
    let path = hub.auditor.path().to_owned();
    let records = tokio::task::spawn_blocking(move || {
        valley_audit::read_filtered(
            &path,
            &Filter {
                kind: Some(AuditKind::PeerHead),
                ..Filter::default()
            },
        )
    })
    .await
    .map_err(|e| HubError::Invalid(e.to_string()))??;
    Ok(records
        .into_iter()
        .filter_map(|r| {
            let recorded: RecordedHead = serde_json::from_str(&r.event.detail).ok()?;
            Some((r.event.peer?, recorded, r.time_unix_ms))
        })
        .collect())
}

/// Why a signed head from `from` was refused (an unauthenticated head is never recorded).
#[derive(Debug)]
pub enum HeadRefusal {
    NotSigning,
    Malformed(String),
    BadSignature(String),
}

/// Takes a signed head from peer `from`: checks it, and records it when it is new (at most one
/// per peer per [`RECORD_MIN_INTERVAL_MS`]) or contradicts the last one recorded (always).
pub async fn receive_head(hub: &Arc<Hub>, from: &str, head: SignedHead) -> Result<&'static str, HeadRefusal> {
    let Some(signing) = hub.auditor.head_signing() else {
        return Err(HeadRefusal::NotSigning);
    };
    if head.v != HEAD_VERSION || head.hub != from {
        return Err(HeadRefusal::Malformed(format!(
            "a head of hub {:?} (version {}) sent by {from}",
            head.hub, head.v
        )));
    }
    let signed = head.signed().map_err(HeadRefusal::Malformed)?;
    let message = SignedHead::message(&head.hub, head.seq, &head.hash, head.time_unix_ms);
    signing
        .check
        .verify(from, &message, &signed)
        .map_err(HeadRefusal::BadSignature)?;
    let cert_sha256 = valley_tls::fingerprint_sha256(&signed.cert_der);
    let now = now_unix_ms();
    let (contradicts, new_cert) = {
        let known = signing.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match known.get(from) {
            None => (None, true),
            Some(k) if head.seq < k.head.seq => (
                Some(format!(
                    "{from} signed a head at seq {} after one at seq {} ({}): its chain was shortened",
                    head.seq, k.head.seq, k.head.hash
                )),
                k.cert_sha256 != cert_sha256,
            ),
            Some(k) if head.seq == k.head.seq && head.hash != k.head.hash => (
                Some(format!(
                    "{from} signed two heads at seq {}: {} and {}: its chain was rewritten",
                    head.seq, k.head.hash, head.hash
                )),
                k.cert_sha256 != cert_sha256,
            ),
            Some(k) if head.seq == k.head.seq => return Ok("known"),
            Some(k) if now.saturating_sub(k.recorded_unix_ms) < RECORD_MIN_INTERVAL_MS => return Ok("noted"),
            Some(k) => (None, k.cert_sha256 != cert_sha256),
        }
    };
    let recorded = RecordedHead {
        v: HEAD_VERSION,
        seq: head.seq,
        hash: head.hash,
        time_unix_ms: head.time_unix_ms,
        scheme: head.scheme,
        signature: head.signature.clone(),
        cert: new_cert.then(|| head.cert.clone()),
        cert_sha256: cert_sha256.clone(),
        contradicts: contradicts.clone(),
    };
    let detail = serde_json::to_string(&recorded).unwrap_or_default();
    hub.auditor
        .record(
            hub.auditor
                .event(AuditKind::PeerHead, detail)
                .with_peer(from)
                .with_allowed(contradicts.is_none()),
        )
        .await;
    if let Some(why) = &contradicts {
        tracing::error!(peer = from, "{why}");
    }
    let mut known = signing.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    known.insert(
        from.to_owned(),
        Known {
            head: Head {
                seq: head.seq,
                hash: head.hash,
            },
            recorded_unix_ms: now,
            cert_sha256,
        },
    );
    Ok(if contradicts.is_some() {
        "contradiction recorded"
    } else {
        "recorded"
    })
}

/// The check of one peer's chain against the heads it signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerChainCheck {
    pub hub: String,
    /// Signed heads of this peer recorded here.
    pub heads: u64,
    /// The newest of them.
    pub latest_seq: u64,
    /// `None`: not checked (the peer did not answer).
    pub ok: Option<bool>,
    pub detail: String,
}

/// Fetches each peer's chain whose heads are recorded here and checks that it still holds all
/// of them (and that no recorded head contradicted an earlier one).
pub async fn check_peer_chains(hub: &Arc<Hub>) -> Result<Vec<PeerChainCheck>, HubError> {
    let mut by_peer: BTreeMap<String, (Vec<Head>, Option<String>)> = BTreeMap::new();
    for (peer, recorded, _) in read_recorded(hub).await? {
        let entry = by_peer.entry(peer).or_default();
        if let Some(why) = recorded.contradicts {
            entry.1.get_or_insert(why);
        }
        entry.0.push(Head {
            seq: recorded.seq,
            hash: recorded.hash,
        });
    }
    let mut checks = Vec::new();
    for (peer, (heads, contradiction)) in by_peer {
        let latest_seq = heads.iter().map(|h| h.seq).max().unwrap_or(0);
        let mut check = PeerChainCheck {
            hub: peer.clone(),
            heads: heads.len() as u64,
            latest_seq,
            ok: Some(false),
            detail: String::new(),
        };
        if let Some(why) = contradiction {
            check.detail = why;
            checks.push(check);
            continue;
        }
        match fetch_and_verify(hub, &peer, &heads).await {
            Ok(Ok(detail)) => {
                check.ok = Some(true);
                check.detail = detail;
            }
            Ok(Err(problem)) => check.detail = problem,
            Err(unreachable) => {
                check.ok = None;
                check.detail = format!("not checked: {unreachable}");
            }
        }
        checks.push(check);
    }
    Ok(checks)
}

/// `Err`: the peer could not be asked (or would not show this hub its chain); `Ok(Err)`: its
/// chain fails the check.
async fn fetch_and_verify(hub: &Arc<Hub>, peer: &str, heads: &[Head]) -> Result<Result<String, String>, String> {
    let chain = hub
        .peers
        .get_large(peer, "audit-chain")
        .await
        .map_err(|e| e.to_string())?;
    let path = hub
        .auditor
        .path()
        .with_file_name(format!("audit-check-{peer}-{}.tmp", rand::random::<u64>()));
    let heads = heads.to_vec();
    let peer = peer.to_owned();
    tokio::task::spawn_blocking(move || {
        std::fs::write(&path, &chain).map_err(|e| e.to_string())?;
        let report = valley_audit::verify_file_anchors(&path, &heads);
        let _ = std::fs::remove_file(&path);
        Ok(match report.map_err(|e| e.to_string())? {
            VerifyReport::Ok(log) => Ok(format!(
                "{} records; holds all {} heads it signed (newest seq {})",
                log.records,
                heads.len(),
                heads.iter().map(|h| h.seq).max().unwrap_or(0)
            )),
            VerifyReport::Bad(bad) => Err(format!(
                "hub {peer}'s audit chain no longer extends the heads it signed: {bad}"
            )),
        })
    })
    .await
    .map_err(|e| e.to_string())?
}

/// This hub's chain, for peer `asker` to check (at most [`CHAIN_BYTES_MAX`]). Records name
/// object keys, and a key is its bucket's data as much as its bytes (bucket names are not:
/// policies, which name them, go to every hub). So a record naming an object of a bucket whose
/// policy (held to its floors) does not allow `asker` is sent redacted — its subject withheld,
/// its subject hash given — which verifies and links the chain just the same. A version 1
/// record (written before redaction existed) cannot be redacted: a chain holding one that
/// `asker` may not read is not sent (`Err` says why).
pub async fn own_chain(hub: &Arc<Hub>, asker: &str) -> Result<Vec<u8>, String> {
    let path = hub.auditor.path().to_owned();
    let chain = tokio::task::spawn_blocking(move || {
        let len = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
        if len > CHAIN_BYTES_MAX {
            return Err(format!(
                "the audit chain is {len} bytes, more than the {CHAIN_BYTES_MAX} sent for checking"
            ));
        }
        std::fs::read(&path).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    let Some(place) = hub.topology.hub(asker).cloned() else {
        return Err(format!("{asker} is not a hub of this network"));
    };
    // Which buckets with objects in the chain the asker may not read.
    let named: std::collections::BTreeSet<String> = chain
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let event = valley_audit::AuditRecord::from_line(line).ok()?.event;
            event.key.as_ref()?;
            event.bucket
        })
        .collect();
    let topology = hub.topology.clone();
    let barred: std::collections::BTreeSet<String> = hub
        .read(move |txn| {
            let mut barred = std::collections::BTreeSet::new();
            for bucket in named {
                let allowed = match crate::control::load_policy(txn, &bucket)? {
                    Some(record) => {
                        crate::hook::held_to_floors(txn, &topology, &bucket, &record.policy)?.allows(&place)
                    }
                    // A bucket this hub knows no policy of: withheld.
                    None => false,
                };
                if !allowed {
                    barred.insert(bucket);
                }
            }
            Ok(barred)
        })
        .await
        .map_err(|e| e.to_string())?;
    if barred.is_empty() {
        return Ok(chain);
    }
    let mut out = Vec::with_capacity(chain.len());
    for line in chain.split_inclusive(|b| *b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let record = valley_audit::AuditRecord::from_line(body).ok();
        let withheld = record
            .as_ref()
            .is_some_and(|r| r.event.key.is_some() && r.event.bucket.as_ref().is_some_and(|b| barred.contains(b)));
        match record {
            Some(r) if withheld => {
                let redacted = r.redacted().ok_or_else(|| {
                    format!(
                        "this hub's audit chain holds version 1 records of objects of bucket {:?}, whose policy does not allow hub {asker}: they cannot be shown redacted",
                        r.event.bucket.as_deref().unwrap_or_default()
                    )
                })?;
                out.extend_from_slice(redacted.to_line().as_bytes());
                if line.ends_with(b"\n") {
                    out.push(b'\n');
                }
            }
            // Lines that do not parse go as they are: the checker will name them.
            _ => out.extend_from_slice(line),
        }
    }
    Ok(out)
}
