//! The key service that holds tenants' key-encryption keys.
//!
//! [`Kms`] is the one interface: create a key, wrap and unwrap a (bucket) key under it,
//! destroy it. A key-encryption key never leaves its service: callers see wrapped keys only.
//! Implementations:
//! - [`LocalKeystore`], the embedded default: the keys in one file, each sealed under a master
//!   key that comes from a file or the environment the tenant controls, never the data dir.
//!   Without the master key the file is noise.
//! - [`crate::Pkcs11Kms`] (a hardware security module, SoftHSM2, a cloud HSM) wraps with the
//!   token's `CKM_AES_GCM` under a non-extractable key object: same trait.
//! - A third service fits the same way: KMIP's `Encrypt`/`Decrypt` operations, or a
//!   Vault-compatible transit API (`POST transit/encrypt/:name` with the context as associated
//!   data), each mapping `wrap`/`unwrap` to one call and `destroy_key` to the service's own.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ring::hkdf::{HKDF_SHA256, KeyType, Salt};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::envelope::{DataKey, WrappedKey};
use crate::error::{CryptoError, CryptoResult};

/// A key service holding key-encryption keys by id.
pub trait Kms: Send + Sync + std::fmt::Debug {
    /// Creates key `key_id`; an existing id is refused, never replaced.
    fn create_key(&self, key_id: &str) -> CryptoResult<()>;
    fn has_key(&self, key_id: &str) -> CryptoResult<bool>;
    fn list_keys(&self) -> CryptoResult<Vec<String>>;
    /// `key` wrapped under key `key_id`, bound to `context`.
    fn wrap(&self, key_id: &str, key: &DataKey, context: &[u8]) -> CryptoResult<WrappedKey>;
    /// The key `wrapped` holds (its `wrapping_key` names the key-encryption key).
    fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> CryptoResult<DataKey>;
    /// Destroys key `key_id`: whatever it wrapped can never be opened again.
    fn destroy_key(&self, key_id: &str) -> CryptoResult<()>;
}

/// Checks a key id: the S3 key ids clients send (`testkey-1`, an ARN-like name) and Valley's
/// tenant-scoped ids (`TENANT/NAME`).
pub fn check_key_id(key_id: &str) -> CryptoResult<()> {
    let ok = (1..=256).contains(&key_id.len())
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b':'));
    if ok {
        Ok(())
    } else {
        Err(CryptoError::InvalidKeyId(key_id.to_owned()))
    }
}

const KEYSTORE_FORMAT: u32 = 1;
const MASTER_SALT: &[u8] = b"valley/keystore/v1";

/// The keystore file, format 1.
#[derive(Debug, Default, Serialize, Deserialize)]
struct KeystoreFile {
    format: u32,
    /// A fingerprint of the master key (not the key): a keystore opened with another master
    /// key says so instead of failing on every key.
    master_key_id: String,
    keys: BTreeMap<String, WrappedKey>,
}

/// Key-encryption keys in one local file, sealed under a master key.
///
/// Several processes may share the file (hubs on one machine, or on a shared file system): each
/// change is made under an exclusive lock on `FILE.lock`, from the file as it is then, and a key
/// not known in memory is looked for in the file again before it is declared missing.
pub struct LocalKeystore {
    path: PathBuf,
    master: DataKey,
    master_key_id: String,
    keys: Mutex<BTreeMap<String, WrappedKey>>,
}

impl std::fmt::Debug for LocalKeystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeystore")
            .field("path", &self.path)
            .field("master_key_id", &self.master_key_id)
            .finish_non_exhaustive()
    }
}

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// A master key from its text form: 64 hex digits (32 bytes).
pub fn master_key_from_text(text: &str) -> CryptoResult<DataKey> {
    let bytes = Zeroizing::new(
        hex::decode(text.trim()).map_err(|_| CryptoError::MasterKey("is not hex: give 64 hex digits".into()))?,
    );
    DataKey::from_slice(&bytes).map_err(|_| CryptoError::MasterKey(format!("is {} bytes, not 32", bytes.len())))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CryptoError + '_ {
    move |source| CryptoError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl LocalKeystore {
    /// Opens the keystore at `path` (created empty if absent) with `master`. A keystore sealed
    /// under another master key is refused.
    pub fn open(path: &Path, master: DataKey) -> CryptoResult<Self> {
        // The master key's fingerprint: HKDF of it, never the key itself.
        let prk = Salt::new(HKDF_SHA256, MASTER_SALT).extract(master.expose());
        let mut fp = [0u8; 8];
        prk.expand(&[b"fingerprint"], Len(8))
            .and_then(|o| o.fill(&mut fp))
            .expect("8 bytes of HKDF output");
        let store = Self {
            path: path.to_owned(),
            master,
            master_key_id: hex::encode(fp),
            keys: Mutex::new(BTreeMap::new()),
        };
        let _lock = store.lock_file()?;
        let keys = store.read_file()?;
        if !path.exists() {
            store.persist(&keys)?;
        }
        *store.keys.lock().expect("keystore lock") = keys;
        Ok(store)
    }

    fn context(key_id: &str) -> Vec<u8> {
        format!("kek/{key_id}").into_bytes()
    }

    /// An exclusive lock on the keystore's lock file, held while the file is changed.
    fn lock_file(&self) -> CryptoResult<std::fs::File> {
        let lock_path = self.path.with_extension("lock");
        if let Some(dir) = lock_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        file.lock().map_err(io_err(&lock_path))?;
        Ok(file)
    }

    /// The keys the file holds now (none when it does not exist yet).
    fn read_file(&self) -> CryptoResult<BTreeMap<String, WrappedKey>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(io_err(&self.path)(e)),
        };
        let file: KeystoreFile = serde_json::from_slice(&bytes).map_err(|e| CryptoError::Malformed {
            what: "keystore file",
            detail: e.to_string(),
        })?;
        if file.format != KEYSTORE_FORMAT {
            return Err(CryptoError::Malformed {
                what: "keystore file",
                detail: format!("format {} (this build reads {KEYSTORE_FORMAT})", file.format),
            });
        }
        if file.master_key_id != self.master_key_id {
            return Err(CryptoError::MasterKey(format!(
                "does not open keystore {} (sealed under key {}, given key {})",
                self.path.display(),
                file.master_key_id,
                self.master_key_id
            )));
        }
        Ok(file.keys)
    }

    /// The file's keys, also kept in memory.
    fn reload(&self) -> CryptoResult<BTreeMap<String, WrappedKey>> {
        let now = self.read_file()?;
        *self.keys.lock().expect("keystore lock") = now.clone();
        Ok(now)
    }

    /// The key-encryption key `key_id`, opened from its sealed entry.
    fn kek(&self, key_id: &str) -> CryptoResult<DataKey> {
        let known = self.keys.lock().expect("keystore lock").get(key_id).cloned();
        let sealed = match known {
            Some(sealed) => sealed,
            // Perhaps made by another process sharing the file since this one read it.
            None => self
                .reload()?
                .remove(key_id)
                .ok_or_else(|| CryptoError::NoSuchKey(key_id.to_owned()))?,
        };
        self.master.unwrap_key(&sealed, &Self::context(key_id))
    }

    /// Writes the keystore: a new file, synced, renamed over the old one, the directory synced,
    /// so a crash leaves the old or the new keystore, never half of one. Called under the lock.
    fn persist(&self, keys: &BTreeMap<String, WrappedKey>) -> CryptoResult<()> {
        let file = KeystoreFile {
            format: KEYSTORE_FORMAT,
            master_key_id: self.master_key_id.clone(),
            keys: keys.clone(),
        };
        let json = serde_json::to_vec_pretty(&file).expect("keystore serializes");
        let tmp = self.path.with_extension("tmp");
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(&tmp).map_err(io_err(&tmp))?;
            f.write_all(&json).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
    }

    /// Changes the file under its lock, from its content now.
    fn change<T>(&self, edit: impl FnOnce(&mut BTreeMap<String, WrappedKey>) -> CryptoResult<T>) -> CryptoResult<T> {
        let _lock = self.lock_file()?;
        let mut keys = self.read_file()?;
        let result = edit(&mut keys);
        if result.is_ok() {
            self.persist(&keys)?;
        }
        *self.keys.lock().expect("keystore lock") = keys;
        result
    }
}

impl Kms for LocalKeystore {
    fn create_key(&self, key_id: &str) -> CryptoResult<()> {
        check_key_id(key_id)?;
        self.change(|keys| {
            if keys.contains_key(key_id) {
                return Err(CryptoError::KeyExists(key_id.to_owned()));
            }
            let kek = DataKey::generate();
            keys.insert(
                key_id.to_owned(),
                self.master.wrap("master", &kek, &Self::context(key_id)),
            );
            Ok(())
        })
    }

    fn has_key(&self, key_id: &str) -> CryptoResult<bool> {
        if self.keys.lock().expect("keystore lock").contains_key(key_id) {
            return Ok(true);
        }
        Ok(self.reload()?.contains_key(key_id))
    }

    fn list_keys(&self) -> CryptoResult<Vec<String>> {
        Ok(self.reload()?.into_keys().collect())
    }

    fn wrap(&self, key_id: &str, key: &DataKey, context: &[u8]) -> CryptoResult<WrappedKey> {
        Ok(self.kek(key_id)?.wrap(key_id, key, context))
    }

    fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> CryptoResult<DataKey> {
        self.kek(&wrapped.wrapping_key)?.unwrap_key(wrapped, context)
    }

    fn destroy_key(&self, key_id: &str) -> CryptoResult<()> {
        self.change(|keys| {
            keys.remove(key_id)
                .map(|_| ())
                .ok_or_else(|| CryptoError::NoSuchKey(key_id.to_owned()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> DataKey {
        master_key_from_text(&"ab".repeat(32)).unwrap()
    }

    #[test]
    fn keys_survive_reopening_and_wrap_only_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keystore.json");
        let ks = LocalKeystore::open(&path, master()).unwrap();
        ks.create_key("acme/testkey-1").unwrap();
        ks.create_key("acme/testkey-2").unwrap();
        assert!(matches!(
            ks.create_key("acme/testkey-1"),
            Err(CryptoError::KeyExists(_))
        ));
        let bucket_key = DataKey::generate();
        let wrapped = ks.wrap("acme/testkey-1", &bucket_key, b"bucket photos").unwrap();
        drop(ks);
        let ks = LocalKeystore::open(&path, master()).unwrap();
        assert_eq!(ks.list_keys().unwrap(), ["acme/testkey-1", "acme/testkey-2"]);
        assert_eq!(
            ks.unwrap(&wrapped, b"bucket photos").unwrap().expose(),
            bucket_key.expose()
        );
        assert!(ks.unwrap(&wrapped, b"bucket other").is_err());
        let mut moved = wrapped.clone();
        moved.wrapping_key = "acme/testkey-2".into();
        assert!(
            ks.unwrap(&moved, b"bucket photos").is_err(),
            "another key does not open it"
        );
        // The file holds no key in the clear.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&hex::encode(bucket_key.expose())));
    }

    #[test]
    fn a_destroyed_key_opens_nothing_ever_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keystore.json");
        let ks = LocalKeystore::open(&path, master()).unwrap();
        ks.create_key("t/k").unwrap();
        let wrapped = ks.wrap("t/k", &DataKey::generate(), b"c").unwrap();
        ks.destroy_key("t/k").unwrap();
        assert!(matches!(ks.unwrap(&wrapped, b"c"), Err(CryptoError::NoSuchKey(_))));
        let reopened = LocalKeystore::open(&path, master()).unwrap();
        assert!(matches!(
            reopened.unwrap(&wrapped, b"c"),
            Err(CryptoError::NoSuchKey(_))
        ));
        // Re-creating the id makes a new key, which does not open the old wrapping.
        reopened.create_key("t/k").unwrap();
        assert!(reopened.unwrap(&wrapped, b"c").is_err());
    }

    #[test]
    fn two_processes_sharing_the_file_see_each_others_keys_and_never_lose_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keystore.json");
        let a = LocalKeystore::open(&path, master()).unwrap();
        let b = LocalKeystore::open(&path, master()).unwrap();
        a.create_key("t/one").unwrap();
        b.create_key("t/two").unwrap();
        assert!(
            matches!(b.create_key("t/one"), Err(CryptoError::KeyExists(_))),
            "made by a, seen by b"
        );
        let wrapped = a.wrap("t/two", &DataKey::generate(), b"c").unwrap();
        assert!(b.unwrap(&wrapped, b"c").is_ok());
        assert_eq!(a.list_keys().unwrap(), ["t/one", "t/two"]);
        b.destroy_key("t/one").unwrap();
        assert_eq!(
            LocalKeystore::open(&path, master()).unwrap().list_keys().unwrap(),
            ["t/two"]
        );
    }

    #[test]
    fn another_master_key_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keystore.json");
        LocalKeystore::open(&path, master()).unwrap().create_key("t/k").unwrap();
        let other = master_key_from_text(&"cd".repeat(32)).unwrap();
        let err = LocalKeystore::open(&path, other).unwrap_err().to_string();
        assert!(err.contains("does not open keystore"), "{err}");
        assert!(master_key_from_text("xyz").is_err());
        assert!(master_key_from_text("abcd").is_err());
    }

    #[test]
    fn key_ids_are_checked() {
        assert!(check_key_id("testkey-1").is_ok());
        assert!(check_key_id("acme/arn:aws:kms:us-east-1:123:key/abc").is_ok());
        assert!(check_key_id("").is_err());
        assert!(check_key_id("a b").is_err());
        assert!(check_key_id(&"a".repeat(257)).is_err());
    }
}
