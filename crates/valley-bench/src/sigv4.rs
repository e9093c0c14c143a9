//! AWS Signature Version 4 in the `Authorization` header, with an unsigned payload: what the
//! AWS SDKs send over plain HTTP to S3 for GET/HEAD (and what `aws s3` sends for PUT with
//! `payload_signing_enabled = false`).
//!
//! Why not a crate: on a 2-core machine the load generator shares the CPU with the server under
//! test, so every microsecond it spends signing is taken from the server. Presigning with
//! rusty-s3 (URL parsing, a fresh signing key, string formatting per request) cost the client
//! about 8 µs per request, a third of its CPU at 30 k requests/s; this signer derives the signing
//! key once per UTC day and formats one canonical request, so both servers in a side-by-side run
//! are measured with a client that gets out of their way. The server under test checks every
//! signature, so a mistake here fails every request rather than going unnoticed.

use std::fmt::Write as _;
use std::sync::Mutex;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The `x-amz-content-sha256` value of a request whose body is not signed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// The headers one signed request carries, besides `Host`.
pub struct SignedHeaders {
    pub amz_date: String,
    pub authorization: String,
}

pub struct Signer {
    access_key: String,
    secret_key: String,
    region: String,
    /// (yyyymmdd, signing key for that day): derived once per day, not once per request.
    day_key: Mutex<(String, [u8; 32])>,
}

impl Signer {
    #[must_use]
    pub fn new(access_key: &str, secret_key: &str, region: &str) -> Self {
        Self {
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            region: region.to_owned(),
            day_key: Mutex::new((String::new(), [0; 32])),
        }
    }

    /// Signs `method host path?query` for now, and the `extra` headers sent with it (lower-case
    /// names, sorted, each after `x-amz-date`: the `x-amz-server-side-encryption-*` ones).
    /// `path` and `query` must already be in canonical form: path segments URI-encoded
    /// ([`encode_path`]), query pairs sorted and encoded ([`canonical_query`]); they are sent
    /// exactly as signed.
    pub fn sign(&self, method: &str, host: &str, path: &str, query: &str, extra: &[(&str, &str)]) -> SignedHeaders {
        debug_assert!(extra.windows(2).all(|w| w[0].0 < w[1].0) && extra.iter().all(|(n, _)| *n > "x-amz-date"));
        let amz_date = amz_date_now();
        let day = &amz_date[..8];
        let key = self.day_key(day);
        let mut canonical = String::with_capacity(256);
        let _ = write!(
            canonical,
            "{method}\n{path}\n{query}\nhost:{host}\nx-amz-content-sha256:{UNSIGNED_PAYLOAD}\nx-amz-date:{amz_date}\n"
        );
        let mut signed_headers = String::from("host;x-amz-content-sha256;x-amz-date");
        for (name, value) in extra {
            let _ = writeln!(canonical, "{name}:{value}");
            signed_headers.push(';');
            signed_headers.push_str(name);
        }
        let _ = write!(canonical, "\n{signed_headers}\n{UNSIGNED_PAYLOAD}");
        let scope = format!("{day}/{}/s3/aws4_request", self.region);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key
        );
        SignedHeaders {
            amz_date,
            authorization,
        }
    }

    fn day_key(&self, day: &str) -> [u8; 32] {
        let mut cached = self.day_key.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cached.0 != day {
            let k_date = hmac(format!("AWS4{}", self.secret_key).as_bytes(), day.as_bytes());
            let k_region = hmac(&k_date, self.region.as_bytes());
            let k_service = hmac(&k_region, b"s3");
            *cached = (day.to_owned(), hmac(&k_service, b"aws4_request"));
        }
        cached.1
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Now as SigV4's `yyyymmddThhmmssZ`.
fn amz_date_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// SigV4's URI encoding: every byte but `A-Z a-z 0-9 - . _ ~` as `%XX` (upper case); `/` too
/// unless `keep_slash`.
fn uri_encode(out: &mut String, s: &str, keep_slash: bool) {
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// `/bucket` or `/bucket/key`, encoded for both the request line and the signature.
#[must_use]
pub fn encode_path(bucket: &str, key: Option<&str>) -> String {
    let mut path = String::with_capacity(bucket.len() + key.map_or(0, str::len) + 2);
    path.push('/');
    uri_encode(&mut path, bucket, false);
    if let Some(key) = key {
        path.push('/');
        uri_encode(&mut path, key, true);
    }
    path
}

/// The canonical query string of `pairs`: encoded, sorted by name then value, `&`-joined.
#[must_use]
pub fn canonical_query(pairs: &[(&str, &str)]) -> String {
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| {
            let (mut ek, mut ev) = (String::new(), String::new());
            uri_encode(&mut ek, k, false);
            uri_encode(&mut ev, v, false);
            (ek, ev)
        })
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signing key of AWS's documented example (secret `wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY`,
    /// 20150830, us-east-1, iam), from the SigV4 documentation's "derive a signing key" page.
    #[test]
    fn signing_key_matches_aws_example() {
        let k_date = hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20150830");
        let k_region = hmac(&k_date, b"us-east-1");
        let k_service = hmac(&k_region, b"iam");
        let key = hmac(&k_service, b"aws4_request");
        assert_eq!(
            hex::encode(key),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
    }

    #[test]
    fn encodes_like_sigv4() {
        assert_eq!(encode_path("b", Some("a b/c+d~")), "/b/a%20b/c%2Bd~");
        assert_eq!(
            canonical_query(&[
                ("start-after", "k/1"),
                ("list-type", "2"),
                ("continuation-token", "a=+")
            ]),
            "continuation-token=a%3D%2B&list-type=2&start-after=k%2F1"
        );
    }
}
