//! The crate's one error type: each variant says what went wrong and to which file, hub or peer.

use std::path::PathBuf;

/// Everything valley-tls can fail at.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read, written or inspected.
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A PEM file is malformed (bad base64, missing END line, ...).
    #[error("{path}: malformed PEM: {reason}")]
    Pem { path: PathBuf, reason: String },
    /// A certificate file holds no `CERTIFICATE` section.
    #[error("{path}: no certificate in file (expected a PEM `CERTIFICATE` section)")]
    NoCertificate { path: PathBuf },
    /// A key file holds no private key section.
    #[error("{path}: no private key in file (expected a PEM `PRIVATE KEY` section)")]
    NoPrivateKey { path: PathBuf },
    /// A certificate in a file cannot be parsed as X.509.
    #[error("{path}: invalid certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    /// A private key cannot be loaded (unsupported type, corrupt).
    #[error("{path}: unusable private key: {reason}")]
    BadKey { path: PathBuf, reason: String },
    /// The key does not belong to the certificate.
    #[error("{key} does not match the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// A hub id is not a DNS label.
    #[error("invalid hub id {id:?}: {reason}")]
    InvalidHubId { id: String, reason: &'static str },
    /// An extra certificate name is neither an IP address nor a DNS name.
    #[error("hub {hub}: invalid extra name {name:?}: {reason}")]
    InvalidName { hub: String, name: String, reason: String },
    /// Generation refuses to overwrite an existing file.
    #[error("{path} already exists; refusing to overwrite certificates or keys")]
    AlreadyExists { path: PathBuf },
    /// rcgen failed to build or sign a certificate.
    #[error("generating {what}: {source}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    /// A CA certificate and key given to issue a hub certificate do not fit together.
    #[error("{path}: {reason}")]
    BadCa { path: PathBuf, reason: String },
    /// rustls refused a configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// No trust store found for the CLI when no CA was given.
    #[error("no CA given and no system trust store found (tried SSL_CERT_FILE and {tried})")]
    NoSystemRoots { tried: String },
    /// A URI the connector was asked to dial is unusable.
    #[error("cannot dial {uri}: {reason}")]
    BadUri { uri: String, reason: &'static str },
    /// An `https` peer address that the topology does not name: never dialled.
    #[error("refusing TLS to {authority}: no hub is known at this address")]
    UnknownPeer { authority: String },
    /// TCP connect failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// TCP connect or TLS handshake took too long.
    #[error("{what} to {addr} timed out after {timeout_s} s")]
    Timeout {
        what: &'static str,
        addr: String,
        timeout_s: u64,
    },
    /// TLS handshake failed (certificate not from the network CA, wrong hub, ...).
    #[error("TLS handshake with {addr} (expecting {server_name}): {source}")]
    Handshake {
        addr: String,
        server_name: String,
        #[source]
        source: std::io::Error,
    },
}

impl TlsError {
    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> Self {
        TlsError::Io {
            path: path.into(),
            action,
            source,
        }
    }
}
