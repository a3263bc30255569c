//! Building a content commitment from a reader, with chunk hashing spread over an explicit
//! number of threads and memory bounded by the buffer pool (`2 × threads` chunks, at most
//! 32 MiB unless one chunk per thread needs more).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, Read};
use std::num::NonZeroUsize;
use std::sync::mpsc;

use tds_core::hash::Hash256;
use tds_core::merkle::{self, RootBuilder};
use tds_core::ErrorCode;

use super::{ChunkSize, Commitment, CommitmentError, MAX_CHUNKS};

/// Most bytes of chunk buffers the threaded builder keeps, unless the thread count needs
/// more (one buffer per thread): 32 MiB.
pub const BUFFER_BUDGET: usize = 32 * 1024 * 1024;

/// With several threads, chunks are handed to the hashers in batches of at least this many
/// bytes (whole chunks).
pub(crate) const BATCH_BYTES: usize = 1024 * 1024;

/// Told how many bytes have been hashed, in order, on the calling thread.
pub trait Progress {
    /// `bytes` more bytes have been hashed.
    fn advance(&self, bytes: u64);
}

impl<F: Fn(u64)> Progress for F {
    fn advance(&self, bytes: u64) {
        self(bytes)
    }
}

/// Why a commitment could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The reader failed. (The message carries the I/O error's own, so it is not also
    /// given as the source.)
    #[error("data: read failed: {0}")]
    Io(io::Error),
    /// More data than [`MAX_CHUNKS`] chunks can hold.
    #[error("data: more than {limit} chunks of {chunk_size} bytes; use a larger chunk size")]
    TooLarge {
        /// The chunk limit.
        limit: u64,
        /// The chunk size in use.
        chunk_size: u64,
    },
    /// The result does not form a valid commitment.
    #[error(transparent)]
    Commitment(#[from] CommitmentError),
}

impl From<io::Error> for BuildError {
    fn from(e: io::Error) -> Self {
        BuildError::Io(e)
    }
}

impl ErrorCode for BuildError {
    fn code(&self) -> &'static str {
        match self {
            BuildError::Io(_) => "manifest.data.read_failed",
            BuildError::TooLarge { .. } => "manifest.data.too_many_chunks",
            BuildError::Commitment(e) => e.code(),
        }
    }
}

/// What stopped a leaf stream: the builder or the consumer of the leaves.
pub(crate) enum StreamError<E> {
    Build(BuildError),
    Sink(E),
}

impl<E> From<io::Error> for StreamError<E> {
    fn from(e: io::Error) -> Self {
        StreamError::Build(BuildError::Io(e))
    }
}

/// One hashed chunk, as the builder hands it on (in index order).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Leaf {
    pub index: u64,
    pub len: usize,
    pub hash: Hash256,
}

/// Builds the commitment of an asset from any reader.
///
/// With `threads == 1` the calling thread reads and hashes. With more, the calling thread
/// reads batches of whole chunks (at least 1 MiB each) into a fixed pool of buffers
/// (`2 × threads`, but at most [`BUFFER_BUDGET`] bytes unless `threads` batches need more)
/// and puts them on one bounded queue that `threads` scoped hashing threads share:
/// whichever is free takes the next batch. Leaf hashes come back out of order and are
/// folded into the root in order. Nothing grows with the asset size: only the pool's
/// buffers are in memory, plus O(log n) hashes for the root. No thread outlives the call
/// and no global pool is used.
///
/// ```
/// use std::num::NonZeroUsize;
/// use tds_manifest::content::{ChunkSize, ContentBuilder};
///
/// let data = vec![7u8; 200_000];
/// let two = NonZeroUsize::new(2).ok_or("zero")?;
/// let c = ContentBuilder::new(ChunkSize::MIN, two).build(&data[..])?;
/// assert_eq!((c.size, c.chunks), (200_000, 4));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ContentBuilder<'p> {
    chunk_size: ChunkSize,
    threads: NonZeroUsize,
    progress: Option<&'p dyn Progress>,
}

impl std::fmt::Debug for ContentBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentBuilder")
            .field("chunk_size", &self.chunk_size)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl<'p> ContentBuilder<'p> {
    /// A builder cutting `chunk_size` chunks and hashing on `threads` threads.
    pub fn new(chunk_size: ChunkSize, threads: NonZeroUsize) -> Self {
        ContentBuilder {
            chunk_size,
            threads,
            progress: None,
        }
    }

    /// Reports progress (bytes hashed) to `progress`, from the calling thread.
    pub fn progress(mut self, progress: &'p dyn Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The chunk size.
    pub fn chunk_size(&self) -> ChunkSize {
        self.chunk_size
    }

    /// Reads `reader` to its end and returns the commitment.
    pub fn build<R: Read>(&self, reader: R) -> Result<Commitment, BuildError> {
        self.build_with_leaves(reader, |_, _| Ok(()))
    }

    /// Like [`build`](Self::build), and hands every leaf hash, in index order, to `on_leaf`
    /// (to keep a chunk-hash list, say). An error from `on_leaf` stops the build.
    pub fn build_with_leaves<R: Read>(
        &self,
        reader: R,
        mut on_leaf: impl FnMut(u64, &Hash256) -> io::Result<()>,
    ) -> Result<Commitment, BuildError> {
        let mut root = RootBuilder::new();
        let size = self
            .stream(reader, |leaf| {
                on_leaf(leaf.index, &leaf.hash)?;
                root.push(leaf.hash);
                Ok::<(), io::Error>(())
            })
            .map_err(|e| match e {
                StreamError::Build(b) => b,
                StreamError::Sink(io) => BuildError::Io(io),
            })?;
        Ok(Commitment::new(size, self.chunk_size, root.root())?)
    }

    /// The commitment of a regular file's bytes, from offset 0 to its length (wherever
    /// its cursor is), read with positional reads (`pread`). With more than one thread,
    /// each hashing thread reads its own batches of chunks, so the copy out of the page
    /// cache is spread over the threads too; the memory is one batch (at least 1 MiB,
    /// whole chunks) per thread. With one, the calling thread reads chunk by chunk. A file
    /// that is not a regular file (a pipe, a device) is read from its cursor to its end,
    /// as [`build`](Self::build) reads.
    ///
    /// The file's length is taken when the build starts; a file that changes size while it
    /// is hashed is an error.
    pub fn build_file(&self, file: &File) -> Result<Commitment, BuildError> {
        self.build_file_with_leaves(file, |_, _| Ok(()))
    }

    /// Like [`build_file`](Self::build_file), and hands every leaf hash, in index order, to
    /// `on_leaf`. An error from `on_leaf` stops the build.
    pub fn build_file_with_leaves(
        &self,
        file: &File,
        mut on_leaf: impl FnMut(u64, &Hash256) -> io::Result<()>,
    ) -> Result<Commitment, BuildError> {
        let meta = file.metadata()?;
        if !meta.is_file() {
            return self.build_with_leaves(file, on_leaf);
        }
        let len = meta.len();
        let mut root = RootBuilder::new();
        let progress = self.progress;
        let on_bytes = |n| {
            if let Some(p) = progress {
                p.advance(n);
            }
        };
        let sink = |leaf: Leaf| {
            on_leaf(leaf.index, &leaf.hash)?;
            root.push(leaf.hash);
            Ok::<(), io::Error>(())
        };
        if self.threads.get() == 1 {
            super::file_build::stream_file_inline(file, len, self.chunk_size, on_bytes, sink)
        } else {
            super::file_build::stream_file(
                file,
                len,
                self.chunk_size,
                self.threads.get(),
                on_bytes,
                sink,
            )
        }
        .map_err(|e| match e {
            StreamError::Build(b) => b,
            StreamError::Sink(io) => BuildError::Io(io),
        })?;
        if file.metadata()?.len() != len {
            return Err(BuildError::Io(io::Error::other(
                "the file changed size while it was hashed",
            )));
        }
        Ok(Commitment::new(len, self.chunk_size, root.root())?)
    }

    /// Like [`build`](Self::build), for a buffered reader. With one thread the chunks are
    /// hashed straight out of the reader's buffer, without copying them (an in-memory
    /// `&[u8]` is read with no copy at all); with more, as [`build`](Self::build).
    pub fn build_buffered<R: BufRead>(&self, reader: R) -> Result<Commitment, BuildError> {
        let mut root = RootBuilder::new();
        let mut push = |leaf: Leaf| {
            root.push(leaf.hash);
            Ok::<(), io::Error>(())
        };
        let size = if self.threads.get() == 1 {
            self.stream_bufread(reader, &mut push)
        } else {
            self.stream_threaded(reader, &mut push)
        }
        .map_err(|e| match e {
            StreamError::Build(b) => b,
            StreamError::Sink(io) => BuildError::Io(io),
        })?;
        Ok(Commitment::new(size, self.chunk_size, root.root())?)
    }

    /// The commitment of bytes already in memory, hashed in place (no copy): the chunks are
    /// split into `threads` contiguous runs, one per thread.
    pub fn build_slice(&self, data: &[u8]) -> Result<Commitment, BuildError> {
        let cs = self.chunk_size.as_usize();
        let chunks: Vec<&[u8]> = data.chunks(cs).collect();
        if chunks.len() as u64 > MAX_CHUNKS {
            return Err(self.too_large());
        }
        let per = chunks.len().div_ceil(self.threads.get()).max(1);
        let runs: Result<Vec<Vec<Hash256>>, _> = std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .chunks(per)
                .map(|run| {
                    s.spawn(move || run.iter().map(|c| merkle::leaf_hash(c)).collect::<Vec<_>>())
                })
                .collect();
            handles.into_iter().map(|h| h.join()).collect()
        });
        // A hashing thread that died is reported; never a root over missing leaves.
        let runs = runs.map_err(|_| BuildError::Io(io::Error::other("a hashing thread failed")))?;
        let mut root = RootBuilder::new();
        for leaf in runs.into_iter().flatten() {
            root.push(leaf);
        }
        if let Some(p) = self.progress {
            p.advance(data.len() as u64);
        }
        Ok(Commitment::new(
            data.len() as u64,
            self.chunk_size,
            root.root(),
        )?)
    }

    fn too_large(&self) -> BuildError {
        BuildError::TooLarge {
            limit: MAX_CHUNKS,
            chunk_size: self.chunk_size.get(),
        }
    }

    /// Reads `reader` to its end, handing each leaf to `sink` in index order; returns the
    /// number of bytes read.
    pub(crate) fn stream<R: Read, E>(
        &self,
        reader: R,
        sink: impl FnMut(Leaf) -> Result<(), E>,
    ) -> Result<u64, StreamError<E>> {
        if self.threads.get() == 1 {
            self.stream_inline(reader, sink)
        } else {
            self.stream_threaded(reader, sink)
        }
    }

    fn stream_inline<R: Read, E>(
        &self,
        mut reader: R,
        mut sink: impl FnMut(Leaf) -> Result<(), E>,
    ) -> Result<u64, StreamError<E>> {
        let cs = self.chunk_size.as_usize();
        let mut buf = vec![0u8; cs];
        let mut total = 0u64;
        let mut index = 0u64;
        loop {
            let n = read_full(&mut reader, &mut buf)?;
            if n == 0 {
                break;
            }
            if index >= MAX_CHUNKS {
                return Err(StreamError::Build(self.too_large()));
            }
            #[expect(clippy::expect_used, reason = "read_full returns at most buf.len()")]
            let hash = merkle::leaf_hash(buf.get(..n).expect("n <= buf.len()"));
            sink(Leaf {
                index,
                len: n,
                hash,
            })
            .map_err(StreamError::Sink)?;
            if let Some(p) = self.progress {
                p.advance(n as u64);
            }
            total += n as u64;
            index += 1;
            if n < cs {
                break;
            }
        }
        Ok(total)
    }

    fn stream_bufread<R: BufRead, E>(
        &self,
        mut reader: R,
        mut sink: impl FnMut(Leaf) -> Result<(), E>,
    ) -> Result<u64, StreamError<E>> {
        let cs = self.chunk_size.as_usize();
        let mut total = 0u64;
        let mut index = 0u64;
        loop {
            let mut ctx = tds_core::hash::Hasher::plain();
            ctx.update(&[0x00]);
            let mut filled = 0usize;
            while filled < cs {
                let buf = match reader.fill_buf() {
                    Ok(b) => b,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                };
                if buf.is_empty() {
                    break;
                }
                let take = (cs - filled).min(buf.len());
                #[expect(clippy::expect_used, reason = "take <= buf.len()")]
                ctx.update(buf.get(..take).expect("take <= buf.len()"));
                reader.consume(take);
                filled += take;
            }
            if filled == 0 {
                break;
            }
            if index >= MAX_CHUNKS {
                return Err(StreamError::Build(self.too_large()));
            }
            let hash = ctx.finish();
            sink(Leaf {
                index,
                len: filled,
                hash,
            })
            .map_err(StreamError::Sink)?;
            if let Some(p) = self.progress {
                p.advance(filled as u64);
            }
            total += filled as u64;
            index += 1;
            if filled < cs {
                break;
            }
        }
        Ok(total)
    }

    fn stream_threaded<R: Read, E>(
        &self,
        mut reader: R,
        mut sink: impl FnMut(Leaf) -> Result<(), E>,
    ) -> Result<u64, StreamError<E>> {
        let cs = self.chunk_size.as_usize();
        let threads = self.threads.get();
        // Work goes out in batches of whole chunks, at least BATCH_BYTES each, so small
        // chunks cost one hand-over per batch rather than per chunk.
        let per_batch = (BATCH_BYTES / cs.max(1)).max(1);
        let batch = cs.saturating_mul(per_batch);
        // Two buffers per thread keep every hasher fed while the reader fills the next
        // batch, but never more than BUFFER_BUDGET bytes of them (at least one per thread).
        let max_buffers = threads
            .saturating_mul(2)
            .min(BUFFER_BUDGET / batch.max(1))
            .max(threads);
        let progress = self.progress;

        std::thread::scope(|s| {
            // Results carry the buffer back, so the result channel is also the free pool;
            // it never holds more than `max_buffers` items.
            let (res_tx, res_rx) = mpsc::channel::<(Vec<Leaf>, Vec<u8>)>();
            // One queue shared by the hashers: whichever is free takes the next batch.
            let (work, rx) = mpsc::sync_channel::<(u64, usize, Vec<u8>)>(max_buffers);
            let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
            for _ in 0..threads {
                let res_tx = res_tx.clone();
                let rx = rx.clone();
                s.spawn(move || loop {
                    let next = match rx.lock() {
                        Ok(queue) => queue.recv(),
                        Err(_) => break,
                    };
                    let Ok((first, len, buf)) = next else { break };
                    #[expect(
                        clippy::expect_used,
                        reason = "the reader sends len <= buf.len() (read_full)"
                    )]
                    let leaves = buf
                        .get(..len)
                        .expect("len <= buf.len()")
                        .chunks(cs)
                        .zip(first..)
                        .map(|(chunk, index)| Leaf {
                            index,
                            len: chunk.len(),
                            hash: merkle::leaf_hash(chunk),
                        })
                        .collect();
                    if res_tx.send((leaves, buf)).is_err() {
                        break;
                    }
                });
            }
            drop(res_tx);

            let mut free: Vec<Vec<u8>> = Vec::with_capacity(max_buffers);
            let mut allocated = 0usize;
            let mut pending: BTreeMap<u64, Leaf> = BTreeMap::new();
            let mut next = 0u64;
            let mut total = 0u64;

            let mut accept = |(leaves, buf): (Vec<Leaf>, Vec<u8>),
                              free: &mut Vec<Vec<u8>>,
                              pending: &mut BTreeMap<u64, Leaf>,
                              next: &mut u64|
             -> Result<(), StreamError<E>> {
                free.push(buf);
                for leaf in leaves {
                    pending.insert(leaf.index, leaf);
                }
                while let Some(leaf) = pending.remove(next) {
                    sink(leaf).map_err(StreamError::Sink)?;
                    if let Some(p) = progress {
                        p.advance(leaf.len as u64);
                    }
                    *next += 1;
                }
                Ok(())
            };

            let mut index = 0u64;
            loop {
                let mut buf = match free.pop() {
                    Some(b) => b,
                    None if allocated < max_buffers => {
                        allocated += 1;
                        vec![0u8; batch]
                    }
                    None => {
                        let r = res_rx
                            .recv()
                            .map_err(|_| io::Error::other("a hashing thread failed"))?;
                        accept(r, &mut free, &mut pending, &mut next)?;
                        free.pop()
                            .ok_or_else(|| io::Error::other("buffer pool is empty"))?
                    }
                };
                let n = read_full(&mut reader, &mut buf)?;
                if n == 0 {
                    break;
                }
                let chunks = n.div_ceil(cs) as u64;
                if index.saturating_add(chunks) > MAX_CHUNKS {
                    return Err(StreamError::Build(self.too_large()));
                }
                total += n as u64;
                work.send((index, n, buf))
                    .map_err(|_| io::Error::other("a hashing thread failed"))?;
                index += chunks;
                if n < batch {
                    break;
                }
                while let Ok(r) = res_rx.try_recv() {
                    accept(r, &mut free, &mut pending, &mut next)?;
                }
            }
            drop(work);
            for r in res_rx.iter() {
                accept(r, &mut free, &mut pending, &mut next)?;
            }
            if next != index {
                return Err(StreamError::Build(BuildError::Io(io::Error::other(
                    "a hashing thread failed",
                ))));
            }
            Ok(total)
        })
    }
}

/// Reads until `buf` is full or the reader ends; returns the bytes read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..) {
        if rest.is_empty() {
            break;
        }
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(cs: u32, threads: usize) -> ContentBuilder<'static> {
        ContentBuilder::new(
            ChunkSize::for_tests(cs).unwrap(),
            NonZeroUsize::new(threads).unwrap(),
        )
    }

    #[test]
    fn threads_and_slices_agree() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for len in [0, 1, 63, 64, 65, 1000, 10_000] {
            let d = &data[..len];
            let one = builder(64, 1).build(d).unwrap();
            assert_eq!(builder(64, 1).build_buffered(d).unwrap(), one);
            // A buffered reader whose buffer does not line up with the chunks.
            let odd = std::io::BufReader::with_capacity(7, d);
            assert_eq!(builder(64, 1).build_buffered(odd).unwrap(), one);
            for t in [2, 3, 8] {
                assert_eq!(
                    builder(64, t).build(d).unwrap(),
                    one,
                    "len {len} threads {t}"
                );
                assert_eq!(builder(64, t).build_buffered(d).unwrap(), one);
                assert_eq!(builder(64, t).build_slice(d).unwrap(), one);
            }
            let leaves: Vec<_> = d.chunks(64).map(merkle::leaf_hash).collect();
            assert_eq!(one.root, merkle::MemoryTree::from_leaves(leaves).root());
        }
    }

    #[test]
    fn sink_errors_stop_the_build() {
        let data = vec![1u8; 1000];
        let err = builder(16, 4)
            .build_with_leaves(&data[..], |i, _| {
                if i == 10 {
                    Err(io::Error::other("stop"))
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        assert!(err.to_string().contains("stop"), "{err}");
    }

    #[test]
    fn reader_errors_are_reported() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                let n = buf.len().min(self.0);
                self.0 -= n;
                Ok(n)
            }
        }
        for t in [1, 2] {
            let err = builder(64, t).build(Failing(1000)).unwrap_err();
            assert!(err.to_string().contains("disk on fire"), "{err}");
        }
    }

    #[test]
    fn progress_adds_up() {
        let data = vec![3u8; 5000];
        let seen = std::cell::Cell::new(0u64);
        let p = |n: u64| seen.set(seen.get() + n);
        builder(64, 3).progress(&p).build(&data[..]).unwrap();
        assert_eq!(seen.get(), 5000);
    }
}
