//! Trust stores built from the command line: `--authority-key` (repeatable),
//! `--rollover` statements and an optional `--crl`, and credentials checked against them.

use std::path::Path;

use anyhow::{anyhow, Context};
use tds_core::{PublicKey, Timestamp};
use tds_identity::{IdentityError, TrustStore, VerifiedCredential};

use crate::files;

/// A trust store of `authority_keys`, following `rollovers` (oldest first), holding the
/// revocation list `crl` checked at `now`. Without `crl` it lets credentials pass
/// unchecked for revocation (a dangerous option; verbs say `"revocation_checked": false`).
pub(crate) fn store(
    authority_keys: &[PublicKey],
    rollovers: &[impl AsRef<Path>],
    crl: Option<&Path>,
    now: Timestamp,
) -> anyhow::Result<TrustStore> {
    let mut store = TrustStore::new();
    for key in authority_keys {
        store.add_authority(*key);
    }
    for path in rollovers {
        let path = path.as_ref();
        store
            .add_rollover(&files::read(path)?)
            .with_context(|| path.display().to_string())?;
    }
    match crl {
        Some(path) => {
            store
                .add_revocation_list(&files::read(path)?, now)
                .with_context(|| path.display().to_string())?;
        }
        None => {
            store.dangerous().accept_missing_revocation_lists();
        }
    }
    Ok(store)
}

/// Verifies the credential in file `credential` at `now`. A `crl` that is not the issuing
/// authority's is an error naming both files (red-team finding 3), never a pass.
pub(crate) fn credential(
    store: &TrustStore,
    credential: &Path,
    crl: Option<&Path>,
    now: Timestamp,
) -> anyhow::Result<VerifiedCredential> {
    store
        .verify(&files::read(credential)?, now)
        .map_err(|e| match (e, crl) {
            (IdentityError::RevocationListMissing { issuer }, Some(crl)) => anyhow!(
                "{}: the revocation list {} is not from the authority that issued this credential ({issuer}); pass the rollover statements that link the two keys with --rollover",
                credential.display(),
                crl.display()
            ),
            (e, _) => anyhow::Error::new(e).context(credential.display().to_string()),
        })
}
