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
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(
        file,
        "access_key = {}\nsecret_key = {}",
        creds.access_key, creds.secret_key
    )?;
    file.sync_all()?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
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
