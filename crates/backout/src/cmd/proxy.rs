//! `backout proxy`: the traffic switch on its own, from flags (quick mode),
//! from service files, or following a control plane (fleet mode).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use backout_proxy::follow::{FollowConfig, Link, StateDir};
use backout_proxy::{ProxyConfig, RunningProxy};
use backout_routing::{Permille, RouteSpec, StickyKey};
use backout_spec::{Duration, EndpointUrl, PoolSpec, ServiceSpec, Source, TimeoutsSpec};
use clap::Args as ClapArgs;
use miette::{IntoDiagnostic, WrapErr, miette};

#[derive(Debug, ClapArgs)]
#[command(
    after_help = "Quick mode:  backout proxy --stable http://127.0.0.1:9001 --canary http://127.0.0.1:9002 --canary-weight 10
Config mode: backout proxy -f web.yaml -f api.yaml
Fleet mode:  backout proxy --control-plane http://cp:9900 --token \"$PROXY_TOKEN\" --state /var/lib/backout-proxy --name edge-1
Switch at run time: curl -X PUT localhost:9901/admin/v1/services/default/route -H 'content-type: application/json' -d '{\"stable\":\"stable\",\"canary\":\"canary\",\"canary_weight\":25}'
Roll back:   curl -X POST localhost:9901/admin/v1/services/default/rollback -H 'content-type: application/json'"
)]
pub struct Args {
    /// Service files (YAML), one service each. Not with --stable.
    #[arg(short = 'f', long = "file", value_name = "FILE", conflicts_with_all = ["stable", "canary"])]
    files: Vec<PathBuf>,
    /// Fleet mode: follow this control plane's API (`backout up`), e.g.
    /// http://cp:9900. Repeat for several (an HA control plane): the
    /// proxy uses whichever answers, the leader first.
    #[arg(long = "control-plane", value_name = "URL", conflicts_with_all = ["files", "stable", "canary"], requires_all = ["token", "state"])]
    control_plane: Vec<String>,
    /// Fleet mode: a token with the `proxy` role
    /// (`backout token create edge-1 --role proxy`).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "BACKOUT_PROXY_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Fleet mode: where the last snapshot of each service is kept, so the
    /// proxy serves at once after a restart while the control plane is
    /// away.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Fleet mode: this proxy's name in `backout status` (unique in the
    /// fleet; default: the host name).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Fleet mode: follow only this service (repeat for several; default:
    /// every service of the control plane).
    #[arg(long = "service", value_name = "NAME")]
    services: Vec<String>,
    /// Data-plane listener for services that do not set `listen:`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Admin API (route switch, rollback, metrics, windows). Not 9900:
    /// that is `backout up`'s API, which the CLI talks to by default, and
    /// the two often run on one machine.
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// Quick mode: an endpoint of the stable version (repeat for several).
    #[arg(long, value_name = "URL")]
    stable: Vec<String>,
    /// Quick mode: an endpoint of the canary version (repeat for several).
    #[arg(long, value_name = "URL", requires = "stable")]
    canary: Vec<String>,
    /// Quick mode: percent of traffic for the canary, 0 to 100 in steps of 0.1.
    #[arg(long, value_name = "PERCENT", default_value_t = 0.0)]
    canary_weight: f64,
    /// Quick mode: keep users on one version by `header:NAME`, `cookie:NAME` or `client-addr`.
    #[arg(long, value_name = "KEY")]
    sticky: Option<String>,
    /// Quick mode: response header naming the version that served.
    #[arg(long, value_name = "NAME")]
    version_header: Option<String>,
    /// How long shutdown waits for in-flight requests.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    drain_timeout: String,
    /// Data-plane worker threads, each with its own event loop (0: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    workers: usize,
    /// Tokens for the admin API, one per line (`#` starts a comment). With
    /// them every admin call but `/healthz` and `/readyz` needs
    /// `Authorization: Bearer TOKEN`; without, the admin API only listens
    /// on loopback.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Another host name the admin API answers to when it has no tokens
    /// (it answers to its address and `localhost`; other names are refused
    /// against DNS rebinding). Repeat for several.
    #[arg(long, value_name = "NAME")]
    allow_host: Vec<String>,
    /// Data plane: the certificate (PEM chain) for TLS clients whose
    /// server name (SNI) matches no service's `hosts` with a `tls:`
    /// certificate, or who send none. Without it they are refused. Read
    /// again when the file changes. (--tls-cert is the admin API's.)
    #[arg(long, value_name = "FILE", requires = "default_tls_key")]
    default_tls_cert: Option<PathBuf>,
    /// Data plane: the private key (PEM) of --default-tls-cert.
    #[arg(long, value_name = "FILE", requires = "default_tls_cert")]
    default_tls_key: Option<PathBuf>,
    #[command(flatten)]
    api_listener: super::listen::ListenArgs,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let drain =
        Duration::parse(&args.drain_timeout).map_err(|e| miette!("--drain-timeout: {e}"))?;
    let follow = follow_config(&args)?;
    let services = if follow.is_some() {
        Vec::new()
    } else if args.files.is_empty() {
        vec![quick_service(&args)?]
    } else {
        load_files(&args.files)?
    };
    let config = ProxyConfig {
        services,
        default_listen: Some(args.listen),
        bind_default: follow.is_some(),
        admin: Some(args.admin),
        admin_listener: admin_listener(&args)?,
        drain_timeout: drain.get(),
        workers: args.workers,
        wait_for_config: follow.is_some(),
        default_tls: match (&args.default_tls_cert, &args.default_tls_key) {
            (Some(cert), Some(key)) => Some(backout_listen::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
    };
    crate::logging::init();
    // The data plane runs on its own worker threads; this runtime only
    // carries the admin API, probes and the health watcher.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .into_diagnostic()?;
    runtime.block_on(serve(config, follow))
}

/// The admin API's settings: its limits, and tokens from the token file,
/// or without them only the local host names.
fn admin_listener(args: &Args) -> miette::Result<backout_listen::Settings> {
    let mut settings = args
        .api_listener
        .settings(backout_listen::ErrorStyle::Api)?;
    match &args.admin_token_file {
        Some(file) => {
            let tokens = backout_listen::credentials::read_token_file(file)
                .map_err(|e| miette!("--admin-token-file: {e}"))?;
            settings.tokens = Some(backout_listen::credentials::Tokens::new("admin", tokens));
        }
        None => settings.hosts = backout_listen::Hosts::local(args.admin, &args.allow_host),
    }
    Ok(settings)
}

/// The follower's settings, when `--control-plane` is given.
fn follow_config(args: &Args) -> miette::Result<Option<FollowConfig>> {
    if args.control_plane.is_empty() {
        return Ok(None);
    }
    let token = args
        .token
        .clone()
        .ok_or_else(|| miette!("--control-plane needs --token (a token with the `proxy` role)"))?;
    let state = args
        .state
        .as_ref()
        .ok_or_else(|| miette!("--control-plane needs --state DIR"))?;
    let state = StateDir::open(state).map_err(|e| miette!("--state: {e}"))?;
    let mut links = Vec::new();
    for url in args.control_plane.iter().flat_map(|u| u.split(',')) {
        let url = url.trim();
        backout_proxy::follow::link::subscribe_url(url)
            .map_err(|e| miette!("--control-plane: {e}"))?;
        links.push(Link::Remote {
            url: url.to_string(),
            token: token.clone(),
        });
    }
    let name = match &args.name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_ascii_lowercase())
            .unwrap_or_default(),
    };
    if !backout_spec::is_valid_name(&name) {
        return Err(miette!(
            "--name: {name:?} is not a valid proxy name; use 1 to 63 lower-case letters, digits, `-`, `_` or `.`"
        ));
    }
    for s in &args.services {
        if !backout_spec::is_valid_name(s) {
            return Err(miette!("--service: {s:?} is not a valid service name"));
        }
    }
    Ok(Some(FollowConfig {
        name,
        services: args.services.clone(),
        state: Some(state),
        links,
        listen: Vec::new(),
    }))
}

async fn serve(config: ProxyConfig, follow: Option<FollowConfig>) -> miette::Result<ExitCode> {
    let names: Vec<String> = config.services.iter().map(|s| s.name.clone()).collect();
    let scheme = if config.admin_listener.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut proxy = RunningProxy::start(config).await.into_diagnostic()?;
    match follow {
        None => {
            for (_, bound) in &proxy.listeners {
                println!(
                    "backout: data plane listening on {bound} (services: {})",
                    names.join(", ")
                );
            }
        }
        Some(mut follow) => {
            follow.listen = proxy.listeners.iter().map(|(_, b)| b.to_string()).collect();
            let (name, planes, dir) = (
                follow.name.clone(),
                follow.links.iter().map(Link::describe).collect::<Vec<_>>(),
                follow
                    .state
                    .as_ref()
                    .map(|s| s.path().display().to_string()),
            );
            let status = proxy.follow(follow);
            let held = status.held();
            for (_, bound) in &proxy.listeners {
                println!(
                    "backout: data plane listening on {bound} as {name:?}, following {}",
                    planes.join(", ")
                );
            }
            if held.is_empty() {
                println!(
                    "backout: no snapshot in {} yet; connections wait until the control plane sends one",
                    dir.unwrap_or_default()
                );
            } else {
                let list: Vec<String> = held
                    .iter()
                    .map(|(s, h)| format!("{s} (generation {})", h.generation))
                    .collect();
                println!(
                    "backout: serving from the state file until the control plane answers: {}",
                    list.join(", ")
                );
            }
        }
    }
    if let Some(admin) = proxy.admin {
        println!(
            "backout: admin API on {scheme}://{admin} (routes: /admin/v1/services, metrics: /metrics)"
        );
    }
    crate::signal::wait_for_shutdown().await;
    println!("backout: shutting down, draining in-flight requests");
    proxy.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Reads and validates every service file; the first problem stops the
/// start-up with its file:line:col.
pub fn load_files(files: &[PathBuf]) -> miette::Result<Vec<ServiceSpec>> {
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot read service file {}", path.display()))?;
            ServiceSpec::parse(&Source::new(path.display().to_string(), text))
                .map_err(miette::Report::new)
        })
        .collect()
}

fn endpoints(flag: &str, urls: &[String]) -> miette::Result<Vec<EndpointUrl>> {
    urls.iter()
        .map(|u| EndpointUrl::parse(u).map_err(|e| miette!("--{flag}: {e}")))
        .collect()
}

/// The one service quick mode runs: pools `stable` and `canary`.
fn quick_service(args: &Args) -> miette::Result<ServiceSpec> {
    if args.stable.is_empty() {
        return Err(miette!(
            "nothing to proxy: give --stable URL (and optionally --canary URL), or -f FILE with service specs"
        ));
    }
    let weight =
        Permille::from_percent(args.canary_weight).map_err(|e| miette!("--canary-weight: {e}"))?;
    if weight > Permille::ZERO && args.canary.is_empty() {
        return Err(miette!(
            "--canary-weight: a weight above 0 needs --canary URL"
        ));
    }
    let sticky = match args.sticky.as_deref() {
        None => None,
        Some("client-addr") => Some(StickyKey::ClientAddr),
        Some(s) => match s.split_once(':') {
            Some(("header", name)) if !name.is_empty() => {
                Some(StickyKey::Header(name.to_ascii_lowercase()))
            }
            Some(("cookie", name)) if !name.is_empty() => Some(StickyKey::Cookie(name.to_string())),
            _ => {
                return Err(miette!(
                    "--sticky: {s:?} is not a sticky key; use header:NAME, cookie:NAME or client-addr"
                ));
            }
        },
    };
    if let Some(h) = &args.version_header
        && http::HeaderName::from_bytes(h.as_bytes()).is_err()
    {
        return Err(miette!(
            "--version-header: {h:?} is not a valid header name"
        ));
    }
    let mut pools = std::collections::BTreeMap::new();
    pools.insert(
        "stable".to_string(),
        PoolSpec::new(endpoints("stable", &args.stable)?),
    );
    let canary = if args.canary.is_empty() {
        None
    } else {
        pools.insert(
            "canary".to_string(),
            PoolSpec::new(endpoints("canary", &args.canary)?),
        );
        Some("canary".to_string())
    };
    Ok(ServiceSpec {
        trusted_proxies: Vec::new(),
        tls: None,
        upstream_tls: Default::default(),
        name: "default".into(),
        listen: None,
        hosts: Vec::new(),
        path_prefix: None,
        strip_prefix: false,
        sticky,
        version_header: args.version_header.as_ref().map(|h| h.to_ascii_lowercase()),
        timeouts: TimeoutsSpec::default(),
        pools,
        route: Some(RouteSpec {
            stable: "stable".into(),
            canary,
            canary_weight: weight,
            rules: Vec::new(),
        }),
        pool_defaults: PoolSpec::new(Vec::new()),
        strategy: Default::default(),
        analysis: Default::default(),
        rollback: Default::default(),
        history: Default::default(),
        gates: Default::default(),
        notifications: Vec::new(),
        driver: None,
    })
}
