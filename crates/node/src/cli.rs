//! The command line, declared with clap. Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tds_core::{PublicKey, Timestamp};
use tds_identity::{Jurisdiction, Role, Sector};

/// Trusted Data Space reference node.
#[derive(Debug, Parser)]
#[command(
    name = "tds",
    version,
    propagate_version = true,
    arg_required_else_help = true
)]
pub(crate) struct Cli {
    /// Let an output (`--out`, `--chunks`) replace an existing file. Never an input of the
    /// same command and never a key or a home's state file (only `tds key new --force`
    /// replaces a key file).
    #[arg(long, global = true)]
    pub(crate) force: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Ed25519 key files (PKCS#8 PEM, mode 0600).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Run the data-space authority: admit members, revoke, publish revocation lists.
    #[command(subcommand)]
    Authority(AuthorityCommand),
    /// Check membership credentials.
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Show any TDS object (credential, revocation list, key rollover, ...) as JSON.
    Inspect(InspectArgs),
    /// Signed data-asset manifests: create, verify, show, register.
    #[command(subcommand)]
    Manifest(crate::cmd::manifest::ManifestCommand),
    /// Catalogs of data assets: export as DCAT.
    #[command(subcommand)]
    Catalog(crate::cmd::catalog::CatalogCommand),
    /// The provenance log: show, verify, checkpoint, prove, annotate, bench.
    #[command(subcommand)]
    Log(crate::cmd::log::LogCommand),
    /// Witness other participants' logs: cosign consistent checkpoints.
    #[command(subcommand)]
    Witness(crate::cmd::witness::WitnessCommand),
    /// Evidence bundles for an agreement: export, verify offline.
    #[command(subcommand)]
    Evidence(crate::cmd::evidence::EvidenceCommand),
    /// Usage policies: check, fmt, export, eval, contains, template.
    #[command(subcommand)]
    Policy(crate::cmd::policy::PolicyCommand),
    /// Offers: sign an asset's usage policy and price.
    #[command(subcommand)]
    Offer(crate::cmd::contract::OfferCommand),
    /// The contract flow: request, accept, countersign.
    #[command(subcommand)]
    Contract(crate::cmd::contract::ContractCommand),
    /// Agreements: verify both signatures and show the terms.
    #[command(subcommand)]
    Agreement(crate::cmd::contract::AgreementCommand),
    /// Create a node home: key, documented config.toml, data directory.
    Init(crate::node::InitArgs),
    /// Run the connector node of a home (QUIC, admin API on 127.0.0.1) until SIGTERM.
    Serve(crate::node::ServeArgs),
    /// The node's id, admin URL, credential, peers, agreements, transfers, log size and
    /// alerts, as JSON (from the running node, or from its home).
    Status(crate::node::NodeHomeArg),
    /// Assets this node publishes.
    #[command(subcommand)]
    Asset(crate::node::verbs::AssetCommand),
    /// Negotiate an offer of a provider; prints the agreement (its duties and price).
    Negotiate(crate::node::verbs::NegotiateArgs),
    /// Fetch an agreement's asset (verified chunk by chunk; re-running resumes).
    Fetch(crate::node::verbs::FetchArgs),
    /// The agreements this node holds.
    Agreements(crate::node::NodeHomeArg),
    /// Check a use of fetched data against its agreement (and count it).
    Use(crate::node::verbs::UseArgs),
    /// The duties this node holds and their state.
    Duties(crate::node::NodeHomeArg),
    /// Ask the authority for admission (returns once the request is queued; `tds serve`
    /// picks up the credential when it is approved).
    Join(crate::node::authority::JoinArgs),
    /// Delete the local copy of an agreement's data; the provider gets a signed receipt.
    Delete(crate::node::verbs::DeleteArgs),
    /// Write a consistent copy of a node home (config, keys, credential, store, log) to
    /// one archive file, through the running node or from the stopped home. The file is
    /// as secret as node.key.
    Backup(crate::node::backup::BackupArgs),
    /// Restore a `tds backup` archive into a new home: the archive is checked before
    /// anything is written, the restored log verified before the home is moved in place.
    Restore(crate::node::backup::RestoreArgs),
    /// The five-sector data space on loopback: an authority and connector nodes play
    /// real scenarios through the real protocol, with a narrated table.
    Demo {
        /// Keep the homes in DIR (new or empty) for exploring with the other verbs.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Make a new key and write it to a file (mode 0600).
    New {
        /// Where to write the key. An existing file is replaced only with --force (the
        /// key in it is lost).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Show the id and public key of a key file.
    Show {
        /// The key file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Encrypt a key file in place with a passphrase (Argon2id + ChaCha20-Poly1305):
    /// the passphrase from the file TDS_KEY_PASSPHRASE_FILE names, or TDS_KEY_PASSPHRASE.
    /// An encrypted file is re-encrypted: its current passphrase from TDS_OLD_KEY_PASSPHRASE_FILE.
    Encrypt {
        /// The key file (e.g. HOME/node.key, or an authority home's key).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Write a key file back in plain PKCS#8 (its passphrase from the environment).
    Decrypt {
        /// The key file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct HomeArg {
    /// The authority's home directory (key and state).
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuthorityCommand {
    /// Create a new authority: a home directory with a key and a state file.
    Init {
        #[command(flatten)]
        home: HomeArg,
        /// The authority's display name.
        #[arg(long)]
        name: String,
    },
    /// Show the authority's id, key and counters.
    Show {
        #[command(flatten)]
        home: HomeArg,
    },
    /// Admit a member: sign a membership credential.
    Admit(Box<AdmitArgs>),
    /// Revoke a credential by serial number (publish with `tds authority crl`).
    Revoke {
        #[command(flatten)]
        home: HomeArg,
        /// The credential's serial number.
        #[arg(long)]
        serial: u64,
    },
    /// Sign the current revocation list.
    Crl {
        #[command(flatten)]
        home: HomeArg,
        /// Days until the next list is due (verifiers refuse the list after that).
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..=366))]
        days: u64,
        /// Where to write the list.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Run the authority service: admission (`tds-join/1`), revocation lists, the
    /// federated catalog and witnessing (`tds-authority/1`), admin API on 127.0.0.1.
    Serve(crate::node::authority::ServeArgs),
    /// Admission requests waiting for a decision (JSON; each has an "id").
    Requests {
        #[command(flatten)]
        home: HomeArg,
    },
    /// Approve an admission request: the credential is issued and handed to the
    /// applicant when it asks again.
    Approve(crate::node::authority::ApproveArgs),
    /// Reject an admission request.
    Reject(crate::node::authority::RejectArgs),
    /// Sign a public-data licence: the operator (licensee) may offer the public data
    /// resource under at most this policy (`tds asset add --licence FILE`).
    Licence(Box<LicenceArgs>),
    /// Replace the authority key: the old key signs a statement endorsing a new one.
    Rollover {
        #[command(flatten)]
        home: HomeArg,
        /// Where to write the signed rollover statement (give it to every verifier).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct LicenceArgs {
    #[command(flatten)]
    pub(crate) home: HomeArg,
    /// The operator's participant id (`tds status` shows it as "id").
    #[arg(long, value_name = "ID")]
    pub(crate) licensee: tds_identity::ParticipantId,
    /// The public data resource licensed (a name, e.g. public:meteorological-observations).
    #[arg(long, value_name = "NAME")]
    pub(crate) resource: String,
    /// The widest policy the operator may offer: a policy file (the TDS policy language).
    #[arg(long, value_name = "FILE", conflicts_with = "template")]
    pub(crate) policy: Option<PathBuf>,
    /// A policy template instead (default: licence).
    #[arg(long, value_name = "NAME")]
    pub(crate) template: Option<String>,
    /// Days of validity from now.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=36_600))]
    pub(crate) days: u64,
    /// Where to write the signed licence (give it to the operator).
    #[arg(long, value_name = "FILE")]
    pub(crate) out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct AdmitArgs {
    #[command(flatten)]
    pub(crate) home: HomeArg,
    /// The member's Ed25519 public key, 64 hex digits.
    #[arg(long, value_name = "HEX", value_parser = parse_public_key)]
    pub(crate) subject_key: PublicKey,
    /// The member's display name.
    #[arg(long)]
    pub(crate) name: String,
    /// A sector (power, transport, weather, finance, healthcare, or another lowercase
    /// token); repeat or separate with commas, primary first.
    #[arg(long = "sector", value_name = "SECTOR", required = true, value_delimiter = ',', value_parser = parse_sector)]
    pub(crate) sectors: Vec<Sector>,
    /// A role (provider, consumer, operator, authority, witness); repeat or separate with
    /// commas.
    #[arg(long = "role", value_name = "ROLE[,ROLE]", required = true, value_delimiter = ',', value_parser = parse_role)]
    pub(crate) roles: Vec<Role>,
    /// The member's jurisdiction, a region code such as CN or CN-SX.
    #[arg(long, value_name = "REGION", value_parser = parse_jurisdiction)]
    pub(crate) jurisdiction: Jurisdiction,
    /// Days of validity from --not-before.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=36_600))]
    pub(crate) days: u64,
    /// Start of validity, RFC 3339 (default: now).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub(crate) not_before: Option<Timestamp>,
    /// Where to write the credential.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CredentialCommand {
    /// Verify a credential against trusted authority keys (and a revocation list).
    Verify(VerifyArgs),
    /// Install a node's membership credential in its home (checked against the
    /// authority key and revocation list given, which the node then trusts).
    Install(crate::node::InstallArgs),
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The credential file.
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// A trusted authority public key, 64 hex digits; may repeat.
    #[arg(long = "authority-key", value_name = "HEX", required = true, value_parser = parse_public_key)]
    pub(crate) authority_keys: Vec<PublicKey>,
    /// A signed key-rollover statement to follow from a trusted key; repeat, oldest first.
    #[arg(long = "rollover", value_name = "FILE")]
    pub(crate) rollovers: Vec<PathBuf>,
    /// The authority's revocation list; without it revocation is not checked.
    #[arg(long, value_name = "FILE")]
    pub(crate) crl: Option<PathBuf>,
    /// Verify as of this time, RFC 3339 (default: now).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub(crate) at: Option<Timestamp>,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The file to show.
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
}

pub(crate) fn parse_public_key(s: &str) -> Result<PublicKey, String> {
    PublicKey::from_hex(s).map_err(|e| e.to_string())
}

pub(crate) fn parse_sector(s: &str) -> Result<Sector, String> {
    s.parse().map_err(|e: tds_identity::Invalid| e.to_string())
}

pub(crate) fn parse_role(s: &str) -> Result<Role, String> {
    s.parse().map_err(|e: tds_identity::Invalid| e.to_string())
}

pub(crate) fn parse_jurisdiction(s: &str) -> Result<Jurisdiction, String> {
    s.parse().map_err(|e: tds_identity::Invalid| e.to_string())
}

fn parse_time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
