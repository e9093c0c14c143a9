//! The hub's key service for server-side encryption, from the command line.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::cli::ServeArgs;

/// The environment variable that may hold the master key itself (64 hex digits).
pub const MASTER_KEY_ENV: &str = "VALLEY_KMS_MASTER_KEY";

/// The hub's encryption, when a master key is given: the local keystore under it.
pub fn open(args: &ServeArgs) -> anyhow::Result<Option<Arc<valley_s3::sse::Encryption>>> {
    let text = match (&args.kms_master_key_file, std::env::var(MASTER_KEY_ENV)) {
        (Some(file), _) => {
            refuse_inside(file, &args.data)?;
            std::fs::read_to_string(file).with_context(|| format!("reading the master key {}", file.display()))?
        }
        (None, Ok(text)) => text,
        (None, Err(_)) => {
            tracing::info!("server-side encryption is off: no --kms-master-key-file or {MASTER_KEY_ENV}");
            return Ok(None);
        }
    };
    let master = valley_crypto::kms::master_key_from_text(&text)?;
    let path = args
        .kms_keystore
        .clone()
        .unwrap_or_else(|| args.data.join("kms").join("keystore.json"));
    let keystore = valley_crypto::LocalKeystore::open(&path, master)?;
    tracing::info!(keystore = %path.display(), "server-side encryption on (local keystore)");
    Ok(Some(Arc::new(valley_s3::sse::Encryption::new(Arc::new(keystore)))))
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
