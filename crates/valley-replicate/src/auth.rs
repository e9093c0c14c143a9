//! Authentication of hub-to-hub and admin requests: HMAC-SHA256 over the method, path, caller
//! identity and time, keyed by a shared secret (the network secret between hubs; the root
//! secret key for admin calls). Requests older or newer than five minutes are refused, which
//! bounds replay. Bodies are not signed: object bodies are checked end to end by their ETag.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const HEADER_IDENTITY: &str = "x-valley-identity";
pub const HEADER_TIME: &str = "x-valley-time";
pub const HEADER_SIGNATURE: &str = "x-valley-signature";
pub const HEADER_TOPOLOGY: &str = "x-valley-topology";

/// Largest accepted difference between a request's time and ours.
pub const CLOCK_SKEW_SECS_MAX: u64 = 300;

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[must_use]
pub fn sign(secret: &[u8], method: &str, path_and_query: &str, identity: &str, time: u64) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(format!("{method}\n{path_and_query}\n{identity}\n{time}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a request's signature headers; the error says what is wrong, for a 403 body.
pub fn verify(secret: &[u8], method: &str, path_and_query: &str, headers: &http::HeaderMap) -> Result<String, String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let identity = get(HEADER_IDENTITY).ok_or("missing x-valley-identity")?;
    let time: u64 = get(HEADER_TIME)
        .and_then(|t| t.parse().ok())
        .ok_or("missing or bad x-valley-time")?;
    let signature = get(HEADER_SIGNATURE).ok_or("missing x-valley-signature")?;
    if unix_now().abs_diff(time) > CLOCK_SKEW_SECS_MAX {
        return Err(format!(
            "request time is more than {CLOCK_SKEW_SECS_MAX}s away from this hub's clock"
        ));
    }
    let expected = sign(secret, method, path_and_query, identity, time);
    let matches = expected.len() == signature.len()
        && expected
            .bytes()
            .zip(signature.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !matches {
        return Err("signature does not match (wrong secret?)".into());
    }
    Ok(identity.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(identity: &str, time: u64, sig: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(HEADER_IDENTITY, identity.parse().unwrap());
        h.insert(HEADER_TIME, time.to_string().parse().unwrap());
        h.insert(HEADER_SIGNATURE, sig.parse().unwrap());
        h
    }

    #[test]
    fn a_signed_request_verifies_and_a_tampered_one_does_not() {
        let now = unix_now();
        let sig = sign(b"secret", "PUT", "/x?y=1", "hub-a", now);
        assert_eq!(
            verify(b"secret", "PUT", "/x?y=1", &headers("hub-a", now, &sig)).unwrap(),
            "hub-a"
        );
        assert!(verify(b"other", "PUT", "/x?y=1", &headers("hub-a", now, &sig)).is_err());
        assert!(verify(b"secret", "PUT", "/x?y=2", &headers("hub-a", now, &sig)).is_err());
        assert!(verify(b"secret", "PUT", "/x?y=1", &headers("hub-b", now, &sig)).is_err());
        let old = now - CLOCK_SKEW_SECS_MAX - 10;
        let sig = sign(b"secret", "PUT", "/x?y=1", "hub-a", old);
        assert!(verify(b"secret", "PUT", "/x?y=1", &headers("hub-a", old, &sig)).is_err());
    }
}
