//! `backout up`: the control plane — API, controller loop, judge, event
//! log — for the services in the given files, with a proxy embedded that
//! follows it like any other (`--no-proxy` leaves the data plane to
//! `backout proxy --control-plane` processes).
//!
//! With `--store postgres://…` several `backout up` share one database:
//! they elect a leader (see `backout_server::controller::election`), the
//! leader acts, the others serve reads and snapshots and take over when it
//! dies.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use backout_flag_server::{self as ofrep, events::StoreEventLog};
use backout_proxy::follow::{FollowConfig, Link, StateDir};
use backout_proxy::{ProxyConfig, RunningProxy};
use backout_server::api::{self, ApiState};
use backout_server::controller::{Controller, ManagedService, election};
use backout_server::fleet::{Fleet, Standing};
use backout_spec::ServiceSpec;
use backout_store::{Candidate, Role, Store, StoreError};
use clap::Args as ClapArgs;
use miette::{IntoDiagnostic, WrapErr, miette};

#[derive(Debug, ClapArgs)]
#[command(after_help = "Example: backout up -f shop.yaml
Then:    backout release shop --version v2
         backout status shop --watch")]
pub struct Args {
    /// Service files (YAML), one service each, with a `driver:` section.
    #[arg(short = 'f', long = "file", value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// Where the API listens. It is authenticated, but keep it on
    /// localhost unless the network is trusted.
    #[arg(long, default_value = "127.0.0.1:9900", env = "BACKOUT_API")]
    api: SocketAddr,
    /// Data-plane listener for services that do not set `listen:`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Event log, instance logs and the local admin token live here.
    #[arg(long, default_value = "backout-data", env = "BACKOUT_DATA")]
    data: PathBuf,
    /// Where the event log, snapshots and tokens are kept: a SQLite file
    /// (default DATA/backout.db) or a PostgreSQL URL
    /// (postgres://USER@HOST:PORT/DATABASE). Several `backout up` on one
    /// PostgreSQL database elect a leader; the others follow and take over
    /// within seconds when it dies.
    #[arg(
        long,
        value_name = "LOCATION",
        env = "BACKOUT_STORE",
        hide_env_values = true
    )]
    store: Option<String>,
    /// This process's API as others should reach it (told to proxies and
    /// CLIs while it leads). Default: the scheme and --api address.
    #[arg(long, value_name = "URL")]
    advertise: Option<String>,
    /// This process's name among control planes (unique per running
    /// process). Default: host name and process id.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Leave the instances running on exit (the next `up` adopts them; with
    /// several `backout up` on PostgreSQL, the next leader does).
    #[arg(long)]
    keep_instances: bool,
    /// Data-plane worker threads (0: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    workers: usize,
    /// Run the control plane only: no data plane in this process. Proxies
    /// follow it with `backout proxy --control-plane URL --token T`
    /// (a token with `--role proxy`), and keep serving when it is down.
    #[arg(long)]
    no_proxy: bool,
    /// Serve feature flags from this flagd flag file (JSON or YAML): OFREP
    /// at /ofrep/v1 and flag management at /api/v1/flags on the API's
    /// listener, behind its tokens, with every change in the event log.
    #[arg(long, value_name = "FILE")]
    flags: Option<PathBuf>,
    #[command(flatten)]
    api_listener: super::listen::ListenArgs,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let specs = super::proxy::load_files(&args.files)?;
    for s in &specs {
        if s.driver.is_none() {
            return Err(miette!(
                "service {:?} has no `driver:` section; `backout up` starts releases through it, e.g.\n  driver:\n    process: {{command: \"./app --port {{port}} --version {{version}}\"}}\nor `driver: {{static: {{}}}}` with `backout release --set endpoints=http://host:port`",
                s.name
            ));
        }
    }
    crate::logging::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .into_diagnostic()?;
    let managed: Vec<ManagedService> = specs
        .into_iter()
        .zip(&args.files)
        .map(|(spec, file)| ManagedService {
            spec,
            base_dir: file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        })
        .collect();
    runtime.block_on(serve(args, managed))
}

/// Opens the store, and on first use creates an admin token for the local
/// CLI in `DATA/admin.token` (readable by this user only).
pub fn open_store(data: &Path) -> miette::Result<(Arc<dyn Store>, Option<PathBuf>)> {
    let store = open_location(data, None)?;
    let token = first_token(&store, data)?;
    Ok((store, token))
}

/// Opens the store at `location` (default: `DATA/backout.db`).
fn open_location(data: &Path, location: Option<&str>) -> miette::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(data)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot create the data directory {}", data.display()))?;
    let default = data.join("backout.db").to_string_lossy().into_owned();
    backout_store::open(location.unwrap_or(&default))
        .map_err(|e| miette!("{e}"))
        .wrap_err("cannot open the event log (--store)")
}

/// On a store without tokens, creates the admin token in
/// `DATA/admin.token`. Another process on the same database may do it
/// first, and a follower may not write at all: then this one has none.
fn first_token(store: &Arc<dyn Store>, data: &Path) -> miette::Result<Option<PathBuf>> {
    let token_file = data.join("admin.token");
    let tokens = store.list_tokens().map_err(|e| miette!("{e}"))?;
    if !tokens.is_empty() {
        return Ok(None);
    }
    match store.create_token("admin", Role::Admin, super::client::now_ms()) {
        Ok(secret) => {
            write_private(&token_file, &secret)?;
            Ok(Some(token_file))
        }
        Err(StoreError::TokenExists { .. } | StoreError::Fenced { .. }) => Ok(None),
        Err(e) => Err(miette!("{e}")),
    }
}

pub(crate) fn write_private(path: &Path, secret: &str) -> miette::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut f = options
        .open(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{secret}").into_diagnostic()?;
    Ok(())
}

async fn serve(args: Args, managed: Vec<ManagedService>) -> miette::Result<ExitCode> {
    let store = open_location(&args.data, args.store.as_deref())?;
    let shared = args
        .store
        .as_deref()
        .is_some_and(backout_store::is_postgres_url);
    let name = args.name.clone().unwrap_or_else(holder_name);
    let scheme = args.api_listener.scheme();
    // Alone on its store, the admin token exists before the API port is
    // even bound, so a script that waits for the port finds it; on a
    // shared store it waits for the first campaign (below).
    let mut new_token = if shared {
        None
    } else {
        first_token(&store, &args.data)?
    };
    // Bound first: the advertised URL must be the real one (port 0 picks
    // one), and a follower serves reads while it waits to lead.
    let listener = tokio::net::TcpListener::bind(args.api)
        .await
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot listen on {} for the API", args.api))?;
    let api_addr = listener.local_addr().into_diagnostic()?;
    if shared && args.advertise.is_none() && api_addr.ip().is_unspecified() {
        return Err(miette!(
            "--api {api_addr} listens on every address, so the other control planes, proxies and CLIs cannot be told where this one is: give --advertise {scheme}://HOST:{} with a name or address they reach",
            api_addr.port()
        ));
    }
    if let Some(url) = &args.advertise
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(miette!(
            "--advertise {url:?} is not an http:// or https:// URL; give the API's base URL as others reach it, e.g. http://10.0.0.1:9900"
        ));
    }
    let advertise = args
        .advertise
        .clone()
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("{scheme}://{api_addr}"));
    // On a shared database the first campaign comes before any write, so
    // every write of this process is fenced from the start.
    let stop_election = tokio_util::sync::CancellationToken::new();
    let election = if shared {
        let e = election::start(
            Arc::clone(&store),
            Candidate::new(name.clone(), advertise.clone()),
            stop_election.clone(),
        )
        .await;
        let lead = e.lead.borrow().clone();
        match (lead.leading, &lead.leader) {
            (true, _) => println!(
                "backout: {name} leads the control plane (term {})",
                lead.term
            ),
            (false, Some(l)) => println!(
                "backout: {name} follows {} (term {}, API {}); it takes over if the leader goes",
                l.holder, l.term, l.advertise
            ),
            (false, None) => println!("backout: {name} waits for an election"),
        }
        Some(e)
    } else {
        None
    };
    if shared {
        new_token = first_token(&store, &args.data)?;
    }
    let flags = match &args.flags {
        Some(file) => {
            let log = Arc::new(StoreEventLog::new(Arc::clone(&store)));
            let served = ofrep::Served::open(file, Some(log))
                .map_err(|e| miette!("{e}"))
                .wrap_err("cannot serve the flags")?;
            served.spawn();
            Some(served)
        }
        None => None,
    };
    let names: Vec<String> = managed.iter().map(|m| m.spec.name.clone()).collect();
    let fleet = Fleet::new(
        names.clone(),
        Standing {
            name: name.clone(),
            leader: election.as_ref().is_none_or(|e| e.lead.borrow().acting()),
            leader_url: election.as_ref().and_then(|e| e.lead.borrow().leader_url()),
        },
    );
    let lead = election.as_ref().map(|e| e.lead.clone());
    if let Some(lead) = &lead {
        election::tell_fleet(lead.clone(), Arc::clone(&fleet), name.clone());
    }
    let specs: Vec<ServiceSpec> = managed.iter().map(|m| m.spec.clone()).collect();
    let proxy = if args.no_proxy {
        None
    } else {
        Some(embedded_proxy(&specs, args.listen, args.workers, &args.data, &fleet).await?)
    };
    let controller = Controller::start(
        Arc::clone(&store),
        Arc::clone(&fleet),
        managed,
        args.data.clone(),
        lead,
    )
    .await
    .map_err(|e| miette!("{e}"))?;
    let controller = Arc::new(controller);
    let state = Arc::new(ApiState {
        controller: Arc::clone(&controller),
        store: Arc::clone(&store),
        proxy: proxy.as_ref().map(|p| Arc::clone(&p.state)),
        flags: flags.clone(),
        fleet: Arc::clone(&fleet),
    });
    let api_settings = args
        .api_listener
        .settings(backout_listen::ErrorStyle::Api)?;
    match &proxy {
        Some(proxy) => {
            for (requested, bound) in &proxy.listeners {
                let here: Vec<&str> = specs
                    .iter()
                    .filter(|s| s.listen.unwrap_or(args.listen) == *requested)
                    .map(|s| s.name.as_str())
                    .collect();
                println!(
                    "backout: data plane on http://{bound} (services: {})",
                    here.join(", ")
                );
            }
        }
        None => println!(
            "backout: no data plane in this process (--no-proxy); proxies follow it with `backout proxy --control-plane http://{api_addr} --token …` (services: {})",
            names.join(", ")
        ),
    }
    let log_at = match &args.store {
        Some(s) if shared => format!(
            "PostgreSQL, shared with other control planes: {}",
            backout_store::redact(s)
        ),
        Some(s) => s.clone(),
        None => format!("{}/backout.db", args.data.display()),
    };
    println!("backout: API on {scheme}://{api_addr}/api/v1 (event log: {log_at})");
    if let Some(file) = &args.flags {
        println!(
            "backout: flags from {} at {scheme}://{api_addr}/ofrep/v1 (management at /api/v1/flags)",
            file.display()
        );
    }
    if let Some(path) = new_token {
        println!(
            "backout: created an admin token in {} (the CLI uses it from this directory)",
            path.display()
        );
    }
    backout_listen::serve(
        listener,
        api::router(state),
        api_settings,
        crate::signal::wait_for_shutdown(),
    )
    .await
    .into_diagnostic()?;
    println!("backout: shutting down");
    if let Some(s) = &flags {
        s.save_usage();
    }
    controller.shutdown(!args.keep_instances).await;
    // Resigned only once this process has stopped acting: a follower
    // that takes over at once finds nothing half-done here.
    stop_election.cancel();
    if let Some(e) = election {
        e.finished().await;
    }
    if let Some(proxy) = proxy {
        proxy.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// The proxy in the control plane's own process: it follows the control
/// plane through in-process channels, like any `backout proxy` over the
/// network, and keeps its snapshots in `DATA/proxy`, so that after a
/// restart it serves the last route and readiness before the log is even
/// folded. Its listeners accept only once it has a snapshot (no 503 while
/// there is nothing to serve yet).
pub async fn embedded_proxy(
    specs: &[ServiceSpec],
    listen: SocketAddr,
    workers: usize,
    data: &Path,
    fleet: &Arc<Fleet>,
) -> miette::Result<RunningProxy> {
    let state = StateDir::open(data.join("proxy")).map_err(|e| miette!("{e}"))?;
    let mut proxy = RunningProxy::start(ProxyConfig {
        services: specs.to_vec(),
        default_listen: Some(listen),
        drain_timeout: std::time::Duration::from_secs(10),
        workers,
        wait_for_config: true,
        ..Default::default()
    })
    .await
    .into_diagnostic()?;
    let listen = proxy
        .listeners
        .iter()
        .map(|(_, bound)| bound.to_string())
        .collect();
    proxy.follow(FollowConfig {
        name: "embedded".into(),
        services: Vec::new(),
        state: Some(state),
        links: vec![Link::Local(fleet.local_door())],
        listen,
    });
    Ok(proxy)
}

/// This process's name among control planes: host and process id.
pub fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}-{}", std::process::id())
}
