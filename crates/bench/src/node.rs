//! `tds-bench node --tds PATH`: the reference node as a process. Builds a node home with
//! the `tds` binary at PATH (an authority, `tds init`, an admitted credential), then
//! starts `tds serve` `starts` times and measures, for each start, the time from spawning
//! the process until it prints its ready line (the QUIC endpoint and the admin API
//! accept connections by then), and once it is idle its resident memory. The floor in the
//! same run: spawning `tds --version` until it exits (process start of this binary, no
//! node work).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::net::json_line;

/// A failure of the node benchmark.
#[derive(Debug, thiserror::Error)]
pub enum NodeBenchError {
    /// A `tds` command failed.
    #[error("{0}")]
    Tds(String),
    /// Files or processes.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub(crate) fn tds(bin: &Path, args: &[&str]) -> Result<serde_json::Value, NodeBenchError> {
    let out = Command::new(bin).args(args).output()?;
    if !out.status.success() {
        return Err(NodeBenchError::Tds(format!(
            "tds {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| NodeBenchError::Tds(format!("tds {}: {e}", args.join(" "))))
}

pub(crate) fn text(v: &serde_json::Value, key: &str) -> Result<String, NodeBenchError> {
    v.get(key)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| NodeBenchError::Tds(format!("no {key} in {v}")))
}

pub(crate) fn path(p: &Path) -> Result<&str, NodeBenchError> {
    p.to_str()
        .ok_or_else(|| NodeBenchError::Tds(format!("{} is not UTF-8", p.display())))
}

/// Resident set size of process `pid` in KiB, from `/proc`.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:")
}

/// Peak resident set size of process `pid` in KiB (`VmHWM`).
pub(crate) fn hwm_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM:")
}

/// One `kB` field of `/proc/PID/status`.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A running `tds serve`, stopped with SIGTERM by [`NodeProcess::stop`] or when dropped.
pub(crate) struct NodeProcess {
    child: Option<Child>,
    pid: u32,
    /// Its ready line (one JSON object: `listen`, `admin`, ...).
    pub(crate) ready: serde_json::Value,
}

impl NodeProcess {
    /// Starts `tds serve --home HOME --log-level LEVEL` and waits for its ready line.
    pub(crate) fn spawn(bin: &Path, home: &Path, log_level: &str) -> Result<Self, NodeBenchError> {
        let mut child = Command::new(bin)
            .args(["serve", "--home", path(home)?, "--log-level", log_level])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take();
        // From here on, every early return stops the process (Drop).
        let mut node = Self {
            pid: child.id(),
            child: Some(child),
            ready: serde_json::Value::Null,
        };
        let stdout =
            stdout.ok_or_else(|| NodeBenchError::Tds("no stdout from tds serve".into()))?;
        // The ready line is one pretty-printed JSON object; `}` alone closes it.
        let mut read = String::new();
        let mut closed = false;
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            read.push_str(&line);
            if line.trim() == "}" {
                closed = true;
                break;
            }
        }
        if !closed {
            return Err(NodeBenchError::Tds(
                "tds serve ended before it was ready".into(),
            ));
        }
        node.ready = serde_json::from_str(&read)
            .map_err(|e| NodeBenchError::Tds(format!("tds serve ready line: {e}")))?;
        Ok(node)
    }

    /// Its process id.
    pub(crate) fn id(&self) -> u32 {
        self.pid
    }

    /// Sends SIGTERM and waits for the exit.
    pub(crate) fn stop(&mut self) -> Result<ExitStatus, NodeBenchError> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| NodeBenchError::Tds("tds serve already stopped".into()))?;
        let pid = i32::try_from(self.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .ok_or_else(|| NodeBenchError::Tds("no pid".into()))?;
        let sent = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        if let Err(e) = sent {
            let _ = child.kill();
            let _ = child.wait();
            return Err(NodeBenchError::Tds(format!("SIGTERM: {e}")));
        }
        Ok(child.wait()?)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// An authority home and an admitted node home in `dir`, made with the `tds` binary:
/// (authority home, node home, authority public key hex).
pub(crate) fn setup_node(
    bin: &Path,
    dir: &Path,
) -> Result<(std::path::PathBuf, std::path::PathBuf, String), NodeBenchError> {
    let auth = dir.join("authority");
    let home = dir.join("node");
    let a = tds(
        bin,
        &[
            "authority",
            "init",
            "--home",
            path(&auth)?,
            "--name",
            "Bench",
        ],
    )?;
    let n = tds(
        bin,
        &[
            "init",
            "--home",
            path(&home)?,
            "--name",
            "bench",
            "--sector",
            "power",
            "--listen",
            "127.0.0.1:0",
        ],
    )?;
    let cred = dir.join("cred.cose");
    let crl = dir.join("crl.cose");
    tds(
        bin,
        &[
            "authority",
            "admit",
            "--home",
            path(&auth)?,
            "--subject-key",
            &text(&n, "public_key_hex")?,
            "--name",
            "bench",
            "--sector",
            "power",
            "--role",
            "provider,consumer",
            "--jurisdiction",
            "CN",
            "--days",
            "30",
            "--out",
            path(&cred)?,
        ],
    )?;
    tds(
        bin,
        &[
            "authority",
            "crl",
            "--home",
            path(&auth)?,
            "--out",
            path(&crl)?,
        ],
    )?;
    tds(
        bin,
        &[
            "credential",
            "install",
            "--home",
            path(&home)?,
            path(&cred)?,
            "--authority-key",
            &text(&a, "public_key_hex")?,
            "--crl",
            path(&crl)?,
        ],
    )?;

    Ok((auth, home, text(&a, "public_key_hex")?))
}

/// Runs the benchmark; returns its JSON line.
pub fn run(bin: &Path, starts: u32) -> Result<String, NodeBenchError> {
    let dir = tempfile::Builder::new()
        .prefix("tds-bench-node-")
        .tempdir()?;
    let (_, home, _) = setup_node(bin, dir.path())?;

    let mut floor = Vec::new();
    let mut ready = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..starts.max(1) {
        let t = Instant::now();
        let status = Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .status()?;
        floor.push(t.elapsed().as_secs_f64() * 1000.0);
        if !status.success() {
            return Err(NodeBenchError::Tds("tds --version failed".into()));
        }

        let t = Instant::now();
        let mut node = NodeProcess::spawn(bin, &home, "warn")?;
        ready.push(t.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(1500));
        if let Some(kib) = rss_kib(node.id()) {
            rss.push(kib as f64 / 1024.0);
        }
        let status = node.stop()?;
        if !status.success() {
            return Err(NodeBenchError::Tds(format!(
                "tds serve exited with {status}"
            )));
        }
    }
    let r = |x: f64| (x * 100.0).round() / 100.0;
    let max = ready.iter().copied().fold(0.0, f64::max);
    Ok(json_line(&[
        ("starts", starts.into()),
        ("cold_start_p50_ms", r(median(&mut ready)).into()),
        ("cold_start_max_ms", r(max).into()),
        ("process_floor_p50_ms", r(median(&mut floor)).into()),
        ("idle_rss_mib", r(median(&mut rss)).into()),
    ]))
}
