//! Authority → credential → trust store, in memory.
//!
//! A data-space authority admits a grid operator, a verifier checks the credential with
//! only the authority's public key, the authority revokes it and the verifier (given the
//! new revocation list) refuses it. Then the authority rolls its key over and the verifier
//! follows.
//!
//! Run with `cargo run -p tds-examples --example issue_credential`. The `tds-tests`
//! package runs [`run`] as a test.

use anyhow::{ensure, Result};
use tds_core::time::DAY_MS;
use tds_core::{SigningKey, Timestamp};
use tds_identity::{Admission, Authority, IdentityError, Role, Sector, TrustStore};

fn main() -> Result<()> {
    run(Timestamp::now())
}

/// The whole flow, as of `now`.
pub fn run(now: Timestamp) -> Result<()> {
    // 1. The authority: a signing key and a name. A node keeps `authority.state()` in a
    //    file beside the key and saves it after every change.
    let mut authority = Authority::new("Shanxi Energy Data Space", SigningKey::generate()?)?;
    println!("authority {} ({})", authority.name(), authority.id());

    // 2. A member makes its own key and sends the public half to the authority, which
    //    admits it for a year.
    let member = SigningKey::generate()?;
    let issued = authority.admit(
        &Admission {
            subject_key: member.public_key(),
            name: "Taiyuan Grid Co.".into(),
            sectors: vec![Sector::POWER],
            roles: vec![Role::Provider, Role::Consumer],
            jurisdiction: "CN-SX".parse()?,
            not_before: now,
            not_after: now.saturating_add_millis(365 * DAY_MS),
        },
        now,
    )?;
    let credential_bytes = issued.envelope().to_vec();
    println!(
        "issued credential serial {} ({} bytes) to {}",
        issued.serial(),
        credential_bytes.len(),
        issued.subject()
    );

    // 3. A verifier elsewhere trusts only the authority's public key.
    //    With no revocation list held yet it must say so explicitly (a dangerous option:
    //    a revoked credential would pass).
    let mut store = TrustStore::new();
    store.add_authority(authority.public_key());
    store.dangerous().accept_missing_revocation_lists();
    let verified = store.verify(&credential_bytes, now)?;
    ensure!(verified.subject_key() == &member.public_key());
    ensure!(verified.has_role(Role::Provider) && verified.in_sector(&Sector::POWER));
    ensure!(!verified.revocation_checked(), "no list held yet");
    let roles: Vec<&str> = verified.roles().iter().map(|r| r.as_str()).collect();
    println!(
        "verified: {} is a {} in {} ({})",
        verified.name(),
        roles.join(" and "),
        verified
            .sectors()
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        verified.jurisdiction()
    );

    // 4. A signed revocation list, due again in a week. With it the verifier checks
    //    revocation too.
    let crl = authority.revocation_list(now, now.saturating_add_millis(7 * DAY_MS))?;
    store.add_revocation_list(crl.envelope(), now)?;
    ensure!(store.verify(&credential_bytes, now)?.revocation_checked());

    // 5. The authority revokes the credential and publishes a new list.
    authority.revoke(issued.serial())?;
    let crl = authority.revocation_list(now, now.saturating_add_millis(7 * DAY_MS))?;
    store.add_revocation_list(crl.envelope(), now)?;
    match store.verify(&credential_bytes, now) {
        Err(IdentityError::Revoked { serial, .. }) => println!("serial {serial} is revoked"),
        other => anyhow::bail!("expected a revoked credential, got {other:?}"),
    }

    // 6. Authority key rollover: the old key endorses the new one; the verifier follows
    //    the statement and accepts credentials signed by the new key.
    let (statement, _old_key) = authority.rollover(SigningKey::generate()?, now)?;
    store.add_rollover(statement.envelope())?;
    let again = authority.admit(
        &Admission {
            subject_key: member.public_key(),
            name: "Taiyuan Grid Co.".into(),
            sectors: vec![Sector::POWER],
            roles: vec![Role::Consumer],
            jurisdiction: "CN-SX".parse()?,
            not_before: now,
            not_after: now.saturating_add_millis(30 * DAY_MS),
        },
        now,
    )?;
    let crl = authority.revocation_list(now, now.saturating_add_millis(7 * DAY_MS))?;
    store.add_revocation_list(crl.envelope(), now)?;
    let verified = store.verify(again.envelope(), now)?;
    ensure!(verified.serial() == 2 && verified.issuer() == authority.id());
    println!(
        "after rollover: serial {} verifies under the new key {}",
        verified.serial(),
        authority.id()
    );
    Ok(())
}
