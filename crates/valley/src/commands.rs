//! The admin commands: each is one call to a hub's admin API, printed for a person (or as JSON).

use std::path::Path;

use anyhow::{Context, bail};
use bytes::Bytes;
use valley_policy::{AckFallback, PlacementPolicy, Tiering};
use valley_replicate::client::{Payload, PeerClient, PeerError};

use crate::admin::{GrantRequest, PREFIX, StatusReport, VerifyOutcome};
use crate::cli::{AuditCommand, BucketCommand, GrantAddArgs, GrantCommand, HubCommand, PolicyCommand, PolicySetArgs};

pub struct AdminClient {
    client: PeerClient,
    base: String,
}

impl AdminClient {
    pub fn from_env(base: &str) -> anyhow::Result<Self> {
        let access = std::env::var("VALLEY_ACCESS_KEY").ok().filter(|v| !v.is_empty());
        let secret = std::env::var("VALLEY_SECRET_KEY").ok().filter(|v| !v.is_empty());
        let (Some(access), Some(secret)) = (access, secret) else {
            bail!("set VALLEY_ACCESS_KEY and VALLEY_SECRET_KEY to the hub's root credentials");
        };
        Self::new(base, &access, &secret)
    }

    /// A client of the admin API at `base`; an `https` one is verified against the CA in
    /// `VALLEY_CA` (the network CA), or the system's trust store.
    pub fn new(base: &str, access: &str, secret: &str) -> anyhow::Result<Self> {
        let ca = std::env::var_os("VALLEY_CA")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from);
        Self::with_ca(base, access, secret, ca.as_deref())
    }

    /// A client of the admin API at `base`, verifying an `https` one against `ca`.
    pub fn with_ca(base: &str, access: &str, secret: &str, ca: Option<&Path>) -> anyhow::Result<Self> {
        let connector = if base.starts_with("https://") {
            let config = valley_tls::cli_client_config(ca).context("TLS for the admin API")?;
            valley_tls::PeerConnector::new(std::sync::Arc::new(config), valley_tls::NameMode::UrlHost)?
        } else {
            valley_tls::plain_connector()?
        };
        Ok(Self {
            client: PeerClient::new(secret.as_bytes().to_vec(), access.to_owned(), String::new(), connector),
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    pub async fn call(&self, method: http::Method, route: &str, body: Vec<u8>) -> anyhow::Result<Bytes> {
        self.call_hinted(method, route, body, 0).await
    }

    /// [`AdminClient::call`] for answers that gather from every hub and may be large and slow
    /// (residency reports and their checks), with a timeout to match.
    pub async fn call_large(&self, method: http::Method, route: &str, body: Vec<u8>) -> anyhow::Result<Bytes> {
        self.call_hinted(method, route, body, 64 << 20).await
    }

    async fn call_hinted(&self, method: http::Method, route: &str, body: Vec<u8>, hint: u64) -> anyhow::Result<Bytes> {
        let path = format!("{PREFIX}{route}");
        self.client
            .call(method, &self.base, &path, &[], Payload::Bytes(body.into()), hint)
            .await
            .map_err(|e| match e {
                PeerError::Unreachable(why) => {
                    anyhow::anyhow!("cannot reach the hub's admin API at {}: {why}", self.base)
                }
                PeerError::Refused(why) => anyhow::anyhow!("refused: {why}"),
                PeerError::Failed { status, message } => anyhow::anyhow!("hub answered {status}: {}", message.trim()),
            })
    }
}

pub(crate) fn q(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

pub async fn bucket(admin: &AdminClient, command: BucketCommand) -> anyhow::Result<()> {
    let command = match command {
        BucketCommand::Policy { command } => command,
        BucketCommand::PurgeStranded { bucket } => {
            let body = admin
                .call(
                    http::Method::POST,
                    &format!("purge-stranded?bucket={}", q(&bucket)),
                    Vec::new(),
                )
                .await?;
            println!("{}", String::from_utf8_lossy(&body).trim());
            return Ok(());
        }
    };
    match command {
        PolicyCommand::Show { bucket } => {
            let body = admin
                .call(http::Method::GET, &format!("policy?bucket={}", q(&bucket)), Vec::new())
                .await?;
            print!("{}", String::from_utf8_lossy(&body));
        }
        PolicyCommand::Set(args) => {
            let bucket = args.bucket.clone();
            let (dry_run, as_json) = (args.dry_run, args.json);
            let policy = policy_from_args(*args)?;
            let text = toml::to_string(&policy).context("encoding the policy")?;
            if dry_run {
                return crate::residency_commands::dry_run(admin, &bucket, text, as_json).await;
            }
            admin
                .call(
                    http::Method::PUT,
                    &format!("policy?bucket={}", q(&bucket)),
                    text.into_bytes(),
                )
                .await?;
            println!("policy of bucket {bucket} set");
        }
    }
    Ok(())
}

fn policy_from_args(args: PolicySetArgs) -> anyhow::Result<PlacementPolicy> {
    if let Some(file) = &args.file {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        return toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {}", file.display(), e.message()));
    }
    let tiering = match (args.tier_after_days, args.tier_role) {
        (Some(after_days), Some(role)) => Some(Tiering {
            after_days,
            role: role.parse().map_err(anyhow::Error::msg)?,
        }),
        _ => None,
    };
    Ok(PlacementPolicy {
        jurisdictions: args.jurisdictions,
        hubs: args.hubs,
        copies: args.copies.unwrap_or(1),
        distinct_failure_domains: args.distinct_failure_domains,
        home_hub: args.home_hub,
        classifications: args.classification,
        tiering,
        ack_copies: args.ack_copies.unwrap_or(1),
        ack_timeout_seconds: args.ack_timeout_seconds.unwrap_or(10),
        ack_fallback: args
            .ack_fallback
            .as_deref()
            .map_or(Ok(AckFallback::Fail), str::parse)
            .map_err(anyhow::Error::msg)?,
        max_lag_seconds: args.max_lag_seconds,
        individuals_per_object: args.individuals_per_object,
    })
}

pub async fn grant(admin: &AdminClient, command: GrantCommand) -> anyhow::Result<()> {
    match command {
        GrantCommand::Add(args) => {
            let GrantAddArgs {
                from,
                to,
                classification,
                basis,
                reference,
                companions,
                expires,
                volume_cap_bytes,
                volume_cap_individuals,
                id,
            } = args;
            let companions = companions
                .iter()
                .map(|pair| {
                    pair.split_once('=')
                        .filter(|(kind, reference)| !kind.is_empty() && !reference.is_empty())
                        .map(|(kind, reference)| (kind.to_owned(), reference.to_owned()))
                        .ok_or_else(|| anyhow::anyhow!("--companion {pair:?}: expected KIND=REFERENCE"))
                })
                .collect::<anyhow::Result<_>>()?;
            let request = GrantRequest {
                id,
                from,
                to,
                classifications: classification,
                basis,
                reference,
                expires,
                volume_cap_bytes,
                volume_cap_individuals,
                companions,
            };
            let body = admin
                .call(http::Method::POST, "grants", serde_json::to_vec(&request)?)
                .await?;
            let grant: valley_policy::Grant = serde_json::from_slice(&body).context("reading the hub's answer")?;
            println!("grant {} recorded", grant.id);
        }
        GrantCommand::List { json } => {
            let body = admin.call(http::Method::GET, "grants", Vec::new()).await?;
            if json {
                println!("{}", String::from_utf8_lossy(&body));
                return Ok(());
            }
            let grants: Vec<valley_policy::Grant> =
                serde_json::from_slice(&body).context("reading the hub's answer")?;
            println!(
                "{:<14} {:<14} {:<5} {:<5} {:<28} {:<20} {:<12} {:<8} REFERENCE",
                "ID", "TENANT", "FROM", "TO", "CLASSIFICATIONS", "BASIS", "EXPIRES", "STATE"
            );
            for g in grants {
                let state = if g.revoked { "revoked" } else { "active" };
                println!(
                    "{:<14} {:<14} {:<5} {:<5} {:<28} {:<20} {:<12} {:<8} {}",
                    g.id,
                    g.tenant,
                    g.from,
                    g.to,
                    g.classifications.join(","),
                    serde_json::to_value(g.basis)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    valley_policy::date_of(g.expires),
                    state,
                    g.reference
                );
            }
        }
        GrantCommand::Revoke { id } => {
            admin
                .call(http::Method::DELETE, &format!("grants?id={}", q(&id)), Vec::new())
                .await?;
            println!("grant {id} revoked");
        }
    }
    Ok(())
}

pub async fn hub(admin: &AdminClient, command: HubCommand) -> anyhow::Result<()> {
    let (id, lost, reason) = match command {
        HubCommand::Lost { id, reason } => (id, true, reason),
        HubCommand::Restored { id } => (id, false, "declared back by the operator".to_owned()),
    };
    let route = format!("hub-state?hub={}&lost={lost}&reason={}", q(&id), q(&reason));
    admin.call(http::Method::POST, &route, Vec::new()).await?;
    if lost {
        println!("hub {id} declared lost: its copies will be re-created on other allowed hubs");
    } else {
        println!("hub {id} declared back in service");
    }
    Ok(())
}

pub async fn status(admin: &AdminClient, as_json: bool) -> anyhow::Result<()> {
    let body = admin.call(http::Method::GET, "status", Vec::new()).await?;
    if as_json {
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(());
    }
    let report: StatusReport = serde_json::from_slice(&body).context("reading the hub's answer")?;
    print_status(&report);
    Ok(())
}

pub fn print_status(report: &StatusReport) {
    println!(
        "network {} (asked {})",
        &report.topology[..12.min(report.topology.len())],
        report.asked_hub
    );
    println!("\nHUBS");
    for h in &report.hubs {
        let state = match (h.up, &h.lost_reason) {
            (_, Some(reason)) => format!("LOST ({reason})"),
            (true, None) => "up".to_owned(),
            (false, None) => "DOWN".to_owned(),
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let contact = h.last_contact_unix_ms.map_or_else(
            || "never in contact".to_owned(),
            |t| format!("last contact {}s ago", now_ms.saturating_sub(t) / 1000),
        );
        println!(
            "  {:<14} {:<3} {:<5} {:<22} {:<6} {contact}",
            h.id, h.jurisdiction, h.role, h.failure_domain, state
        );
    }
    println!("\nLINKS (with a backlog or an error)");
    let mut quiet = 0;
    for l in &report.links {
        if l.backlog_entries == 0 && l.last_error.is_none() {
            quiet += 1;
            continue;
        }
        println!(
            "  {:<14} -> {:<14} backlog {:>6} entries {:>12} bytes  lag {:>7.1}s  {}",
            l.from,
            l.to,
            l.backlog_entries,
            l.backlog_bytes,
            l.lag_seconds,
            l.last_error.as_deref().unwrap_or("")
        );
    }
    println!("  ({quiet} links idle)");
    println!("\nBUCKETS");
    for b in &report.buckets {
        let p = &b.policy;
        let mut rule = String::new();
        if !p.jurisdictions.is_empty() {
            rule.push_str(&format!("in [{}]", p.jurisdictions.join(",")));
        }
        if !p.hubs.is_empty() {
            if !rule.is_empty() {
                rule.push(' ');
            }
            rule.push_str(&format!("hubs [{}]", p.hubs.join(",")));
        }
        rule.push_str(&format!(
            ", {} cop{}",
            p.copies,
            if p.copies == 1 { "y" } else { "ies" }
        ));
        if p.distinct_failure_domains {
            rule.push_str(" in distinct failure domains");
        }
        if !p.classifications.is_empty() {
            rule.push_str(&format!(", classified [{}]", p.classifications.join(",")));
        }
        if p.ack_copies > 1 {
            rule.push_str(&format!(
                ", acknowledged after {} copies ({} s, then {})",
                p.ack_copies,
                p.ack_timeout_seconds,
                match p.ack_fallback {
                    AckFallback::Fail => "fail",
                    AckFallback::Degrade => "degrade",
                }
            ));
        }
        if let Some(lag) = p.max_lag_seconds {
            rule.push_str(&format!(", lag at most {lag} s"));
        }
        if let Some(n) = p.individuals_per_object {
            rule.push_str(&format!(", {n} individuals an object unless it says"));
        }
        let lag = if b.backlog_entries > 0 {
            format!(
                "  [replicating: {} entries, {} bytes, lag {:.1}s]",
                b.backlog_entries, b.backlog_bytes, b.lag_seconds
            )
        } else {
            String::new()
        };
        println!("  {} — {rule}{lag}", b.bucket);
        for l in &b.links {
            println!(
                "      owed {:<14} -> {:<14} {:>8} entries {:>12} bytes  recovery point {:.1}s",
                l.from, l.peer, l.entries, l.bytes, l.lag_seconds
            );
        }
        for h in &b.holders {
            let flag = if h.forbidden {
                "  <-- STRANDED: not allowed here; kept until the allowed hubs hold it (or `valley bucket purge-stranded`)"
            } else {
                ""
            };
            println!(
                "      {:<14} {:>6} objects {:>12} bytes{flag}",
                h.hub, h.objects, h.bytes
            );
        }
        if b.holders.is_empty() {
            println!("      (no objects yet)");
        }
    }
    print_tenants(&report.tenants);
}

/// Storage per tenant, per hub and per jurisdiction.
fn print_tenants(tenants: &[crate::admin::TenantRow]) {
    println!("\nTENANTS (objects and bytes held, per hub and jurisdiction)");
    for t in tenants {
        let (objects, bytes) = t.holdings.iter().fold((0, 0), |(o, b), h| (o + h.objects, b + h.bytes));
        println!(
            "  {:<20} {:>3} buckets {:>8} objects {:>14} bytes",
            t.tenant, t.buckets, objects, bytes
        );
        let mut by_jurisdiction: std::collections::BTreeMap<&str, (u64, u64)> = std::collections::BTreeMap::new();
        for h in &t.holdings {
            println!(
                "      {:<14} {:<3} {:>8} objects {:>14} bytes",
                h.hub, h.jurisdiction, h.objects, h.bytes
            );
            let sum = by_jurisdiction.entry(&h.jurisdiction).or_default();
            sum.0 += h.objects;
            sum.1 += h.bytes;
        }
        for (jurisdiction, (objects, bytes)) in by_jurisdiction {
            println!("      in {jurisdiction:<11} {objects:>12} objects {bytes:>14} bytes");
        }
    }
}

pub async fn audit(admin: &AdminClient, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify { file } => {
            let outcome = match file {
                Some(path) => verify_local(&path)?,
                None => {
                    let body = admin.call(http::Method::GET, "audit-verify", Vec::new()).await?;
                    serde_json::from_slice::<VerifyOutcome>(&body).context("reading the hub's answer")?
                }
            };
            if !outcome.ok {
                bail!("audit chain broken: {}", outcome.detail);
            }
            println!("{}", outcome.detail);
            for peer in &outcome.peers {
                let state = match peer.ok {
                    Some(true) => "ok",
                    Some(false) => "REWRITTEN",
                    None => "unchecked",
                };
                println!(
                    "  peer {:<14} {state:<9} {} signed heads (newest seq {}): {}",
                    peer.hub, peer.heads, peer.latest_seq, peer.detail
                );
            }
            if let Some(bad) = outcome.peers.iter().find(|p| p.ok == Some(false)) {
                bail!("{}", bad.detail);
            }
        }
        AuditCommand::Show {
            bucket,
            hub,
            grant,
            json,
            file,
        } => {
            let records: Vec<valley_audit::AuditRecord> = match file {
                Some(path) => {
                    let filter = valley_audit::Filter {
                        bucket,
                        hub,
                        grant,
                        ..Default::default()
                    };
                    valley_audit::read_filtered(&path, &filter)
                        .with_context(|| format!("reading {}", path.display()))?
                }
                None => {
                    let mut query = Vec::new();
                    for (name, value) in [("bucket", bucket), ("hub", hub), ("grant", grant)] {
                        if let Some(v) = value {
                            query.push(format!("{name}={}", q(&v)));
                        }
                    }
                    let body = admin
                        .call(http::Method::GET, &format!("audit?{}", query.join("&")), Vec::new())
                        .await?;
                    serde_json::from_slice(&body).context("reading the hub's answer")?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                for r in records {
                    println!("{}", r.to_line());
                }
            }
        }
    }
    Ok(())
}

fn verify_local(path: &Path) -> anyhow::Result<VerifyOutcome> {
    let report = valley_audit::verify_file(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(crate::admin::verify_outcome(&report))
}
