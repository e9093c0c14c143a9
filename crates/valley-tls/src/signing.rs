//! Statements a hub signs with the key of its certificate, and their check by anyone holding
//! the network CA: the certificate must chain to the CA and name the hub, and the signature
//! must be the certificate key's over the statement.
//!
//! The key is the one the hub's TLS already proves it holds, so no second key needs
//! distributing or pinning. `valley cert init` makes Ed25519 hub keys; certificates from an
//! operator's own CA may carry ECDSA (P-256, P-384) or RSA-PSS keys, which work the same.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::pki_types::{CertificateDer, UnixTime};

use crate::error::TlsError;
use crate::identity::peer_hub_from_certs;
use crate::pem::{load_certs, load_key};

/// The schemes a hub signs with, in order of preference.
const SCHEMES: [SignatureScheme; 4] = [
    SignatureScheme::ED25519,
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::RSA_PSS_SHA256,
];

/// A signature, the scheme that made it (its TLS code point) and the certificate whose key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub scheme: u16,
    pub signature: Vec<u8>,
    pub cert_der: Vec<u8>,
}

/// Signs with the hub's certificate key, read from its files at each signature so a rotated
/// certificate is used as soon as it is in place.
#[derive(Debug, Clone)]
pub struct HubSigner {
    cert: PathBuf,
    key: PathBuf,
}

impl HubSigner {
    #[must_use]
    pub fn new(cert: &Path, key: &Path) -> Self {
        Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
        }
    }

    pub fn sign(&self, message: &[u8]) -> Result<Signed, TlsError> {
        let certs = load_certs(&self.cert)?;
        let cert = certs.first().ok_or_else(|| TlsError::NoCertificate {
            path: self.cert.clone(),
        })?;
        let key = load_key(&self.key)?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::BadKey {
            path: self.key.clone(),
            reason: e.to_string(),
        })?;
        let signer = signing.choose_scheme(&SCHEMES).ok_or_else(|| TlsError::BadKey {
            path: self.key.clone(),
            reason: "the key signs none of Ed25519, ECDSA P-256/P-384, RSA-PSS".into(),
        })?;
        let signature = signer.sign(message).map_err(|e| TlsError::BadKey {
            path: self.key.clone(),
            reason: e.to_string(),
        })?;
        Ok(Signed {
            scheme: u16::from(signer.scheme()),
            signature,
            cert_der: cert.as_ref().to_vec(),
        })
    }
}

/// Checks signatures of hubs against the network CA.
#[derive(Debug, Clone)]
pub struct HubSignatureCheck {
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl HubSignatureCheck {
    /// A check against the CA in `ca_pem`.
    pub fn load(ca_pem: &Path) -> Result<Self, TlsError> {
        let roots = crate::pem::load_roots(ca_pem)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Self { verifier })
    }

    /// `Err` says why `signed` is not hub `hub`'s signature over `message`: a certificate the
    /// CA did not issue (or not valid now), one naming another hub, or a bad signature.
    pub fn verify(&self, hub: &str, message: &[u8], signed: &Signed) -> Result<(), String> {
        let cert = CertificateDer::from(signed.cert_der.as_slice());
        self.verifier
            .verify_client_cert(&cert, &[], UnixTime::now())
            .map_err(|e| format!("the certificate is not one the network CA issued: {e}"))?;
        match peer_hub_from_certs(std::slice::from_ref(&cert)) {
            Some(named) if named == hub => {}
            Some(named) => return Err(format!("the certificate is hub {named}'s, not {hub}'s")),
            None => return Err("the certificate names no hub".into()),
        }
        let scheme = SignatureScheme::from(signed.scheme);
        if !SCHEMES.contains(&scheme) {
            return Err(format!("signature scheme {scheme:?} is not one hubs sign with"));
        }
        let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        let candidates = algorithms
            .mapping
            .iter()
            .find(|(s, _)| *s == scheme)
            .map_or(&[][..], |(_, algs)| *algs);
        let ee = webpki::EndEntityCert::try_from(&cert).map_err(|e| format!("unreadable certificate: {e}"))?;
        let mut last = String::from("no algorithm for the scheme");
        for alg in candidates {
            match ee.verify_signature(*alg, message, &signed.signature) {
                Ok(()) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("bad signature: {last}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{HubCertSpec, init_network};

    fn network(dir: &Path) {
        let hubs = ["alpha", "beta"].map(|id| HubCertSpec {
            id: id.into(),
            extra_names: Vec::new(),
        });
        init_network(&hubs, dir).unwrap();
    }

    #[test]
    fn a_hub_signature_verifies_and_any_change_fails() {
        let dir = tempfile::tempdir().unwrap();
        network(dir.path());
        let signer = HubSigner::new(&dir.path().join("alpha/cert.pem"), &dir.path().join("alpha/key.pem"));
        let check = HubSignatureCheck::load(&dir.path().join("ca.pem")).unwrap();
        let signed = signer.sign(b"head 7").unwrap();
        assert_eq!(SignatureScheme::from(signed.scheme), SignatureScheme::ED25519);
        // Written as PKCS#8 v1 (48 bytes), which OpenSSL 3.0 reads too.
        let key = load_key(&dir.path().join("alpha/key.pem")).unwrap();
        assert_eq!(key.secret_der().len(), 48);
        check.verify("alpha", b"head 7", &signed).unwrap();
        assert!(
            check
                .verify("alpha", b"head 8", &signed)
                .unwrap_err()
                .contains("bad signature")
        );
        assert!(
            check
                .verify("beta", b"head 7", &signed)
                .unwrap_err()
                .contains("not beta's")
        );
        let mut flipped = signed.clone();
        flipped.signature[3] ^= 1;
        assert!(check.verify("alpha", b"head 7", &flipped).is_err());
        // beta's certificate with alpha's signature: the key does not match.
        let beta = HubSigner::new(&dir.path().join("beta/cert.pem"), &dir.path().join("beta/key.pem"));
        let mut swapped = beta.sign(b"head 7").unwrap();
        swapped.signature = signed.signature.clone();
        assert!(check.verify("beta", b"head 7", &swapped).is_err());
    }

    #[test]
    fn a_certificate_from_another_ca_is_refused() {
        let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        network(ours.path());
        network(theirs.path());
        let forger = HubSigner::new(
            &theirs.path().join("alpha/cert.pem"),
            &theirs.path().join("alpha/key.pem"),
        );
        let check = HubSignatureCheck::load(&ours.path().join("ca.pem")).unwrap();
        let signed = forger.sign(b"head").unwrap();
        assert!(
            check
                .verify("alpha", b"head", &signed)
                .unwrap_err()
                .contains("network CA")
        );
    }
}
