//! The CLI verbs that talk to a running `backout up` over its API, so they
//! work the same from the machine itself or from anywhere that can reach it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args as ClapArgs, Subcommand, ValueEnum};
use miette::{IntoDiagnostic, Result, WrapErr, miette};
use serde_json::{Value as Json, json};

/// Where the API is and who we are.
#[derive(Debug, Clone, ClapArgs)]
pub struct Remote {
    /// The API of a running `backout up`; several, comma-separated, for
    /// control planes that share a database: the first that answers is
    /// used, and a follower's "not the leader" sends the request on to
    /// the leader it names.
    #[arg(
        long,
        global = true,
        env = "BACKOUT_SERVER",
        default_value = "http://127.0.0.1:9900"
    )]
    server: String,
    /// API token; without one, the admin token `backout up` wrote to the
    /// data directory is used.
    #[arg(long, global = true, env = "BACKOUT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The data directory of a local `backout up` (for its admin token).
    #[arg(
        long,
        global = true,
        env = "BACKOUT_DATA",
        default_value = "backout-data"
    )]
    data: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Why one attempt at one control plane failed.
enum Failure {
    /// It answered: that is the answer.
    Answered(miette::Report),
    /// It does not lead; the leader's URL when it named one.
    NotLeader {
        error: miette::Report,
        leader: Option<String>,
    },
    /// It could not be reached: try the next one.
    Unreachable(miette::Report),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

pub fn now_ms() -> i64 {
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Remote {
    fn token(&self) -> Option<String> {
        self.token.clone().or_else(|| {
            std::fs::read_to_string(self.data.join("admin.token"))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
    }

    /// One API call; an error answer becomes a message naming what the
    /// server said.
    pub fn call(&self, method: &str, path: &str, body: Option<Json>) -> Result<Json> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .into_diagnostic()?;
        runtime.block_on(self.call_async(method, path, body))
    }

    /// The control planes to try, in order.
    fn servers(&self) -> Vec<String> {
        self.server
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    async fn call_async(&self, method: &str, path: &str, body: Option<Json>) -> Result<Json> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .into_diagnostic()?;
        let method: reqwest::Method = method.parse().into_diagnostic()?;
        let mut queue: std::collections::VecDeque<String> = self.servers().into();
        let mut tried: Vec<String> = Vec::new();
        let mut last = None;
        while let Some(server) = queue.pop_front() {
            if tried.contains(&server) {
                continue;
            }
            tried.push(server.clone());
            match self
                .call_one(&client, &server, method.clone(), path, body.clone())
                .await
            {
                Ok(value) => return Ok(value),
                Err(Failure::Answered(e)) => return Err(e),
                Err(Failure::NotLeader { error, leader }) => {
                    if let Some(url) = leader {
                        queue.push_front(url.trim_end_matches('/').to_string());
                    }
                    last = Some(error);
                }
                Err(Failure::Unreachable(e)) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| miette!("no API given: set --server or BACKOUT_SERVER")))
    }

    /// One attempt against one control plane.
    async fn call_one(
        &self,
        client: &reqwest::Client,
        server: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Json>,
    ) -> std::result::Result<Json, Failure> {
        let url = format!("{server}{path}");
        let mutation = [
            reqwest::Method::POST,
            reqwest::Method::PUT,
            reqwest::Method::PATCH,
        ]
        .contains(&method);
        let safe = method == reqwest::Method::GET || method == reqwest::Method::HEAD;
        let mut request = client.request(method, &url);
        if let Some(token) = self.token() {
            request = request.bearer_auth(token);
        }
        match body {
            Some(body) => request = request.json(&body),
            // The API refuses a mutation that does not say it is JSON (a
            // browser's form could send it otherwise), also without a body.
            None if mutation => {
                request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
            }
            None => {}
        }
        let response = request.send().await.map_err(|e| {
            let error = miette!(
                "cannot reach the backout API at {server}: {e}\nis `backout up` running? (set --server or BACKOUT_SERVER)"
            );
            // Another control plane may take a request that never left;
            // one that may have reached this one could be applied twice.
            if e.is_connect() || safe {
                Failure::Unreachable(error)
            } else {
                Failure::Answered(error)
            }
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let value: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
        if !status.is_success() {
            let e = &value["error"];
            let field = e["field"]
                .as_str()
                .map(|f| format!(" (field `{f}`)"))
                .unwrap_or_default();
            let message = e["message"].as_str().unwrap_or(&text);
            let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
                "\ngive a token with --token or BACKOUT_TOKEN (create one with `backout token create`)"
            } else {
                ""
            };
            let error = miette!("{status}: {message}{field}{hint}");
            if e["code"] == "not_leader" {
                return Err(Failure::NotLeader {
                    error,
                    leader: e["leader"].as_str().map(str::to_owned),
                });
            }
            return Err(Failure::Answered(error));
        }
        Ok(value)
    }

    fn print(&self, value: &Json, text: impl FnOnce(&Json)) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            ),
            Output::Text => text(value),
        }
    }
}

#[derive(Debug, ClapArgs)]
pub struct ServiceArgs {
    /// The service, as named in its file.
    service: String,
    /// Why: recorded in the event log with your token's name.
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, ClapArgs)]
pub struct StatusArgs {
    /// The service; all services when left out.
    service: Option<String>,
    /// Keep printing as things change (Ctrl-C to stop).
    #[arg(long, short)]
    watch: bool,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, ClapArgs)]
pub struct RollbackArgs {
    service: String,
    /// Go to this pinned known-good release instead, without analysis.
    #[arg(long, value_name = "VERSION")]
    to: Option<String>,
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, ClapArgs)]
pub struct PromoteArgs {
    service: String,
    /// Straight to 100%, skipping every remaining step (break-glass, audited).
    #[arg(long)]
    full: bool,
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, ClapArgs)]
#[command(
    after_help = "Example: backout weight shop 25 --reason \"more traffic before the evening peak\""
)]
pub struct WeightArgs {
    service: String,
    /// The canary's share in percent, 0 to below 100 in steps of 0.1 (100
    /// is `promote --full`).
    percent: f64,
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, ClapArgs)]
pub struct ReleaseArgs {
    service: String,
    /// The release's version name (immutable once registered).
    #[arg(long)]
    version: String,
    /// What is deployed: an image, a path, a digest. May start with a
    /// hyphen (`--artifact "--latency 1ms"`).
    #[arg(long, allow_hyphen_values = true)]
    artifact: Option<String>,
    /// Release config, e.g. `endpoints=http://10.0.0.5:8080` for static drivers.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Register only; roll it out later with `backout rollout`.
    #[arg(long)]
    no_rollout: bool,
    /// The release's SQL migrations: a directory of `.sql` files (applied
    /// in name order) or files. They are checked at registration against
    /// the migrations of the release that is stable now.
    #[arg(long, value_name = "PATH")]
    migrations: Vec<std::path::PathBuf>,
    /// The dialect of `--migrations`: postgres or mysql (default: the
    /// spec's `gates.dialect`, else postgres).
    #[arg(long)]
    dialect: Option<String>,
    /// The release's API contract (OpenAPI 3.0/3.1 or a JSON Schema),
    /// checked against the stable release's in both directions.
    #[arg(long, value_name = "FILE")]
    api: Option<std::path::PathBuf>,
    /// The service file: its `gates.migrations` and `gates.api` paths
    /// (relative to the file) stand in for `--migrations` and `--api`.
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    file: Option<std::path::PathBuf>,
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, clap::Subcommand)]
pub enum GatesCommand {
    /// Accept a release's gate findings with a reason: the gate no longer
    /// holds it back (`refuse`) or withholds automatic rollback
    /// (`manual_rollback`). Recorded in the event log.
    Accept {
        service: String,
        version: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, ClapArgs)]
#[command(
    after_help = "Examples:\n  backout events shop            the newest 200 events of shop\n  backout events shop --follow   then every new one as it is appended\n  backout events --after 1200    from seq 1201 on, oldest first"
)]
pub struct EventsArgs {
    /// Only this service's events.
    service: Option<String>,
    /// Only events after this seq, oldest first. Without it, the newest
    /// `--limit` events (like `tail`).
    #[arg(long)]
    after: Option<i64>,
    /// How many events to show.
    #[arg(long, default_value_t = 200)]
    limit: usize,
    /// Keep printing events as they are appended (like `tail -f`); stop
    /// with Ctrl-C.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Include ticks and readiness reports (left out by default).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, ClapArgs)]
pub struct AutoRollbackArgs {
    service: String,
    /// Turn automatic rollback off …
    #[arg(long, conflicts_with = "on", requires_all = ["for_", "reason"])]
    off: bool,
    /// … or back on.
    #[arg(long)]
    on: bool,
    /// How long it stays off, e.g. `2h`.
    #[arg(long = "for", value_name = "DURATION")]
    for_: Option<String>,
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; prints the secret once.
    Create {
        name: String,
        #[arg(long, default_value = "operator")]
        role: String,
        /// Write straight into the local data directory instead of asking
        /// the API (to make the first tokens).
        #[arg(long)]
        local: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke a token. The last admin token cannot be revoked.
    Revoke {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Lost every admin token? Mint a new one straight into the data
    /// directory's event log and write it to DATA/admin.token. Works only
    /// for whoever can write the data directory, and is recorded in the
    /// event log as `token.recovered` by `local:$USER`.
    #[command(
        after_help = "Example: backout token recover --data /var/lib/backout --reason \"admin token lost\"\nThen revoke the tokens you no longer trust: backout token list, backout token revoke NAME"
    )]
    Recover {
        /// Name of the new admin token (default: `recovered-UNIXSECONDS`).
        #[arg(long)]
        name: Option<String>,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Who acts when the CLI writes to the data directory itself, as the
/// event log records it.
fn local_actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("local:{user}")
}

/// The event log of an existing data directory, opened without the side
/// effects of `backout up` (which mints a first admin token).
fn existing_store(data: &std::path::Path) -> Result<backout_store::SqliteStore> {
    let db = data.join("backout.db");
    if !db.is_file() {
        return Err(miette!(
            "there is no event log at {}; give the data directory of an existing `backout up` with --data",
            db.display()
        ));
    }
    backout_store::SqliteStore::open(&db)
        .map_err(|e| miette!("{e}"))
        .wrap_err_with(|| format!("cannot open the event log {}", db.display()))
}

/// Appends the audit record of a token made locally.
fn audit_local(
    store: &dyn backout_store::Store,
    kind: &str,
    name: &str,
    reason: Option<String>,
    at: i64,
) -> Result<()> {
    let mut ev = backout_store::NewEvent::new(
        "",
        kind,
        local_actor(),
        at,
        json!({"name": name, "role": backout_store::Role::Admin}),
    );
    if let Some(r) = reason {
        ev = ev.with_reason(r);
    }
    store.append(vec![ev]).map_err(|e| miette!("{e}"))?;
    Ok(())
}

fn path(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn print_change(remote: &Remote, value: &Json) {
    remote.print(value, |v| {
        for n in v["notices"].as_array().into_iter().flatten() {
            println!("{}", n["message"].as_str().unwrap_or_default());
        }
        if v["duplicate"].as_bool() == Some(true) {
            println!("(already applied earlier: nothing new was done)");
        }
        println!("recorded as event #{}", v["seq"]);
    });
}

fn command(args: &ServiceArgs, body: Json) -> Result<ExitCode> {
    let mut body = body;
    if let Some(r) = &args.reason {
        body["reason"] = json!(r);
    }
    let v = args.remote.call(
        "POST",
        &format!("/api/v1/services/{}/actions", path(&args.service)),
        Some(body),
    )?;
    print_change(&args.remote, &v);
    Ok(ExitCode::SUCCESS)
}

pub fn approve(a: ServiceArgs) -> Result<ExitCode> {
    command(&a, json!({"command": "approve"}))
}
pub fn pause(a: ServiceArgs) -> Result<ExitCode> {
    command(&a, json!({"command": "pause"}))
}
pub fn resume(a: ServiceArgs) -> Result<ExitCode> {
    command(&a, json!({"command": "resume"}))
}
pub fn abort(a: ServiceArgs) -> Result<ExitCode> {
    command(&a, json!({"command": "abort"}))
}

pub fn rollback(a: RollbackArgs) -> Result<ExitCode> {
    let mut body = json!({"command": "rollback"});
    if let Some(to) = &a.to {
        body["to"] = json!(to);
    }
    let args = ServiceArgs {
        service: a.service,
        reason: a.reason,
        remote: a.remote,
    };
    command(&args, body)
}

pub fn promote(a: PromoteArgs) -> Result<ExitCode> {
    let args = ServiceArgs {
        service: a.service,
        reason: a.reason,
        remote: a.remote,
    };
    command(&args, json!({"command": "promote", "full": a.full}))
}

pub fn weight(a: WeightArgs) -> Result<ExitCode> {
    let weight =
        backout_routing::Permille::from_percent(a.percent).map_err(|e| miette!("PERCENT: {e}"))?;
    let args = ServiceArgs {
        service: a.service,
        reason: a.reason,
        remote: a.remote,
    };
    command(&args, json!({"command": "set_weight", "weight": weight}))
}

pub fn release(a: ReleaseArgs) -> Result<ExitCode> {
    let mut config = BTreeMap::new();
    for kv in &a.set {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            miette!("--set {kv:?}: write KEY=VALUE, e.g. --set endpoints=http://127.0.0.1:9001")
        })?;
        if k.is_empty() {
            return Err(miette!("--set {kv:?}: the key is empty"));
        }
        config.insert(k.to_string(), v.to_string());
    }
    let mut body = json!({"version": a.version, "config": config, "rollout": !a.no_rollout});
    if let Some(art) = &a.artifact {
        body["artifact"] = json!(art);
    }
    let a = with_spec_paths(a)?;
    if !a.migrations.is_empty() || a.api.is_some() {
        body["contracts"] = contracts(&a)?;
    }
    if let Some(r) = &a.reason {
        body["reason"] = json!(r);
    }
    let v = a.remote.call(
        "POST",
        &format!("/api/v1/services/{}/releases", path(&a.service)),
        Some(body),
    )?;
    print_change(&a.remote, &v);
    Ok(ExitCode::SUCCESS)
}

/// Fills `--migrations`, `--api` and `--dialect` from the spec's `gates:`
/// section when they are not given.
fn with_spec_paths(mut a: ReleaseArgs) -> Result<ReleaseArgs> {
    let Some(file) = &a.file else { return Ok(a) };
    let text = std::fs::read_to_string(file)
        .map_err(|e| miette!("-f {}: cannot read it: {e}", file.display()))?;
    let spec = backout_spec::ServiceSpec::parse(&backout_spec::Source::new(
        file.display().to_string(),
        text,
    ))?;
    let base = file.parent().unwrap_or(std::path::Path::new("."));
    if a.migrations.is_empty()
        && let Some(m) = &spec.gates.migrations
    {
        a.migrations.push(base.join(m));
    }
    if a.api.is_none()
        && let Some(p) = &spec.gates.api
    {
        a.api = Some(base.join(p));
    }
    if a.dialect.is_none() {
        a.dialect = Some(spec.gates.dialect.as_str().to_string());
    }
    Ok(a)
}

/// The release's migrations and contract as the API takes them. Migration
/// names are file names, so the same migration has the same name in every
/// release whatever the checkout's path.
fn contracts(a: &ReleaseArgs) -> Result<Json> {
    let files =
        super::check::read_migrations(&a.migrations).map_err(|e| miette!("--migrations: {e}"))?;
    let migrations: Vec<Json> = files
        .iter()
        .map(|f| {
            let name = std::path::Path::new(&f.name)
                .file_name()
                .map_or_else(|| f.name.clone(), |n| n.to_string_lossy().into_owned());
            json!({"name": name, "text": f.sql})
        })
        .collect();
    let dialect = a.dialect.as_deref().unwrap_or("postgres");
    let mut c = json!({"dialect": dialect, "migrations": migrations});
    if let Some(p) = &a.api {
        let text = std::fs::read_to_string(p)
            .map_err(|e| miette!("--api {}: cannot read it: {e}", p.display()))?;
        let name = p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        c["api"] = json!({"name": name, "text": text});
    }
    Ok(c)
}

pub fn gates(c: GatesCommand) -> Result<ExitCode> {
    match c {
        GatesCommand::Accept {
            service,
            version,
            reason,
            remote,
        } => {
            let v = remote.call(
                "POST",
                &format!("/api/v1/services/{}/actions", path(&service)),
                Some(json!({"command": "accept_gates", "version": version, "reason": reason})),
            )?;
            print_change(&remote, &v);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One line for a release's gate report, and its worst findings.
fn render_gates(out: &mut String, version: &str, g: &Json, indent: &str) {
    use std::fmt::Write;
    if g.is_null() {
        return;
    }
    let findings = g["findings"].as_array().cloned().unwrap_or_default();
    let accepted = g["accepted"]
        .as_object()
        .map(|a| {
            format!(
                "; accepted by {}: {}",
                a.get("by").and_then(Json::as_str).unwrap_or("?"),
                a.get("reason").and_then(Json::as_str).unwrap_or("")
            )
        })
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{indent}gates  {version} against {}: {} ({} finding{}){accepted}",
        g["against"].as_str().unwrap_or("no stable release"),
        g["verdict"].as_str().unwrap_or("?"),
        findings.len(),
        if findings.len() == 1 { "" } else { "s" }
    );
    for f in findings.iter().filter(|f| f["class"] == "unsafe").take(5) {
        let _ = writeln!(
            out,
            "{indent}  unsafe {} at {}: {}",
            f["rule"].as_str().unwrap_or_default(),
            f["at"].as_str().unwrap_or_default(),
            f["message"].as_str().unwrap_or_default()
        );
    }
}

pub fn rollout(a: ReleaseArgs) -> Result<ExitCode> {
    let mut body = json!({"version": a.version});
    if let Some(r) = &a.reason {
        body["reason"] = json!(r);
    }
    let v = a.remote.call(
        "POST",
        &format!("/api/v1/services/{}/rollouts", path(&a.service)),
        Some(body),
    )?;
    print_change(&a.remote, &v);
    Ok(ExitCode::SUCCESS)
}

pub fn auto_rollback(a: AutoRollbackArgs) -> Result<ExitCode> {
    if a.off == a.on {
        return Err(miette!("say --off (with --for and --reason) or --on"));
    }
    let mut body = json!({"enabled": a.on});
    if let Some(d) = &a.for_ {
        let d = backout_spec::Duration::parse(d).map_err(|e| miette!("--for: {e}"))?;
        body["until_ms"] = json!(now_ms() + d.get().as_millis() as i64);
    }
    if let Some(r) = &a.reason {
        body["reason"] = json!(r);
    }
    let v = a.remote.call(
        "PUT",
        &format!("/api/v1/services/{}/auto-rollback", path(&a.service)),
        Some(body),
    )?;
    print_change(&a.remote, &v);
    Ok(ExitCode::SUCCESS)
}

pub fn status(a: StatusArgs) -> Result<ExitCode> {
    let Some(service) = &a.service else {
        let v = a.remote.call("GET", "/api/v1/services", None)?;
        a.remote.print(&v, |v| {
            println!(
                "{:<20} {:<12} {:<12} {:<12} {:>7} verdict",
                "SERVICE", "STABLE", "ROLLOUT", "PHASE", "CANARY"
            );
            for s in v.as_array().into_iter().flatten() {
                println!(
                    "{:<20} {:<12} {:<12} {:<12} {:>6.1}% {}",
                    s["name"].as_str().unwrap_or_default(),
                    s["stable"].as_str().unwrap_or("-"),
                    s["rollout"].as_str().unwrap_or("-"),
                    s["phase"].as_str().unwrap_or("-"),
                    s["canary_weight_permille"].as_f64().unwrap_or(0.0) / 10.0,
                    s["verdict"].as_str().unwrap_or("-"),
                );
            }
        });
        return Ok(ExitCode::SUCCESS);
    };
    let url = format!("/api/v1/services/{}", path(service));
    loop {
        let v = a.remote.call("GET", &url, None)?;
        if a.watch && a.remote.output == Output::Text {
            print!("\x1b[2J\x1b[H");
        }
        a.remote.print(&v, |v| println!("{}", render_status(v)));
        if !a.watch {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn ms(v: &Json) -> String {
    v.as_i64()
        .map_or("-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0))
}

fn bar(percent: f64) -> String {
    let filled = ((percent / 100.0) * 20.0).round() as usize;
    format!(
        "[{}{}]",
        "█".repeat(filled.min(20)),
        "░".repeat(20 - filled.min(20))
    )
}

/// The human view of one service.
pub fn render_status(v: &Json) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let st = &v["state"];
    let name = v["name"].as_str().unwrap_or_default();
    let _ = writeln!(
        out,
        "{name}: stable {}",
        st["stable"].as_str().unwrap_or("(none yet)")
    );
    // Only with several control planes (a lone one has no term).
    let cp = &v["control_plane"];
    if cp["term"].as_i64().unwrap_or(0) > 0 || cp["leading"] == false {
        let who = cp["name"].as_str().unwrap_or("?");
        let _ = match (cp["leading"].as_bool(), cp["leader_url"].as_str()) {
            (Some(true), _) => writeln!(out, "  control plane  {who} leads (term {})", cp["term"]),
            (_, Some(url)) => writeln!(
                out,
                "  control plane  {who} follows the leader at {url} (this view may be a moment behind)"
            ),
            _ => writeln!(out, "  control plane  {who} follows; no leader right now"),
        };
    }
    let route = &st["route"];
    if !route.is_null() {
        let w = route["weight"].as_f64().unwrap_or(0.0);
        let canary = route["canary"].as_str();
        match canary {
            Some(c) => {
                let _ = writeln!(
                    out,
                    "  route  {} {:.1}% | {c} {:.1}% {}{}",
                    route["stable"].as_str().unwrap_or_default(),
                    100.0 - w,
                    w,
                    bar(w),
                    if route["rules"].as_array().is_some_and(|r| !r.is_empty()) {
                        " + match rules"
                    } else {
                        ""
                    }
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  route  {} 100%",
                    route["stable"].as_str().unwrap_or_default()
                );
            }
        }
    }
    render_proxies(&mut out, &v["proxy"]);
    let r = &st["rollout"];
    if r.is_null() {
        let _ = writeln!(out, "  no rollout in progress");
    } else {
        let steps = v["steps"].as_array().cloned().unwrap_or_default();
        let step = r["step"].as_u64().unwrap_or(0) as usize;
        let label = steps
            .get(step)
            .and_then(|s| s.as_str())
            .unwrap_or("finishing");
        let _ = writeln!(
            out,
            "  rollout #{} {} ({}, {}): step {}/{}: {label}",
            r["id"],
            r["version"].as_str().unwrap_or_default(),
            r["kind"].as_str().unwrap_or_default(),
            r["phase"].as_str().unwrap_or_default(),
            (step + 1).min(steps.len().max(1)),
            steps.len()
        );
        if let Some(p) = r["paused"].as_object() {
            let _ = writeln!(
                out,
                "  PAUSED ({}): {}",
                p["kind"].as_str().unwrap_or_default(),
                p["reason"].as_str().unwrap_or_default()
            );
        }
        let version = r["version"].as_str().unwrap_or_default();
        if let Some(rel) = st["releases"]
            .as_array()
            .and_then(|rs| rs.iter().find(|x| x["version"] == version))
        {
            render_gates(&mut out, version, &rel["gates"], "  ");
        }
    }
    if let Some(d) = v["decision"].as_object() {
        let _ = writeln!(
            out,
            "  judge  {} at t={:.0}s: {}",
            d["verdict"].as_str().unwrap_or_default(),
            d["t"].as_f64().unwrap_or(0.0),
            d["reason"].as_str().unwrap_or_default()
        );
        for c in d["checks"].as_array().into_iter().flatten() {
            let num = |k: &str| {
                c[k].as_f64().map_or("-".into(), |x| {
                    if x > 1e12 {
                        "∞".to_string()
                    } else {
                        format!("{x:.3}")
                    }
                })
            };
            let _ = writeln!(
                out,
                "    {:<16} {:<12} estimate {} (line {}), evidence {} of {}",
                c["name"].as_str().unwrap_or_default(),
                c["state"].as_str().unwrap_or_default(),
                num("estimate"),
                num("threshold"),
                if c["pooled_statistic"].is_null() {
                    num("statistic")
                } else {
                    num("pooled_statistic")
                },
                num("bound"),
            );
        }
    }
    if let Some(inst) = v["instances"].as_object() {
        let ready = &st["readiness"];
        for (version, list) in inst {
            let (r, t) = (
                ready[version][0].as_u64().unwrap_or(0),
                ready[version][1]
                    .as_u64()
                    .unwrap_or(list.as_array().map_or(0, Vec::len) as u64),
            );
            let _ = writeln!(out, "  {version}: {r}/{t} instances ready");
        }
    }
    if let Some(last) = st["rollbacks"].as_array().and_then(|a| a.last()) {
        let _ = writeln!(
            out,
            "  last rollback: {} → {} ({}): {}",
            last["from_version"].as_str().unwrap_or_default(),
            last["to_version"].as_str().unwrap_or_default(),
            last["kind"].as_str().unwrap_or_default(),
            last["reason"].as_str().unwrap_or_default()
        );
    }
    let ar = &st["auto_rollback"];
    if ar["enabled"].as_bool() == Some(false) {
        let _ = writeln!(
            out,
            "  automatic rollback OFF (by {}: {})",
            ar["changed_by"].as_str().unwrap_or("?"),
            ar["reason"].as_str().unwrap_or("")
        );
    }
    out.trim_end().to_string()
}

/// The proxies that follow the service: which generation each serves,
/// and when it was last heard from.
fn render_proxies(out: &mut String, proxy: &Json) {
    use std::fmt::Write;
    let Some(list) = proxy["proxies"].as_array() else {
        return;
    };
    let generation = proxy["generation"].as_u64().unwrap_or(0);
    let connected: Vec<&Json> = list.iter().filter(|p| p["connected"] == true).collect();
    let serving = connected
        .iter()
        .filter(|p| p["generation"].as_u64().unwrap_or(0) >= generation)
        .count();
    let _ = writeln!(
        out,
        "  proxies  snapshot {generation}: served by {serving} of {} connected{}",
        connected.len(),
        if list.is_empty() {
            " (no proxy follows this service)"
        } else {
            ""
        }
    );
    let now = now_ms();
    for p in list {
        let ago = |k: &str| {
            p[k].as_i64().map_or("?".into(), |t| {
                format!("{:.1}s ago", (now - t).max(0) as f64 / 1000.0)
            })
        };
        let state = if p["connected"] == true {
            format!("last contact {}", ago("last_contact_ms"))
        } else {
            format!("DISCONNECTED (last contact {})", ago("last_contact_ms"))
        };
        let nack = p["nack"]["reason"]
            .as_str()
            .map(|r| format!("; refused {}: {r}", p["nack"]["generation"]))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    {:<16} {:<22} generation {:<6} {state}{nack}",
            p["name"].as_str().unwrap_or_default(),
            p["address"].as_str().unwrap_or_default(),
            p["generation"].as_u64().unwrap_or(0),
        );
    }
}

pub fn history(a: ServiceArgs) -> Result<ExitCode> {
    let v = a.remote.call(
        "GET",
        &format!("/api/v1/services/{}/history", path(&a.service)),
        None,
    )?;
    a.remote.print(&v, |v| {
        println!("releases of {}:", a.service);
        for r in v["releases"].as_array().into_iter().flatten() {
            let mut marks = Vec::new();
            if r["stable"].as_bool() == Some(true) {
                marks.push("stable");
            }
            if !r["known_good_ms"].is_null() {
                marks.push("known good");
            }
            if r["pinned"].as_bool() == Some(true) {
                marks.push("pinned");
            }
            println!(
                "  {:<12} {:<12} by {:<10} {}",
                r["version"].as_str().unwrap_or_default(),
                r["outcome"].as_str().unwrap_or("-"),
                r["registered_by"].as_str().unwrap_or_default(),
                marks.join(", ")
            );
            let mut gates = String::new();
            render_gates(
                &mut gates,
                r["version"].as_str().unwrap_or_default(),
                &r["gates"],
                "    ",
            );
            print!("{gates}");
        }
        let rollbacks = v["rollbacks"].as_array().cloned().unwrap_or_default();
        if !rollbacks.is_empty() {
            println!("rollbacks (MTTR: detect / decide / act / verify = total):");
            for r in &rollbacks {
                let m = &r["mttr"];
                println!(
                    "  {} → {} {:<10} {} / {} / {} / {} = {}  {}",
                    r["from_version"].as_str().unwrap_or_default(),
                    r["to_version"].as_str().unwrap_or_default(),
                    r["kind"].as_str().unwrap_or_default(),
                    ms(&m["detect_ms"]),
                    ms(&m["decide_ms"]),
                    ms(&m["act_ms"]),
                    ms(&m["verify_ms"]),
                    ms(&m["total_ms"]),
                    r["reason"].as_str().unwrap_or_default()
                );
            }
            let s = &v["mttr"];
            println!(
                "MTTR over {} rollbacks: p50 {} , p95 {}",
                s["rollbacks"],
                ms(&s["p50"]["total_ms"]),
                ms(&s["p95"]["total_ms"])
            );
        }
    });
    Ok(ExitCode::SUCCESS)
}

/// Event kinds that are bookkeeping rather than news.
fn noisy(kind: &str) -> bool {
    matches!(
        kind,
        "input.tick" | "input.readiness" | "input.route_applied" | "driver.instances"
    )
}

pub fn events(a: EventsArgs) -> Result<ExitCode> {
    let service = a
        .service
        .as_ref()
        .map(|s| format!("&service={}", path(s)))
        .unwrap_or_default();
    let shown = |e: &Json| a.all || !noisy(e["kind"].as_str().unwrap_or_default());
    let list = |url: String| -> Result<Vec<Json>> {
        let v = a.remote.call("GET", &url, None)?;
        Ok(v.as_array().cloned().unwrap_or_default())
    };
    let first: Vec<Json> = match a.after {
        Some(after) => list(format!(
            "/api/v1/events?after={after}&limit={}{service}",
            a.limit
        ))?
        .into_iter()
        .filter(|e| shown(e))
        .collect(),
        None => {
            // Ticks and readiness reports outnumber the news many times
            // over: ask for more than `--limit` so that the newest
            // `--limit` events worth showing are among them.
            let ask = if a.all {
                a.limit
            } else {
                a.limit.saturating_mul(20)
            }
            .clamp(1, 10_000);
            let kept: Vec<Json> = list(format!("/api/v1/events?newest=true&limit={ask}{service}"))?
                .into_iter()
                .filter(|e| shown(e))
                .collect();
            let skip = kept.len().saturating_sub(a.limit);
            kept.into_iter().skip(skip).collect()
        }
    };
    let print = |events: &[Json]| {
        a.remote.print(&Json::Array(events.to_vec()), |v| {
            for e in v.as_array().into_iter().flatten() {
                println!("{}", describe_event(e));
            }
        });
    };
    print(&first);
    if !a.follow {
        return Ok(ExitCode::SUCCESS);
    }
    // Follow from the last event shown; ticks after it are fetched and
    // filtered again, which costs little and skips nothing.
    let mut last = match (first.last(), a.after) {
        (Some(e), _) => e["seq"].as_i64().unwrap_or(0),
        (None, Some(after)) => after,
        (None, None) => list(format!("/api/v1/events?newest=true&limit=1{service}"))?
            .first()
            .and_then(|e| e["seq"].as_i64())
            .unwrap_or(0),
    };
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let batch = list(format!("/api/v1/events?after={last}&limit=1000{service}"))?;
        if let Some(seq) = batch.last().and_then(|e| e["seq"].as_i64()) {
            last = seq;
        }
        let news: Vec<Json> = batch.into_iter().filter(|e| shown(e)).collect();
        if !news.is_empty() {
            print(&news);
        }
    }
}

/// A time from the event log as the reader's local wall clock, to the
/// millisecond (`-o json` keeps the raw value).
pub fn local_time(at_ms: Option<i64>) -> String {
    let Some(ms) = at_ms else {
        return "?".into();
    };
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S%.3f")
            .to_string(),
        Err(_) => format!("{ms} ms"),
    }
}

/// One line for a stored event: seq, time, who, what.
pub fn describe_event(e: &Json) -> String {
    let kind = e["kind"].as_str().unwrap_or_default();
    let body = &e["body"];
    let what = match kind {
        "action.notify" => body["message"].as_str().unwrap_or_default().to_string(),
        "action.set_route" => match body["canary"].as_str() {
            Some(canary) => format!(
                "route: {} / {canary} {:.1}%",
                body["stable"].as_str().unwrap_or_default(),
                body["weight"].as_f64().unwrap_or(0.0)
            ),
            None => format!(
                "route: all to {}",
                body["stable"].as_str().unwrap_or_default()
            ),
        },
        "input.verdict" => format!(
            "judge: {} — {}",
            body["verdict"].as_str().unwrap_or_default(),
            body["reason"].as_str().unwrap_or_default()
        ),
        "input.command" => format!("command {}", body["command"].as_str().unwrap_or_default()),
        k if k.starts_with("flag.") => {
            let flag = body["flag"].as_str().unwrap_or_default();
            match body["after"]["state"].as_str() {
                Some(state) => format!("flag {flag}: {state}"),
                None => format!("flag {flag}"),
            }
        }
        _ => {
            let mut b = body.clone();
            if let Some(o) = b.as_object_mut() {
                o.remove("input");
                o.remove("action");
            }
            if b.as_object().is_some_and(|o| o.is_empty()) {
                String::new()
            } else {
                b.to_string()
            }
        }
    };
    let reason = e["reason"]
        .as_str()
        .map(|r| format!(" (why: {r})"))
        .unwrap_or_default();
    format!(
        "#{:<6} {} {:<10} {:<24} {what}{reason}",
        e["seq"],
        local_time(e["at_ms"].as_i64()),
        e["actor"].as_str().unwrap_or_default(),
        kind
    )
}

pub fn token(cmd: TokenCommand) -> Result<ExitCode> {
    match cmd {
        TokenCommand::Create {
            name,
            role,
            local,
            remote,
        } => {
            let parsed: backout_store::Role = role
                .parse()
                .map_err(|e: backout_store::ParseRoleError| miette!("--role: {e}"))?;
            let v = if local {
                let (store, _) = super::up::open_store(&remote.data)?;
                let at = now_ms();
                let secret = store
                    .create_token(&name, parsed, at)
                    .map_err(|e| miette!("{e}"))?;
                let mut ev = backout_store::NewEvent::new(
                    "",
                    "token.created",
                    local_actor(),
                    at,
                    json!({"name": name, "role": parsed}),
                );
                ev = ev.with_reason("created locally (--local)");
                store.append(vec![ev]).map_err(|e| miette!("{e}"))?;
                json!({"name": name, "role": parsed, "secret": secret})
            } else {
                remote.call(
                    "POST",
                    "/api/v1/tokens",
                    Some(json!({"name": name, "role": parsed})),
                )?
            };
            remote.print(&v, |v| {
                println!("{}", v["secret"].as_str().unwrap_or_default());
                eprintln!(
                    "token {:?} ({}) created; the secret above is shown only now",
                    v["name"].as_str().unwrap_or_default(),
                    v["role"].as_str().unwrap_or_default()
                );
            });
        }
        TokenCommand::List { remote } => {
            let v = remote.call("GET", "/api/v1/tokens", None)?;
            remote.print(&v, |v| {
                for t in v.as_array().into_iter().flatten() {
                    println!(
                        "{:<20} {}",
                        t["name"].as_str().unwrap_or_default(),
                        t["role"].as_str().unwrap_or_default()
                    );
                }
            });
        }
        TokenCommand::Recover {
            name,
            reason,
            remote,
        } => {
            let store = existing_store(&remote.data)?;
            let at = now_ms();
            let name = name.unwrap_or_else(|| format!("recovered-{}", at / 1000));
            let secret =
                backout_store::Tokens::create_token(&store, &name, backout_store::Role::Admin, at)
                    .map_err(|e| miette!("{e}"))?;
            audit_local(&store, "token.recovered", &name, reason, at)?;
            let file = remote.data.join("admin.token");
            super::up::write_private(&file, &secret)?;
            let v = json!({"name": name, "role": "admin", "secret": secret, "file": file});
            remote.print(&v, |v| {
                println!(
                    "created admin token {:?} and wrote it to {} (the CLI uses it from there)",
                    v["name"].as_str().unwrap_or_default(),
                    file.display()
                );
                println!(
                    "recorded as token.recovered by {}; now revoke the tokens you no longer trust (`backout token list`)",
                    local_actor()
                );
            });
        }
        TokenCommand::Revoke { name, remote } => {
            remote
                .call("DELETE", &format!("/api/v1/tokens/{}", path(&name)), None)
                .wrap_err_with(|| format!("revoking {name:?}"))?;
            if remote.output == Output::Text {
                println!("revoked {name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
