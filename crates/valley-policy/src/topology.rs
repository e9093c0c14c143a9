//! The network topology: one TOML file of `[[hub]]` and `[[link]]` tables that every hub loads.
//!
//! Unknown keys, duplicate hubs and links naming unknown hubs are errors that name the line.
//! [`Topology::hash`] is computed over a canonical form (so comments and key order do not
//! matter); hubs refuse a peer whose hash differs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("{0}")]
    Parse(String),
    #[error("line {line}: {message}")]
    Invalid { line: usize, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Near demand: latency-sensitive data.
    East,
    /// Cheap, green power: cold data and batch computation.
    West,
}

impl Role {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::East => "east",
            Role::West => "west",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "east" => Ok(Role::East),
            "west" => Ok(Role::West),
            other => Err(format!("role must be east or west, not {other:?}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hub {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub national_hub: Option<String>,
    /// `CN`, `HK`, `EU`, …
    pub jurisdiction: String,
    pub role: Role,
    pub lat: f64,
    pub lon: f64,
    /// Hubs that one regional event (grid failure, earthquake zone) could take down together.
    pub failure_domain: String,
    #[serde(default)]
    pub pue_target: Option<f64>,
    #[serde(default)]
    pub renewable_share: Option<f64>,
    #[serde(default)]
    pub power_price_cny_kwh: Option<f64>,
    /// The URL clients use for this hub's S3 API.
    #[serde(default)]
    pub s3_endpoint: Option<String>,
    /// The URL other hubs use to reach this hub.
    #[serde(default)]
    pub peer_endpoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub a: String,
    pub b: String,
    pub rtt_ms: f64,
    pub bandwidth_mbit: f64,
    #[serde(default)]
    pub loss: f64,
    /// The most replication may send over this link, each way, in Mbit/s (none: no limit).
    /// Keeps bulk copies from starving everything else that shares a cross-border line.
    #[serde(default)]
    pub replication_limit_mbit: Option<f64>,
}

/// `[tls]`: how hubs know each other. Every hub's certificate is issued by the network CA this
/// pins (by the SHA-256 of its DER certificate) and names the hub as `<id>.hub.valley`; a peer
/// is the hub its verified certificate names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPin {
    pub ca_sha256: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    #[serde(default)]
    tls: Option<toml::Spanned<TlsPin>>,
    #[serde(default)]
    hub: Vec<toml::Spanned<Hub>>,
    #[serde(default)]
    link: Vec<toml::Spanned<Link>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    hubs: BTreeMap<String, Hub>,
    links: Vec<Link>,
    tls: Option<TlsPin>,
    hash: String,
    /// The rule packs grants are judged by (the shipped ones unless files are given).
    rules: crate::rules::RuleBook,
    /// [`crate::rules::RuleBook::hash`] of `rules`, computed once: peers compare it.
    rules_hash: String,
}

fn line_of(source: &str, offset: usize) -> usize {
    source.as_bytes()[..offset.min(source.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

impl Topology {
    pub fn parse(source: &str) -> Result<Self, TopologyError> {
        let raw: RawTopology = toml::from_str(source).map_err(|e| {
            let line = e.span().map(|s| line_of(source, s.start));
            let message = e.message().to_owned();
            match line {
                Some(line) => TopologyError::Invalid { line, message },
                None => TopologyError::Parse(message),
            }
        })?;
        let mut hubs = BTreeMap::new();
        for spanned in raw.hub {
            let line = line_of(source, spanned.span().start);
            let hub = spanned.into_inner();
            let invalid = |message: String| TopologyError::Invalid { line, message };
            if hub.id.is_empty()
                || !hub
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(format!(
                    "hub id {:?} must be letters, digits, '-' or '_'",
                    hub.id
                )));
            }
            if hub.jurisdiction.is_empty() {
                return Err(invalid(format!("hub {:?} has an empty jurisdiction", hub.id)));
            }
            if !(-90.0..=90.0).contains(&hub.lat) || !(-180.0..=180.0).contains(&hub.lon) {
                return Err(invalid(format!("hub {:?} has coordinates outside the globe", hub.id)));
            }
            if hubs.contains_key(&hub.id) {
                return Err(invalid(format!("hub {:?} is declared twice", hub.id)));
            }
            hubs.insert(hub.id.clone(), hub);
        }
        if hubs.is_empty() {
            return Err(TopologyError::Parse("the topology declares no [[hub]]".into()));
        }
        let mut links = Vec::new();
        for spanned in raw.link {
            let line = line_of(source, spanned.span().start);
            let link = spanned.into_inner();
            for end in [&link.a, &link.b] {
                if !hubs.contains_key(end) {
                    return Err(TopologyError::Invalid {
                        line,
                        message: format!("link end {end:?} is not a declared hub"),
                    });
                }
            }
            if link.a == link.b {
                return Err(TopologyError::Invalid {
                    line,
                    message: format!("link joins hub {:?} to itself", link.a),
                });
            }
            let figures_ok = (0.0..1.0).contains(&link.loss)
                && (0.0..f64::INFINITY).contains(&link.rtt_ms)
                && link.bandwidth_mbit > 0.0
                && link.bandwidth_mbit.is_finite()
                && link.replication_limit_mbit.is_none_or(|m| m > 0.0 && m.is_finite());
            if !figures_ok {
                return Err(TopologyError::Invalid {
                    line,
                    message: "link needs finite rtt_ms >= 0, bandwidth_mbit > 0, 0 <= loss < 1 and replication_limit_mbit > 0"
                        .into(),
                });
            }
            links.push(link);
        }
        let tls = match raw.tls {
            None => None,
            Some(spanned) => {
                let line = line_of(source, spanned.span().start);
                let pin = spanned.into_inner();
                let hex_ok = pin.ca_sha256.len() == 64 && pin.ca_sha256.bytes().all(|b| b.is_ascii_hexdigit());
                if !hex_ok {
                    return Err(TopologyError::Invalid {
                        line,
                        message: "[tls] ca_sha256 must be the 64 hex digits of the network CA's SHA-256".into(),
                    });
                }
                Some(TlsPin {
                    ca_sha256: pin.ca_sha256.to_ascii_lowercase(),
                })
            }
        };
        let hash = canonical_hash(&hubs, &links, tls.as_ref());
        let rules = crate::rules::RuleBook::shipped();
        Ok(Self {
            hubs,
            links,
            tls,
            hash,
            rules_hash: rules.hash(),
            rules,
        })
    }

    /// Hex SHA-256 of the canonical form: equal for files that declare the same network.
    #[must_use]
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The rule packs every grant is judged by.
    #[must_use]
    pub fn rules(&self) -> &crate::rules::RuleBook {
        &self.rules
    }

    /// The same network judged by `rules` instead of the shipped packs.
    #[must_use]
    pub fn with_rules(mut self, rules: crate::rules::RuleBook) -> Self {
        self.rules_hash = rules.hash();
        self.rules = rules;
        self
    }

    /// Hex SHA-256 of the rule packs loaded: hubs that judge by different packs refuse each
    /// other's calls, as for different topologies.
    #[must_use]
    pub fn rules_hash(&self) -> &str {
        &self.rules_hash
    }

    #[must_use]
    pub fn hub(&self, id: &str) -> Option<&Hub> {
        self.hubs.get(id)
    }

    /// The network CA's pin, when hubs talk over mutual TLS.
    #[must_use]
    pub fn tls(&self) -> Option<&TlsPin> {
        self.tls.as_ref()
    }

    /// Hubs in id order.
    pub fn hubs(&self) -> impl Iterator<Item = &Hub> {
        self.hubs.values()
    }

    #[must_use]
    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// The declared link between two hubs, either way round.
    #[must_use]
    pub fn link(&self, a: &str, b: &str) -> Option<&Link> {
        self.links
            .iter()
            .find(|l| (l.a == a && l.b == b) || (l.a == b && l.b == a))
    }

    /// Every jurisdiction some hub is in.
    #[must_use]
    pub fn jurisdictions(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.hubs.values().map(|h| h.jurisdiction.as_str()).collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

fn canonical_hash(hubs: &BTreeMap<String, Hub>, links: &[Link], tls: Option<&TlsPin>) -> String {
    let mut text = String::new();
    // Absent, it adds nothing: topologies without TLS keep the hash they had.
    if let Some(pin) = tls {
        let _ = writeln!(text, "tls|{}", pin.ca_sha256);
    }
    for h in hubs.values() {
        let _ = writeln!(
            text,
            "hub|{}|{:?}|{:?}|{:?}|{}|{}|{}|{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}",
            h.id,
            h.name,
            h.cluster,
            h.national_hub,
            h.jurisdiction,
            h.role.as_str(),
            h.lat,
            h.lon,
            h.failure_domain,
            h.pue_target,
            h.renewable_share,
            h.power_price_cny_kwh,
            h.s3_endpoint,
            h.peer_endpoint
        );
    }
    let mut sorted: Vec<String> = links
        .iter()
        .map(|l| {
            let (a, b) = if l.a <= l.b { (&l.a, &l.b) } else { (&l.b, &l.a) };
            format!(
                "link|{a}|{b}|{}|{}|{}|{:?}",
                l.rtt_ms, l.bandwidth_mbit, l.loss, l.replication_limit_mbit
            )
        })
        .collect();
    sorted.sort();
    for l in sorted {
        text.push_str(&l);
        text.push('\n');
    }
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
[[hub]]
id = "a"
jurisdiction = "CN"
role = "east"
lat = 1.0
lon = 2.0
failure_domain = "grid-1"

[[hub]]
id = "b"
jurisdiction = "EU"
role = "west"
lat = 1.0
lon = 2.0
failure_domain = "grid-2"

[[link]]
a = "a"
b = "b"
rtt_ms = 200
bandwidth_mbit = 100
loss = 0.02
"#;

    #[test]
    fn parses_hubs_and_links() {
        let t = Topology::parse(TWO).unwrap();
        assert_eq!(t.hub("b").unwrap().role, Role::West);
        assert_eq!(t.link("b", "a").unwrap().rtt_ms, 200.0);
        assert_eq!(t.jurisdictions(), vec!["CN", "EU"]);
    }

    #[test]
    fn unknown_key_names_its_line() {
        let bad = TWO.replace(
            "failure_domain = \"grid-2\"",
            "failure_domain = \"grid-2\"\ncolour = \"red\"",
        );
        let err = Topology::parse(&bad).unwrap_err().to_string();
        assert!(err.contains("line 17"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn dangling_link_end_names_its_line() {
        let bad = TWO.replace("b = \"b\"", "b = \"nowhere\"");
        let err = Topology::parse(&bad).unwrap_err().to_string();
        assert!(err.starts_with("line 18:"), "{err}");
        assert!(err.contains("nowhere"), "{err}");
    }

    #[test]
    fn hash_ignores_comments_and_order_but_not_content() {
        let a = Topology::parse(TWO).unwrap();
        let reordered = format!(
            "# a comment\n{}",
            TWO.replace(
                "rtt_ms = 200\nbandwidth_mbit = 100",
                "bandwidth_mbit = 100\nrtt_ms = 200"
            )
        );
        assert_eq!(a.hash(), Topology::parse(&reordered).unwrap().hash());
        let changed = TWO.replace("rtt_ms = 200", "rtt_ms = 201");
        assert_ne!(a.hash(), Topology::parse(&changed).unwrap().hash());
    }

    #[test]
    fn the_shipped_reference_network_parses() {
        let t = Topology::parse(include_str!("../../../examples/network.toml")).unwrap();
        assert!(t.hubs().count() >= 12);
        assert!(t.hub("frankfurt").is_some() && t.hub("hong-kong").is_some());
        for hub in t.hubs() {
            assert!(hub.peer_endpoint.is_some() && hub.s3_endpoint.is_some(), "{}", hub.id);
        }
    }
}
