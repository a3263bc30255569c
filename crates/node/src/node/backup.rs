//! `tds backup --home DIR --out FILE` and `tds restore --home NEWDIR FILE`: a node home in
//! one archive file, taken consistently whether the node runs or not (spec/node.md,
//! "Backup and restore").
//!
//! The archive is a tar file (POSIX ustar with GNU long names): first `tds-backup.json`,
//! the manifest (format `"tds-backup 1"`, the node, the log size at the instant of the
//! copy, and every file's path, size and SHA-256, in archive order), then those files.
//! `restore` checks the whole archive against the manifest before it writes anything,
//! writes into a temporary directory beside the target, opens the home there and verifies
//! its log, and only then moves it into place.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tds_core::Signer;

use super::home::{self, NodeHome};

/// The archive format this build writes and reads.
pub(crate) const FORMAT: &str = "tds-backup 1";
const FORMAT_PREFIX: &str = "tds-backup ";
/// The manifest: the archive's first entry.
const MANIFEST: &str = "tds-backup.json";
/// The largest manifest read.
const MAX_MANIFEST: u64 = 16 << 20;
/// The most files an archive may list.
const MAX_FILES: usize = 1_000_000;
/// The largest file an archive may hold.
const MAX_FILE: u64 = 1 << 40;
/// The home's own files archived, when present (read whole: each is small). `admin.json`
/// and `admin.token` belong to a running process and are never archived.
const HOME_FILES: [&str; 7] = [
    home::VERSION_FILE,
    home::CONFIG_FILE,
    home::KEY_FILE,
    home::CREDENTIAL_FILE,
    home::AUTHORITY_FILE,
    home::CRL_FILE,
    super::authority::WITNESSED_FILE,
];
/// The largest home file read.
const MAX_HOME_FILE: u64 = 1 << 20;

/// `tds backup`.
#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// The node's home directory (the node may be running).
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
    /// The archive to write (mode 0600: it holds the node's key). An existing file is
    /// replaced only with --force.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: PathBuf,
}

/// `tds restore`.
#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The new home directory (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
    /// The archive (`tds backup`).
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
}

/// One file in the manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Listed {
    path: String,
    size: u64,
    sha256: String,
}

/// The manifest, `tds-backup.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    created: String,
    home_format: u32,
    node: String,
    running: bool,
    log_size: u64,
    checkpoints: usize,
    records: u64,
    files: Vec<Listed>,
}

/// `tds backup`: through the running node's admin API, else from the stopped home.
pub(crate) fn backup(args: &BackupArgs) -> anyhow::Result<()> {
    let home = NodeHome::open(&args.home)?;
    crate::files::check_out(&args.out, crate::files::Replace::Output)?;
    let out = home::absolute(&args.out)?;
    let value = super::block_on(async {
        let body = json!({ "out": out });
        if let Some(v) = super::admin::call(&home.dir, "POST", "/v1/op/backup", Some(&body)).await?
        {
            return Ok(v);
        }
        write_archive(&home, None, &out).await
    })?;
    crate::output::print(&value)
}

/// Writes the archive of `home` to `out` (replacing it): from `connector`'s state when
/// the node runs (the admin API's `backup` operation), else from the stopped home.
pub(crate) async fn write_archive(
    home: &NodeHome,
    connector: Option<&tds_connector::Connector>,
    out: &Path,
) -> anyhow::Result<Value> {
    // The home's files first: `witnessed.json` names a size the log had reached before
    // it was written, so the log copied afterwards is at least that long.
    let mut files: Vec<(Listed, Source)> = Vec::new();
    for name in HOME_FILES {
        let path = home.path(name);
        if !path.exists() {
            continue;
        }
        let bytes = tds_core::fs::read_bounded(&path, MAX_HOME_FILE).map_err(|e| anyhow!("{e}"))?;
        files.push((listed(name, &mut bytes.as_slice())?, Source::Bytes(bytes)));
    }
    // The data directory's state at one instant, staged inside the (private) home.
    let staging = tempfile::Builder::new()
        .prefix(".backup-")
        .tempdir_in(&home.dir)
        .with_context(|| format!("{}: a staging directory", home.dir.display()))?;
    let data = staging.path().join(home::DATA_DIR);
    let summary = match connector {
        Some(c) => c.backup(&data).await?,
        None => {
            let (from, to) = (home.data_dir(), data.clone());
            tokio::task::spawn_blocking(move || tds_connector::backup::backup_stopped(&from, &to))
                .await
                .map_err(|e| anyhow!("{e}"))?
                .map_err(|e| match &e {
                    tds_connector::ConnectorError::Store(tds_connector::store::StoreError::Locked(_)) => {
                        anyhow!("{}: the node's store is in use (did `tds serve` just start?); try again", home.dir.display())
                    }
                    _ => e.into(),
                })?
        }
    };
    let id = home.public_key()?.id().to_string();
    let running = connector.is_some();
    let staged = staging.path().to_path_buf();
    let target = out.to_path_buf();
    let (bytes, sha256, count) = tokio::task::spawn_blocking(move || {
        for rel in walk(&staged.join(home::DATA_DIR), Path::new(home::DATA_DIR))? {
            let path = staged.join(&rel);
            let mut f = std::fs::File::open(&path).with_context(|| path.display().to_string())?;
            let name = rel
                .to_str()
                .ok_or_else(|| anyhow!("{}: not UTF-8", rel.display()))?
                .to_owned();
            files.push((listed(&name, &mut f)?, Source::File(path)));
        }
        let manifest = Manifest {
            format: FORMAT.into(),
            created: tds_core::Timestamp::now().to_rfc3339(),
            home_format: home::HOME_VERSION,
            node: id,
            running,
            log_size: summary.log_size,
            checkpoints: summary.checkpoints,
            records: summary.records,
            files: files.iter().map(|(l, _)| l.clone()).collect(),
        };
        let (bytes, sha) = write_tar(&target, &manifest, &files)?;
        anyhow::Ok((bytes, sha, files.len()))
    })
    .await
    .map_err(|e| anyhow!("{e}"))??;
    drop(staging);
    Ok(json!({
        "out": out.display().to_string(),
        "format": FORMAT,
        "running": running,
        "files": count,
        "bytes": bytes,
        "sha256": sha256,
        "log_size": summary.log_size,
        "checkpoints": summary.checkpoints,
        "records": summary.records,
        "cosigned": summary.cosigned,
        "trees": summary.trees,
    }))
}

/// Where an archived file's bytes come from.
enum Source {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// Streams `r` through SHA-256: its size and digest (hex).
fn digest(r: &mut dyn Read) -> anyhow::Result<(u64, String)> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(buf.get(..n).unwrap_or_default());
        size += n as u64;
    }
    Ok((size, hex::encode(ctx.finish())))
}

fn listed(path: &str, r: &mut dyn Read) -> anyhow::Result<Listed> {
    let (size, sha256) = digest(r)?;
    Ok(Listed {
        path: path.to_owned(),
        size,
        sha256,
    })
}

/// The regular files under `dir`, as paths under `prefix`, sorted.
fn walk(dir: &Path, prefix: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), prefix.to_path_buf())];
    while let Some((d, p)) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(anyhow!("{}: {}", d.display(), crate::files::io_reason(&e))),
        };
        for entry in entries {
            let entry = entry.with_context(|| d.display().to_string())?;
            let kind = entry.file_type()?;
            let (path, rel) = (entry.path(), p.join(entry.file_name()));
            if kind.is_dir() {
                stack.push((path, rel));
            } else if kind.is_file() {
                out.push(rel);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A tar header for a regular file of `size` bytes, private, owned by nobody in
/// particular, dated at the epoch (the manifest says when the backup was taken).
fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// Writes the archive to `out` through a temporary file beside it (mode 0600, synced,
/// then renamed): its size and SHA-256.
fn write_tar(
    out: &Path,
    manifest: &Manifest,
    files: &[(Listed, Source)],
) -> anyhow::Result<(u64, String)> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".tds-backup-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(&dir)
        .with_context(|| format!("{}: a temporary file", dir.display()))?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(tmp.as_file()));
    let text = serde_json::to_vec_pretty(manifest)?;
    tar.append_data(&mut header(text.len() as u64), MANIFEST, text.as_slice())?;
    for (l, source) in files {
        let mut h = header(l.size);
        match source {
            Source::Bytes(b) => tar.append_data(&mut h, &l.path, b.as_slice())?,
            Source::File(p) => {
                let f = std::fs::File::open(p).with_context(|| p.display().to_string())?;
                // Exactly the listed size (the staged copy is this process's own).
                tar.append_data(&mut h, &l.path, f.take(l.size))?;
            }
        }
    }
    tar.into_inner()?.flush()?;
    let file = tmp.as_file();
    file.sync_all()?;
    let mut check = std::fs::File::open(tmp.path())?;
    let (bytes, sha) = digest(&mut check)?;
    tmp.persist(out)
        .map_err(|e| anyhow!("{}: {}", out.display(), crate::files::io_reason(&e.error)))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok((bytes, sha))
}

/// A path inside an archive, checked: relative, plain components only (no `..`, no
/// root, no `.`), UTF-8, and one of the home's files or under `data/`.
fn safe_path(path: &str) -> anyhow::Result<PathBuf> {
    let p = Path::new(path);
    let plain = !path.is_empty()
        && path.len() <= 4096
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && !path.contains('\\')
        && !path.ends_with('/');
    let known = HOME_FILES.contains(&path)
        || path
            .strip_prefix(home::DATA_DIR)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1);
    if !plain || !known {
        bail!("the archive holds an unsafe or unknown path {path:?}; refusing it");
    }
    Ok(p.to_path_buf())
}

/// Reads the manifest, the archive's first entry.
fn read_manifest<R: Read>(entries: &mut tar::Entries<'_, R>) -> anyhow::Result<Manifest> {
    let mut first = entries
        .next()
        .ok_or_else(|| anyhow!("empty archive: not a tds backup"))?
        .context("not a tds backup archive")?;
    if first.path_bytes().as_ref() != MANIFEST.as_bytes()
        || first.header().entry_type() != tar::EntryType::Regular
    {
        bail!("not a tds backup archive (its first entry is not {MANIFEST})");
    }
    if first.size() > MAX_MANIFEST {
        bail!(
            "{MANIFEST} is {} bytes, over the limit of {MAX_MANIFEST}",
            first.size()
        );
    }
    let mut text = Vec::new();
    (&mut first).take(MAX_MANIFEST).read_to_end(&mut text)?;
    let v: Value = serde_json::from_slice(&text).context(MANIFEST)?;
    let format = v.get("format").and_then(Value::as_str).unwrap_or_default();
    if format != FORMAT {
        let newer = format
            .strip_prefix(FORMAT_PREFIX)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n > 1);
        if newer {
            bail!("archive format {format:?} is newer than this tds understands ({FORMAT:?}); use a newer tds");
        }
        bail!("not a tds backup archive (format {format:?})");
    }
    let m: Manifest = serde_json::from_value(v).context(MANIFEST)?;
    if m.files.len() > MAX_FILES {
        bail!(
            "{MANIFEST} lists {} files, over the limit of {MAX_FILES}",
            m.files.len()
        );
    }
    if m.home_format > home::HOME_VERSION {
        bail!(
            "the archive holds a home of format {} (newer than this tds understands: {}); use a newer tds",
            m.home_format,
            home::HOME_VERSION
        );
    }
    let mut seen = std::collections::HashSet::new();
    for l in &m.files {
        safe_path(&l.path)?;
        if l.size > MAX_FILE {
            bail!("{}: {} bytes, over the limit of {MAX_FILE}", l.path, l.size);
        }
        if l.sha256.len() != 64 || !l.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{MANIFEST}: {}: not a SHA-256", l.path);
        }
        if !seen.insert(l.path.as_str()) {
            bail!("{MANIFEST}: {} is listed twice", l.path);
        }
    }
    if !seen.contains(home::VERSION_FILE) || !seen.contains(home::KEY_FILE) {
        bail!("the archive holds no node home (no VERSION or node.key)");
    }
    Ok(m)
}

/// Goes through the archive's entries after the manifest, checking each against the
/// manifest (name, type, size, SHA-256) in order; each entry's bytes go to `sink` as they
/// are checked (`None`: only checked). An entry not listed, or a listed one missing, is
/// an error.
fn check_entries<R: Read>(
    entries: &mut tar::Entries<'_, R>,
    m: &Manifest,
    mut sink: Option<&Path>,
) -> anyhow::Result<u64> {
    let mut total = 0u64;
    for l in &m.files {
        let mut entry = entries
            .next()
            .ok_or_else(|| anyhow!("the archive ends before {} (truncated?)", l.path))?
            .context("damaged archive")?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if name != l.path {
            safe_path(&name)?;
            bail!(
                "the archive holds {name:?} where its manifest lists {:?}",
                l.path
            );
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            bail!("{}: not a regular file in the archive; refusing it", l.path);
        }
        if entry.size() != l.size {
            bail!(
                "{}: {} bytes in the archive, {} in its manifest",
                l.path,
                entry.size(),
                l.size
            );
        }
        let rel = safe_path(&l.path)?;
        let (size, sha) = match sink.as_mut() {
            None => digest(&mut (&mut entry).take(l.size))?,
            Some(dir) => {
                let path = dir.join(&rel);
                if let Some(parent) = path.parent() {
                    crate::home::create_private_dir(parent)?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .with_context(|| path.display().to_string())?;
                let mut tee = Tee {
                    inner: (&mut entry).take(l.size),
                    out: &mut f,
                };
                let d = digest(&mut tee)?;
                f.sync_all()?;
                d
            }
        };
        if size != l.size || sha != l.sha256 {
            bail!(
                "{}: its SHA-256 does not match the archive's manifest (the archive is damaged or was altered); nothing restored",
                l.path
            );
        }
        total += size;
    }
    if let Some(extra) = entries.next() {
        let extra = extra.context("damaged archive")?;
        bail!(
            "the archive holds {:?}, which its manifest does not list; refusing it",
            String::from_utf8_lossy(&extra.path_bytes())
        );
    }
    Ok(total)
}

/// A reader that writes what it reads to `out`.
struct Tee<'a, R: Read> {
    inner: R,
    out: &'a mut std::fs::File,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(buf.get(..n).unwrap_or_default())?;
        Ok(n)
    }
}

/// Checks an archive held in memory against its manifest (what `restore` does first,
/// nothing written): the bytes of the files it lists.
pub(crate) fn check_archive_bytes(bytes: &[u8]) -> anyhow::Result<u64> {
    let mut archive = tar::Archive::new(bytes);
    let mut entries = archive.entries().context("not a tds backup archive")?;
    let m = read_manifest(&mut entries)?;
    check_entries(&mut entries, &m, None)
}

fn open_archive(file: &Path) -> anyhow::Result<tar::Archive<std::io::BufReader<std::fs::File>>> {
    let f = std::fs::File::open(file)
        .map_err(|e| anyhow!("{}: {}", file.display(), crate::files::io_reason(&e)))?;
    Ok(tar::Archive::new(std::io::BufReader::new(f)))
}

/// `tds restore`: checks the archive, writes the home beside the target, opens it and
/// verifies its log, then moves it into place.
pub(crate) fn restore(args: &RestoreArgs) -> anyhow::Result<()> {
    let target = home::absolute(&args.home)?;
    crate::files::note_input(&args.file);
    check_target(&target)?;
    // 1. The whole archive against its manifest, before anything is written.
    let manifest = {
        let mut archive = open_archive(&args.file)?;
        let mut entries = archive.entries().context("not a tds backup archive")?;
        let m =
            read_manifest(&mut entries).map_err(|e| anyhow!("{}: {e:#}", args.file.display()))?;
        check_entries(&mut entries, &m, None)
            .map_err(|e| anyhow!("{}: {e:#}", args.file.display()))?;
        m
    };
    // 2. Written into a private directory beside the target (checked again as written).
    let parent = target
        .parent()
        .ok_or_else(|| anyhow!("{}: no parent directory", target.display()))?;
    std::fs::create_dir_all(parent)
        .map_err(|e| anyhow!("{}: {}", parent.display(), crate::files::io_reason(&e)))?;
    let staging = tempfile::Builder::new()
        .prefix(".tds-restore-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(parent)
        .with_context(|| format!("{}: a staging directory", parent.display()))?;
    let bytes = {
        let mut archive = open_archive(&args.file)?;
        let mut entries = archive.entries().context("not a tds backup archive")?;
        read_manifest(&mut entries)?;
        check_entries(&mut entries, &manifest, Some(staging.path()))
            .map_err(|e| anyhow!("{}: {e:#}", args.file.display()))?
    };
    crate::home::create_private_dir(&staging.path().join(home::DATA_DIR))?;
    // 3. The restored home opens and its log verifies, at the size the backup recorded.
    let checked = check_restored(staging.path(), &manifest).map_err(|e| {
        anyhow!(
            "{}: the restored home does not check: {e:#}",
            args.file.display()
        )
    })?;
    // 4. Into place.
    check_target(&target)?;
    if target.exists() {
        std::fs::remove_dir(&target)
            .map_err(|e| anyhow!("{}: {}", target.display(), crate::files::io_reason(&e)))?;
    }
    let kept = staging.keep();
    std::fs::rename(&kept, &target).map_err(|e| {
        let _ = std::fs::remove_dir_all(&kept);
        anyhow!("{}: {}", target.display(), crate::files::io_reason(&e))
    })?;
    if let Ok(d) = std::fs::File::open(parent) {
        let _ = d.sync_all();
    }
    crate::output::print(&json!({
        "home": target.display().to_string(),
        "id": manifest.node,
        "format": manifest.format,
        "created": manifest.created,
        "files": manifest.files.len(),
        "bytes": bytes,
        "log_size": checked.log_size,
        "agreements": checked.agreements,
    }))
}

/// The target must be new, or an empty directory.
fn check_target(target: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(target) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{}: not empty; restore into a new or empty directory",
                    target.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => bail!("{}: {}", target.display(), crate::files::io_reason(&e)),
    }
}

/// What the restored home holds.
struct Checked {
    log_size: u64,
    agreements: u64,
}

/// Opens the restored home at `dir`: its config, key and store, and verifies its log
/// (records, tree, checkpoints, kept cosigned checkpoints) at the manifest's size.
fn check_restored(dir: &Path, m: &Manifest) -> anyhow::Result<Checked> {
    let home = NodeHome::open(dir)?;
    let key = home.key()?;
    if key.key_id().to_string() != m.node {
        bail!(
            "its node.key is not the key of node {} its manifest names",
            m.node
        );
    }
    let data = home.data_dir();
    let agreements = if data.join(tds_connector::store::FILE_NAME).exists() {
        let store = tds_connector::store::RedbStore::open(&data)?;
        super::status::count(&store, tds_connector::store::Table::Agreements)?
    } else {
        0
    };
    let log_dir = data.join("log");
    let log_size = if log_dir.join("events").exists() {
        let store = tds_provenance::store::FileStore::open(
            std::sync::Arc::new(tds_provenance::DirStorage::new(&log_dir)),
            tds_provenance::store::OpenOptions::reader(),
        )?;
        let log = tds_provenance::Log::new(store, key);
        log.verify()?;
        log.verify_cosigned(
            &tds_provenance::DirCosignedStore::new(data.join("witnessed")),
            home.authority_key()?.as_ref(),
        )?;
        log.size()
    } else {
        0
    };
    if log_size != m.log_size {
        bail!(
            "its log holds {log_size} entries, the manifest says {}",
            m.log_size
        );
    }
    Ok(Checked {
        log_size,
        agreements,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A home's files: `VERSION`, `node.key` and up to 6 files under `data/` (names of
    /// one or two plain components), each with arbitrary bytes.
    fn homes() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
        let name = "[a-z0-9._-]{1,12}".prop_filter("a plain component", |n| n != "." && n != "..");
        let data_file = (
            prop::collection::vec(name, 1..3),
            prop::collection::vec(any::<u8>(), 0..2048),
        )
            .prop_map(|(parts, bytes)| (format!("{}/{}", home::DATA_DIR, parts.join("/")), bytes));
        (
            prop::collection::vec(any::<u8>(), 0..64),
            prop::collection::vec(any::<u8>(), 0..256),
            prop::collection::vec(data_file, 0..6),
        )
            .prop_map(|(version, key, data)| {
                let mut files = vec![
                    (home::VERSION_FILE.to_owned(), version),
                    (home::KEY_FILE.to_owned(), key),
                ];
                for (path, bytes) in data {
                    // A path listed twice, or a file where another is a directory, is
                    // not a home's tree.
                    let clash = files.iter().any(|(p, _)| {
                        p == &path
                            || path.starts_with(&format!("{p}/"))
                            || p.starts_with(&format!("{path}/"))
                    });
                    if !clash {
                        files.push((path, bytes));
                    }
                }
                files
            })
    }

    fn archive(files: &[(String, Vec<u8>)]) -> anyhow::Result<Vec<u8>> {
        let listed_files: Vec<(Listed, Source)> = files
            .iter()
            .map(|(p, b)| Ok((listed(p, &mut b.as_slice())?, Source::Bytes(b.clone()))))
            .collect::<anyhow::Result<_>>()?;
        let manifest = Manifest {
            format: FORMAT.into(),
            created: "2026-12-05T00:00:00Z".into(),
            home_format: home::HOME_VERSION,
            node: "sha256:00".into(),
            running: false,
            log_size: 0,
            checkpoints: 0,
            records: 0,
            files: listed_files.iter().map(|(l, _)| l.clone()).collect(),
        };
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("home.tdsbackup");
        write_tar(&out, &manifest, &listed_files)?;
        Ok(std::fs::read(out)?)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// What `write_tar` writes, the check `tds restore` runs first accepts, counting
        /// every listed byte; cut short anywhere before its last file's bytes end, or with
        /// one byte of a listed file changed, it is refused.
        #[test]
        fn archives_round_trip_and_damage_is_refused(
            files in homes(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
        ) {
            let bytes = archive(&files).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
            let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
            let checked = check_archive_bytes(&bytes).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
            prop_assert_eq!(checked, total);

            // The end of the last file's bytes: tar pads each entry to 512-byte blocks
            // and ends with two zero blocks, which a reader may not need.
            let last = files.last().map(|(_, b)| b.len()).unwrap_or(0);
            let padded_end = bytes.len() - 1024 - last.div_ceil(512) * 512;
            let end = padded_end + last;
            let at = cut.index(end);
            prop_assert!(check_archive_bytes(bytes.get(..at).unwrap_or_default()).is_err());

            // One byte changed inside a listed file's contents (found by its bytes).
            let nonempty: Vec<&(String, Vec<u8>)> = files.iter().filter(|(_, b)| !b.is_empty()).collect();
            if !nonempty.is_empty() {
                let Some((path, content)) = nonempty.get(flip.index(nonempty.len())) else {
                    return Err(TestCaseError::fail("no file"));
                };
                let mut offsets = Vec::new();
                let mut a = tar::Archive::new(bytes.as_slice());
                for e in a.entries().map_err(|e| TestCaseError::fail(e.to_string()))? {
                    let e = e.map_err(|e| TestCaseError::fail(e.to_string()))?;
                    if e.path_bytes().as_ref() == path.as_bytes() {
                        offsets.push(e.raw_file_position());
                    }
                }
                prop_assert_eq!(offsets.len(), 1);
                let at = offsets.first().copied().unwrap_or_default() as usize + flip.index(content.len());
                let mut damaged = bytes.clone();
                if let Some(b) = damaged.get_mut(at) {
                    *b ^= 0x01;
                }
                prop_assert!(check_archive_bytes(&damaged).is_err());
            }
        }
    }
}
