//! The provenance-log durability benchmark (`tds-bench log`, `tds log bench`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tds_core::hash::Hash256;
use tds_core::{SigningKey, Timestamp};
use tds_provenance::event::{Annotation, Event, EventBody};
use tds_provenance::store::{FileStore, OpenOptions};
use tds_provenance::{DirStorage, Log, LogError};

/// Why a benchmark failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The log refused an append, or could not be opened.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The node key could not be made or read.
    #[error("{path}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: tds_core::key::KeyError,
    },
    /// Writing the output, creating the home or starting the runtime failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A writer thread or task panicked.
    #[error("a bench writer panicked")]
    WriterPanicked,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

/// What to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogBench {
    /// Events to append.
    pub count: u64,
    /// Concurrent writers (at least 1).
    pub concurrency: u64,
    /// Print "acked K" each time a batch is durable (K = total durable so far).
    pub report_acks: bool,
    /// Writers are blocked OS threads instead of async tasks on a runtime with one
    /// worker per core.
    pub threads: bool,
}

/// What a run measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogBenchReport {
    /// Appends made.
    pub appends: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

impl LogBenchReport {
    /// Appends per second (0 when no time passed).
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.appends as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// The output, shared by the writers: one line at a time, flushed.
type Out = Arc<Mutex<Box<dyn Write + Send>>>;

fn print(out: &Out, line: &str) -> Result<(), BenchError> {
    let mut o = out.lock().map_err(|_| BenchError::WriterPanicked)?;
    writeln!(o, "{line}").map_err(io("output"))?;
    o.flush().map_err(io("output"))
}

/// Prints "acked K" when K (everything durable so far) is more than was last printed.
struct AckReporter {
    last: Mutex<u64>,
    out: Out,
}

impl AckReporter {
    fn report(&self, durable: u64) -> Result<(), BenchError> {
        let mut last = self.last.lock().map_err(|_| BenchError::WriterPanicked)?;
        if durable > *last {
            *last = durable;
            print(&self.out, &format!("acked {durable}"))?;
        }
        Ok(())
    }
}

fn bench_event(actor: Hash256, t: u64, i: u64) -> Result<Event, BenchError> {
    let text = Annotation::new(&format!("bench {t}/{i}")).map_err(LogError::from)?;
    Ok(Event::new(
        Timestamp::now(),
        actor,
        EventBody::Annotation { text },
    ))
}

/// Opens the log of a node home for writing as `tds` does (`<home>/log`, signed by
/// `<home>/node.key`), creating the home (mode 0700) and the key if missing. Returns the
/// log and the key's participant id.
pub fn open_home(home: &Path) -> Result<(Log<FileStore>, Hash256), BenchError> {
    let dir = home.join("log");
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(&dir)
        .map_err(io(format!("{}", dir.display())))?;
    let key_path = home.join("node.key");
    let key_err = |source| BenchError::Key {
        path: key_path.clone(),
        source,
    };
    if !key_path.exists() {
        SigningKey::generate()
            .and_then(|k| k.write_file(&key_path))
            .map_err(key_err)?;
    }
    let key = SigningKey::read_file(&key_path).map_err(key_err)?;
    let actor = key.id();
    let store = FileStore::open(Arc::new(DirStorage::new(&dir)), OpenOptions::writer())
        .map_err(LogError::from)?;
    if let Some(cut) = store.recovery().describe_cut() {
        eprintln!("note: {}: {cut}", dir.display());
    }
    Ok((Log::new(store, key), actor))
}

/// Appends `opts.count` annotation events by `actor` to `log` from `opts.concurrency`
/// writers, each waiting for its own append to be durable before the next. Writes the
/// "acked K" lines (if asked) and then one JSON summary line to `out`.
pub fn run(
    log: Arc<Log<FileStore>>,
    actor: Hash256,
    opts: &LogBench,
    out: Box<dyn Write + Send>,
) -> Result<LogBenchReport, BenchError> {
    let out: Out = Arc::new(Mutex::new(out));
    let concurrency = opts.concurrency.max(1);
    let count = opts.count;
    let report_acks = opts.report_acks;
    let acks = Arc::new(AckReporter {
        last: Mutex::new(0),
        out: out.clone(),
    });
    let per = count / concurrency;
    let extra = count % concurrency;
    let writes = |t: u64| per + u64::from(t < extra);
    let start = Instant::now();
    if opts.threads {
        let handles: Vec<_> = (0..concurrency)
            .map(|t| {
                let (log, acks) = (log.clone(), acks.clone());
                let n = writes(t);
                std::thread::spawn(move || -> Result<(), BenchError> {
                    for i in 0..n {
                        log.append(&bench_event(actor, t, i)?)?;
                        if report_acks {
                            // Everything below the size is durable once an append returns.
                            acks.report(log.size())?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| BenchError::WriterPanicked)??;
        }
    } else {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(io("tokio runtime"))?;
        rt.block_on(async {
            let tasks: Vec<_> = (0..concurrency)
                .map(|t| {
                    let (log, acks) = (log.clone(), acks.clone());
                    let n = writes(t);
                    tokio::spawn(async move {
                        for i in 0..n {
                            log.append_async(&bench_event(actor, t, i)?).await?;
                            if report_acks {
                                acks.report(log.size())?;
                            }
                        }
                        Ok::<(), BenchError>(())
                    })
                })
                .collect();
            for task in tasks {
                task.await.map_err(|_| BenchError::WriterPanicked)??;
            }
            Ok::<(), BenchError>(())
        })?;
    }
    let report = LogBenchReport {
        appends: count,
        seconds: start.elapsed().as_secs_f64(),
    };
    let writers = if opts.threads { "threads" } else { "tasks" };
    print(
        &out,
        &format!(
            "{{\"appends\": {count}, \"seconds\": {:.3}, \"appends_per_sec\": {:.0}, \"writers\": \"{writers}\", \"concurrency\": {concurrency}}}",
            report.seconds,
            report.rate()
        ),
    )?;
    Ok(report)
}
