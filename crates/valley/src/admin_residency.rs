//! The admin calls of residency: the report of a bucket, the check of a report, and the
//! dry-run of a policy change. Each gathers evidence from every hub through this one.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use valley_replicate::residency::{self, Report};
use valley_replicate::{Hub, wire};

use crate::admin::{hub_error, json, malformed, policy_of_body, reply};

/// The answer to `residency-verify`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReportCheck {
    pub ok: bool,
    /// The first claim not confirmed, or what was confirmed.
    pub detail: String,
    pub versions: u64,
    pub copies: u64,
    pub records: u64,
    pub hubs: u64,
}

/// `GET residency-report?bucket=B[&at=UNIX_MS]`.
pub async fn report(hub: &Arc<Hub>, query: &str) -> Response<Bytes> {
    let Some(bucket) = wire::query_param(query, "bucket") else {
        return reply(StatusCode::BAD_REQUEST, "bucket is required");
    };
    let at = match wire::query_param(query, "at").map(|a| a.parse::<u64>()) {
        None => None,
        Some(Ok(at)) => Some(at),
        Some(Err(_)) => return reply(StatusCode::BAD_REQUEST, "at is a time in Unix milliseconds"),
    };
    match residency::gather(hub, &bucket, true, &BTreeMap::new()).await {
        Ok(evidence) => json(&residency::build_report(&evidence, &hub.topology, at)),
        Err(e) => hub_error(&e),
    }
}

/// `POST residency-verify` with a report as its body.
/// `refused` answers the refusal for a bucket the caller may not manage.
pub async fn verify(
    hub: &Arc<Hub>,
    body: &[u8],
    refused: &(dyn Fn(&str) -> Option<Response<Bytes>> + Sync),
) -> Response<Bytes> {
    let report: Report = match serde_json::from_slice(body) {
        Ok(report) => report,
        Err(e) => return reply(StatusCode::BAD_REQUEST, format!("not a residency report: {e}")),
    };
    if let Some(refusal) = refused(&report.bucket) {
        return refusal;
    }
    let anchors = report
        .hubs
        .iter()
        .filter_map(|h| Some((h.hub.clone(), h.head?)))
        .collect();
    let evidence = match residency::gather(hub, &report.bucket, true, &anchors).await {
        Ok(evidence) => evidence,
        Err(e) => return hub_error(&e),
    };
    json(&match residency::verify_report(&report, &evidence, &hub.topology) {
        Ok(v) => ReportCheck {
            ok: true,
            detail: format!(
                "report of bucket {:?} verified: {} versions, {} copies, {} audit records confirmed in the chains of {} hubs (checked at {})",
                report.bucket, v.versions, v.copies, v.records, v.hubs, hub.id
            ),
            versions: v.versions,
            copies: v.copies,
            records: v.records,
            hubs: v.hubs,
        },
        Err(claim) => ReportCheck {
            ok: false,
            detail: claim,
            versions: 0,
            copies: 0,
            records: 0,
            hubs: 0,
        },
    })
}

/// `POST policy-dry-run?bucket=B` with the proposed policy (TOML) as its body.
pub async fn dry_run(hub: &Arc<Hub>, query: &str, body: &[u8]) -> Response<Bytes> {
    let Some(bucket) = wire::query_param(query, "bucket") else {
        return reply(StatusCode::BAD_REQUEST, "bucket is required");
    };
    let policy = match policy_of_body(body) {
        Ok(p) => p,
        Err(why) => return malformed(why),
    };
    match residency::plan_change(hub, &bucket, &policy).await {
        Ok(plan) => json(&plan),
        Err(e) => hub_error(&e),
    }
}
