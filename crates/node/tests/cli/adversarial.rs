//! Attacks on a running node's admin API (issue 13, adversarial list): requests without
//! the token or with a wrong one, on every route that needs it, change nothing and get
//! `401 admin.unauthorized`; the API listens on loopback only, so another host cannot
//! reach it at all; and the CLI never sends the token to an address off loopback.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::node::{
    admitted_node, init_and_join, ok, serve, serve_authority, spawn_quiet_serve,
    witness_every_second,
};
use crate::util::*;

/// One raw HTTP/1.1 request: (status, body).
fn http(addr: &str, method: &str, path: &str, headers: &[String], body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// An address of this host that is not loopback, if it has one with a route.
fn non_loopback_ip() -> Option<IpAddr> {
    ["8.8.8.8:53", "192.0.2.1:9", "10.255.255.255:9"]
        .iter()
        .find_map(|to| {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
            s.connect(to).ok()?;
            let ip = s.local_addr().ok()?.ip();
            (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
        })
}

fn log_size(home: &std::path::Path) -> u64 {
    let args = ["status", "--home", p(home)];
    json_of(&succeeded(run_here(&args), &args))["log_size"]
        .as_u64()
        .unwrap()
}

#[test]
fn the_admin_api_refuses_missing_and_wrong_tokens_and_listens_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let home = admitted_node(dir.path(), "grid");
    let (mut child, admin) = serve(&home);
    let url = admin["url"].as_str().unwrap().to_owned();
    let addr = url.strip_prefix("http://").unwrap().to_owned();
    let token = std::fs::read_to_string(home.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let before = log_size(&home);
    let mut wrong_same_length = token.clone().into_bytes();
    wrong_same_length[63] = if wrong_same_length[63] == b'0' {
        b'1'
    } else {
        b'0'
    };
    let wrong_same_length = String::from_utf8(wrong_same_length).unwrap();
    let headers: Vec<(&str, Vec<String>)> = vec![
        ("no header", vec![]),
        ("empty bearer", vec!["Authorization: Bearer ".into()]),
        ("wrong token", vec!["Authorization: Bearer wrong".into()]),
        (
            "one digit off",
            vec![format!("Authorization: Bearer {wrong_same_length}")],
        ),
        (
            "a prefix",
            vec![format!("Authorization: Bearer {}", &token[..32])],
        ),
        ("longer", vec![format!("Authorization: Bearer {token}0")]),
        (
            "upper case",
            vec![format!("Authorization: Bearer {}", token.to_uppercase())],
        ),
        (
            "other scheme",
            vec![format!("Authorization: Basic {token}")],
        ),
        (
            "scheme in lower case",
            vec![format!("Authorization: bearer {token}")],
        ),
        ("token as a cookie", vec![format!("Cookie: token={token}")]),
    ];
    let routes = [
        ("GET", "/v1/status", ""),
        ("POST", "/v1/op/asset_list", "{}"),
        (
            "POST",
            "/v1/op/log_annotate",
            "{\"text\": \"written by an attacker\"}",
        ),
        (
            "POST",
            "/v1/op/backup",
            "{\"out\": \"/tmp/tds-attacker-backup.tar\"}",
        ),
        ("POST", "/v1/op/no_such_op", "{}"),
    ];
    for (what, h) in &headers {
        for (method, path, body) in routes {
            let (status, answer) = http(&addr, method, path, h, body);
            assert_eq!(status, 401, "{what} {method} {path}: {answer}");
            let v: Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(v["error"]["code"], "admin.unauthorized", "{what}: {answer}");
        }
    }
    // Nothing was done: no annotation in the log, no backup written.
    assert_eq!(log_size(&home), before);
    assert!(!std::path::Path::new("/tmp/tds-attacker-backup.tar").exists());
    // The right token does what they could not.
    let auth = vec![format!("Authorization: Bearer {token}")];
    let (status, answer) = http(
        &addr,
        "POST",
        "/v1/op/log_annotate",
        &auth,
        "{\"text\": \"by the operator\"}",
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(log_size(&home), before + 1);

    // Loopback only: the listening socket is bound to 127.0.0.1 (not 0.0.0.0), and from
    // another address of this host there is nothing to connect to.
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let listening: Vec<&str> = tcp
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[3] == "0A" && f[1].ends_with(&format!(":{port:04X}"))
        })
        .collect();
    if !tcp.is_empty() {
        assert!(!listening.is_empty(), "no listening socket on {port}");
        for l in &listening {
            let local = l.split_whitespace().nth(1).unwrap();
            assert!(local.starts_with("0100007F:"), "admin API bound to {local}");
        }
    }
    if let Some(ip) = non_loopback_ip() {
        let there = SocketAddr::new(ip, port);
        let e = TcpStream::connect_timeout(&there, Duration::from_secs(5)).err();
        assert!(e.is_some(), "the admin API answered on {there}");
    }
    stop(&mut child);
}

/// H3: `admin.json` naming an address off loopback (a planted file, a home copied from
/// another machine): the verbs refuse to send the token there, and nothing connects.
#[test]
fn the_admin_client_never_sends_the_token_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let home = admitted_node(dir.path(), "grid");
    std::fs::write(home.join("admin.token"), "ab".repeat(32)).unwrap();
    // Somewhere that would listen, reachable without loopback if the host has an address.
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let ip = non_loopback_ip().unwrap_or_else(|| "203.0.113.1".parse().unwrap());
    for url in [
        format!("http://{ip}:{port}"),
        format!("http://0.0.0.0:{port}"),
        format!("http://[::ffff:{ip}]:{port}"),
    ] {
        std::fs::write(
            home.join("admin.json"),
            serde_json::json!({"url": url, "pid": std::process::id()}).to_string(),
        )
        .unwrap();
        let args = ["status", "--home", p(&home)];
        let line = one_error_line(run_here(&args), &args);
        assert!(
            line.contains("is not on loopback; refusing to send the token there"),
            "{url}: {line}"
        );
        assert!(
            matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{url}: the verb connected"
        );
    }
}

/// H7: a witness that refuses this node's checkpoints for a reason other than a split
/// view (here `witness.proof_needed`: the node lost `witnessed.json`, so it sends no
/// consistency proof) raises one `witness_refused` alert per code, not one per round;
/// the schedule goes on and cosigns again once the node can prove consistency.
#[test]
fn a_witness_refusal_is_raised_once_per_code_and_the_schedule_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("authority");
    let shown = ok(&["authority", "init", "--home", p(&auth), "--name", "Space"]);
    let key = shown["public_key_hex"].as_str().unwrap().to_owned();
    let (mut authority, listen) = serve_authority(&auth, &[]);
    let (node, joined) = init_and_join(dir.path(), "grid", "power", &listen, &key);
    let id = joined["request_id"].as_str().unwrap().to_owned();
    ok(&["authority", "approve", &id, "--home", p(&auth)]);
    witness_every_second(&node);
    let mut served = spawn_quiet_serve(&node);
    let wait = |what: &str, done: &dyn Fn() -> bool| wait_for(what, 60, done);
    wait("the node did not start", &|| {
        node.join("admin.json").exists()
    });
    let annotate = |text: &str| {
        ok(&["log", "annotate", "--home", p(&node), "--text", text]);
    };
    annotate("first");
    let witnessed = node.join("witnessed.json");
    wait("no checkpoint was cosigned", &|| witnessed.exists());
    let kept = std::fs::read(&witnessed).unwrap();
    // The node forgets what the witness cosigned: its next checkpoints carry no proof.
    std::fs::remove_file(&witnessed).unwrap();
    let alerts = || ok(&["status", "--home", p(&node)])["alerts"].clone();
    annotate("second");
    wait("no witness_refused alert", &|| {
        alerts()["witness_refused"] == 1
    });
    // More rounds refused for the same reason: still one alert.
    for round in ["third", "fourth"] {
        annotate(round);
        std::thread::sleep(Duration::from_millis(2500));
    }
    assert_eq!(alerts()["witness_refused"], 1, "{}", alerts());
    assert!(alerts().get("split_view").is_none(), "{}", alerts());
    // With its record back, the node proves consistency and is cosigned again.
    std::fs::write(&witnessed, &kept).unwrap();
    annotate("fifth");
    let before: Value = serde_json::from_slice(&kept).unwrap();
    wait("the schedule did not go on", &|| {
        std::fs::read(&witnessed)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|v| v["size"].as_u64() > before["size"].as_u64())
    });
    for child in [&mut served, &mut authority] {
        stop(child);
    }
}
