//! Valley's shared vocabulary, free of I/O: the named limits every layer enforces and the
//! hybrid-logical-clock timestamps that order object versions across hubs.

pub mod hlc;
pub mod limits;

pub use hlc::{Hlc, HlcClock};

/// The tenant every hub has from its first start; the root credentials are its admin user,
/// and buckets and grants from before tenants existed belong to it.
pub const DEFAULT_TENANT: &str = "default";

/// The user-metadata name (`x-amz-meta-valley-individuals`) under which an object declares how
/// many individuals' data it carries: what the rule packs' volume thresholds count.
pub const INDIVIDUALS_METADATA: &str = "valley-individuals";
