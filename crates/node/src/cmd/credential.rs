//! `tds credential verify`.

use anyhow::Context;
use serde_json::{json, Value as Json};
use tds_core::Timestamp;
use tds_identity::TrustStore;

use crate::cli::VerifyArgs;
use crate::{files, output};

pub(crate) fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    let now = args.at.unwrap_or_else(Timestamp::now);
    let mut store = TrustStore::new();
    for key in &args.authority_keys {
        store.add_authority(*key);
    }
    for path in &args.rollovers {
        let bytes = files::read(path)?;
        store
            .add_rollover(&bytes)
            .with_context(|| path.display().to_string())?;
    }
    if let Some(path) = &args.crl {
        let bytes = files::read(path)?;
        store
            .add_revocation_list(&bytes, now)
            .with_context(|| path.display().to_string())?;
    }
    let bytes = files::read(&args.file)?;
    let verified = store
        .verify(&bytes, now)
        .with_context(|| args.file.display().to_string())?;
    let mut m = output::credential(verified.credential(), &verified.id());
    m.insert(
        "revocation_checked".into(),
        json!(verified.revocation_checked()),
    );
    m.insert("crl_sequence".into(), json!(verified.crl_sequence()));
    output::time(&mut m, "verified_at", verified.checked_at());
    output::print(&Json::Object(m))
}
