//! Rule packs: which legal bases the law accepts for which cross-border flows, as data.
//!
//! A grant records a legal basis; a rule pack says whether that basis is one the law accepts
//! for the data it covers. A pack is a versioned TOML file (see `packs/*.toml`, shipped in the
//! binary and loaded by default): for each (from jurisdiction, to jurisdiction, classification)
//! the acceptable bases, what a grant of each must carry (a reference, a maximum validity, an
//! individuals cap below the law's threshold), and flows that are never allowed, each rule
//! citing its source. Flows no rule of a pack names are not regulated by it.
//!
//! Pure like the rest of the engine: [`RuleBook::judge`] takes the grant and the day.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::grant::{Basis, Grant};
use crate::{Day, date_of};

const PACK_FORMAT: u32 = 1;

/// The packs shipped with Valley and loaded by default.
pub const DEFAULT_PACKS: [(&str, &str); 2] = [
    ("cn-2024.toml", include_str!("../packs/cn-2024.toml")),
    ("eu-gdpr.toml", include_str!("../packs/eu-gdpr.toml")),
];

/// One rule pack, as its file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulePack {
    pub format: u32,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, rename = "rule")]
    pub rules: Vec<FlowRule>,
    #[serde(default)]
    pub never: Vec<Forbidden>,
}

/// The bases a flow of one classification may rest on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowRule {
    /// Jurisdictions the data leaves (`*`: any).
    pub from: Vec<String>,
    /// Jurisdictions it goes to (`*`: any other).
    pub to: Vec<String>,
    pub classification: String,
    pub bases: Vec<Basis>,
    /// A grant of these bases may be valid this many days from the day it is recorded.
    #[serde(default)]
    pub max_validity_days: BTreeMap<Basis, i64>,
    /// These bases carry the exporter's data only while the individuals it has sent out of
    /// the `from` jurisdiction this calendar year (all its flows of this classification,
    /// counted network-wide), the object's included, stay below this. An object that declares
    /// no individuals does not flow under them, and a grant of them capped at or above this
    /// is refused when recorded.
    #[serde(default)]
    pub individuals_below: BTreeMap<Basis, u64>,
    /// These bases carry the exporter's data only while the bytes it has sent out of the
    /// `from` jurisdiction this calendar year, the object's included, stay below this.
    #[serde(default)]
    pub bytes_below: BTreeMap<Basis, u64>,
    /// A grant of these bases must name its reference (an assessment or filing number).
    #[serde(default)]
    pub require_reference: Vec<Basis>,
    /// A grant of these bases must carry these companion records (`piia`: a
    /// personal-information protection impact assessment), each by its reference.
    #[serde(default)]
    pub require_companions: BTreeMap<Basis, Vec<String>>,
    pub source: String,
}

/// A flow no basis allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forbidden {
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub classification: String,
    pub source: String,
}

/// A pack that does not load.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("rule pack {file}: {message}")]
    Invalid { file: String, message: String },
}

fn matches(list: &[String], jurisdiction: &str) -> bool {
    list.iter().any(|j| j == "*" || j == jurisdiction)
}

impl FlowRule {
    fn covers(&self, from: &str, to: &str, classification: &str) -> bool {
        self.classification == classification && matches(&self.from, from) && matches(&self.to, to)
    }
}

impl RulePack {
    /// Parses and checks a pack file.
    pub fn parse(file: &str, text: &str) -> Result<Self, RulesError> {
        let invalid = |message: String| RulesError::Invalid {
            file: file.to_owned(),
            message,
        };
        let pack: RulePack = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if pack.format != PACK_FORMAT {
            return Err(invalid(format!(
                "format {} (this build reads {PACK_FORMAT})",
                pack.format
            )));
        }
        for rule in &pack.rules {
            let what = format!("rule for {} from {:?}", rule.classification, rule.from);
            if rule.from.is_empty() || rule.to.is_empty() || rule.bases.is_empty() || rule.source.trim().is_empty() {
                return Err(invalid(format!("{what}: from, to, bases and source are required")));
            }
            let named = rule
                .max_validity_days
                .keys()
                .chain(rule.individuals_below.keys())
                .chain(rule.bytes_below.keys())
                .chain(rule.require_companions.keys())
                .chain(&rule.require_reference);
            if let Some(stray) = named.into_iter().find(|b| !rule.bases.contains(b)) {
                return Err(invalid(format!(
                    "{what}: {} has conditions but is not one of its bases",
                    stray.name()
                )));
            }
        }
        if let Some(f) = pack.never.iter().find(|f| f.source.trim().is_empty()) {
            return Err(invalid(format!("never-rule for {} needs a source", f.classification)));
        }
        Ok(pack)
    }
}

/// The packs a network decides by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleBook {
    pub packs: Vec<RulePack>,
}

/// What a pack says of one grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judgement {
    pub accepted: bool,
    /// Why, naming the rules and their sources.
    pub reason: String,
    /// The packs whose rules accept the grant (empty when refused, or when no pack regulates
    /// the flow). New in session 11.
    #[serde(default)]
    pub packs: Vec<String>,
}

impl Default for RuleBook {
    fn default() -> Self {
        Self::shipped()
    }
}

impl RuleBook {
    /// The packs shipped with this build.
    #[must_use]
    pub fn shipped() -> Self {
        let packs = DEFAULT_PACKS
            .iter()
            .map(|(file, text)| RulePack::parse(file, text).expect("a shipped rule pack parses"))
            .collect();
        Self { packs }
    }

    /// The packs in `files` (name, text), in place of the shipped ones: each must parse, and no
    /// two may share a name.
    pub fn parse_files(files: &[(String, String)]) -> Result<Self, RulesError> {
        let mut packs: Vec<RulePack> = Vec::new();
        for (file, text) in files {
            let pack = RulePack::parse(file, text)?;
            if packs.iter().any(|p| p.name == pack.name) {
                return Err(RulesError::Invalid {
                    file: file.clone(),
                    message: format!("a pack named {:?} is loaded already", pack.name),
                });
            }
            packs.push(pack);
        }
        Ok(Self { packs })
    }

    /// Hex SHA-256 of the packs as parsed (their canonical JSON: comments and layout do not
    /// count, every rule does).
    #[must_use]
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::to_vec(&self.packs).unwrap_or_default();
        hex::encode(Sha256::digest(&canonical))
    }

    /// `name@version` of every pack, for logs and status.
    #[must_use]
    pub fn versions(&self) -> Vec<String> {
        self.packs.iter().map(|p| format!("{}@{}", p.name, p.version)).collect()
    }

    /// The rules of every pack for a flow `from` → `to` of `classification` (each `None`: any).
    #[must_use]
    pub fn rules_for(
        &self,
        from: Option<&str>,
        to: Option<&str>,
        classification: Option<&str>,
    ) -> Vec<(&RulePack, &FlowRule)> {
        let fits = |list: &[String], j: Option<&str>| j.is_none_or(|j| matches(list, j));
        self.packs
            .iter()
            .flat_map(|p| p.rules.iter().map(move |r| (p, r)))
            .filter(|(_, r)| {
                fits(&r.from, from) && fits(&r.to, to) && classification.is_none_or(|c| r.classification == c)
            })
            .collect()
    }

    /// Whether the packs accept `grant` on `today` (the day it is recorded, or a transfer's):
    /// for each classification it covers, its basis must be one a rule for the flow accepts,
    /// with what that rule asks of such a grant; a flow a never-rule names is refused whatever
    /// the basis; a classification no rule names is not regulated.
    #[must_use]
    pub fn judge(&self, grant: &Grant, today: Day) -> Judgement {
        let mut reasons = Vec::new();
        let mut packs = Vec::new();
        for classification in &grant.classifications {
            let forbidden = self
                .packs
                .iter()
                .flat_map(|p| p.never.iter().map(move |f| (p, f)))
                .find(|(_, f)| {
                    f.classification == *classification && matches(&f.from, &grant.from) && matches(&f.to, &grant.to)
                });
            if let Some((pack, f)) = forbidden {
                return refused(format!(
                    "rule pack {}: {classification} data never leaves {} for {} ({})",
                    pack.name, grant.from, grant.to, f.source
                ));
            }
            let rules: Vec<(&RulePack, &FlowRule)> = self
                .packs
                .iter()
                .flat_map(|p| p.rules.iter().map(move |r| (p, r)))
                .filter(|(_, r)| r.covers(&grant.from, &grant.to, classification))
                .collect();
            if rules.is_empty() {
                reasons.push(format!(
                    "{classification} {} -> {}: no rule pack regulates it",
                    grant.from, grant.to
                ));
                continue;
            }
            let accepting: Vec<&(&RulePack, &FlowRule)> =
                rules.iter().filter(|(_, r)| r.bases.contains(&grant.basis)).collect();
            if accepting.is_empty() {
                let (pack, _) = rules[0];
                let mut bases: Vec<String> = rules.iter().flat_map(|(_, r)| r.bases.iter().map(basis_name)).collect();
                bases.dedup();
                let sources: Vec<&str> = rules.iter().map(|(_, r)| r.source.as_str()).collect();
                // Where the basis would be accepted, if anywhere (an adequacy decision's countries).
                let elsewhere: Vec<String> = self
                    .packs
                    .iter()
                    .flat_map(|p| p.rules.iter())
                    .filter(|r| {
                        r.classification == *classification
                            && matches(&r.from, &grant.from)
                            && r.bases.contains(&grant.basis)
                    })
                    .map(|r| {
                        format!(
                            "; {} is accepted only towards {} ({})",
                            basis_name(&grant.basis),
                            r.to.join(", "),
                            r.source
                        )
                    })
                    .collect();
                return refused(format!(
                    "rule pack {}: {classification} data leaves {} for {} only under {}; {} is not accepted ({}){}",
                    pack.name,
                    grant.from,
                    grant.to,
                    bases.join(", "),
                    basis_name(&grant.basis),
                    sources.join("; "),
                    elsewhere.concat()
                ));
            }
            // Accepted when one accepting rule's conditions all hold.
            let mut failures = Vec::new();
            let mut ok = None;
            for (pack, rule) in accepting {
                match conditions(rule, grant, today) {
                    None => {
                        ok = Some((
                            pack.name.clone(),
                            format!(
                                "{classification} {} -> {} under {}: accepted by rule pack {} ({})",
                                grant.from,
                                grant.to,
                                basis_name(&grant.basis),
                                pack.name,
                                rule.source
                            ),
                        ));
                        break;
                    }
                    Some(why) => failures.push(format!("rule pack {}: {why} ({})", pack.name, rule.source)),
                }
            }
            match ok {
                Some((pack, why)) => {
                    reasons.push(why);
                    if !packs.contains(&pack) {
                        packs.push(pack);
                    }
                }
                None => return refused(failures.join("; ")),
            }
        }
        Judgement {
            accepted: true,
            reason: reasons.join("; "),
            packs,
        }
    }
}

/// What a transfer adds to its exporter's yearly volume, and what the exporter has already sent.
#[derive(Debug, Clone, Copy)]
pub struct Volume<'a> {
    /// Individuals whose data the object carries (`None`: it declares none).
    pub individuals: Option<u64>,
    /// The object's bytes.
    pub bytes: u64,
    /// What the exporter has sent out of the flow's `from` jurisdiction this calendar year, by
    /// classification.
    pub exported: &'a ExportedVolumes,
}

/// What an exporter has sent out of one jurisdiction this calendar year, by classification.
pub type ExportedVolumes = BTreeMap<String, Sent>;

/// Individuals and bytes sent in a year.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub individuals: u64,
    pub bytes: u64,
}

impl RuleBook {
    /// Whether the packs accept moving data of `classifications` under `grant` today with
    /// `volume`: [`RuleBook::judge`], and for each classification, one accepting rule whose
    /// volume limits on the grant's basis (`individuals_below`, `bytes_below`) the exporter's
    /// yearly count with the object's stays below. An object declaring no individuals does not
    /// flow under a basis limited by individuals: they are counted, not guessed.
    #[must_use]
    pub fn judge_flow(&self, grant: &Grant, classifications: &[String], today: Day, volume: Volume<'_>) -> Judgement {
        let judged = self.judge(grant, today);
        if !judged.accepted {
            return judged;
        }
        let mut notes = Vec::new();
        for classification in classifications {
            let sent = volume.exported.get(classification).copied().unwrap_or_default();
            let mut refusal = None;
            let mut passed = false;
            let accepting = self
                .packs
                .iter()
                .flat_map(|p| p.rules.iter().map(move |r| (p, r)))
                .filter(|(_, r)| {
                    r.covers(&grant.from, &grant.to, classification)
                        && r.bases.contains(&grant.basis)
                        && conditions(r, grant, today).is_none()
                });
            for (pack, rule) in accepting {
                match volume_refusal(pack, rule, grant, classification, sent, volume) {
                    Ok(note) => {
                        notes.extend(note);
                        passed = true;
                        break;
                    }
                    Err(why) => {
                        refusal.get_or_insert(why);
                    }
                }
            }
            if !passed && let Some(why) = refusal {
                return refused(why);
            }
        }
        if notes.is_empty() {
            judged
        } else {
            Judgement {
                reason: format!("{}; {}", judged.reason, notes.join("; ")),
                ..judged
            }
        }
    }
}

/// Whether `rule`'s volume limits on `grant`'s basis hold for `classification` after `sent`
/// with `volume`: `Ok` with a note of the counts it held to (`None`: it sets no limit), or why
/// not.
fn volume_refusal(
    pack: &RulePack,
    rule: &FlowRule,
    grant: &Grant,
    classification: &str,
    sent: Sent,
    volume: Volume<'_>,
) -> Result<Option<String>, String> {
    let basis = basis_name(&grant.basis);
    let mut notes = Vec::new();
    if let Some(&limit) = rule.individuals_below.get(&grant.basis) {
        let Some(individuals) = volume.individuals else {
            return Err(format!(
                "rule pack {}: {basis} carries {classification} data out of {} only below {limit} individuals a year, and this object declares none (x-amz-meta-valley-individuals, or the bucket policy's individuals_per_object) ({})",
                pack.name, grant.from, rule.source
            ));
        };
        let total = sent.individuals.saturating_add(individuals);
        if total >= limit {
            return Err(format!(
                "rule pack {}: {basis} carries {classification} data out of {} only below {limit} individuals a year; tenant {} has sent {} this year and this object's {individuals} would make {total}: another basis is needed ({})",
                pack.name, grant.from, grant.tenant, sent.individuals, rule.source
            ));
        }
        notes.push(format!(
            "{classification}: {total} of fewer than {limit} individuals this year"
        ));
    }
    if let Some(&limit) = rule.bytes_below.get(&grant.basis) {
        let total = sent.bytes.saturating_add(volume.bytes);
        if total >= limit {
            return Err(format!(
                "rule pack {}: {basis} carries {classification} data out of {} only below {limit} bytes a year; tenant {} has sent {} this year and this object's {} would make {total}: another basis is needed ({})",
                pack.name, grant.from, grant.tenant, sent.bytes, volume.bytes, rule.source
            ));
        }
        notes.push(format!(
            "{classification}: {total} of fewer than {limit} bytes this year"
        ));
    }
    Ok((!notes.is_empty()).then(|| notes.join(", ")))
}

/// What one exporter (tenant) has sent out of one jurisdiction in one calendar year, of one
/// classification: what the law's volume thresholds count. Kept by the jurisdiction's
/// accountant hub ([`export_accountant`]). Persisted: `format` 2 (format 1 had no `bytes`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportVolume {
    pub format: u32,
    pub year: i64,
    pub individuals: u64,
    #[serde(default)]
    pub bytes: u64,
}

impl ExportVolume {
    pub const FORMAT: u32 = 2;

    /// What was counted in `today`'s year.
    #[must_use]
    pub fn this_year(&self, today: Day) -> Sent {
        if self.year == crate::grant::year_of(today) {
            Sent {
                individuals: self.individuals,
                bytes: self.bytes,
            }
        } else {
            Sent::default()
        }
    }

    /// Counts `sent` more today.
    pub fn add(&mut self, today: Day, sent: Sent) {
        let year = crate::grant::year_of(today);
        if self.year != year {
            self.year = year;
            self.individuals = 0;
            self.bytes = 0;
        }
        self.format = Self::FORMAT;
        self.individuals = self.individuals.saturating_add(sent.individuals);
        self.bytes = self.bytes.saturating_add(sent.bytes);
    }
}

/// The hub that counts what tenants send out of `jurisdiction` (the first of its hubs by id):
/// one count for the network, so a threshold holds however many hubs send.
#[must_use]
pub fn export_accountant<'t>(topology: &'t crate::Topology, jurisdiction: &str) -> Option<&'t str> {
    topology
        .hubs()
        .filter(|h| h.jurisdiction == jurisdiction)
        .map(|h| h.id.as_str())
        .min()
}

fn refused(reason: String) -> Judgement {
    Judgement {
        accepted: false,
        reason,
        packs: Vec::new(),
    }
}

fn basis_name(basis: &Basis) -> String {
    basis.name().to_owned()
}

/// What a grant lacks of what `rule` asks of its basis (`None`: nothing).
fn conditions(rule: &FlowRule, grant: &Grant, today: Day) -> Option<String> {
    let basis = basis_name(&grant.basis);
    if rule.require_reference.contains(&grant.basis) && grant.reference.trim().is_empty() {
        return Some(format!("a {basis} grant must name its reference"));
    }
    if let Some(kinds) = rule.require_companions.get(&grant.basis)
        && let Some(missing) = kinds
            .iter()
            .find(|kind| grant.companions.get(*kind).is_none_or(|r| r.trim().is_empty()))
    {
        return Some(format!(
            "a {basis} grant must carry its {missing} record (--companion {missing}=REFERENCE)"
        ));
    }
    if let Some(days) = rule.max_validity_days.get(&grant.basis)
        && grant.expires > today + days
    {
        return Some(format!(
            "a {basis} grant is valid at most {days} days: it may run to {} at the latest, not {}",
            date_of(today + days),
            date_of(grant.expires)
        ));
    }
    if let Some(limit) = rule.individuals_below.get(&grant.basis)
        && grant.volume_cap_individuals.is_some_and(|cap| cap >= *limit)
    {
        return Some(format!(
            "a {basis} grant covers fewer than {limit} individuals a year (its cap says {}); beyond that the law asks for another basis",
            grant.volume_cap_individuals.unwrap_or_default()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(from: &str, to: &str, classification: &str, basis: Basis) -> Grant {
        Grant {
            id: "g".into(),
            tenant: "default".into(),
            from: from.into(),
            to: to.into(),
            classifications: vec![classification.into()],
            basis,
            reference: "REF-1".into(),
            companions: [("piia".to_owned(), "PIIA-1".to_owned())].into(),
            expires: crate::day_of("2027-06-30").unwrap(),
            volume_cap_bytes: None,
            volume_cap_individuals: None,
            revoked: false,
            usage_year: 0,
            used_bytes: 0,
            used_individuals: 0,
        }
    }

    fn today() -> Day {
        crate::day_of("2026-12-06").unwrap()
    }

    #[test]
    fn the_shipped_packs_load() {
        let book = RuleBook::shipped();
        assert_eq!(book.versions(), ["cn-2024@2024-03-22", "eu-gdpr@2016-679"]);
        assert!(
            !book
                .rules_for(Some("CN"), Some("EU"), Some("important-data"))
                .is_empty()
        );
    }

    #[test]
    fn important_data_leaves_china_only_under_an_assessment() {
        let book = RuleBook::shipped();
        let contract = book.judge(&grant("CN", "EU", "important-data", Basis::StandardContract), today());
        assert!(!contract.accepted);
        assert!(
            contract.reason.contains("security-assessment") && contract.reason.contains("Data Security Law"),
            "{}",
            contract.reason
        );
        assert!(
            book.judge(&grant("CN", "EU", "important-data", Basis::SecurityAssessment), today())
                .accepted
        );
        // An assessment is valid three years at most.
        let mut long = grant("CN", "HK", "important-data", Basis::SecurityAssessment);
        long.expires = crate::day_of("2031-01-01").unwrap();
        let why = book.judge(&long, today());
        assert!(!why.accepted && why.reason.contains("valid at most"), "{}", why.reason);
    }

    #[test]
    fn personal_information_and_its_volume_bases() {
        let book = RuleBook::shipped();
        assert!(
            book.judge(&grant("CN", "EU", "personal-info", Basis::StandardContract), today())
                .accepted
        );
        let mut big = grant("CN", "EU", "personal-info", Basis::StandardContract);
        big.volume_cap_individuals = Some(2_000_000);
        assert!(!book.judge(&big, today()).accepted);
        let mut sensitive = grant("CN", "EU", "sensitive-personal-info", Basis::Certification);
        sensitive.volume_cap_individuals = Some(9_999);
        assert!(book.judge(&sensitive, today()).accepted);
        sensitive.volume_cap_individuals = Some(10_000);
        assert!(!book.judge(&sensitive, today()).accepted);
        let mut unnamed = grant("CN", "EU", "personal-info", Basis::StandardContract);
        unnamed.reference = " ".into();
        assert!(!book.judge(&unnamed, today()).accepted);
        // Bases of the other side's law are not China's.
        assert!(
            !book
                .judge(&grant("CN", "EU", "personal-info", Basis::Sccs), today())
                .accepted
        );
    }

    #[test]
    fn no_adequacy_decision_exists_for_china() {
        let book = RuleBook::shipped();
        let adequacy = book.judge(&grant("EU", "CN", "personal-info", Basis::Adequacy), today());
        assert!(
            !adequacy.accepted && adequacy.reason.contains("GDPR"),
            "{}",
            adequacy.reason
        );
        assert!(
            book.judge(&grant("EU", "CN", "personal-info", Basis::Sccs), today())
                .accepted
        );
        assert!(
            book.judge(&grant("EU", "JP", "personal-info", Basis::Adequacy), today())
                .accepted
        );
    }

    #[test]
    fn core_data_never_leaves_and_unregulated_flows_pass() {
        let book = RuleBook::shipped();
        let core = book.judge(&grant("CN", "HK", "core-data", Basis::SecurityAssessment), today());
        assert!(
            !core.accepted && core.reason.contains("never leaves"),
            "{}",
            core.reason
        );
        assert!(
            book.judge(&grant("HK", "EU", "personal-info", Basis::StandardContract), today())
                .accepted
        );
        assert!(
            book.judge(&grant("CN", "EU", "public", Basis::Adequacy), today())
                .accepted
        );
    }

    #[test]
    fn volume_thresholds_count_the_exporters_year_and_need_a_declaration() {
        let book = RuleBook::shipped();
        let classes = vec!["personal-info".to_owned()];
        let mut exempt = grant("CN", "EU", "personal-info", Basis::ExemptVolume);
        exempt.reference = String::new();
        let mut sent = ExportedVolumes::new();
        sent.insert(
            "personal-info".into(),
            Sent {
                individuals: 60_000,
                bytes: 0,
            },
        );
        let with = |individuals, exported| Volume {
            individuals,
            bytes: 10,
            exported,
        };
        assert!(
            book.judge_flow(&exempt, &classes, today(), with(Some(39_999), &sent))
                .accepted
        );
        let over = book.judge_flow(&exempt, &classes, today(), with(Some(40_000), &sent));
        assert!(
            !over.accepted && over.reason.contains("another basis is needed"),
            "{}",
            over.reason
        );
        let undeclared = book.judge_flow(&exempt, &classes, today(), with(None, &sent));
        assert!(
            !undeclared.accepted && undeclared.reason.contains("declares none"),
            "{}",
            undeclared.reason
        );
        // A standard contract carries up to a million; an assessment any volume, declared or not.
        let contract = grant("CN", "EU", "personal-info", Basis::StandardContract);
        assert!(
            book.judge_flow(&contract, &classes, today(), with(Some(900_000), &sent))
                .accepted
        );
        assert!(
            !book
                .judge_flow(&contract, &classes, today(), with(Some(940_000), &sent))
                .accepted
        );
        let assessment = grant("CN", "EU", "personal-info", Basis::SecurityAssessment);
        assert!(
            book.judge_flow(&assessment, &classes, today(), with(None, &sent))
                .accepted
        );
        // No exemption by volume for sensitive data, whatever the count.
        let mut sensitive = exempt.clone();
        sensitive.classifications = vec!["sensitive-personal-info".into()];
        let none = ExportedVolumes::new();
        let classes = vec!["sensitive-personal-info".to_owned()];
        assert!(
            !book
                .judge_flow(&sensitive, &classes, today(), with(Some(1), &none))
                .accepted
        );
    }

    #[test]
    fn a_bytes_threshold_counts_the_exporters_bytes() {
        let text = "format = 1\nname = \"bytes\"\nversion = \"1\"\n[[rule]]\nfrom = [\"CN\"]\nto = [\"*\"]\nclassification = \"health\"\nbases = [\"standard-contract\"]\nbytes_below = { standard-contract = 1000 }\nsource = \"law\"\n";
        let book = RuleBook::parse_files(&[("bytes.toml".to_owned(), text.to_owned())]).unwrap();
        let classes = vec!["health".to_owned()];
        let contract = grant("CN", "EU", "health", Basis::StandardContract);
        let mut sent = ExportedVolumes::new();
        sent.insert(
            "health".into(),
            Sent {
                individuals: 0,
                bytes: 900,
            },
        );
        let volume = |bytes| Volume {
            individuals: None,
            bytes,
            exported: &sent,
        };
        assert!(book.judge_flow(&contract, &classes, today(), volume(99)).accepted);
        let over = book.judge_flow(&contract, &classes, today(), volume(100));
        assert!(
            !over.accepted && over.reason.contains("below 1000 bytes"),
            "{}",
            over.reason
        );
    }

    #[test]
    fn packs_from_files_hash_by_their_rules_not_their_layout() {
        let (file, text) = DEFAULT_PACKS[0];
        let shipped = RuleBook::parse_files(&[(file.to_owned(), text.to_owned())]).unwrap();
        let commented = format!("# reviewed 2026-12-06\n{text}\n# end\n");
        let same = RuleBook::parse_files(&[("copy.toml".to_owned(), commented)]).unwrap();
        assert_eq!(shipped.hash(), same.hash());
        let tightened = text.replace("exempt-volume = 100000", "exempt-volume = 50000");
        let other = RuleBook::parse_files(&[("t.toml".to_owned(), tightened)]).unwrap();
        assert_ne!(shipped.hash(), other.hash());
        let twice = RuleBook::parse_files(&[
            (file.to_owned(), text.to_owned()),
            ("b.toml".to_owned(), text.to_owned()),
        ]);
        assert!(twice.unwrap_err().to_string().contains("loaded already"));
    }

    #[test]
    fn a_grant_carries_the_companion_records_its_basis_needs() {
        let book = RuleBook::shipped();
        let mut contract = grant("CN", "EU", "personal-info", Basis::StandardContract);
        assert!(book.judge(&contract, today()).accepted);
        contract.companions.clear();
        let why = book.judge(&contract, today());
        assert!(!why.accepted && why.reason.contains("piia"), "{}", why.reason);
        contract.companions.insert("piia".into(), " ".into());
        assert!(!book.judge(&contract, today()).accepted);
        // The exemption by volume needs none; important data's assessment neither.
        let mut exempt = grant("CN", "EU", "personal-info", Basis::ExemptVolume);
        exempt.companions.clear();
        assert!(book.judge(&exempt, today()).accepted);
    }

    #[test]
    fn a_malformed_pack_is_refused_by_name() {
        let bad = "format = 1\nname = \"x\"\nversion = \"1\"\n[[rule]]\nfrom = [\"CN\"]\nto = [\"*\"]\nclassification = \"pi\"\nbases = [\"standard-contract\"]\nindividuals_below = { certification = 5 }\nsource = \"law\"\n";
        let err = RulePack::parse("bad.toml", bad).unwrap_err().to_string();
        assert!(err.contains("bad.toml") && err.contains("certification"), "{err}");
        assert!(RulePack::parse("v2.toml", "format = 2\nname = \"x\"\nversion = \"1\"\n").is_err());
        assert!(RulePack::parse("typo.toml", "format = 1\nname = \"x\"\nversion = \"1\"\nrulez = []\n").is_err());
    }
}
