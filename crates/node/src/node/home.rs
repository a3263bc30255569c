//! A node home (`tds init --home DIR`): the layout, its format version, and opening it.
//!
//! ```text
//! DIR/                 mode 0700
//!   VERSION            "tds-node-home 1": the format; a newer tds migrates or refuses
//!   config.toml        the configuration, every option commented
//!   node.key           the node's Ed25519 key, PKCS#8 PEM, mode 0600
//!   credential.cose    the membership credential, once admitted
//!   authority.pub      the trusted authority key (64 hex digits), once known
//!   crl.cose           the newest revocation list held
//!   data/              the connector's state: connector.redb, log/, trees/
//!   admin.json         while `tds serve` runs: {"url", "pid"} of its admin API
//!   admin.token        the admin API's bearer token, mode 0600
//! ```

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use tds_core::{PublicKey, SigningKey};

use super::config::NodeConfig;

/// The home format this build writes.
pub(crate) const HOME_VERSION: u32 = 1;

pub(crate) const VERSION_FILE: &str = "VERSION";
const VERSION_PREFIX: &str = "tds-node-home ";
pub(crate) const CONFIG_FILE: &str = "config.toml";
pub(crate) const KEY_FILE: &str = "node.key";
pub(crate) const CREDENTIAL_FILE: &str = "credential.cose";
pub(crate) const AUTHORITY_FILE: &str = "authority.pub";
pub(crate) const CRL_FILE: &str = "crl.cose";
pub(crate) const DATA_DIR: &str = "data";
pub(crate) const ADMIN_FILE: &str = "admin.json";
pub(crate) const TOKEN_FILE: &str = "admin.token";

/// Largest config, credential or list file read.
const MAX_FILE: u64 = 1 << 20;

/// An opened node home.
#[derive(Debug)]
pub(crate) struct NodeHome {
    pub(crate) dir: PathBuf,
    pub(crate) config: NodeConfig,
}

impl NodeHome {
    /// Creates a new home: directory (0700), VERSION, a new key, config.toml, data/.
    /// Refuses a directory that already holds a home or anything else.
    pub(crate) fn create(dir: &Path, config: &NodeConfig) -> anyhow::Result<NodeHome> {
        config.check().map_err(|e| anyhow!("config: {e}"))?;
        if dir.exists() {
            let mut entries =
                std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))?;
            if entries.next().is_some() {
                if dir.join(VERSION_FILE).exists() {
                    bail!(
                        "{}: already a tds home (remove it first to start again)",
                        dir.display()
                    );
                }
                bail!(
                    "{}: not empty; give a new or empty directory",
                    dir.display()
                );
            }
        }
        crate::home::create_private_dir(dir)?;
        let dir = absolute(dir)?;
        let key = SigningKey::generate()?;
        // With a passphrase in the environment (TDS_KEY_PASSPHRASE_FILE or
        // TDS_KEY_PASSPHRASE), the key is written encrypted.
        match crate::files::key_passphrase()? {
            Some(pass) => key.write_encrypted_file(&dir.join(KEY_FILE), &pass, false)?,
            None => key.write_file(&dir.join(KEY_FILE))?,
        }
        write(&dir.join(CONFIG_FILE), config.render().as_bytes(), 0o600)?;
        crate::home::create_private_dir(&dir.join(DATA_DIR))?;
        // Written last: a home without VERSION is one whose init did not finish.
        write(
            &dir.join(VERSION_FILE),
            format!("{VERSION_PREFIX}{HOME_VERSION}\n").as_bytes(),
            0o600,
        )?;
        Ok(NodeHome {
            dir,
            config: config.clone(),
        })
    }

    /// Opens an existing home: checks its format version and ownership, reads its config.
    pub(crate) fn open(dir: &Path) -> anyhow::Result<NodeHome> {
        let version_path = dir.join(VERSION_FILE);
        if !dir.is_dir() {
            bail!(
                "{}: no such home (create one with `tds init --home {}`)",
                dir.display(),
                dir.display()
            );
        }
        let text = match std::fs::read_to_string(&version_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{}: not a tds node home (no VERSION; `tds init` did not finish or this is another kind of home)",
                dir.display()
            ),
            Err(e) => bail!("{}: {}", version_path.display(), crate::files::io_reason(&e)),
        };
        let version = text
            .trim()
            .strip_prefix(VERSION_PREFIX)
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or_else(|| {
                anyhow!(
                    "{}: unreadable home format {:?}",
                    version_path.display(),
                    text.trim()
                )
            })?;
        if version > HOME_VERSION {
            bail!(
                "{}: home format {version} is newer than this tds understands ({HOME_VERSION}); use a newer tds",
                dir.display()
            );
        }
        // Format 1 is the first: nothing older to migrate yet.
        crate::home::check_private(dir)?;
        let dir = absolute(dir)?;
        let config_path = dir.join(CONFIG_FILE);
        let bytes = read(&config_path)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow!("{}: not UTF-8", config_path.display()))?;
        let config =
            NodeConfig::parse(&text).map_err(|e| anyhow!("{}: {e}", config_path.display()))?;
        Ok(NodeHome { dir, config })
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The node's key.
    pub(crate) fn key(&self) -> anyhow::Result<SigningKey> {
        crate::files::read_key(&self.path(KEY_FILE))
    }

    /// The node's public key, read without the passphrase of an encrypted key file.
    pub(crate) fn public_key(&self) -> anyhow::Result<PublicKey> {
        Ok(SigningKey::read_public_key(&self.path(KEY_FILE))?)
    }

    /// Whether `node.key` is encrypted with a passphrase.
    pub(crate) fn key_encrypted(&self) -> anyhow::Result<bool> {
        Ok(SigningKey::is_encrypted_file(&self.path(KEY_FILE))?)
    }

    /// The membership credential, if the node was admitted.
    pub(crate) fn credential(&self) -> anyhow::Result<Option<Vec<u8>>> {
        read_optional(&self.path(CREDENTIAL_FILE))
    }

    /// The trusted authority key, if known.
    pub(crate) fn authority_key(&self) -> anyhow::Result<Option<PublicKey>> {
        let Some(bytes) = read_optional(&self.path(AUTHORITY_FILE))? else {
            return Ok(None);
        };
        let text = String::from_utf8(bytes).map_err(|_| anyhow!("{AUTHORITY_FILE}: not text"))?;
        PublicKey::from_hex(text.trim())
            .map(Some)
            .map_err(|e| anyhow!("{}: {e}", self.path(AUTHORITY_FILE).display()))
    }

    /// The newest revocation list held, if any.
    pub(crate) fn crl(&self) -> anyhow::Result<Option<Vec<u8>>> {
        read_optional(&self.path(CRL_FILE))
    }

    /// Installs a credential (and the authority key and revocation list it is checked
    /// against), replacing what was there.
    pub(crate) fn install_credential(
        &self,
        credential: &[u8],
        authority: &PublicKey,
        crl: Option<&[u8]>,
    ) -> anyhow::Result<()> {
        write(
            &self.path(AUTHORITY_FILE),
            format!("{}\n", authority.to_hex()).as_bytes(),
            0o600,
        )?;
        if let Some(crl) = crl {
            write(&self.path(CRL_FILE), crl, 0o600)?;
        }
        write(&self.path(CREDENTIAL_FILE), credential, 0o600)
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.path(DATA_DIR)
    }
}

/// An absolute form of `dir` (verbs send absolute paths to a running node).
pub(crate) fn absolute(dir: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(dir).with_context(|| format!("{}", dir.display()))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    tds_core::fs::read_bounded(path, MAX_FILE).map_err(|e| anyhow!("{e}"))
}

fn read_optional(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    if !path.exists() {
        return Ok(None);
    }
    read(path).map(Some)
}

pub(crate) fn write(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    tds_core::fs::write_atomic(path, bytes, mode, true).map_err(|e| anyhow!("{e}"))
}
