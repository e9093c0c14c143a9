//! Key-encryption keys held in a PKCS#11 token: a hardware security module, a cloud HSM, or
//! SoftHSM2.
//!
//! Why PKCS#11: it is the one interface every HSM vendor ships (a shared library, the
//! "module"), so an on-premises HSM, a cloud HSM or SoftHSM2 plugs in unchanged, by naming its
//! module, token and PIN. Each tenant key is an AES-256 secret key object generated inside the
//! token as sensitive and non-extractable: its bytes never leave the token, not even to Valley.
//! Bucket keys are wrapped and unwrapped by the token itself (`CKM_AES_GCM`, bound to the
//! caller's context), so whoever copies the data dir and the hub's memory still lacks the key;
//! destroying the key object in the token shreds everything under it.
//!
//! What it costs: a round trip to the token per wrap/unwrap (fine: bucket keys are cached by
//! the caller, so these calls are rare); the PIN must reach the hub (from a file or the
//! environment, as the master key does); the vendor's module runs inside the hub's process
//! (a crashing module takes the hub down with it); and one session serves the process, so
//! calls to the token are serialized.
//!
//! A wrapped key is `{alg: "pkcs11-aes-256-gcm", wrapping_key: KEY_ID, nonce: IV, sealed:
//! CIPHERTEXT+TAG}`: the key object is found again by its label, so a second hub opening the
//! same token (or a token holding a copy of the key) opens what the first wrapped.

use std::path::Path;
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::envelope::{DataKey, WrappedKey};
use crate::error::{CryptoError, CryptoResult};
use crate::kms::{Kms, check_key_id};

/// The `alg` of keys wrapped by [`Pkcs11Kms`].
pub const PKCS11_WRAP_ALGORITHM: &str = "pkcs11-aes-256-gcm";
/// Associated data ahead of the caller's context: a wrapping made for another purpose, or by
/// another version of this format, does not open as this one.
const WRAP_LABEL: &[u8] = b"valley/pkcs11/v1\0";
const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;

/// A [`Kms`] whose keys are AES-256 secret key objects in a PKCS#11 token.
pub struct Pkcs11Kms {
    pkcs11: Pkcs11,
    slot: Slot,
    token_label: String,
    pin: AuthPin,
    /// The one session of this service, logged in as the user; re-opened once if the token
    /// closed it (an HSM restarted, a network HSM's connection dropped).
    session: Mutex<Session>,
}

impl std::fmt::Debug for Pkcs11Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Kms")
            .field("token", &self.token_label)
            .field("slot", &self.slot.id())
            .finish_non_exhaustive()
    }
}

/// What a PKCS#11 error says, shortly: `Login returned PinIncorrect`.
fn describe(e: &Error) -> String {
    match e {
        Error::Pkcs11(rv, function) => format!("{function:?} returned {rv:?}"),
        other => other.to_string(),
    }
}

fn failed(op: impl Into<String>) -> impl FnOnce(Error) -> CryptoError {
    let op = op.into();
    move |e| CryptoError::Pkcs11 {
        op,
        detail: describe(&e),
    }
}

/// The token's answer says the session (or its login) is gone, not that the request was wrong.
fn session_lost(e: &CryptoError) -> bool {
    matches!(e, CryptoError::Pkcs11 { detail, .. }
        if ["SessionHandleInvalid", "SessionClosed", "UserNotLoggedIn", "DeviceRemoved", "TokenNotPresent"]
            .iter()
            .any(|rv| detail.ends_with(&format!("returned {rv}"))))
}

impl Pkcs11Kms {
    /// Loads `module` (the vendor's PKCS#11 library), finds the token labelled `token_label`,
    /// opens a read/write session on it and logs in as the user with `user_pin`.
    pub fn open(module: &Path, token_label: &str, user_pin: &str) -> CryptoResult<Self> {
        let pkcs11 = Pkcs11::new(module).map_err(failed(format!("loading module {}", module.display())))?;
        match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            // Another service of this process initialized the module already: share it.
            Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(failed(format!("initializing module {}", module.display()))(e)),
        }
        let slots = pkcs11
            .get_slots_with_initialized_token()
            .map_err(failed("listing slots"))?;
        let mut found = Vec::new();
        let mut slot = None;
        for s in slots {
            let info = pkcs11.get_token_info(s).map_err(failed("reading token info"))?;
            // Labels are padded with blanks to 32 bytes.
            let label = info.label().trim_end().to_owned();
            if label == token_label && slot.is_none() {
                slot = Some(s);
            }
            found.push(label);
        }
        let Some(slot) = slot else {
            return Err(CryptoError::Pkcs11 {
                op: format!("finding token {token_label:?}"),
                detail: format!(
                    "module {} has no initialized token labelled {token_label:?} (tokens found: {})",
                    module.display(),
                    if found.is_empty() {
                        "none".to_owned()
                    } else {
                        found.iter().map(|l| format!("{l:?}")).collect::<Vec<_>>().join(", ")
                    }
                ),
            });
        };
        let pin = AuthPin::new(user_pin.trim_end_matches(['\n', '\r']).into());
        let session = Self::login(&pkcs11, slot, token_label, &pin)?;
        Ok(Self {
            pkcs11,
            slot,
            token_label: token_label.to_owned(),
            pin,
            session: Mutex::new(session),
        })
    }

    fn login(pkcs11: &Pkcs11, slot: Slot, token_label: &str, pin: &AuthPin) -> CryptoResult<Session> {
        let session = pkcs11
            .open_rw_session(slot)
            .map_err(failed(format!("opening a session on token {token_label:?}")))?;
        match session.login(UserType::User, Some(pin)) {
            // The login state is the process's: another session of it logged in already.
            Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(Error::Pkcs11(rv @ (RvError::PinIncorrect | RvError::PinLocked | RvError::PinLenRange), _)) => {
                Err(CryptoError::Pkcs11 {
                    op: format!("logging in to token {token_label:?}"),
                    detail: match rv {
                        RvError::PinLocked => "the user PIN is locked (too many wrong PINs)".to_owned(),
                        _ => format!("the user PIN is wrong ({rv:?})"),
                    },
                })
            }
            Err(e) => Err(failed(format!("logging in to token {token_label:?}"))(e)),
        }
    }

    /// Runs `f` on the session; if the token lost the session, logs in again and retries once.
    fn with_session<T>(&self, f: impl Fn(&Session) -> CryptoResult<T>) -> CryptoResult<T> {
        let mut session = self.session.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match f(&session) {
            Err(e) if session_lost(&e) => {
                *session = Self::login(&self.pkcs11, self.slot, &self.token_label, &self.pin)?;
                f(&session)
            }
            other => other,
        }
    }

    /// The secret key objects labelled `key_id` (normally one; two hubs creating the same id at
    /// once may leave two).
    fn find(session: &Session, key_id: &str) -> CryptoResult<Vec<ObjectHandle>> {
        session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(key_id.as_bytes().to_vec()),
            ])
            .map_err(failed(format!("finding key {key_id:?}")))
    }

    fn find_some(session: &Session, key_id: &str) -> CryptoResult<Vec<ObjectHandle>> {
        let found = Self::find(session, key_id)?;
        if found.is_empty() {
            return Err(CryptoError::NoSuchKey(key_id.to_owned()));
        }
        Ok(found)
    }
}

fn aad(context: &[u8]) -> Vec<u8> {
    let mut aad = WRAP_LABEL.to_vec();
    aad.extend_from_slice(context);
    aad
}

impl Kms for Pkcs11Kms {
    fn create_key(&self, key_id: &str) -> CryptoResult<()> {
        check_key_id(key_id)?;
        self.with_session(|session| {
            if !Self::find(session, key_id)?.is_empty() {
                return Err(CryptoError::KeyExists(key_id.to_owned()));
            }
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(key_id.as_bytes().to_vec()),
                Attribute::Id(key_id.as_bytes().to_vec()),
            ];
            session
                .generate_key(&Mechanism::AesKeyGen, &template)
                .map_err(failed(format!("generating key {key_id:?}")))?;
            Ok(())
        })
    }

    fn has_key(&self, key_id: &str) -> CryptoResult<bool> {
        self.with_session(|session| Ok(!Self::find(session, key_id)?.is_empty()))
    }

    fn list_keys(&self) -> CryptoResult<Vec<String>> {
        self.with_session(|session| {
            let objects = session
                .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])
                .map_err(failed("listing keys"))?;
            let mut ids = Vec::new();
            for object in objects {
                let attributes = session
                    .get_attributes(object, &[AttributeType::Label])
                    .map_err(failed("reading a key's label"))?;
                for attribute in attributes {
                    if let Attribute::Label(label) = attribute
                        && let Ok(id) = String::from_utf8(label)
                        // Other applications' keys on a shared token are not Valley's ids.
                        && check_key_id(&id).is_ok()
                    {
                        ids.push(id);
                    }
                }
            }
            ids.sort();
            ids.dedup();
            Ok(ids)
        })
    }

    fn wrap(&self, key_id: &str, key: &DataKey, context: &[u8]) -> CryptoResult<WrappedKey> {
        let aad = aad(context);
        self.with_session(|session| {
            let kek = Self::find_some(session, key_id)?[0];
            let mut iv: [u8; IV_LEN] = rand::random();
            let sealed = {
                let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into()).map_err(failed("AES-GCM parameters"))?;
                session
                    .encrypt(&Mechanism::AesGcm(params), kek, key.expose())
                    .map_err(failed(format!("wrapping under key {key_id:?}")))?
            };
            // `iv` as the token left it: a token that makes its own IVs writes it back.
            Ok(WrappedKey {
                alg: PKCS11_WRAP_ALGORITHM.to_owned(),
                wrapping_key: key_id.to_owned(),
                nonce: hex::encode(iv),
                sealed: hex::encode(sealed),
            })
        })
    }

    fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> CryptoResult<DataKey> {
        if wrapped.alg != PKCS11_WRAP_ALGORITHM {
            return Err(CryptoError::Malformed {
                what: "wrapped key",
                detail: format!("algorithm {:?}, not {PKCS11_WRAP_ALGORITHM:?}", wrapped.alg),
            });
        }
        let iv: [u8; IV_LEN] = hex::decode(&wrapped.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(CryptoError::Integrity { what: "a wrapped key" })?;
        let sealed = hex::decode(&wrapped.sealed).map_err(|_| CryptoError::Integrity { what: "a wrapped key" })?;
        let aad = aad(context);
        let key_id = &wrapped.wrapping_key;
        self.with_session(|session| {
            // Each object of that label is tried: with two (made by a race), one of them opens.
            // A tag that does not verify: CKR_ENCRYPTED_DATA_INVALID in the standard's words;
            // SoftHSM2 (and some HSMs) answer CKR_GENERAL_ERROR from C_Decrypt instead. Only
            // C_Decrypt's answers count: a failed C_DecryptInit (no such mechanism, an unusable
            // key) is reported as what it is.
            for kek in Self::find_some(session, key_id)? {
                let mut iv = iv;
                let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into()).map_err(failed("AES-GCM parameters"))?;
                match session.decrypt(&Mechanism::AesGcm(params), kek, &sealed) {
                    Ok(plain) => return DataKey::from_slice(&Zeroizing::new(plain)),
                    Err(Error::Pkcs11(
                        RvError::EncryptedDataInvalid
                        | RvError::EncryptedDataLenRange
                        | RvError::DataInvalid
                        | RvError::DataLenRange
                        | RvError::GeneralError,
                        Function::Decrypt,
                    )) => {}
                    Err(e) => return Err(failed(format!("unwrapping under key {key_id:?}"))(e)),
                }
            }
            Err(CryptoError::Integrity { what: "a wrapped key" })
        })
    }

    fn destroy_key(&self, key_id: &str) -> CryptoResult<()> {
        self.with_session(|session| {
            for object in Self::find_some(session, key_id)? {
                session
                    .destroy_object(object)
                    .map_err(failed(format!("destroying key {key_id:?}")))?;
            }
            Ok(())
        })
    }
}
