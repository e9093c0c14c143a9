//! Root credentials: from the environment, else from `DIR/credentials` (owner-only), generated
//! and printed once on first start.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};

pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
}

const FILE_NAME: &str = "credentials";

pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Credentials> {
    let access = std::env::var("VALLEY_ACCESS_KEY").ok().filter(|v| !v.is_empty());
    let secret = std::env::var("VALLEY_SECRET_KEY").ok().filter(|v| !v.is_empty());
    match (access, secret) {
        (Some(access_key), Some(secret_key)) => return Ok(Credentials { access_key, secret_key }),
        (None, None) => {}
        _ => bail!("set both VALLEY_ACCESS_KEY and VALLEY_SECRET_KEY, or neither"),
    }
    let path = data_dir.join(FILE_NAME);
    if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        return parse(&text)
            .with_context(|| format!("{} is malformed; delete it to generate new credentials", path.display()));
    }
    let creds = Credentials {
        access_key: format!("VL{}", hex::encode_upper(rand::random::<[u8; 9]>())),
        secret_key: hex::encode(rand::random::<[u8; 20]>()),
    };
    write_owner_only(
        &path,
        &format!("access_key = {}\nsecret_key = {}\n", creds.access_key, creds.secret_key),
    )?;
    println!("Generated root credentials (stored in {}):", path.display());
    println!("  VALLEY_ACCESS_KEY={}", creds.access_key);
    println!("  VALLEY_SECRET_KEY={}", creds.secret_key);
    Ok(creds)
}

fn parse(text: &str) -> anyhow::Result<Credentials> {
    let mut access_key = None;
    let mut secret_key = None;
    for line in text.lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        match name.trim() {
            "access_key" => access_key = Some(value.trim().to_owned()),
            "secret_key" => secret_key = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    match (access_key, secret_key) {
        (Some(access_key), Some(secret_key)) if !access_key.is_empty() && !secret_key.is_empty() => {
            Ok(Credentials { access_key, secret_key })
        }
        _ => bail!("expected access_key and secret_key lines"),
    }
}

const SEAL_KEY_FILE: &str = "seal.key";

/// The secret a lone hub seals its tenants' secret keys with: `DIR/seal.key` (owner-only),
/// 32 random bytes made on first start. A hub in a network seals with the network secret
/// instead, so that every hub can open what any of them sealed.
pub fn local_seal_key(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join(SEAL_KEY_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let key = hex::decode(text.trim()).with_context(|| format!("{} is not hex", path.display()))?;
        if key.len() != 32 {
            bail!("{} must hold 32 bytes in hex", path.display());
        }
        return Ok(key);
    }
    let key: [u8; 32] = rand::random();
    write_owner_only(&path, &format!("{}\n", hex::encode(key)))?;
    Ok(key.to_vec())
}

/// Writes a new secret file readable by its owner only, durably (it must not exist yet).
fn write_owner_only(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}
