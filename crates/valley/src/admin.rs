//! The admin API, on the admin port under `/_valley/admin/v1/`, authenticated with the root
//! credentials (HMAC, see `valley_replicate::auth`). Policies, grants, status and audit.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use valley_policy::{Basis, Grant, PlacementPolicy};
use valley_replicate::{Hub, HubError, LinkStatus, auth, wire};

pub const PREFIX: &str = "/_valley/admin/v1/";
const BODY_BYTES_MAX: usize = 1024 * 1024;
/// A residency report sent back to be verified may be large (a version entry is a few hundred
/// bytes); only the operator, whose signature is checked first, can send one.
const REPORT_BYTES_MAX: usize = 256 * 1024 * 1024;

pub struct AdminApi {
    pub hub: Option<Arc<Hub>>,
    pub directory: Arc<valley_tenants::Directory>,
    /// This hub's store, for usage figures.
    pub catalog: valley_store::Catalog,
    /// Signatures of admin calls already taken: a captured call cannot be sent again.
    pub replays: auth::ReplayGuard,
    /// The hub's server-side encryption (its key service), for crypto-shredding.
    pub encryption: Option<Arc<valley_s3::sse::Encryption>>,
}

pub(crate) fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r
}

pub(crate) fn json(value: &impl Serialize) -> Response<Bytes> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => reply(StatusCode::OK, body),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub(crate) fn hub_error(e: &HubError) -> Response<Bytes> {
    let status = match e {
        HubError::Invalid(_) => StatusCode::BAD_REQUEST,
        HubError::NotFound(_) | HubError::Store(valley_store::StoreError::NoSuchBucket(_)) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    reply(status, e.to_string())
}

/// A grant as the CLI sends it.
#[derive(Debug, Serialize, Deserialize)]
pub struct GrantRequest {
    pub id: Option<String>,
    pub from: String,
    pub to: String,
    pub classifications: Vec<String>,
    pub basis: String,
    pub reference: String,
    pub expires: String,
    pub volume_cap_bytes: Option<u64>,
    pub volume_cap_individuals: Option<u64>,
    /// Companion records by kind (`piia`: the impact assessment's reference). New in session
    /// 11.
    #[serde(default)]
    pub companions: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HubRow {
    pub id: String,
    pub jurisdiction: String,
    pub role: String,
    pub failure_domain: String,
    pub up: bool,
    pub error: Option<String>,
    /// Declared lost for good: placement passes it over.
    #[serde(default)]
    pub lost: bool,
    #[serde(default)]
    pub lost_reason: Option<String>,
    /// When the asked hub last heard from this one (the asked hub itself: now).
    #[serde(default)]
    pub last_contact_unix_ms: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LinkRow {
    pub from: String,
    pub to: String,
    pub reachable: bool,
    pub backlog_entries: u64,
    pub backlog_bytes: u64,
    pub lag_seconds: f64,
    pub shipped_entries: u64,
    pub refused_entries: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Holder {
    pub hub: String,
    pub objects: u64,
    pub bytes: u64,
    /// The policy forbids this hub: its copies are stranded, kept until the hubs the policy
    /// allows hold them (then dropped) or an operator purges them.
    pub forbidden: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BucketRow {
    pub bucket: String,
    pub policy: PlacementPolicy,
    pub holders: Vec<Holder>,
    /// Replication still owed for this bucket, summed over every hub's outbox.
    pub backlog_entries: u64,
    pub backlog_bytes: u64,
    /// Age of the oldest undelivered entry anywhere.
    pub lag_seconds: f64,
    /// The same per link: what each hub still owes each other hub for this bucket.
    #[serde(default)]
    pub links: Vec<valley_replicate::BucketBacklog>,
}

/// What one tenant's buckets hold at one hub: what an operator bills storage by.
#[derive(Debug, Serialize, Deserialize)]
pub struct TenantHolding {
    pub hub: String,
    pub jurisdiction: String,
    pub objects: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TenantRow {
    pub tenant: String,
    pub buckets: u64,
    /// Per hub that answered, in topology order (hubs holding nothing of it left out).
    pub holdings: Vec<TenantHolding>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StatusReport {
    pub asked_hub: String,
    pub topology: String,
    pub hubs: Vec<HubRow>,
    pub links: Vec<LinkRow>,
    pub buckets: Vec<BucketRow>,
    /// Absent from hubs of the previous release.
    #[serde(default)]
    pub tenants: Vec<TenantRow>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct VerifyOutcome {
    pub ok: bool,
    pub records: u64,
    pub detail: String,
    /// Each peer's chain checked against the heads it signed and this hub recorded.
    #[serde(default)]
    pub peers: Vec<valley_replicate::heads::PeerChainCheck>,
}

/// A recorded grant and what the rule packs say of it (`valley rules check`).
#[derive(Debug, Serialize, Deserialize)]
pub struct GrantJudgement {
    pub grant: valley_policy::Grant,
    pub judgement: valley_policy::Judgement,
}

/// The rule packs a hub judges by, and their hash (what peers compare).
#[derive(Debug, Serialize, Deserialize)]
pub struct LoadedRules {
    pub hash: String,
    pub book: valley_policy::RuleBook,
}

/// Individuals a tenant has sent out of a jurisdiction this calendar year, of one
/// classification, as counted by the hub answering (its exports accountant).
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportCount {
    pub tenant: String,
    pub from: String,
    pub classification: String,
    pub individuals: u64,
    #[serde(default)]
    pub bytes: u64,
}

/// Admin calls a tenant's admin may make too, on its own buckets and grants.
const TENANT_DATA_ROUTES: [&str; 8] = [
    "policy",
    "policy-dry-run",
    "grants",
    "rules",
    "rules-check",
    "rules-volumes",
    "residency-report",
    "residency-verify",
];

impl AdminApi {
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Bytes> {
        let path_and_query = req.uri().path_and_query().map_or("", |p| p.as_str()).to_owned();
        // The caller's secret is its access key's: the root credentials, or a tenant user's.
        let claimed = req
            .headers()
            .get(auth::HEADER_IDENTITY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Some((caller, secret)) = self.directory.authenticate(claimed) else {
            return reply(StatusCode::FORBIDDEN, "unknown access key");
        };
        let verified = match auth::verify(secret.as_bytes(), req.method().as_str(), &path_and_query, req.headers()) {
            Ok(verified) if verified.identity == caller.access_key => verified,
            Ok(_) => return reply(StatusCode::FORBIDDEN, "unknown access key"),
            Err(why) => return reply(StatusCode::UNAUTHORIZED, why.to_string()),
        };
        if let Err(why) = self.replays.admit(&verified) {
            return reply(StatusCode::UNAUTHORIZED, why.to_string());
        }
        let route = req.uri().path().strip_prefix(PREFIX).unwrap_or("").to_owned();
        // Tenant and key calls: a tenant's admin makes them for its own tenant.
        if route == crate::admin_kms::ROUTE || crate::admin_tenants::ROUTES.contains(&route.as_str()) {
            let query = req.uri().query().unwrap_or("").to_owned();
            let method = req.method().clone();
            let body = match auth::read_body(
                valley_replicate::body_timeout::TimedBody::new(req.into_body()),
                &verified,
                BODY_BYTES_MAX,
            )
            .await
            {
                Ok(body) => body,
                Err(why) => return reply(StatusCode::BAD_REQUEST, why.to_string()),
            };
            if route == crate::admin_kms::ROUTE {
                if method != Method::POST {
                    return reply(StatusCode::NOT_FOUND, "no such admin call");
                }
                let kms = crate::admin_kms::KmsAdmin {
                    directory: &self.directory,
                    catalog: &self.catalog,
                    encryption: self.encryption.as_ref(),
                    hub: self.hub.as_ref(),
                };
                return kms.destroy(&caller, &body).await;
            }
            return crate::admin_tenants::handle(
                &self.directory,
                &self.catalog,
                &caller,
                &method,
                &route,
                &query,
                &body,
            )
            .await;
        }
        // A tenant's admin manages its own buckets' placement and residency and its own
        // grants; everything else runs the network: the operator's alone.
        let allowed = caller.operator || (caller.admin && TENANT_DATA_ROUTES.contains(&route.as_str()));
        if !allowed {
            return reply(
                StatusCode::FORBIDDEN,
                format!(
                    "{} may not run the network: only the operator (root credentials)",
                    caller.arn()
                ),
            );
        }
        let Some(hub) = self.hub.clone() else {
            return reply(
                StatusCode::NOT_FOUND,
                "this hub runs alone (no --hub/--topology): it has no network to administer",
            );
        };
        let query = req.uri().query().unwrap_or("").to_owned();
        let method = req.method().clone();
        // Every admin body is small and signed by its hash: read and checked before routing.
        let body = match auth::read_body(
            valley_replicate::body_timeout::TimedBody::new(req.into_body()),
            &verified,
            if route == "residency-verify" {
                REPORT_BYTES_MAX
            } else {
                BODY_BYTES_MAX
            },
        )
        .await
        {
            Ok(body) => body,
            Err(why) => return reply(StatusCode::BAD_REQUEST, why.to_string()),
        };
        let param = |name: &str| wire::query_param(&query, name);
        // The bucket a tenant-data route names must be the caller's tenant's (the operator is
        // the default tenant's admin: other tenants' placement and key names are theirs).
        let directory = self.directory.clone();
        let foreign = |bucket: &str| -> Option<Response<Bytes>> {
            let owner = directory.owner_of(bucket);
            (owner != caller.tenant).then(|| {
                reply(
                    StatusCode::FORBIDDEN,
                    format!(
                        "{} may not manage bucket {bucket:?}: it is tenant {owner:?}'s",
                        caller.arn()
                    ),
                )
            })
        };
        if TENANT_DATA_ROUTES.contains(&route.as_str())
            && let Some(bucket) = param("bucket")
            && let Some(refusal) = foreign(&bucket)
        {
            return refusal;
        }
        match (method, route.as_str()) {
            (Method::GET, "policy") => {
                let Some(bucket) = param("bucket") else {
                    return reply(StatusCode::BAD_REQUEST, "bucket is required");
                };
                match hub.policy(&bucket).await {
                    Ok(policy) => reply(StatusCode::OK, toml::to_string(&policy).unwrap_or_default()),
                    Err(e) => hub_error(&e),
                }
            }
            (Method::PUT, "policy") => {
                let Some(bucket) = param("bucket") else {
                    return reply(StatusCode::BAD_REQUEST, "bucket is required");
                };
                let policy = match policy_of_body(&body) {
                    Ok(p) => p,
                    Err(why) => return malformed(why),
                };
                match hub.set_policy(&bucket, policy).await {
                    Ok(()) => reply(StatusCode::OK, "ok"),
                    Err(e) => hub_error(&e),
                }
            }
            // The operator sees every tenant's grants; a tenant's admin its own.
            (Method::GET, "grants") => {
                let grants = if caller.operator {
                    hub.grants().await
                } else {
                    hub.grants_of(&caller.tenant).await
                };
                match grants {
                    Ok(grants) => json(&grants),
                    Err(e) => hub_error(&e),
                }
            }
            // Every grant the caller sees, judged by the rule packs this hub holds.
            (Method::GET, "rules-check") => {
                let grants = if caller.operator {
                    hub.grants().await
                } else {
                    hub.grants_of(&caller.tenant).await
                };
                match grants {
                    Ok(grants) => {
                        let today = valley_replicate::hook::today();
                        let judged: Vec<GrantJudgement> = grants
                            .into_iter()
                            .map(|grant| {
                                let judgement = hub.topology.rules().judge(&grant, today);
                                GrantJudgement { grant, judgement }
                            })
                            .collect();
                        json(&judged)
                    }
                    Err(e) => hub_error(&e),
                }
            }
            // The rule packs this hub judges by.
            (Method::GET, "rules") => json(&LoadedRules {
                hash: hub.topology.rules_hash().to_owned(),
                book: hub.topology.rules().clone(),
            }),
            // What tenants have sent abroad this year, as this hub counts it.
            (Method::GET, "rules-volumes") => match hub.export_volumes().await {
                Ok(counts) => {
                    let counts: Vec<ExportCount> = counts
                        .into_iter()
                        .filter(|(tenant, ..)| caller.operator || *tenant == caller.tenant)
                        .map(|(tenant, from, classification, sent)| ExportCount {
                            tenant,
                            from,
                            classification,
                            individuals: sent.individuals,
                            bytes: sent.bytes,
                        })
                        .collect();
                    json(&counts)
                }
                Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            },
            (Method::POST, "grants") => {
                let request: GrantRequest = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return reply(StatusCode::BAD_REQUEST, format!("malformed grant: {e}")),
                };
                let grant = match grant_of(request, &caller.tenant) {
                    Ok(g) => g,
                    Err(e) => return reply(StatusCode::BAD_REQUEST, e),
                };
                match hub.add_grant(grant).await {
                    Ok(g) => json(&g),
                    Err(e) => hub_error(&e),
                }
            }
            (Method::DELETE, "grants") => {
                let Some(id) = param("id") else {
                    return reply(StatusCode::BAD_REQUEST, "id is required");
                };
                let own = (!caller.operator).then_some(caller.tenant.as_str());
                match hub.revoke_grant(&id, own).await {
                    Ok(()) => reply(StatusCode::OK, "ok"),
                    Err(e) => hub_error(&e),
                }
            }
            (Method::GET, "status") => json(&status(&hub, &self.directory).await),
            (Method::POST, "purge-stranded") => {
                let Some(bucket) = param("bucket") else {
                    return reply(StatusCode::BAD_REQUEST, "bucket is required");
                };
                match hub.purge_stranded(&bucket).await {
                    Ok(removed) => reply(
                        StatusCode::OK,
                        format!(
                            "purged {removed} stranded versions of bucket {bucket} at hub {}",
                            hub.id
                        ),
                    ),
                    Err(e) => hub_error(&e),
                }
            }
            (Method::POST, "hub-state") => {
                let (Some(id), Some(lost)) = (param("hub"), param("lost")) else {
                    return reply(StatusCode::BAD_REQUEST, "hub and lost are required");
                };
                let reason = param("reason").unwrap_or_else(|| "declared by the operator".to_owned());
                match hub.set_hub_state(&id, lost == "true", reason).await {
                    Ok(()) => reply(StatusCode::OK, "ok"),
                    Err(e) => hub_error(&e),
                }
            }
            (Method::GET, "residency-report") => crate::admin_residency::report(&hub, &query).await,
            (Method::POST, "residency-verify") => crate::admin_residency::verify(&hub, &body, &foreign).await,
            (Method::POST, "policy-dry-run") => crate::admin_residency::dry_run(&hub, &query, &body).await,
            (Method::GET, "audit") => {
                let filter = valley_audit::Filter {
                    bucket: param("bucket"),
                    hub: param("hub"),
                    grant: param("grant"),
                    ..Default::default()
                };
                let path = hub.auditor.path().to_path_buf();
                match tokio::task::spawn_blocking(move || valley_audit::read_filtered(&path, &filter)).await {
                    Ok(Ok(records)) => json(&records),
                    Ok(Err(e)) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                    Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
            (Method::GET, "audit-verify") => {
                let path = hub.auditor.path().to_path_buf();
                match tokio::task::spawn_blocking(move || valley_audit::verify_file(&path)).await {
                    Ok(Ok(report)) => {
                        let mut outcome = verify_outcome(&report);
                        match valley_replicate::heads::check_peer_chains(&hub).await {
                            Ok(peers) => outcome.peers = peers,
                            Err(e) => return hub_error(&e),
                        }
                        json(&outcome)
                    }
                    Ok(Err(e)) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                    Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }
            _ => reply(StatusCode::NOT_FOUND, "no such admin call"),
        }
    }
}

/// A policy sent as a TOML body, or what is wrong with it (answered 400 by [`malformed`]).
pub(crate) fn policy_of_body(body: &[u8]) -> Result<PlacementPolicy, String> {
    std::str::from_utf8(body)
        .map_err(|e| e.to_string())
        .and_then(|t| toml::from_str(t).map_err(|e| e.to_string()))
        .map_err(|e| format!("malformed policy: {e}"))
}

pub(crate) fn malformed(why: String) -> Response<Bytes> {
    reply(StatusCode::BAD_REQUEST, why)
}

pub fn verify_outcome(report: &valley_audit::VerifyReport) -> VerifyOutcome {
    match report {
        valley_audit::VerifyReport::Ok(log) => VerifyOutcome {
            ok: true,
            records: log.records,
            detail: report.to_string(),
            peers: Vec::new(),
        },
        valley_audit::VerifyReport::Bad(_) => VerifyOutcome {
            ok: false,
            records: 0,
            detail: report.to_string(),
            peers: Vec::new(),
        },
    }
}

/// A grant of `tenant`'s (the caller's) from its request.
fn grant_of(r: GrantRequest, tenant: &str) -> Result<Grant, String> {
    let basis: Basis = r.basis.parse()?;
    let expires =
        valley_policy::day_of(&r.expires).ok_or_else(|| format!("expires {:?} is not a YYYY-MM-DD date", r.expires))?;
    Ok(Grant {
        id: r.id.unwrap_or_default(),
        tenant: tenant.to_owned(),
        from: r.from,
        to: r.to,
        classifications: r.classifications,
        basis,
        reference: r.reference,
        companions: r.companions,
        expires,
        volume_cap_bytes: r.volume_cap_bytes,
        volume_cap_individuals: r.volume_cap_individuals,
        revoked: false,
        usage_year: 0,
        used_bytes: 0,
        used_individuals: 0,
    })
}

/// Asks every hub for its holdings and links; a hub that does not answer is down.
async fn status(hub: &Arc<Hub>, directory: &valley_tenants::Directory) -> StatusReport {
    let mut hubs = Vec::new();
    let mut links = Vec::new();
    let mut inventories = Vec::new();
    let asks = hub.topology.hubs().map(|h| {
        let hub = hub.clone();
        let id = h.id.clone();
        async move {
            if id == hub.id {
                let inventory = hub.inventory().await.map_err(|e| e.to_string());
                let backlog = hub.bucket_backlog().await.unwrap_or_default();
                (id, inventory, Ok(hub.link_status().await), backlog)
            } else {
                // The three questions at once: over a long link each costs a round trip.
                let (inventory, links, backlog) = tokio::join!(
                    hub.peers.get(&id, "inventory"),
                    hub.peers.get(&id, "links"),
                    hub.peers.get(&id, "backlog")
                );
                let inventory = match inventory {
                    Ok(b) => serde_json::from_slice::<wire::Inventory>(&b).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let links = match links {
                    Ok(b) => serde_json::from_slice::<Vec<LinkStatus>>(&b).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let backlog = match backlog {
                    Ok(b) => serde_json::from_slice::<Vec<valley_replicate::BucketBacklog>>(&b).unwrap_or_default(),
                    Err(_) => Vec::new(),
                };
                (id, inventory, links, backlog)
            }
        }
    });
    let states = hub.hub_states().await.unwrap_or_default();
    let own_links = hub.link_status().await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut backlogs: Vec<valley_replicate::BucketBacklog> = Vec::new();
    for (id, inventory, hub_links, backlog) in futures::future::join_all(asks).await {
        backlogs.extend(backlog);
        let h = hub.topology.hub(&id);
        hubs.push(HubRow {
            id: id.clone(),
            jurisdiction: h.map(|h| h.jurisdiction.clone()).unwrap_or_default(),
            role: h.map(|h| h.role.as_str().to_owned()).unwrap_or_default(),
            failure_domain: h.map(|h| h.failure_domain.clone()).unwrap_or_default(),
            up: inventory.is_ok(),
            error: inventory.as_ref().err().cloned(),
            last_contact_unix_ms: if id == hub.id {
                Some(now_ms)
            } else {
                own_links
                    .iter()
                    .find(|l| l.peer == id)
                    .and_then(|l| l.last_contact_unix_ms)
                    .max(inventory.is_ok().then_some(now_ms))
            },
            lost: states.iter().any(|(h, r)| *h == id && r.lost),
            lost_reason: states
                .iter()
                .find(|(h, r)| *h == id && r.lost)
                .map(|(_, r)| r.reason.clone()),
        });
        if let Ok(inv) = inventory {
            inventories.push(inv);
        }
        for l in hub_links.unwrap_or_default() {
            links.push(LinkRow {
                from: id.clone(),
                to: l.peer,
                reachable: l.reachable,
                backlog_entries: l.backlog_entries,
                backlog_bytes: l.backlog_bytes,
                lag_seconds: l.lag_seconds,
                shipped_entries: l.shipped_entries,
                refused_entries: l.refused_entries,
                last_error: l.last_error,
            });
        }
    }
    let mut buckets = Vec::new();
    for (bucket, policy) in hub.policies().await.unwrap_or_default() {
        let holders = inventories
            .iter()
            .filter_map(|inv| {
                let held = inv.buckets.iter().find(|b| b.bucket == bucket && b.objects > 0)?;
                let allowed = hub.topology.hub(&inv.hub).is_some_and(|h| policy.allows(h));
                Some(Holder {
                    hub: inv.hub.clone(),
                    objects: held.objects,
                    bytes: held.bytes,
                    forbidden: !allowed,
                })
            })
            .collect();
        let owed: Vec<valley_replicate::BucketBacklog> =
            backlogs.iter().filter(|r| r.bucket == bucket).cloned().collect();
        let backlog_entries = owed.iter().map(|r| r.entries).sum();
        let backlog_bytes = owed.iter().map(|r| r.bytes).sum();
        let lag_seconds = owed.iter().map(|r| r.lag_seconds).fold(0.0, f64::max);
        buckets.push(BucketRow {
            bucket,
            policy,
            holders,
            backlog_entries,
            backlog_bytes,
            lag_seconds,
            links: owed,
        });
    }
    let tenants = tenant_rows(hub, directory, &buckets);
    StatusReport {
        asked_hub: hub.id.clone(),
        topology: hub.topology.hash().to_owned(),
        hubs,
        links,
        buckets,
        tenants,
    }
}

/// Each tenant's holdings per hub, summed over its buckets' holders.
fn tenant_rows(hub: &Hub, directory: &valley_tenants::Directory, buckets: &[BucketRow]) -> Vec<TenantRow> {
    directory
        .tenants()
        .into_iter()
        .map(|tenant| {
            let owned: Vec<&BucketRow> = buckets
                .iter()
                .filter(|b| directory.owner_of(&b.bucket) == tenant)
                .collect();
            let holdings = hub
                .topology
                .hubs()
                .filter_map(|h| {
                    let held = owned.iter().flat_map(|b| &b.holders).filter(|x| x.hub == h.id);
                    let (objects, bytes) = held.fold((0, 0), |(o, b), x| (o + x.objects, b + x.bytes));
                    (objects > 0).then(|| TenantHolding {
                        hub: h.id.clone(),
                        jurisdiction: h.jurisdiction.clone(),
                        objects,
                        bytes,
                    })
                })
                .collect();
            TenantRow {
                buckets: directory.buckets_of(&tenant).len() as u64,
                tenant,
                holdings,
            }
        })
        .collect()
}
