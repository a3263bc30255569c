//! Hashing a regular file with positional reads: each hashing thread reads its own
//! batches (`pread`), so the copy out of the page cache runs in parallel with, and on the
//! same threads as, the hashing (docs/decisions/0005, addendum of 2026-12).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{mpsc, Arc, Mutex};

use tds_core::merkle;

use super::build::{BuildError, Leaf, StreamError, BATCH_BYTES};
use super::{ChunkSize, MAX_CHUNKS};

/// Batches handed out ahead of the one being folded, per thread: bounds the leaves that
/// wait out of order (and keeps every thread busy while one is slow).
const WINDOW_PER_THREAD: u64 = 2;

/// Hashes the first `len` bytes of `file` on `threads` (≥ 2) threads, each reading whole
/// batches of chunks with positional reads into its own buffer; leaves go to `sink` in
/// index order on the calling thread. Returns `len`.
pub(crate) fn stream_file<E>(
    file: &File,
    len: u64,
    chunk_size: ChunkSize,
    threads: usize,
    mut on_bytes: impl FnMut(u64),
    mut sink: impl FnMut(Leaf) -> Result<(), E>,
) -> Result<u64, StreamError<E>> {
    let cs = chunk_size.get();
    let chunks = chunk_size.chunks_for(len);
    if chunks > MAX_CHUNKS {
        return Err(StreamError::Build(BuildError::TooLarge {
            limit: MAX_CHUNKS,
            chunk_size: cs,
        }));
    }
    // Whole chunks per batch, at least BATCH_BYTES: one buffer per thread.
    let per_batch = (BATCH_BYTES as u64 / cs).max(1);
    let batch_bytes = cs.saturating_mul(per_batch);
    let batches = chunks.div_ceil(per_batch);
    let buf_len = usize::try_from(batch_bytes.min(len.max(1)))
        .map_err(|_| io::Error::other("batch does not fit in memory"))?;
    let window = (threads as u64).saturating_mul(WINDOW_PER_THREAD + 1);

    std::thread::scope(|s| {
        let (res_tx, res_rx) = mpsc::channel::<io::Result<(u64, Vec<Leaf>)>>();
        // Batch numbers to hash; the calling thread issues at most `window` ahead of the
        // first one not yet folded.
        let (work, work_rx) = mpsc::channel::<u64>();
        let work_rx = Arc::new(Mutex::new(work_rx));
        let mut hashers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let res_tx = res_tx.clone();
            let work_rx = Arc::clone(&work_rx);
            hashers.push(s.spawn(move || {
                // A hasher that dies says so, so the fold never waits for its batch.
                let _failed = ReportPanic(&res_tx);
                let mut buf = vec![0u8; buf_len];
                loop {
                    let next = match work_rx.lock() {
                        Ok(q) => q.recv(),
                        Err(_) => break,
                    };
                    let Ok(b) = next else { break };
                    let start = b.saturating_mul(batch_bytes);
                    let n = len.saturating_sub(start).min(batch_bytes);
                    let result = usize::try_from(n)
                        .ok()
                        .and_then(|n| buf.get_mut(..n))
                        .ok_or_else(|| io::Error::other("batch larger than its buffer"))
                        .and_then(|dst| {
                            read_exact_at(file, dst, start)?;
                            let first = b.saturating_mul(per_batch);
                            Ok(dst
                                .chunks(chunk_size.as_usize())
                                .zip(first..)
                                .map(|(chunk, index)| Leaf {
                                    index,
                                    len: chunk.len(),
                                    hash: merkle::leaf_hash(chunk),
                                })
                                .collect::<Vec<_>>())
                        });
                    let failed = result.is_err();
                    if res_tx.send(result.map(|leaves| (b, leaves))).is_err() || failed {
                        break;
                    }
                }
            }));
        }
        drop(res_tx);
        let folded = fold(&work, &res_rx, batches, window, &mut on_bytes, &mut sink);
        // Stop the hashers, then join them here (a panic becomes an error, not a panic of
        // the whole scope).
        drop(work);
        let died = hashers.into_iter().any(|h| h.join().is_err());
        match folded {
            Ok(()) if died => Err(io::Error::other("a hashing thread failed").into()),
            Ok(()) => Ok(len),
            Err(e) => Err(e),
        }
    })
}

/// Sends an error on the result channel if its thread unwinds.
struct ReportPanic<'a>(&'a mpsc::Sender<io::Result<(u64, Vec<Leaf>)>>);

impl Drop for ReportPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self
                .0
                .send(Err(io::Error::other("a hashing thread failed")));
        }
    }
}

/// Hands out batch numbers at most `window` ahead of the first not yet folded, and folds
/// the hashers' leaves into `sink` in index order.
fn fold<E>(
    work: &mpsc::Sender<u64>,
    res_rx: &mpsc::Receiver<io::Result<(u64, Vec<Leaf>)>>,
    batches: u64,
    window: u64,
    on_bytes: &mut impl FnMut(u64),
    sink: &mut impl FnMut(Leaf) -> Result<(), E>,
) -> Result<(), StreamError<E>> {
    let mut issued = 0u64;
    while issued < batches.min(window) {
        work.send(issued)
            .map_err(|_| io::Error::other("a hashing thread failed"))?;
        issued += 1;
    }
    let mut pending: BTreeMap<u64, Vec<Leaf>> = BTreeMap::new();
    let mut folded = 0u64;
    while folded < batches {
        let (b, leaves) = res_rx
            .recv()
            .map_err(|_| io::Error::other("a hashing thread failed"))??;
        pending.insert(b, leaves);
        while let Some(leaves) = pending.remove(&folded) {
            for leaf in leaves {
                on_bytes(leaf.len as u64);
                sink(leaf).map_err(StreamError::Sink)?;
            }
            folded += 1;
            if issued < batches {
                work.send(issued)
                    .map_err(|_| io::Error::other("a hashing thread failed"))?;
                issued += 1;
            }
        }
    }
    Ok(())
}

/// Hashes the first `len` bytes of `file` on the calling thread with positional reads,
/// one chunk at a time (the same bytes [`stream_file`] hashes, wherever the file's cursor
/// is). Returns `len`.
pub(crate) fn stream_file_inline<E>(
    file: &File,
    len: u64,
    chunk_size: ChunkSize,
    mut on_bytes: impl FnMut(u64),
    mut sink: impl FnMut(Leaf) -> Result<(), E>,
) -> Result<u64, StreamError<E>> {
    let cs = chunk_size.get();
    let chunks = chunk_size.chunks_for(len);
    if chunks > MAX_CHUNKS {
        return Err(StreamError::Build(BuildError::TooLarge {
            limit: MAX_CHUNKS,
            chunk_size: cs,
        }));
    }
    // One chunk, or the whole file if it is shorter (a length beyond usize is longer).
    let short_file = usize::try_from(len)
        .ok()
        .filter(|&l| l < chunk_size.as_usize());
    let mut buf = vec![0u8; short_file.unwrap_or(chunk_size.as_usize())];
    for index in 0..chunks {
        let start = index * cs;
        let n = len.saturating_sub(start).min(cs);
        let dst = usize::try_from(n)
            .ok()
            .and_then(|n| buf.get_mut(..n))
            .ok_or_else(|| io::Error::other("chunk larger than its buffer"))?;
        read_exact_at(file, dst, start)?;
        let leaf = Leaf {
            index,
            len: dst.len(),
            hash: merkle::leaf_hash(dst),
        };
        on_bytes(n);
        sink(leaf).map_err(StreamError::Sink)?;
    }
    Ok(len)
}

/// `read_exact_at`, naming a file that became shorter while it was hashed.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file became shorter while it was hashed",
            )
        } else {
            e
        }
    })
}
