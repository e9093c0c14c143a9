//! `valley residency report|verify` and `valley bucket policy set --dry-run`.

use std::path::Path;

use anyhow::{Context, bail};
use valley_replicate::residency::Report;
use valley_replicate::residency::plan::{Flow, PolicyPlan};

use crate::admin_residency::ReportCheck;
use crate::cli::ResidencyCommand;
use crate::commands::{AdminClient, q};

pub async fn run(admin: &AdminClient, command: ResidencyCommand) -> anyhow::Result<()> {
    match command {
        ResidencyCommand::Report { bucket, json, at } => {
            let mut route = format!("residency-report?bucket={}", q(&bucket));
            if let Some(at) = at {
                route.push_str(&format!("&at={}", unix_ms_of(&at)?));
            }
            let body = admin.call_large(http::Method::GET, &route, Vec::new()).await?;
            let report: Report = serde_json::from_slice(&body).context("reading the hub's answer")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report);
            }
        }
        ResidencyCommand::Verify { report } => {
            let body = read_report(&report)?;
            let answer = admin.call_large(http::Method::POST, "residency-verify", body).await?;
            let check: ReportCheck = serde_json::from_slice(&answer).context("reading the hub's answer")?;
            if !check.ok {
                bail!("{}: claim not confirmed: {}", report.display(), check.detail);
            }
            println!("{}", check.detail);
        }
    }
    Ok(())
}

/// The report file's bytes, once they parse as a report (so a damaged file is named here, not
/// by the hub).
fn read_report(path: &Path) -> anyhow::Result<Vec<u8>> {
    let body = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if let Err(e) = serde_json::from_slice::<Report>(&body) {
        bail!("{}: not a residency report: {e}", path.display());
    }
    Ok(body)
}

/// Unix milliseconds of an RFC 3339 time or of Unix seconds.
fn unix_ms_of(at: &str) -> anyhow::Result<u64> {
    if let Ok(secs) = at.parse::<u64>() {
        return Ok(secs.saturating_mul(1000));
    }
    let time = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .map_err(|e| anyhow::anyhow!("--at {at:?} is neither RFC 3339 (2026-12-01T00:00:00Z) nor Unix seconds: {e}"))?;
    u64::try_from(time.unix_timestamp_nanos() / 1_000_000).context("--at is before 1970")
}

fn date(unix_ms: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms))
}

fn kebab(value: impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn print_report(r: &Report) {
    let s = &r.summary;
    println!(
        "residency of bucket {} (network {}, asked {} at {})",
        r.bucket,
        &r.topology_hash[..12.min(r.topology_hash.len())],
        r.generated_by,
        date(r.generated_unix_ms)
    );
    if let Some(at) = r.at_unix_ms {
        println!("as of {}: copies whose arrival was recorded by then", date(at));
    }
    println!("policy: {}", serde_json::to_string(&r.policy).unwrap_or_default());
    println!("\nSUMMARY");
    println!(
        "  {} objects, {} versions, {} bytes, {} copies",
        s.objects, s.versions, s.bytes, s.copies
    );
    let per: Vec<String> = s
        .copies_per_jurisdiction
        .iter()
        .map(|(j, n)| format!("{j} {n}"))
        .collect();
    println!("  copies per jurisdiction: {}", per.join(", "));
    println!("  versions short of the policy: {}", s.versions_short_of_policy);
    println!(
        "  copies where the policy no longer allows them: {} ({} to be dropped now that the placed hubs hold them, {} waiting for them)",
        s.copies_not_allowed, s.copies_not_allowed_removal_due, s.copies_not_allowed_waiting
    );
    if !s.hubs_unreachable.is_empty() {
        println!("  hubs that did not answer: {}", s.hubs_unreachable.join(", "));
    }
    println!("\nHUBS");
    for h in &r.hubs {
        let chain = match (&h.head, &h.problem) {
            (Some(head), _) => format!("audit head seq {} {}", head.seq, &head.hash.to_hex()[..16]),
            (None, Some(problem)) => format!("NOT CHECKED: {problem}"),
            (None, None) => "no audit chain".to_owned(),
        };
        println!("  {:<14} {:<3} {:<22} {chain}", h.hub, h.jurisdiction, h.failure_domain);
    }
    println!("\nVERSIONS");
    for v in &r.versions {
        let what = if v.delete_marker { "delete marker" } else { "" };
        println!(
            "  {} (version {}@{}, {} bytes{}) placed on [{}]",
            v.key,
            v.hlc,
            v.origin,
            v.size,
            if what.is_empty() {
                String::new()
            } else {
                format!(", {what}")
            },
            v.placed.join(", ")
        );
        for c in &v.copies {
            let verdict = if c.allowed { "allowed" } else { "NOT ALLOWED" };
            let grant = c.grant.as_ref().map_or_else(String::new, |g| {
                format!(
                    " by grant {} ({}, ref {}, until {})",
                    g.id,
                    kebab(g.basis),
                    g.reference,
                    g.expires
                )
            });
            let records = if c.records.is_empty() {
                if c.hub == v.origin {
                    " — written here by a client".to_owned()
                } else {
                    " — no transfer record".to_owned()
                }
            } else {
                let refs: Vec<String> = c.records.iter().map(|x| format!("{}#{}", x.hub, x.seq)).collect();
                format!(" — records {}", refs.join(" "))
            };
            println!(
                "      {:<14} {:<3} {:<22} {verdict}: {}{grant}{records}",
                c.hub,
                c.jurisdiction,
                c.failure_domain,
                kebab(c.rule)
            );
        }
    }
}

/// `valley bucket policy set … --dry-run`.
pub async fn dry_run(admin: &AdminClient, bucket: &str, policy_toml: String, as_json: bool) -> anyhow::Result<()> {
    let route = format!("policy-dry-run?bucket={}", q(bucket));
    let body = admin
        .call_large(http::Method::POST, &route, policy_toml.into_bytes())
        .await?;
    if as_json {
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(());
    }
    let plan: PolicyPlan = serde_json::from_slice(&body).context("reading the hub's answer")?;
    print_plan(&plan);
    Ok(())
}

fn flows(title: &str, rows: &[Flow]) {
    if rows.is_empty() {
        println!("{title}: none");
        return;
    }
    println!("{title}:");
    for f in rows {
        println!("  {:<14} {:>8} versions {:>14} bytes", f.hub, f.versions, f.bytes);
    }
}

fn print_plan(p: &PolicyPlan) {
    println!("dry run: nothing changed");
    println!("bucket {}: {} versions, {} bytes", p.bucket, p.versions, p.bytes);
    println!(
        "current policy:  {}",
        serde_json::to_string(&p.current).unwrap_or_default()
    );
    println!(
        "proposed policy: {}",
        serde_json::to_string(&p.proposed).unwrap_or_default()
    );
    flows("would copy to", &p.copies);
    flows("would remove (once every placed hub holds them)", &p.removals);
    flows(
        "would strand (not allowed, nowhere to go: kept until purge-stranded)",
        &p.stranded,
    );
    flows("would keep as extra copies (still allowed, no longer placed)", &p.kept);
    if !p.refused.is_empty() {
        println!("copies the policy engine would refuse:");
        for r in &p.refused {
            println!(
                "  {:<14} {:>8} versions {:>14} bytes: {}",
                r.hub, r.versions, r.bytes, r.reason
            );
        }
    }
    if p.grants.is_empty() {
        println!("grants needed: none");
    } else {
        println!("grants needed:");
        for g in &p.grants {
            let left = g
                .volume_left_bytes
                .map_or_else(|| "no cap".to_owned(), |l| format!("{l} bytes left this year"));
            let enough = if g.enough { "enough" } else { "NOT ENOUGH" };
            println!(
                "  {} -> {}: grant {} carries {} versions, {} bytes ({left}: {enough})",
                g.from,
                g.to,
                g.grant.as_deref().unwrap_or("-"),
                g.versions,
                g.bytes
            );
            if !g.rule.is_empty() {
                println!("      rule: {}", g.rule);
            }
        }
    }
    if p.short > 0 {
        println!("versions that would stay short of their copies: {}", p.short);
    }
    if !p.unreachable.is_empty() {
        println!(
            "hubs that did not answer (their copies are not counted): {}",
            p.unreachable.join(", ")
        );
    }
    println!("strands data: {}", if p.strands { "YES" } else { "no" });
}
