//! The authority as a running service (`tds authority serve`) and the admission verbs on
//! both sides: `tds authority requests|approve|reject` (through the running authority's
//! admin API, or on its home) and `tds join` (a node asks to be admitted).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use serde_json::{json, Value};
use tds_authority::{AuthorityConfig, AuthorityService, Validity};
use tds_core::{Clock, PublicKey, Signer};

use super::admin::{self, authorized, error};
use super::home::{self, NodeHome, ADMIN_FILE, TOKEN_FILE};

/// `tds authority serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The authority's home (`tds authority init`).
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
    /// QUIC address for admission (`tds-join/1`) and members' services
    /// (`tds-authority/1`).
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: SocketAddr,
    /// Admin API port on 127.0.0.1 (0: any free port, written to admin.json).
    #[arg(long, default_value_t = 0)]
    pub(crate) admin_port: u16,
    /// Admission requests one source address may send at once (then --join-per-minute).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(crate) join_burst: u32,
    /// Admission requests one source address may send per minute after its burst.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) join_per_minute: u32,
}

/// `tds authority approve`.
#[derive(Debug, Args)]
pub(crate) struct ApproveArgs {
    /// The request id (`tds authority requests`; a unique prefix of 8+ digits works).
    #[arg(value_name = "ID")]
    pub(crate) id: String,
    /// The authority's home.
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
    /// Days of validity from now (default: what the applicant asked for).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=36_600))]
    pub(crate) days: Option<u64>,
}

/// `tds authority reject`.
#[derive(Debug, Args)]
pub(crate) struct RejectArgs {
    /// The request id.
    #[arg(value_name = "ID")]
    pub(crate) id: String,
    /// The authority's home.
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
    /// Why (the applicant is told).
    #[arg(long, default_value = "rejected by the operator")]
    pub(crate) reason: String,
}

/// `tds join`.
#[derive(Debug, Args)]
pub(crate) struct JoinArgs {
    /// The node's home.
    #[arg(long, value_name = "DIR")]
    pub(crate) home: PathBuf,
    /// The authority's QUIC address.
    #[arg(long, value_name = "ADDR")]
    pub(crate) authority: SocketAddr,
    /// The authority's public key, 64 hex digits (its `tds authority show`), pinned for
    /// the connection (default: the key already in the home).
    #[arg(long, value_name = "HEX", value_parser = crate::cli::parse_public_key)]
    pub(crate) authority_key: Option<PublicKey>,
    /// Days of validity to ask for.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=36_600))]
    pub(crate) days: u64,
}

fn open_service(home: &Path) -> anyhow::Result<AuthorityService> {
    let store = crate::home::open(home)?;
    service_on(home, store, AuthorityConfig::default())
}

fn service_on(
    home: &Path,
    store: tds_identity::store::DirAuthorityStore,
    config: AuthorityConfig,
) -> anyhow::Result<AuthorityService> {
    AuthorityService::open(store, config)
        .with_context(|| format!("the authority service of {}", home.display()))
}

fn pending_json(s: &AuthorityService) -> anyhow::Result<Value> {
    let list: Vec<Value> = s
        .pending()?
        .into_iter()
        .map(|p| {
            json!({
                "id": p.id,
                "applicant": p.applicant.to_string(),
                "public_key_hex": p.key.to_hex(),
                "name": p.name,
                "sectors": p.sectors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "roles": p.roles.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "jurisdiction": p.jurisdiction.to_string(),
                "not_before": p.not_before.to_rfc3339(),
                "not_after": p.not_after.to_rfc3339(),
                "received": p.received.to_rfc3339(),
            })
        })
        .collect();
    Ok(json!({ "requests": list }))
}

fn approve_json(s: &AuthorityService, id: &str, days: Option<u64>) -> anyhow::Result<Value> {
    let validity = days.map_or(Validity::Requested, Validity::Days);
    let a = s.approve(id, validity)?;
    Ok(json!({
        "id": a.id,
        "approved": true,
        "serial": a.serial,
        "subject": a.subject.to_string(),
    }))
}

fn reject_json(s: &AuthorityService, id: &str, reason: &str) -> anyhow::Result<Value> {
    s.reject(id, reason)?;
    Ok(json!({ "id": id, "rejected": true, "reason": reason }))
}

#[derive(Clone)]
struct AuthorityState {
    service: Arc<AuthorityService>,
    token: Arc<str>,
}

fn answer(r: anyhow::Result<Value>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "op.failed",
            format!("{e:#}"),
        ),
    }
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "admin.unauthorized",
        "missing or wrong admin token",
    )
}

async fn requests(State(s): State<AuthorityState>, headers: HeaderMap) -> Response {
    if !authorized(&headers, &s.token) {
        return unauthorized();
    }
    answer(pending_json(&s.service))
}

async fn decide(
    State(s): State<AuthorityState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&headers, &s.token) {
        return unauthorized();
    }
    let body = match admin::parse_body(&body) {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let service = s.service.clone();
    let r =
        tokio::task::spawn_blocking(move || match body.get("decision").and_then(Value::as_str) {
            Some("approve") => {
                approve_json(&service, &id, body.get("days").and_then(Value::as_u64))
            }
            Some("reject") => reject_json(
                &service,
                &id,
                body.get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("rejected"),
            ),
            other => Err(anyhow!("decision {other:?}: approve or reject")),
        })
        .await
        .map_err(|e| anyhow!("{e}"))
        .and_then(|r| r);
    answer(r)
}

/// `GET /v1/authority/show` and `POST /v1/authority/{admit,revoke,crl}`: the verbs that
/// need the authority's home, run by the service that holds it.
async fn operate(
    State(s): State<AuthorityState>,
    axum::extract::Path(op): axum::extract::Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&headers, &s.token) {
        return unauthorized();
    }
    let args = match admin::parse_body(&body) {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let service = s.service.clone();
    let r = tokio::task::spawn_blocking(move || operation(&service, &op, &args))
        .await
        .map_err(|e| anyhow!("{e}"))
        .and_then(|r| r);
    answer(r)
}

async fn show(State(s): State<AuthorityState>, headers: HeaderMap) -> Response {
    if !authorized(&headers, &s.token) {
        return unauthorized();
    }
    answer(
        crate::cmd::authority::summary_of(&s.service.public_key(), &s.service.state())
            .map(Value::Object),
    )
}

fn operation(s: &AuthorityService, op: &str, args: &Value) -> anyhow::Result<Value> {
    match op {
        "admit" => {
            let admission = crate::cmd::authority::admission_from(args)?;
            Ok(json!({ "credential": hex::encode(s.admit(&admission)?) }))
        }
        "revoke" => {
            let serial = args
                .get("serial")
                .and_then(Value::as_u64)
                .ok_or_else(|| anyhow!("serial: missing"))?;
            let done = s.revoke(
                tds_authority::RevokeTarget::Serial(serial),
                "revoked by the operator",
            )?;
            Ok(json!({
                "serial": serial,
                "already_revoked": done.serials.is_empty(),
                "revoked_serials": s.state().revoked().collect::<Vec<_>>(),
            }))
        }
        "crl" => {
            let next_update = args
                .get("next_update_ms")
                .and_then(Value::as_u64)
                .map(tds_core::Timestamp::from_millis)
                .ok_or_else(|| anyhow!("next_update_ms: missing"))?;
            Ok(json!({ "crl": hex::encode(s.sign_revocation_list(next_update)?) }))
        }
        "licence" => {
            let field = |k: &str| {
                args.get(k)
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("{k}: missing"))
            };
            let not_after = args
                .get("not_after_ms")
                .and_then(Value::as_u64)
                .map(tds_core::Timestamp::from_millis)
                .ok_or_else(|| anyhow!("not_after_ms: missing"))?;
            let bytes = crate::cmd::authority::sign_licence(
                s.signer().as_ref(),
                field("resource")?,
                field("licensee")?,
                field("policy")?,
                not_after,
            )?;
            Ok(json!({ "licence": hex::encode(bytes) }))
        }
        other => bail!("no operation {other:?}"),
    }
}

async fn metrics(State(s): State<AuthorityState>) -> Response {
    let pending = s.service.pending().map_or(0, |p| p.len());
    let text = format!(
        "# HELP tds_authority_pending_requests Admission requests waiting.\n\
         # TYPE tds_authority_pending_requests gauge\n\
         tds_authority_pending_requests {pending}\n\
         # HELP tds_authority_catalog_entries Entries in the federated catalog.\n\
         # TYPE tds_authority_catalog_entries gauge\n\
         tds_authority_catalog_entries {}\n",
        s.service.catalog_len()
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// `tds authority serve`: runs until SIGTERM or SIGINT.
pub(crate) fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let store = crate::home::open_for_service(&args.home)?;
        if !tds_core::SigningKey::is_encrypted_file(&store.key_path())? {
            eprintln!(
                "warning: {}: the authority key is stored unencrypted; encrypt it with `tds key encrypt` and start with TDS_KEY_PASSPHRASE_FILE",
                store.key_path().display()
            );
        }
        let mut config = AuthorityConfig::default();
        config.join_limits.per_source.burst = args.join_burst;
        config.join_limits.per_source.per_minute = args.join_per_minute;
        let service = Arc::new(service_on(&args.home, store, config)?);
        let endpoint = service.serve(args.listen)?;
        let listen = endpoint.local_addr()?;
        let token_path = args.home.join(TOKEN_FILE);
        let token = match std::fs::read_to_string(&token_path) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
            _ => {
                let t = admin::new_token()?;
                home::write(&token_path, format!("{t}\n").as_bytes(), 0o600)?;
                t
            }
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.admin_port)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = AuthorityState {
            service: service.clone(),
            token: token.into(),
        };
        let app = Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/metrics", get(metrics))
            .route("/v1/authority/requests", get(requests))
            .route("/v1/authority/decide", post(decide))
            .route("/v1/authority/show", get(show))
            .route("/v1/authority/{op}", post(operate))
            .with_state(state);
        let admin_file = args.home.join(ADMIN_FILE);
        home::write(
            &admin_file,
            serde_json::to_string(
                &json!({"url": url, "pid": std::process::id(), "listen": listen.to_string()}),
            )?
            .as_bytes(),
            0o600,
        )?;
        crate::output::print(&json!({
            "id": service.public_key().id().to_string(),
            "public_key_hex": service.public_key().to_hex(),
            "listen": listen.to_string(),
            "admin_url": url,
        }))?;
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(super::serve::stop_signal())
            .await;
        endpoint.close();
        let _ = std::fs::remove_file(&admin_file);
        served.context("admin API")
    })
}

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    super::block_on(f)
}

/// `tds authority requests`.
pub(crate) fn list_requests(home: &Path) -> anyhow::Result<()> {
    let v = block_on(async {
        match admin::call(home, "GET", "/v1/authority/requests", None).await? {
            Some(v) => Ok(v),
            None => pending_json(&open_service(home)?),
        }
    })?;
    crate::output::print(&v)
}

/// `tds authority approve`.
pub(crate) fn approve(a: &ApproveArgs) -> anyhow::Result<()> {
    let body = json!({"decision": "approve", "id": a.id, "days": a.days});
    let v = block_on(async {
        match admin::call(&a.home, "POST", "/v1/authority/decide", Some(&body)).await? {
            Some(v) => Ok(v),
            None => approve_json(&open_service(&a.home)?, &a.id, a.days),
        }
    })?;
    crate::output::print(&v)
}

/// `tds authority reject`.
pub(crate) fn reject(a: &RejectArgs) -> anyhow::Result<()> {
    let body = json!({"decision": "reject", "id": a.id, "reason": a.reason});
    let v = block_on(async {
        match admin::call(&a.home, "POST", "/v1/authority/decide", Some(&body)).await? {
            Some(v) => Ok(v),
            None => reject_json(&open_service(&a.home)?, &a.id, &a.reason),
        }
    })?;
    crate::output::print(&v)
}

/// A fresh signed admission request for this node.
fn admission_request(
    home: &NodeHome,
    key: &tds_core::SigningKey,
    days: u64,
) -> anyhow::Result<Vec<u8>> {
    let now = tds_core::time::SystemClock.now();
    let c = &home.config.node;
    let mut nonce = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| anyhow!("no randomness"))?;
    let roles = c
        .roles
        .iter()
        .map(|r| crate::cli::parse_role(r).map_err(|e| anyhow!("config node.roles: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let request = tds_protocol::join::AdmissionRequest {
        version: tds_protocol::join::ADMISSION_REQUEST_VERSION,
        applicant_key: key.public_key(),
        name: c.name.clone(),
        sectors: vec![
            crate::cli::parse_sector(&c.sector).map_err(|e| anyhow!("config node.sector: {e}"))?
        ],
        roles,
        jurisdiction: crate::cli::parse_jurisdiction(&c.jurisdiction)
            .map_err(|e| anyhow!("config node.jurisdiction: {e}"))?,
        not_before: now,
        not_after: now.saturating_add_millis(days.saturating_mul(tds_core::time::DAY_MS)),
        time: now,
        nonce: nonce.into(),
    };
    Ok(request.sign(key)?)
}

/// Asks the authority once; on admission installs the credential and the authority's
/// current revocation list. Returns the JSON `tds join` prints.
pub(crate) async fn apply_once(
    home: &NodeHome,
    addr: SocketAddr,
    authority: &PublicKey,
    days: u64,
) -> anyhow::Result<Value> {
    let key = home.key()?;
    let signed = admission_request(home, &key, days)?;
    let signer: Arc<dyn Signer> = Arc::new(key);
    let options = tds_authority::ClientOptions::default();
    match tds_authority::apply(addr, signer.clone(), authority, &signed, &options).await? {
        tds_authority::Application::Pending(id) => Ok(json!({
            "status": "pending",
            "request_id": id,
            "authority": addr.to_string(),
        })),
        tds_authority::Application::Admitted(credential) => {
            // The list, fetched as a member now.
            let crl = {
                let identity =
                    tds_transport::LocalIdentity::new(signer.clone(), credential.clone(), None)?;
                let client = tds_authority::AuthorityClient::connect_with(
                    addr,
                    &identity,
                    authority,
                    options.clone(),
                )
                .await?;
                let l = client.revocation_list().await?;
                client.close();
                l.bytes
            };
            home.install_credential(&credential, authority, Some(&crl))?;
            let c = tds_core::cose::open::<tds_identity::Credential>(&credential)?;
            Ok(json!({
                "status": "admitted",
                "serial": c.value().serial(),
                "not_after": c.value().not_after().to_rfc3339(),
                "authority": addr.to_string(),
            }))
        }
    }
}

/// `tds join`.
pub(crate) fn join(a: &JoinArgs) -> anyhow::Result<()> {
    let home = NodeHome::open(&a.home)?;
    let authority = match a.authority_key {
        Some(k) => k,
        None => home.authority_key()?.ok_or_else(|| {
            anyhow!("give --authority-key HEX (the authority's `tds authority show`): no authority key in the home yet")
        })?,
    };
    let v = block_on(apply_once(&home, a.authority, &authority, a.days))?;
    // Remembered for `tds serve`, which asks again until the authority decides.
    home::write(
        &home.path(home::AUTHORITY_FILE),
        format!("{}\n", authority.to_hex()).as_bytes(),
        0o600,
    )?;
    let mut config = home.config.clone();
    config.network.authority_addr = Some(a.authority);
    home::write(
        &home.path(home::CONFIG_FILE),
        config.render().as_bytes(),
        0o600,
    )?;
    crate::output::print(&v)
}

/// `tds serve` on a home without a credential: asks the authority again until it decides
/// (backing off from 5 s to 60 s). Errors if the home never joined.
pub(crate) async fn wait_for_admission(home: &NodeHome) -> anyhow::Result<()> {
    let (Some(addr), Some(authority)) = (home.config.network.authority_addr, home.authority_key()?)
    else {
        bail!(
            "{}: no membership credential yet; run `tds join --home {} --authority ADDR` and have the authority approve it",
            home.dir.display(),
            home.dir.display()
        );
    };
    // Under the authority's default admission rate (a burst of 4, then 2 a minute per
    // source address), even with a `tds join` or two from the same address.
    let mut wait = Duration::from_secs(5);
    loop {
        match apply_once(home, addr, &authority, 365).await {
            Ok(v) if v.get("status").and_then(Value::as_str) == Some("admitted") => {
                tracing::info!(%addr, "admitted by the authority");
                return Ok(());
            }
            Ok(_) => {
                tracing::info!(%addr, "waiting for the authority to approve the admission request")
            }
            Err(e) => {
                let text = format!("{e:#}");
                if text.contains("authority.rejected") {
                    bail!("the authority rejected the admission request: {text}");
                }
                tracing::warn!(%addr, error = %text, "asking the authority failed; trying again");
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(60));
    }
}

/// A member connection to this node's authority, when the home knows one and holds a
/// credential.
pub(crate) async fn member_client(
    home: &NodeHome,
) -> anyhow::Result<Option<tds_authority::AuthorityClient>> {
    let (Some(addr), Some(key), Some(credential)) = (
        home.config.network.authority_addr,
        home.authority_key()?,
        home.credential()?,
    ) else {
        return Ok(None);
    };
    let signer: Arc<dyn Signer> = Arc::new(home.key()?);
    let identity = tds_transport::LocalIdentity::new(signer, credential, None)?;
    let options = tds_authority::ClientOptions {
        connect_timeout: Duration::from_millis(home.config.network.connect_timeout_ms),
        ..Default::default()
    };
    Ok(Some(
        tds_authority::AuthorityClient::connect_with(addr, &identity, &key, options).await?,
    ))
}

/// Keeps the connector's revocation list fresh: fetches the authority's list when half
/// of the held one's validity is gone (at least every 30 s after a failure, at most every
/// hour), applies it and stores it in the home. Runs until the task is dropped.
pub(crate) async fn refresh_revocation_lists(
    home: Arc<NodeHome>,
    connector: tds_connector::Connector,
) {
    loop {
        let wait = match fetch_list(&home, &connector).await {
            Ok(Some(next_update)) => {
                let now = tds_core::time::SystemClock.now();
                let left = next_update.as_millis().saturating_sub(now.as_millis());
                Duration::from_millis(left / 2)
                    .clamp(Duration::from_secs(30), Duration::from_secs(3600))
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "fetching the revocation list failed");
                Duration::from_secs(30)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

pub(crate) async fn fetch_list(
    home: &NodeHome,
    connector: &tds_connector::Connector,
) -> anyhow::Result<Option<tds_core::Timestamp>> {
    let Some(client) = member_client(home).await? else {
        return Ok(None);
    };
    let fetched = client.revocation_list().await;
    client.close();
    let fetched = fetched?;
    connector.apply_revocation_list(&fetched.bytes)?;
    home::write(&home.path(home::CRL_FILE), &fetched.bytes, 0o600)?;
    tracing::debug!(
        sequence = fetched.list.sequence(),
        "revocation list refreshed"
    );
    Ok(Some(fetched.list.next_update()))
}

/// Publishes an offer and its manifest to the authority's federated catalog (when the
/// home knows an authority); returns whether it was published.
pub(crate) async fn publish_federated(
    home: &NodeHome,
    offer: Vec<u8>,
    manifest: Vec<u8>,
) -> anyhow::Result<bool> {
    let Some(client) = member_client(home).await? else {
        return Ok(false);
    };
    let r = client
        .publish(vec![tds_authority::CatalogItem {
            offer: offer.into(),
            manifest: manifest.into(),
        }])
        .await;
    client.close();
    r?;
    Ok(true)
}

/// Searches the authority's federated catalog (every page).
pub(crate) async fn search_federated(
    home: &NodeHome,
    filter: tds_authority::CatalogFilter,
) -> anyhow::Result<Vec<tds_authority::CatalogItem>> {
    let client = member_client(home).await?.ok_or_else(|| {
        anyhow!(
            "no authority known to this home (`tds join --authority ADDR`), or no credential yet"
        )
    })?;
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = client
            .search(&tds_authority::SearchRequest {
                filter: filter.clone(),
                cursor,
                limit: 0,
            })
            .await;
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                client.close();
                return Err(e.into());
            }
        };
        out.extend(page.items);
        match page.next {
            Some(n) if out.len() < 100_000 => cursor = Some(n),
            _ => break,
        }
    }
    client.close();
    Ok(out)
}

/// The log size the authority's witness cosigned last (home file `witnessed.json`).
pub(crate) const WITNESSED_FILE: &str = "witnessed.json";

/// Has the authority's witness cosign this node's log every `network.witness_every_s`
/// seconds when it grew: the checkpoint with a consistency proof from the size cosigned
/// last; the cosigned checkpoint is accepted (kept for evidence, logged as
/// `checkpoint_witnessed`).
///
/// A split view (the witness holds another history of this log, or a larger one: the
/// log was rolled back, e.g. an old backup restored) raises a `split_view` alert
/// (`tds status`, `tds_alerts_total{kind="split_view"}`) and stops the schedule: an
/// operator must look. Any other refusal raises a `witness_refused` alert once per
/// reason code and the schedule goes on; a network failure is logged and retried.
pub(crate) async fn witness_schedule(home: Arc<NodeHome>, connector: tds_connector::Connector) {
    let every = Duration::from_secs(home.config.network.witness_every_s);
    let mut last_attempt: Option<u64> = None;
    let mut refused: Option<String> = None;
    loop {
        tokio::time::sleep(every).await;
        let size = connector.log().size();
        if size == 0 || last_attempt == Some(size) {
            continue;
        }
        match cosign_once(&home, &connector).await {
            Ok(Some(s)) => {
                tracing::info!(
                    size = s,
                    "log checkpoint cosigned by the authority's witness"
                );
                refused = None;
                // Accepting appended an event: that alone is no reason to cosign again.
                last_attempt = Some(connector.log().size());
            }
            Ok(None) => return,
            Err(e) => match witness_outcome(&e) {
                WitnessOutcome::SplitView(code) => {
                    connector.raise_alert(tds_connector::Alert {
                        kind: tds_connector::AlertKind::SplitView,
                        code,
                        message: format!(
                            "the authority's witness holds another history of this log (split view; witnessing stopped): {}",
                            tds_core::code::full_message(&*e)
                        ),
                        agreement: None,
                        peer: None,
                    });
                    return;
                }
                WitnessOutcome::Refused(code) => {
                    last_attempt = Some(size);
                    if refused.as_deref() != Some(code.as_str()) {
                        connector.raise_alert(tds_connector::Alert {
                            kind: tds_connector::AlertKind::WitnessRefused,
                            code: code.clone(),
                            message: format!(
                                "the authority's witness refused this log's checkpoint: {}",
                                tds_core::code::full_message(&*e)
                            ),
                            agreement: None,
                            peer: None,
                        });
                        refused = Some(code);
                    }
                }
                WitnessOutcome::Failed => {
                    tracing::warn!(error = %format!("{e:#}"), "cosigning the log checkpoint failed; trying again later");
                }
            },
        }
    }
}

/// What a failed cosigning round means.
enum WitnessOutcome {
    /// The witness saw another history (or a rollback): the code given.
    SplitView(String),
    /// The witness refused for another reason: the code given.
    Refused(String),
    /// The round did not reach a decision (network, local error).
    Failed,
}

fn witness_outcome(e: &anyhow::Error) -> WitnessOutcome {
    let Some(a) = e.downcast_ref::<tds_authority::AuthorityError>() else {
        return WitnessOutcome::Failed;
    };
    match (a, a.peer_code()) {
        (tds_authority::AuthorityError::SplitView(_), _) | (_, Some("authority.split_view")) => {
            WitnessOutcome::SplitView("authority.split_view".to_owned())
        }
        (_, Some(code)) => WitnessOutcome::Refused(code.to_owned()),
        _ => WitnessOutcome::Failed,
    }
}

pub(crate) async fn cosign_once(
    home: &NodeHome,
    connector: &tds_connector::Connector,
) -> anyhow::Result<Option<u64>> {
    let Some(authority) = home.authority_key()? else {
        return Ok(None);
    };
    let Some(client) = member_client(home).await? else {
        return Ok(None);
    };
    let note = connector.checkpoint()?;
    let log = connector.log();
    let size = tds_provenance::note::verify_checkpoint(note.as_bytes(), &log.verifier_key()?)?
        .checkpoint()
        .size;
    let previous: Option<u64> = std::fs::read(home.path(WITNESSED_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("size").and_then(Value::as_u64))
        .filter(|p| *p <= size);
    let proof = match previous {
        Some(p) => Some(log.consistency(p, Some(size))?),
        None => None,
    };
    let cosigned = client.cosign(&note, proof.as_ref()).await;
    client.close();
    let cosigned = cosigned?;
    connector.accept_cosigned(cosigned.as_bytes(), &authority)?;
    home::write(
        &home.path(WITNESSED_FILE),
        serde_json::to_string(&json!({ "size": size }))?.as_bytes(),
        0o600,
    )?;
    Ok(Some(size))
}
