//! `backout flags serve` (the standalone flag server) and `backout flag …`
//! (flag management: list, set, kill, stale, …).
//!
//! Management works on a flag file directly (`-f flags.json`; a running
//! server picks the change up within its watch interval) or through a
//! running server (`--server URL`, applied and announced at once).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use backout_flag_server::{self as ofrep, FileSource, FlagStore, Tokens, clock, manage::Manager};
use backout_flags::dsl;
use backout_flags::edit::{Edit, FlagChange};
use miette::{IntoDiagnostic, Result, WrapErr, miette};
use serde_json::{Value as Json, json};

/// `backout flags …`
#[derive(Debug, clap::Subcommand)]
pub enum FlagsCommand {
    /// Serve a flag file over OFREP (hot-reloaded when the file changes),
    /// with the management API and a change stream.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The flag file (flagd format, JSON or YAML).
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8016")]
    listen: SocketAddr,
    /// Accepted bearer token / X-API-Key (repeat for several). Without any,
    /// the server is open.
    #[arg(long = "token", env = "BACKOUT_FLAGS_TOKEN", hide_env_values = true)]
    tokens: Vec<String>,
    /// Another host name the server answers to when it has no token (it
    /// answers to its address and `localhost`; other names are refused
    /// against DNS rebinding). Repeat for several.
    #[arg(long, value_name = "NAME")]
    allow_host: Vec<String>,
    #[command(flatten)]
    api_listener: super::listen::ListenArgs,
}

/// Where `backout flag …` applies changes.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The flag file to change directly.
    #[arg(
        short = 'f',
        long = "file",
        env = "BACKOUT_FLAGS_FILE",
        conflicts_with = "server"
    )]
    file: Option<PathBuf>,
    /// A running flag server to change through (e.g. http://127.0.0.1:8016).
    #[arg(long, env = "BACKOUT_FLAGS_SERVER")]
    server: Option<String>,
    /// Token for the server.
    #[arg(long, env = "BACKOUT_FLAGS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Who is making the change (recorded in the event log).
    #[arg(long, env = "USER", default_value = "unknown")]
    actor: String,
}

/// `backout flag …`
#[derive(Debug, clap::Subcommand)]
pub enum FlagCommand {
    /// List flags with their state, default and rules.
    List(#[command(flatten)] Target),
    /// Print one flag's definition.
    Get {
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Create or change a flag.
    ///
    /// Rules read like `country == jp and userAgent contains "Mac OS" => 5% on`;
    /// several `--rule`s are tried in order.
    Set(SetArgs),
    /// Delete a flag.
    Delete {
        key: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Kill switch: disable a flag so everyone gets the code default.
    Kill {
        key: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Enable a killed flag again.
    Revive {
        key: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Evaluate a flag from a file for a context (JSON).
    Eval {
        key: String,
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Context, e.g. '{"targetingKey": "u1", "country": "jp"}'.
        #[arg(long, default_value = "{}")]
        context: String,
    },
    /// Technical debt: flags serving one variant to everyone, or unused.
    Stale {
        /// Days without change or evaluation before a flag counts as stale.
        #[arg(long, default_value_t = 7.0)]
        days: f64,
        #[command(flatten)]
        target: Target,
    },
    /// The change history (all flags, or one).
    History {
        key: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Guarded rollout: raise a variant's share in steps while the judge
    /// compares requests served with it against requests served with the
    /// control; switched off by itself when the judge says roll back.
    ///
    /// Runs inside `backout flags serve` (--server). Apps report outcomes
    /// per variant to POST /api/v1/flags/KEY/observations.
    Rollout(RolloutArgs),
    /// Where a guarded rollout stands: step, verdict, traffic, MTTR.
    RolloutStatus {
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Stop a guarded rollout: the variant's share goes to 0.
    RolloutAbort {
        key: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    key: String,
    /// The variant to roll out.
    #[arg(long)]
    variant: String,
    /// The variant to compare with (default: the flag's default variant).
    #[arg(long)]
    control: Option<String>,
    /// The variant's share at each step, in percent.
    #[arg(long, default_value = "1,5,25,100", value_delimiter = ',')]
    steps: Vec<String>,
    /// The least time at each step (e.g. 30s, 2m).
    #[arg(long, default_value = "60s")]
    step_time: String,
    /// The judge's configuration: a YAML or JSON file holding an analysis
    /// section (the same as a service's `analysis:`), e.g. shorter warm-ups.
    #[arg(long)]
    analysis: Option<PathBuf>,
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    key: String,
    /// A variant and its JSON value, e.g. `on=true` or `color="red"`.
    #[arg(long = "variant", value_name = "NAME=JSON")]
    variants: Vec<String>,
    /// The default variant.
    #[arg(long = "default")]
    default_variant: Option<String>,
    /// A rule: `CONDITION => SERVE`, or just `SERVE` (e.g. `10% on`).
    #[arg(long = "rule")]
    rules: Vec<String>,
    /// Remove all rules (everyone gets the default variant).
    #[arg(long, conflicts_with = "rules")]
    no_rules: bool,
    #[arg(long, conflicts_with = "disable")]
    enable: bool,
    #[arg(long)]
    disable: bool,
    /// Flag metadata, e.g. `owner=payments`.
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    metadata: Vec<String>,
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    target: Target,
}

pub fn serve(cmd: FlagsCommand) -> Result<ExitCode> {
    let FlagsCommand::Serve(args) = cmd;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    runtime.block_on(async move {
        let served = ofrep::Served::open(&args.file, None)
            .map_err(|e| miette!("{e}"))
            .wrap_err("cannot start the flag server")?;
        let tokens = Tokens::new("flags", args.tokens);
        let app = ofrep::guarded_router(
            served.store.clone(),
            tokens.clone(),
            served.manager.clone(),
            served.guards.clone(),
        );
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr().into_diagnostic()?;
        eprintln!(
            "serving {} on {}://{addr} (OFREP at /ofrep/v1, management at /api/v1/flags{})",
            args.file.display(),
            args.api_listener.scheme(),
            if tokens.is_open() {
                ", no token required"
            } else {
                ""
            }
        );
        served.spawn();
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let mut settings = args
            .api_listener
            .settings(backout_listen::ErrorStyle::Ofrep)?;
        if tokens.is_open() {
            // Without a token, a web page that rebinds its name to this
            // address must not get in.
            settings.hosts = backout_listen::Hosts::local(args.listen, &args.allow_host);
        }
        backout_listen::serve(listener, app, settings, shutdown)
            .await
            .into_diagnostic()?;
        served.save_usage();
        Ok(ExitCode::SUCCESS)
    })
}

pub fn run(cmd: FlagCommand) -> Result<ExitCode> {
    match cmd {
        FlagCommand::List(target) => {
            let listing = read(&target, "/api/v1/flags", |m| {
                let s = m
                    .store()
                    .snapshot()
                    .ok_or_else(|| miette!("no flags loaded"))?;
                Ok(json!({"flags": s.document.get("flags").cloned().unwrap_or(json!({}))}))
            })?;
            print_list(&listing);
            Ok(ExitCode::SUCCESS)
        }
        FlagCommand::Get { key, target } => {
            let flag = read(&target, &format!("/api/v1/flags/{key}"), |m| {
                let s = m
                    .store()
                    .snapshot()
                    .ok_or_else(|| miette!("no flags loaded"))?;
                s.document
                    .get("flags")
                    .and_then(|f| f.get(&key))
                    .cloned()
                    .ok_or_else(|| miette!("flag `{key}` does not exist"))
            })?;
            println!("{}", serde_json::to_string_pretty(&flag).into_diagnostic()?);
            Ok(ExitCode::SUCCESS)
        }
        FlagCommand::Set(args) => set(args),
        FlagCommand::Delete {
            key,
            reason,
            target,
        } => change(&target, Edit::Delete { key }, reason),
        FlagCommand::Kill {
            key,
            reason,
            target,
        } => change(&target, Edit::Kill { key }, reason),
        FlagCommand::Revive {
            key,
            reason,
            target,
        } => change(&target, Edit::Revive { key }, reason),
        FlagCommand::Eval { key, file, context } => {
            let source = FileSource::new(&file);
            let (_, loaded) = source.read().map_err(|e| miette!("{e}"))?;
            let ctx_json: Json = serde_json::from_str(&context)
                .into_diagnostic()
                .wrap_err("--context is not JSON")?;
            let ctx = backout_flags::Context::from_json(ctx_json)
                .map_err(|e| miette!("--context: {e}"))?;
            let res = loaded.flags.evaluate(&key, &ctx, clock::unix_now());
            let out = json!({
                "key": key,
                "value": res.value,
                "variant": res.variant,
                "reason": res.reason.as_str(),
                "errorCode": res.error.as_ref().map(|e| e.code.as_str()),
                "errorDetails": res.error.as_ref().map(|e| e.message.as_str()),
            });
            println!("{}", serde_json::to_string_pretty(&out).into_diagnostic()?);
            Ok(if res.error.is_some() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        FlagCommand::Stale { days, target } => {
            let report = read(&target, &format!("/api/v1/flag-stale?days={days}"), |m| {
                let r = m
                    .stale(clock::unix_now(), (days * 86_400.0) as i64)
                    .map_err(|e| miette!("{e}"))?;
                serde_json::to_value(r).into_diagnostic()
            })?;
            print_stale(&report, days);
            Ok(ExitCode::SUCCESS)
        }
        FlagCommand::History { key, target } => {
            let events = read(&target, "/api/v1/flag-events", |m| {
                serde_json::to_value(m.events().into_diagnostic()?).into_diagnostic()
            })?;
            let shown: Vec<&Json> = events
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| key.as_deref().is_none_or(|k| e["flag"].as_str() == Some(k)))
                .collect();
            // Wide enough for the longest action (`rollout-promote`).
            let width = shown
                .iter()
                .filter_map(|e| e["action"].as_str())
                .map(|a| a.chars().count() + 1)
                .max()
                .unwrap_or(0)
                .max(8);
            for e in shown {
                println!(
                    "{}  {:<width$} {:<24} by {}{}",
                    super::client::local_time(e["at_ms"].as_i64()),
                    e["action"].as_str().unwrap_or("?"),
                    e["flag"].as_str().unwrap_or("?"),
                    e["actor"].as_str().unwrap_or("?"),
                    e["reason"]
                        .as_str()
                        .map(|r| format!(" — {r}"))
                        .unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        FlagCommand::Rollout(args) => rollout(args),
        FlagCommand::RolloutStatus { key, target } => {
            let server = guarded_server(&target)?;
            let status = http(
                server,
                &target,
                "GET",
                &format!("/api/v1/flags/{key}/rollout"),
                Json::Null,
            )?;
            print_rollout(&status);
            Ok(ExitCode::SUCCESS)
        }
        FlagCommand::RolloutAbort {
            key,
            reason,
            target,
        } => {
            let server = guarded_server(&target)?;
            let status = http(
                server,
                &target,
                "POST",
                &format!("/api/v1/flags/{key}/rollout/abort"),
                json!({"reason": reason}),
            )?;
            print_rollout(&status);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn guarded_server(target: &Target) -> Result<&str> {
    target.server.as_deref().ok_or_else(|| {
        miette!(
            "a guarded rollout runs inside a flag server: pass --server URL of `backout flags serve` or of `backout up --flags FILE` (or set BACKOUT_FLAGS_SERVER)"
        )
    })
}

fn rollout(args: RolloutArgs) -> Result<ExitCode> {
    let server = guarded_server(&args.target)?;
    let steps = args
        .steps
        .iter()
        .map(|s| {
            s.trim()
                .parse::<backout_flags::guard::Share>()
                .map(|share| json!(share.percent()))
                .map_err(|e| miette!("--steps: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut body = json!({
        "variant": args.variant,
        "steps": steps,
        "step_time": args.step_time,
    });
    if let Some(control) = &args.control {
        body["control"] = json!(control);
    }
    if let Some(reason) = &args.reason {
        body["reason"] = json!(reason);
    }
    if let Some(path) = &args.analysis {
        // Checked here, with errors at file:line:col, before the server
        // sees it.
        let (config, _) = super::analysis::load_config(path)?;
        body["analysis"] = serde_json::to_value(config).into_diagnostic()?;
    }
    let status = http(
        server,
        &args.target,
        "POST",
        &format!("/api/v1/flags/{}/rollout", args.key),
        body,
    )?;
    print_rollout(&status);
    Ok(ExitCode::SUCCESS)
}

fn print_rollout(s: &Json) {
    let text = |v: &Json| v.as_str().unwrap_or("?").to_owned();
    let steps: Vec<String> = s["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Json::as_f64)
        .map(|p| format!("{p}%"))
        .collect();
    println!(
        "flag {}: `{}` against `{}` in steps {} (at least {}s each), started by {}",
        text(&s["flag"]),
        text(&s["variant"]),
        text(&s["control"]),
        steps.join(" → "),
        s["step_time_s"].as_f64().unwrap_or(0.0),
        text(&s["started_by"])
    );
    println!(
        "phase:   {} at step {}/{} ({}% served)",
        text(&s["phase"]),
        s["step"],
        steps.len(),
        s["share"]
            .as_f64()
            .map_or_else(|| "?".into(), |p| p.to_string())
    );
    println!("now:     {}", text(&s["note"]));
    if let Some(v) = s.get("verdict").filter(|v| !v.is_null()) {
        println!("judge:   {} — {}", text(&v["verdict"]), text(&v["reason"]));
    }
    for c in s["checks"].as_array().into_iter().flatten() {
        println!(
            "         {:<14} {:<12} {}",
            text(&c["name"]),
            text(&c["state"]),
            text(&c["reason"])
        );
    }
    let t = &s["traffic"];
    println!(
        "traffic: `{}` {} requests ({} errors), `{}` {} requests ({} errors){}",
        text(&s["control"]),
        t["control"]["requests"],
        t["control"]["errors"],
        text(&s["variant"]),
        t["variant"]["requests"],
        t["variant"]["errors"],
        match t["other"].as_u64() {
            Some(n) if n > 0 => format!(", {n} with other variants"),
            _ => String::new(),
        }
    );
    if let Some(m) = s.get("rollback").filter(|m| !m.is_null()) {
        let secs = |k: &str| {
            m[k].as_i64().map_or_else(
                || "?".to_owned(),
                |ms| format!("{:.3}s", ms as f64 / 1000.0),
            )
        };
        println!(
            "MTTR:    detect {}, decide {}, act {}, verify {} ({} from onset to switch)",
            secs("detect_ms"),
            secs("decide_ms"),
            secs("act_ms"),
            secs("verify_ms"),
            secs("total_ms")
        );
    }
    if let Some(e) = s["error"].as_str() {
        println!("error:   {e}");
    }
}

fn set(args: SetArgs) -> Result<ExitCode> {
    let mut change = FlagChange {
        default_variant: args.default_variant.clone(),
        ..FlagChange::default()
    };
    for v in &args.variants {
        let (name, value) = v
            .split_once('=')
            .ok_or_else(|| miette!("--variant {v}: expected NAME=JSON, e.g. on=true"))?;
        let value: Json =
            serde_json::from_str(value).unwrap_or_else(|_| Json::String(value.to_owned()));
        change.variants.push((name.to_owned(), value));
    }
    for m in &args.metadata {
        let (k, v) = m
            .split_once('=')
            .ok_or_else(|| miette!("--meta {m}: expected KEY=VALUE"))?;
        change
            .metadata
            .push((k.to_owned(), Json::String(v.to_owned())));
    }
    if args.no_rules {
        change.rules = Some(Vec::new());
    } else if !args.rules.is_empty() {
        let rules = args
            .rules
            .iter()
            .map(|r| dsl::parse_rule(r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| miette!("{e}"))?;
        change.rules = Some(rules);
    }
    if args.enable {
        change.enabled = Some(true);
    } else if args.disable {
        change.enabled = Some(false);
    }
    let existing = read(&args.target, &format!("/api/v1/flags/{}", args.key), |m| {
        Ok(m.store()
            .snapshot()
            .and_then(|s| {
                s.document
                    .get("flags")
                    .and_then(|f| f.get(&args.key))
                    .cloned()
            })
            .unwrap_or(Json::Null))
    })
    .unwrap_or(Json::Null);
    let existing = (!existing.is_null() && existing.get("error").is_none()).then_some(existing);
    let flag =
        backout_flags::edit::change_flag(existing.as_ref(), &change).map_err(|e| miette!("{e}"))?;
    change_and_print(
        &args.target,
        Edit::Put {
            key: args.key.clone(),
            flag,
        },
        args.reason,
    )
}

fn change(target: &Target, edit: Edit, reason: Option<String>) -> Result<ExitCode> {
    change_and_print(target, edit, reason)
}

fn change_and_print(target: &Target, edit: Edit, reason: Option<String>) -> Result<ExitCode> {
    let event = match (&target.server, &target.file) {
        (Some(server), _) => {
            let key = edit.key().to_owned();
            let (method, path, body) = match &edit {
                Edit::Put { flag, .. } => (
                    "PUT",
                    format!("/api/v1/flags/{key}"),
                    json!({"flag": flag, "reason": reason}),
                ),
                Edit::Delete { .. } => ("DELETE", format!("/api/v1/flags/{key}"), Json::Null),
                Edit::Kill { .. } => (
                    "POST",
                    format!("/api/v1/flags/{key}/kill"),
                    json!({"reason": reason}),
                ),
                Edit::Revive { .. } => (
                    "POST",
                    format!("/api/v1/flags/{key}/revive"),
                    json!({"reason": reason}),
                ),
                Edit::Split { .. } => {
                    return Err(miette!(
                        "a split is moved by `backout flag rollout`, not as a plain change"
                    ));
                }
            };
            let path = match (&edit, &reason) {
                (Edit::Delete { .. }, Some(r)) => format!("{path}?reason={}", urlencode(r)),
                _ => path,
            };
            http(server, target, method, &path, body)?
        }
        (None, Some(file)) => {
            let manager = Manager::new(FileSource::new(file), FlagStore::new());
            let event = manager
                .apply(&edit, &target.actor, reason)
                .map_err(|e| miette!("{e}"))?;
            serde_json::to_value(event).into_diagnostic()?
        }
        (None, None) => return Err(no_target()),
    };
    println!(
        "{} {} (by {})",
        event["action"].as_str().unwrap_or("changed"),
        event["flag"].as_str().unwrap_or("?"),
        event["actor"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads through the server, or from the file with a local manager.
fn no_target() -> miette::Report {
    miette!(
        "say where the flags are: -f FILE, or --server URL of `backout flags serve` or of `backout up --flags FILE` (with --token)"
    )
}

fn read(target: &Target, path: &str, local: impl FnOnce(&Manager) -> Result<Json>) -> Result<Json> {
    match (&target.server, &target.file) {
        (Some(server), _) => http(server, target, "GET", path, Json::Null),
        (None, Some(file)) => {
            let manager = Manager::new(FileSource::new(file), FlagStore::new());
            manager
                .source()
                .reload_into(manager.store())
                .map_err(|e| miette!("{e}"))?;
            local(&manager)
        }
        (None, None) => Err(no_target()),
    }
}

fn http(server: &str, target: &Target, method: &str, path: &str, body: Json) -> Result<Json> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("{}{path}", server.trim_end_matches('/'));
        let method: reqwest::Method = method.parse().into_diagnostic()?;
        let mutation = [reqwest::Method::POST, reqwest::Method::PUT].contains(&method);
        let mut request = client
            .request(method, &url)
            .header("x-backout-actor", &target.actor);
        if let Some(token) = &target.token {
            request = request.bearer_auth(token);
        }
        if !body.is_null() {
            request = request.json(&body);
        } else if mutation {
            // The servers refuse a mutation that does not say it is JSON.
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        let response = request
            .send()
            .await
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let value: Json = response.json().await.unwrap_or(Json::Null);
        if !status.is_success() {
            // The flag server says `{"error": "..."}`; `backout up`'s own
            // refusals (a token's role) say `{"error": {"message": ...}}`.
            let error = &value["error"];
            let message = error
                .as_str()
                .or_else(|| error["message"].as_str())
                .map_or_else(|| value.to_string(), str::to_owned);
            return Err(miette!("{url}: {status}: {message}"));
        }
        Ok(value)
    })
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn print_list(listing: &Json) {
    let Some(flags) = listing["flags"].as_object() else {
        return;
    };
    println!("{:<28} {:<9} {:<12} RULES", "FLAG", "STATE", "DEFAULT");
    let mut keys: Vec<&String> = flags.keys().collect();
    keys.sort();
    for key in keys {
        let f = &flags[key];
        println!(
            "{:<28} {:<9} {:<12} {}",
            key,
            f["state"].as_str().unwrap_or("?"),
            f["defaultVariant"].as_str().unwrap_or("-"),
            f.get("targeting")
                .filter(|t| !t.is_null())
                .map_or_else(|| "-".to_owned(), Json::to_string)
        );
    }
}

fn print_stale(report: &Json, days: f64) {
    let items = report.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        println!("no stale flags (threshold {days} days)");
        return;
    }
    println!("{:<28} {:>8}  {:<16} WHY", "FLAG", "AGE", "OWNER");
    for f in items {
        let why: Vec<String> = f["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| match r.get("single-variant") {
                Some(v) => format!(
                    "serves `{}` to everyone",
                    v["variant"].as_str().unwrap_or("the code default")
                ),
                None => "not evaluated".to_owned(),
            })
            .collect();
        println!(
            "{:<28} {:>7}d  {:<16} {}",
            f["key"].as_str().unwrap_or("?"),
            f["age_secs"].as_i64().unwrap_or(0) / 86_400,
            f["owner"].as_str().unwrap_or("-"),
            why.join("; ")
        );
    }
}
