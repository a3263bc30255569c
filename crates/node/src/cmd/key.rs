//! `tds key new|show|encrypt|decrypt`.

use std::path::Path;

use serde_json::Value as Json;
use tds_core::SigningKey;

use crate::{files, output};

pub(crate) fn new(out: &Path, force: bool) -> anyhow::Result<()> {
    let key = SigningKey::generate()?;
    if force {
        let pem = key.to_pkcs8_pem()?;
        files::write_key(out, pem.as_bytes())?;
    } else {
        key.write_file(out)?;
    }
    output::print(&Json::Object(output::key(&key.public_key())))
}

pub(crate) fn show(file: &Path) -> anyhow::Result<()> {
    let key = files::read_key(file)?;
    output::print(&Json::Object(output::key(&key.public_key())))
}

/// `tds key encrypt FILE`: in place, atomically; the passphrase from the environment.
pub(crate) fn encrypt(file: &Path) -> anyhow::Result<()> {
    let pass = files::key_passphrase()?.ok_or_else(|| {
        anyhow::anyhow!(
            "set TDS_KEY_PASSPHRASE_FILE (a file holding the passphrase) or TDS_KEY_PASSPHRASE"
        )
    })?;
    let key = if SigningKey::is_encrypted_file(file)? {
        let old = std::env::var_os("TDS_OLD_KEY_PASSPHRASE_FILE")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: already encrypted; to change its passphrase set TDS_OLD_KEY_PASSPHRASE_FILE to a file holding the current one",
                    file.display()
                )
            })?;
        let old = tds_core::key::Passphrase::from_file(std::path::Path::new(&old))?;
        SigningKey::read_file_with(file, Some(&old))?
    } else {
        SigningKey::read_file(file)?
    };
    key.write_encrypted_file(file, &pass, true)?;
    let mut m = output::key(&key.public_key());
    m.insert("encrypted".into(), Json::Bool(true));
    m.insert("file".into(), Json::String(file.display().to_string()));
    output::print(&Json::Object(m))
}

/// `tds key decrypt FILE`: back to plain PKCS#8, in place.
pub(crate) fn decrypt(file: &Path) -> anyhow::Result<()> {
    let key = files::read_key(file)?;
    let pem = key.to_pkcs8_pem()?;
    tds_core::fs::write_atomic(file, pem.as_bytes(), 0o600, true)?;
    let mut m = output::key(&key.public_key());
    m.insert("encrypted".into(), Json::Bool(false));
    m.insert("file".into(), Json::String(file.display().to_string()));
    output::print(&Json::Object(m))
}
