//! Keys wrapping keys: a data key per object version, wrapped by its bucket's key; the bucket
//! key wrapped by the tenant's key-encryption key in the key service.
//!
//! A wrapped key is bound to its context (which bucket, object and version it belongs to): the
//! same wrapped bytes copied into another object's record do not open.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{CryptoError, CryptoResult};

const WRAP_ALGORITHM: &str = "aes-256-gcm";
const WRAP_LABEL: &[u8] = b"valley/wrap/v1";

/// A 256-bit key in memory, wiped when dropped.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A fresh random key (the OS's generator through `rand`).
    #[must_use]
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::fill(&mut k);
        let key = Self(Zeroizing::new(k));
        k.zeroize();
        key
    }

    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A key from exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> CryptoResult<Self> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::Malformed {
            what: "key",
            detail: format!("{} bytes, not 32", bytes.len()),
        })?;
        Ok(Self::from_bytes(arr))
    }

    /// The key made of two shares (HKDF-SHA256 of both): whoever lacks either share learns
    /// nothing of it. So a key whose shares are wrapped by two different key-encryption keys
    /// is lost for good when either of those is destroyed.
    #[must_use]
    pub fn from_shares(first: &DataKey, second: &DataKey) -> DataKey {
        use ring::hkdf::{HKDF_SHA256, KeyType, Salt};
        struct Len32;
        impl KeyType for Len32 {
            fn len(&self) -> usize {
                32
            }
        }
        let mut ikm = Zeroizing::new([0u8; 64]);
        ikm[..32].copy_from_slice(first.expose());
        ikm[32..].copy_from_slice(second.expose());
        let mut out = Zeroizing::new([0u8; 32]);
        Salt::new(HKDF_SHA256, b"valley/key-shares/v1")
            .extract(&ikm[..])
            .expand(&[b"combined key"], Len32)
            .and_then(|okm| okm.fill(&mut out[..]))
            .expect("32 bytes of HKDF output");
        DataKey::from_bytes(*out)
    }

    /// The raw key, for the cipher that uses it. Never log or store it.
    #[must_use]
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, self.expose()).expect("32-byte key"))
    }

    /// `key` wrapped under this key, bound to `context`, labelled with `wrapping_key` (the id
    /// of this key, so a reader knows which to unwrap with).
    #[must_use]
    pub fn wrap(&self, wrapping_key: &str, key: &DataKey, context: &[u8]) -> WrappedKey {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut data = key.expose().to_vec();
        self.cipher()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(wrap_aad(context)),
                &mut data,
            )
            .expect("a 32-byte key is within AES-GCM's limit");
        WrappedKey {
            alg: WRAP_ALGORITHM.to_owned(),
            wrapping_key: wrapping_key.to_owned(),
            nonce: hex::encode(nonce),
            sealed: hex::encode(data),
        }
    }

    /// The key `wrapped` holds, if it was wrapped under this key with this `context`.
    pub fn unwrap_key(&self, wrapped: &WrappedKey, context: &[u8]) -> CryptoResult<DataKey> {
        if wrapped.alg != WRAP_ALGORITHM {
            return Err(CryptoError::Malformed {
                what: "wrapped key",
                detail: format!("unknown algorithm {:?}", wrapped.alg),
            });
        }
        let nonce: [u8; NONCE_LEN] = hex::decode(&wrapped.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(CryptoError::Integrity { what: "a wrapped key" })?;
        let mut data =
            Zeroizing::new(hex::decode(&wrapped.sealed).map_err(|_| CryptoError::Integrity { what: "a wrapped key" })?);
        let plain = self
            .cipher()
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(wrap_aad(context)),
                &mut data,
            )
            .map_err(|_| CryptoError::Integrity { what: "a wrapped key" })?;
        DataKey::from_slice(plain)
    }
}

fn wrap_aad(context: &[u8]) -> Vec<u8> {
    let mut aad = WRAP_LABEL.to_vec();
    aad.extend_from_slice(context);
    aad
}

/// A key as stored and sent: sealed under the key `wrapping_key` names. Format 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    pub alg: String,
    /// Which key wrapped it: a bucket key's id, or a key-encryption key's id in the key service.
    pub wrapping_key: String,
    pub nonce: String,
    pub sealed: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_of_two_shares_needs_both() {
        let (a, b, c) = (DataKey::generate(), DataKey::generate(), DataKey::generate());
        let ab = DataKey::from_shares(&a, &b);
        assert_eq!(ab.expose(), DataKey::from_shares(&a, &b).expose(), "deterministic");
        assert_ne!(ab.expose(), DataKey::from_shares(&b, &a).expose(), "ordered");
        assert_ne!(ab.expose(), DataKey::from_shares(&a, &c).expose());
        assert_ne!(ab.expose(), DataKey::from_shares(&c, &b).expose());
        assert_ne!(ab.expose(), a.expose());
        assert_ne!(ab.expose(), b.expose());
    }

    #[test]
    fn a_wrapped_key_opens_only_under_its_key_and_context() {
        let bucket_key = DataKey::generate();
        let data_key = DataKey::generate();
        let wrapped = bucket_key.wrap("bk-1", &data_key, b"photos/cat.jpg/v1");
        assert_eq!(wrapped.wrapping_key, "bk-1");
        assert!(!wrapped.sealed.contains(&hex::encode(&data_key.expose()[..8])));
        let opened = bucket_key.unwrap_key(&wrapped, b"photos/cat.jpg/v1").unwrap();
        assert_eq!(opened.expose(), data_key.expose());
        assert!(
            bucket_key.unwrap_key(&wrapped, b"photos/dog.jpg/v1").is_err(),
            "bound to its object"
        );
        assert!(
            DataKey::generate().unwrap_key(&wrapped, b"photos/cat.jpg/v1").is_err(),
            "bound to its key"
        );
        let mut altered = wrapped.clone();
        altered
            .sealed
            .replace_range(0..2, if &altered.sealed[0..2] == "00" { "01" } else { "00" });
        assert!(bucket_key.unwrap_key(&altered, b"photos/cat.jpg/v1").is_err());
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(DataKey::generate().expose(), DataKey::generate().expose());
        assert_eq!(format!("{:?}", DataKey::from_bytes([1; 32])), "DataKey(..)");
    }
}
