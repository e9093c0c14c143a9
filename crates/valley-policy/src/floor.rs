//! Residency floors: what a bucket's data may never exceed, whatever its policy says later.
//!
//! A server-side copy (CopyObject, UploadPartCopy) moves another bucket's data. It is allowed
//! only when every hub the destination's policy allows is one the source's data may be at; the
//! destination then takes on a floor — the hubs the source allowed and the source's
//! classifications — and its effective policy is its own policy within all its floors. So a
//! later change of the destination's policy (widened by mistake, or to hubs the source never
//! allowed) cannot carry the copied bytes further than their origin allowed. Floors are
//! bucket-wide (the whole destination bucket is held to them, not only the copied objects) and
//! only ever narrow: a second copy from the same source intersects with the first.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::placement::PlacementPolicy;
use crate::topology::Topology;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Floor {
    /// The bucket whose data was copied in.
    pub source_bucket: String,
    /// The hubs that data may be at.
    pub hubs: BTreeSet<String>,
    /// The source's classifications: the copied data keeps them.
    pub classifications: BTreeSet<String>,
}

impl Floor {
    /// The floor a copy out of a bucket with `policy` sets: every hub that policy allows.
    #[must_use]
    pub fn of(source_bucket: &str, policy: &PlacementPolicy, topology: &Topology) -> Self {
        Self {
            source_bucket: source_bucket.to_owned(),
            hubs: topology
                .hubs()
                .filter(|h| policy.allows(h))
                .map(|h| h.id.clone())
                .collect(),
            classifications: policy.classifications.iter().cloned().collect(),
        }
    }

    /// This floor narrowed by `other` (of the same source): hubs both allow, classifications of
    /// either.
    #[must_use]
    pub fn narrowed(&self, other: &Floor) -> Floor {
        Floor {
            source_bucket: self.source_bucket.clone(),
            hubs: self.hubs.intersection(&other.hubs).cloned().collect(),
            classifications: self.classifications.union(&other.classifications).cloned().collect(),
        }
    }
}

impl PlacementPolicy {
    /// This policy held to `floors`: a hub is allowed only if the policy and every floor allow
    /// it; the floors' classifications are added. Without floors, the policy itself.
    #[must_use]
    pub fn within_floors(&self, floors: &[Floor], topology: &Topology) -> PlacementPolicy {
        if floors.is_empty() {
            return self.clone();
        }
        let mut held = self.clone();
        held.hubs = topology
            .hubs()
            .filter(|h| self.allows(h) && floors.iter().all(|f| f.hubs.contains(&h.id)))
            .map(|h| h.id.clone())
            .collect();
        // The floors may leave fewer hubs than the policy wants copies: as many as there are.
        let allowed = u32::try_from(held.hubs.len()).unwrap_or(u32::MAX);
        held.copies = held.copies.min(allowed.max(1));
        if held.hubs.is_empty() {
            // Nothing is allowed: an empty list would mean "any hub", so name no hub that
            // exists (the topology refuses such ids).
            held.hubs.push(NO_HUB.to_owned());
        }
        if held.home_hub.as_ref().is_some_and(|home| !held.hubs.contains(home)) {
            held.home_hub = None;
        }
        for floor in floors {
            for c in &floor.classifications {
                if !held.classifications.contains(c) {
                    held.classifications.push(c.clone());
                }
            }
        }
        held
    }
}

/// A hub id no topology can declare (ids are letters, digits, '-' and '_').
const NO_HUB: &str = "(none: the bucket's floors and policy allow no hub in common)";

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> Topology {
        Topology::parse(include_str!("../../../examples/network.toml")).expect("example network")
    }

    fn policy(jurisdictions: &[&str], copies: u32) -> PlacementPolicy {
        PlacementPolicy {
            jurisdictions: jurisdictions.iter().map(|j| (*j).to_owned()).collect(),
            hubs: Vec::new(),
            copies,
            distinct_failure_domains: false,
            home_hub: None,
            classifications: Vec::new(),
            tiering: None,
            ..PlacementPolicy::default()
        }
    }

    #[test]
    fn a_floor_holds_a_wider_policy_to_its_hubs_and_adds_its_classes() {
        let net = network();
        let mut source = policy(&["CN"], 2);
        source.classifications = vec!["personal-info".into()];
        let floor = Floor::of("src", &source, &net);
        let widened = policy(&["CN", "HK", "EU"], 40);
        let held = widened.within_floors(std::slice::from_ref(&floor), &net);
        for hub in net.hubs() {
            assert_eq!(held.allows(hub), hub.jurisdiction == "CN", "{}", hub.id);
        }
        assert_eq!(held.classifications, vec!["personal-info".to_owned()]);
        assert_eq!(held.copies as usize, floor.hubs.len(), "as many copies as hubs remain");
        assert_eq!(widened.within_floors(&[], &net), widened);
    }

    #[test]
    fn floors_that_share_no_hub_allow_none() {
        let net = network();
        let cn = Floor::of("a", &policy(&["CN"], 1), &net);
        let eu = Floor::of("b", &policy(&["EU"], 1), &net);
        let held = policy(&["CN", "EU"], 1).within_floors(&[cn, eu], &net);
        assert!(net.hubs().all(|h| !held.allows(h)));
    }

    #[test]
    fn narrowing_is_order_free() {
        let net = network();
        let a = Floor::of("s", &policy(&["CN", "HK"], 1), &net);
        let mut b = Floor::of("s", &policy(&["HK", "EU"], 1), &net);
        b.classifications.insert("important-data".into());
        assert_eq!(a.narrowed(&b), b.narrowed(&a));
        assert!(
            a.narrowed(&b)
                .hubs
                .iter()
                .all(|h| net.hub(h).unwrap().jurisdiction == "HK")
        );
    }
}
