//! The request context: condition keys and their values, as the S3 front saw the request.
//!
//! Keys are case-insensitive (as in IAM), so they are stored normalised: the part before the
//! first `/` lower-cased, the rest — a tag key such as the `Env` of
//! `s3:ExistingObjectTag/Env` — kept as it is, because tag keys are case-sensitive.
//! Every key is multi-valued; single-valued keys simply hold one value.

use std::borrow::Cow;
use std::net::IpAddr;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A condition key in its normalised form (see the module documentation).
#[must_use]
pub fn normalize_key(key: &str) -> Cow<'_, str> {
    let name_end = key.find('/').unwrap_or(key.len());
    if key[..name_end].bytes().any(|b| b.is_ascii_uppercase()) {
        let mut normal = key[..name_end].to_ascii_lowercase();
        normal.push_str(&key[name_end..]);
        Cow::Owned(normal)
    } else {
        Cow::Borrowed(key)
    }
}

/// What the caller knows about the request, keyed by condition key.
///
/// The principal's own keys (`aws:username`, `aws:userid`, `aws:PrincipalArn`,
/// `aws:PrincipalAccount`, `aws:PrincipalType`) are derived by the evaluator from the
/// principal and override anything set here, so a caller cannot spoof them.
///
/// A request carries a handful of keys (those its policies read), so they are kept in a list:
/// scanning a few short keys is cheaper than hashing one.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// Keys normalised; the standard ones are static and cost no allocation.
    values: Vec<(Cow<'static, str>, Vec<String>)>,
}

impl PartialEq for RequestContext {
    /// The same keys with the same values, in any order.
    fn eq(&self, other: &Self) -> bool {
        self.values.len() == other.values.len()
            && self
                .values
                .iter()
                .all(|(k, v)| other.get_normalized(k) == Some(v.as_slice()))
    }
}

impl Eq for RequestContext {}

impl RequestContext {
    #[must_use]
    pub fn new() -> RequestContext {
        RequestContext::default()
    }

    /// Sets `key` to the single `value`, replacing what it held.
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        *self.slot(key) = vec![value.into()];
        self
    }

    /// The values of `key`, made present (empty) if it was not.
    fn slot(&mut self, key: &str) -> &mut Vec<String> {
        let key = normalize_key(key);
        match self.values.iter().position(|(k, _)| *k == *key) {
            Some(at) => &mut self.values[at].1,
            None => {
                self.values.push((Cow::Owned(key.into_owned()), Vec::new()));
                &mut self.values.last_mut().expect("just pushed").1
            }
        }
    }

    /// Sets the standard key `key`, given in its normalised form, to the single `value`.
    fn set_standard(&mut self, key: &'static str, value: String) -> &mut Self {
        debug_assert_eq!(normalize_key(key), key, "standard keys are given normalised");
        match self.values.iter().position(|(k, _)| *k == *key) {
            Some(at) => self.values[at].1 = vec![value],
            None => self.values.push((Cow::Borrowed(key), vec![value])),
        }
        self
    }

    /// Sets `key` to several values (an empty list makes the key present but empty, which
    /// `ForAllValues` treats as true and `ForAnyValue` as false).
    pub fn set_values<I, S>(&mut self, key: &str, values: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        *self.slot(key) = values.into_iter().map(Into::into).collect();
        self
    }

    /// Adds one more value to `key`.
    pub fn add(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.slot(key).push(value.into());
        self
    }

    pub fn remove(&mut self, key: &str) -> &mut Self {
        let key = normalize_key(key);
        self.values.retain(|(k, _)| *k != *key);
        self
    }

    /// The values of `key` (any case), or `None` when the request does not carry it.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.get_normalized(&normalize_key(key))
    }

    pub(crate) fn get_normalized(&self, key: &str) -> Option<&[String]> {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_slice())
    }

    /// `aws:CurrentTime` (RFC 3339) and `aws:EpochTime` (seconds).
    pub fn set_current_time(&mut self, now: OffsetDateTime) -> &mut Self {
        let text = now
            .format(&Rfc3339)
            .unwrap_or_else(|_| now.unix_timestamp().to_string());
        self.set_current_time_text(text, now.unix_timestamp())
    }

    /// `aws:CurrentTime` as already formatted (RFC 3339) and `aws:EpochTime` (seconds).
    pub fn set_current_time_text(&mut self, rfc3339: String, unix_seconds: i64) -> &mut Self {
        self.set_standard("aws:currenttime", rfc3339);
        self.set_standard("aws:epochtime", unix_seconds.to_string())
    }

    /// `aws:SourceIp`.
    pub fn set_source_ip(&mut self, ip: IpAddr) -> &mut Self {
        self.set_standard("aws:sourceip", ip_text(ip))
    }

    /// `aws:SecureTransport`: whether the request came over TLS.
    pub fn set_secure_transport(&mut self, tls: bool) -> &mut Self {
        self.set_standard("aws:securetransport", (if tls { "true" } else { "false" }).to_owned())
    }

    /// `aws:Referer`.
    pub fn set_referer(&mut self, referer: &str) -> &mut Self {
        self.set("aws:Referer", referer)
    }

    /// `aws:UserAgent`.
    pub fn set_user_agent(&mut self, agent: &str) -> &mut Self {
        self.set("aws:UserAgent", agent)
    }

    /// `s3:prefix` of a listing.
    pub fn set_prefix(&mut self, prefix: &str) -> &mut Self {
        self.set("s3:prefix", prefix)
    }

    /// `s3:delimiter` of a listing.
    pub fn set_delimiter(&mut self, delimiter: &str) -> &mut Self {
        self.set("s3:delimiter", delimiter)
    }

    /// `s3:max-keys` of a listing.
    pub fn set_max_keys(&mut self, max_keys: u64) -> &mut Self {
        self.set("s3:max-keys", max_keys.to_string())
    }

    /// `s3:x-amz-acl`: the canned ACL a request asks for.
    pub fn set_canned_acl(&mut self, canned: &str) -> &mut Self {
        self.set("s3:x-amz-acl", canned)
    }

    /// `s3:x-amz-server-side-encryption`.
    pub fn set_server_side_encryption(&mut self, algorithm: &str) -> &mut Self {
        self.set("s3:x-amz-server-side-encryption", algorithm)
    }

    /// `s3:ExistingObjectTag/<key>` for every tag the object already has.
    pub fn set_existing_object_tags<'t>(&mut self, tags: impl IntoIterator<Item = (&'t str, &'t str)>) -> &mut Self {
        for (key, value) in tags {
            self.set(&format!("s3:ExistingObjectTag/{key}"), value);
        }
        self
    }

    /// `s3:RequestObjectTag/<key>` for every tag in the request, and
    /// `s3:RequestObjectTagKeys` listing their keys.
    pub fn set_request_object_tags<'t>(&mut self, tags: impl IntoIterator<Item = (&'t str, &'t str)>) -> &mut Self {
        let mut keys = Vec::new();
        for (key, value) in tags {
            self.set(&format!("s3:RequestObjectTag/{key}"), value);
            keys.push(key.to_owned());
        }
        self.set_values("s3:RequestObjectTagKeys", keys)
    }

    /// `s3:VersionId`.
    pub fn set_version_id(&mut self, version_id: &str) -> &mut Self {
        self.set("s3:VersionId", version_id)
    }

    /// `s3:x-amz-copy-source` (`bucket/key`, optionally `?versionId=`).
    pub fn set_copy_source(&mut self, source: &str) -> &mut Self {
        self.set("s3:x-amz-copy-source", source)
    }

    /// `s3:x-amz-metadata-directive` (`COPY` or `REPLACE`).
    pub fn set_metadata_directive(&mut self, directive: &str) -> &mut Self {
        self.set("s3:x-amz-metadata-directive", directive)
    }

    /// `s3:signatureversion` (`AWS4-HMAC-SHA256`, ...).
    pub fn set_signature_version(&mut self, version: &str) -> &mut Self {
        self.set("s3:signatureversion", version)
    }

    /// `s3:authType` (`REST-HEADER`, `REST-QUERY-STRING`, `POST`).
    pub fn set_auth_type(&mut self, auth_type: &str) -> &mut Self {
        self.set("s3:authType", auth_type)
    }
}

/// Where the evaluator finds a request's values: a [`RequestContext`] prepared in advance, or a
/// source that builds each key when a condition first asks for it.
pub trait ContextSource: std::fmt::Debug {
    /// The values of `key` (normalised, see [`normalize_key`]), or `None` when the request
    /// does not carry it.
    fn values(&self, key: &str) -> Option<&[String]>;
}

impl ContextSource for RequestContext {
    fn values(&self, key: &str) -> Option<&[String]> {
        self.get_normalized(key)
    }
}

/// `ip` as text: an IPv4 address written directly (every request under a policy that reads
/// `aws:SourceIp` pays for this; the formatting machinery costs ten times as much).
#[must_use]
pub fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                if octet >= 100 {
                    text.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    text.push(char::from(b'0' + octet / 10 % 10));
                }
                text.push(char::from(b'0' + octet % 10));
            }
            text
        }
        IpAddr::V6(_) => ip.to_string(),
    }
}

impl crate::condition::KeyLookup for RequestContext {
    fn values(&self, key: &str) -> Option<&[String]> {
        self.get_normalized(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn keys_are_case_insensitive_but_tag_keys_are_not() {
        let mut ctx = RequestContext::new();
        ctx.set("AWS:SourceIP", "10.0.0.1");
        ctx.set_existing_object_tags([("Env", "prod")]);
        assert_eq!(ctx.get("aws:sourceip"), Some(&["10.0.0.1".to_owned()][..]));
        assert!(ctx.get("s3:existingobjecttag/Env").is_some());
        assert!(ctx.get("S3:ExistingObjectTag/env").is_none());
    }

    #[test]
    fn addresses_are_written_as_std_writes_them() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.3.255",
            "192.168.100.9",
            "255.255.255.255",
            "::1",
            "fe80::1",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
            let mut ctx = RequestContext::new();
            ctx.set_source_ip(ip);
            assert_eq!(ctx.get("aws:SourceIp").unwrap(), [ip.to_string()]);
        }
    }

    #[test]
    fn helpers_set_the_standard_keys() {
        let mut ctx = RequestContext::new();
        ctx.set_current_time(datetime!(2026-03-01 12:00:00 UTC))
            .set_request_object_tags([("a", "1"), ("b", "2")])
            .add("s3:RequestObjectTagKeys", "c");
        assert_eq!(ctx.get("aws:EpochTime").unwrap(), ["1772366400"]);
        assert_eq!(ctx.get("aws:CurrentTime").unwrap(), ["2026-03-01T12:00:00Z"]);
        assert_eq!(ctx.get("s3:RequestObjectTagKeys").unwrap(), ["a", "b", "c"]);
        ctx.remove("S3:REQUESTOBJECTTAGKEYS");
        assert!(ctx.get("s3:RequestObjectTagKeys").is_none());
    }
}
