//! The `Condition` element: operators, their typed values, and how they are decided against a
//! request's context.
//!
//! Semantics follow AWS's IAM documentation:
//! - all operators of a block, and all keys under one operator, must hold (AND); the several
//!   values given for one key are alternatives (OR);
//! - a key the request does not carry makes the condition false — except that the negated
//!   operators (`StringNotEquals`, `StringNotEqualsIgnoreCase`, `StringNotLike`,
//!   `NumericNotEquals`, `DateNotEquals`, `ArnNotEquals`, `ArnNotLike`, `NotIpAddress`) then
//!   hold, as AWS documents ("if the policy condition requires that the key is *not* matched
//!   ... and the right key is not present, the condition is true"); `...IfExists` holds when
//!   the key is absent; `Null` tests presence itself;
//! - `ForAnyValue:` holds when some request value passes (false when the key is absent or
//!   empty); `ForAllValues:` when every request value passes (true when absent or empty);
//! - without a qualifier, a multi-valued key passes a positive operator when any of its values
//!   does, and a negated operator when none of its values matches the positive form.

use std::net::IpAddr;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::{Iso8601, Rfc3339};

use crate::context::normalize_key;
use crate::wildcard::{Pattern, Syntax};

/// A condition operator without its qualifier and `IfExists` suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    NotIpAddress,
    ArnEquals,
    ArnLike,
    ArnNotEquals,
    ArnNotLike,
    Null,
}

const OPERATORS: &[(&str, Operator)] = &[
    ("StringEquals", Operator::StringEquals),
    ("StringNotEquals", Operator::StringNotEquals),
    ("StringEqualsIgnoreCase", Operator::StringEqualsIgnoreCase),
    ("StringNotEqualsIgnoreCase", Operator::StringNotEqualsIgnoreCase),
    ("StringLike", Operator::StringLike),
    ("StringNotLike", Operator::StringNotLike),
    ("NumericEquals", Operator::NumericEquals),
    ("NumericNotEquals", Operator::NumericNotEquals),
    ("NumericLessThan", Operator::NumericLessThan),
    ("NumericLessThanEquals", Operator::NumericLessThanEquals),
    ("NumericGreaterThan", Operator::NumericGreaterThan),
    ("NumericGreaterThanEquals", Operator::NumericGreaterThanEquals),
    ("DateEquals", Operator::DateEquals),
    ("DateNotEquals", Operator::DateNotEquals),
    ("DateLessThan", Operator::DateLessThan),
    ("DateLessThanEquals", Operator::DateLessThanEquals),
    ("DateGreaterThan", Operator::DateGreaterThan),
    ("DateGreaterThanEquals", Operator::DateGreaterThanEquals),
    ("Bool", Operator::Bool),
    ("BinaryEquals", Operator::BinaryEquals),
    ("IpAddress", Operator::IpAddress),
    ("NotIpAddress", Operator::NotIpAddress),
    ("ArnEquals", Operator::ArnEquals),
    ("ArnLike", Operator::ArnLike),
    ("ArnNotEquals", Operator::ArnNotEquals),
    ("ArnNotLike", Operator::ArnNotLike),
    ("Null", Operator::Null),
];

impl Operator {
    fn named(name: &str) -> Option<Operator> {
        OPERATORS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, op)| op)
    }

    /// The negated operators hold when their positive form does not — and when the key is
    /// absent (see the module documentation).
    #[must_use]
    pub fn is_negated(self) -> bool {
        matches!(
            self,
            Operator::StringNotEquals
                | Operator::StringNotEqualsIgnoreCase
                | Operator::StringNotLike
                | Operator::NumericNotEquals
                | Operator::DateNotEquals
                | Operator::NotIpAddress
                | Operator::ArnNotEquals
                | Operator::ArnNotLike
        )
    }
}

/// `ForAnyValue:` or `ForAllValues:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetQualifier {
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

impl Comparison {
    fn holds<T: PartialOrd>(self, request: T, policy: T) -> bool {
        match self {
            Comparison::Equal => request == policy,
            Comparison::Less => request < policy,
            Comparison::LessOrEqual => request <= policy,
            Comparison::Greater => request > policy,
            Comparison::GreaterOrEqual => request >= policy,
        }
    }
}

/// An IPv4 or IPv6 network; a plain address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    pub(crate) fn parse(text: &str) -> Option<IpNetwork> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix.parse::<u8>().ok()?)),
            None => (text.trim(), None),
        };
        let addr = addr.parse::<IpAddr>().ok()?.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(IpNetwork { addr, prefix })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Narrow enough not to count as "public" for Public Access Block: at least /8 for IPv4,
    /// /32 for IPv6 (a wider block such as 0.0.0.0/1 lets anyone in).
    pub(crate) fn is_narrow(&self) -> bool {
        if self.addr.is_ipv4() {
            self.prefix >= 8
        } else {
            self.prefix >= 32
        }
    }
}

/// An ARN pattern: the (up to six) colon-separated components are matched separately, as
/// AWS does, so a `*` never spans a colon; a value without any colon (`*`) is matched
/// against the whole ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ArnPattern {
    Components(Vec<Pattern>),
    Whole(Pattern),
}

impl ArnPattern {
    fn parse(text: &str, variables: bool) -> ArnPattern {
        let syntax = Syntax {
            wildcards: true,
            variables,
        };
        if text.contains(':') {
            let parts = text.splitn(6, ':');
            ArnPattern::Components(parts.map(|p| Pattern::parse(p, syntax)).collect())
        } else {
            ArnPattern::Whole(Pattern::parse(text, syntax))
        }
    }

    fn matches<'v>(&self, arn: &str, resolve: &dyn Fn(&str) -> Option<&'v str>) -> bool {
        match self {
            ArnPattern::Whole(p) => p.matches(arn, false, resolve),
            ArnPattern::Components(patterns) => {
                let parts = arn.splitn(6, ':');
                let mut count = 0;
                for (pattern, part) in patterns.iter().zip(parts) {
                    if !pattern.matches(part, false, resolve) {
                        return false;
                    }
                    count += 1;
                }
                count == patterns.len() && arn.splitn(6, ':').count() == count
            }
        }
    }

    fn is_fixed(&self) -> bool {
        match self {
            ArnPattern::Whole(p) => !p.has_wildcards(),
            ArnPattern::Components(ps) => ps.iter().all(|p| !p.has_wildcards()),
        }
    }
}

/// The policy's values for one key, parsed for the operator's type.
#[derive(Debug, Clone, PartialEq)]
enum Values {
    Strings { patterns: Vec<Pattern>, fold: bool },
    Numbers(Comparison, Vec<f64>),
    Dates(Comparison, Vec<i128>),
    Bools(Vec<bool>),
    Binary(Vec<String>),
    Networks(Vec<IpNetwork>),
    Arns(Vec<ArnPattern>),
    Null(Vec<bool>),
}

/// One operator applied to one key: `"StringLike": {"s3:prefix": ["a/*", "b/*"]}` is one
/// `Condition` with two values.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    operator: Operator,
    qualifier: Option<SetQualifier>,
    if_exists: bool,
    /// Normalised (see [`normalize_key`]).
    key: String,
    values: Values,
}

/// Where a condition looks up request values.
pub(crate) trait KeyLookup {
    fn values(&self, key: &str) -> Option<&[String]>;
}

impl Condition {
    #[must_use]
    pub fn operator(&self) -> Operator {
        self.operator
    }

    #[must_use]
    pub fn qualifier(&self) -> Option<SetQualifier> {
        self.qualifier
    }

    #[must_use]
    pub fn if_exists(&self) -> bool {
        self.if_exists
    }

    /// The condition key, normalised (lower-case name, tag key as written).
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether the condition holds for the request.
    pub(crate) fn holds(&self, lookup: &dyn KeyLookup) -> bool {
        let present = lookup.values(&self.key).filter(|v| !v.is_empty());
        if let Values::Null(wanted) = &self.values {
            let absent = present.is_none();
            return wanted.contains(&absent);
        }
        let Some(request) = present else {
            if self.if_exists {
                return true;
            }
            return match self.qualifier {
                Some(SetQualifier::ForAllValues) => true,
                Some(SetQualifier::ForAnyValue) => false,
                None => self.operator.is_negated(),
            };
        };
        let passes = |v: &String| self.passes(v, lookup);
        match self.qualifier {
            Some(SetQualifier::ForAnyValue) => request.iter().any(passes),
            Some(SetQualifier::ForAllValues) => request.iter().all(passes),
            None if self.operator.is_negated() => request.iter().all(passes),
            None => request.iter().any(passes),
        }
    }

    /// Whether one request value passes: some policy value matches it (positive operators), or
    /// none does (negated ones).
    fn passes(&self, request: &str, lookup: &dyn KeyLookup) -> bool {
        let resolve = |key: &str| lookup.values(key).and_then(|v| v.first()).map(String::as_str);
        let matched = match &self.values {
            Values::Strings { patterns, fold } => patterns.iter().any(|p| p.matches(request, *fold, &resolve)),
            Values::Numbers(cmp, values) => {
                parse_number(request).is_some_and(|r| values.iter().any(|&p| cmp.holds(r, p)))
            }
            Values::Dates(cmp, values) => parse_date(request).is_some_and(|r| values.iter().any(|&p| cmp.holds(r, p))),
            Values::Bools(values) => parse_bool(request).is_some_and(|r| values.contains(&r)),
            Values::Binary(values) => values.iter().any(|p| p == request),
            Values::Networks(networks) => request
                .trim()
                .parse::<IpAddr>()
                .is_ok_and(|ip| networks.iter().any(|n| n.contains(ip))),
            Values::Arns(patterns) => patterns.iter().any(|p| p.matches(request, &resolve)),
            Values::Null(_) => false,
        };
        matched != self.operator.is_negated()
    }

    /// Whether this condition pins the request to specific, known parties — the test AWS's
    /// Public Access Block applies to decide that a statement granting `*` is not public.
    /// Holds for positive operators (not `IfExists`, not `ForAllValues`, which pass when the
    /// key is absent) on a source or principal key with values free of wildcards and, for
    /// `aws:SourceIp`, networks no wider than /8 (IPv4) or /32 (IPv6).
    pub(crate) fn pins_requester(&self) -> bool {
        const PINNING_KEYS: &[&str] = &[
            "aws:sourceip",
            "aws:sourcearn",
            "aws:sourceaccount",
            "aws:sourceowner",
            "aws:sourcevpc",
            "aws:sourcevpce",
            "aws:principalaccount",
            "aws:principalarn",
            "aws:principalorgid",
            "aws:userid",
            "s3:dataaccesspointarn",
            "s3:dataaccesspointaccount",
        ];
        if self.if_exists
            || self.qualifier == Some(SetQualifier::ForAllValues)
            || self.operator.is_negated()
            || !PINNING_KEYS.contains(&self.key.as_str())
        {
            return false;
        }
        match &self.values {
            Values::Strings { patterns, .. } => patterns.iter().all(|p| !p.has_wildcards() && !p.has_variables()),
            Values::Arns(patterns) => patterns.iter().all(ArnPattern::is_fixed),
            Values::Networks(networks) => networks.iter().all(IpNetwork::is_narrow),
            _ => false,
        }
    }
}

fn parse_number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim() {
        t if t.eq_ignore_ascii_case("true") => Some(true),
        t if t.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A date as nanoseconds since the epoch: RFC 3339, other ISO 8601 forms, a bare `YYYY-MM-DD`
/// (midnight UTC), or epoch seconds (what `aws:EpochTime` holds).
pub(crate) fn parse_date(text: &str) -> Option<i128> {
    let text = text.trim();
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t.unix_timestamp_nanos());
    }
    if let Ok(t) = OffsetDateTime::parse(text, &Iso8601::PARSING) {
        return Some(t.unix_timestamp_nanos());
    }
    if let Ok(d) = time::Date::parse(text, &time::macros::format_description!("[year]-[month]-[day]")) {
        return Some(d.midnight().assume_utc().unix_timestamp_nanos());
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return text.parse::<i64>().ok().map(|s| i128::from(s) * 1_000_000_000);
    }
    None
}

/// Parses a `Condition` element. Errors name the problem, without the statement prefix (the
/// caller adds it).
pub(crate) fn parse_block(element: &Value, variables: bool) -> Result<Vec<Condition>, String> {
    let Value::Object(operators) = element else {
        return Err("Condition must be an object".to_owned());
    };
    let mut conditions = Vec::new();
    for (name, keys) in operators {
        let (operator, qualifier, if_exists) = parse_operator(name)?;
        let Value::Object(keys) = keys else {
            return Err(format!(
                "condition operator \"{name}\" must map condition keys to values"
            ));
        };
        if keys.is_empty() {
            return Err(format!("condition operator \"{name}\" names no condition key"));
        }
        for (key, raw) in keys {
            if key.is_empty() {
                return Err(format!("condition operator \"{name}\" has an empty key"));
            }
            let texts = value_texts(raw).ok_or_else(|| {
                format!("condition \"{name}\" on \"{key}\": values must be strings, numbers or booleans")
            })?;
            if texts.is_empty() {
                return Err(format!("condition \"{name}\" on \"{key}\" has no values"));
            }
            let values = parse_values(operator, &texts, variables)
                .map_err(|e| format!("condition \"{name}\" on \"{key}\": {e}"))?;
            conditions.push(Condition {
                operator,
                qualifier,
                if_exists,
                key: normalize_key(key).into_owned(),
                values,
            });
        }
    }
    Ok(conditions)
}

/// `[ForAnyValue:|ForAllValues:]Operator[IfExists]`. Names are matched case-insensitively
/// (lenient: a policy that AWS accepts is accepted here too); `Null` takes neither a
/// qualifier nor `IfExists`, since it tests presence itself.
fn parse_operator(name: &str) -> Result<(Operator, Option<SetQualifier>, bool), String> {
    let unknown = || format!("unknown condition operator \"{name}\"");
    let (qualifier, rest) = match name.split_once(':') {
        Some((q, rest)) if q.eq_ignore_ascii_case("ForAnyValue") => (Some(SetQualifier::ForAnyValue), rest),
        Some((q, rest)) if q.eq_ignore_ascii_case("ForAllValues") => (Some(SetQualifier::ForAllValues), rest),
        Some(_) => return Err(unknown()),
        None => (None, name),
    };
    let (base, if_exists) = match rest.len().checked_sub("IfExists".len()) {
        Some(at) if rest.is_char_boundary(at) && rest[at..].eq_ignore_ascii_case("IfExists") => (&rest[..at], true),
        _ => (rest, false),
    };
    let operator = Operator::named(base).ok_or_else(unknown)?;
    if operator == Operator::Null && (if_exists || qualifier.is_some()) {
        return Err(unknown());
    }
    Ok((operator, qualifier, if_exists))
}

/// A condition value as text: strings as they are, numbers and booleans as JSON writes them.
fn value_texts(raw: &Value) -> Option<Vec<String>> {
    fn one(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    match raw {
        Value::Array(items) => items.iter().map(one).collect(),
        other => one(other).map(|s| vec![s]),
    }
}

fn parse_values(operator: Operator, texts: &[String], variables: bool) -> Result<Values, String> {
    use Operator as O;
    let strings = |wildcards: bool, fold: bool| Values::Strings {
        patterns: texts
            .iter()
            .map(|t| Pattern::parse(t, Syntax { wildcards, variables }))
            .collect(),
        fold,
    };
    let numbers = |cmp| {
        texts
            .iter()
            .map(|t| parse_number(t).ok_or_else(|| format!("\"{t}\" is not a number")))
            .collect::<Result<_, _>>()
            .map(|v| Values::Numbers(cmp, v))
    };
    let dates = |cmp| {
        texts
            .iter()
            .map(|t| {
                parse_date(t).ok_or_else(|| format!("\"{t}\" is not a date (ISO 8601 / RFC 3339 or epoch seconds)"))
            })
            .collect::<Result<_, _>>()
            .map(|v| Values::Dates(cmp, v))
    };
    let bools = || {
        texts
            .iter()
            .map(|t| parse_bool(t).ok_or_else(|| format!("\"{t}\" is not true or false")))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match operator {
        O::StringEquals | O::StringNotEquals => strings(false, false),
        O::StringEqualsIgnoreCase | O::StringNotEqualsIgnoreCase => strings(false, true),
        O::StringLike | O::StringNotLike => strings(true, false),
        O::NumericEquals | O::NumericNotEquals => numbers(Comparison::Equal)?,
        O::NumericLessThan => numbers(Comparison::Less)?,
        O::NumericLessThanEquals => numbers(Comparison::LessOrEqual)?,
        O::NumericGreaterThan => numbers(Comparison::Greater)?,
        O::NumericGreaterThanEquals => numbers(Comparison::GreaterOrEqual)?,
        O::DateEquals | O::DateNotEquals => dates(Comparison::Equal)?,
        O::DateLessThan => dates(Comparison::Less)?,
        O::DateLessThanEquals => dates(Comparison::LessOrEqual)?,
        O::DateGreaterThan => dates(Comparison::Greater)?,
        O::DateGreaterThanEquals => dates(Comparison::GreaterOrEqual)?,
        O::Bool => Values::Bools(bools()?),
        O::Null => Values::Null(bools()?),
        O::BinaryEquals => Values::Binary(texts.to_vec()),
        O::IpAddress | O::NotIpAddress => Values::Networks(
            texts
                .iter()
                .map(|t| IpNetwork::parse(t).ok_or_else(|| format!("\"{t}\" is not an IP address or CIDR block")))
                .collect::<Result<_, _>>()?,
        ),
        O::ArnEquals | O::ArnLike | O::ArnNotEquals | O::ArnNotLike => {
            Values::Arns(texts.iter().map(|t| ArnPattern::parse(t, variables)).collect())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::RequestContext;
    use time::macros::datetime;

    fn block(json: &str) -> Vec<Condition> {
        parse_block(&serde_json::from_str(json).unwrap(), true).unwrap()
    }

    fn holds(json: &str, ctx: &RequestContext) -> bool {
        block(json).iter().all(|c| c.holds(ctx))
    }

    fn ctx(pairs: &[(&str, &str)]) -> RequestContext {
        let mut ctx = RequestContext::new();
        for (k, v) in pairs {
            ctx.add(k, *v);
        }
        ctx
    }

    #[test]
    fn string_operators() {
        let c = ctx(&[("s3:prefix", "home/Alice/")]);
        assert!(holds(r#"{"StringEquals":{"s3:prefix":"home/Alice/"}}"#, &c));
        assert!(!holds(r#"{"StringEquals":{"s3:prefix":"home/alice/"}}"#, &c));
        assert!(holds(r#"{"StringEqualsIgnoreCase":{"s3:prefix":"HOME/alice/"}}"#, &c));
        assert!(!holds(
            r#"{"StringNotEqualsIgnoreCase":{"s3:prefix":"HOME/alice/"}}"#,
            &c
        ));
        assert!(holds(r#"{"StringNotEquals":{"s3:prefix":["a","b"]}}"#, &c));
        assert!(!holds(r#"{"StringNotEquals":{"s3:prefix":["a","home/Alice/"]}}"#, &c));
        assert!(holds(r#"{"StringLike":{"s3:prefix":["x/*","home/*/"]}}"#, &c));
        assert!(!holds(r#"{"StringLike":{"s3:prefix":"home/?/"}}"#, &c));
        assert!(holds(r#"{"StringNotLike":{"s3:prefix":"tmp/*"}}"#, &c));
        assert!(!holds(r#"{"StringNotLike":{"s3:prefix":"home/*"}}"#, &c));
        assert!(
            !holds(r#"{"StringEquals":{"s3:prefix":"home/*"}}"#, &c),
            "no wildcards in Equals"
        );
        // Keys are case-insensitive.
        assert!(holds(r#"{"StringEquals":{"S3:PREFIX":"home/Alice/"}}"#, &c));
    }

    #[test]
    fn keys_and_operators_are_anded_values_ored() {
        let c = ctx(&[("s3:prefix", "a/"), ("s3:delimiter", "/")]);
        assert!(holds(
            r#"{"StringEquals":{"s3:prefix":["z/","a/"],"s3:delimiter":"/"}}"#,
            &c
        ));
        assert!(!holds(r#"{"StringEquals":{"s3:prefix":"a/","s3:delimiter":"-"}}"#, &c));
        assert!(!holds(
            r#"{"StringEquals":{"s3:prefix":"a/"},"StringLike":{"s3:delimiter":"x*"}}"#,
            &c
        ));
    }

    #[test]
    fn missing_keys() {
        let empty = RequestContext::new();
        // Positive operators are false, negated ones true (AWS's documented rule).
        for op in [
            "StringEquals",
            "StringLike",
            "StringEqualsIgnoreCase",
            "ArnLike",
            "ArnEquals",
        ] {
            assert!(!holds(&format!(r#"{{"{op}":{{"aws:Referer":"x"}}}}"#), &empty), "{op}");
        }
        for op in [
            "StringNotEquals",
            "StringNotLike",
            "StringNotEqualsIgnoreCase",
            "ArnNotLike",
            "ArnNotEquals",
        ] {
            assert!(holds(&format!(r#"{{"{op}":{{"aws:Referer":"x"}}}}"#), &empty), "{op}");
        }
        assert!(!holds(r#"{"NumericLessThan":{"s3:max-keys":"10"}}"#, &empty));
        assert!(holds(r#"{"NumericNotEquals":{"s3:max-keys":"10"}}"#, &empty));
        assert!(!holds(
            r#"{"DateGreaterThan":{"aws:CurrentTime":"2020-01-01"}}"#,
            &empty
        ));
        assert!(holds(r#"{"DateNotEquals":{"aws:CurrentTime":"2020-01-01"}}"#, &empty));
        assert!(!holds(r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#, &empty));
        assert!(holds(r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#, &empty));
        assert!(!holds(r#"{"Bool":{"aws:SecureTransport":"false"}}"#, &empty));
        assert!(!holds(r#"{"BinaryEquals":{"s3:x":"QUJD"}}"#, &empty));
        // IfExists: absent passes, present is checked.
        assert!(holds(r#"{"StringEqualsIfExists":{"aws:Referer":"x"}}"#, &empty));
        assert!(holds(r#"{"NumericLessThanIfExists":{"s3:max-keys":"10"}}"#, &empty));
        let c = ctx(&[("s3:max-keys", "100")]);
        assert!(!holds(r#"{"NumericLessThanIfExists":{"s3:max-keys":"10"}}"#, &c));
        assert!(holds(r#"{"NumericLessThanIfExists":{"s3:max-keys":"1000"}}"#, &c));
        // Null tests presence.
        assert!(holds(r#"{"Null":{"s3:x-amz-server-side-encryption":"true"}}"#, &empty));
        assert!(!holds(
            r#"{"Null":{"s3:x-amz-server-side-encryption":"false"}}"#,
            &empty
        ));
        let sse = ctx(&[("s3:x-amz-server-side-encryption", "AES256")]);
        assert!(!holds(r#"{"Null":{"s3:x-amz-server-side-encryption":"true"}}"#, &sse));
        assert!(holds(r#"{"Null":{"s3:x-amz-server-side-encryption":false}}"#, &sse));
    }

    #[test]
    fn numeric_operators() {
        let c = ctx(&[("s3:max-keys", "50")]);
        let check = |op: &str, v: &str| holds(&format!(r#"{{"{op}":{{"s3:max-keys":"{v}"}}}}"#), &c);
        assert!(check("NumericEquals", "50") && !check("NumericEquals", "51"));
        assert!(check("NumericEquals", "50.0"), "compared as numbers, not text");
        assert!(check("NumericNotEquals", "51") && !check("NumericNotEquals", "50"));
        assert!(check("NumericLessThan", "51") && !check("NumericLessThan", "50"));
        assert!(check("NumericLessThanEquals", "50") && !check("NumericLessThanEquals", "49"));
        assert!(check("NumericGreaterThan", "49") && !check("NumericGreaterThan", "50"));
        assert!(check("NumericGreaterThanEquals", "50") && !check("NumericGreaterThanEquals", "51"));
        let bad = ctx(&[("s3:max-keys", "many")]);
        assert!(!holds(r#"{"NumericLessThan":{"s3:max-keys":"10"}}"#, &bad));
        assert!(holds(r#"{"NumericLessThan":{"s3:max-keys":10}}"#, &c.clone()) == (50.0 < 10.0));
    }

    #[test]
    fn date_operators() {
        let mut c = RequestContext::new();
        c.set_current_time(datetime!(2026-06-15 12:00:00 UTC));
        let check = |op: &str, key: &str, v: &str| holds(&format!(r#"{{"{op}":{{"{key}":"{v}"}}}}"#), &c);
        assert!(check("DateGreaterThan", "aws:CurrentTime", "2026-06-15T11:59:59Z"));
        assert!(!check("DateGreaterThan", "aws:CurrentTime", "2026-06-15T12:00:00Z"));
        assert!(check(
            "DateGreaterThanEquals",
            "aws:CurrentTime",
            "2026-06-15T12:00:00Z"
        ));
        assert!(check("DateLessThan", "aws:CurrentTime", "2026-06-16"));
        assert!(!check("DateLessThan", "aws:CurrentTime", "2026-06-15"));
        assert!(check(
            "DateLessThanEquals",
            "aws:CurrentTime",
            "2026-06-15T14:00:00+02:00"
        ));
        assert!(check("DateEquals", "aws:CurrentTime", "2026-06-15T12:00:00.000Z"));
        assert!(check("DateNotEquals", "aws:CurrentTime", "2026-06-15T12:00:01Z"));
        // Epoch seconds, as a policy value and as the request value (aws:EpochTime).
        let epoch = datetime!(2026-06-15 12:00:00 UTC).unix_timestamp();
        assert!(check("DateEquals", "aws:CurrentTime", &epoch.to_string()));
        assert!(check("DateLessThan", "aws:EpochTime", &(epoch + 1).to_string()));
        assert!(check("DateGreaterThan", "aws:EpochTime", "2026-06-15T11:00:00Z"));
        assert!(!check("DateGreaterThan", "aws:EpochTime", "2026-06-15T13:00:00Z"));
    }

    #[test]
    fn bool_and_binary() {
        let tls = ctx(&[("aws:SecureTransport", "true")]);
        assert!(holds(r#"{"Bool":{"aws:SecureTransport":"true"}}"#, &tls));
        assert!(holds(r#"{"Bool":{"aws:SecureTransport":true}}"#, &tls));
        assert!(!holds(r#"{"Bool":{"aws:SecureTransport":"false"}}"#, &tls));
        assert!(holds(r#"{"Bool":{"aws:SecureTransport":"TRUE"}}"#, &tls));
        let bin = ctx(&[("s3:blob", "QUJD")]);
        assert!(holds(r#"{"BinaryEquals":{"s3:blob":"QUJD"}}"#, &bin));
        assert!(!holds(r#"{"BinaryEquals":{"s3:blob":"QUJE"}}"#, &bin));
    }

    #[test]
    fn ip_operators() {
        let v4 = ctx(&[("aws:SourceIp", "192.168.7.9")]);
        assert!(holds(r#"{"IpAddress":{"aws:SourceIp":"192.168.0.0/16"}}"#, &v4));
        assert!(holds(r#"{"IpAddress":{"aws:SourceIp":"192.168.7.9"}}"#, &v4));
        assert!(holds(r#"{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#, &v4));
        assert!(!holds(
            r#"{"IpAddress":{"aws:SourceIp":["10.0.0.0/8","192.168.8.0/24"]}}"#,
            &v4
        ));
        assert!(holds(r#"{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#, &v4));
        assert!(!holds(r#"{"NotIpAddress":{"aws:SourceIp":"192.168.7.0/24"}}"#, &v4));
        let v6 = ctx(&[("aws:SourceIp", "2001:db8:abcd:12::1")]);
        assert!(holds(r#"{"IpAddress":{"aws:SourceIp":"2001:db8:abcd::/48"}}"#, &v6));
        assert!(!holds(r#"{"IpAddress":{"aws:SourceIp":"2001:db8:abce::/48"}}"#, &v6));
        assert!(!holds(r#"{"IpAddress":{"aws:SourceIp":"192.168.0.0/16"}}"#, &v6));
        assert!(holds(r#"{"IpAddress":{"aws:SourceIp":"::/0"}}"#, &v6));
        let mapped = ctx(&[("aws:SourceIp", "::ffff:192.168.7.9")]);
        assert!(
            holds(r#"{"IpAddress":{"aws:SourceIp":"192.168.0.0/16"}}"#, &mapped),
            "IPv4-mapped"
        );
        let garbage = ctx(&[("aws:SourceIp", "not-an-ip")]);
        assert!(!holds(r#"{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#, &garbage));
    }

    #[test]
    fn arn_operators() {
        let c = ctx(&[("aws:PrincipalArn", "arn:aws:iam::acme:user/bob")]);
        assert!(holds(
            r#"{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::acme:user/bob"}}"#,
            &c
        ));
        assert!(holds(
            r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::*:user/b*"}}"#,
            &c
        ));
        assert!(holds(r#"{"ArnLike":{"aws:PrincipalArn":"*"}}"#, &c));
        assert!(!holds(
            r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::globex:*"}}"#,
            &c
        ));
        // Components are matched separately: a star does not cross a colon.
        assert!(!holds(r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:*:user/bob"}}"#, &c));
        assert!(holds(
            r#"{"ArnNotLike":{"aws:PrincipalArn":"arn:aws:iam::globex:*"}}"#,
            &c
        ));
        assert!(!holds(
            r#"{"ArnNotEquals":{"aws:PrincipalArn":"arn:aws:iam::acme:user/bob"}}"#,
            &c
        ));
    }

    #[test]
    fn set_qualifiers() {
        let tags = ctx(&[("s3:RequestObjectTagKeys", "env"), ("s3:RequestObjectTagKeys", "team")]);
        let any = r#"{"ForAnyValue:StringEquals":{"s3:RequestObjectTagKeys":["env","cost"]}}"#;
        let all = r#"{"ForAllValues:StringEquals":{"s3:RequestObjectTagKeys":["env","cost"]}}"#;
        let all_ok = r#"{"ForAllValues:StringEquals":{"s3:RequestObjectTagKeys":["env","team","cost"]}}"#;
        assert!(holds(any, &tags));
        assert!(!holds(all, &tags));
        assert!(holds(all_ok, &tags));
        let empty = RequestContext::new();
        assert!(!holds(any, &empty), "ForAnyValue is false without the key");
        assert!(holds(all, &empty), "ForAllValues is true without the key");
        let mut present_but_empty = RequestContext::new();
        present_but_empty.set_values("s3:RequestObjectTagKeys", Vec::<String>::new());
        assert!(holds(all, &present_but_empty) && !holds(any, &present_but_empty));
        // Negated, qualified: per request value.
        let not_any = r#"{"ForAnyValue:StringNotEquals":{"s3:RequestObjectTagKeys":["env"]}}"#;
        assert!(holds(not_any, &tags), "team is not env");
        let not_all = r#"{"ForAllValues:StringNotLike":{"s3:RequestObjectTagKeys":["secret*"]}}"#;
        assert!(holds(not_all, &tags));
        let secret = ctx(&[
            ("s3:RequestObjectTagKeys", "env"),
            ("s3:RequestObjectTagKeys", "secret-x"),
        ]);
        assert!(!holds(not_all, &secret));
        // Unqualified on a multi-valued key: positive = some value, negated = no value.
        assert!(holds(r#"{"StringEquals":{"s3:RequestObjectTagKeys":"team"}}"#, &tags));
        assert!(!holds(
            r#"{"StringNotEquals":{"s3:RequestObjectTagKeys":"team"}}"#,
            &tags
        ));
        assert!(holds(
            r#"{"ForAnyValue:StringLikeIfExists":{"s3:RequestObjectTagKeys":"x"}}"#,
            &empty
        ));
    }

    #[test]
    fn variables_in_values() {
        let c = ctx(&[("s3:prefix", "home/alice/docs"), ("aws:username", "alice")]);
        assert!(holds(r#"{"StringLike":{"s3:prefix":"home/${aws:username}/*"}}"#, &c));
        let bob = ctx(&[("s3:prefix", "home/alice/docs"), ("aws:username", "bob")]);
        assert!(!holds(r#"{"StringLike":{"s3:prefix":"home/${aws:username}/*"}}"#, &bob));
        // Without Version 2012-10-17 the text is literal.
        let literal = parse_block(
            &serde_json::from_str(r#"{"StringEquals":{"s3:prefix":"${aws:username}"}}"#).unwrap(),
            false,
        )
        .unwrap();
        assert!(literal[0].holds(&ctx(&[("s3:prefix", "${aws:username}")])));
    }

    #[test]
    fn tag_keys_keep_their_case() {
        let mut c = RequestContext::new();
        c.set_existing_object_tags([("Env", "prod")]);
        assert!(holds(r#"{"StringEquals":{"s3:ExistingObjectTag/Env":"prod"}}"#, &c));
        assert!(holds(r#"{"StringEquals":{"S3:existingobjecttag/Env":"prod"}}"#, &c));
        assert!(!holds(r#"{"StringEquals":{"s3:ExistingObjectTag/env":"prod"}}"#, &c));
    }

    #[test]
    fn networks() {
        let net = IpNetwork::parse("10.1.2.3/8").unwrap();
        assert!(net.contains("10.200.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(net.is_narrow() && !IpNetwork::parse("0.0.0.0/1").unwrap().is_narrow());
        assert!(IpNetwork::parse("::1/129").is_none() && IpNetwork::parse("1.2.3/8").is_none());
        assert!(
            IpNetwork::parse("fe80::/10")
                .unwrap()
                .contains("fe80::1".parse().unwrap())
        );
    }
}
