//! `/metrics` of a running node: counters fed by the connector's event stream, printed in
//! the Prometheus text format (version 0.0.4), every name prefixed `tds_`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use tds_connector::{ConnectorEvent, Side};

/// Distinct reason codes kept as labels; the rest are counted under `other`.
const MAX_REASONS: usize = 256;

/// The node's counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    peers_connected: AtomicU64,
    peers_closed: AtomicU64,
    agreements_provider: AtomicU64,
    agreements_consumer: AtomicU64,
    negotiations_failed: AtomicU64,
    transfers_started: AtomicU64,
    transfers_completed_provider: AtomicU64,
    transfers_completed_consumer: AtomicU64,
    transfers_failed: AtomicU64,
    bytes_provider: AtomicU64,
    bytes_consumer: AtomicU64,
    verify_failures: AtomicU64,
    terminations: AtomicU64,
    usage_reports: AtomicU64,
    deletions: AtomicU64,
    denials: Mutex<BTreeMap<String, u64>>,
    alerts: Mutex<BTreeMap<&'static str, u64>>,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Codes that say the provider sent data that does not verify (a chunk, or the manifest
/// a transfer started with).
fn is_verify_failure(code: &str) -> bool {
    code.starts_with("chunk.")
        || code.starts_with("manifest.")
        || code.starts_with("merkle.")
        || code.starts_with("cose.")
        || code == "transfer.wrong_chunk"
        || code == "transfer.wrong_asset"
}

impl Metrics {
    /// Counts one event.
    pub(crate) fn observe(&self, e: &ConnectorEvent) {
        match e {
            ConnectorEvent::PeerConnected { .. } => add(&self.peers_connected, 1),
            ConnectorEvent::PeerClosed { .. } => add(&self.peers_closed, 1),
            ConnectorEvent::AgreementConcluded { side, .. } => match side {
                Side::Provider => add(&self.agreements_provider, 1),
                Side::Consumer => add(&self.agreements_consumer, 1),
            },
            ConnectorEvent::NegotiationFailed { .. } => add(&self.negotiations_failed, 1),
            ConnectorEvent::TransferStarted { .. } => add(&self.transfers_started, 1),
            ConnectorEvent::TransferCompleted { side, bytes, .. } => match side {
                Side::Provider => {
                    add(&self.transfers_completed_provider, 1);
                    add(&self.bytes_provider, *bytes);
                }
                Side::Consumer => {
                    add(&self.transfers_completed_consumer, 1);
                    add(&self.bytes_consumer, *bytes);
                }
            },
            ConnectorEvent::TransferFailed { code, .. } => {
                add(&self.transfers_failed, 1);
                if is_verify_failure(code) {
                    add(&self.verify_failures, 1);
                }
            }
            ConnectorEvent::Denied { code, .. } => {
                let mut d = self.denials.lock().unwrap_or_else(PoisonError::into_inner);
                let key = if d.contains_key(code) || d.len() < MAX_REASONS {
                    code.clone()
                } else {
                    "other".to_owned()
                };
                *d.entry(key).or_insert(0) += 1;
            }
            ConnectorEvent::AgreementTerminated { .. } => add(&self.terminations, 1),
            ConnectorEvent::UsageReported { .. } => add(&self.usage_reports, 1),
            ConnectorEvent::Deleted { .. } => add(&self.deletions, 1),
            ConnectorEvent::Alert(a) => {
                let mut m = self.alerts.lock().unwrap_or_else(PoisonError::into_inner);
                *m.entry(a.kind.as_str()).or_insert(0) += 1;
            }
            _ => {}
        }
    }

    /// Alerts raised so far, by kind.
    pub(crate) fn alerts(&self) -> BTreeMap<&'static str, u64> {
        self.alerts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The Prometheus text exposition; `log_size` and `peers` are read at the time.
    pub(crate) fn render(&self, log_size: u64, peers: u64) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, rows: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (labels, v) in rows {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {v}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {v}");
                }
            }
        };
        counter(
            "tds_negotiations_total",
            "Contract negotiations by outcome and side.",
            &[
                (
                    r#"outcome="agreed",side="provider""#,
                    get(&self.agreements_provider),
                ),
                (
                    r#"outcome="agreed",side="consumer""#,
                    get(&self.agreements_consumer),
                ),
                (r#"outcome="failed""#, get(&self.negotiations_failed)),
            ],
        );
        counter(
            "tds_transfers_total",
            "Transfers by outcome and side.",
            &[
                (
                    r#"outcome="started",side="provider""#,
                    get(&self.transfers_started),
                ),
                (
                    r#"outcome="completed",side="provider""#,
                    get(&self.transfers_completed_provider),
                ),
                (
                    r#"outcome="completed",side="consumer""#,
                    get(&self.transfers_completed_consumer),
                ),
                (r#"outcome="failed""#, get(&self.transfers_failed)),
            ],
        );
        counter(
            "tds_transfer_bytes_total",
            "Bytes moved by completed transfers, by side.",
            &[
                (r#"side="provider""#, get(&self.bytes_provider)),
                (r#"side="consumer""#, get(&self.bytes_consumer)),
            ],
        );
        counter(
            "tds_verify_failures_total",
            "Transfers ended by data that did not verify against the manifest.",
            &[("", get(&self.verify_failures))],
        );
        counter(
            "tds_peer_connections_total",
            "Peer connections set up and closed.",
            &[
                (r#"event="connected""#, get(&self.peers_connected)),
                (r#"event="closed""#, get(&self.peers_closed)),
            ],
        );
        counter(
            "tds_post_agreement_total",
            "Terminations, usage reports and deletions seen.",
            &[
                (r#"kind="termination""#, get(&self.terminations)),
                (r#"kind="usage_report""#, get(&self.usage_reports)),
                (r#"kind="deletion""#, get(&self.deletions)),
            ],
        );
        let denials = self
            .denials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let rows: Vec<(String, u64)> = denials
            .iter()
            .map(|(k, v)| (format!("reason=\"{}\"", escape(k)), *v))
            .collect();
        let rows: Vec<(&str, u64)> = rows.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        counter(
            "tds_denials_total",
            "Requests refused, by reason code.",
            &rows,
        );
        let alerts = self.alerts();
        let rows: Vec<(String, u64)> = alerts
            .iter()
            .map(|(k, v)| (format!("kind=\"{k}\""), *v))
            .collect();
        let rows: Vec<(&str, u64)> = rows.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        counter("tds_alerts_total", "Alerts raised, by kind.", &rows);
        let _ = writeln!(out, "# HELP tds_log_entries Entries in the provenance log.");
        let _ = writeln!(out, "# TYPE tds_log_entries gauge");
        let _ = writeln!(out, "tds_log_entries {log_size}");
        let _ = writeln!(out, "# HELP tds_peers Peer sessions open now.");
        let _ = writeln!(out, "# TYPE tds_peers gauge");
        let _ = writeln!(out, "tds_peers {peers}");
        out
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_are_counted_by_reason_and_rendered() {
        let m = Metrics::default();
        for code in [
            "policy.unmet.count",
            "policy.unmet.count",
            "contract.purpose_not_offered",
        ] {
            m.observe(&ConnectorEvent::Denied {
                peer: tds_core::Hash256::from_bytes([1; 32]),
                agreement: None,
                code: code.into(),
                reason: String::new(),
            });
        }
        let text = m.render(7, 2);
        assert!(
            text.contains("tds_denials_total{reason=\"policy.unmet.count\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("tds_denials_total{reason=\"contract.purpose_not_offered\"} 1"),
            "{text}"
        );
        assert!(text.contains("tds_log_entries 7"), "{text}");
        assert!(text.contains("tds_peers 2"), "{text}");
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("tds_"), "{line}");
            assert!(
                line.rsplit(' ')
                    .next()
                    .is_some_and(|v| v.parse::<u64>().is_ok()),
                "{line}"
            );
        }
    }

    /// H9: a flood of distinct denial reasons (peers choose what to be refused for)
    /// keeps at most 256 labels; the rest are counted under `other`, and reasons seen
    /// before keep their own label.
    #[test]
    fn at_most_256_denial_reasons_are_labels() {
        let m = Metrics::default();
        let deny = |code: String| {
            m.observe(&ConnectorEvent::Denied {
                peer: tds_core::Hash256::from_bytes([1; 32]),
                agreement: None,
                code,
                reason: String::new(),
            });
        };
        for i in 0..300 {
            deny(format!("policy.unmet.x{i:03}"));
        }
        deny("policy.unmet.x000".into());
        let text = m.render(0, 0);
        let labels: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("tds_denials_total{"))
            .collect();
        assert_eq!(labels.len(), MAX_REASONS + 1, "{labels:?}");
        assert!(
            text.contains("tds_denials_total{reason=\"other\"} 44"),
            "{text}"
        );
        assert!(
            text.contains("tds_denials_total{reason=\"policy.unmet.x000\"} 2"),
            "{text}"
        );
        assert!(!text.contains("policy.unmet.x299"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
