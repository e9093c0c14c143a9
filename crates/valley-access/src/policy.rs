//! IAM JSON policies — bucket policies and identity policies: parsing, validation, and the
//! per-statement tests the evaluator combines.

use serde_json::{Map, Value};

use crate::action::{S3_ACTIONS, is_known_s3_action};
use crate::condition::{self, Condition, KeyLookup};
use crate::context::normalize_key;
use crate::principal::{Principal, PrincipalEntry, PrincipalMatch};
use crate::wildcard::{Pattern, Syntax};

/// Largest bucket policy S3 accepts, in bytes.
pub const MAX_BUCKET_POLICY_BYTES: usize = 20 * 1024;
/// Largest identity (user) policy IAM accepts, in bytes.
pub const MAX_IDENTITY_POLICY_BYTES: usize = 6_144;
/// Most statements one policy may have; bounds evaluation cost.
pub const MAX_STATEMENTS: usize = 256;

/// Why a policy was refused. The message names the problem and, for a statement's problem,
/// the statement (numbered from 1, as a human counts) and its Sid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedPolicy {
    #[error("policy is {size} bytes, more than the {limit}-byte limit for {kind} policies")]
    TooLarge {
        kind: PolicyKind,
        size: usize,
        limit: usize,
    },
    #[error("policy has {count} statements, more than the limit of {MAX_STATEMENTS}")]
    TooManyStatements { count: usize },
    #[error("policy is not valid JSON: {0}")]
    NotJson(String),
    #[error("{0}")]
    Document(String),
    #[error("statement {number}{}: {problem}", sid.as_ref().map(|s| format!(" (Sid {s:?})")).unwrap_or_default())]
    Statement {
        number: usize,
        sid: Option<String>,
        problem: String,
    },
}

/// Which kind of policy a document is; they differ in what they may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Attached to a bucket; names principals, and only that bucket's resources.
    Bucket,
    /// Attached to a user; its principal is the user, so it names none.
    Identity,
}

impl std::fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PolicyKind::Bucket => "bucket",
            PolicyKind::Identity => "identity",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// A parsed, validated policy. Keeps the text it was parsed from so GetBucketPolicy returns
/// exactly what was put.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument {
    kind: PolicyKind,
    version: Option<String>,
    id: Option<String>,
    statements: Vec<Statement>,
    source: String,
    /// [`PolicyDocument::is_public`], decided once at parse.
    public: bool,
    /// The condition keys the policy reads (conditions and `${…}` variables), normalised and
    /// sorted: the front gathers only these from a request.
    reads: Vec<String>,
}

/// `Principal` or `NotPrincipal`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PrincipalSet {
    negated: bool,
    entries: Vec<PrincipalEntry>,
}

/// `Action`/`NotAction` or `Resource`/`NotResource`: patterns, possibly negated.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PatternSet {
    negated: bool,
    patterns: Vec<Pattern>,
}

/// One statement of a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    sid: Option<String>,
    effect: Effect,
    principal: Option<PrincipalSet>,
    actions: PatternSet,
    resources: PatternSet,
    conditions: Vec<Condition>,
}

/// Parses a bucket policy for `bucket`: every statement must name a Principal (or
/// NotPrincipal) and only resources of `bucket`.
pub fn parse_bucket_policy(json: &str, bucket: &str) -> Result<PolicyDocument, MalformedPolicy> {
    parse(json, PolicyKind::Bucket, Some(bucket))
}

/// Parses an identity policy: no Principal, any resources.
pub fn parse_identity_policy(json: &str) -> Result<PolicyDocument, MalformedPolicy> {
    parse(json, PolicyKind::Identity, None)
}

fn parse(json: &str, kind: PolicyKind, bucket: Option<&str>) -> Result<PolicyDocument, MalformedPolicy> {
    let limit = match kind {
        PolicyKind::Bucket => MAX_BUCKET_POLICY_BYTES,
        PolicyKind::Identity => MAX_IDENTITY_POLICY_BYTES,
    };
    if json.len() > limit {
        return Err(MalformedPolicy::TooLarge {
            kind,
            size: json.len(),
            limit,
        });
    }
    let value: Value = serde_json::from_str(json).map_err(|e| MalformedPolicy::NotJson(e.to_string()))?;
    let doc_err = |m: &str| MalformedPolicy::Document(m.to_owned());
    let Value::Object(top) = value else {
        return Err(doc_err("policy must be a JSON object"));
    };
    for name in top.keys() {
        if !matches!(name.as_str(), "Version" | "Id" | "Statement") {
            return Err(MalformedPolicy::Document(format!("unknown policy element {name:?}")));
        }
    }
    let version = match top.get("Version") {
        None => None,
        Some(Value::String(v)) if v == "2012-10-17" || v == "2008-10-17" => Some(v.clone()),
        Some(_) => return Err(doc_err("Version must be 2012-10-17 or 2008-10-17")),
    };
    // AWS substitutes policy variables only in 2012-10-17 policies; older ones read `${...}`
    // as text.
    let variables = version.as_deref() == Some("2012-10-17");
    let id = match top.get("Id") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(doc_err("Id must be a string")),
    };
    let raw_statements: Vec<&Value> = match top.get("Statement") {
        None => return Err(doc_err("policy has no Statement")),
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(doc_err("policy has no Statement"));
        }
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single @ Value::Object(_)) => vec![single],
        Some(_) => return Err(doc_err("Statement must be an object or an array of objects")),
    };
    if raw_statements.len() > MAX_STATEMENTS {
        return Err(MalformedPolicy::TooManyStatements {
            count: raw_statements.len(),
        });
    }
    let mut statements = Vec::with_capacity(raw_statements.len());
    for (i, raw) in raw_statements.into_iter().enumerate() {
        let sid = raw
            .get("Sid")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let statement =
            parse_statement(raw, kind, bucket, variables).map_err(|problem| MalformedPolicy::Statement {
                number: i + 1,
                sid: sid.clone(),
                problem,
            })?;
        if let Some(sid) = &sid
            && statements.iter().any(|s: &Statement| s.sid.as_ref() == Some(sid))
        {
            return Err(MalformedPolicy::Statement {
                number: i + 1,
                sid: Some(sid.clone()),
                problem: "duplicate Sid".to_owned(),
            });
        }
        statements.push(statement);
    }
    let public = statements.iter().any(Statement::is_public);
    let reads = keys_read(&statements, json);
    Ok(PolicyDocument {
        kind,
        version,
        id,
        statements,
        source: json.to_owned(),
        public,
        reads,
    })
}

/// Every condition key of `statements` and every `${key}` variable in `json` (in resources or
/// condition values), normalised, sorted, once each.
fn keys_read(statements: &[Statement], json: &str) -> Vec<String> {
    let conditions = statements
        .iter()
        .flat_map(|s| s.conditions.iter().map(|c| c.key().to_owned()));
    let variables = json
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}'))
        .map(|(name, _)| normalize_key(name).into_owned());
    let mut keys: Vec<String> = conditions.chain(variables).collect();
    keys.sort();
    keys.dedup();
    keys
}

fn parse_statement(raw: &Value, kind: PolicyKind, bucket: Option<&str>, variables: bool) -> Result<Statement, String> {
    let Value::Object(fields) = raw else {
        return Err("statement must be an object".to_owned());
    };
    for name in fields.keys() {
        if !matches!(
            name.as_str(),
            "Sid"
                | "Effect"
                | "Principal"
                | "NotPrincipal"
                | "Action"
                | "NotAction"
                | "Resource"
                | "NotResource"
                | "Condition"
        ) {
            return Err(format!("unknown statement element {name:?}"));
        }
    }
    let sid = match fields.get("Sid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()).filter(|s| !s.is_empty()),
        Some(_) => return Err("Sid must be a string".to_owned()),
    };
    let effect = match fields.get("Effect") {
        None => return Err("statement has no Effect".to_owned()),
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(other) => return Err(format!("unknown Effect {}", other)),
    };
    let principal = parse_principal(fields, kind)?;
    // As AWS: NotPrincipal only narrows a Deny ("everyone but"); an Allow to everyone but a
    // few is too easy to get wrong.
    if effect == Effect::Allow && fields.contains_key("NotPrincipal") {
        return Err("NotPrincipal may only be used with Effect Deny".to_owned());
    }
    let actions = parse_actions(fields, kind)?;
    let resources = parse_resources(fields, bucket, variables)?;
    let conditions = match fields.get("Condition") {
        None => Vec::new(),
        Some(block) => condition::parse_block(block, variables)?,
    };
    Ok(Statement {
        sid,
        effect,
        principal,
        actions,
        resources,
        conditions,
    })
}

/// The element named `positive` or `negative`, refusing both or (when `required`) neither.
fn one_of<'v>(
    fields: &'v Map<String, Value>,
    positive: &str,
    negative: &str,
) -> Result<Option<(bool, &'v Value)>, String> {
    match (fields.get(positive), fields.get(negative)) {
        (Some(_), Some(_)) => Err(format!("statement cannot have both {positive} and {negative}")),
        (Some(v), None) => Ok(Some((false, v))),
        (None, Some(v)) => Ok(Some((true, v))),
        (None, None) => Ok(None),
    }
}

/// A string or a non-empty array of strings.
fn string_list<'v>(value: &'v Value, element: &str) -> Result<Vec<&'v str>, String> {
    let wrong = || format!("{element} must be a string or an array of strings");
    let list: Vec<&str> = match value {
        Value::String(s) => vec![s],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().ok_or_else(wrong))
            .collect::<Result<_, _>>()?,
        _ => return Err(wrong()),
    };
    if list.is_empty() {
        return Err(format!("{element} must not be empty"));
    }
    Ok(list)
}

fn parse_principal(fields: &Map<String, Value>, kind: PolicyKind) -> Result<Option<PrincipalSet>, String> {
    let found = one_of(fields, "Principal", "NotPrincipal")?;
    let (negated, value) = match (kind, found) {
        (PolicyKind::Identity, Some(_)) => {
            return Err("identity policies cannot name a Principal or NotPrincipal".to_owned());
        }
        (PolicyKind::Identity, None) => return Ok(None),
        (PolicyKind::Bucket, None) => {
            return Err("statement has no Principal or NotPrincipal".to_owned());
        }
        (PolicyKind::Bucket, Some(found)) => found,
    };
    let element = if negated { "NotPrincipal" } else { "Principal" };
    let invalid = |what: &str| format!("invalid principal {what:?} in {element}");
    let mut entries = Vec::new();
    match value {
        Value::String(s) if s == "*" => entries.push(PrincipalEntry::Everyone),
        Value::Object(map) if !map.is_empty() => {
            for (scheme, ids) in map {
                let ids = string_list(ids, &format!("{element} {scheme}"))?;
                for id in ids {
                    let entry = match scheme.as_str() {
                        "AWS" => PrincipalEntry::parse_aws(id),
                        "CanonicalUser" => PrincipalEntry::parse_canonical(id),
                        "Service" => (!id.is_empty() && id != "*").then(|| PrincipalEntry::Service(id.to_owned())),
                        _ => {
                            return Err(format!(
                                "invalid principal: {element} type {scheme:?} is not supported (AWS, CanonicalUser or Service)"
                            ));
                        }
                    };
                    entries.push(entry.ok_or_else(|| invalid(id))?);
                }
            }
        }
        other => return Err(invalid(&other.to_string())),
    }
    Ok(Some(PrincipalSet { negated, entries }))
}

fn parse_actions(fields: &Map<String, Value>, kind: PolicyKind) -> Result<PatternSet, String> {
    let Some((negated, value)) = one_of(fields, "Action", "NotAction")? else {
        return Err("statement has no Action or NotAction".to_owned());
    };
    let element = if negated { "NotAction" } else { "Action" };
    let mut patterns = Vec::new();
    for action in string_list(value, element)? {
        let invalid = || format!("Policy has invalid action {action:?}");
        let pattern = Pattern::glob(action);
        if action != "*" {
            let (service, name) = action.split_once(':').ok_or_else(invalid)?;
            let service_ok = !service.is_empty() && service.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !service_ok || name.is_empty() {
                return Err(invalid());
            }
            if service.eq_ignore_ascii_case("s3") {
                // A name must exist; a wildcard must cover at least one action that does.
                let known = if pattern.has_wildcards() {
                    S3_ACTIONS.iter().any(|a| pattern.matches_plain(a, true))
                } else {
                    is_known_s3_action(action)
                };
                if !known {
                    return Err(invalid());
                }
            } else if kind == PolicyKind::Bucket {
                // A bucket policy governs S3 only.
                return Err(invalid());
            }
        }
        patterns.push(pattern);
    }
    Ok(PatternSet { negated, patterns })
}

fn parse_resources(fields: &Map<String, Value>, bucket: Option<&str>, variables: bool) -> Result<PatternSet, String> {
    let Some((negated, value)) = one_of(fields, "Resource", "NotResource")? else {
        return Err("statement has no Resource or NotResource".to_owned());
    };
    let element = if negated { "NotResource" } else { "Resource" };
    let syntax = Syntax {
        wildcards: true,
        variables,
    };
    let mut patterns = Vec::new();
    for resource in string_list(value, element)? {
        if let Some(bucket) = bucket {
            // This bucket, or a pattern that matches it (`arn:aws:s3:::*`, as AWS accepts): a
            // bucket's policy is only ever applied to requests on that bucket, so a wildcard
            // cannot reach into another one.
            let path = resource.strip_prefix("arn:aws:s3:::");
            let named = path.map(|p| p.split_once('/').map_or(p, |(b, _)| b));
            let fits = named.is_some_and(|n| {
                n == bucket
                    || Pattern::parse(
                        n,
                        Syntax {
                            wildcards: true,
                            variables: false,
                        },
                    )
                    .matches_plain(bucket, false)
            });
            if !fits {
                return Err(format!("{element} {resource} is not in bucket {bucket}"));
            }
        } else if resource != "*" && !resource.starts_with("arn:") {
            return Err(format!("{element} {resource:?} is not an ARN"));
        }
        patterns.push(Pattern::parse(resource, syntax));
    }
    Ok(PatternSet { negated, patterns })
}

impl PolicyDocument {
    #[must_use]
    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    #[must_use]
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    #[must_use]
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    #[must_use]
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// The JSON text the policy was parsed from, byte for byte.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the policy reads condition key `key` (normalised, see [`normalize_key`]).
    #[must_use]
    pub fn reads(&self, key: &str) -> bool {
        self.reads.binary_search_by(|k| k.as_str().cmp(key)).is_ok()
    }

    /// The condition keys the policy reads, normalised and sorted.
    #[must_use]
    pub fn keys_read(&self) -> &[String] {
        &self.reads
    }

    /// Whether the policy reads some condition key starting with `prefix` (normalised), such
    /// as one `s3:requestobjecttag/…` key.
    #[must_use]
    pub fn reads_prefixed(&self, prefix: &str) -> bool {
        self.reads.iter().any(|k| k.starts_with(prefix))
    }

    /// AWS's Public Access Block definition: a bucket policy is public when some Allow
    /// statement grants everyone (`"*"`, `{"AWS": "*"}`, or any NotPrincipal) without a
    /// condition that pins the requester to known parties (a fixed `aws:SourceIp` block of /8
    /// or narrower, `aws:SourceArn`, `aws:SourceAccount`, `aws:SourceVpc(e)`,
    /// `aws:PrincipalAccount`, `aws:PrincipalArn`, `aws:PrincipalOrgID`, `aws:userid`, ...).
    /// Identity policies are never public.
    #[must_use]
    pub fn is_public(&self) -> bool {
        self.public
    }
}

impl Statement {
    #[must_use]
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    #[must_use]
    pub fn effect(&self) -> Effect {
        self.effect
    }

    #[must_use]
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    fn is_public(&self) -> bool {
        let Some(principal) = &self.principal else {
            return false;
        };
        let grants_everyone = principal.negated || principal.entries.contains(&PrincipalEntry::Everyone);
        self.effect == Effect::Allow && grants_everyone && !self.conditions.iter().any(Condition::pins_requester)
    }

    pub(crate) fn matches_action(&self, action: &str) -> bool {
        let named = self.actions.patterns.iter().any(|p| p.matches_plain(action, true));
        named != self.actions.negated
    }

    pub(crate) fn matches_resource(&self, resource: &str, lookup: &dyn KeyLookup) -> bool {
        let resolve = |key: &str| lookup.values(key).and_then(|v| v.first()).map(String::as_str);
        let named = self
            .resources
            .patterns
            .iter()
            .any(|p| p.matches(resource, false, &resolve));
        named != self.resources.negated
    }

    /// How the statement applies to `principal`: `None` if it does not. Identity statements
    /// apply to their user as a user.
    pub(crate) fn principal_match(&self, principal: &Principal) -> Option<PrincipalMatch> {
        let Some(set) = &self.principal else {
            return Some(PrincipalMatch::User);
        };
        let found = set
            .entries
            .iter()
            .filter_map(|e| e.matches(principal))
            .max_by_key(|m| match m {
                PrincipalMatch::Tenant => 0,
                PrincipalMatch::Everyone => 1,
                PrincipalMatch::User => 2,
            });
        match (set.negated, found) {
            (false, found) => found,
            // NotPrincipal: everyone not listed.
            (true, None) => Some(PrincipalMatch::Everyone),
            (true, Some(_)) => None,
        }
    }

    pub(crate) fn conditions_hold(&self, lookup: &dyn KeyLookup) -> bool {
        self.conditions.iter().all(|c| c.holds(lookup))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket_err(json: &str) -> String {
        parse_bucket_policy(json, "mybucket").unwrap_err().to_string()
    }

    fn identity_err(json: &str) -> String {
        parse_identity_policy(json).unwrap_err().to_string()
    }

    /// A bucket policy with one statement made of `fields`.
    fn one(fields: &str) -> String {
        format!(r#"{{"Version":"2012-10-17","Statement":[{{{fields}}}]}}"#)
    }

    const OK: &str = r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::mybucket/*""#;

    #[test]
    fn a_resource_pattern_that_matches_the_bucket_is_accepted() {
        for resource in ["arn:aws:s3:::*", "arn:aws:s3:::my*/*", "arn:aws:s3:::mybucke?"] {
            let json = format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"{resource}"}}]}}"#
            );
            assert!(parse_bucket_policy(&json, "mybucket").is_ok(), "{resource}");
        }
    }

    #[test]
    fn allow_with_not_principal_is_refused() {
        let err = parse_bucket_policy(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::t:root"},"Action":"s3:ListBucket","Resource":"arn:aws:s3:::mybucket"}]}"#,
            "mybucket",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("NotPrincipal may only be used with Effect Deny"),
            "{err}"
        );
    }

    #[test]
    fn accepts_the_usual_forms() {
        let json = r#"{
            "Version": "2012-10-17",
            "Id": "p1",
            "Statement": [
                {"Sid": "a", "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::globex:root", "acme", "arn:aws:iam::acme:user/bob"]},
                 "Action": ["s3:GetObject", "s3:list*"], "Resource": ["arn:aws:s3:::mybucket", "arn:aws:s3:::mybucket/*"]},
                {"Sid": "b", "Effect": "Deny", "NotPrincipal": {"CanonicalUser": "acme$bob"},
                 "NotAction": "s3:*", "NotResource": "arn:aws:s3:::mybucket/home/${aws:username}/*",
                 "Condition": {"ForAnyValue:StringLikeIfExists": {"s3:RequestObjectTagKeys": ["a*", "b"]}}}
            ]
        }"#;
        let doc = parse_bucket_policy(json, "mybucket").unwrap();
        assert_eq!(doc.source(), json, "the text is kept for GetBucketPolicy");
        assert_eq!(doc.id(), Some("p1"));
        assert_eq!(doc.version(), Some("2012-10-17"));
        assert_eq!(doc.statements().len(), 2);
        assert_eq!(doc.statements()[1].sid(), Some("b"));
        assert_eq!(doc.statements()[1].effect(), Effect::Deny);
        assert_eq!(doc.statements()[1].conditions().len(), 1);
        assert_eq!(doc.kind(), PolicyKind::Bucket);
        // A single statement object, no Version.
        let single = format!(r#"{{"Statement":{{{OK}}}}}"#);
        assert_eq!(parse_bucket_policy(&single, "mybucket").unwrap().version(), None);
        let old = format!(r#"{{"Version":"2008-10-17","Statement":{{{OK}}}}}"#);
        assert!(parse_bucket_policy(&old, "mybucket").is_ok());
    }

    #[test]
    fn named_document_errors() {
        assert_eq!(bucket_err(r#"{"Version":"2012-10-17"}"#), "policy has no Statement");
        assert_eq!(bucket_err(r#"{"Statement":[]}"#), "policy has no Statement");
        assert_eq!(
            bucket_err(r#"{"Version":"2020-01-01","Statement":[]}"#),
            "Version must be 2012-10-17 or 2008-10-17"
        );
        assert_eq!(
            bucket_err(&format!(r#"{{"Statement":[{{{OK}}}],"Extra":1}}"#)),
            "unknown policy element \"Extra\""
        );
        assert_eq!(
            bucket_err(r#"{"Statement":"x"}"#),
            "Statement must be an object or an array of objects"
        );
        assert!(bucket_err("{").starts_with("policy is not valid JSON"));
        assert_eq!(bucket_err("[]"), "policy must be a JSON object");
    }

    #[test]
    fn named_statement_errors() {
        let cases = [
            (
                one(
                    r#""Sid":"x","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::mybucket/*","Condition":{"StringEqual":{"a":"b"}}"#,
                ),
                "statement 1 (Sid \"x\"): unknown condition operator \"StringEqual\"",
            ),
            (
                one(r#""Effect":"Allow","Principal":"*","Action":5,"Resource":"arn:aws:s3:::mybucket/*""#),
                "statement 1: Action must be a string or an array of strings",
            ),
            (
                one(r#""Effect":"Allow","Principal":"*","Action":[],"Resource":"arn:aws:s3:::mybucket/*""#),
                "statement 1: Action must not be empty",
            ),
            (
                one(r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::other""#),
                "statement 1: Resource arn:aws:s3:::other is not in bucket mybucket",
            ),
            (
                one(r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::other*""#),
                "statement 1: Resource arn:aws:s3:::other* is not in bucket mybucket",
            ),
            (
                one(r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject","NotResource":"*""#),
                "statement 1: NotResource * is not in bucket mybucket",
            ),
            (
                one(r#""Effect":"allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::mybucket""#),
                "statement 1: unknown Effect \"allow\"",
            ),
            (
                one(r#""Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::mybucket""#),
                "statement 1: statement has no Effect",
            ),
            (
                one(
                    r#""Effect":"Allow","Principal":{"AWS":"arn:aws:iam::acme:group/x"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::mybucket""#,
                ),
                "statement 1: invalid principal \"arn:aws:iam::acme:group/x\" in Principal",
            ),
            (
                one(
                    r#""Effect":"Allow","Principal":"acme","Action":"s3:GetObject","Resource":"arn:aws:s3:::mybucket""#,
                ),
                "statement 1: invalid principal \"\\\"acme\\\"\" in Principal",
            ),
            (
                one(r#""Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::mybucket""#),
                "statement 1: statement has no Principal or NotPrincipal",
            ),
            (
                one(
                    r#""Effect":"Allow","Principal":"*","NotPrincipal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::mybucket""#,
                ),
                "statement 1: statement cannot have both Principal and NotPrincipal",
            ),
            (
                one(r#""Effect":"Allow","Principal":"*","Action":"s3:GetObjekt","Resource":"arn:aws:s3:::mybucket""#),
                "statement 1: Policy has invalid action \"s3:GetObjekt\"",
            ),
            (
                one(r#""Effect":"Allow","Principal":"*","Action":"s3:Frob*","Resource":"arn:aws:s3:::mybucket""#),
                "statement 1: Policy has invalid action \"s3:Frob*\"",
            ),
            (
                one(
                    r#""Effect":"Allow","Principal":"*","Action":"ec2:RunInstances","Resource":"arn:aws:s3:::mybucket""#,
                ),
                "statement 1: Policy has invalid action \"ec2:RunInstances\"",
            ),
            (
                one(
                    r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::mybucket","Color":"red""#,
                ),
                "statement 1: unknown statement element \"Color\"",
            ),
            (
                one(
                    r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::mybucket","Condition":{"NumericLessThan":{"s3:max-keys":"ten"}}"#,
                ),
                "statement 1: condition \"NumericLessThan\" on \"s3:max-keys\": \"ten\" is not a number",
            ),
            (
                one(
                    r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::mybucket","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/33"}}"#,
                ),
                "statement 1: condition \"IpAddress\" on \"aws:SourceIp\": \"10.0.0.0/33\" is not an IP address or CIDR block",
            ),
            (
                one(
                    r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::mybucket","Condition":{"DateLessThan":{"aws:CurrentTime":"tomorrow"}}"#,
                ),
                "statement 1: condition \"DateLessThan\" on \"aws:CurrentTime\": \"tomorrow\" is not a date (ISO 8601 / RFC 3339 or epoch seconds)",
            ),
            (
                one(
                    r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::mybucket","Condition":{"Bool":{"aws:SecureTransport":"yes"}}"#,
                ),
                "statement 1: condition \"Bool\" on \"aws:SecureTransport\": \"yes\" is not true or false",
            ),
            (
                one(
                    r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::mybucket","Condition":{"NullIfExists":{"s3:prefix":"true"}}"#,
                ),
                "statement 1: unknown condition operator \"NullIfExists\"",
            ),
            (
                one(
                    r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::mybucket","Condition":{"ForSomeValues:StringLike":{"s3:prefix":"a"}}"#,
                ),
                "statement 1: unknown condition operator \"ForSomeValues:StringLike\"",
            ),
            (
                one(
                    r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::mybucket","Condition":{"StringLike":{"s3:prefix":[]}}"#,
                ),
                "statement 1: condition \"StringLike\" on \"s3:prefix\" has no values",
            ),
            (
                one(
                    r#""Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::mybucket","Condition":{"StringLike":{"s3:prefix":{"a":1}}}"#,
                ),
                "statement 1: condition \"StringLike\" on \"s3:prefix\": values must be strings, numbers or booleans",
            ),
            (
                one(
                    r#""Effect":"Allow","Principal":{"Federated":"cognito-identity.amazonaws.com"},"Action":"s3:PutObject","Resource":"arn:aws:s3:::mybucket/*""#,
                ),
                "statement 1: invalid principal: Principal type \"Federated\" is not supported (AWS, CanonicalUser or Service)",
            ),
            (
                one(
                    r#""Effect":"Allow","Principal":{"Service":""},"Action":"s3:PutObject","Resource":"arn:aws:s3:::mybucket/*""#,
                ),
                "statement 1: invalid principal \"\" in Principal",
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(bucket_err(&json), expected, "{json}");
        }
        let duplicate = format!(r#"{{"Statement":[{{"Sid":"s",{OK}}},{{"Sid":"t",{OK}}},{{"Sid":"s",{OK}}}]}}"#);
        assert_eq!(bucket_err(&duplicate), "statement 3 (Sid \"s\"): duplicate Sid");
    }

    #[test]
    fn identity_policies_name_no_principal_and_any_arn() {
        let ok = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":["s3:*","kms:Decrypt"],"Resource":["*","arn:aws:s3:::any/*"]}}"#;
        let doc = parse_identity_policy(ok).unwrap();
        assert_eq!(doc.kind(), PolicyKind::Identity);
        assert!(!doc.is_public());
        assert_eq!(
            identity_err(&one(OK)),
            "statement 1: identity policies cannot name a Principal or NotPrincipal"
        );
        assert_eq!(
            identity_err(r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"bucket"}}"#),
            "statement 1: Resource \"bucket\" is not an ARN"
        );
        assert_eq!(
            identity_err(r#"{"Statement":{"Effect":"Allow","Action":"s3:*"}}"#),
            "statement 1: statement has no Resource or NotResource"
        );
        assert_eq!(
            identity_err(r#"{"Statement":{"Effect":"Allow","Resource":"*"}}"#),
            "statement 1: statement has no Action or NotAction"
        );
        assert_eq!(
            identity_err(r#"{"Statement":{"Effect":"Allow","Action":"s3","Resource":"*"}}"#),
            "statement 1: Policy has invalid action \"s3\""
        );
    }

    #[test]
    fn input_is_bounded() {
        let padding = " ".repeat(MAX_IDENTITY_POLICY_BYTES);
        let big = format!(r#"{{"Statement":{{"Effect":"Allow","Action":"s3:*","Resource":"*"}}}}{padding}"#);
        let err = parse_identity_policy(&big).unwrap_err();
        assert_eq!(
            err,
            MalformedPolicy::TooLarge {
                kind: PolicyKind::Identity,
                size: big.len(),
                limit: MAX_IDENTITY_POLICY_BYTES
            }
        );
        assert!(err.to_string().ends_with("6144-byte limit for identity policies"));
        let huge = " ".repeat(MAX_BUCKET_POLICY_BYTES + 1);
        assert!(bucket_err(&huge).ends_with("20480-byte limit for bucket policies"));
        // Many tiny statements fit in 20 KiB but exceed the statement limit.
        let tiny = r#"{"Effect":"Deny","Principal":"*","Action":"*","Resource":"arn:aws:s3:::b"}"#;
        let many = vec![tiny; MAX_STATEMENTS + 1].join(",");
        let json = format!(r#"{{"Statement":[{many}]}}"#);
        assert!(json.len() <= MAX_BUCKET_POLICY_BYTES);
        assert_eq!(
            parse_bucket_policy(&json, "b").unwrap_err(),
            MalformedPolicy::TooManyStatements {
                count: MAX_STATEMENTS + 1
            }
        );
        let at_limit = vec![tiny; MAX_STATEMENTS].join(",");
        let json = format!(r#"{{"Statement":[{at_limit}]}}"#);
        assert!(parse_bucket_policy(&json, "b").is_ok());
    }
}
