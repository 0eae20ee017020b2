//! Attacks on a real `backout up`, tried as an attacker would try them.

#![allow(clippy::unwrap_used)]

mod harness;
#[path = "flags/support.rs"]
mod support;

use harness::{BIN, Up, free_port, no_rollout, spec, stable};
use serde_json::json;

/// One request with raw headers: (status, body).
fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new().request(method.parse().unwrap(), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !body.is_empty() {
            req = req.body(body.to_string());
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
}

/// The value of one sample in Prometheus text.
fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// The issue's attack: an operator registers a release whose artifact is
/// shell code. The command needs a shell (`&&`, `>`), so it runs under
/// `sh -c`, and the artifact still arrives as one value.
#[test]
fn a_release_artifact_is_never_run_as_shell_code() {
    let port = free_port();
    let text = spec(port, "[{set_weight: 50}]", "").replace(
        &format!("'{BIN}' demo-app --port {{port}} --version {{version}} --behaviour {{artifact}}"),
        &format!(
            "echo {{artifact}} > artifact-{{version}}.txt && exec '{BIN}' demo-app --port {{port}} --version {{version}}"
        ),
    );
    assert!(text.contains("artifact-{version}.txt"), "{text}");
    let up = Up::start(&text, port);
    let attack = "x; id > pwned; true";
    up.ok(&["release", "shop", "--version", "v1", "--artifact", attack]);
    up.wait_for("v1 stable", 30, |s| {
        stable(s) == Some("v1") && no_rollout(s)
    });
    let seen = std::fs::read_to_string(up.dir.join("artifact-v1.txt")).unwrap();
    assert_eq!(seen, format!("{attack}\n"));
    assert!(!up.dir.join("pwned").exists(), "the artifact ran");
}

/// Wrong credentials of every kind are refused, logged without the secret
/// and counted; the scheme `Bearer` is accepted in any case.
#[test]
fn failed_logins_are_logged_without_the_token_and_counted() {
    let port = free_port();
    let up = Up::start(&spec(port, "[{set_weight: 50}]", ""), port);
    let viewer = up.ok(&["token", "create", "watcher", "--role", "viewer"]);
    let viewer = viewer.trim();
    let tokens = format!("{}/api/v1/tokens", up.api);
    let guess = "guessed-0123456789abcdef";
    for (headers, status) in [
        (vec![], 401),
        (vec![("authorization", "Basic YWRtaW46YWRtaW4=")], 401),
        (
            vec![("authorization", format!("Bearer {guess}").as_str())],
            401,
        ),
        (vec![("x-api-key", guess)], 401),
        (
            vec![("authorization", format!("Bearer {viewer}").as_str())],
            403,
        ),
    ] {
        let (got, body) = request("GET", &tokens, &headers, "");
        assert_eq!(got, status, "{headers:?}: {body}");
        assert!(body.contains("\"error\""), "{body}");
    }
    let admin = format!("BEARER {}", up.token);
    let (got, body) = request("GET", &tokens, &[("authorization", &admin)], "");
    assert_eq!(got, 200, "{body}");
    let (_, metrics) = request(
        "GET",
        &format!("{}/metrics", up.api),
        &[("authorization", &admin)],
        "",
    );
    for (reason, n) in [
        ("missing", 1.0),
        ("malformed", 1.0),
        ("unknown", 2.0),
        ("forbidden", 1.0),
    ] {
        let name = format!("backout_auth_failures_total{{listener=\"api\",reason=\"{reason}\"}}");
        assert_eq!(sample(&metrics, &name), Some(n), "{name} in:\n{metrics}");
    }
    let log = up.log();
    assert_eq!(log.matches("authentication failed").count(), 5, "{log}");
    let forbidden = log
        .lines()
        .find(|l| l.contains("authentication failed") && l.contains("forbidden"))
        .unwrap_or_else(|| panic!("no refusal for the viewer in:\n{log}"));
    assert!(
        forbidden.contains("watcher"),
        "the token's name: {forbidden}"
    );
    assert!(
        !log.contains(guess) && !log.contains(viewer),
        "a secret is in the log:\n{log}"
    );
}

/// The standalone flag server counts refused attempts too, and takes the
/// scheme in any case.
#[tokio::test]
async fn the_flag_server_counts_refused_attempts() {
    let flags = json!({"flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}});
    let server = support::Server::start(&flags, &["s3cret"]);
    let url = format!("{}/ofrep/v1/evaluate/flags/f", server.url);
    let (status, _, _) = support::post(&url, "{}", &[("authorization", "Bearer nope")]).await;
    assert_eq!(status, 403);
    let (status, _, _) = support::post(&url, "{}", &[]).await;
    assert_eq!(status, 401);
    let (status, _, body) = support::post(&url, "{}", &[("authorization", "BEARER s3cret")]).await;
    assert_eq!(status, 200, "{body}");
    let metrics = reqwest::Client::new()
        .get(format!("{}/metrics", server.url))
        .header("x-api-key", "s3cret")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (reason, n) in [("missing", 1.0), ("unknown", 1.0)] {
        let name = format!("backout_auth_failures_total{{listener=\"flags\",reason=\"{reason}\"}}");
        assert_eq!(sample(&metrics, &name), Some(n), "{name} in:\n{metrics}");
    }
}

/// `--help` never prints a secret that is set in the environment.
#[test]
fn help_hides_secrets_from_the_environment() {
    for args in [
        &["flag", "list", "--help"][..],
        &["status", "--help"],
        &["flags", "serve", "--help"],
    ] {
        let out = std::process::Command::new(BIN)
            .args(args)
            .env("BACKOUT_FLAGS_TOKEN", "supersecret")
            .env("BACKOUT_TOKEN", "supersecret")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("env: BACKOUT_"),
            "{args:?}: {text}"
        );
        assert!(
            !text.contains("supersecret"),
            "{args:?} shows the secret:\n{text}"
        );
    }
}

/// Starts `backout ARGS…` and returns it with the address it printed after
/// `marker` (`http://` follows), read from stdout or stderr.
fn spawn_listening(args: &[&str], marker: &str) -> (Killed, std::net::SocketAddr) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let addr = loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the command printed its address");
        if let Some(rest) = line.split(marker).nth(1)
            && let Some(url) = rest.split("://").nth(1)
        {
            let addr = url.split(['/', ' ']).next().unwrap();
            break addr.parse().unwrap();
        }
    };
    (Killed(child), addr)
}

/// A child process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `n` clients that send a request head one byte every 300 ms, as the
/// issue's 300 did; each reports when the server closed its connection.
fn slow_clients(
    rt: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    n: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            rt.spawn(async move {
                let head = b"POST /api/v1/flags HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}";
                let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
                    return;
                };
                for byte in head.iter().cycle() {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    let mut buf = [0u8; 512];
                    match stream.try_read(&mut buf) {
                        Ok(0) => return,
                        Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => return,
                        _ => {}
                    }
                    if tokio::io::AsyncWriteExt::write_all(&mut stream, &[*byte])
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            })
        })
        .collect()
}

/// Slow clients hold a listener only as long as its header timeout, and
/// normal clients get through meanwhile: 100 slow connections on each of
/// the three control listeners, with a 1 s header timeout.
fn slow_clients_cannot_hold(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let slow = slow_clients(&rt, addr, 100);
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .unwrap();
        for i in 0..4 {
            let mut req = client.get(format!("http://{addr}{path}"));
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let resp = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!(resp.status(), 200, "request {i}");
        }
        // Every slow client is cut off by the header timeout; bounded so
        // that a listener without one fails the test instead of hanging it.
        let all = futures_util::future::join_all(slow);
        tokio::time::timeout(std::time::Duration::from_secs(30), all)
            .await
            .expect("the slow clients were disconnected");
    });
}

#[test]
fn slow_clients_cannot_hold_the_api() {
    let port = free_port();
    let up = Up::start_with(
        &spec(port, "[{set_weight: 50}]", ""),
        port,
        &[],
        &["--api-header-timeout", "1s"],
    );
    let auth = format!("Bearer {}", up.token);
    let addr = format!("127.0.0.1:{}", up.api_port).parse().unwrap();
    slow_clients_cannot_hold(addr, "/api/v1/services", &[("authorization", &auth)]);
}

#[test]
fn slow_clients_cannot_hold_the_flag_server() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.json");
    std::fs::write(&file, r#"{"flags": {}}"#).unwrap();
    let (_server, addr) = spawn_listening(
        &[
            "flags",
            "serve",
            "-f",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--api-header-timeout",
            "1s",
        ],
        "serving",
    );
    slow_clients_cannot_hold(addr, "/api/v1/flags", &[]);
}

#[test]
fn slow_clients_cannot_hold_the_proxy_admin_api() {
    let (_proxy, addr) = spawn_listening(
        &[
            "proxy",
            "--stable",
            "http://127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--api-header-timeout",
            "1s",
        ],
        "admin API on",
    );
    slow_clients_cannot_hold(addr, "/admin/v1/services", &[]);
}

/// Past the connection cap a client is told so at once, in JSON, and the
/// connections that sit idle are closed, which frees the listener.
#[test]
fn connections_past_the_cap_are_refused_with_a_json_503() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.json");
    std::fs::write(&file, r#"{"flags": {}}"#).unwrap();
    let (_server, addr) = spawn_listening(
        &[
            "flags",
            "serve",
            "-f",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--api-header-timeout",
            "1s",
            "--api-max-connections",
            "20",
        ],
        "serving",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut idle = Vec::new();
        for _ in 0..20 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        // The listener takes the twenty before the next one arrives.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let url = format!("http://{addr}/api/v1/flags");
        let mut refused = None;
        for _ in 0..50 {
            let resp = client.get(&url).send().await.unwrap();
            if resp.status() == 503 {
                refused = Some(resp.text().await.unwrap());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let body = refused.expect("a connection past the cap is refused");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            json["errorDetails"]
                .as_str()
                .unwrap()
                .contains("limit of 20 connections"),
            "{body}"
        );
        // The idle ones are closed after the header timeout; then there is room.
        for mut s in idle {
            let mut buf = [0u8; 16];
            let n = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                tokio::io::AsyncReadExt::read(&mut s, &mut buf),
            )
            .await
            .expect("the idle connection is closed");
            assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        }
        let resp = client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    });
}

/// A wrong method and an oversized body are answered in the listener's
/// JSON error shape, not with a bare line of text.
#[test]
fn refusals_carry_the_listeners_json_error_body() {
    let big = "x".repeat(2 << 20);
    let port = free_port();
    let up = Up::start(&spec(port, "[{set_weight: 50}]", ""), port);
    let auth = format!("Bearer {}", up.token);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.json");
    std::fs::write(&file, r#"{"flags": {}}"#).unwrap();
    let (_flags, flags) = spawn_listening(
        &[
            "flags",
            "serve",
            "-f",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        "serving",
    );
    let (_proxy, admin) = spawn_listening(
        &[
            "proxy",
            "--stable",
            "http://127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
        "admin API on",
    );
    let api_error = |body: &str| {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        v["error"]["message"].as_str().map(str::to_owned)
    };
    let ofrep_error = |body: &str| {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        v["errorDetails"].as_str().map(str::to_owned)
    };
    let json = [
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
    ];
    for (method, url, body, status, shape) in [
        (
            "DELETE",
            format!("{}/api/v1/services", up.api),
            "",
            405,
            &api_error as &dyn Fn(&str) -> Option<String>,
        ),
        (
            "POST",
            format!("{}/api/v1/services/shop/releases", up.api),
            big.as_str(),
            413,
            &api_error,
        ),
        (
            "GET",
            format!("http://{flags}/ofrep/v1/evaluate/flags"),
            "",
            405,
            &ofrep_error,
        ),
        (
            "POST",
            format!("http://{flags}/ofrep/v1/evaluate/flags"),
            big.as_str(),
            413,
            &ofrep_error,
        ),
        (
            "DELETE",
            format!("http://{admin}/admin/v1/services"),
            "",
            405,
            &api_error,
        ),
        (
            "PUT",
            format!("http://{admin}/admin/v1/services/default/route"),
            big.as_str(),
            413,
            &api_error,
        ),
    ] {
        let (got, text) = request(method, &url, &json, body);
        assert_eq!(got, status, "{method} {url}: {text}");
        let message =
            shape(&text).unwrap_or_else(|| panic!("{method} {url}: not the JSON shape: {text}"));
        assert!(!message.is_empty(), "{text}");
    }
}

/// What a web page can make a browser send to a listener on loopback:
/// a "simple" cross-site POST (`text/plain`, with the page's `Origin`),
/// a form without `Origin`, and, after DNS rebinding, a same-origin JSON
/// request whose `Host` is the page's name. All are refused; the tool's
/// own request passes.
fn browser_requests_are_refused(addr: std::net::SocketAddr, mutation: (&str, &str), read: &str) {
    let (method, path) = mutation;
    let url = format!("http://{addr}{path}");
    let (status, body) = request(
        method,
        &url,
        &[
            ("content-type", "text/plain"),
            ("origin", "http://evil.example"),
        ],
        "{}",
    );
    assert_eq!(status, 403, "cross-site simple request: {body}");
    let (status, body) = request(method, &url, &[("content-type", "text/plain")], "{}");
    assert_eq!(status, 415, "a form's text/plain: {body}");
    let (status, body) = request(method, &url, &[], "");
    assert_eq!(status, 415, "a bodiless POST: {body}");
    let rebound_host = format!("evil.example:{}", addr.port());
    let rebound_origin = format!("http://{rebound_host}");
    let (status, body) = request(
        method,
        &url,
        &[
            ("host", &rebound_host),
            ("origin", &rebound_origin),
            ("content-type", "application/json"),
        ],
        "{}",
    );
    assert_eq!(status, 421, "after DNS rebinding: {body}");
    let (status, body) = request(
        "GET",
        &format!("http://{addr}{read}"),
        &[("host", &rebound_host)],
        "",
    );
    assert_eq!(status, 421, "a rebound page reading: {body}");
    assert!(body.contains("--allow-host"), "{body}");
}

/// The tool's own request: JSON, its own Host, no Origin.
fn the_tool_gets_through(addr: std::net::SocketAddr, (method, path): (&str, &str)) {
    let (status, body) = request(
        method,
        &format!("http://{addr}{path}"),
        &[("content-type", "application/json")],
        "{}",
    );
    assert!(
        ![403, 415, 421].contains(&status),
        "the tool's request: {status} {body}"
    );
}

#[test]
fn web_pages_cannot_drive_the_proxy_admin_api() {
    let (_proxy, addr) = spawn_listening(
        &[
            "proxy",
            "--stable",
            "http://127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
        "admin API on",
    );
    let generation = || {
        let url = format!("http://{addr}/admin/v1/services/default/route");
        let (_, body) = request("GET", &url, &[], "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["generation"].as_u64().unwrap()
    };
    let before = generation();
    let rollback = ("POST", "/admin/v1/services/default/rollback");
    browser_requests_are_refused(addr, rollback, "/admin/v1/services");
    assert_eq!(generation(), before, "no request switched the route");
    the_tool_gets_through(addr, rollback);
    assert_eq!(generation(), before + 1, "the tool's rollback did");
}

#[test]
fn web_pages_cannot_drive_an_open_flag_server() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.json");
    std::fs::write(
        &file,
        r#"{"flags": {"f": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}}}"#,
    )
    .unwrap();
    let (_server, addr) = spawn_listening(
        &[
            "flags",
            "serve",
            "-f",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        "serving",
    );
    browser_requests_are_refused(addr, ("POST", "/api/v1/flags/f/kill"), "/api/v1/flags");
    let flags = std::fs::read_to_string(&file).unwrap();
    assert!(
        flags.contains("ENABLED"),
        "no request killed the flag:\n{flags}"
    );
}

/// The admin API refuses to listen beyond loopback without tokens; with a
/// token file every call but the health checks needs one.
#[test]
fn the_admin_api_has_tokens_and_needs_them_beyond_loopback() {
    let out = std::process::Command::new(BIN)
        .args([
            "proxy",
            "--stable",
            "http://127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--admin-token-file"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let token = "0123456789abcdef0123456789abcdef";
    let file = dir.path().join("admin.tokens");
    std::fs::write(&file, format!("# the control plane\n{token}\n")).unwrap();
    let (_proxy, addr) = spawn_listening(
        &[
            "proxy",
            "--stable",
            "http://127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "0.0.0.0:0",
            "--admin-token-file",
            file.to_str().unwrap(),
        ],
        "admin API on",
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", addr.port()).parse().unwrap();
    let services = format!("http://{addr}/admin/v1/services");
    let (status, body) = request("GET", &services, &[], "");
    assert_eq!(status, 401, "{body}");
    let (status, _) = request(
        "GET",
        &services,
        &[("authorization", "Bearer not-the-token-at-all")],
        "",
    );
    assert_eq!(status, 401);
    let (status, _) = request("GET", &format!("http://{addr}/healthz"), &[], "");
    assert_eq!(status, 200, "health checks need no token");
    let auth = format!("Bearer {token}");
    let (status, body) = request("GET", &services, &[("authorization", &auth)], "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = request(
        "POST",
        &format!("http://{addr}/admin/v1/services/default/rollback"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = request(
        "GET",
        &format!("http://{addr}/metrics"),
        &[("authorization", &auth)],
        "",
    );
    let name = "backout_auth_failures_total{listener=\"admin\",reason=\"missing\"}";
    assert_eq!(sample(&metrics, name), Some(1.0), "{metrics}");
}

/// Nobody can lock every admin out through the API, and whoever holds the
/// data directory can get back in, on the record.
#[test]
fn the_last_admin_cannot_be_revoked_and_a_lost_token_is_recovered_locally() {
    let port = free_port();
    let up = Up::start(&spec(port, "[{set_weight: 50}]", ""), port);
    let out = up.cli(&["token", "revoke", "admin"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the last admin was revoked");
    assert!(
        stderr.contains("409") && stderr.contains("last admin token"),
        "{stderr}"
    );
    let second = up.ok(&["token", "create", "second-admin", "--role", "admin"]);
    up.ok(&["token", "revoke", "admin"]);
    let out = up.cli_as(second.trim(), &["token", "revoke", "second-admin"]);
    assert!(!out.status.success(), "the new last admin was revoked");

    // The admin token file is lost (and `second-admin`'s secret with it).
    std::fs::remove_file(up.data.join("admin.token")).unwrap();
    let data = up.data.to_str().unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "token",
            "recover",
            "--data",
            data,
            "--name",
            "break-glass",
            "--reason",
            "admin token lost",
        ])
        .env("USER", "oncall")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = std::fs::read_to_string(up.data.join("admin.token")).unwrap();
    let listed = up.cli_as(secret.trim(), &["token", "list"]);
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).contains("break-glass"));
    let events = up.cli_as(
        secret.trim(),
        &[
            "events", "--after", "0", "--limit", "10000", "--all", "-o", "json",
        ],
    );
    let events: serde_json::Value = serde_json::from_slice(&events.stdout).unwrap();
    let recovered = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "token.recovered")
        .expect("the recovery is in the event log")
        .clone();
    assert_eq!(recovered["actor"], "local:oncall");
    assert_eq!(recovered["reason"], "admin token lost");
    assert!(
        !recovered.to_string().contains(secret.trim()),
        "the secret is not in the log"
    );

    // Without the data directory's event log there is nothing to recover.
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["token", "recover", "--data", empty.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no event log"));
    assert!(
        !empty.path().join("backout.db").exists(),
        "nothing was created"
    );
}

/// A self-signed certificate for `localhost` in `dir` (cert.pem, key.pem);
/// returns the certificate's PEM.
fn make_cert(dir: &std::path::Path) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    cert.pem()
}

/// `GET path` over TLS to `localhost` at `addr`, trusting only `ca_pem`;
/// the whole response.
async fn tls_get(ca_pem: &str, addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The admin API over HTTPS (`--tls-cert`, `--tls-key`): the certificate
/// is verified by a client that trusts it, and plain HTTP gets nowhere.
#[test]
fn the_admin_api_serves_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_cert(dir.path());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (_proxy, addr) = spawn_listening(
        &[
            "proxy",
            "--stable",
            "http://127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        "admin API on",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let text = rt
        .block_on(tls_get(&ca, addr, "/admin/v1/services"))
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"default\""), "{text}");
    let plain = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
    });
    assert!(plain.is_err(), "{plain:?}");
    // A certificate that does not fit its key is refused at start.
    let other = tempfile::tempdir().unwrap();
    make_cert(other.path());
    let out = std::process::Command::new(BIN)
        .args([
            "proxy",
            "--stable",
            "http://127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .args(["--tls-cert", cert.to_str().unwrap(), "--tls-key"])
        .arg(other.path().join("key.pem"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("does not belong"),
        "{stderr}"
    );
}
