//! The authority's home directory:
//!
//! ```text
//! DIR/                    mode 0700
//!   authority.key         PKCS#8 PEM Ed25519 signing key, mode 0600
//!   authority.json        AuthorityState as JSON, mode 0600, replaced atomically
//!   retired/<id-hex>.key  earlier keys after `tds authority rollover`, mode 0600
//!   witness.json          what `tds witness cosign` remembers per log, mode 0600
//!   LOCK                  flock(2)ed by every command using the home, for its duration
//! ```
//!
//! `tds authority` and `tds witness` commands on one home run one at a time: a second
//! waits for the lock (and says so), so two `tds witness cosign` or `tds authority admit`
//! runs never lose each other's update of `authority.json` or `witness.json`. The lock goes
//! away with its process, however it ends. (The home's own log, `log/`, has its own writer
//! lock; a log writer in an authority home never makes up a key of its own.)
//!
//! The state is saved before anything it numbers is written out, so a serial or list
//! sequence is never handed out twice (a crash leaves at most an unused number).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use tds_core::SigningKey;
use tds_identity::{Authority, AuthorityState};

use crate::files;

pub(crate) const KEY_FILE: &str = "authority.key";
pub(crate) const STATE_FILE: &str = "authority.json";
pub(crate) const NEXT_KEY_FILE: &str = "authority.key.next";
pub(crate) const RETIRED_DIR: &str = "retired";
pub(crate) const LOCK_FILE: &str = "LOCK";

pub(crate) struct Home {
    dir: PathBuf,
    /// Holds the flock on `LOCK` while the home is in use.
    _lock: std::fs::File,
}

/// Takes the exclusive lock on `dir/LOCK`, waiting (and saying so on stderr) while
/// another command holds it.
fn lock_home(dir: &Path) -> anyhow::Result<std::fs::File> {
    use rustix::fs::{flock, FlockOperation};
    let path = dir.join(LOCK_FILE);
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let f = opts
        .open(&path)
        .map_err(|e| anyhow!("{}: {}", path.display(), files::io_reason(&e)))?;
    match flock(&f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => return Ok(f),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => eprintln!(
            "waiting for {}: another tds command is using this home",
            path.display()
        ),
        Err(e) => bail!("{}: cannot lock: {e}", path.display()),
    }
    loop {
        match flock(&f, FlockOperation::LockExclusive) {
            Ok(()) => return Ok(f),
            Err(e) if e == rustix::io::Errno::INTR => continue,
            Err(e) => bail!("{}: cannot lock: {e}", path.display()),
        }
    }
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

impl Home {
    pub(crate) fn key_path(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Creates the directory (mode 0700) for a new authority; refuses one that holds an
    /// authority already.
    pub(crate) fn create(dir: &Path) -> anyhow::Result<Home> {
        if dir.exists() && !dir.is_dir() {
            bail!("{}: not a directory", dir.display());
        }
        create_private_dir(dir)?;
        let home = Home {
            dir: dir.to_path_buf(),
            _lock: lock_home(dir)?,
        };
        // Checked under the lock: two concurrent inits cannot both succeed.
        for existing in [home.key_path(), home.state_path()] {
            if existing.exists() {
                bail!(
                    "{}: already exists; refusing to overwrite an authority",
                    existing.display()
                );
            }
        }
        Ok(home)
    }

    /// An existing authority's home. The directory and its state files must be private
    /// (not writable by group or others, owned by this user or root).
    pub(crate) fn open(dir: &Path) -> anyhow::Result<Home> {
        if !dir.join(STATE_FILE).exists() && !dir.join(KEY_FILE).exists() {
            bail!(
                "{}: no authority here (create one with 'tds authority init --home {} --name NAME')",
                dir.display(),
                dir.display()
            );
        }
        check_private(dir)?;
        for state in [STATE_FILE, crate::cmd::witness::WITNESS_STATE] {
            let path = dir.join(state);
            if path.exists() {
                check_private(&path)?;
            }
        }
        Ok(Home {
            dir: dir.to_path_buf(),
            _lock: lock_home(dir)?,
        })
    }

    pub(crate) fn load(&self) -> anyhow::Result<Authority> {
        let state_path = self.state_path();
        let bytes = files::read(&state_path)?;
        let state: AuthorityState =
            serde_json::from_slice(&bytes).map_err(|e| anyhow!("{}: {e}", state_path.display()))?;
        let key = files::read_key(&self.key_path())?;
        if self.dir.join(NEXT_KEY_FILE).exists() {
            bail!(
                "{}: an interrupted key rollover left this file; compare its key with {} and {} before going on",
                self.dir.join(NEXT_KEY_FILE).display(),
                self.key_path().display(),
                state_path.display()
            );
        }
        Authority::from_parts(key, state).with_context(|| {
            format!(
                "{} and {} disagree",
                self.key_path().display(),
                state_path.display()
            )
        })
    }

    /// Writes the key of a new authority (refusing to replace one).
    pub(crate) fn write_new_key(&self, key: &SigningKey) -> anyhow::Result<()> {
        key.write_file(&self.key_path())?;
        Ok(())
    }

    pub(crate) fn save_state(&self, state: &AuthorityState) -> anyhow::Result<()> {
        let mut json = serde_json::to_vec_pretty(state)?;
        json.push(b'\n');
        files::write_state(&self.state_path(), &json, files::PRIVATE_MODE)
    }

    /// Replaces the current key file by `new` and keeps the old one in `retired/`.
    ///
    /// Order: the new key goes to `authority.key.next`, the state (naming the new key) is
    /// saved, the old key is moved to `retired/`, and the new key is renamed into place.
    /// Every step is atomic; an interruption leaves `authority.key.next`, which `load`
    /// reports instead of guessing.
    pub(crate) fn replace_key(
        &self,
        old: tds_core::Hash256,
        new: &SigningKey,
        state: &AuthorityState,
    ) -> anyhow::Result<PathBuf> {
        let next = self.dir.join(NEXT_KEY_FILE);
        new.write_file(&next)?;
        self.save_state(state)?;
        let retired_dir = self.dir.join(RETIRED_DIR);
        create_private_dir(&retired_dir)?;
        let retired = retired_dir.join(format!("{}.key", old.to_hex()));
        std::fs::rename(self.key_path(), &retired).map_err(|e| {
            anyhow!(
                "{}: cannot move to {}: {}",
                self.key_path().display(),
                retired.display(),
                files::io_reason(&e)
            )
        })?;
        std::fs::rename(&next, self.key_path()).map_err(|e| {
            anyhow!(
                "{}: cannot move to {}: {}",
                next.display(),
                self.key_path().display(),
                files::io_reason(&e)
            )
        })?;
        tds_core::fs::sync_dir(&self.dir)
            .map_err(|e| anyhow!("{}: {}", self.dir.display(), files::io_reason(&e)))?;
        Ok(retired)
    }
}
