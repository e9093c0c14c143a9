//! The hub's key service for server-side encryption, from the command line.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};

use valley_crypto::Kms;

use crate::cli::{KeystoreArgs, KmsCommand, ServeArgs};

/// The environment variable that may hold the master key itself (64 hex digits).
pub const MASTER_KEY_ENV: &str = "VALLEY_KMS_MASTER_KEY";

/// The hub's encryption, when a master key is given: the local keystore under it.
pub fn open(args: &ServeArgs) -> anyhow::Result<Option<Arc<valley_s3::sse::Encryption>>> {
    let Some(keystore) = keystore(
        args.kms_master_key_file.as_deref(),
        args.kms_keystore.as_deref(),
        &args.data,
    )?
    else {
        tracing::info!("server-side encryption is off: no --kms-master-key-file or {MASTER_KEY_ENV}");
        return Ok(None);
    };
    Ok(Some(Arc::new(valley_s3::sse::Encryption::new(Arc::new(keystore)))))
}

/// The local keystore, when a master key is given (`None` otherwise).
fn keystore(
    master_file: Option<&Path>,
    keystore: Option<&Path>,
    data: &Path,
) -> anyhow::Result<Option<valley_crypto::LocalKeystore>> {
    let text = match (master_file, std::env::var(MASTER_KEY_ENV)) {
        (Some(file), _) => {
            refuse_inside(file, data)?;
            std::fs::read_to_string(file).with_context(|| format!("reading the master key {}", file.display()))?
        }
        (None, Ok(text)) => text,
        (None, Err(_)) => return Ok(None),
    };
    let master = valley_crypto::kms::master_key_from_text(&text)?;
    let path = keystore.map_or_else(|| data.join("kms").join("keystore.json"), Path::to_path_buf);
    let store = valley_crypto::LocalKeystore::open(&path, master)?;
    tracing::info!(keystore = %path.display(), "server-side encryption on (local keystore)");
    Ok(Some(store))
}

/// `valley kms …`: works on the keystore file directly.
pub fn run(command: KmsCommand) -> anyhow::Result<()> {
    let open = |args: &KeystoreArgs| -> anyhow::Result<valley_crypto::LocalKeystore> {
        keystore(
            args.kms_master_key_file.as_deref(),
            args.kms_keystore.as_deref(),
            &args.data,
        )?
        .ok_or_else(|| anyhow::anyhow!("no master key: give --kms-master-key-file (or set {MASTER_KEY_ENV})"))
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

/// A master key kept in the data dir would travel with every copy of it: refused.
fn refuse_inside(file: &Path, data: &Path) -> anyhow::Result<()> {
    let (Ok(file), Ok(data)) = (file.canonicalize(), data.canonicalize()) else {
        return Ok(());
    };
    if file.starts_with(&data) {
        bail!(
            "the master key {} is inside the data dir {}: keep it apart (whoever copies the data dir must not get the key with it)",
            file.display(),
            data.display()
        );
    }
    Ok(())
}
