//! The hub's key service for server-side encryption, from the command line.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use zeroize::Zeroizing;

use valley_crypto::Kms;

use crate::cli::{KeystoreArgs, KmsArgs, KmsCommand, ServeArgs};

/// The environment variable that may hold the master key itself (64 hex digits).
pub const MASTER_KEY_ENV: &str = "VALLEY_KMS_MASTER_KEY";
/// The environment variable that may hold the PKCS#11 token's user PIN itself.
pub const PKCS11_PIN_ENV: &str = "VALLEY_KMS_PKCS11_PIN";

/// The hub's encryption, when a key service is given.
pub fn open(args: &ServeArgs) -> anyhow::Result<Option<Arc<valley_s3::sse::Encryption>>> {
    let Some(kms) = service(&args.kms, &args.data)? else {
        tracing::info!(
            "server-side encryption is off: no --kms-master-key-file (or {MASTER_KEY_ENV}) and no --kms-pkcs11-module"
        );
        return Ok(None);
    };
    Ok(Some(Arc::new(valley_s3::sse::Encryption::new(kms))))
}

/// The key service `args` names (`None` when they name none): a PKCS#11 token when a module
/// is given, else the local keystore when a master key is. The one way `valley serve` and
/// `valley kms` open it.
pub fn service(args: &KmsArgs, data: &Path) -> anyhow::Result<Option<Arc<dyn Kms>>> {
    let master_env = std::env::var(MASTER_KEY_ENV).ok();
    let Some(module) = args.kms_pkcs11_module.as_deref() else {
        if args.kms_pkcs11_token.is_some() || args.kms_pkcs11_pin_file.is_some() {
            bail!("--kms-pkcs11-token and --kms-pkcs11-pin-file need --kms-pkcs11-module (the PKCS#11 library)");
        }
        return Ok(keystore(args, master_env, data)?.map(|k| Arc::new(k) as Arc<dyn Kms>));
    };
    // Keys in the keystore or in the token: a hub given both would use one and silently
    // ignore the other's keys.
    let master = match (&args.kms_master_key_file, &master_env) {
        (Some(file), _) => Some(format!("--kms-master-key-file {}", file.display())),
        (None, Some(_)) => Some(MASTER_KEY_ENV.to_owned()),
        (None, None) => None,
    };
    if let Some(master) = master {
        bail!(
            "both a master key ({master}) and a PKCS#11 module (--kms-pkcs11-module {}) are given: the keys are either in the local keystore or in the token, give one",
            module.display()
        );
    }
    if let Some(keystore) = &args.kms_keystore {
        bail!(
            "--kms-keystore {} is the local keystore: with --kms-pkcs11-module the keys are in the token",
            keystore.display()
        );
    }
    let token = args
        .kms_pkcs11_token
        .as_deref()
        .context("--kms-pkcs11-module needs --kms-pkcs11-token LABEL (the token holding the keys)")?;
    let pin = match (&args.kms_pkcs11_pin_file, std::env::var(PKCS11_PIN_ENV)) {
        (Some(file), _) => {
            refuse_inside("the PKCS#11 PIN file", file, data)?;
            Zeroizing::new(
                std::fs::read_to_string(file)
                    .with_context(|| format!("reading the PKCS#11 PIN file {}", file.display()))?,
            )
        }
        (None, Ok(pin)) => Zeroizing::new(pin),
        (None, Err(_)) => {
            bail!("no PIN for PKCS#11 token {token:?}: give --kms-pkcs11-pin-file FILE (or set {PKCS11_PIN_ENV})")
        }
    };
    let kms = valley_crypto::Pkcs11Kms::open(module, token, pin.trim_end_matches(['\n', '\r']))
        .with_context(|| format!("opening PKCS#11 token {token:?} of {}", module.display()))?;
    tracing::info!(module = %module.display(), token, "server-side encryption on (PKCS#11 token)");
    Ok(Some(Arc::new(kms)))
}

/// The local keystore, when a master key is given (`None` otherwise).
fn keystore(
    args: &KmsArgs,
    master_env: Option<String>,
    data: &Path,
) -> anyhow::Result<Option<valley_crypto::LocalKeystore>> {
    let text = Zeroizing::new(match (args.kms_master_key_file.as_deref(), master_env) {
        (Some(file), _) => {
            refuse_inside("the master key", file, data)?;
            std::fs::read_to_string(file).with_context(|| format!("reading the master key {}", file.display()))?
        }
        (None, Some(text)) => text,
        (None, None) => return Ok(None),
    });
    let master = valley_crypto::kms::master_key_from_text(&text)?;
    let path = args
        .kms_keystore
        .as_deref()
        .map_or_else(|| data.join("kms").join("keystore.json"), Path::to_path_buf);
    let store = valley_crypto::LocalKeystore::open(&path, master)?;
    tracing::info!(keystore = %path.display(), "server-side encryption on (local keystore)");
    Ok(Some(store))
}

/// `valley kms …`: works on the key service directly (the keystore file, or the token).
pub fn run(command: KmsCommand) -> anyhow::Result<()> {
    let open = |args: &KeystoreArgs| -> anyhow::Result<Arc<dyn Kms>> {
        service(&args.kms, &args.data)?.ok_or_else(|| {
            anyhow::anyhow!(
                "no master key and no PKCS#11 module: give --kms-master-key-file (or set {MASTER_KEY_ENV}), or --kms-pkcs11-module with --kms-pkcs11-token"
            )
        })
    };
    match command {
        KmsCommand::Create { keystore, tenant, name } => {
            if name.contains('/') {
                bail!("a key name has no '/': the tenant is given with --tenant");
            }
            open(&keystore)?.create_key(&format!("{tenant}/{name}"))?;
            println!("created key {name} of tenant {tenant}");
        }
        KmsCommand::List { keystore } => {
            for id in open(&keystore)?.list_keys()? {
                println!("{id}");
            }
        }
    }
    Ok(())
}

/// A secret (the master key, the token's PIN) kept in the data dir would travel with every
/// copy of it: refused.
fn refuse_inside(what: &str, file: &Path, data: &Path) -> anyhow::Result<()> {
    let (Ok(file), Ok(data)) = (file.canonicalize(), data.canonicalize()) else {
        return Ok(());
    };
    if file.starts_with(&data) {
        bail!(
            "{what} {} is inside the data dir {}: keep it apart (whoever copies the data dir must not get the key with it)",
            file.display(),
            data.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn serve(args: &[&str]) -> ServeArgs {
        let argv = ["valley", "serve"].iter().chain(args).copied();
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => *args,
            other => panic!("{other:?}"),
        }
    }

    fn refusal(args: &ServeArgs) -> String {
        format!("{:#}", service(&args.kms, &args.data).unwrap_err())
    }

    #[test]
    fn a_master_key_and_a_module_at_once_are_refused_naming_both() {
        let args = serve(&[
            "--kms-master-key-file",
            "/keys/master.key",
            "--kms-pkcs11-module",
            "/usr/lib/softhsm/libsofthsm2.so",
            "--kms-pkcs11-token",
            "valley",
        ]);
        let err = refusal(&args);
        assert!(
            err.contains("--kms-master-key-file /keys/master.key")
                && err.contains("--kms-pkcs11-module /usr/lib/softhsm/libsofthsm2.so"),
            "{err}"
        );
    }

    #[test]
    fn pkcs11_flags_are_checked_before_the_module_is_loaded() {
        let err = refusal(&serve(&["--kms-pkcs11-token", "valley"]));
        assert!(err.contains("need --kms-pkcs11-module"), "{err}");
        let err = refusal(&serve(&["--kms-pkcs11-module", "/nonexistent/module.so"]));
        assert!(err.contains("needs --kms-pkcs11-token"), "{err}");
        let err = refusal(&serve(&[
            "--kms-pkcs11-module",
            "/nonexistent/module.so",
            "--kms-pkcs11-token",
            "valley",
            "--kms-keystore",
            "/keys/keystore.json",
        ]));
        assert!(err.contains("--kms-keystore /keys/keystore.json"), "{err}");
    }

    #[test]
    fn a_pin_file_inside_the_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let pin = data.join("pin");
        std::fs::write(&pin, "5678\n").unwrap();
        let with_pin = |pin: &std::path::Path| {
            serve(&[
                "--data",
                data.to_str().unwrap(),
                "--kms-pkcs11-module",
                "/nonexistent/module.so",
                "--kms-pkcs11-token",
                "valley",
                "--kms-pkcs11-pin-file",
                pin.to_str().unwrap(),
            ])
        };
        let err = refusal(&with_pin(&pin));
        assert!(
            err.contains("the PKCS#11 PIN file") && err.contains("inside the data dir"),
            "{err}"
        );
        // Outside it, the PIN is read and the module is what fails (it does not exist).
        let outside = dir.path().join("pin");
        std::fs::write(&outside, "5678\n").unwrap();
        let err = refusal(&with_pin(&outside));
        assert!(err.contains("loading module /nonexistent/module.so"), "{err}");
    }
}
