//! What a caller records: the kind of event and its optional subject fields.
//!
//! Identifiers (hub, bucket, key, peer, grant, rule) are refused when over
//! [`MAX_FIELD_BYTES`] rather than cut, because a cut identifier would name a different thing
//! and silently escape a filter. The free-text detail is cut to [`MAX_DETAIL_BYTES`] with
//! [`DETAIL_TRUNCATION_MARKER`], because a long explanation must not stop an event from being
//! recorded.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{AuditError, AuditResult};

/// Longest identifier field, in bytes. S3 keys are at most 1024 bytes; hub, bucket, grant and
/// rule names are far shorter.
pub const MAX_FIELD_BYTES: usize = 1024;
/// Longest detail string, in bytes, including [`DETAIL_TRUNCATION_MARKER`] when cut.
pub const MAX_DETAIL_BYTES: usize = 4096;
/// Appended to a detail string that was cut to [`MAX_DETAIL_BYTES`].
pub const DETAIL_TRUNCATION_MARKER: &str = "…[truncated]";

/// What happened. Serialized kebab-case (`policy-decision`, …); the string is part of the
/// hashed canonical form, so a variant's name never changes once released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AuditKind {
    /// The policy engine allowed or refused a transfer or placement.
    PolicyDecision,
    /// Object bytes or query results moved between hubs.
    Transfer,
    /// A request refused before reaching the policy engine (auth, limits, malformed).
    RefusedRequest,
    /// A bucket's placement policy was created, changed or removed.
    PolicyChange,
    /// A cross-border grant was recorded, changed, expired or revoked.
    GrantChange,
    /// A read or write of tenant data.
    Access,
    /// A peer's signed audit chain head, as this hub received and checked it: the record that
    /// lets this hub (or anyone holding its chain) later detect the peer rewriting its own.
    PeerHead,
    /// A write acknowledged with fewer synchronous copies than its bucket's `ack_copies`
    /// (fallback `degrade`): it replicates asynchronously from then on.
    SyncDegraded,
    /// A key-service key was destroyed (crypto-shredding): what was sealed under it is
    /// unreadable for good. Recorded by every hub as it learns of it.
    KeyDestroyed,
}

impl AuditKind {
    pub const ALL: [AuditKind; 9] = [
        AuditKind::PolicyDecision,
        AuditKind::Transfer,
        AuditKind::RefusedRequest,
        AuditKind::PolicyChange,
        AuditKind::GrantChange,
        AuditKind::Access,
        AuditKind::PeerHead,
        AuditKind::SyncDegraded,
        AuditKind::KeyDestroyed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::PolicyDecision => "policy-decision",
            AuditKind::Transfer => "transfer",
            AuditKind::RefusedRequest => "refused-request",
            AuditKind::PolicyChange => "policy-change",
            AuditKind::GrantChange => "grant-change",
            AuditKind::Access => "access",
            AuditKind::PeerHead => "peer-head",
            AuditKind::SyncDegraded => "sync-degraded",
            AuditKind::KeyDestroyed => "key-destroyed",
        }
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown audit kind {s:?}"))
    }
}

/// The caller-supplied part of a record; the log adds seq, time and the chain hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// The hub that recorded the event (this hub).
    pub hub: String,
    pub kind: AuditKind,
    pub bucket: Option<String>,
    pub key: Option<String>,
    /// The other hub of a transfer or replication, if any.
    pub peer: Option<String>,
    /// The grant a cross-border decision relied on, if any.
    pub grant: Option<String>,
    /// The decision, for events that have one.
    pub allowed: Option<bool>,
    /// The policy rule that decided, if any.
    pub rule: Option<String>,
    pub bytes: Option<u64>,
    /// Free text for humans; cut to [`MAX_DETAIL_BYTES`].
    pub detail: String,
}

impl AuditEvent {
    pub fn new(hub: impl Into<String>, kind: AuditKind, detail: impl Into<String>) -> Self {
        AuditEvent {
            hub: hub.into(),
            kind,
            bucket: None,
            key: None,
            peer: None,
            grant: None,
            allowed: None,
            rule: None,
            bytes: None,
            detail: detail.into(),
        }
    }

    pub fn with_bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = Some(bucket.into());
        self
    }

    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_peer(mut self, peer: impl Into<String>) -> Self {
        self.peer = Some(peer.into());
        self
    }

    pub fn with_grant(mut self, grant: impl Into<String>) -> Self {
        self.grant = Some(grant.into());
        self
    }

    pub fn with_allowed(mut self, allowed: bool) -> Self {
        self.allowed = Some(allowed);
        self
    }

    pub fn with_rule(mut self, rule: impl Into<String>) -> Self {
        self.rule = Some(rule.into());
        self
    }

    pub fn with_bytes(mut self, bytes: u64) -> Self {
        self.bytes = Some(bytes);
        self
    }

    /// Applies the limits before the event is hashed, so the record handed back to the caller
    /// is exactly the one on disk.
    pub(crate) fn checked(mut self) -> AuditResult<Self> {
        check_field("hub", &self.hub)?;
        for (field, value) in [
            ("bucket", &self.bucket),
            ("key", &self.key),
            ("peer", &self.peer),
            ("grant", &self.grant),
            ("rule", &self.rule),
        ] {
            if let Some(value) = value {
                check_field(field, value)?;
            }
        }
        truncate_detail(&mut self.detail);
        Ok(self)
    }
}

fn check_field(field: &'static str, value: &str) -> AuditResult<()> {
    if value.len() > MAX_FIELD_BYTES {
        return Err(AuditError::FieldTooLong {
            field,
            len: value.len(),
            max: MAX_FIELD_BYTES,
        });
    }
    Ok(())
}

/// Cuts `detail` at a character boundary so that it, with the marker, fits [`MAX_DETAIL_BYTES`].
fn truncate_detail(detail: &mut String) {
    if detail.len() <= MAX_DETAIL_BYTES {
        return;
    }
    let mut cut = MAX_DETAIL_BYTES - DETAIL_TRUNCATION_MARKER.len();
    while !detail.is_char_boundary(cut) {
        cut -= 1;
    }
    detail.truncate(cut);
    detail.push_str(DETAIL_TRUNCATION_MARKER);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_strings_round_trip_through_serde_and_from_str() {
        for kind in AuditKind::ALL {
            let json = serde_json::to_string(&kind).expect("serialize");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<AuditKind>(&json).expect("parse"), kind);
            assert_eq!(kind.as_str().parse::<AuditKind>(), Ok(kind));
        }
        assert!("policy_decision".parse::<AuditKind>().is_err());
    }

    #[test]
    fn long_detail_is_cut_at_a_char_boundary_with_the_marker() {
        // 3-byte characters, so the cut point falls inside one.
        let detail = "€".repeat(MAX_DETAIL_BYTES);
        let event = AuditEvent::new("h", AuditKind::Access, detail)
            .checked()
            .expect("checked");
        assert!(event.detail.len() <= MAX_DETAIL_BYTES);
        assert!(event.detail.len() > MAX_DETAIL_BYTES - DETAIL_TRUNCATION_MARKER.len() - 3);
        assert!(event.detail.ends_with(DETAIL_TRUNCATION_MARKER));
        let kept = &event.detail[..event.detail.len() - DETAIL_TRUNCATION_MARKER.len()];
        assert!(kept.chars().all(|c| c == '€'));

        let exact = "a".repeat(MAX_DETAIL_BYTES);
        let event = AuditEvent::new("h", AuditKind::Access, exact.clone())
            .checked()
            .expect("checked");
        assert_eq!(event.detail, exact, "a detail at the limit is kept whole");
    }

    #[test]
    fn overlong_identifiers_are_refused() {
        let key = "k".repeat(MAX_FIELD_BYTES + 1);
        let err = AuditEvent::new("h", AuditKind::Access, "")
            .with_key(key)
            .checked()
            .unwrap_err();
        assert!(matches!(err, AuditError::FieldTooLong { field: "key", .. }), "{err}");
        let ok = "k".repeat(MAX_FIELD_BYTES);
        assert!(
            AuditEvent::new(ok.clone(), AuditKind::Access, "")
                .with_bucket(ok)
                .checked()
                .is_ok()
        );
    }
}
