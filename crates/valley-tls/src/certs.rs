//! Generating a network: one CA, and per hub a certificate naming `<id>.hub.valley`.
//!
//! Layout written by [`init_network`] under `out`:
//! `ca.pem`, `ca-key.pem`, and per hub `<id>/cert.pem` (the hub's leaf certificate only: peers
//! trust the CA directly, so no chain is needed) and `<id>/key.pem`. Key files are mode 0600.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::{CertificateDer, DnsName, UnixTime};

use crate::TlsError;
use crate::identity::{fingerprint_sha256, hub_server_name, validate_hub_id};
use crate::pem::load_certs;

/// How long the network CA is valid.
pub const CA_VALIDITY_DAYS: i64 = 10 * 365;
/// How long a hub certificate is valid.
pub const HUB_VALIDITY_DAYS: i64 = 2 * 365;
/// Certificates are valid from this long before they are made, for clock skew between hubs.
const BACKDATE_HOURS: i64 = 1;
/// The CA's subject. Hub certificates issued later ([`issue_hub_cert`]) name it as their issuer.
const CA_COMMON_NAME: &str = "Valley network CA";
const CA_ORGANIZATION: &str = "Valley";

/// One hub to issue a certificate for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubCertSpec {
    /// The hub id; the certificate names `<id>.hub.valley`.
    pub id: String,
    /// Further names the certificate is valid for: IP addresses become IP SANs, anything else a
    /// DNS SAN (e.g. "127.0.0.1", "localhost", the hosts of the hub's endpoint URLs).
    pub extra_names: Vec<String>,
}

/// What [`init_network`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkCerts {
    /// [`fingerprint_sha256`] of the CA certificate: what the topology pins.
    pub ca_fingerprint: String,
    /// The CA certificate (`out/ca.pem`).
    pub ca_pem: PathBuf,
    /// Per hub, in input order: (hub id, certificate file, key file).
    pub hubs: Vec<(String, PathBuf, PathBuf)>,
}

/// Creates a CA and one certificate per hub under `out` (created if missing).
///
/// Refuses, writing nothing, when a hub id is invalid or repeated, an extra name is invalid, or
/// any of the files it would write already exists.
pub fn init_network(hubs: &[HubCertSpec], out: &Path) -> Result<NetworkCerts, TlsError> {
    let mut seen = HashSet::new();
    let mut sans = Vec::with_capacity(hubs.len());
    for spec in hubs {
        validate_hub_id(&spec.id)?;
        if !seen.insert(spec.id.as_str()) {
            return Err(TlsError::InvalidHubId {
                id: spec.id.clone(),
                reason: "listed twice",
            });
        }
        sans.push(hub_sans(spec)?);
    }
    let ca_pem = out.join("ca.pem");
    let ca_key_pem = out.join("ca-key.pem");
    let mut targets = vec![ca_pem.clone(), ca_key_pem.clone()];
    for spec in hubs {
        targets.push(out.join(&spec.id).join("cert.pem"));
        targets.push(out.join(&spec.id).join("key.pem"));
    }
    refuse_existing(&targets)?;

    // Everything is generated before anything is written.
    let ca_key = new_key("the CA key")?;
    let ca_cert = ca_params().self_signed(&ca_key).map_err(|source| TlsError::Generate {
        what: "the CA certificate".into(),
        source,
    })?;
    let ca_fingerprint = fingerprint_sha256(ca_cert.der());
    let ca_key_text = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params(), ca_key);
    let mut leaves = Vec::with_capacity(hubs.len());
    for (spec, sans) in hubs.iter().zip(sans) {
        leaves.push(make_leaf(&spec.id, sans, &issuer)?);
    }

    create_dir(out)?;
    write_new(&ca_pem, ca_cert.pem().as_bytes(), 0o644)?;
    write_new(&ca_key_pem, ca_key_text.as_bytes(), 0o600)?;
    let mut written = Vec::with_capacity(hubs.len());
    for (spec, (cert, key)) in hubs.iter().zip(leaves) {
        let dir = out.join(&spec.id);
        create_dir(&dir)?;
        written.push(write_leaf(&spec.id, &dir, &cert, &key)?);
    }
    Ok(NetworkCerts {
        ca_fingerprint,
        ca_pem,
        hubs: written,
    })
}

/// Issues one more hub certificate from an existing network CA (a new hub, or rotating a hub's
/// certificate): writes `out_dir/cert.pem` and `out_dir/key.pem` (0600) and returns their paths.
///
/// Refuses to overwrite either file: issue into a fresh directory, then move the files into
/// place (a server reloads them; see `ServerTls`).
pub fn issue_hub_cert(
    ca_cert_pem: &Path,
    ca_key_pem: &Path,
    spec: &HubCertSpec,
    out_dir: &Path,
) -> Result<(PathBuf, PathBuf), TlsError> {
    validate_hub_id(&spec.id)?;
    let sans = hub_sans(spec)?;
    let (cert_path, key_path) = (out_dir.join("cert.pem"), out_dir.join("key.pem"));
    refuse_existing(&[cert_path.clone(), key_path.clone()])?;

    let ca_der = load_certs(ca_cert_pem)?.swap_remove(0);
    let ca_key_text = std::fs::read_to_string(ca_key_pem).map_err(|e| TlsError::io(ca_key_pem, "reading", e))?;
    let ca_key = KeyPair::from_pem(&ca_key_text).map_err(|e| TlsError::BadKey {
        path: ca_key_pem.to_path_buf(),
        reason: e.to_string(),
    })?;
    let ca_spki = webpki::EndEntityCert::try_from(&ca_der)
        .map_err(|e| TlsError::BadCertificate {
            path: ca_cert_pem.to_path_buf(),
            reason: e.to_string(),
        })?
        .subject_public_key_info();
    if ca_spki.as_ref() != ca_key.subject_public_key_info().as_slice() {
        return Err(TlsError::KeyMismatch {
            cert: ca_cert_pem.to_path_buf(),
            key: ca_key_pem.to_path_buf(),
        });
    }
    let issuer = Issuer::new(ca_params(), ca_key);
    let (cert, key) = make_leaf(&spec.id, sans, &issuer)?;
    // The issuer name comes from `ca_params`, not from the CA file: check the new certificate
    // really chains to that CA (it would not for a CA made by another tool).
    let leaf_der = CertificateDer::from(cert.der().to_vec());
    verify_chains_to(&leaf_der, &ca_der).map_err(|reason| TlsError::BadCa {
        path: ca_cert_pem.to_path_buf(),
        reason: format!("not a Valley network CA (issued certificate does not chain: {reason})"),
    })?;
    create_dir(out_dir)?;
    let (_, cert_path, key_path) = write_leaf(&spec.id, out_dir, &cert, &key)?;
    Ok((cert_path, key_path))
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, CA_ORGANIZATION);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(BACKDATE_HOURS);
    params.not_after = now + time::Duration::days(CA_VALIDITY_DAYS);
    params
}

/// The SANs of a hub's certificate: `<id>.hub.valley` first, then the extra names, deduplicated.
fn hub_sans(spec: &HubCertSpec) -> Result<Vec<SanType>, TlsError> {
    let primary = hub_server_name(&spec.id);
    let invalid = |name: &str, reason: String| TlsError::InvalidName {
        hub: spec.id.clone(),
        name: name.to_string(),
        reason,
    };
    let mut sans = vec![dns_san(&primary).map_err(|r| invalid(&primary, r))?];
    for name in &spec.extra_names {
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        let san = match bare.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => dns_san(name).map_err(|r| invalid(name, r))?,
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

fn dns_san(name: &str) -> Result<SanType, String> {
    let lower = name.to_ascii_lowercase();
    DnsName::try_from(lower.as_str()).map_err(|e| format!("not a DNS name or IP address ({e})"))?;
    let ia5 = lower.try_into().map_err(|e: rcgen::Error| e.to_string())?;
    Ok(SanType::DnsName(ia5))
}

fn make_leaf(
    id: &str,
    sans: Vec<SanType>,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(rcgen::Certificate, KeyPair), TlsError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hub_server_name(id));
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // One certificate both serves the hub's ports and authenticates it when it dials peers.
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(BACKDATE_HOURS);
    params.not_after = now + time::Duration::days(HUB_VALIDITY_DAYS);
    let key = new_ed25519_key(&format!("the key of hub {id}"))?;
    let cert = params.signed_by(&key, issuer).map_err(|source| TlsError::Generate {
        what: format!("the certificate of hub {id}"),
        source,
    })?;
    Ok((cert, key))
}

/// An Ed25519 key (it also signs the hub's audit chain heads, see `signing`), kept as PKCS#8
/// v1: ring writes v2 (with the public key), which OpenSSL 3.0 cannot read, so `openssl`,
/// curl or Python could not use the hub's key file.
fn new_ed25519_key(what: &str) -> Result<KeyPair, TlsError> {
    let generated = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|source| TlsError::Generate {
        what: what.to_string(),
        source,
    })?;
    let v1 = ed25519_pkcs8_v1(&generated.serialize_der()).ok_or_else(|| TlsError::Generate {
        what: what.to_string(),
        source: rcgen::Error::CouldNotParseKeyPair,
    })?;
    KeyPair::try_from(v1.as_slice()).map_err(|source| TlsError::Generate {
        what: what.to_string(),
        source,
    })
}

/// The PKCS#8 v1 form (RFC 8410) of an Ed25519 key given in ring's v2 form: the same seed.
fn ed25519_pkcs8_v1(v2: &[u8]) -> Option<Vec<u8>> {
    // SEQUENCE { INTEGER 1, AlgorithmIdentifier { id-Ed25519 }, OCTET STRING { OCTET STRING seed }, [1] public key }
    const V2_BODY_PREFIX: [u8; 14] = [
        0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    const V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    let body = match v2 {
        [0x30, len, body @ ..] if usize::from(*len) == body.len() => body,
        _ => return None,
    };
    let seed = body.strip_prefix(&V2_BODY_PREFIX[..])?.get(..32)?;
    let mut v1 = V1_PREFIX.to_vec();
    v1.extend_from_slice(seed);
    Some(v1)
}

fn new_key(what: &str) -> Result<KeyPair, TlsError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| TlsError::Generate {
        what: what.to_string(),
        source,
    })
}

fn verify_chains_to(leaf: &CertificateDer<'_>, ca: &CertificateDer<'_>) -> Result<(), String> {
    let anchor = webpki::anchor_from_trusted_cert(ca).map_err(|e| e.to_string())?;
    let ee = webpki::EndEntityCert::try_from(leaf).map_err(|e| e.to_string())?;
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &[],
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn write_leaf(
    id: &str,
    dir: &Path,
    cert: &rcgen::Certificate,
    key: &KeyPair,
) -> Result<(String, PathBuf, PathBuf), TlsError> {
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    // Key first: a reloading server that sees the new certificate finds its key already there.
    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok((id.to_string(), cert_path, key_path))
}

fn refuse_existing(paths: &[PathBuf]) -> Result<(), TlsError> {
    for path in paths {
        match std::fs::symlink_metadata(path) {
            Ok(_) => return Err(TlsError::AlreadyExists { path: path.clone() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(TlsError::io(path, "checking", e)),
        }
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|e| TlsError::io(dir, "creating directory", e))
}

/// Writes a file that must not exist yet, with `mode` set at creation (no window where a key is
/// readable by others).
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => TlsError::AlreadyExists {
                path: path.to_path_buf(),
            },
            _ => TlsError::io(path, "creating", e),
        })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| TlsError::io(path, "writing", e))
}
