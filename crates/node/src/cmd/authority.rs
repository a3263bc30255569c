//! `tds authority ...`: the data-space authority kept in a home directory. While `tds
//! authority serve` runs on the home, `show`, `admit`, `revoke` and `crl` go through its
//! admin API (the service holds the home) and print the same JSON.

use std::path::Path;

use anyhow::anyhow;
use serde_json::{json, Value as Json};
use tds_core::time::DAY_MS;
use tds_core::Timestamp;
use tds_identity::{Admission, Authority, AuthorityStore};

use crate::cli::{AdmitArgs, LicenceArgs};
use crate::{files, home, output};

fn summary(authority: &Authority) -> anyhow::Result<serde_json::Map<String, Json>> {
    summary_of(&authority.public_key(), authority.state())
}

/// What `tds authority show` prints, from the key and state.
pub(crate) fn summary_of(
    key: &tds_core::PublicKey,
    state: &tds_identity::AuthorityState,
) -> anyhow::Result<serde_json::Map<String, Json>> {
    let mut m = output::key(key);
    // The verifier key an outside checker of this authority's witness cosignatures needs
    // (C2SP signed-note form, type 0x04).
    m.insert(
        "witness_vkey".into(),
        json!(tds_provenance::witness::witness_key(key)?.to_string()),
    );
    m.insert("name".into(), json!(state.name()));
    m.insert("next_serial".into(), json!(state.next_serial()));
    m.insert(
        "revoked_serials".into(),
        json!(state.revoked().collect::<Vec<_>>()),
    );
    m.insert("crl_sequence".into(), json!(state.crl_sequence()));
    m.insert(
        "previous_keys".into(),
        Json::Array(
            state
                .previous_keys()
                .iter()
                .map(|k| Json::Object(output::key(k)))
                .collect(),
        ),
    );
    Ok(m)
}

pub(crate) fn init(dir: &Path, name: &str) -> anyhow::Result<()> {
    // The name is checked before anything is created.
    tds_identity::check_name(name).map_err(|e| anyhow!("--name: {e}"))?;
    let home = home::create(dir)?;
    let authority = home.create(name)?;
    let mut m = summary(&authority)?;
    m.insert("home".into(), json!(dir.display().to_string()));
    output::print(&Json::Object(m))
}

/// The running authority's answer to `op` (`None`: it does not run on `dir`).
fn through_service(
    dir: &Path,
    method: &str,
    op: &str,
    body: Option<&Json>,
) -> anyhow::Result<Option<Json>> {
    crate::node::block_on(crate::node::admin::call(
        dir,
        method,
        &format!("/v1/authority/{op}"),
        body,
    ))
}

/// Bytes the running authority answered with, in hex under `key`.
fn hex_field(v: &Json, key: &str) -> anyhow::Result<Vec<u8>> {
    v.get(key)
        .and_then(Json::as_str)
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| anyhow!("the authority's answer holds no {key}"))
}

pub(crate) fn show(dir: &Path) -> anyhow::Result<()> {
    if let Some(v) = through_service(dir, "GET", "show", None)? {
        return output::print(&v);
    }
    let authority = home::open(dir)?.load()?;
    output::print(&Json::Object(summary(&authority)?))
}

fn days_after(start: Timestamp, days: u64) -> anyhow::Result<Timestamp> {
    days.checked_mul(DAY_MS)
        .and_then(|ms| start.checked_add_millis(ms))
        .ok_or_else(|| anyhow!("--days {days}: the end of validity is out of range"))
}

pub(crate) fn admit(args: &AdmitArgs) -> anyhow::Result<()> {
    // Before anything is numbered: a refused output must not use up a serial.
    files::check_out(&args.out, files::Replace::Output)?;
    let now = Timestamp::now();
    let not_before = args.not_before.unwrap_or(now);
    let admission = Admission {
        subject_key: args.subject_key,
        name: args.name.clone(),
        sectors: args.sectors.clone(),
        roles: args.roles.clone(),
        jurisdiction: args.jurisdiction.clone(),
        not_before,
        not_after: days_after(not_before, args.days)?,
    };
    let body = admission_json(&admission);
    let envelope = match through_service(&args.home.home, "POST", "admit", Some(&body))? {
        Some(v) => hex_field(&v, "credential")?,
        None => {
            let home = home::open(&args.home.home)?;
            let mut authority = home.load()?;
            let issued = authority.admit(&admission, now)?;
            // Save the state first: the serial must never be issued twice.
            home.save(authority.state())?;
            issued.into_envelope()
        }
    };
    let issued = tds_core::cose::open::<tds_identity::Credential>(&envelope)?;
    files::write(&args.out, &envelope, files::PUBLIC_MODE)?;
    let id = issued.value().id()?;
    let mut m = output::credential(issued.value(), &id);
    m.insert("file".into(), json!(args.out.display().to_string()));
    output::print(&Json::Object(m))
}

/// An admission as the admin API's `admit` takes it.
fn admission_json(a: &Admission) -> Json {
    json!({
        "subject_key": a.subject_key.to_hex(),
        "name": a.name,
        "sectors": a.sectors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "roles": a.roles.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "jurisdiction": a.jurisdiction.to_string(),
        "not_before_ms": a.not_before.as_millis(),
        "not_after_ms": a.not_after.as_millis(),
    })
}

/// The admission in an `admit` request body.
pub(crate) fn admission_from(v: &Json) -> anyhow::Result<Admission> {
    let text = |k: &str| {
        v.get(k)
            .and_then(Json::as_str)
            .ok_or_else(|| anyhow!("{k}: missing"))
    };
    let list = |k: &str| -> anyhow::Result<Vec<&str>> {
        v.get(k)
            .and_then(Json::as_array)
            .ok_or_else(|| anyhow!("{k}: missing"))?
            .iter()
            .map(|s| s.as_str().ok_or_else(|| anyhow!("{k}: not text")))
            .collect()
    };
    let ms = |k: &str| {
        v.get(k)
            .and_then(Json::as_u64)
            .map(Timestamp::from_millis)
            .ok_or_else(|| anyhow!("{k}: missing"))
    };
    Ok(Admission {
        subject_key: tds_core::PublicKey::from_hex(text("subject_key")?)?,
        name: text("name")?.to_owned(),
        sectors: list("sectors")?
            .into_iter()
            .map(str::parse)
            .collect::<Result<_, _>>()?,
        roles: list("roles")?
            .into_iter()
            .map(str::parse)
            .collect::<Result<_, _>>()?,
        jurisdiction: text("jurisdiction")?.parse()?,
        not_before: ms("not_before_ms")?,
        not_after: ms("not_after_ms")?,
    })
}

pub(crate) fn revoke(dir: &Path, serial: u64) -> anyhow::Result<()> {
    if let Some(v) = through_service(dir, "POST", "revoke", Some(&json!({ "serial": serial })))? {
        return output::print(&v);
    }
    let home = home::open(dir)?;
    let mut authority = home.load()?;
    let newly = authority.revoke(serial)?;
    if newly {
        home.save(authority.state())?;
    }
    output::print(&json!({
        "serial": serial,
        "already_revoked": !newly,
        "revoked_serials": authority.state().revoked().collect::<Vec<_>>(),
    }))
}

pub(crate) fn crl(dir: &Path, days: u64, out: &Path) -> anyhow::Result<()> {
    files::check_out(out, files::Replace::Output)?;
    let now = Timestamp::now();
    let next_update = days_after(now, days)?;
    let body = json!({ "next_update_ms": next_update.as_millis() });
    let envelope = match through_service(dir, "POST", "crl", Some(&body))? {
        Some(v) => hex_field(&v, "crl")?,
        None => {
            let home = home::open(dir)?;
            let mut authority = home.load()?;
            let list = authority.revocation_list(now, next_update)?;
            home.save(authority.state())?;
            list.into_envelope()
        }
    };
    let list = tds_core::cose::open::<tds_identity::RevocationList>(&envelope)?;
    files::write(out, &envelope, files::PUBLIC_MODE)?;
    let id = list.value().id()?;
    let mut m = output::crl(list.value(), &id, now);
    m.insert("file".into(), json!(out.display().to_string()));
    output::print(&Json::Object(m))
}

pub(crate) fn rollover(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let home = home::open(dir)?;
    files::check_out(out, files::Replace::Output)?;
    let mut authority = home.load()?;
    let now = Timestamp::now();
    // The statement is written before the key is replaced: if it cannot be, nothing
    // changes.
    let done = home.rollover(&mut authority, now, &mut |statement| {
        files::write(out, statement.envelope(), files::PUBLIC_MODE).map_err(Into::into)
    })?;
    let mut m = output::rollover(done.statement.value());
    m.insert("file".into(), json!(out.display().to_string()));
    m.insert("retired_key_file".into(), json!(done.retired));
    output::print(&Json::Object(m))
}

pub(crate) fn licence(args: &LicenceArgs) -> anyhow::Result<()> {
    files::check_out(&args.out, files::Replace::Output)?;
    let (name, text) = match (&args.policy, &args.template) {
        (Some(path), _) => (
            "policy".to_owned(),
            String::from_utf8(files::read(path)?)
                .map_err(|_| anyhow!("{}: not UTF-8 text", path.display()))?,
        ),
        (None, template) => {
            let name = template.clone().unwrap_or_else(|| "licence".to_owned());
            let text = tds_policy::templates::template(&name)
                .ok_or_else(|| anyhow!("no policy template {name:?}"))?;
            (name, text.to_owned())
        }
    };
    // Checked here too, so a bad policy is named before anything is asked of the service.
    tds_policy::parse(&name, &text).map_err(|e| anyhow!("policy: {e}"))?;
    let not_after = days_after(Timestamp::now(), args.days)?;
    let licensee = args.licensee.to_string();
    let body = json!({
        "resource": args.resource,
        "licensee": licensee,
        "policy": text,
        "not_after_ms": not_after.as_millis(),
    });
    let bytes = match through_service(&args.home.home, "POST", "licence", Some(&body))? {
        Some(v) => hex_field(&v, "licence")?,
        None => {
            let authority = home::open(&args.home.home)?.load()?;
            sign_licence(
                authority.signer().as_ref(),
                &args.resource,
                &licensee,
                &text,
                not_after,
            )?
        }
    };
    let licence = tds_core::cose::open::<tds_policy::licence::Licence>(&bytes)?;
    let licence = licence.value();
    files::write(&args.out, &bytes, files::PUBLIC_MODE)?;
    output::print(&json!({
        "licence_id": licence.id()?.to_string(),
        "resource": args.resource,
        "licensee": licence.licensee.to_string(),
        "authority": licence.authority.to_string(),
        "policy": name,
        "not_after": licence.not_after.to_rfc3339(),
        "file": args.out.display().to_string(),
    }))
}

/// Signs a public-data licence from now until `not_after` with the authority's signer
/// (the home's key, or the running service's).
pub(crate) fn sign_licence(
    signer: &dyn tds_core::Signer,
    resource: &str,
    licensee: &str,
    policy_text: &str,
    not_after: Timestamp,
) -> anyhow::Result<Vec<u8>> {
    let key = signer.public_key();
    let licensee: tds_identity::ParticipantId = licensee
        .parse()
        .map_err(|_| anyhow!("licensee {licensee:?} is not a participant id"))?;
    let licence = tds_policy::licence::Licence {
        resource: resource
            .parse()
            .map_err(|_| anyhow!("resource {resource:?} is not a name"))?,
        authority: key.id(),
        authority_key: key,
        licensee: licensee.into(),
        policy: tds_policy::parse("licence", policy_text).map_err(|e| anyhow!("policy: {e}"))?,
        not_before: Timestamp::now(),
        not_after,
    };
    Ok(tds_policy::licence::issue(signer, &licence)?)
}
