//! The file abstraction under the log store: a directory of named files with positional
//! reads and writes and an explicit data sync.
//!
//! [`DirStorage`] is the operating system's directory. [`SimStorage`] keeps files in
//! memory and remembers which writes were synced, so a test can simulate a power loss
//! ([`SimStorage::power_loss`]): every write not yet synced is dropped, kept, or torn.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// One open file.
pub trait StorageFile: Send + Sync {
    /// Reads exactly `buf.len()` bytes at `offset`; fewer available is an
    /// [`io::ErrorKind::UnexpectedEof`] error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, extending the file if needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every write so far durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// The current length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends (with zeros).
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// A directory of files.
pub trait Storage: Send + Sync {
    /// Opens `name`; `write` opens it for writing and creates it if missing.
    fn open(&self, name: &str, write: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Whether `name` exists.
    fn exists(&self, name: &str) -> bool;
    /// Takes the single-writer lock; it is held while the returned guard lives and is
    /// released when the process ends, however it ends.
    fn lock(&self) -> io::Result<Box<dyn Send + Sync>>;
    /// Makes the creation of new files durable (`fsync` of the directory).
    fn sync_dir(&self) -> io::Result<()>;
}

/// Files in a directory of the file system.
#[derive(Clone, Debug)]
pub struct DirStorage {
    dir: PathBuf,
}

impl DirStorage {
    /// Storage in `dir`, which must exist.
    pub fn new(dir: &Path) -> Self {
        DirStorage {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

struct OsFile(File);

impl StorageFile for OsFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Storage for DirStorage {
    fn open(&self, name: &str, write: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut o = OpenOptions::new();
        o.read(true);
        if write {
            o.write(true).create(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                o.mode(0o600);
            }
        }
        Ok(Arc::new(OsFile(o.open(self.dir.join(name))?)))
    }

    fn exists(&self, name: &str) -> bool {
        self.dir.join(name).exists()
    }

    fn lock(&self) -> io::Result<Box<dyn Send + Sync>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.dir.join("LOCK"))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "{}: the log is locked by another writer (a running node?): {e}",
                        self.dir.display()
                    ),
                )
            },
        )?;
        Ok(Box::new(f))
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}

/// In-memory storage that tracks synced and unsynced writes, for crash tests.
#[derive(Clone, Default)]
pub struct SimStorage {
    inner: Arc<Mutex<SimState>>,
}

#[derive(Default)]
struct SimState {
    files: BTreeMap<String, Arc<SimFileData>>,
    /// Operations left before the simulated power goes out; `None` is unlimited.
    ops_left: Option<u64>,
    dead: bool,
}

#[derive(Default)]
struct SimFileData {
    state: Mutex<SimFileState>,
}

#[derive(Default, Clone)]
struct SimFileState {
    /// `sync_data` calls that succeeded.
    syncs: u64,
    /// What a reader sees now.
    current: Vec<u8>,
    /// What survives a power loss for sure.
    durable: Vec<u8>,
    /// Writes since the last sync, in order (offset, bytes); `set_len` is (len, empty)
    /// with `truncate` set.
    unsynced: Vec<(u64, Vec<u8>, bool)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn dead() -> io::Error {
    io::Error::other("simulated power loss")
}

impl SimStorage {
    /// Empty storage with no power limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `ops` more write or sync operations succeed, then fails every operation as
    /// if the power had gone.
    pub fn fail_after(&self, ops: u64) {
        lock(&self.inner).ops_left = Some(ops);
    }

    fn tick(&self) -> io::Result<()> {
        let mut s = lock(&self.inner);
        if s.dead {
            return Err(dead());
        }
        if let Some(n) = s.ops_left.as_mut() {
            if *n == 0 {
                s.dead = true;
                return Err(dead());
            }
            *n -= 1;
        }
        Ok(())
    }

    /// Simulates a power loss and restart: each write not synced is, at random (from
    /// `seed`), lost, kept, or torn (a prefix kept); then the storage works again.
    pub fn power_loss(&self, seed: u64) {
        let mut rng = seed | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut s = lock(&self.inner);
        for f in s.files.values() {
            let mut st = lock(&f.state);
            let mut img = st.durable.clone();
            let writes = std::mem::take(&mut st.unsynced);
            for (off, data, truncate) in writes {
                let choice = next() % 3;
                if truncate {
                    if choice != 0 {
                        resize(&mut img, off);
                    }
                    continue;
                }
                let keep = match choice {
                    0 => 0,
                    1 => data.len(),
                    // Below data.len() + 1, so it fits a usize.
                    _ => (next() % (data.len() as u64 + 1)) as usize,
                };
                let (kept, _) = data.split_at(keep.min(data.len()));
                apply(&mut img, off, kept);
            }
            st.current = img.clone();
            st.durable = img;
        }
        s.dead = false;
        s.ops_left = None;
    }

    /// The current bytes of a file (for tampering tests).
    pub fn read_file(&self, name: &str) -> Option<Vec<u8>> {
        let s = lock(&self.inner);
        s.files.get(name).map(|f| lock(&f.state).current.clone())
    }

    /// Replaces the bytes of a file, durably (for tampering tests); creates it if missing.
    pub fn write_file(&self, name: &str, bytes: &[u8]) {
        let mut s = lock(&self.inner);
        let f = s.files.entry(name.to_owned()).or_default();
        let mut st = lock(&f.state);
        st.current = bytes.to_vec();
        st.durable = bytes.to_vec();
        st.unsynced.clear();
    }

    /// How many times `sync_data` succeeded on file `name` (0 for a missing file).
    pub fn syncs(&self, name: &str) -> u64 {
        let s = lock(&self.inner);
        s.files.get(name).map_or(0, |f| lock(&f.state).syncs)
    }
}

/// Truncates or zero-extends a simulated file image to `len`, a length recorded by
/// [`SimFile::set_len`].
#[expect(
    clippy::expect_used,
    reason = "set_len refuses a length that does not fit a usize before recording it"
)]
fn resize(img: &mut Vec<u8>, len: u64) {
    img.resize(usize::try_from(len).expect("checked by set_len"), 0);
}

fn apply(img: &mut Vec<u8>, off: u64, data: &[u8]) {
    let Ok(off) = usize::try_from(off) else {
        return;
    };
    let end = off.saturating_add(data.len());
    if img.len() < end {
        img.resize(end, 0);
    }
    if let Some(dst) = img.get_mut(off..end) {
        dst.copy_from_slice(data);
    }
}

struct SimFile {
    data: Arc<SimFileData>,
    storage: SimStorage,
}

impl StorageFile for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if lock(&self.storage.inner).dead {
            return Err(dead());
        }
        let st = lock(&self.data.state);
        let off = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = st
            .current
            .get(off..off.saturating_add(buf.len()))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.storage.tick()?;
        let mut st = lock(&self.data.state);
        apply(&mut st.current, offset, buf);
        st.unsynced.push((offset, buf.to_vec(), false));
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        self.storage.tick()?;
        let mut st = lock(&self.data.state);
        let writes = std::mem::take(&mut st.unsynced);
        for (off, data, truncate) in writes {
            if truncate {
                resize(&mut st.durable, off);
            } else {
                apply(&mut st.durable, off, &data);
            }
        }
        st.syncs += 1;
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.data.state).current.len() as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.storage.tick()?;
        let mut st = lock(&self.data.state);
        st.current
            .resize(usize::try_from(len).map_err(io::Error::other)?, 0);
        st.unsynced.push((len, Vec::new(), true));
        Ok(())
    }
}

impl Storage for SimStorage {
    fn open(&self, name: &str, write: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut s = lock(&self.inner);
        if s.dead {
            return Err(dead());
        }
        let data = match s.files.get(name) {
            Some(d) => d.clone(),
            None if write => {
                let d = Arc::new(SimFileData::default());
                s.files.insert(name.to_owned(), d.clone());
                d
            }
            None => return Err(io::ErrorKind::NotFound.into()),
        };
        Ok(Arc::new(SimFile {
            data,
            storage: self.clone(),
        }))
    }

    fn exists(&self, name: &str) -> bool {
        lock(&self.inner).files.contains_key(name)
    }

    fn lock(&self) -> io::Result<Box<dyn Send + Sync>> {
        Ok(Box::new(()))
    }

    fn sync_dir(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Replaces the bytes of a simulated file (tampering tests).
impl SimStorage {
    /// Overwrites one byte of a file in place, durably.
    pub fn flip_byte(&self, name: &str, offset: u64) -> bool {
        let s = lock(&self.inner);
        let Some(f) = s.files.get(name) else {
            return false;
        };
        let mut st = lock(&f.state);
        let Ok(off) = usize::try_from(offset) else {
            return false;
        };
        let Some(b) = st.current.get_mut(off) else {
            return false;
        };
        *b ^= 0x01;
        st.durable = st.current.clone();
        true
    }
}
