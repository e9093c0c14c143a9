//! Secret keys sealed at rest and in control records: AES-256-GCM under a key derived (HKDF-
//! SHA256) from a secret every hub of the network holds, with the access key as associated
//! data (a sealed secret moved to another key's record does not open).

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Salt};
use serde::{Deserialize, Serialize};

use crate::TenantError;

const SALT: &[u8] = b"valley-tenants/seal/v1";
const ALGORITHM: &str = "aes-256-gcm";

/// A sealed secret as stored and replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub alg: String,
    /// Which sealing key: the first bytes of its fingerprint, so a hub with another network
    /// secret says so instead of failing to open.
    pub key_id: String,
    pub nonce: String,
    pub data: String,
}

pub struct Sealer {
    key: LessSafeKey,
    key_id: String,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

struct KeyLen;

impl ring::hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        32
    }
}

impl Sealer {
    /// The sealer of everything derived from `secret` (the network secret, or a lone hub's key).
    #[must_use]
    pub fn from_secret(secret: &[u8]) -> Self {
        let prk = Salt::new(HKDF_SHA256, SALT).extract(secret);
        let okm = prk
            .expand(&[b"access-key-secret"], &AES_256_GCM)
            .expect("HKDF output of one AES key is within its limit");
        let key = LessSafeKey::new(UnboundKey::from(okm));
        let mut id = [0u8; 32];
        prk.expand(&[b"key-id"], KeyLen)
            .and_then(|o| o.fill(&mut id))
            .expect("HKDF output of 32 bytes is within its limit");
        Self {
            key,
            key_id: hex::encode(&id[..8]),
        }
    }

    pub fn seal(&self, associated: &str, plain: &str) -> Sealed {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut data = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(associated.as_bytes()),
                &mut data,
            )
            .expect("sealing a short secret cannot exceed AES-GCM's length limit");
        Sealed {
            alg: ALGORITHM.to_owned(),
            key_id: self.key_id.clone(),
            nonce: hex::encode(nonce_bytes),
            data: hex::encode(data),
        }
    }

    pub fn open(&self, associated: &str, sealed: &Sealed) -> Result<String, TenantError> {
        if sealed.alg != ALGORITHM {
            return Err(TenantError::Seal(format!("unknown sealing algorithm {:?}", sealed.alg)));
        }
        if sealed.key_id != self.key_id {
            return Err(TenantError::Seal(format!(
                "sealed with key {}, this hub holds key {} (hubs of one network must share its secret)",
                sealed.key_id, self.key_id
            )));
        }
        let nonce: [u8; NONCE_LEN] = hex::decode(&sealed.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| TenantError::Seal("malformed nonce".into()))?;
        let mut data = hex::decode(&sealed.data).map_err(|e| TenantError::Seal(e.to_string()))?;
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(associated.as_bytes()),
                &mut data,
            )
            .map_err(|_| TenantError::Seal("a sealed secret failed its integrity check".into()))?;
        String::from_utf8(plain.to_vec()).map_err(|e| TenantError::Seal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_its_access_key() {
        let sealer = Sealer::from_secret(b"network secret");
        let sealed = sealer.seal("VKABC", "s3cret-value");
        assert!(!sealed.data.contains(&hex::encode("s3cret-value")));
        assert_eq!(sealer.open("VKABC", &sealed).unwrap(), "s3cret-value");
        assert!(sealer.open("VKOTHER", &sealed).is_err(), "bound to its access key");
        let other = Sealer::from_secret(b"another network");
        let why = other.open("VKABC", &sealed).unwrap_err().to_string();
        assert!(why.contains("share its secret"), "{why}");
        let mut tampered = sealed.clone();
        tampered
            .data
            .replace_range(0..2, if &tampered.data[0..2] == "00" { "01" } else { "00" });
        assert!(sealer.open("VKABC", &tampered).is_err());
        assert_ne!(sealer.seal("VKABC", "x").nonce, sealer.seal("VKABC", "x").nonce);
    }
}
