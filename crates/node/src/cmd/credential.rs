//! `tds credential verify`.

use serde_json::{json, Value as Json};
use tds_core::Timestamp;

use crate::cli::VerifyArgs;
use crate::{output, trust};

pub(crate) fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    let now = args.at.unwrap_or_else(Timestamp::now);
    // Without --crl revocation is not checked, and the output says so
    // ("revocation_checked": false).
    let store = trust::store(
        &args.authority_keys,
        &args.rollovers,
        args.crl.as_deref(),
        now,
    )?;
    let verified = trust::credential(&store, &args.file, args.crl.as_deref(), now)?;
    let mut m = output::credential(verified.credential(), &verified.id());
    m.insert(
        "revocation_checked".into(),
        json!(verified.revocation_checked()),
    );
    m.insert("crl_sequence".into(), json!(verified.crl_sequence()));
    output::time(&mut m, "verified_at", verified.checked_at());
    output::print(&Json::Object(m))
}
