//! `tds-bench kv`: group-committed connector store commits against raw redb commits.
//!
//! `C` tokio tasks (a runtime with one worker per core) each commit single-put batches
//! through [`RedbStore::commit_async`](tds_connector::store::Store::commit_async), waiting
//! for each to be durable before the next, until `N` are done. Then, on a fresh file of the
//! same kind, one thread commits one redb write transaction per put
//! (`Durability::Immediate`): the rate one sync per commit allows.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tds_connector::store::{Batch, RedbStore, Store, StoreError, Table};

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum KvBenchError {
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// redb (the raw baseline) refused.
    #[error("raw redb: {0}")]
    Redb(String),
    /// The runtime or a task failed.
    #[error("runtime: {0}")]
    Runtime(String),
}

fn redb_err(e: impl std::fmt::Display) -> KvBenchError {
    KvBenchError::Redb(e.to_string())
}

/// What a run measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KvBenchReport {
    /// Commits made through the store.
    pub count: u64,
    /// Concurrent tasks.
    pub concurrency: u64,
    /// Durable commits per second through the store's group commit.
    pub commits_per_sec: f64,
    /// Batches acknowledged per write transaction (per sync).
    pub batches_per_fsync: f64,
    /// Durable commits per second with one redb transaction per put.
    pub raw_fsync_per_sec: f64,
}

impl KvBenchReport {
    /// The JSON line.
    pub fn json(&self) -> String {
        serde_json::json!({
            "count": self.count,
            "concurrency": self.concurrency,
            "commits_per_sec": self.commits_per_sec.round(),
            "batches_per_fsync": (self.batches_per_fsync * 100.0).round() / 100.0,
            "raw_fsync_per_sec": self.raw_fsync_per_sec.round(),
        })
        .to_string()
    }
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// Runs the bench in `dir` (two files are made there): `count` commits from `concurrency`
/// tasks, then `raw` single-put redb commits (at most `count`).
pub fn run(
    dir: &Path,
    count: u64,
    concurrency: u64,
    raw: u64,
) -> Result<KvBenchReport, KvBenchError> {
    let concurrency = concurrency.max(1);
    let store = Arc::new(RedbStore::open(&dir.join("grouped"))?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .build()
        .map_err(|e| KvBenchError::Runtime(e.to_string()))?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (store, next) = (store.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= count {
                            return Ok::<(), StoreError>(());
                        }
                        let mut b = Batch::new();
                        b.put(Table::Transfers, n.to_be_bytes(), [0u8; 64]);
                        store.commit_async(b).await?;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await
                .map_err(|e| KvBenchError::Runtime(e.to_string()))??;
        }
        Ok::<(), KvBenchError>(())
    })?;
    let grouped_secs = started.elapsed().as_secs_f64();
    let stats = store.stats();
    drop(store);

    let raw = raw.min(count).max(1);
    let db = redb::Database::create(dir.join("raw.redb")).map_err(redb_err)?;
    let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("transfers");
    let started = Instant::now();
    for n in 0..raw {
        let mut txn = db.begin_write().map_err(redb_err)?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(redb_err)?;
        {
            let mut t = txn.open_table(def).map_err(redb_err)?;
            t.insert(&n.to_be_bytes()[..], &[0u8; 64][..])
                .map_err(redb_err)?;
        }
        txn.commit().map_err(redb_err)?;
    }
    let raw_secs = started.elapsed().as_secs_f64();

    Ok(KvBenchReport {
        count,
        concurrency,
        commits_per_sec: rate(count, grouped_secs),
        batches_per_fsync: if stats.transactions > 0 {
            stats.batches as f64 / stats.transactions as f64
        } else {
            0.0
        },
        raw_fsync_per_sec: rate(raw, raw_secs),
    })
}
