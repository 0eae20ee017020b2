//! A real `backout up` for end-to-end tests: its own data directory, ports,
//! admin token, and the demo app as the service's releases (the artifact is
//! the demo app's behaviour, e.g. `--error-rate 0.2`).

// Tests wait for real processes, so they read the real clock.
#![allow(dead_code, clippy::unwrap_used, clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

pub const BIN: &str = env!("CARGO_BIN_EXE_backout");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A service file for the demo app. `steps` is a YAML flow list; `extra`
/// is appended at the top level (indented by the caller).
pub fn spec(data_port: u16, steps: &str, extra: &str) -> String {
    format!(
        r#"name: shop
listen: 127.0.0.1:{data_port}
version_header: x-backout-version
probes:
  readiness: {{path: /ready, period: 500ms, timeout: 400ms}}
strategy:
  steps: {steps}
  soak: 2s
  drain: 500ms
  progress_deadline: 20s
analysis:
  promote_after: 4s
  checks:
    - {{kind: error_rate, warmup: 2s}}
    - {{kind: latency, warmup: 2s, tolerance: 1.0}}
driver:
  process:
    command: "'{BIN}' demo-app --port {{port}} --version {{version}} --behaviour {{artifact}}"
    stop_timeout: 2s
{extra}"#
    )
}

pub struct Up {
    pub dir: PathBuf,
    pub data: PathBuf,
    pub api: String,
    pub api_port: u16,
    pub data_port: u16,
    pub token: String,
    /// Arguments added to `backout up`'s own (e.g. `--flags flags.json`).
    pub args: Vec<String>,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl Up {
    /// Starts `backout up` on `spec_text` in a fresh directory.
    pub fn start(spec_text: &str, data_port: u16) -> Up {
        Up::start_with(spec_text, data_port, &[], &[])
    }

    /// [`Up::start`] with more files in its directory and more arguments.
    pub fn start_with(
        spec_text: &str,
        data_port: u16,
        files: &[(&str, &str)],
        args: &[&str],
    ) -> Up {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::write(dir.join("shop.yaml"), spec_text).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let mut up = Up {
            args: args.iter().map(|a| a.to_string()).collect(),
            data: dir.join("data"),
            dir,
            api: String::new(),
            api_port: free_port(),
            data_port,
            token: String::new(),
            child: None,
            _tmp: Some(tmp),
        };
        up.api = format!("http://127.0.0.1:{}", up.api_port);
        up.launch();
        up
    }

    /// (Re)starts the process on the same directory and ports.
    pub fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("up.log"))
            .unwrap();
        let child = Command::new(BIN)
            .current_dir(&self.dir)
            .args(["up", "-f", "shop.yaml", "--api"])
            .arg(format!("127.0.0.1:{}", self.api_port))
            .arg("--data")
            .arg(&self.data)
            .args(["--workers", "1"])
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Answering, not only bound: the listener is bound before the
            // store is set up (its address is advertised to other control
            // planes), and the admin token is written after that.
            if http_get(self.api_port, "/healthz").is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "backout up did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // A second control plane on a shared database finds the tokens
        // made by the first and writes none of its own.
        if let Ok(t) = std::fs::read_to_string(self.data.join("admin.token")) {
            self.token = t.trim().to_string();
        }
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let ok = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(c.id().to_string())
                .status()
                .unwrap()
                .success();
            assert!(ok, "kill -{signal} failed");
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("up.log")).unwrap_or_default()
    }

    /// SIGKILL: no clean-up at all, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: a clean stop that also stops the instances.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs a CLI verb against this `up` with its admin token.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_as(&self.token, args)
    }

    pub fn cli_as(&self, token: &str, args: &[&str]) -> Output {
        Command::new(BIN)
            .current_dir(&self.dir)
            .args(args)
            .env("BACKOUT_SERVER", &self.api)
            .env("BACKOUT_TOKEN", token)
            .output()
            .unwrap()
    }

    /// A CLI verb that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "backout {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `backout release shop --version VERSION --artifact=ARTIFACT` (the
    /// artifact is the demo app's behaviour), which starts its rollout.
    pub fn release(&self, version: &str, artifact: &str) -> String {
        self.ok(&[
            "release",
            "shop",
            "--version",
            version,
            &format!("--artifact={artifact}"),
        ])
    }

    /// The first release, healthy, waited for until it is stable.
    pub fn first_release(&self, version: &str) -> Json {
        self.release(version, "--latency 1ms");
        self.wait_for(&format!("{version} stable"), 30, |s| {
            stable(s) == Some(version) && no_rollout(s)
        })
    }

    pub fn status(&self) -> Json {
        serde_json::from_str(&self.ok(&["status", "shop", "-o", "json"])).unwrap()
    }

    pub fn history(&self) -> Json {
        serde_json::from_str(&self.ok(&["history", "shop", "-o", "json"])).unwrap()
    }

    pub fn events(&self) -> Vec<Json> {
        let v: Json = serde_json::from_str(&self.ok(&[
            "events", "--after", "0", "--limit", "10000", "--all", "-o", "json",
        ]))
        .unwrap();
        v.as_array().unwrap().clone()
    }

    /// Polls the status until `done` holds; panics with the status and log
    /// after `secs`.
    pub fn wait_for(&self, what: &str, secs: u64, done: impl Fn(&Json) -> bool) -> Json {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.status();
            if done(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; status:\n{}\nlog:\n{}",
                    serde_json::to_string_pretty(&s).unwrap(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Calls every endpoint of `backout_server::api::ROUTES` that `which`
/// selects with no token and with a viewer, an operator, an admin and a
/// proxy token, and checks that exactly the roles the list names get
/// through: 401 without a token, 403 for a role that does not allow the
/// needed one (below it, or a proxy on any other endpoint than a proxy's),
/// anything but 401/403/404/405 otherwise (a 404 only for the placeholder
/// object, e.g. flag `nobody`). Bodies are invalid on purpose: this is
/// about who may call. Returns the tokens it created (none, `t-viewer`,
/// `t-operator`, `t-admin`, `t-proxy`).
pub fn check_roles(up: &Up, which: impl Fn(&str) -> bool) -> Vec<(Option<&'static str>, String)> {
    let mut tokens = vec![(None, String::new())];
    for role in ["viewer", "operator", "admin", "proxy"] {
        let name = format!("t-{role}");
        let secret = up.ok(&["token", "create", &name, "--role", role]);
        tokens.push((Some(role), secret.trim().to_string()));
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    for (method, path, needed) in backout_server::api::ROUTES {
        if !which(path) {
            continue;
        }
        let url = format!(
            "{}{}",
            up.api,
            path.replace("{service}", "shop")
                .replace("{name}", "nobody")
                .replace("{key}", "nobody")
        );
        for (role, secret) in &tokens {
            let mut req = client.request(method.parse().unwrap(), &url);
            if role.is_some() {
                req = req.bearer_auth(secret);
            }
            if *method == "POST" || *method == "PUT" {
                req = req.header("content-type", "application/json").body("{}");
            }
            let resp = rt.block_on(req.send()).unwrap();
            let status = resp.status().as_u16();
            // A change stream never ends: its status is the answer.
            let streaming = resp
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            let body = if streaming {
                String::new()
            } else {
                rt.block_on(resp.text()).unwrap()
            };
            let allowed = match (needed, role) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(n), Some(r)) => r.parse::<backout_store::Role>().unwrap().allows(*n),
            };
            let who = role.unwrap_or("no token");
            if allowed {
                assert!(
                    ![401, 403, 404, 405].contains(&status)
                        || body.to_lowercase().contains("not_found"),
                    "{method} {path} as {who}: {status} {body}"
                );
            } else if role.is_none() {
                assert_eq!(status, 401, "{method} {path} as {who}: {body}");
            } else {
                assert_eq!(status, 403, "{method} {path} as {who}: {body}");
            }
        }
    }
    tokens
}

impl Drop for Up {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn stable(s: &Json) -> Option<&str> {
    s["state"]["stable"].as_str()
}

pub fn no_rollout(s: &Json) -> bool {
    s["state"]["rollout"].is_null()
}

pub fn paused(s: &Json) -> bool {
    s["state"]["rollout"]["paused"].is_object()
}

/// Steady traffic on the data plane from a background thread, until
/// dropped: four keep-alive clients, about 25 requests/s each.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub sent: Arc<AtomicU64>,
    /// No answer or an answer other than 2xx.
    pub failed: Arc<AtomicU64>,
    /// Of those, answers with a 5xx status (the proxy answered, and said
    /// it could not serve): a refused connection is not one.
    pub server_errors: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let server_errors = Arc::new(AtomicU64::new(0));
        let (s, n, f, e5) = (
            Arc::clone(&stop),
            Arc::clone(&sent),
            Arc::clone(&failed),
            Arc::clone(&server_errors),
        );
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let url = format!("http://127.0.0.1:{port}/");
                let mut tasks = Vec::new();
                for _ in 0..4 {
                    let (s, n, f, e5, client, url) = (
                        Arc::clone(&s),
                        Arc::clone(&n),
                        Arc::clone(&f),
                        Arc::clone(&e5),
                        client.clone(),
                        url.clone(),
                    );
                    tasks.push(tokio::spawn(async move {
                        while !s.load(Ordering::Relaxed) {
                            n.fetch_add(1, Ordering::Relaxed);
                            match client.get(&url).send().await {
                                Ok(r) if r.status().is_success() => {
                                    let _ = r.bytes().await;
                                }
                                Ok(r) if r.status().is_server_error() => {
                                    f.fetch_add(1, Ordering::Relaxed);
                                    e5.fetch_add(1, Ordering::Relaxed);
                                }
                                _ => {
                                    f.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            tokio::time::sleep(Duration::from_millis(40)).await;
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        });
        Load {
            stop,
            sent,
            failed,
            server_errors,
            thread: Some(thread),
        }
    }
}

impl Load {
    /// (sent, failed, of which 5xx) so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.server_errors.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A new, empty PostgreSQL database on the test server
/// (`BACKOUT_TEST_POSTGRES`, started by scripts/test), as a URL; `None`
/// (with a notice) when no server is configured, unless
/// `BACKOUT_TEST_STRICT=1` forbids skipping.
pub fn fresh_postgres(prefix: &str) -> Option<String> {
    static N: AtomicU64 = AtomicU64::new(0);
    let admin = match std::env::var("BACKOUT_TEST_POSTGRES") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            assert!(
                std::env::var("BACKOUT_TEST_STRICT").as_deref() != Ok("1"),
                "BACKOUT_TEST_POSTGRES is not set; scripts/test starts a PostgreSQL server"
            );
            eprintln!("skipped: BACKOUT_TEST_POSTGRES is not set (scripts/test starts a server)");
            return None;
        }
    };
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b.to_string(), format!("?{q}")),
        None => (admin.clone(), String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    Some(format!("{}/{name}{query}", &base[..host_end]))
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// A `backout proxy --control-plane …` process: its own ports and state
/// directory, restartable on them.
pub struct Edge {
    pub name: String,
    pub port: u16,
    pub admin_port: u16,
    pub state: PathBuf,
    control_planes: Vec<String>,
    token: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Edge {
    /// Starts a proxy named `name` that follows `control_planes` with a
    /// `proxy` token; its state and log live in `dir`.
    pub fn start(dir: &Path, name: &str, control_planes: &[&str], token: &str) -> Edge {
        let mut e = Edge {
            name: name.to_string(),
            port: free_port(),
            admin_port: free_port(),
            state: dir.join(format!("{name}-state")),
            control_planes: control_planes.iter().map(|s| s.to_string()).collect(),
            token: token.to_string(),
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        e.launch();
        e
    }

    pub fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("proxy");
        for cp in &self.control_planes {
            cmd.args(["--control-plane", cp]);
        }
        let child = cmd
            .args([
                "--token",
                &self.token,
                "--name",
                &self.name,
                "--workers",
                "1",
            ])
            .arg("--state")
            .arg(&self.state)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--admin")
            .arg(format!("127.0.0.1:{}", self.admin_port))
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `GET /readyz` of its admin API (`None` while it does not answer).
    pub fn readyz(&self) -> Option<Json> {
        let (_, body) = http_get(self.admin_port, "/readyz")?;
        serde_json::from_str(&body).ok()
    }

    /// Polls `/readyz` until `done` holds.
    pub fn wait_ready(&self, what: &str, secs: u64, done: impl Fn(&Json) -> bool) -> Json {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(r) = self.readyz()
                && done(&r)
            {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "proxy {} timed out waiting for {what}: {:?}\nlog:\n{}",
                self.name,
                self.readyz(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The generation this proxy serves of a service (its admin API).
    pub fn generation(&self, service: &str) -> Option<u64> {
        self.readyz()?["services"][service]["generation"].as_u64()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain `GET` on loopback: (status, body), `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}
