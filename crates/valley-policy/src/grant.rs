//! Grants: recorded legal bases for cross-border flows of classified data.

use serde::{Deserialize, Serialize};

use crate::{Day, date_of};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    SecurityAssessment,
    StandardContract,
    Certification,
    Adequacy,
    Sccs,
    Bcr,
    ExemptContractPerformance,
    ExemptHr,
    ExemptEmergency,
    /// Exempt by volume: the exporter sends out fewer individuals' data a year than the law's
    /// exemption threshold (a rule pack's `individuals_below` says how many).
    ExemptVolume,
}

impl Basis {
    /// Every basis.
    pub const ALL: [Basis; 10] = [
        Basis::SecurityAssessment,
        Basis::StandardContract,
        Basis::Certification,
        Basis::Adequacy,
        Basis::Sccs,
        Basis::Bcr,
        Basis::ExemptContractPerformance,
        Basis::ExemptHr,
        Basis::ExemptEmergency,
        Basis::ExemptVolume,
    ];

    /// The basis as grants and rule packs name it (`standard-contract`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Basis::SecurityAssessment => "security-assessment",
            Basis::StandardContract => "standard-contract",
            Basis::Certification => "certification",
            Basis::Adequacy => "adequacy",
            Basis::Sccs => "sccs",
            Basis::Bcr => "bcr",
            Basis::ExemptContractPerformance => "exempt-contract-performance",
            Basis::ExemptHr => "exempt-hr",
            Basis::ExemptEmergency => "exempt-emergency",
            Basis::ExemptVolume => "exempt-volume",
        }
    }
}

impl std::str::FromStr for Basis {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json_like(s).ok_or_else(|| {
            format!(
                "unknown basis {s:?}; one of security-assessment, standard-contract, certification, adequacy, sccs, bcr, exempt-contract-performance, exempt-hr, exempt-emergency, exempt-volume"
            )
        })
    }
}

fn serde_json_like(s: &str) -> Option<Basis> {
    Some(match s {
        "security-assessment" => Basis::SecurityAssessment,
        "standard-contract" => Basis::StandardContract,
        "certification" => Basis::Certification,
        "adequacy" => Basis::Adequacy,
        "sccs" => Basis::Sccs,
        "bcr" => Basis::Bcr,
        "exempt-contract-performance" => Basis::ExemptContractPerformance,
        "exempt-hr" => Basis::ExemptHr,
        "exempt-emergency" => Basis::ExemptEmergency,
        "exempt-volume" => Basis::ExemptVolume,
        _ => return None,
    })
}

/// A legal basis for moving data classified `classifications` from one jurisdiction to
/// another, until the end of `expires`, within volume caps counted per calendar year. A grant
/// is its tenant's: a company's standard contract covers that company's data, not its
/// neighbour's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    /// The tenant whose data the grant covers. Grants recorded before tenants existed were the
    /// operator's, who was then the default tenant's admin.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    pub from: String,
    pub to: String,
    pub classifications: Vec<String>,
    pub basis: Basis,
    pub reference: String,
    /// Companion records the grant rests on, by kind (`piia`: the personal-information
    /// protection impact assessment's reference), as rule packs may require. Left out of the
    /// record when empty, so grants without any read as before everywhere.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub companions: std::collections::BTreeMap<String, String>,
    /// Last day the grant is valid (inclusive).
    pub expires: Day,
    pub volume_cap_bytes: Option<u64>,
    pub volume_cap_individuals: Option<u64>,
    pub revoked: bool,
    /// Usage counted in `usage_year` (caps are per calendar year).
    pub usage_year: i64,
    pub used_bytes: u64,
    pub used_individuals: u64,
}

fn default_tenant() -> String {
    valley_types::DEFAULT_TENANT.to_owned()
}

/// The calendar year a day falls in.
#[must_use]
pub fn year_of(day: Day) -> i64 {
    date_of(day)[..4].parse().unwrap_or(0)
}

impl Grant {
    /// Bytes and individuals already used this calendar year.
    #[must_use]
    pub fn used_in(&self, today: Day) -> (u64, u64) {
        if self.usage_year == year_of(today) {
            (self.used_bytes, self.used_individuals)
        } else {
            (0, 0)
        }
    }

    /// Why the grant cannot carry `bytes` of data about `individuals` people (`None`:
    /// undeclared) today, or `None`.
    #[must_use]
    pub fn refusal(&self, today: Day, bytes: u64, individuals: Option<u64>) -> Option<String> {
        if self.revoked {
            return Some(format!("grant {} was revoked", self.id));
        }
        if today > self.expires {
            return Some(format!("grant {} expired on {}", self.id, date_of(self.expires)));
        }
        let (used_bytes, used_individuals) = self.used_in(today);
        if let Some(cap) = self.volume_cap_bytes
            && used_bytes.saturating_add(bytes) > cap
        {
            return Some(format!(
                "grant {} would pass its cap of {cap} bytes this year ({used_bytes} used)",
                self.id
            ));
        }
        if let Some(cap) = self.volume_cap_individuals {
            let Some(individuals) = individuals else {
                return Some(format!(
                    "grant {} caps the individuals it carries ({cap} a year) and the object declares none",
                    self.id
                ));
            };
            if used_individuals.saturating_add(individuals) <= cap {
                return None;
            }
            return Some(format!(
                "grant {} would pass its cap of {cap} individuals this year ({used_individuals} used)",
                self.id
            ));
        }
        None
    }

    /// Counts a flow the grant carried.
    pub fn record_use(&mut self, today: Day, bytes: u64, individuals: u64) {
        let year = year_of(today);
        if self.usage_year != year {
            self.usage_year = year;
            self.used_bytes = 0;
            self.used_individuals = 0;
        }
        self.used_bytes = self.used_bytes.saturating_add(bytes);
        self.used_individuals = self.used_individuals.saturating_add(individuals);
    }
}
