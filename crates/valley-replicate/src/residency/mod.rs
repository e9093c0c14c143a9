//! Residency you can prove: where every version of a bucket is, why it may be there, and the
//! audit records that put it there ([`report`]); a check of such a report against the hubs
//! ([`verify`]); and what a policy change would do before it is made ([`plan`]).
//!
//! All three start from [`Evidence`]: what every hub of the network says it holds of a bucket
//! (version summaries), the transfer records of its audit chain for that bucket, and the head
//! and state of its chain, gathered by the hub asked ([`gather`]) over the peer API. The
//! report and the plan are pure functions of the evidence, the policy and the grants, so the
//! same evidence always gives the same report, and `verify` re-gathers evidence (at any hub)
//! and compares claim by claim.

pub mod evidence;
pub mod plan;
pub mod report;
pub mod verify;

pub use evidence::{Evidence, HubEvidence, gather, local_evidence};
pub use plan::{PolicyPlan, plan_change};
pub use report::{REPORT_FORMAT, Report, build_report};
pub use verify::verify_report;

/// The words a transfer record's detail carries to name the version it moved (hlc, origin), so
/// a report can tie each copy to the records of its own arrival.
#[must_use]
pub fn version_tag(hlc: u64, origin: &str) -> String {
    format!("[version {hlc}@{origin}]")
}

/// The version a transfer record's detail names, if it names one ([`version_tag`]).
#[must_use]
pub fn tagged_version(detail: &str) -> Option<(u64, &str)> {
    let start = detail.rfind("[version ")?;
    let inner = detail[start + "[version ".len()..].strip_suffix(']')?;
    let (hlc, origin) = inner.split_once('@')?;
    Some((hlc.parse().ok()?, origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_tags_round_trip_at_the_end_of_a_detail() {
        let detail = format!("replicated to b: stays in CN {}", version_tag(17, "hub-a"));
        assert_eq!(tagged_version(&detail), Some((17, "hub-a")));
        assert_eq!(tagged_version("replicated to b: stays in CN"), None);
        assert_eq!(tagged_version("x [version 12@a] and more"), None);
    }
}
