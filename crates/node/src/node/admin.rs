//! The admin API of a running node: HTTP/1.1 JSON on 127.0.0.1 (decision 0019).
//!
//! `GET /healthz` and `GET /metrics` need no token (loopback only); everything under
//! `/v1/` needs `Authorization: Bearer <token>`, the token being the content of
//! `admin.token` in the home (mode 0600: readable only by the node's user). The verbs of
//! `tds` call it when the node runs ([`call`]), and open the home directly otherwise.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use axum::extract::Path as UrlPath;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::home::{NodeHome, ADMIN_FILE, TOKEN_FILE};
use super::metrics::Metrics;

/// How long a verb waits for the running node's answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a verb waits to connect to the admin API before deciding the node is gone.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest admin request or response body.
pub(crate) const MAX_BODY: usize = 16 << 20;

/// What the admin handlers share.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) connector: tds_connector::Connector,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) token: Arc<str>,
    pub(crate) home: Arc<NodeHome>,
    pub(crate) url: Arc<str>,
}

/// The admin router.
pub(crate) fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/v1/op/{name}", post(op))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let text = s
        .metrics
        .render(s.connector.log().size(), s.connector.peer_count() as u64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// An error answer: `{"error": {"code", "message"}}`.
pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

/// Whether the request carries the token (compared in constant time). An empty token
/// authorizes nothing.
pub(crate) fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.as_bytes(), token.as_bytes());
    !b.is_empty()
        && a.len() == b.len()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The JSON of an admin API request body: an empty body is `{}`.
pub(crate) fn body_json(body: &[u8]) -> Result<Value, serde_json::Error> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
}

/// The JSON body of an admin API request (the node's and the authority's): an empty body
/// is `{}`; anything but JSON is a `400 admin.bad_request` answer.
pub(crate) fn parse_body(body: &[u8]) -> Result<Value, Box<Response>> {
    body_json(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "admin.bad_request",
            format!("body: {e}"),
        ))
    })
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "admin.unauthorized",
        "missing or wrong admin token (admin.token in the home)",
    )
}

async fn status(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    if !authorized(&headers, &s.token) {
        return unauthorized();
    }
    match super::status::running(&s).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "admin.failed",
            format!("{e:#}"),
        ),
    }
}

async fn op(
    State(s): State<AdminState>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&headers, &s.token) {
        return unauthorized();
    }
    let args = match parse_body(&body) {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    match super::ops::run(&s.connector, &s.home, &name, args, None).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "op.failed",
            format!("{e:#}"),
        ),
    }
}

/// A new admin token: 32 random bytes in hex.
pub(crate) fn new_token() -> anyhow::Result<String> {
    let mut b = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| anyhow!("no randomness for the admin token"))?;
    Ok(hex::encode(b))
}

/// Where a running node's admin API is, from `admin.json` (absent: not running).
pub(crate) fn endpoint(home: &Path) -> anyhow::Result<Option<(String, String)>> {
    let file = home.join(ADMIN_FILE);
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => bail!("{}: {}", file.display(), crate::files::io_reason(&e)),
    };
    let v: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: not the admin file tds serve writes", file.display()))?;
    let url = v
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{}: no url", file.display()))?
        .to_owned();
    let token_path = home.join(TOKEN_FILE);
    let token = std::fs::read_to_string(&token_path)
        .map_err(|e| anyhow!("{}: {}", token_path.display(), crate::files::io_reason(&e)))?;
    Ok(Some((url, token.trim().to_owned())))
}

/// Calls the running node's admin API: `None` when no node runs on `home` (no
/// `admin.json`, or nothing answers at its address: a node that was killed), else the
/// JSON answer. An error answer becomes an error with its message.
pub(crate) async fn call(
    home: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Option<Value>> {
    let Some((url, token)) = endpoint(home)? else {
        return Ok(None);
    };
    let authority = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("admin url {url} is not http://"))?;
    let addr: SocketAddr = authority
        .trim_end_matches('/')
        .parse()
        .map_err(|_| anyhow!("admin url {url} is not http://IP:PORT"))?;
    if !addr.ip().is_loopback() {
        bail!("admin url {url} is not on loopback; refusing to send the token there");
    }
    // Not answering: the node is gone (killed without removing admin.json).
    let Ok(Ok(stream)) =
        tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await
    else {
        return Ok(None);
    };
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .context("admin API handshake")?;
    let driver = tokio::spawn(conn);
    let payload = match body {
        Some(b) => serde_json::to_vec(b)?,
        None => Vec::new(),
    };
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(payload)))?;
    let response = tokio::time::timeout(CALL_TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| anyhow!("the running node did not answer within {CALL_TIMEOUT:?}"))?
        .context("admin API request")?;
    let status = response.status();
    let collected = http_body_util::BodyExt::collect(http_body_util::Limited::new(
        response.into_body(),
        MAX_BODY,
    ))
    .await
    .map_err(|e| anyhow!("admin API answer: {e}"))?
    .to_bytes();
    driver.abort();
    let v: Value = serde_json::from_slice(&collected)
        .map_err(|_| anyhow!("admin API answered {status} with a body that is not JSON"))?;
    if !status.is_success() {
        let message = v
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("failed");
        let code = v
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("admin.failed");
        bail!("{message} ({code})");
    }
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::AUTHORIZATION,
            axum::http::HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    /// H4: only the whole token, exactly, under `Bearer`, is accepted; the comparison of
    /// equal lengths looks at every byte (an XOR fold, no early exit), so its time does
    /// not say how many leading bytes were right.
    #[test]
    fn the_token_must_match_whole_and_exactly() {
        let token = "0123456789abcdef".repeat(4);
        assert!(authorized(&with(&format!("Bearer {token}")), &token));
        let mut last = token.clone().into_bytes();
        last[63] = b'0';
        let mut first = token.clone().into_bytes();
        first[0] = b'f';
        for bad in [
            String::new(),
            "Bearer ".into(),
            format!("Bearer {}", String::from_utf8(last).unwrap()),
            format!("Bearer {}", String::from_utf8(first).unwrap()),
            format!("Bearer {}", &token[..63]),
            format!("Bearer {token}0"),
            format!("Bearer {token} "),
            format!("Bearer  {token}"),
            format!("bearer {token}"),
            format!("Basic {token}"),
            format!("Bearer {}", token.to_uppercase()),
            token.clone(),
        ] {
            assert!(!authorized(&with(&bad), &token), "{bad:?} was accepted");
        }
        assert!(!authorized(&HeaderMap::new(), &token));
        // An empty token (a damaged admin.token) opens nothing either.
        assert!(!authorized(&with("Bearer "), ""));
    }
}
