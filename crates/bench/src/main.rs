//! `tds-bench`: benchmarks that drive TDS as a node would (see the crate README).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

/// TDS benchmarks.
#[derive(Debug, Parser)]
#[command(name = "tds-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Disk benchmark of the provenance log: append COUNT annotation events from
    /// CONCURRENCY writers, each waiting for its own append to be durable before the next.
    Log {
        /// The node's data directory (created with its log and key if missing).
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        /// Events to append.
        #[arg(long)]
        count: u64,
        /// Concurrent writers.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
        concurrency: u64,
        /// Print "acked K" each time a batch is durable (K = total durable so far).
        #[arg(long)]
        report_acks: bool,
        /// Writers are operating-system threads blocked in each append, instead of async
        /// tasks on a runtime with one worker per core.
        #[arg(long)]
        threads: bool,
    },
    /// Connector store commits: COUNT single-put batches from CONCURRENCY async tasks
    /// through the group-committing redb store, against one redb commit per put on a file
    /// of the same kind. Prints one JSON line.
    Kv {
        /// Commits to make.
        #[arg(long, default_value_t = 20_000)]
        count: u64,
        /// Concurrent tasks.
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
        concurrency: u64,
        /// Raw one-commit-per-put transactions (at most COUNT).
        #[arg(long, default_value_t = 2_000)]
        raw: u64,
        /// Where the two files go (default: a temporary directory, removed after).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Connection set-up on loopback: TDS (QUIC handshake with raw public keys, hello
    /// exchange, both credential checks) against a raw quinn handshake with the same keys
    /// and configuration. Prints one JSON line with medians and 90th percentiles.
    Handshake {
        /// Connections of each kind.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        connections: u64,
    },
    /// Bulk transfer on loopback: raw quinn with ring SHA-256 over every received byte,
    /// raw quinn without, and the TDS verified transfer (every chunk checked against the
    /// manifest's root).
    /// Prints one JSON line.
    Transfer {
        /// Bytes to move: 1GiB, 64MiB, 4096, ...
        #[arg(long, default_value = "1GiB", value_parser = tds_bench::net::parse_size)]
        size: u64,
        /// Where the connector transfer's consumer writes its output file (in a temporary
        /// directory made there and removed after; default: the system's temporary
        /// directory). `/dev/shm` takes the disk out of the figure.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// The reference node as a process: cold start of `tds serve` until it accepts
    /// connections (against the process floor, `tds --version`) and its idle resident
    /// memory. Prints one JSON line.
    Node {
        /// The `tds` binary (e.g. target/release/tds).
        #[arg(long, value_name = "PATH")]
        tds: PathBuf,
        /// Starts to time.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
        starts: u32,
    },
    /// The raw quinn echo server of the `load` baseline (run by `load` itself).
    #[command(hide = true)]
    RawEchoServer,
    /// Load on one node: CLIENTS consumer connectors (each its own identity and QUIC
    /// endpoint, in this process) connect to a `tds serve` process and stay connected
    /// (node memory per idle connection), then all negotiate and fetch its asset at once
    /// (throughput, latency, errors, node peak memory), then one of them runs 256
    /// queries at once on its connection. Prints one JSON line.
    Load {
        /// The `tds` binary (e.g. target/release/tds).
        #[arg(long, value_name = "PATH")]
        tds: PathBuf,
        /// Client connections.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
        clients: u32,
        /// Size of the asset each client fetches (e.g. 64KiB).
        #[arg(long, default_value = "64KiB", value_parser = tds_bench::net::parse_size)]
        size: u64,
        /// Attempts per client call.
        #[arg(long, default_value_t = 20)]
        attempts: u32,
    },
    /// Catalog searches over ASSETS assets: a consumer connector searching a provider
    /// connector's catalog (durable redb state) and a member searching the authority's
    /// federated catalog, each with a query that finds a few assets and one that finds
    /// many (first page), against a raw quinn round trip. Prints one JSON line.
    Catalog {
        /// Assets published (to the provider, and as federated catalog entries).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        assets: u64,
        /// Timed searches of each kind on each side.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        queries: u64,
        /// Providers sharing the federated catalog's entries.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=200))]
        providers: u64,
        /// Connector publications in flight while setting up.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=4096))]
        publish_concurrency: u64,
        /// Raw round trips of each kind.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        raw: u64,
        /// Where the data directories go (default: a temporary directory, removed after).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Contract negotiations through the connector API on one open connection: COUNT
    /// negotiations from CONCURRENCY tasks between a provider and a consumer connector
    /// with durable state (redb and the provenance log in temporary data directories),
    /// against raw quinn round trips (plain and signed) and raw durable redb commits
    /// measured in the same run. Prints one JSON line.
    Negotiate {
        /// Negotiations to time.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        count: u64,
        /// Negotiations in flight.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=4096))]
        concurrency: u64,
        /// Negotiations made first, one at a time, not timed.
        #[arg(long, default_value_t = 50)]
        warmup: u64,
        /// Raw round trips of each kind (at most COUNT).
        #[arg(long, default_value_t = 2000)]
        raw: u64,
        /// Where the data directories go (default: a temporary directory, removed after).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// The runtime of the network benchmarks: one worker per core, as a node runs.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Log {
            home,
            count,
            concurrency,
            report_acks,
            threads,
        } => {
            let (log, actor) = tds_bench::log::open_home(&home)?;
            let opts = tds_bench::log::LogBench {
                count,
                concurrency,
                report_acks,
                threads,
            };
            tds_bench::log::run(Arc::new(log), actor, &opts, Box::new(std::io::stdout()))?;
            Ok(())
        }
        Command::Kv {
            count,
            concurrency,
            raw,
            dir,
        } => {
            let tmp;
            let dir = match dir {
                Some(d) => d,
                None => {
                    tmp = tempfile::tempdir()?;
                    tmp.path().to_path_buf()
                }
            };
            let report = tds_bench::kv::run(&dir, count, concurrency, raw)?;
            println!("{}", report.json());
            Ok(())
        }
        Command::Handshake { connections } => {
            let n = usize::try_from(connections)?;
            let report = runtime()?.block_on(tds_bench::net::handshake(n))?;
            println!("{report}");
            Ok(())
        }
        Command::Transfer { size, out_dir } => {
            let bench = tds_bench::net::TransferBench {
                size,
                chunk: 1024 * 1024,
            };
            let report =
                runtime()?.block_on(tds_bench::net::transfer(bench, out_dir.as_deref()))?;
            println!("{report}");
            Ok(())
        }
        Command::Load {
            tds,
            clients,
            size,
            attempts,
        } => {
            let bench = tds_bench::load::LoadBench {
                clients: usize::try_from(clients)?,
                size,
                attempts,
            };
            println!(
                "{}",
                runtime()?.block_on(tds_bench::load::run(&tds, bench))?
            );
            Ok(())
        }
        Command::RawEchoServer => {
            runtime()?.block_on(tds_bench::net::raw_echo_server())?;
            Ok(())
        }
        Command::Node { tds, starts } => {
            println!("{}", tds_bench::node::run(&tds, starts)?);
            Ok(())
        }
        Command::Catalog {
            assets,
            queries,
            providers,
            publish_concurrency,
            raw,
            dir,
        } => {
            let tmp;
            let dir = match dir {
                Some(d) => d,
                None => {
                    tmp = tempfile::Builder::new()
                        .prefix("tds-bench-catalog-")
                        .tempdir()?;
                    tmp.path().to_path_buf()
                }
            };
            let bench = tds_bench::catalog::CatalogBench {
                assets,
                queries,
                providers,
                publish_concurrency,
                raw,
            };
            let report = runtime()?.block_on(tds_bench::catalog::catalog(bench, &dir))?;
            println!("{report}");
            Ok(())
        }
        Command::Negotiate {
            count,
            concurrency,
            warmup,
            raw,
            dir,
        } => {
            let tmp;
            let dir = match dir {
                Some(d) => d,
                None => {
                    tmp = tempfile::Builder::new()
                        .prefix("tds-bench-negotiate-")
                        .tempdir()?;
                    tmp.path().to_path_buf()
                }
            };
            let bench = tds_bench::negotiate::NegotiateBench {
                count,
                concurrency,
                warmup,
                raw,
            };
            let report = runtime()?.block_on(tds_bench::negotiate::negotiate(bench, &dir))?;
            println!("{report}");
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
