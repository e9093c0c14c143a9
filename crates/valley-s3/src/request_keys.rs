//! A request's condition keys as the policies deciding it read them: each key is built the
//! first time a condition (or a `${…}` variable) asks for it, so a request pays only for the
//! keys of the statements that apply to it (a HEAD by the bucket owner under a six-statement
//! policy builds one: `aws:SourceIp`, for the Deny that guards the bucket).

use std::cell::OnceCell;

use valley_access::{ContextSource, PolicyDocument, RequestContext};

use crate::auth::ClientInfo;

/// What a request's keys are built from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestParts<'a> {
    pub uri: &'a http::Uri,
    pub headers: &'a http::HeaderMap,
    pub client: Option<ClientInfo>,
    /// Signed (SigV4), not anonymous.
    pub signed: bool,
}

/// The keys of one request under up to two policies (the bucket's and the principal's).
#[derive(Debug)]
pub(crate) struct RequestKeys<'a> {
    parts: RequestParts<'a>,
    /// Keys given outright, which win: the object's existing tags, a listing's `s3:prefix`.
    given: &'a RequestContext,
    /// The keys each policy reads (normalised, sorted: [`PolicyDocument::keys_read`]).
    read: [&'a [String]; 2],
    /// Their values once built, in the order of `read`: here for the first few (most
    /// policies read a handful), in `more` after them.
    built: [OnceCell<Option<Vec<String>>>; BUILT_INLINE],
    more: Vec<OnceCell<Option<Vec<String>>>>,
}

/// Keys whose values are held without an allocation.
const BUILT_INLINE: usize = 8;

impl<'a> RequestKeys<'a> {
    pub(crate) fn new(
        parts: RequestParts<'a>,
        given: &'a RequestContext,
        policies: [Option<&'a PolicyDocument>; 2],
    ) -> Self {
        let read = policies.map(|p| p.map_or(&[][..], PolicyDocument::keys_read));
        let count = read[0].len() + read[1].len();
        Self {
            parts,
            given,
            read,
            built: Default::default(),
            more: (BUILT_INLINE..count).map(|_| OnceCell::new()).collect(),
        }
    }
}

impl ContextSource for RequestKeys<'_> {
    fn values(&self, key: &str) -> Option<&[String]> {
        if let Some(given) = self.given.values(key) {
            return Some(given);
        }
        // A key no deciding policy reads is never asked for; answering none keeps it so.
        let mut offset = 0;
        for keys in self.read {
            if let Ok(at) = keys.binary_search_by(|k| k.as_str().cmp(key)) {
                let at = offset + at;
                let cell = match self.built.get(at) {
                    Some(cell) => cell,
                    None => &self.more[at - BUILT_INLINE],
                };
                return cell.get_or_init(|| value_of(key, &self.parts)).as_deref();
            }
            offset += keys.len();
        }
        None
    }
}

/// `aws:CurrentTime` of this second, formatted once a second per thread.
pub(crate) fn current_time_text(now: time::OffsetDateTime) -> String {
    thread_local! {
        static FORMATTED: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    FORMATTED.with_borrow_mut(|(second, text)| {
        let this_second = now.unix_timestamp();
        if *second != this_second {
            *text = now
                .replace_nanosecond(0)
                .unwrap_or(now)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| this_second.to_string());
            *second = this_second;
        }
        text.clone()
    })
}

/// The value(s) of condition key `key` (normalised) for the request: time, client, transport,
/// the operation's parameters, the request's tags, and any `x-amz-` header as `s3:x-amz-…`.
/// `None`: the request does not carry it.
fn value_of(key: &str, parts: &RequestParts<'_>) -> Option<Vec<String>> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let one = |value: String| Some(vec![value]);
    match key {
        "aws:currenttime" => one(current_time_text(time::OffsetDateTime::now_utc())),
        "aws:epochtime" => one(time::OffsetDateTime::now_utc().unix_timestamp().to_string()),
        "aws:sourceip" => parts.client?.ip.map(valley_access::ip_text).and_then(one),
        "aws:securetransport" => one((if parts.client?.secure { "true" } else { "false" }).to_owned()),
        "s3:prefix" | "s3:delimiter" | "s3:max-keys" | "s3:versionid" => {
            let parameter = match key {
                "s3:prefix" => "prefix",
                "s3:delimiter" => "delimiter",
                "s3:max-keys" => "max-keys",
                _ => "versionId",
            };
            let (_, value) = crate::auth::url_query(parts.uri)
                .into_iter()
                .find(|(name, _)| name == parameter)?;
            if key == "s3:max-keys" {
                // A number, as S3 reads it (`NumericLessThanEquals`); otherwise absent.
                value.parse::<u64>().ok().map(|n| n.to_string()).and_then(one)
            } else {
                one(value)
            }
        }
        "aws:referer" => header("referer").map(str::to_owned).and_then(one),
        "aws:useragent" => header("user-agent").map(str::to_owned).and_then(one),
        "s3:signatureversion" if parts.signed => one("AWS4-HMAC-SHA256".to_owned()),
        "s3:authtype" if parts.signed => {
            let presigned = parts.uri.query().is_some_and(|q| q.contains("X-Amz-Signature="));
            one((if presigned { "REST-QUERY-STRING" } else { "REST-HEADER" }).to_owned())
        }
        "s3:requestobjecttagkeys" => {
            let tags = crate::auth::url_pairs(header("x-amz-tagging")?);
            Some(tags.map(|(k, _)| k).collect())
        }
        _ => {
            if let Some(tag) = key.strip_prefix("s3:requestobjecttag/") {
                // The last value given for the tag, as setting them one by one leaves it.
                let tags: Vec<(String, String)> = crate::auth::url_pairs(header("x-amz-tagging")?).collect();
                return tags.into_iter().rev().find(|(k, _)| k == tag).and_then(|(_, v)| one(v));
            }
            // `s3:x-amz-acl`, `s3:x-amz-copy-source`, `s3:x-amz-grant-read`, ...: the request
            // header of that name.
            let name = key.strip_prefix("s3:").filter(|n| n.starts_with("x-amz-"))?;
            header(name).map(str::to_owned).and_then(one)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every condition key built from a request, with what the request below gives it.
    const KEYS: [(&str, &[&str]); 20] = [
        ("aws:SourceIp", &["10.0.0.1"]),
        ("aws:SecureTransport", &["true"]),
        ("s3:prefix", &["p"]),
        ("s3:delimiter", &["/"]),
        ("s3:max-keys", &["5"]),
        ("s3:VersionId", &["v1"]),
        ("s3:x-amz-acl", &["private"]),
        ("s3:x-amz-copy-source", &["src/k"]),
        ("s3:x-amz-metadata-directive", &["COPY"]),
        ("s3:x-amz-server-side-encryption", &["aws:kms"]),
        ("s3:x-amz-server-side-encryption-aws-kms-key-id", &["k1"]),
        ("aws:Referer", &["https://example.com"]),
        ("aws:UserAgent", &["aws-cli"]),
        ("s3:x-amz-grant-read", &["id=acme"]),
        ("s3:RequestObjectTag/Env", &["prod"]),
        ("s3:RequestObjectTag/env", &["lower"]),
        ("s3:RequestObjectTagKeys", &["Env", "env"]),
        ("s3:signatureversion", &["AWS4-HMAC-SHA256"]),
        ("s3:authType", &["REST-HEADER"]),
        ("s3:x-amz-meta-absent", &[]),
    ];

    fn request() -> (http::Uri, http::HeaderMap) {
        let uri: http::Uri = "/b?prefix=p&delimiter=%2F&max-keys=5&versionId=v1".parse().unwrap();
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("x-amz-acl", "private"),
            ("x-amz-copy-source", "src/k"),
            ("x-amz-metadata-directive", "COPY"),
            ("x-amz-server-side-encryption", "aws:kms"),
            ("x-amz-server-side-encryption-aws-kms-key-id", "k1"),
            ("referer", "https://example.com"),
            ("user-agent", "aws-cli"),
            ("x-amz-grant-read", "id=acme"),
            ("x-amz-tagging", "Env=prod&env=lower"),
        ] {
            headers.insert(name, value.parse().unwrap());
        }
        (uri, headers)
    }

    fn policy_reading(key: &str) -> PolicyDocument {
        let json = format!(
            r#"{{"Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b/*","Condition":{{"StringLike":{{"{key}":"*"}}}}}}]}}"#
        );
        valley_access::parse_bucket_policy(&json, "b").unwrap()
    }

    fn parts<'a>(uri: &'a http::Uri, headers: &'a http::HeaderMap) -> RequestParts<'a> {
        RequestParts {
            uri,
            headers,
            client: Some(ClientInfo {
                ip: Some("10.0.0.1".parse().unwrap()),
                secure: true,
            }),
            signed: true,
        }
    }

    #[test]
    fn a_key_a_policy_reads_has_the_requests_value_and_others_none() {
        let (uri, headers) = request();
        let given = RequestContext::new();
        for (key, expected) in KEYS {
            let policy = policy_reading(key);
            let keys = RequestKeys::new(parts(&uri, &headers), &given, [Some(&policy), None]);
            let normal = valley_access::normalize_key(key);
            let got = keys.values(&normal);
            if expected.is_empty() {
                assert_eq!(got, None, "{key}");
            } else {
                assert_eq!(
                    got,
                    Some(&expected.iter().map(|v| (*v).to_owned()).collect::<Vec<_>>()[..]),
                    "{key}"
                );
            }
            // A key the policy does not read is not answered, even when the request has it.
            assert_eq!(
                keys.values("aws:useragent").is_some(),
                normal == "aws:useragent",
                "{key}"
            );
        }
        let unread = RequestKeys::new(parts(&uri, &headers), &given, [None, None]);
        assert!(
            KEYS.iter()
                .all(|(k, _)| unread.values(&valley_access::normalize_key(k)).is_none())
        );
    }

    #[test]
    fn time_keys_are_now_and_anonymous_requests_have_no_signature_keys() {
        let (uri, headers) = request();
        let given = RequestContext::new();
        let json = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b/*","Condition":{"DateLessThan":{"aws:CurrentTime":"2100-01-01T00:00:00Z"},"NumericGreaterThan":{"aws:EpochTime":"1"},"StringEquals":{"s3:authType":"x","s3:signatureversion":"y"}}}]}"#;
        let policy = valley_access::parse_bucket_policy(json, "b").unwrap();
        let keys = RequestKeys::new(parts(&uri, &headers), &given, [Some(&policy), None]);
        let epoch: i64 = keys.values("aws:epochtime").unwrap()[0].parse().unwrap();
        assert!((epoch - time::OffsetDateTime::now_utc().unix_timestamp()).abs() <= 2);
        assert!(keys.values("aws:currenttime").unwrap()[0].ends_with('Z'));
        let anonymous = RequestParts {
            signed: false,
            ..parts(&uri, &headers)
        };
        let keys = RequestKeys::new(anonymous, &given, [Some(&policy), None]);
        assert!(keys.values("s3:authtype").is_none() && keys.values("s3:signatureversion").is_none());
    }

    #[test]
    fn given_keys_win_and_a_variable_is_read_like_a_condition_key() {
        let json = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:ListBucket","Resource":"arn:aws:s3:::b","Condition":{"StringLike":{"s3:prefix":"${aws:SourceIp}/*"}}}]}"#;
        let policy = valley_access::parse_bucket_policy(json, "b").unwrap();
        let (uri, headers) = request();
        let mut given = RequestContext::new();
        given.set_prefix("the-key");
        let keys = RequestKeys::new(parts(&uri, &headers), &given, [None, Some(&policy)]);
        assert_eq!(keys.values("s3:prefix").unwrap(), ["the-key"]);
        assert_eq!(keys.values("aws:sourceip").unwrap(), ["10.0.0.1"]);
    }

    /// More keys than are held inline: every one is still answered, with its own value.
    #[test]
    fn a_policy_reading_many_keys_has_each_answered() {
        let (uri, headers) = request();
        let given = RequestContext::new();
        let conditions: Vec<String> = KEYS.iter().map(|(k, _)| format!(r#""{k}":"*""#)).collect();
        let json = format!(
            r#"{{"Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b/*","Condition":{{"StringLike":{{{}}}}}}}]}}"#,
            conditions.join(",")
        );
        let policy = valley_access::parse_bucket_policy(&json, "b").unwrap();
        assert!(policy.keys_read().len() > BUILT_INLINE);
        let keys = RequestKeys::new(parts(&uri, &headers), &given, [Some(&policy), Some(&policy)]);
        for (key, expected) in KEYS.iter().rev() {
            let got = keys.values(&valley_access::normalize_key(key)).unwrap_or_default();
            assert_eq!(
                got,
                expected.iter().map(|v| (*v).to_owned()).collect::<Vec<_>>(),
                "{key}"
            );
        }
    }

    #[test]
    fn the_time_is_formatted_as_rfc3339_seconds() {
        let now = time::macros::datetime!(2026-12-06 16:20:05.123 UTC);
        assert_eq!(current_time_text(now), "2026-12-06T16:20:05Z");
        let later = time::macros::datetime!(2026-12-06 16:20:06 UTC);
        assert_eq!(current_time_text(later), "2026-12-06T16:20:06Z");
    }
}
