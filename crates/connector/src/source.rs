//! Where a published asset's bytes come from: a file, a directory of files, or the
//! integrator's own store behind [`DataSource`].

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes of one asset, read at an offset. Implementations must be safe to call from many
/// threads at once (positional reads, no shared cursor) and must return the same bytes
/// for the same range for as long as the asset is published: the provider proves every
/// chunk against the manifest, and a chunk that changed is refused by every consumer.
pub trait DataSource: Send + Sync + 'static {
    /// The length in bytes.
    fn len(&self) -> u64;

    /// Whether the source is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset` (short data is an error).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// The `len` bytes at `offset` (short data is an error), as one buffer the transport
    /// sends as it is. The default reads them into a new buffer with
    /// [`DataSource::read_exact_at`]; a source that holds its bytes in memory returns a
    /// slice of them instead of a copy.
    fn read_bytes(&self, offset: u64, len: usize) -> io::Result<bytes::Bytes> {
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, offset)?;
        Ok(bytes::Bytes::from(buf))
    }
}

/// Where a fetch puts the verified bytes: by default the output file
/// ([`FetchOptions::out`](crate::FetchOptions::out)), or an integrator's store
/// ([`FetchOptions::sink`](crate::FetchOptions::sink)). Only bytes whose chunk verified
/// against the manifest are written. Writes come from the session's task: keep them
/// short (hand them on to a writer of your own if they can block for long).
pub trait DataSink: Send + Sync + 'static {
    /// Writes `bytes` at `offset` (chunks arrive in any order, each once per transfer).
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()>;

    /// Makes everything written so far durable. The connector calls it before it stores
    /// a resume state that says those bytes are there, and at the end of the transfer.
    fn sync(&self) -> io::Result<()>;
}

impl DataSink for File {
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.write_all_at(bytes, offset)
    }

    fn sync(&self) -> io::Result<()> {
        self.sync_data()
    }
}

/// What [`Connector::publish`](crate::Connector::publish) serves an asset from.
#[derive(Clone)]
pub enum Source {
    /// One regular file.
    File(PathBuf),
    /// The regular files under a directory, concatenated as [`DirSource`] says.
    Dir(PathBuf),
    /// An integrator's source. After a restart, register it again under the same
    /// `name` ([`Connector::register_source`](crate::Connector::register_source)) before
    /// it is served.
    Custom {
        /// The name the asset's record keeps.
        name: String,
        /// The source.
        source: Arc<dyn DataSource>,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => f.debug_tuple("File").field(p).finish(),
            Source::Dir(p) => f.debug_tuple("Dir").field(p).finish(),
            Source::Custom { name, source } => f
                .debug_struct("Custom")
                .field("name", name)
                .field("len", &source.len())
                .finish(),
        }
    }
}

/// A regular file, read with `pread`.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    /// Opens `path`; refuses what is not a regular file.
    pub fn open(path: &Path) -> io::Result<FileSource> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", path.display()),
            ));
        }
        Ok(FileSource {
            file,
            len: meta.len(),
        })
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl DataSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

/// The regular files under a directory, walked recursively, concatenated in the byte
/// order of their paths relative to the directory (`/`-separated). Symbolic links and
/// other special files are refused, not followed, so the asset is exactly what the
/// directory holds. The list is taken when the source is opened; a file that changes
/// size afterwards makes reads fail.
#[derive(Debug)]
pub struct DirSource {
    files: Vec<DirFile>,
    len: u64,
}

#[derive(Debug)]
struct DirFile {
    relative: String,
    file: File,
    start: u64,
    len: u64,
}

/// Most files a directory source may hold.
pub const MAX_DIR_FILES: usize = 1 << 20;

impl DirSource {
    /// Walks `dir`.
    pub fn open(dir: &Path) -> io::Result<DirSource> {
        let mut found = Vec::new();
        walk(dir, String::new(), &mut found)?;
        found.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut files = Vec::with_capacity(found.len());
        let mut start = 0u64;
        for (relative, path) in found {
            let file = File::open(&path)?;
            let len = file.metadata()?.len();
            files.push(DirFile {
                relative,
                file,
                start,
                len,
            });
            start = start
                .checked_add(len)
                .ok_or_else(|| io::Error::other("the directory's size overflows"))?;
        }
        Ok(DirSource { files, len: start })
    }

    /// The files, in order: relative path, offset in the asset, length.
    pub fn files(&self) -> impl Iterator<Item = (&str, u64, u64)> {
        self.files
            .iter()
            .map(|f| (f.relative.as_str(), f.start, f.len))
    }
}

fn walk(dir: &Path, prefix: String, out: &mut Vec<(String, PathBuf)>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_str().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: a file name that is not UTF-8", entry.path().display()),
            )
        })?;
        let relative = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), relative, out)?;
        } else if kind.is_file() {
            if out.len() >= MAX_DIR_FILES {
                return Err(io::Error::other(format!(
                    "more than {MAX_DIR_FILES} files under the directory"
                )));
            }
            out.push((relative, entry.path()));
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a regular file or directory (links are not followed)",
                    entry.path().display()
                ),
            ));
        }
    }
    Ok(())
}

impl DataSource for DirSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        // The first file that holds `offset`.
        let mut i = self.files.partition_point(|f| f.start + f.len <= offset);
        while !buf.is_empty() {
            let f = self
                .files
                .get(i)
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            let within = offset.saturating_sub(f.start);
            let n = usize::try_from(f.len.saturating_sub(within))
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let (head, rest) = buf.split_at_mut(n);
            f.file.read_exact_at(head, within)?;
            buf = rest;
            offset = offset.saturating_add(n as u64);
            i += 1;
        }
        Ok(())
    }
}

/// Bytes in memory (tests, small assets).
#[derive(Clone, Debug)]
pub struct BytesSource(pub bytes::Bytes);

impl DataSource for BytesSource {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|s| self.0.get(s..s.checked_add(buf.len())?))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn read_bytes(&self, offset: u64, len: usize) -> io::Result<bytes::Bytes> {
        let start =
            usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let end = start
            .checked_add(len)
            .filter(|e| *e <= self.0.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        Ok(self.0.slice(start..end))
    }
}

/// A [`DataSource`] read front to back, for building a commitment.
pub(crate) struct SourceReader<'a> {
    pub(crate) source: &'a dyn DataSource,
    pub(crate) pos: u64,
}

impl io::Read for SourceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.source.len().saturating_sub(self.pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let dst = buf
            .get_mut(..n)
            .ok_or_else(|| io::Error::other("read window"))?;
        self.source.read_exact_at(dst, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_source_concatenates_in_path_order() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("b"))?;
        std::fs::write(dir.path().join("b/x"), b"BX")?;
        std::fs::write(dir.path().join("a"), b"A1")?;
        std::fs::write(dir.path().join("c"), b"")?;
        std::fs::write(dir.path().join("d"), b"DDD")?;
        let s = DirSource::open(dir.path())?;
        let names: Vec<&str> = s.files().map(|f| f.0).collect();
        assert_eq!(names, ["a", "b/x", "c", "d"]);
        assert_eq!(s.len(), 7);
        let mut all = [0u8; 7];
        s.read_exact_at(&mut all, 0)?;
        assert_eq!(&all, b"A1BXDDD");
        let mut mid = [0u8; 4];
        s.read_exact_at(&mut mid, 1)?;
        assert_eq!(&mid, b"1BXD");
        let mut past = [0u8; 2];
        assert!(s.read_exact_at(&mut past, 6).is_err());
        Ok(())
    }

    #[test]
    fn dir_source_refuses_links() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("a"), b"A")?;
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("l"))?;
        assert!(DirSource::open(dir.path()).is_err());
        Ok(())
    }
}
