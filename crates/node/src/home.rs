//! Homes: the authority's home is a [`tds_identity::DirAuthorityStore`] (layout, lock and
//! crash-ordered key replacement live there); this module opens it with the CLI's
//! messages, and checks node homes.

use std::path::Path;

use anyhow::anyhow;
use tds_identity::store::{AuthorityStoreError, DirAuthorityStore};

use crate::files;

pub(crate) use tds_identity::store::{KEY_FILE, STATE_FILE};

/// Says on stderr that a command waits for another one's lock.
fn waiting(lock: &Path) {
    eprintln!(
        "waiting for {}: another tds command is using this home",
        lock.display()
    );
}

fn store_error(e: AuthorityStoreError) -> anyhow::Error {
    match e {
        AuthorityStoreError::Permissions(p) => permission(p),
        other => other.into(),
    }
}

/// An existing authority's home, locked; its directory, state and witness memory must be
/// private.
pub(crate) fn open(dir: &Path) -> anyhow::Result<DirAuthorityStore> {
    open_checked(dir, true)
}

/// [`open`] for `tds authority serve` itself: a stale `admin.json` (a killed service,
/// its pid perhaps reused) must not stop it; the home's lock keeps two services apart.
pub(crate) fn open_for_service(dir: &Path) -> anyhow::Result<DirAuthorityStore> {
    open_checked(dir, false)
}

fn open_checked(dir: &Path, check_running: bool) -> anyhow::Result<DirAuthorityStore> {
    // A running `tds authority serve` holds the home: say so instead of waiting for it.
    if let Some(pid) = running_pid(dir).filter(|_| check_running) {
        anyhow::bail!(
            "{}: the authority is running (pid {pid}); stop it first (`tds authority show|admit|revoke|crl|requests|approve|reject` go through its admin API while it runs)",
            dir.display()
        );
    }
    let store = DirAuthorityStore::open(dir, &mut waiting)
        .map_err(store_error)?
        .with_passphrase(crate::files::key_passphrase()?);
    for state in [STATE_FILE, crate::cmd::witness::WITNESS_STATE] {
        let path = dir.join(state);
        if path.exists() {
            check_private(&path)?;
        }
    }
    Ok(store)
}

/// A new authority's home (mode 0700), locked; refuses one that holds an authority.
pub(crate) fn create(dir: &Path) -> anyhow::Result<DirAuthorityStore> {
    // With a passphrase in the environment, the new key is written encrypted.
    Ok(DirAuthorityStore::create_dir(dir, &mut waiting)
        .map_err(store_error)?
        .with_passphrase(crate::files::key_passphrase()?))
}

/// Creates `dir` (and its parents) with mode 0700 where it does not exist yet, and refuses
/// it when group or others may write it or another user owns it (red-team finding 5).
pub(crate) fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    tds_core::fs::create_private_dir(dir).map_err(permission)
}

/// Refuses `path` when group or others may write it or another user owns it.
pub(crate) fn check_private(path: &Path) -> anyhow::Result<()> {
    tds_core::fs::check_private(path).map_err(permission)
}

fn permission(e: tds_core::fs::PermissionError) -> anyhow::Error {
    match e {
        tds_core::fs::PermissionError::Io { path, source } => {
            anyhow!("{}: {}", path.display(), files::io_reason(&source))
        }
        other => other.into(),
    }
}

/// The pid in `dir/admin.json` if that process is alive (a service runs on the home).
pub(crate) fn running_pid(dir: &Path) -> Option<u32> {
    let bytes = std::fs::read(dir.join("admin.json")).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let pid = u32::try_from(v.get("pid")?.as_u64()?).ok()?;
    (pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
}
