//! Authentication of hub-to-hub and admin requests, signature scheme v2: HMAC-SHA256, keyed by
//! a shared secret (the network secret between hubs; the root secret key for admin calls),
//! over the method, the path and query, and every `x-valley-*` header — among them the caller's
//! identity, the time, a random nonce, the topology hash and the body's SHA-256. So a captured
//! request cannot be replayed with another body or another version header, and a receiver
//! that remembers the signatures it accepted ([`ReplayGuard`]) refuses the same request twice.
//!
//! Bodies whose integrity a signed header already binds (an object's bytes, by the ETag and
//! size in the signed `x-valley-version`; a chunk's, by the signed `x-valley-chunk-md5`) are
//! streamed unhashed: their content hash header says [`STREAMING_CHECKED`], and only the
//! routes that check those bytes end to end accept it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub const HEADER_PREFIX: &str = "x-valley-";
pub const HEADER_IDENTITY: &str = "x-valley-identity";
pub const HEADER_TIME: &str = "x-valley-time";
pub const HEADER_NONCE: &str = "x-valley-nonce";
pub const HEADER_SIGNATURE: &str = "x-valley-signature";
pub const HEADER_TOPOLOGY: &str = "x-valley-topology";
/// The hash of the rule packs the caller judges by (absent from hubs of earlier releases).
pub const HEADER_RULES: &str = "x-valley-rules";
pub const HEADER_CONTENT_SHA256: &str = "x-valley-content-sha256";
/// The content hash of a body checked end to end by a signed header instead.
pub const STREAMING_CHECKED: &str = "streaming-checked";
/// The scheme a signature value starts with; a signature of another scheme is refused by name.
const SCHEME: &str = "v2:";

/// Largest accepted difference between a request's time and ours.
pub const CLOCK_SKEW_SECS_MAX: u64 = 300;
/// Most signatures a [`ReplayGuard`] remembers: at this many, new requests are refused (busy)
/// rather than forgetting one still inside the window.
const REMEMBERED_SIGNATURES_MAX: usize = 4_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing or malformed {0}")]
    Missing(&'static str),
    #[error("header {0} is sent more than once")]
    Duplicate(String),
    #[error("header {0} is not visible ASCII")]
    NotAscii(String),
    #[error(
        "signature scheme not supported: this hub takes v2 signatures (method, path, x-valley-* headers and body hash)"
    )]
    Scheme,
    #[error("request time is more than {CLOCK_SKEW_SECS_MAX}s away from this hub's clock")]
    Skew,
    #[error("signature does not match (wrong secret, or the request was changed on the way)")]
    Mismatch,
    #[error("this request was already received (replay refused)")]
    Replay,
    #[error("too many requests inside the replay window; retry later")]
    Busy,
    #[error("the body does not match its signed hash")]
    BodyHash,
    #[error("this call's body must be hashed, not streamed")]
    StreamNotAllowed,
    #[error("body larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("reading the body: {0}")]
    Body(String),
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The string a request's signature covers: method, path and query, then each `x-valley-*`
/// header but the signature, sorted by name, as `name:value` lines.
fn string_to_sign(method: &str, path_and_query: &str, headers: &http::HeaderMap) -> Result<String, AuthError> {
    let mut signed = BTreeMap::new();
    for name in headers.keys() {
        let name = name.as_str();
        if !name.starts_with(HEADER_PREFIX) || name == HEADER_SIGNATURE {
            continue;
        }
        let mut values = headers.get_all(name).iter();
        let value = values.next().ok_or(AuthError::Missing(HEADER_IDENTITY))?;
        if values.next().is_some() {
            return Err(AuthError::Duplicate(name.to_owned()));
        }
        let value = value.to_str().map_err(|_| AuthError::NotAscii(name.to_owned()))?;
        signed.insert(name, value);
    }
    let mut text = format!("VALLEY-HMAC-SHA256-v2\n{method}\n{path_and_query}\n");
    for (name, value) in signed {
        text.push_str(name);
        text.push(':');
        text.push_str(value);
        text.push('\n');
    }
    Ok(text)
}

fn mac(secret: &[u8], text: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(text.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Adds identity, time, nonce and content hash to `headers` (which hold the call's own
/// `x-valley-*` headers already) and signs them all. `content_sha256` is the body's hex
/// SHA-256, or [`STREAMING_CHECKED`].
pub fn sign_request(
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    identity: &str,
    content_sha256: &str,
    headers: &mut http::HeaderMap,
) -> Result<(), AuthError> {
    let value = |v: &str| http::HeaderValue::from_str(v).map_err(|_| AuthError::NotAscii(v.to_owned()));
    headers.insert(HEADER_IDENTITY, value(identity)?);
    headers.insert(HEADER_TIME, value(&unix_now().to_string())?);
    headers.insert(HEADER_NONCE, value(&hex::encode(rand::random::<[u8; 16]>()))?);
    headers.insert(HEADER_CONTENT_SHA256, value(content_sha256)?);
    let text = string_to_sign(method, path_and_query, headers)?;
    headers.insert(
        HEADER_SIGNATURE,
        value(&format!("{SCHEME}{}", hex::encode(mac(secret, &text))))?,
    );
    Ok(())
}

/// What a verified signature vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub identity: String,
    pub time: u64,
    /// The body's signed hex SHA-256, or [`STREAMING_CHECKED`].
    pub content_sha256: String,
    signature: [u8; 32],
}

/// Checks a request's signature over its method, path and `x-valley-*` headers. The body is
/// not read here: check it with [`read_body`] (or, for a streaming-checked body, end to end).
pub fn verify(
    secret: &[u8],
    method: &str,
    path_and_query: &str,
    headers: &http::HeaderMap,
) -> Result<Verified, AuthError> {
    let get = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(AuthError::Missing(name))
    };
    let presented = get(HEADER_SIGNATURE)?;
    let presented = presented.strip_prefix(SCHEME).ok_or(AuthError::Scheme)?;
    let identity = get(HEADER_IDENTITY)?;
    let time: u64 = get(HEADER_TIME)?.parse().map_err(|_| AuthError::Missing(HEADER_TIME))?;
    get(HEADER_NONCE)?;
    let content_sha256 = get(HEADER_CONTENT_SHA256)?;
    if unix_now().abs_diff(time) > CLOCK_SKEW_SECS_MAX {
        return Err(AuthError::Skew);
    }
    let expected = mac(secret, &string_to_sign(method, path_and_query, headers)?);
    let presented = hex::decode(presented).map_err(|_| AuthError::Mismatch)?;
    let matches = presented.len() == expected.len()
        && presented
            .iter()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !matches {
        return Err(AuthError::Mismatch);
    }
    Ok(Verified {
        identity: identity.to_owned(),
        time,
        content_sha256: content_sha256.to_owned(),
        signature: expected,
    })
}

/// Reads a body (at most `max` bytes) and checks it against the signed hash.
pub async fn read_body<B>(body: B, verified: &Verified, max: usize) -> Result<Bytes, AuthError>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    if verified.content_sha256 == STREAMING_CHECKED {
        return Err(AuthError::StreamNotAllowed);
    }
    let bytes = http_body_util::Limited::new(body, max)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                AuthError::BodyTooLarge(max)
            } else {
                AuthError::Body(e.to_string())
            }
        })?
        .to_bytes();
    if sha256_hex(&bytes) != verified.content_sha256 {
        return Err(AuthError::BodyHash);
    }
    Ok(bytes)
}

/// Remembers every signature accepted within the clock-skew window, so that the same request
/// is taken once. A signature covers its time, so a replay must carry the same time: entries
/// are kept per second and forgotten once that second is outside the window.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    by_second: BTreeMap<u64, HashSet<[u8; 16]>>,
    count: usize,
}

impl ReplayGuard {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a verified request once; the same signature again is [`AuthError::Replay`].
    pub fn admit(&self, verified: &Verified) -> Result<(), AuthError> {
        self.admit_at(verified, unix_now())
    }

    fn admit_at(&self, verified: &Verified, now: u64) -> Result<(), AuthError> {
        let mut key = [0u8; 16];
        key.copy_from_slice(&verified.signature[..16]);
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let horizon = now.saturating_sub(CLOCK_SKEW_SECS_MAX);
        while let Some(entry) = seen.by_second.first_entry() {
            if *entry.key() >= horizon {
                break;
            }
            let gone = entry.remove().len();
            seen.count -= gone;
        }
        if seen.by_second.get(&verified.time).is_some_and(|s| s.contains(&key)) {
            return Err(AuthError::Replay);
        }
        if seen.count >= REMEMBERED_SIGNATURES_MAX {
            return Err(AuthError::Busy);
        }
        seen.by_second.entry(verified.time).or_default().insert(key);
        seen.count += 1;
        Ok(())
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.seen.lock().unwrap().count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &[u8], method: &str, pq: &str, body: &[u8], extra: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (name, value) in extra {
            h.insert(*name, value.parse().unwrap());
        }
        sign_request(secret, method, pq, "hub-a", &sha256_hex(body), &mut h).unwrap();
        h
    }

    #[test]
    fn a_signed_request_verifies_and_a_changed_one_does_not() {
        let h = signed(b"secret", "PUT", "/x?y=1", b"body", &[("x-valley-version", "abc")]);
        let v = verify(b"secret", "PUT", "/x?y=1", &h).unwrap();
        assert_eq!(v.identity, "hub-a");
        assert_eq!(v.content_sha256, sha256_hex(b"body"));
        assert_eq!(verify(b"other", "PUT", "/x?y=1", &h), Err(AuthError::Mismatch));
        assert_eq!(verify(b"secret", "PUT", "/x?y=2", &h), Err(AuthError::Mismatch));
        assert_eq!(verify(b"secret", "POST", "/x?y=1", &h), Err(AuthError::Mismatch));
        for (name, value) in [
            (HEADER_IDENTITY, "hub-b"),
            ("x-valley-version", "abd"),
            (HEADER_CONTENT_SHA256, STREAMING_CHECKED),
            (HEADER_NONCE, "00"),
            (HEADER_TOPOLOGY, "t"),
        ] {
            let mut changed = h.clone();
            changed.insert(name, value.parse().unwrap());
            assert_eq!(
                verify(b"secret", "PUT", "/x?y=1", &changed),
                Err(AuthError::Mismatch),
                "{name} is signed"
            );
        }
        let mut doubled = h.clone();
        doubled.append("x-valley-version", "abc".parse().unwrap());
        assert_eq!(
            verify(b"secret", "PUT", "/x?y=1", &doubled),
            Err(AuthError::Duplicate("x-valley-version".into()))
        );
        let mut v1 = h.clone();
        v1.insert(HEADER_SIGNATURE, "0123abcd".parse().unwrap());
        assert_eq!(verify(b"secret", "PUT", "/x?y=1", &v1), Err(AuthError::Scheme));
    }

    #[test]
    fn an_old_request_is_refused() {
        let mut h = signed(b"secret", "GET", "/x", b"", &[]);
        let old = unix_now() - CLOCK_SKEW_SECS_MAX - 10;
        h.insert(HEADER_TIME, old.to_string().parse().unwrap());
        assert_eq!(verify(b"secret", "GET", "/x", &h), Err(AuthError::Skew));
    }

    #[tokio::test]
    async fn the_body_must_match_its_signed_hash() {
        let h = signed(b"secret", "POST", "/c", b"{\"a\":1}", &[]);
        let v = verify(b"secret", "POST", "/c", &h).unwrap();
        let ok = read_body(http_body_util::Full::new(Bytes::from_static(b"{\"a\":1}")), &v, 1024).await;
        assert_eq!(ok.unwrap(), Bytes::from_static(b"{\"a\":1}"));
        let forged = read_body(http_body_util::Full::new(Bytes::from_static(b"{\"a\":2}")), &v, 1024).await;
        assert_eq!(forged, Err(AuthError::BodyHash));
        let big = read_body(http_body_util::Full::new(Bytes::from(vec![0u8; 2048])), &v, 1024).await;
        assert_eq!(big, Err(AuthError::BodyTooLarge(1024)));
    }

    #[test]
    fn a_request_is_taken_once_and_forgotten_after_the_window() {
        let guard = ReplayGuard::new();
        let h = signed(b"secret", "POST", "/c", b"", &[]);
        let v = verify(b"secret", "POST", "/c", &h).unwrap();
        let now = v.time;
        guard.admit_at(&v, now).unwrap();
        assert_eq!(guard.admit_at(&v, now + 1), Err(AuthError::Replay));
        let other = verify(b"secret", "POST", "/c", &signed(b"secret", "POST", "/c", b"", &[])).unwrap();
        guard.admit_at(&other, now).unwrap();
        assert_eq!(guard.remembered(), 2);
        // Outside the window the signature is refused by time before it reaches the guard, so
        // the guard may forget it.
        let later = now + CLOCK_SKEW_SECS_MAX + 2;
        let fresh = verify(b"secret", "POST", "/d", &signed(b"secret", "POST", "/d", b"", &[])).unwrap();
        guard.admit_at(&fresh, later).unwrap();
        assert_eq!(guard.remembered(), 1);
    }
}
