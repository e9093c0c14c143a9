//! Placement policies: where a bucket's data may live, how many copies, and where they go.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::topology::{Hub, Role, Topology};

/// After `after_days`, copies live only in hubs of `role` (e.g. cold data moves west).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tiering {
    pub after_days: u32,
    pub role: Role,
}

/// A bucket's placement policy. A hub may hold the bucket's data only if it is in one of
/// `jurisdictions` (when given) and is one of `hubs` (when given); at least one is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementPolicy {
    #[serde(default)]
    pub jurisdictions: Vec<String>,
    #[serde(default)]
    pub hubs: Vec<String>,
    #[serde(default = "one")]
    pub copies: u32,
    #[serde(default)]
    pub distinct_failure_domains: bool,
    #[serde(default)]
    pub home_hub: Option<String>,
    /// Classification tags (`personal-info`, `important-data`, …) that bring in the rules of
    /// law: classified data crosses a border only under a valid grant.
    #[serde(default)]
    pub classifications: Vec<String>,
    #[serde(default)]
    pub tiering: Option<Tiering>,
    /// Copies, the local one included, that must be durable in distinct failure domains
    /// before a write is acknowledged (1: asynchronous replication only).
    #[serde(default = "one")]
    pub ack_copies: u32,
    /// How long a write waits for its synchronous copies.
    #[serde(default = "ack_timeout_default")]
    pub ack_timeout_seconds: u32,
    /// What a write does when its synchronous copies do not answer in time.
    #[serde(default)]
    pub ack_fallback: AckFallback,
    /// The recovery point a bucket accepts: once its oldest unreplicated write is older than
    /// this, new writes are slowed and then refused (SlowDown) until replication catches up.
    #[serde(default)]
    pub max_lag_seconds: Option<u32>,
    /// How many individuals' data each object carries when it does not say
    /// (`x-amz-meta-valley-individuals`): what the law's volume thresholds count. Omitted
    /// from the record when unset, so hubs of earlier releases read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub individuals_per_object: Option<u64>,
}

pub use valley_types::INDIVIDUALS_METADATA;

/// How many individuals' data an object carries: what its metadata declares, else its
/// bucket's default, else `None` (undeclared: the volume thresholds count nothing they are
/// not told, so such an object does not flow under a basis that has one).
#[must_use]
pub fn declared_individuals(user_metadata: &[(String, String)], policy: &PlacementPolicy) -> Option<u64> {
    user_metadata
        .iter()
        .find(|(name, _)| name == INDIVIDUALS_METADATA)
        .and_then(|(_, value)| value.trim().parse().ok())
        .or(policy.individuals_per_object)
}

/// What a write whose synchronous copies cannot be made in time does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AckFallback {
    /// The write fails; no copy of it stays visible anywhere.
    #[default]
    Fail,
    /// The write is acknowledged with fewer copies, says so in a response header and in the
    /// audit log, and replicates asynchronously.
    Degrade,
}

impl std::str::FromStr for AckFallback {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fail" => Ok(Self::Fail),
            "degrade" => Ok(Self::Degrade),
            other => Err(format!("ack fallback {other:?}: expected fail or degrade")),
        }
    }
}

fn one() -> u32 {
    1
}

fn ack_timeout_default() -> u32 {
    10
}

/// Longest wait for synchronous copies a policy may set.
pub const ACK_TIMEOUT_SECONDS_MAX: u32 = 300;

impl Default for PlacementPolicy {
    /// No jurisdiction or hub named (not valid by itself), one copy, asynchronous.
    fn default() -> Self {
        Self {
            jurisdictions: Vec::new(),
            hubs: Vec::new(),
            copies: 1,
            distinct_failure_domains: false,
            home_hub: None,
            classifications: Vec::new(),
            tiering: None,
            ack_copies: 1,
            ack_timeout_seconds: ack_timeout_default(),
            ack_fallback: AckFallback::Fail,
            max_lag_seconds: None,
            individuals_per_object: None,
        }
    }
}

impl PlacementPolicy {
    /// The default for a new bucket: the creating hub's jurisdiction only, one copy.
    #[must_use]
    pub fn local_default(hub: &Hub) -> Self {
        Self {
            jurisdictions: vec![hub.jurisdiction.clone()],
            ..Self::default()
        }
    }

    /// Whether `hub` may hold this bucket's data at all.
    #[must_use]
    pub fn allows(&self, hub: &Hub) -> bool {
        (self.jurisdictions.is_empty() || self.jurisdictions.contains(&hub.jurisdiction))
            && (self.hubs.is_empty() || self.hubs.contains(&hub.id))
    }

    /// Checks the policy against the network: names exist, and the copies can be placed.
    pub fn validate(&self, topology: &Topology) -> Result<(), String> {
        if self.jurisdictions.is_empty() && self.hubs.is_empty() {
            return Err("a policy must name its allowed jurisdictions or hubs".into());
        }
        if self.copies == 0 {
            return Err("copies must be at least 1".into());
        }
        let hubs = topology.hubs().count();
        if self.copies as usize > hubs {
            return Err(format!("copies {} is more than the network's {hubs} hubs", self.copies));
        }
        if self.ack_copies == 0 || self.ack_copies > self.copies {
            return Err(format!(
                "ack_copies {} must be between 1 and copies ({})",
                self.ack_copies, self.copies
            ));
        }
        if self.ack_copies > 1 && !self.distinct_failure_domains {
            return Err(
                "ack_copies above 1 counts copies in distinct failure domains: set distinct_failure_domains".into(),
            );
        }
        if self.ack_timeout_seconds == 0 || self.ack_timeout_seconds > ACK_TIMEOUT_SECONDS_MAX {
            return Err(format!(
                "ack_timeout_seconds {} must be between 1 and {ACK_TIMEOUT_SECONDS_MAX}",
                self.ack_timeout_seconds
            ));
        }
        if self.max_lag_seconds == Some(0) {
            return Err("max_lag_seconds must be at least 1 (leave it out for no limit)".into());
        }
        let known = topology.jurisdictions();
        for j in &self.jurisdictions {
            if !known.contains(&j.as_str()) {
                return Err(format!("no hub of the network is in jurisdiction {j:?}"));
            }
        }
        for h in self.hubs.iter().chain(&self.home_hub) {
            if topology.hub(h).is_none() {
                return Err(format!("hub {h:?} is not in the network"));
            }
        }
        if let Some(home) = &self.home_hub
            && let Some(hub) = topology.hub(home)
            && !self.allows(hub)
        {
            return Err(format!("home hub {home:?} is not allowed by the policy itself"));
        }
        for c in &self.classifications {
            if c.is_empty()
                || !c
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(format!(
                    "classification {c:?} must be lowercase letters, digits and '-'"
                ));
            }
        }
        let origin = self
            .home_hub
            .clone()
            .or_else(|| topology.hubs().find(|h| self.allows(h)).map(|h| h.id.clone()));
        place(self, topology, origin.as_deref().unwrap_or_default(), false)?;
        if self.tiering.is_some() {
            place(self, topology, origin.as_deref().unwrap_or_default(), true)?;
        }
        Ok(())
    }
}

/// The hubs that should hold copies of an object written at `origin`: `policy.copies` allowed
/// hubs, the home hub first, then the origin, then the others nearest the origin by declared
/// RTT (then by id), taking distinct failure domains when the policy asks. `tiered` applies the
/// tiering rule (the object is older than `after_days`). Deterministic: every hub computes the
/// same answer from the same inputs.
pub fn place(policy: &PlacementPolicy, topology: &Topology, origin: &str, tiered: bool) -> Result<Vec<String>, String> {
    place_avoiding(policy, topology, origin, tiered, &BTreeSet::new())
}

/// [`place`] with some hubs declared lost: they are passed over and the next hubs in the
/// order take their copies. When too few hubs remain, the copies that can be placed are
/// (a degraded placement, not an error): losing hubs must not stop writes. The policy must
/// still be satisfiable on the whole network.
pub fn place_avoiding(
    policy: &PlacementPolicy,
    topology: &Topology,
    origin: &str,
    tiered: bool,
    lost: &BTreeSet<String>,
) -> Result<Vec<String>, String> {
    if !lost.is_empty() {
        place_avoiding(policy, topology, origin, tiered, &BTreeSet::new())?;
    }
    let tier_role = policy.tiering.as_ref().filter(|_| tiered).map(|t| t.role);
    let mut candidates: Vec<&Hub> = topology
        .hubs()
        .filter(|h| policy.allows(h) && tier_role.is_none_or(|r| h.role == r) && !lost.contains(&h.id))
        .collect();
    let rank = |h: &Hub| -> (u8, u64, String) {
        let first = if policy.home_hub.as_deref() == Some(h.id.as_str()) {
            0
        } else if h.id == origin {
            1
        } else {
            2
        };
        let rtt = topology
            .link(origin, &h.id)
            .map_or(u64::MAX, |l| (l.rtt_ms * 1000.0) as u64);
        (first, rtt, h.id.clone())
    };
    candidates.sort_by_key(|h| rank(h));
    let wanted = policy.copies as usize;
    // `copies` comes from a policy record (a peer's, too): never reserve more than can be placed.
    let mut chosen: Vec<&Hub> = Vec::with_capacity(wanted.min(candidates.len()));
    for hub in candidates {
        if chosen.len() == wanted {
            break;
        }
        if policy.distinct_failure_domains && chosen.iter().any(|c| c.failure_domain == hub.failure_domain) {
            continue;
        }
        chosen.push(hub);
    }
    if chosen.len() < wanted && lost.is_empty() {
        let how = if policy.distinct_failure_domains {
            " in distinct failure domains"
        } else {
            ""
        };
        let tier = tier_role
            .map(|r| format!(" among {} hubs", r.as_str()))
            .unwrap_or_default();
        return Err(format!(
            "the policy needs {wanted} copies{how}{tier}, but only {} allowed hubs qualify",
            chosen.len()
        ));
    }
    Ok(chosen.into_iter().map(|h| h.id.clone()).collect())
}
