//! Hub identity: hub ids, the certificate name a hub id maps to, CA fingerprints, and reading the
//! hub a verified peer certificate names.

use std::path::Path;

use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use crate::TlsError;
use crate::pem::load_certs;

/// Every hub certificate carries the SAN DNS name `<hub-id>.` + this suffix.
pub const HUB_NAME_SUFFIX: &str = "hub.valley";

/// Longest DNS label, and so the longest hub id.
pub const HUB_ID_LEN_MAX: usize = 63;

/// The certificate name a hub proves: `<id>.hub.valley`.
pub fn hub_server_name(id: &str) -> String {
    format!("{id}.{HUB_NAME_SUFFIX}")
}

/// Checks that `id` is a DNS label: 1..=63 of lowercase a-z, 0-9 and '-', not starting or ending
/// with '-'. The error names the id.
pub fn validate_hub_id(id: &str) -> Result<(), TlsError> {
    let reason = if id.is_empty() {
        Some("empty")
    } else if id.len() > HUB_ID_LEN_MAX {
        Some("longer than 63 characters")
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("only lowercase a-z, 0-9 and '-' are allowed")
    } else if id.starts_with('-') || id.ends_with('-') {
        Some("must not start or end with '-'")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(TlsError::InvalidHubId {
            id: id.to_string(),
            reason,
        }),
    }
}

/// The hub id a certificate DNS name stands for: exactly one valid label before `.hub.valley`.
pub fn hub_id_from_dns_name(name: &str) -> Option<&str> {
    let id = name
        .strip_suffix(HUB_NAME_SUFFIX)?
        .strip_suffix('.')
        .filter(|id| !id.contains('.'))?;
    validate_hub_id(id).ok().map(|()| id)
}

/// SHA-256 of a DER certificate, lowercase hex: how the topology pins the network CA.
pub fn fingerprint_sha256(cert_der: &[u8]) -> String {
    hex::encode(Sha256::digest(cert_der))
}

/// [`fingerprint_sha256`] of the first certificate in a PEM file.
pub fn pem_fingerprint(path: &Path) -> Result<String, TlsError> {
    let certs = load_certs(path)?;
    // load_certs never returns an empty list.
    Ok(fingerprint_sha256(&certs[0]))
}

/// The hub a TLS client proved to be: the hub id in its certificate's `<id>.hub.valley` SAN.
///
/// rustls has already verified the chain against the network CA when this is called on a
/// completed handshake. None when the client sent no certificate or it names no single hub.
pub fn peer_hub(conn: &rustls::ServerConnection) -> Option<String> {
    peer_hub_from_certs(conn.peer_certificates()?)
}

/// The hub named by the end-entity certificate (the first) of `chain`.
///
/// This only reads names; it does not verify anything. Call it on a chain that rustls verified.
/// A certificate naming two different hubs names none.
pub fn peer_hub_from_certs(chain: &[CertificateDer<'_>]) -> Option<String> {
    let ee = webpki::EndEntityCert::try_from(chain.first()?).ok()?;
    let mut hub: Option<&str> = None;
    for id in ee.valid_dns_names().filter_map(hub_id_from_dns_name) {
        match hub {
            Some(seen) if seen != id => return None,
            _ => hub = Some(id),
        }
    }
    hub.map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids() {
        for ok in ["a", "eu-1", "0", &"x".repeat(63)] {
            assert!(validate_hub_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "EU", "a.b", "a_b", "é", &"x".repeat(64)] {
            let err = validate_hub_id(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn names_back_to_ids() {
        assert_eq!(hub_server_name("eu-1"), "eu-1.hub.valley");
        assert_eq!(hub_id_from_dns_name("eu-1.hub.valley"), Some("eu-1"));
        assert_eq!(hub_id_from_dns_name("a.b.hub.valley"), None);
        assert_eq!(hub_id_from_dns_name(".hub.valley"), None);
        assert_eq!(hub_id_from_dns_name("hub.valley"), None);
        assert_eq!(hub_id_from_dns_name("xhub.valley"), None);
        assert_eq!(hub_id_from_dns_name("eu.hub.valley.evil"), None);
    }

    #[test]
    fn fingerprint_is_sha256_hex() {
        // SHA-256("abc") from FIPS 180-2.
        assert_eq!(
            fingerprint_sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
