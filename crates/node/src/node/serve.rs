//! `tds serve --home DIR`: the connector node. QUIC on the configured address, the admin
//! API on 127.0.0.1 (port recorded in `admin.json`), logs on stderr, one JSON line on
//! stdout once it accepts connections. SIGTERM or SIGINT: stop accepting, let in-flight
//! work finish or suspend (fetch resume states saved), sync, exit 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::json;
use tds_connector::{Connector, ConnectorConfig};
use tds_identity::TrustStore;

use super::admin::{self, AdminState};
use super::home::{self, NodeHome, ADMIN_FILE, TOKEN_FILE};
use super::metrics::Metrics;

/// `--log-format` and `--log-level`, over the config's `[log]`.
#[derive(Clone, Debug, Default)]
pub(crate) struct LogFlags {
    pub(crate) format: Option<String>,
    pub(crate) level: Option<String>,
}

/// Sets up tracing on stderr: human or JSON lines; the level from `RUST_LOG`, else the
/// flag, else the config.
pub(crate) fn init_tracing(home: &NodeHome, flags: &LogFlags) -> anyhow::Result<()> {
    let format = flags
        .format
        .clone()
        .unwrap_or_else(|| home.config.log.format.clone());
    let level = flags
        .level
        .clone()
        .unwrap_or_else(|| home.config.log.level.clone());
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => tracing_subscriber::EnvFilter::try_new(v),
        _ => tracing_subscriber::EnvFilter::try_new(&level),
    }
    .map_err(|e| anyhow!("log level {level:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let installed = match format.as_str() {
        "json" => builder.json().try_init(),
        "human" => builder.try_init(),
        other => return Err(anyhow!("log format {other:?}: expected human or json")),
    };
    installed.map_err(|e| anyhow!("logging: {e}"))
}

/// Runs the node until SIGTERM or SIGINT.
pub(crate) fn serve(home: NodeHome, flags: &LogFlags) -> anyhow::Result<()> {
    init_tracing(&home, flags)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(run(Arc::new(home)))
}

/// The connector of this home, configured from `config.toml`, listening on `listen`
/// (default: the configured address).
pub(crate) async fn start_connector(
    home: &NodeHome,
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<Connector> {
    let key = home.key()?;
    let credential = home.credential()?.ok_or_else(|| {
        anyhow!(
            "{}: no membership credential yet; run `tds join --home {} --authority ADDR` and have the authority approve it",
            home.dir.display(),
            home.dir.display()
        )
    })?;
    let authority = home.authority_key()?.ok_or_else(|| {
        anyhow!(
            "{}: no authority key ({}) to check peers against",
            home.dir.display(),
            home::AUTHORITY_FILE
        )
    })?;
    let mut trust = TrustStore::new();
    trust.add_authority(authority);
    let c = &home.config;
    let config = ConnectorConfig {
        connect_timeout: Duration::from_millis(c.network.connect_timeout_ms),
        sync_every: c.transfer.sync_every_mib.saturating_mul(1 << 20),
        fetch_attempts: c.transfer.fetch_attempts,
        ..ConnectorConfig::default()
    };
    let signer: Arc<dyn tds_core::Signer> = Arc::new(key);
    let mut builder = Connector::builder(signer, credential, trust)
        .data_dir(home.data_dir())
        .listen(listen.unwrap_or(c.network.listen))
        .config(config);
    if let Some(crl) = home.crl()? {
        builder = builder.revocation_list(crl);
    }
    builder
        .start()
        .await
        .with_context(|| format!("starting the connector of {}", home.dir.display()))
}

async fn run(home: Arc<NodeHome>) -> anyhow::Result<()> {
    if home.credential()?.is_none() {
        // Joined but not admitted yet: ask the authority until it decides.
        tokio::select! {
            r = super::authority::wait_for_admission(&home) => r?,
            () = stop_signal() => return Ok(()),
        }
    }
    let connector = start_connector(&home, None).await?;
    if !home.key_encrypted()? {
        tracing::warn!(
            key = %home.path(home::KEY_FILE).display(),
            "the node key is stored unencrypted; encrypt it with `tds key encrypt` and start with TDS_KEY_PASSPHRASE_FILE"
        );
    }
    // Revocation lists from the authority, kept fresh while the node runs.
    let refresher = tokio::spawn(super::authority::refresh_revocation_lists(
        home.clone(),
        connector.clone(),
    ));
    // The log's checkpoints, cosigned by the authority's witness on a schedule.
    let witnessing = tokio::spawn(super::authority::witness_schedule(
        home.clone(),
        connector.clone(),
    ));
    let metrics = Arc::new(Metrics::default());
    {
        let metrics = metrics.clone();
        let mut events = connector.subscribe();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => {
                        if let tds_connector::ConnectorEvent::Alert(a) = &e {
                            tracing::warn!(kind = a.kind.as_str(), code = %a.code, "{}", a.message);
                        }
                        metrics.observe(&e);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "metrics fell behind the event stream");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
    // The admin API: loopback only; the token file is made once and kept.
    let token_path = home.path(TOKEN_FILE);
    let token = match std::fs::read_to_string(&token_path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
        _ => {
            let t = admin::new_token()?;
            home::write(&token_path, format!("{t}\n").as_bytes(), 0o600)?;
            t
        }
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", home.config.admin.port))
        .await
        .with_context(|| format!("admin API on 127.0.0.1:{}", home.config.admin.port))?;
    let admin_addr = listener.local_addr()?;
    let url = format!("http://{admin_addr}");
    let state = AdminState {
        connector: connector.clone(),
        metrics,
        token: token.into(),
        home: home.clone(),
        url: url.clone().into(),
    };
    let app = admin::router(state);
    let admin_file = home.path(ADMIN_FILE);
    home::write(
        &admin_file,
        serde_json::to_string(&json!({"url": url, "pid": std::process::id()}))?.as_bytes(),
        0o600,
    )?;
    let listen = connector.local_addr()?;
    tracing::info!(id = %connector.id(), %listen, admin = %url, "serving");
    crate::output::print(&json!({
        "id": connector.id().to_string(),
        "listen": listen.to_string(),
        "admin_url": url,
    }))?;
    // On the signal: the connector first (in-flight fetches are suspended, their resume
    // states saved, so admin calls waiting on them return), then the admin API drains.
    let stopping = {
        let connector = connector.clone();
        async move {
            stop_signal().await;
            tracing::info!("stopping: suspending in-flight work");
            connector.shutdown().await;
        }
    };
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stopping)
        .await;
    refresher.abort();
    witnessing.abort();
    connector.shutdown().await;
    let _ = std::fs::remove_file(&admin_file);
    tracing::info!("stopped");
    served.context("admin API")
}

/// SIGTERM or SIGINT.
pub(crate) async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
