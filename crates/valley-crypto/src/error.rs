//! What can go wrong sealing and opening.

/// A failure of encryption at rest. None of them says which byte was wrong or why a key did
/// not open: an attacker probing with altered ciphertext learns only that it was refused.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A chunk, a wrapped key or a keystore entry failed its integrity check: altered,
    /// truncated, moved to another object or position, or opened with the wrong key.
    #[error("{what} failed its integrity check")]
    Integrity { what: &'static str },
    /// The key-encryption key does not exist (never created, or destroyed: crypto-shredded).
    #[error("key {0:?} does not exist (never created or destroyed)")]
    NoSuchKey(String),
    #[error("key {0:?} already exists")]
    KeyExists(String),
    #[error("invalid key id {0:?}: 1 to 256 characters of letters, digits and -_./:")]
    InvalidKeyId(String),
    /// Stored data that does not have the shape its format says.
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("the master key {0}")]
    MasterKey(String),
    /// A PKCS#11 module or token refused or failed an operation: `op` says which (loading the
    /// module, finding the token, logging in, generating a key…), `detail` what it answered.
    #[error("PKCS#11 {op}: {detail}")]
    Pkcs11 { op: String, detail: String },
    #[error("keystore {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type CryptoResult<T> = Result<T, CryptoError>;
