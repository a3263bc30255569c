//! Reading inputs and writing outputs, with errors that name the file.
//!
//! Outputs never destroy what they should not (red-team finding 6): a verb's `--out`
//! refuses to replace a file the same verb read (`offer create --key p.key --out p.key`),
//! refuses to replace a key or state file (`authority.key`, `authority.json`, any PEM
//! private key: only `tds key new --force` replaces a key file), and replaces any other
//! existing file only with `--force`. Every file a verb reads through this module is
//! remembered for the duration of the verb ([`begin`] starts a verb).

use std::cell::RefCell;
use std::io;
use std::path::Path;

use anyhow::anyhow;
use tds_core::fs::{ReadError, WriteError};

/// Largest input file any verb reads.
pub(crate) const MAX_INPUT: u64 = 16 * 1024 * 1024;

/// Mode of written objects (credentials, lists, statements): public by nature.
pub(crate) const PUBLIC_MODE: u32 = 0o644;

/// A short lowercase reason for an I/O error.
pub(crate) fn io_reason(e: &io::Error) -> String {
    tds_core::fs::io_reason(e)
}

/// What one verb has read and may overwrite.
#[derive(Default)]
struct Verb {
    /// `--force`: existing files other than inputs, keys and state may be replaced.
    force: bool,
    /// `(device, inode)` of every file read so far.
    inputs: Vec<(u64, u64)>,
}

thread_local! {
    static VERB: RefCell<Verb> = RefCell::new(Verb::default());
}

/// Starts a verb: forgets earlier inputs and sets `--force`.
pub(crate) fn begin(force: bool) {
    VERB.with(|v| {
        *v.borrow_mut() = Verb {
            force,
            inputs: Vec::new(),
        }
    });
}

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// Remembers `path` as an input of the current verb.
pub(crate) fn note_input(path: &Path) {
    if let Some(id) = std::fs::metadata(path).ok().as_ref().and_then(file_id) {
        VERB.with(|v| v.borrow_mut().inputs.push(id));
    }
}

/// File names that hold keys or home state; never replaced by an output.
const PROTECTED_NAMES: [&str; 6] = [
    "authority.key",
    "authority.key.next",
    "authority.json",
    "witness.json",
    "node.key",
    "LOCK",
];

/// The files of a provenance log directory (spec/provenance.md §2).
const LOG_FILES: [&str; 4] = ["events", "index", "ids", "checkpoints"];

/// Whether the existing file at `path` holds a key or home state: a key or state file by
/// name, any PEM private key, a provenance log's file, or a kept cosigned checkpoint.
fn is_key_or_state(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if PROTECTED_NAMES.contains(&name) {
        return true;
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = parent.unwrap_or(Path::new("."));
    let in_log = dir.join("events").is_file();
    if in_log && (LOG_FILES.contains(&name) || name.starts_with("level-")) {
        return true;
    }
    if dir.file_name().and_then(|n| n.to_str()) == Some("witnessed") && name.ends_with(".txt") {
        return true;
    }
    is_private_key(path)
}

/// Whether `path` starts like a PEM private key.
fn is_private_key(path: &Path) -> bool {
    use std::io::Read;
    let mut head = Vec::with_capacity(64);
    let read = std::fs::File::open(path).and_then(|f| f.take(64).read_to_end(&mut head));
    let head = String::from_utf8_lossy(&head);
    read.is_ok() && head.starts_with("-----BEGIN") && head.contains("PRIVATE KEY")
}

/// Which existing files an output may replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Replace {
    /// An ordinary output: inputs, keys and state never; other files with `--force`.
    Output,
    /// A new key (`tds key new`): with `--force` it may replace a key file too, never an
    /// input or home state.
    Key,
}

/// Checks that writing `path` destroys nothing it must not (see the module docs).
pub(crate) fn check_out(path: &Path, replace: Replace) -> anyhow::Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(anyhow!("{}: {}", path.display(), io_reason(&e))),
    };
    if meta.is_dir() {
        return Err(anyhow!("{}: is a directory", path.display()));
    }
    let (force, is_input) = VERB.with(|v| {
        let v = v.borrow();
        (
            v.force,
            file_id(&meta).is_some_and(|id| v.inputs.contains(&id)),
        )
    });
    if is_input {
        return Err(anyhow!(
            "{}: is an input of this command; refusing to overwrite it",
            path.display()
        ));
    }
    let protected = match replace {
        Replace::Output => is_key_or_state(path),
        Replace::Key => path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| PROTECTED_NAMES.contains(&n)),
    };
    if protected {
        return Err(anyhow!(
            "{}: holds a key or a home's state; refusing to overwrite it",
            path.display()
        ));
    }
    if !force {
        return Err(anyhow!(
            "{}: already exists; pass --force to replace it",
            path.display()
        ));
    }
    Ok(())
}

/// Reads a whole file of at most [`MAX_INPUT`] bytes.
pub(crate) fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    note_input(path);
    tds_core::fs::read_bounded(path, MAX_INPUT).map_err(|e| match e {
        ReadError::Io { source, .. } => anyhow!("{}: {}", path.display(), io_reason(&source)),
        ReadError::TooLarge { size, limit, .. } => anyhow!(
            "{}: {size} bytes is larger than the limit of {limit}",
            path.display()
        ),
        ReadError::NotAFile { .. } => anyhow!("{}: not a regular file", path.display()),
        // Every other variant names the path itself.
        other => other.into(),
    })
}

/// The passphrase of encrypted key files, from the environment: the file
/// `TDS_KEY_PASSPHRASE_FILE` names (e.g. a systemd credential), else
/// `TDS_KEY_PASSPHRASE` itself. `None` when neither is set.
pub(crate) fn key_passphrase() -> anyhow::Result<Option<tds_core::key::Passphrase>> {
    if let Some(path) = std::env::var_os("TDS_KEY_PASSPHRASE_FILE").filter(|v| !v.is_empty()) {
        let path = std::path::PathBuf::from(path);
        return tds_core::key::Passphrase::from_file(&path)
            .map(Some)
            .map_err(|e| anyhow!("TDS_KEY_PASSPHRASE_FILE: {e}"));
    }
    Ok(std::env::var_os("TDS_KEY_PASSPHRASE")
        .filter(|v| !v.is_empty())
        .map(|v| tds_core::key::Passphrase::new(v.into_encoded_bytes())))
}

/// Reads a private key file (refused when group or others may read it); an encrypted
/// one with the passphrase from the environment ([`key_passphrase`]).
pub(crate) fn read_key(path: &Path) -> anyhow::Result<tds_core::SigningKey> {
    note_input(path);
    let pass = key_passphrase()?;
    tds_core::SigningKey::read_file_with(path, pass.as_ref()).map_err(|e| match e {
        tds_core::key::KeyError::Io { source, .. } => {
            anyhow!("{}: {}", path.display(), io_reason(&source))
        }
        other => other.into(),
    })
}

/// Writes an output file atomically (temporary file and rename) after [`check_out`].
pub(crate) fn write(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    check_out(path, Replace::Output)?;
    write_inner(path, bytes, mode, true)
}

/// Writes a new key file (mode 0600) after [`check_out`] with [`Replace::Key`].
pub(crate) fn write_key(path: &Path, pem: &[u8]) -> anyhow::Result<()> {
    check_out(path, Replace::Key)?;
    write_inner(path, pem, 0o600, true)
}

fn write_inner(path: &Path, bytes: &[u8], mode: u32, overwrite: bool) -> anyhow::Result<()> {
    tds_core::fs::write_atomic(path, bytes, mode, overwrite).map_err(|e| match e {
        WriteError::Io { source, .. } => anyhow!("{}: {}", path.display(), io_reason(&source)),
        WriteError::Exists { .. } => anyhow!(
            "{}: already exists; refusing to overwrite it",
            path.display()
        ),
        other => anyhow!("{}: {other}", path.display()),
    })
}
