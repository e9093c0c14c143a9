//! `Pkcs11Kms` against a real SoftHSM2 token (no mock): install it with `apt-get install
//! softhsm2`, or name another module with `VALLEY_PKCS11_MODULE`. A missing module fails these
//! tests; they never skip.
//!
//! SoftHSM2 finds its tokens through `SOFTHSM2_CONF`, read when the module is initialized. The
//! workspace forbids unsafe code and setting a variable of the running process is unsafe, so
//! each test runs its body in a child process of this test binary started with `SOFTHSM2_CONF`
//! naming a fresh token: the parent makes the token (with `softhsm2-util`) and fails if the
//! child fails; the child loads the module. A test in several phases runs one child per phase on
//! the same token: two processes, as two hubs sharing an HSM are.

use std::path::{Path, PathBuf};
use std::process::Command;

use cryptoki::context::Pkcs11;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use valley_crypto::envelope::{DataKey, WrappedKey};
use valley_crypto::kms::Kms;
use valley_crypto::{CryptoError, Pkcs11Kms};

const MODULE_ENV: &str = "VALLEY_PKCS11_MODULE";
const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Set in a child only: the test's scratch dir (which also holds the token).
const CHILD_DIR_ENV: &str = "VALLEY_PKCS11_TEST_DIR";
const PHASE_ENV: &str = "VALLEY_PKCS11_TEST_PHASE";
const LABEL: &str = "valley-test";
const SO_PIN: &str = "1234";
const PIN: &str = "5678";

fn module() -> PathBuf {
    std::env::var_os(MODULE_ENV).map_or_else(|| PathBuf::from(DEFAULT_MODULE), PathBuf::from)
}

/// Where a child runs: its scratch dir and phase.
struct Child {
    dir: PathBuf,
    phase: String,
}

/// In the test process: makes a fresh SoftHSM2 token, runs test `name` in a child process once
/// per phase with `SOFTHSM2_CONF` naming it, fails if a child fails, and returns `None`. In a
/// child: returns where it runs.
fn in_token(name: &str, phases: &[&str]) -> Option<Child> {
    if let Some(dir) = std::env::var_os(CHILD_DIR_ENV) {
        return Some(Child {
            dir: dir.into(),
            phase: std::env::var(PHASE_ENV).unwrap_or_default(),
        });
    }
    let module = module();
    assert!(
        module.exists(),
        "the PKCS#11 module {} is missing: install SoftHSM2 (apt-get install softhsm2), or set {MODULE_ENV} to a module",
        module.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tmp.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = tmp.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let init = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            LABEL,
            "--so-pin",
            SO_PIN,
            "--pin",
            PIN,
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap_or_else(|e| panic!("running softhsm2-util: {e}: install SoftHSM2 (apt-get install softhsm2)"));
    assert!(
        init.status.success(),
        "softhsm2-util --init-token failed: {}{}",
        String::from_utf8_lossy(&init.stdout),
        String::from_utf8_lossy(&init.stderr)
    );
    for phase in phases {
        let run = Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env("SOFTHSM2_CONF", &conf)
            .env(CHILD_DIR_ENV, tmp.path())
            .env(PHASE_ENV, phase)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&run.stdout);
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(
            run.status.success(),
            "{name} (phase {phase:?}) failed in its child process:\n{out}\n{err}"
        );
        // libtest succeeds when its filter matches nothing: make sure the test did run.
        assert!(
            out.contains("1 passed"),
            "{name} (phase {phase:?}) did not run in its child process:\n{out}\n{err}"
        );
    }
    None
}

fn open() -> Pkcs11Kms {
    Pkcs11Kms::open(&module(), LABEL, PIN).unwrap()
}

fn altered(hex_text: &str, at: usize) -> String {
    let mut bytes = hex::decode(hex_text).unwrap();
    bytes[at] ^= 1;
    hex::encode(bytes)
}

#[test]
fn keys_are_created_listed_and_never_replaced() {
    let Some(_child) = in_token("keys_are_created_listed_and_never_replaced", &[""]) else {
        return;
    };
    let kms = open();
    assert!(kms.list_keys().unwrap().is_empty());
    kms.create_key("acme/testkey-2").unwrap();
    kms.create_key("acme/testkey-1").unwrap();
    kms.create_key("testkey-1").unwrap();
    assert!(kms.has_key("acme/testkey-1").unwrap());
    assert!(!kms.has_key("acme/testkey-3").unwrap());
    assert_eq!(
        kms.list_keys().unwrap(),
        ["acme/testkey-1", "acme/testkey-2", "testkey-1"],
        "sorted"
    );
    let wrapped = kms.wrap("acme/testkey-1", &DataKey::generate(), b"c").unwrap();
    assert!(matches!(
        kms.create_key("acme/testkey-1"),
        Err(CryptoError::KeyExists(id)) if id == "acme/testkey-1"
    ));
    assert!(
        kms.unwrap(&wrapped, b"c").is_ok(),
        "the refused create replaced nothing"
    );
    assert!(matches!(kms.create_key("a b"), Err(CryptoError::InvalidKeyId(_))));
    assert!(matches!(kms.create_key(""), Err(CryptoError::InvalidKeyId(_))));
    assert_eq!(kms.list_keys().unwrap().len(), 3);
    assert!(format!("{kms:?}").contains(LABEL));
}

#[test]
fn a_wrapped_key_opens_only_under_its_key_and_context() {
    let Some(_child) = in_token("a_wrapped_key_opens_only_under_its_key_and_context", &[""]) else {
        return;
    };
    let kms = open();
    kms.create_key("t/one").unwrap();
    kms.create_key("t/two").unwrap();
    let bucket_key = DataKey::generate();
    let wrapped = kms.wrap("t/one", &bucket_key, b"bucket photos").unwrap();
    assert_eq!(wrapped.alg, "pkcs11-aes-256-gcm");
    assert_eq!(wrapped.wrapping_key, "t/one");
    assert_eq!(wrapped.nonce.len(), 24, "a 12-byte IV");
    assert_eq!(wrapped.sealed.len(), 2 * (32 + 16), "the key and a 128-bit tag");
    assert!(!wrapped.sealed.contains(&hex::encode(&bucket_key.expose()[..8])));
    assert_eq!(
        kms.unwrap(&wrapped, b"bucket photos").unwrap().expose(),
        bucket_key.expose()
    );
    let again = kms.wrap("t/one", &bucket_key, b"bucket photos").unwrap();
    assert_ne!(again.nonce, wrapped.nonce, "a fresh IV per wrap");

    let refused = |w: &WrappedKey, context: &[u8], why: &str| match kms.unwrap(w, context) {
        Err(CryptoError::Integrity { .. }) => {}
        other => panic!("{why}: expected an integrity failure, got {other:?}"),
    };
    refused(&wrapped, b"bucket other", "another context");
    refused(&wrapped, b"", "no context");
    for at in [0, 31, 32, 47] {
        let mut w = wrapped.clone();
        w.sealed = altered(&w.sealed, at);
        refused(&w, b"bucket photos", &format!("sealed byte {at} altered"));
    }
    let mut w = wrapped.clone();
    w.nonce = altered(&w.nonce, 5);
    refused(&w, b"bucket photos", "IV altered");
    let mut w = wrapped.clone();
    w.sealed.truncate(w.sealed.len() - 2);
    refused(&w, b"bucket photos", "truncated");
    let mut w = wrapped.clone();
    w.sealed = "zz".into();
    refused(&w, b"bucket photos", "not hex");
    let mut w = wrapped.clone();
    w.wrapping_key = "t/two".into();
    refused(&w, b"bucket photos", "another key");

    let mut w = wrapped.clone();
    w.alg = "aes-256-gcm".into();
    assert!(matches!(
        kms.unwrap(&w, b"bucket photos"),
        Err(CryptoError::Malformed { .. })
    ));
    let mut w = wrapped.clone();
    w.wrapping_key = "t/three".into();
    assert!(matches!(
        kms.unwrap(&w, b"bucket photos"),
        Err(CryptoError::NoSuchKey(id)) if id == "t/three"
    ));
    assert!(matches!(
        kms.wrap("t/three", &bucket_key, b"c"),
        Err(CryptoError::NoSuchKey(_))
    ));
}

#[test]
fn a_destroyed_key_opens_nothing_ever_again() {
    let Some(_child) = in_token("a_destroyed_key_opens_nothing_ever_again", &[""]) else {
        return;
    };
    let kms = open();
    kms.create_key("t/k").unwrap();
    kms.create_key("t/other").unwrap();
    let wrapped = kms.wrap("t/k", &DataKey::generate(), b"c").unwrap();
    kms.destroy_key("t/k").unwrap();
    assert!(matches!(kms.unwrap(&wrapped, b"c"), Err(CryptoError::NoSuchKey(id)) if id == "t/k"));
    assert!(!kms.has_key("t/k").unwrap());
    assert_eq!(kms.list_keys().unwrap(), ["t/other"]);
    assert!(matches!(kms.destroy_key("t/k"), Err(CryptoError::NoSuchKey(_))));
    // Re-creating the id makes a new key, which does not open the old wrapping.
    kms.create_key("t/k").unwrap();
    assert!(matches!(kms.unwrap(&wrapped, b"c"), Err(CryptoError::Integrity { .. })));
    // Still shredded for a service opened afresh.
    kms.destroy_key("t/k").unwrap();
    assert!(matches!(open().unwrap(&wrapped, b"c"), Err(CryptoError::NoSuchKey(_))));
}

#[test]
fn a_second_hub_on_the_same_token_sees_the_first_ones_keys() {
    let Some(child) = in_token(
        "a_second_hub_on_the_same_token_sees_the_first_ones_keys",
        &["first", "second"],
    ) else {
        return;
    };
    let wrapped_file = child.dir.join("wrapped.json");
    let key_file = child.dir.join("key.hex");
    match child.phase.as_str() {
        "first" => {
            let kms = open();
            kms.create_key("acme/shared").unwrap();
            let key = DataKey::generate();
            let wrapped = kms.wrap("acme/shared", &key, b"bucket b").unwrap();
            std::fs::write(&wrapped_file, serde_json::to_vec(&wrapped).unwrap()).unwrap();
            std::fs::write(&key_file, hex::encode(key.expose())).unwrap();
        }
        "second" => {
            // Another process: sees the key the first made and opens what it wrapped.
            let a = open();
            assert_eq!(a.list_keys().unwrap(), ["acme/shared"]);
            let wrapped: WrappedKey = serde_json::from_slice(&std::fs::read(&wrapped_file).unwrap()).unwrap();
            let key = a.unwrap(&wrapped, b"bucket b").unwrap();
            assert_eq!(hex::encode(key.expose()), std::fs::read_to_string(&key_file).unwrap());
            // A second service in the same process shares the initialized module and login.
            let b = open();
            b.create_key("acme/made-by-b").unwrap();
            assert!(a.has_key("acme/made-by-b").unwrap());
            let w = a.wrap("acme/made-by-b", &key, b"x").unwrap();
            assert_eq!(b.unwrap(&w, b"x").unwrap().expose(), key.expose());
            drop(b);
            assert!(a.has_key("acme/shared").unwrap(), "a still works once b is gone");
            // A third process makes a key while this one is open: seen without reopening.
            let late = Command::new(std::env::current_exe().unwrap())
                .args([
                    "a_second_hub_on_the_same_token_sees_the_first_ones_keys",
                    "--exact",
                    "--nocapture",
                ])
                .env(PHASE_ENV, "late")
                .output()
                .unwrap();
            assert!(
                late.status.success() && String::from_utf8_lossy(&late.stdout).contains("1 passed"),
                "the late process failed: {}{}",
                String::from_utf8_lossy(&late.stdout),
                String::from_utf8_lossy(&late.stderr)
            );
            assert!(
                a.has_key("acme/late").unwrap(),
                "made by a process started after this one opened"
            );
            let wrapped: WrappedKey =
                serde_json::from_slice(&std::fs::read(child.dir.join("late.json")).unwrap()).unwrap();
            assert_eq!(a.unwrap(&wrapped, b"late").unwrap().expose(), key.expose());
        }
        "late" => {
            let kms = open();
            kms.create_key("acme/late").unwrap();
            let key = hex::decode(std::fs::read_to_string(&key_file).unwrap()).unwrap();
            let wrapped = kms
                .wrap("acme/late", &DataKey::from_slice(&key).unwrap(), b"late")
                .unwrap();
            std::fs::write(child.dir.join("late.json"), serde_json::to_vec(&wrapped).unwrap()).unwrap();
        }
        phase => panic!("unknown phase {phase:?}"),
    }
}

#[test]
fn keys_are_generated_in_the_token_and_never_leave_it() {
    let Some(_child) = in_token("keys_are_generated_in_the_token_and_never_leave_it", &[""]) else {
        return;
    };
    let kms = open();
    kms.create_key("t/k").unwrap();
    // Looking at the object directly, as any application holding the PIN could.
    let pkcs11 = Pkcs11::new(module()).unwrap();
    let slot = pkcs11
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).unwrap().label().trim_end() == LABEL)
        .unwrap();
    let session = pkcs11.open_ro_session(slot).unwrap();
    match session.login(UserType::User, Some(&AuthPin::new(PIN.into()))) {
        Ok(()) | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("login: {e}"),
    }
    let objects = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(b"t/k".to_vec()),
        ])
        .unwrap();
    assert_eq!(objects.len(), 1);
    let attributes = session
        .get_attributes(
            objects[0],
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Token,
                AttributeType::Private,
                AttributeType::ValueLen,
                AttributeType::Id,
                AttributeType::Encrypt,
                AttributeType::Decrypt,
                AttributeType::Value,
            ],
        )
        .unwrap();
    let mut seen = 0;
    for attribute in &attributes {
        match attribute {
            Attribute::Sensitive(v) | Attribute::Token(v) | Attribute::Private(v) => assert!(*v),
            Attribute::Encrypt(v) | Attribute::Decrypt(v) => assert!(*v),
            Attribute::Extractable(v) => assert!(!*v),
            Attribute::ValueLen(len) => assert_eq!(u64::from(*len), 32),
            Attribute::Id(id) => assert_eq!(id, b"t/k"),
            Attribute::Value(v) => panic!("the token gave out the key's value ({} bytes)", v.len()),
            other => panic!("unexpected {other:?}"),
        }
        seen += 1;
    }
    assert_eq!(seen, 8, "every attribute but the value: {attributes:?}");
}

#[test]
fn a_wrong_pin_an_unknown_token_and_a_missing_module_are_refused_by_name() {
    let Some(_child) = in_token(
        "a_wrong_pin_an_unknown_token_and_a_missing_module_are_refused_by_name",
        &[""],
    ) else {
        return;
    };
    let err = Pkcs11Kms::open(&module(), LABEL, "0000").unwrap_err();
    assert!(matches!(err, CryptoError::Pkcs11 { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("PIN is wrong") && text.contains(LABEL), "{text}");

    let err = Pkcs11Kms::open(&module(), "no-such-token", PIN)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"no-such-token\"") && err.contains(&format!("\"{LABEL}\"")),
        "names the label asked for and the labels found: {err}"
    );

    let missing = Path::new("/nonexistent/libpkcs11.so");
    let err = Pkcs11Kms::open(missing, LABEL, PIN).unwrap_err().to_string();
    assert!(err.contains("loading module /nonexistent/libpkcs11.so"), "{err}");

    // The right PIN still opens it (a wrong one did not lock the token).
    open().create_key("t/k").unwrap();
}
