//! Cross-origin resource sharing: which web pages (origins) a bucket lets a browser call it
//! from, as S3 decides it. Pure: the front asks [`CorsConfiguration::preflight`] for an
//! `OPTIONS` request and [`CorsConfiguration::actual`] for any other request with an `Origin`.
//! CORS is not access control: it only tells a browser what it may show a page; the request
//! itself is authorized as any other.

use serde::{Deserialize, Serialize};

/// The methods a rule may allow (S3's list).
pub const METHODS: [&str; 5] = ["GET", "PUT", "HEAD", "POST", "DELETE"];

/// Most rules in one configuration (S3's limit).
pub const RULES_MAX: usize = 100;

/// A bucket's CORS configuration (stored as JSON, version `format`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsConfiguration {
    pub format: u32,
    pub rules: Vec<CorsRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CorsRule {
    #[serde(default)]
    pub id: Option<String>,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub max_age_seconds: Option<i32>,
}

/// What is wrong with a configuration, said for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CorsError(pub String);

/// Why a preflight is refused (S3 answers 400 for the first, 403 for the others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreflightRefusal {
    /// No `Origin` or no `Access-Control-Request-Method`: not a CORS preflight.
    NotPreflight,
    /// No rule allows this origin, method and these headers.
    NotAllowed,
}

/// `pattern` with at most one `*` standing for any run of characters, matched whole.
fn wildcard_match(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((head, tail)) => {
            value.len() >= head.len() + tail.len() && value.starts_with(head) && value.ends_with(tail)
        }
    }
}

impl CorsConfiguration {
    pub const FORMAT: u32 = 1;

    /// Checks a configuration as S3 does: 1 to 100 rules, each with an origin and a method of
    /// S3's, at most one `*` in an origin or header pattern.
    pub fn new(rules: Vec<CorsRule>) -> Result<Self, CorsError> {
        if rules.is_empty() || rules.len() > RULES_MAX {
            return Err(CorsError(format!(
                "a CORS configuration has 1 to {RULES_MAX} rules, not {}",
                rules.len()
            )));
        }
        for rule in &rules {
            if rule.allowed_origins.is_empty() || rule.allowed_methods.is_empty() {
                return Err(CorsError(
                    "each CORS rule needs an AllowedOrigin and an AllowedMethod".into(),
                ));
            }
            if let Some(bad) = rule.allowed_methods.iter().find(|m| !METHODS.contains(&m.as_str())) {
                return Err(CorsError(format!(
                    "Found unsupported HTTP method in CORS config. Unsupported method is {bad}"
                )));
            }
            let patterns = rule.allowed_origins.iter().chain(&rule.allowed_headers);
            if let Some(bad) = patterns.clone().find(|p| p.matches('*').count() > 1) {
                return Err(CorsError(format!(
                    "AllowedOrigin and AllowedHeader may hold at most one wildcard: {bad:?}"
                )));
            }
        }
        Ok(Self {
            format: Self::FORMAT,
            rules,
        })
    }

    /// The first rule allowing `method` from `origin` with every one of `headers`.
    fn find(&self, origin: &str, method: &str, headers: &[&str]) -> Option<&CorsRule> {
        self.rules.iter().find(|rule| {
            rule.allowed_origins.iter().any(|o| wildcard_match(o, origin))
                && rule.allowed_methods.iter().any(|m| m == method)
                && headers.iter().all(|h| {
                    rule.allowed_headers
                        .iter()
                        .any(|a| wildcard_match(&a.to_ascii_lowercase(), &h.to_ascii_lowercase()))
                })
        })
    }

    /// The answer to a preflight (`OPTIONS`) from `origin` asking for `method` with `headers`
    /// (`Access-Control-Request-Headers`, comma-separated).
    pub fn preflight(
        &self,
        origin: Option<&str>,
        method: Option<&str>,
        headers: Option<&str>,
    ) -> Result<Vec<(&'static str, String)>, PreflightRefusal> {
        let (Some(origin), Some(method)) = (origin, method) else {
            return Err(PreflightRefusal::NotPreflight);
        };
        let requested: Vec<&str> = headers
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        let rule = self
            .find(origin, method, &requested)
            .ok_or(PreflightRefusal::NotAllowed)?;
        let mut out = allow(rule, origin);
        if !requested.is_empty() {
            out.push(("access-control-allow-headers", requested.join(", ")));
        }
        if let Some(age) = rule.max_age_seconds {
            out.push(("access-control-max-age", age.to_string()));
        }
        Ok(out)
    }

    /// The headers to add to the answer to a request from `origin` (the method a browser says
    /// it will use, else the request's own): none when no rule allows it.
    #[must_use]
    pub fn actual(&self, origin: &str, method: &str) -> Vec<(&'static str, String)> {
        let Some(rule) = self.find(origin, method, &[]) else {
            return Vec::new();
        };
        let mut out = allow(rule, origin);
        if !rule.expose_headers.is_empty() {
            out.push(("access-control-expose-headers", rule.expose_headers.join(", ")));
        }
        out
    }
}

/// The origin and methods `rule` allows: `*` when it allows any origin (no credentials then),
/// else the caller's origin, which the answer then varies by.
fn allow(rule: &CorsRule, origin: &str) -> Vec<(&'static str, String)> {
    let any = rule.allowed_origins.iter().any(|o| o == "*");
    let mut out = vec![
        (
            "access-control-allow-origin",
            if any { "*".to_owned() } else { origin.to_owned() },
        ),
        ("access-control-allow-methods", rule.allowed_methods.join(", ")),
    ];
    if !any {
        out.push(("access-control-allow-credentials", "true".to_owned()));
        out.push((
            "vary",
            "Origin, Access-Control-Request-Headers, Access-Control-Request-Method".to_owned(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str]) -> CorsRule {
        CorsRule {
            allowed_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            allowed_methods: methods.iter().map(|s| (*s).to_owned()).collect(),
            ..CorsRule::default()
        }
    }

    fn origin_of(headers: &[(&'static str, String)]) -> Option<String> {
        headers
            .iter()
            .find(|(n, _)| *n == "access-control-allow-origin")
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn origins_match_with_one_wildcard_anywhere() {
        let config = CorsConfiguration::new(vec![
            rule(&["*suffix"], &["GET"]),
            rule(&["start*end"], &["GET"]),
            rule(&["prefix*"], &["GET"]),
            rule(&["*.put"], &["PUT"]),
        ])
        .unwrap();
        for (origin, allowed) in [
            ("foo.suffix", true),
            ("foo.bar", false),
            ("foo.suffix.get", false),
            ("startend", true),
            ("start12end", true),
            ("0start12end", false),
            ("prefix.suffix", true),
            ("bla.prefix", false),
        ] {
            assert_eq!(origin_of(&config.actual(origin, "GET")).is_some(), allowed, "{origin}");
        }
        assert!(config.actual("foo.put", "GET").is_empty());
        assert_eq!(origin_of(&config.actual("foo.put", "PUT")).as_deref(), Some("foo.put"));
    }

    #[test]
    fn a_preflight_needs_an_origin_and_a_method_and_allowed_headers() {
        let mut exposed = rule(&["*"], &["GET"]);
        exposed.expose_headers = vec!["x-amz-meta-header1".into()];
        let config = CorsConfiguration::new(vec![exposed]).unwrap();
        assert_eq!(
            config.preflight(None, Some("GET"), None),
            Err(PreflightRefusal::NotPreflight)
        );
        assert_eq!(
            config.preflight(Some("o"), None, None),
            Err(PreflightRefusal::NotPreflight)
        );
        assert_eq!(
            config.preflight(Some("o"), Some("GET"), Some("x-amz-meta-header2")),
            Err(PreflightRefusal::NotAllowed)
        );
        assert_eq!(
            config.preflight(Some("o"), Some("PUT"), None),
            Err(PreflightRefusal::NotAllowed)
        );
        let ok = config.preflight(Some("o"), Some("GET"), None).unwrap();
        assert_eq!(origin_of(&ok).as_deref(), Some("*"));
        let actual = config.actual("o", "GET");
        assert!(actual.contains(&("access-control-expose-headers", "x-amz-meta-header1".to_owned())));
    }

    #[test]
    fn allowed_headers_match_case_insensitively_with_wildcards() {
        let mut r = rule(&["https://app.example"], &["PUT"]);
        r.allowed_headers = vec!["Content-*".into(), "x-amz-date".into()];
        r.max_age_seconds = Some(600);
        let config = CorsConfiguration::new(vec![r]).unwrap();
        let ok = config
            .preflight(
                Some("https://app.example"),
                Some("PUT"),
                Some("content-type, X-Amz-Date"),
            )
            .unwrap();
        assert!(ok.contains(&("access-control-allow-headers", "content-type, X-Amz-Date".to_owned())));
        assert!(ok.contains(&("access-control-max-age", "600".to_owned())));
        assert!(ok.contains(&("access-control-allow-origin", "https://app.example".to_owned())));
        assert_eq!(
            config.preflight(Some("https://app.example"), Some("PUT"), Some("authorization")),
            Err(PreflightRefusal::NotAllowed)
        );
    }

    #[test]
    fn malformed_configurations_are_refused() {
        assert!(CorsConfiguration::new(Vec::new()).is_err());
        assert!(CorsConfiguration::new(vec![rule(&["*"], &["PATCH"])]).is_err());
        assert!(CorsConfiguration::new(vec![rule(&[], &["GET"])]).is_err());
        assert!(CorsConfiguration::new(vec![rule(&["a*b*"], &["GET"])]).is_err());
        assert!(CorsConfiguration::new((0..=RULES_MAX).map(|_| rule(&["*"], &["GET"])).collect()).is_err());
    }
}
