//! `config.toml` of a node home: what `tds init` writes (every option present, each with
//! a comment) and what `tds serve` reads (unknown keys refused, so a typo is an error,
//! not a silently ignored setting).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeConfig {
    /// Who this node is.
    pub(crate) node: NodeSection,
    /// Where it listens and whom it talks to.
    pub(crate) network: NetworkSection,
    /// The admin API.
    #[serde(default)]
    pub(crate) admin: AdminSection,
    /// Transfers.
    #[serde(default)]
    pub(crate) transfer: TransferSection,
    /// Logs.
    #[serde(default)]
    pub(crate) log: LogSection,
}

/// `[node]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeSection {
    /// Display name (asked for when joining).
    pub(crate) name: String,
    /// Primary sector.
    pub(crate) sector: String,
    /// Roles asked for: provider, consumer.
    pub(crate) roles: Vec<String>,
    /// Jurisdiction (region code).
    pub(crate) jurisdiction: String,
}

/// `[network]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NetworkSection {
    /// QUIC listen address of the connector.
    pub(crate) listen: SocketAddr,
    /// The authority's address (admission, revocation lists, federated catalog,
    /// witnessing), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) authority_addr: Option<SocketAddr>,
    /// How long to wait for a peer to answer a connection attempt, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub(crate) connect_timeout_ms: u64,
    /// Seconds between checkpoints sent to the authority's witness (when the log grew).
    #[serde(default = "default_witness_every_s")]
    pub(crate) witness_every_s: u64,
}

fn default_witness_every_s() -> u64 {
    300
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

/// `[admin]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminSection {
    /// TCP port of the admin API on 127.0.0.1; 0 picks a free one at start (recorded in
    /// `admin.json` in the home).
    #[serde(default)]
    pub(crate) port: u16,
}

/// `[transfer]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TransferSection {
    /// MiB a fetch verifies between two syncs of its output file and resume state.
    #[serde(default = "default_sync_every_mib")]
    pub(crate) sync_every_mib: u64,
    /// Transfers a fetch tries before it gives up (each resumes the last).
    #[serde(default = "default_fetch_attempts")]
    pub(crate) fetch_attempts: u32,
}

fn default_sync_every_mib() -> u64 {
    32
}

fn default_fetch_attempts() -> u32 {
    3
}

impl Default for TransferSection {
    fn default() -> Self {
        TransferSection {
            sync_every_mib: default_sync_every_mib(),
            fetch_attempts: default_fetch_attempts(),
        }
    }
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogSection {
    /// `human` or `json`.
    #[serde(default = "default_format")]
    pub(crate) format: String,
    /// A tracing filter: `info`, `debug`, `tds_connector=debug,info`, ... (`RUST_LOG`
    /// and `--log-level` override it).
    #[serde(default = "default_level")]
    pub(crate) level: String,
}

fn default_format() -> String {
    "human".into()
}

fn default_level() -> String {
    "info".into()
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: default_format(),
            level: default_level(),
        }
    }
}

impl NodeConfig {
    /// Parses `config.toml`.
    pub(crate) fn parse(text: &str) -> Result<NodeConfig, String> {
        let c: NodeConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.check()?;
        Ok(c)
    }

    /// The rules serde cannot say.
    pub(crate) fn check(&self) -> Result<(), String> {
        if !matches!(self.log.format.as_str(), "human" | "json") {
            return Err(format!(
                "log.format is {:?}: expected \"human\" or \"json\"",
                self.log.format
            ));
        }
        if self.transfer.sync_every_mib == 0 || self.transfer.sync_every_mib > 4096 {
            return Err("transfer.sync_every_mib must be 1..=4096".into());
        }
        if self.transfer.fetch_attempts == 0 || self.transfer.fetch_attempts > 100 {
            return Err("transfer.fetch_attempts must be 1..=100".into());
        }
        if self.network.witness_every_s == 0 || self.network.witness_every_s > 86_400 {
            return Err("network.witness_every_s must be 1..=86400".into());
        }
        if self.network.connect_timeout_ms == 0 || self.network.connect_timeout_ms > 600_000 {
            return Err("network.connect_timeout_ms must be 1..=600000".into());
        }
        Ok(())
    }

    /// The file `tds init` writes: every option, each with what it does.
    pub(crate) fn render(&self) -> String {
        let roles: Vec<String> = self
            .node
            .roles
            .iter()
            .map(|r| toml::Value::from(r.as_str()).to_string())
            .collect();
        let q = |s: &str| toml::Value::from(s).to_string();
        let authority = match self.network.authority_addr {
            Some(a) => format!("authority_addr = {}\n", q(&a.to_string())),
            None => "# authority_addr = \"203.0.113.7:7700\"\n".to_owned(),
        };
        format!(
            "# TDS node configuration (written by `tds init`; `tds serve` reads it at start).\n\
             # Unknown keys are refused. Paths are relative to this home.\n\
             \n\
             [node]\n\
             # Display name, asked for when joining the data space.\n\
             name = {name}\n\
             # Primary sector: power, transport, weather, finance, healthcare, or another\n\
             # lowercase token agreed in the data space.\n\
             sector = {sector}\n\
             # Roles asked for when joining: provider, consumer.\n\
             roles = [{roles}]\n\
             # Jurisdiction, a region code such as CN or CN-SX (policies check it).\n\
             jurisdiction = {jurisdiction}\n\
             \n\
             [network]\n\
             # QUIC address the connector listens on (peers connect here).\n\
             listen = {listen}\n\
             # The data space authority: admission, revocation lists, federated catalog,\n\
             # witnessing. `tds join --authority ADDR` sets it.\n\
             {authority}\
             # How long to wait for a peer to answer a connection attempt, in milliseconds.\n\
             connect_timeout_ms = {timeout}\n\
             # Seconds between checkpoints of the log sent to the authority's witness\n\
             # (when the log grew); a split view is logged as an error.\n\
             witness_every_s = {witness}\n\
             \n\
             [admin]\n\
             # TCP port of the admin API on 127.0.0.1 (HTTP JSON; /metrics and /healthz need\n\
             # no token). 0 picks a free port at start; the URL is written to admin.json.\n\
             port = {port}\n\
             \n\
             [transfer]\n\
             # MiB a fetch verifies between two syncs of its output and resume state (what a\n\
             # crash can make it fetch again).\n\
             sync_every_mib = {sync}\n\
             # Transfers a fetch tries before it gives up; each resumes the last.\n\
             fetch_attempts = {attempts}\n\
             \n\
             [log]\n\
             # human or json (`tds serve --log-format` overrides).\n\
             format = {format}\n\
             # A tracing filter such as info, debug or tds_connector=debug,info\n\
             # (`--log-level` and RUST_LOG override).\n\
             level = {level}\n",
            name = q(&self.node.name),
            sector = q(&self.node.sector),
            roles = roles.join(", "),
            jurisdiction = q(&self.node.jurisdiction),
            listen = q(&self.network.listen.to_string()),
            authority = authority,
            timeout = self.network.connect_timeout_ms,
            witness = self.network.witness_every_s,
            port = self.admin.port,
            sync = self.transfer.sync_every_mib,
            attempts = self.transfer.fetch_attempts,
            format = q(&self.log.format),
            level = q(&self.log.level),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> NodeConfig {
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 7700));
        NodeConfig {
            node: NodeSection {
                name: "Grid \"North\" Co".into(),
                sector: "power".into(),
                roles: vec!["provider".into(), "consumer".into()],
                jurisdiction: "CN-SX".into(),
            },
            network: NetworkSection {
                listen,
                authority_addr: None,
                connect_timeout_ms: 5000,
                witness_every_s: 300,
            },
            admin: AdminSection::default(),
            transfer: TransferSection::default(),
            log: LogSection::default(),
        }
    }

    #[test]
    fn the_rendered_file_reads_back_the_same() -> Result<(), String> {
        let c = sample();
        assert_eq!(NodeConfig::parse(&c.render())?, c);
        let mut with = c.clone();
        with.network.authority_addr = Some("10.0.0.1:7700".parse().map_err(|_| "addr")?);
        assert_eq!(NodeConfig::parse(&with.render())?, with);
        Ok(())
    }

    fn configs() -> impl Strategy<Value = NodeConfig> {
        let addr = prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
            (any::<[u16; 8]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        ];
        (
            (".*", ".*", prop::collection::vec(".*", 0..4), ".*"),
            (
                addr.clone(),
                proptest::option::of(addr),
                1..=600_000u64,
                1..=86_400u64,
            ),
            any::<u16>(),
            (1..=4096u64, 1..=100u32),
            (prop_oneof![Just("human"), Just("json")], ".*"),
        )
            .prop_map(
                |(
                    (name, sector, roles, jurisdiction),
                    (listen, authority_addr, timeout, witness),
                    port,
                    (sync, attempts),
                    (format, level),
                )| NodeConfig {
                    node: NodeSection {
                        name,
                        sector,
                        roles,
                        jurisdiction,
                    },
                    network: NetworkSection {
                        listen,
                        authority_addr,
                        connect_timeout_ms: timeout,
                        witness_every_s: witness,
                    },
                    admin: AdminSection { port },
                    transfer: TransferSection {
                        sync_every_mib: sync,
                        fetch_attempts: attempts,
                    },
                    log: LogSection {
                        format: format.into(),
                        level,
                    },
                },
            )
    }

    proptest! {
        /// Any valid configuration (any text in its strings: quotes, newlines, control
        /// characters, any Unicode) renders to a file that parses back to it.
        #[test]
        fn any_config_renders_and_reads_back(c in configs()) {
            prop_assert_eq!(NodeConfig::parse(&c.render()), Ok(c));
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let text = sample().render();
        assert!(NodeConfig::parse(&text.replace("fetch_attempts", "fetch_atempts")).is_err());
        assert!(
            NodeConfig::parse(&text.replace("format = \"human\"", "format = \"xml\"")).is_err()
        );
        assert!(
            NodeConfig::parse(&text.replace("sync_every_mib = 32", "sync_every_mib = 0")).is_err()
        );
        assert!(NodeConfig::parse("").is_err());
    }
}
