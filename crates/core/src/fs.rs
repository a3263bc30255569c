//! Durable, atomic file writes: a temporary file in the same directory, fsync, rename,
//! fsync of the directory. A reader sees the old file or the new one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// An I/O error on `path`.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file exists and the caller asked not to replace it.
    #[error("{path}: already exists; refusing to overwrite it")]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

/// Writes `bytes` to `path` atomically with permission bits `mode` (Unix; ignored elsewhere).
/// With `overwrite == false` an existing file is left alone and [`WriteError::Exists`] returned.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    overwrite: bool,
) -> Result<(), WriteError> {
    let io = |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tds-tmp-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut tmp = builder.tempfile_in(&dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    if overwrite {
        tmp.persist(path).map_err(|e| io(e.error))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                WriteError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io(e.error)
            }
        })?;
    }
    sync_dir(&dir).map_err(io)?;
    Ok(())
}

/// A short lowercase reason for an I/O error, for one-line messages
/// (`no such file or directory`, `permission denied`, ...).
pub fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => "no such file or directory".into(),
        ErrorKind::PermissionDenied => "permission denied".into(),
        ErrorKind::AlreadyExists => "already exists".into(),
        ErrorKind::IsADirectory => "is a directory".into(),
        ErrorKind::NotADirectory => "a parent is not a directory".into(),
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

/// Fsyncs a directory so a rename or a new file in it is durable (no-op off Unix).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Reads a whole regular file, refusing files larger than `limit` bytes before reading
/// them, and anything that is not a regular file (a FIFO or a device would block or never
/// end). At most `limit + 1` bytes are ever read, whatever the file claims.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Opened without blocking (a FIFO swapped in after a check would otherwise block the
    // open), then checked on the open handle itself, so what is read is what was checked.
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    }
    let file = opts.open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let len = meta.len();
    if len > limit {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            size: len,
            limit,
        });
    }
    // A capacity hint only (the read below is bounded by `limit` whatever the size says).
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // Read at most limit + 1 bytes in case the file grew after the size check.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(io)?;
    if out.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            size: out.len() as u64,
            limit,
        });
    }
    Ok(out)
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// An I/O error on `path`.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A directory, FIFO, socket or device where a file was expected.
    #[error("{path}: not a regular file")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// Larger than the caller allows.
    #[error("{path}: {size} bytes is larger than the limit of {limit}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

/// Why a directory or file that holds secrets or state is not trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PermissionError {
    /// An I/O error on `path`.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Group or others may write it, so anyone in them could replace its keys or state.
    #[error("{path}: permissions {mode:04o} let group or others write it; a home and its state must be private (chmod go-w {path})")]
    Writable {
        /// The path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Owned by another user (neither the current one nor root).
    #[error("{path}: owned by user {owner}, not by the user running tds ({uid})")]
    Owner {
        /// The path.
        path: PathBuf,
        /// The owner's uid.
        owner: u32,
        /// The current effective uid.
        uid: u32,
    },
}

/// Checks that `path` (a home directory or a state file in it) is not writable by group or
/// others and is owned by the current user or root, as ssh checks its files. Off Unix it
/// only checks that `path` exists.
pub fn check_private(path: &Path) -> Result<(), PermissionError> {
    let io = |source| PermissionError::Io {
        path: path.to_path_buf(),
        source,
    };
    // The link itself (who may replace it) and what it points to (who may write there).
    let link = std::fs::symlink_metadata(path).map_err(io)?;
    let target = std::fs::metadata(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let uid = rustix::process::geteuid().as_raw();
        for meta in [&link, &target] {
            // A symlink's own mode bits mean nothing on Linux; its owner does.
            if !meta.file_type().is_symlink() {
                let mode = meta.permissions().mode() & 0o7777;
                if mode & 0o022 != 0 {
                    return Err(PermissionError::Writable {
                        path: path.to_path_buf(),
                        mode,
                    });
                }
            }
            if meta.uid() != uid && meta.uid() != 0 {
                return Err(PermissionError::Owner {
                    path: path.to_path_buf(),
                    owner: meta.uid(),
                    uid,
                });
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (link, target);
    Ok(())
}

/// Creates `dir` and its missing parents with mode 0700 (Unix), then checks it with
/// [`check_private`] (an existing directory that group or others may write is refused,
/// not silently trusted).
pub fn create_private_dir(dir: &Path) -> Result<(), PermissionError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| PermissionError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    check_private(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_respects_noclobber() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one", 0o600, false).unwrap();
        assert!(matches!(
            write_atomic(&p, b"two", 0o600, false),
            Err(WriteError::Exists { .. })
        ));
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        write_atomic(&p, b"two", 0o600, true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn private_checks_refuse_group_or_world_writable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        create_private_dir(&home).unwrap();
        let mode = std::fs::metadata(&home).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            create_private_dir(&home),
            Err(PermissionError::Writable { mode: 0o777, .. })
        ));
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        check_private(&home).unwrap();
        let f = home.join("state.json");
        std::fs::write(&f, b"{}").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert!(matches!(
            check_private(&f),
            Err(PermissionError::Writable { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_to_a_writable_directory_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let link = dir.path().join("home");
        std::os::unix::fs::symlink(&open, &link).unwrap();
        assert!(matches!(
            check_private(&link),
            Err(PermissionError::Writable { mode: 0o777, .. })
        ));
        assert!(create_private_dir(&link).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn bounded_read_refuses_a_fifo_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&p).status();
        if !made.is_ok_and(|s| s.success()) {
            return; // no mkfifo here: nothing to check
        }
        assert!(matches!(
            read_bounded(&p, 100),
            Err(ReadError::NotAFile { .. })
        ));
    }

    #[test]
    fn bounded_read_refuses_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, [0u8; 100]).unwrap();
        assert_eq!(read_bounded(&p, 100).unwrap().len(), 100);
        assert!(matches!(
            read_bounded(&p, 99),
            Err(ReadError::TooLarge { .. })
        ));
    }
}
