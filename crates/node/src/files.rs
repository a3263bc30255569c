//! Reading inputs and writing outputs, with errors that name the file.

use std::io;
use std::path::Path;

use anyhow::anyhow;
use tds_core::fs::{ReadError, WriteError};

/// Largest input file any verb reads.
pub(crate) const MAX_INPUT: u64 = 16 * 1024 * 1024;

/// Mode of written objects (credentials, lists, statements): public by nature.
pub(crate) const PUBLIC_MODE: u32 = 0o644;
/// Mode of the authority's state file.
pub(crate) const PRIVATE_MODE: u32 = 0o600;

/// A short lowercase reason for an I/O error.
pub(crate) fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::AlreadyExists => "already exists".into(),
        io::ErrorKind::IsADirectory => "is a directory".into(),
        io::ErrorKind::NotADirectory => "a parent is not a directory".into(),
        _ => {
            let text = e.to_string();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => "i/o error".into(),
            }
        }
    }
}

/// Reads a whole file of at most [`MAX_INPUT`] bytes.
pub(crate) fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    tds_core::fs::read_bounded(path, MAX_INPUT).map_err(|e| match e {
        ReadError::Io { source, .. } => anyhow!("{}: {}", path.display(), io_reason(&source)),
        ReadError::TooLarge { size, limit, .. } => anyhow!(
            "{}: {size} bytes is larger than the limit of {limit}",
            path.display()
        ),
        other => anyhow!("{}: {other}", path.display()),
    })
}

/// Reads a private key file (refused when group or others may read it).
pub(crate) fn read_key(path: &Path) -> anyhow::Result<tds_core::SigningKey> {
    tds_core::SigningKey::read_file(path).map_err(|e| match e {
        tds_core::key::KeyError::Io { source, .. } => {
            anyhow!("{}: {}", path.display(), io_reason(&source))
        }
        other => other.into(),
    })
}

/// Writes `bytes` to `path` atomically (temporary file and rename), replacing it.
pub(crate) fn write(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    write_inner(path, bytes, mode, true)
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
