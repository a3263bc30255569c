//! `tds key new` and `tds key show`.

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
