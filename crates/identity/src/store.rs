//! Where an authority keeps its key and [`AuthorityState`] between runs: the
//! [`AuthorityStore`] trait, and its default, a home directory ([`DirAuthorityStore`]).
//!
//! ```text
//! DIR/                    mode 0700
//!   authority.key         PKCS#8 PEM Ed25519 signing key, mode 0600
//!   authority.json        AuthorityState as JSON, mode 0600, replaced atomically
//!   authority.key.next    only while a key rollover is under way (see below)
//!   retired/<id-hex>.key  earlier keys after a rollover, mode 0600
//!   LOCK                  flock(2)ed by whoever uses the home, for as long as it does
//! ```
//!
//! Whoever opens the directory holds an exclusive lock on `LOCK` until it drops the store,
//! so two processes never lose each other's update of `authority.json` (or of other files
//! kept in the home, such as a witness's memory). The lock goes away with its process,
//! however it ends. The directory and its state must be private: a home or state file that
//! group or others may write, or that another user owns, is refused.
//!
//! The state is saved before anything it numbers is handed out, so a serial or list
//! sequence is never issued twice (a crash leaves at most an unused number). A key
//! rollover is crash-ordered: the new key goes to `authority.key.next`, the state (naming
//! the new key) is saved, the old key moves to `retired/`, and the new key is renamed into
//! place. Every step is atomic; an interruption leaves `authority.key.next`, which
//! [`AuthorityStore::load`] reports instead of guessing.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tds_core::{ErrorCode, Signer, SigningKey, Timestamp};

use crate::authority::{Authority, AuthorityState, Signed};
use crate::error::IdentityError;
use crate::rollover::KeyRollover;

/// The key file in an authority home.
pub const KEY_FILE: &str = "authority.key";
/// The state file in an authority home.
pub const STATE_FILE: &str = "authority.json";
/// The new key during a rollover.
pub const NEXT_KEY_FILE: &str = "authority.key.next";
/// Where retired keys go.
pub const RETIRED_DIR: &str = "retired";
/// The lock file.
pub const LOCK_FILE: &str = "LOCK";
/// Largest state file read.
const MAX_STATE: u64 = 1 << 20;

/// Why an authority's store could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityStoreError {
    /// No authority in this store.
    #[error("{path}: no authority here (create one with 'tds authority init --home {path} --name NAME')")]
    Missing {
        /// The home.
        path: String,
    },
    /// An authority exists already.
    #[error("{path}: already exists; refusing to overwrite an authority")]
    Exists {
        /// The file that exists.
        path: String,
    },
    /// An I/O error.
    #[error("{path}: {reason}")]
    Io {
        /// The file or directory.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A home or state file that is not private.
    #[error(transparent)]
    Permissions(#[from] tds_core::fs::PermissionError),
    /// A state file that does not parse.
    #[error("{path}: {reason}")]
    State {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A key rollover was interrupted.
    #[error("{path}: an interrupted key rollover left this file; compare its key with {key} and {state} before going on")]
    InterruptedRollover {
        /// The new key file left behind.
        path: String,
        /// The key file.
        key: String,
        /// The state file.
        state: String,
    },
    /// The rollover statement could not be published; nothing was persisted.
    #[error("key rollover: the statement could not be published, so the key was not replaced")]
    Publish(#[source] PublishError),
    /// The key and the state disagree, or another identity rule refused.
    #[error("{context}")]
    Identity {
        /// Which files.
        context: String,
        /// Why.
        #[source]
        source: IdentityError,
    },
}

impl ErrorCode for AuthorityStoreError {
    fn code(&self) -> &'static str {
        match self {
            AuthorityStoreError::Missing { .. } => "identity.store.missing",
            AuthorityStoreError::Exists { .. } => "identity.store.exists",
            AuthorityStoreError::Io { .. } => "identity.store.io",
            AuthorityStoreError::Permissions(_) => "identity.store.permissions",
            AuthorityStoreError::State { .. } => "identity.store.state",
            AuthorityStoreError::InterruptedRollover { .. } => {
                "identity.store.interrupted_rollover"
            }
            AuthorityStoreError::Publish(_) => "identity.store.publish",
            AuthorityStoreError::Identity { source, .. } => source.code(),
        }
    }
}

/// Why a rollover statement could not be published (the caller's own error).
pub type PublishError = Box<dyn std::error::Error + Send + Sync>;

/// What [`AuthorityStore::rollover`] did.
#[derive(Debug)]
pub struct RolledOver {
    /// The signed statement to publish to every trust store.
    pub statement: Signed<KeyRollover>,
    /// Where the old key went, in the store's own terms (a file path for a directory).
    pub retired: String,
}

/// Keeps an authority's signing key and state. The authority node keeps them in a home
/// directory by default ([`DirAuthorityStore`]); another store (a database, a hardware
/// module for the key) implements the same operations.
pub trait AuthorityStore {
    /// Creates a new authority named `name` with a fresh key; refuses when one exists.
    fn create(&self, name: &str) -> Result<Authority, AuthorityStoreError>;
    /// Loads the authority, refusing a key and state that disagree or an interrupted
    /// rollover.
    fn load(&self) -> Result<Authority, AuthorityStoreError>;
    /// Persists `state` durably (call after every change, before handing out what was
    /// signed).
    fn save(&self, state: &AuthorityState) -> Result<(), AuthorityStoreError>;
    /// Rolls the authority's key over at `now`: makes a new key, has the authority sign
    /// the statement, hands it to `publish` (which must store it where verifiers will find
    /// it; if it fails, nothing is persisted and the in-memory `authority` must be
    /// dropped), then persists the new key and state crash-ordered.
    fn rollover(
        &self,
        authority: &mut Authority,
        now: Timestamp,
        publish: &mut dyn FnMut(&Signed<KeyRollover>) -> Result<(), PublishError>,
    ) -> Result<RolledOver, AuthorityStoreError>;
}

/// An authority home directory (see the [module docs](self)), locked while the value
/// lives.
#[derive(Debug)]
pub struct DirAuthorityStore {
    dir: PathBuf,
    _lock: File,
    /// The passphrase the key files are encrypted with, if they are (or are to be).
    passphrase: Option<tds_core::key::Passphrase>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> AuthorityStoreError + '_ {
    move |e| AuthorityStoreError::Io {
        path: path.display().to_string(),
        reason: io_reason(&e),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    tds_core::fs::io_reason(e)
}

/// Takes the exclusive lock on `dir/LOCK`; `on_wait` is called once if another process
/// holds it and this one has to wait.
fn lock(dir: &Path, on_wait: &mut dyn FnMut(&Path)) -> Result<File, AuthorityStoreError> {
    use rustix::fs::{flock, FlockOperation};
    let path = dir.join(LOCK_FILE);
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let f = opts.open(&path).map_err(io(&path))?;
    let failed = |e: rustix::io::Errno| AuthorityStoreError::Io {
        path: path.display().to_string(),
        reason: format!("cannot lock: {e}"),
    };
    match flock(&f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => return Ok(f),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => on_wait(&path),
        Err(e) => return Err(failed(e)),
    }
    loop {
        match flock(&f, FlockOperation::LockExclusive) {
            Ok(()) => return Ok(f),
            Err(e) if e == rustix::io::Errno::INTR => continue,
            Err(e) => return Err(failed(e)),
        }
    }
}

impl DirAuthorityStore {
    /// Opens an existing authority home, waiting for its lock (`on_wait` is told the lock
    /// file's path if it has to wait). The directory and its state files must be private.
    pub fn open(dir: &Path, on_wait: &mut dyn FnMut(&Path)) -> Result<Self, AuthorityStoreError> {
        if !dir.join(STATE_FILE).exists() && !dir.join(KEY_FILE).exists() {
            return Err(AuthorityStoreError::Missing {
                path: dir.display().to_string(),
            });
        }
        tds_core::fs::check_private(dir)?;
        Ok(DirAuthorityStore {
            dir: dir.to_path_buf(),
            _lock: lock(dir, on_wait)?,
            passphrase: None,
        })
    }

    /// Creates the directory (mode 0700) for a new authority and locks it; refuses one that
    /// holds an authority already, or that group or others may write.
    pub fn create_dir(
        dir: &Path,
        on_wait: &mut dyn FnMut(&Path),
    ) -> Result<Self, AuthorityStoreError> {
        if dir.exists() && !dir.is_dir() {
            return Err(AuthorityStoreError::Io {
                path: dir.display().to_string(),
                reason: "not a directory".into(),
            });
        }
        tds_core::fs::create_private_dir(dir)?;
        let store = DirAuthorityStore {
            dir: dir.to_path_buf(),
            _lock: lock(dir, on_wait)?,
            passphrase: None,
        };
        // Checked under the lock: two concurrent inits cannot both succeed.
        for existing in [store.key_path(), store.state_path()] {
            if existing.exists() {
                return Err(AuthorityStoreError::Exists {
                    path: existing.display().to_string(),
                });
            }
        }
        Ok(store)
    }

    /// Reads the authority key with `passphrase` (an encrypted key file), and writes new
    /// keys (a new authority, a rollover) encrypted with it.
    pub fn with_passphrase(mut self, passphrase: Option<tds_core::key::Passphrase>) -> Self {
        self.passphrase = passphrase;
        self
    }

    /// The home directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key file.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    /// The state file.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    fn write_key(&self, path: &Path, key: &SigningKey) -> Result<(), AuthorityStoreError> {
        match &self.passphrase {
            Some(pass) => key.write_encrypted_file(path, pass, false),
            None => key.write_file(path),
        }
        .map_err(|e| AuthorityStoreError::Identity {
            context: path.display().to_string(),
            source: e.into(),
        })
    }

    fn read_key(&self) -> Result<SigningKey, AuthorityStoreError> {
        let path = self.key_path();
        SigningKey::read_file_with(&path, self.passphrase.as_ref()).map_err(|e| match e {
            tds_core::key::KeyError::Io { source, .. } => io(&path)(source),
            other => AuthorityStoreError::Identity {
                context: path.display().to_string(),
                source: other.into(),
            },
        })
    }
}

impl AuthorityStore for DirAuthorityStore {
    fn create(&self, name: &str) -> Result<Authority, AuthorityStoreError> {
        let key = Arc::new(
            SigningKey::generate().map_err(|e| AuthorityStoreError::Identity {
                context: "new authority key".into(),
                source: e.into(),
            })?,
        );
        let authority = Authority::new(name, key.clone() as Arc<dyn Signer>).map_err(|e| {
            AuthorityStoreError::Identity {
                context: "new authority".into(),
                source: e,
            }
        })?;
        self.write_key(&self.key_path(), &key)?;
        self.save(authority.state())?;
        Ok(authority)
    }

    fn load(&self) -> Result<Authority, AuthorityStoreError> {
        let state_path = self.state_path();
        // First: a crash between the rollover's two renames leaves no authority.key but
        // this file, and that is what the operator must be told about.
        let next = self.dir.join(NEXT_KEY_FILE);
        if next.exists() {
            return Err(AuthorityStoreError::InterruptedRollover {
                path: next.display().to_string(),
                key: self.key_path().display().to_string(),
                state: state_path.display().to_string(),
            });
        }
        tds_core::fs::check_private(&state_path)?;
        let bytes = tds_core::fs::read_bounded(&state_path, MAX_STATE).map_err(|e| match e {
            tds_core::fs::ReadError::Io { source, .. } => io(&state_path)(source),
            other => AuthorityStoreError::State {
                path: state_path.display().to_string(),
                reason: other.to_string(),
            },
        })?;
        let state: AuthorityState =
            serde_json::from_slice(&bytes).map_err(|e| AuthorityStoreError::State {
                path: state_path.display().to_string(),
                reason: e.to_string(),
            })?;
        let key = self.read_key()?;
        Authority::from_parts(key, state).map_err(|source| AuthorityStoreError::Identity {
            context: format!(
                "{} and {} disagree",
                self.key_path().display(),
                state_path.display()
            ),
            source,
        })
    }

    fn save(&self, state: &AuthorityState) -> Result<(), AuthorityStoreError> {
        let path = self.state_path();
        let mut json =
            serde_json::to_vec_pretty(state).map_err(|e| AuthorityStoreError::State {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        json.push(b'\n');
        tds_core::fs::write_atomic(&path, &json, 0o600, true).map_err(|e| match e {
            tds_core::fs::WriteError::Io { source, .. } => io(&path)(source),
            other => AuthorityStoreError::Io {
                path: path.display().to_string(),
                reason: other.to_string(),
            },
        })
    }

    fn rollover(
        &self,
        authority: &mut Authority,
        now: Timestamp,
        publish: &mut dyn FnMut(&Signed<KeyRollover>) -> Result<(), PublishError>,
    ) -> Result<RolledOver, AuthorityStoreError> {
        let new_key =
            Arc::new(
                SigningKey::generate().map_err(|e| AuthorityStoreError::Identity {
                    context: "new authority key".into(),
                    source: e.into(),
                })?,
            );
        let old_id = authority.public_key().id();
        let (statement, _old) = authority
            .rollover(new_key.clone() as Arc<dyn Signer>, now)
            .map_err(|source| AuthorityStoreError::Identity {
                context: "key rollover".into(),
                source,
            })?;
        // The statement first: if it cannot be published, nothing has changed on disk.
        publish(&statement).map_err(AuthorityStoreError::Publish)?;
        let next = self.dir.join(NEXT_KEY_FILE);
        self.write_key(&next, &new_key)?;
        self.save(authority.state())?;
        let retired_dir = self.dir.join(RETIRED_DIR);
        tds_core::fs::create_private_dir(&retired_dir)?;
        let retired = retired_dir.join(format!("{}.key", old_id.to_hex()));
        std::fs::rename(self.key_path(), &retired).map_err(|e| AuthorityStoreError::Io {
            path: self.key_path().display().to_string(),
            reason: format!("cannot move to {}: {}", retired.display(), io_reason(&e)),
        })?;
        std::fs::rename(&next, self.key_path()).map_err(|e| AuthorityStoreError::Io {
            path: next.display().to_string(),
            reason: format!(
                "cannot move to {}: {}",
                self.key_path().display(),
                io_reason(&e)
            ),
        })?;
        tds_core::fs::sync_dir(&self.dir).map_err(io(&self.dir))?;
        Ok(RolledOver {
            statement,
            retired: retired.display().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::Admission;
    use crate::{Role, Sector};

    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

    fn no_wait(_: &Path) {
        panic!("nobody else holds the lock here")
    }

    #[test]
    fn create_load_save_and_rollover() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("auth");
        let store = DirAuthorityStore::create_dir(&home, &mut no_wait).unwrap();
        let created = store.create("Space").unwrap();
        assert!(matches!(
            store.create("Again"),
            Err(AuthorityStoreError::Identity { .. }) | Err(AuthorityStoreError::Exists { .. })
        ));
        drop(store);
        assert!(matches!(
            DirAuthorityStore::create_dir(&home, &mut no_wait),
            Err(AuthorityStoreError::Exists { .. })
        ));
        let store = DirAuthorityStore::open(&home, &mut no_wait).unwrap();
        let mut a = store.load().unwrap();
        assert_eq!(a.public_key(), created.public_key());
        a.admit(
            &Admission {
                subject_key: SigningKey::from_seed(&[1; 32]).public_key(),
                name: "M".into(),
                sectors: vec![Sector::POWER],
                roles: vec![Role::Consumer],
                jurisdiction: "CN".parse().unwrap(),
                not_before: NOW,
                not_after: NOW.saturating_add_millis(1000),
            },
            NOW,
        )
        .unwrap();
        store.save(a.state()).unwrap();
        assert_eq!(store.load().unwrap().state().next_serial(), 2);

        // A publish failure leaves the home as it was.
        let before = store.load().unwrap().public_key();
        let err = store
            .rollover(&mut a, NOW, &mut |_| Err("disk full".into()))
            .unwrap_err();
        assert!(matches!(err, AuthorityStoreError::Publish(_)), "{err}");
        let mut a = store.load().unwrap();
        assert_eq!(a.public_key(), before);

        let mut published = Vec::new();
        let done = store
            .rollover(&mut a, NOW, &mut |s| {
                published.push(s.envelope().to_vec());
                Ok(())
            })
            .unwrap();
        assert_eq!(published.len(), 1);
        assert!(Path::new(&done.retired).exists());
        let after = store.load().unwrap();
        assert_eq!(after.state().previous_keys(), [before]);
        assert_ne!(after.public_key(), before);
    }

    #[test]
    fn an_interrupted_rollover_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirAuthorityStore::create_dir(dir.path(), &mut no_wait).unwrap();
        store.create("Space").unwrap();
        SigningKey::from_seed(&[5; 32])
            .write_file(&dir.path().join(NEXT_KEY_FILE))
            .unwrap();
        assert!(matches!(
            store.load(),
            Err(AuthorityStoreError::InterruptedRollover { .. })
        ));
        // Also when the crash came between the renames (no authority.key at all).
        std::fs::remove_file(store.key_path()).unwrap();
        assert!(matches!(
            store.load(),
            Err(AuthorityStoreError::InterruptedRollover { .. })
        ));
    }

    #[test]
    fn a_second_opener_waits_for_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirAuthorityStore::create_dir(dir.path(), &mut no_wait).unwrap();
        store.create("Space").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = dir.path().to_path_buf();
        let t = std::thread::spawn(move || {
            let mut told = false;
            let second = DirAuthorityStore::open(&path, &mut |_| {
                told = true;
                tx.send(()).unwrap();
            })
            .unwrap();
            drop(second);
            told
        });
        // The second opener says it waits; it gets the home once the first lets go.
        rx.recv().unwrap();
        drop(store);
        assert!(t.join().unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn a_writable_state_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = DirAuthorityStore::create_dir(dir.path(), &mut no_wait).unwrap();
        store.create("Space").unwrap();
        std::fs::set_permissions(store.state_path(), std::fs::Permissions::from_mode(0o622))
            .unwrap();
        assert!(matches!(
            store.load(),
            Err(AuthorityStoreError::Permissions(_))
        ));
    }
}
