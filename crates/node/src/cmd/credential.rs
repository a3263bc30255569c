//! `tds credential verify`.

use anyhow::{anyhow, Context};
use serde_json::{json, Value as Json};
use tds_core::Timestamp;
use tds_identity::{IdentityError, TrustStore};

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
    match &args.crl {
        Some(path) => {
            let bytes = files::read(path)?;
            store
                .add_revocation_list(&bytes, now)
                .with_context(|| path.display().to_string())?;
        }
        // Without --crl revocation is not checked, and the output says so
        // ("revocation_checked": false).
        None => {
            store.dangerous().accept_missing_revocation_lists();
        }
    }
    let bytes = files::read(&args.file)?;
    let verified = store.verify(&bytes, now).map_err(|e| match (e, &args.crl) {
        // A list was given but it is not the issuing authority's: refuse rather than
        // pass the credential unchecked.
        (IdentityError::RevocationListMissing { issuer }, Some(crl)) => anyhow!(
            "{}: the revocation list {} is not from the authority that issued this credential ({issuer}); pass the rollover statements that link the two keys with --rollover",
            args.file.display(),
            crl.display()
        ),
        (e, _) => anyhow::Error::new(e).context(args.file.display().to_string()),
    })?;
    let mut m = output::credential(verified.credential(), &verified.id());
    m.insert(
        "revocation_checked".into(),
        json!(verified.revocation_checked()),
    );
    m.insert("crl_sequence".into(), json!(verified.crl_sequence()));
    output::time(&mut m, "verified_at", verified.checked_at());
    output::print(&Json::Object(m))
}
