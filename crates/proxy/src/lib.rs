//! The data plane: a load-balancing proxy that puts every version of a
//! service in its own pool and switches traffic between them with one
//! atomic pointer swap.
//!
//! Pure state machines (breaker, outlier, probe health, windows) take `now`
//! as an argument; the modules that do I/O (listener, forward, prober,
//! health, admin) read the clock through [`clock`].

pub mod admin;
mod body;
pub mod breaker;
pub mod clock;
mod completion;
pub mod demo_app;
pub mod endpoint;
pub mod events;
pub mod follow;
mod forward;
mod health;
mod listener;
pub mod loadgen;
pub mod metrics;
pub mod outcome;
pub mod outlier;
pub mod pool;
pub mod probe;
mod prober;
pub mod registry;
pub mod router;
pub mod service;
mod tls;
mod upstream;
pub mod window;
pub mod worker;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use backout_routing::RouteError;
use backout_spec::ServiceSpec;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use admin::AdminState;
pub use events::{Event, EventKind, EventLog};
pub use metrics::Metrics;
pub use registry::Registry;
pub use service::{Role, RouteApplied, Service, ServiceStatus, VersionWindows, WindowsReport};

/// What to run: services, where their listeners are, and the admin API.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub services: Vec<ServiceSpec>,
    /// Listener for services that do not name their own.
    pub default_listen: Option<SocketAddr>,
    /// Bind the default listener even if no service uses it yet: a proxy
    /// that follows a control plane learns its services later.
    pub bind_default: bool,
    /// Admin API address; `None` runs without one (embedded use).
    pub admin: Option<SocketAddr>,
    /// How the admin API listener serves: its limits, error shape.
    pub admin_listener: backout_listen::Settings,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Data-plane worker threads; 0 means one per core.
    pub workers: usize,
    /// Bind the listeners but accept no connection until
    /// [`RunningProxy::open`]: clients wait in the kernel's backlog instead
    /// of getting a 503 while there is no configuration yet.
    pub wait_for_config: bool,
    /// The data plane's certificate for TLS clients whose SNI names no
    /// service with `tls:` (or who send none).
    pub default_tls: Option<backout_listen::TlsFiles>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            services: Vec::new(),
            default_listen: None,
            bind_default: false,
            admin: None,
            admin_listener: backout_listen::Settings::default(),
            drain_timeout: Duration::from_secs(30),
            workers: 0,
            wait_for_config: false,
            default_tls: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("service {service:?}: route: {source}")]
    Route { service: String, source: RouteError },
    #[error("service {service:?}: tls: {message}")]
    Tls { service: String, message: String },
    #[error("the default certificate (--default-tls-cert, --default-tls-key): {0}")]
    DefaultTls(String),
    #[error("service {0:?} has no listen address; set `listen:` in its file or pass --listen")]
    NoListener(String),
    #[error(
        "the admin API would listen on {0} without a token: anyone who can reach it could switch traffic; give it tokens (--admin-token-file) or listen on loopback"
    )]
    AdminWithoutToken(SocketAddr),
    #[error("two services are named {0:?}; service names must be unique")]
    DuplicateService(String),
    #[error(
        "services {first:?} and {second:?} on {addr} match the same requests; give them different `hosts` or `path_prefix`"
    )]
    Ambiguous {
        addr: SocketAddr,
        first: String,
        second: String,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start a worker thread: {source}")]
    Worker { source: std::io::Error },
}

/// A running proxy. Dropping it without [`RunningProxy::shutdown`] leaves
/// its tasks running until the runtime stops.
#[derive(Debug)]
pub struct RunningProxy {
    /// `(requested, bound)` for each data-plane listener, e.g. port 0 →
    /// the port the OS picked.
    pub listeners: Vec<(SocketAddr, SocketAddr)>,
    pub admin: Option<SocketAddr>,
    pub state: Arc<AdminState>,
    /// Open once there is a configuration to serve.
    gate: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl RunningProxy {
    /// Builds every service and binds every listener.
    pub async fn start(config: ProxyConfig) -> Result<RunningProxy, ProxyError> {
        let workers = if config.workers == 0 {
            worker::default_count()
        } else {
            config.workers
        };
        let metrics = Arc::new(Metrics::new());
        let events = Arc::new(EventLog::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (gate, gate_rx) = watch::channel(!config.wait_for_config);
        let prober = prober::Prober {
            events: Arc::clone(&events),
            shutdown: shutdown_rx.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        let mut names = std::collections::BTreeSet::new();
        let mut addrs = std::collections::BTreeSet::new();
        for spec in &config.services {
            if !names.insert(spec.name.clone()) {
                return Err(ProxyError::DuplicateService(spec.name.clone()));
            }
            let addr = spec
                .listen
                .or(config.default_listen)
                .ok_or_else(|| ProxyError::NoListener(spec.name.clone()))?;
            addrs.insert(addr);
        }
        if config.bind_default
            && let Some(addr) = config.default_listen
        {
            addrs.insert(addr);
        }

        let default_tls = match config.default_tls.clone() {
            Some(files) => Some(Arc::new(
                backout_listen::tls::Reloading::new(files).map_err(ProxyError::DefaultTls)?,
            )),
            None => None,
        };
        let mut tasks = Vec::new();
        let mut listeners = Vec::new();
        let mut indexes = BTreeMap::new();
        // Each worker gets its own socket for every listener address.
        let mut per_worker: Vec<Vec<WorkerSocket>> = (0..workers).map(|_| Vec::new()).collect();
        for addr in addrs {
            let index: registry::SharedIndex = Arc::new(arc_swap::ArcSwap::from_pointee(
                router::ServiceIndex::default(),
            ));
            let tls = tls::DataTls::new(Arc::clone(&index), default_tls.clone())
                .map_err(ProxyError::DefaultTls)?;
            indexes.insert(addr, Arc::clone(&index));
            let first = listener::bind_std(addr, true)
                .map_err(|source| ProxyError::Bind { addr, source })?;
            let bound = first
                .local_addr()
                .map_err(|source| ProxyError::Bind { addr, source })?;
            listeners.push((addr, bound));
            for (w, socks) in per_worker.iter_mut().enumerate() {
                let sock = if w == 0 {
                    first.try_clone()
                } else {
                    listener::bind_std(bound, true)
                }
                .map_err(|source| ProxyError::Bind {
                    addr: bound,
                    source,
                })?;
                socks.push((sock, Arc::clone(&index), tls.clone()));
            }
        }
        let registry = Arc::new(Registry::new(
            indexes,
            config.default_listen,
            Arc::clone(&metrics),
            Arc::clone(&events),
            workers,
            prober,
        ));
        for spec in &config.services {
            registry.insert(spec.clone())?;
        }
        let mut worker_threads = Vec::new();
        for (i, socks) in per_worker.into_iter().enumerate() {
            let rx = shutdown_rx.clone();
            let drain = config.drain_timeout;
            let gate = gate_rx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("backout-worker-{i}"))
                .spawn(move || run_worker(i, socks, rx, gate, drain))
                .map_err(|source| ProxyError::Worker { source })?;
            worker_threads.push(handle);
        }

        tasks.push(tokio::spawn(health::watch_pools(
            Arc::clone(&registry),
            Arc::clone(&events),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(tls::watch(
            Arc::clone(&registry),
            default_tls,
            shutdown_rx.clone(),
        )));

        let state = Arc::new(AdminState {
            registry,
            metrics,
            events,
            follow: std::sync::OnceLock::new(),
        });
        let admin = match config.admin {
            None => None,
            Some(addr) if !addr.ip().is_loopback() && config.admin_listener.tokens.is_none() => {
                return Err(ProxyError::AdminWithoutToken(addr));
            }
            Some(addr) => {
                let std_listener = listener::bind_std(addr, false)
                    .map_err(|source| ProxyError::Bind { addr, source })?;
                let listener = tokio::net::TcpListener::from_std(std_listener)
                    .map_err(|source| ProxyError::Bind { addr, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| ProxyError::Bind { addr, source })?;
                let app = admin::router(Arc::clone(&state));
                let mut rx = shutdown_rx.clone();
                let settings = config.admin_listener.clone();
                tasks.push(tokio::spawn(async move {
                    let stop = async move {
                        let _ = rx.changed().await;
                    };
                    if let Err(e) = backout_listen::serve(listener, app, settings, stop).await {
                        tracing::error!(error = %e, "admin API stopped");
                    }
                }));
                Some(bound)
            }
        };

        Ok(RunningProxy {
            listeners,
            admin,
            state,
            gate,
            shutdown,
            tasks,
            workers: worker_threads,
        })
    }

    pub fn service(&self, name: &str) -> Option<Arc<Service>> {
        self.state.registry.get(name)
    }

    /// The services, which may change at run time.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.state.registry
    }

    /// Starts accepting connections (see [`ProxyConfig::wait_for_config`]).
    pub fn open(&self) {
        self.gate.send_replace(true);
    }

    /// Follows a control plane: serves what the state files hold at once
    /// (opening the listeners if there is anything), then subscribes and
    /// keeps following until shutdown. The admin API then refuses manual
    /// route changes and `/readyz` reports on the subscription.
    pub fn follow(&mut self, config: follow::FollowConfig) -> Arc<follow::FollowStatus> {
        let status = Arc::clone(self.state.follow.get_or_init(Default::default));
        let follower = follow::Follower::new(
            Arc::clone(&self.state.registry),
            Arc::clone(&self.state.metrics),
            Arc::clone(&status),
            config,
            self.gate.clone(),
        );
        follower.restore();
        let stop = self.shutdown.subscribe();
        self.tasks.push(tokio::spawn(follower.run(stop)));
        status
    }

    pub fn events(&self) -> &Arc<EventLog> {
        &self.state.events
    }

    /// The bound address for a requested listen address.
    pub fn bound(&self, requested: SocketAddr) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(r, _)| *r == requested)
            .map(|(_, b)| *b)
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain
    /// timeout) and waits for every task.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || {
            for w in workers {
                let _ = w.join();
            }
        })
        .await;
    }
}

/// A worker's socket for one listener, with the listener's services and
/// TLS.
type WorkerSocket = (std::net::TcpListener, registry::SharedIndex, tls::DataTls);

/// One data-plane worker: a single-threaded runtime serving its sockets
/// until shutdown, then draining.
fn run_worker(
    index: usize,
    sockets: Vec<WorkerSocket>,
    shutdown: watch::Receiver<bool>,
    gate: watch::Receiver<bool>,
    drain: Duration,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(worker = index, error = %e, "cannot start worker runtime");
            return;
        }
    };
    worker::enter(index);
    runtime.block_on(async move {
        let mut serving = tokio::task::JoinSet::new();
        for (sock, index, tls) in sockets {
            match tokio::net::TcpListener::from_std(sock) {
                Ok(l) => {
                    serving.spawn(listener::serve(
                        l,
                        index,
                        tls,
                        shutdown.clone(),
                        gate.clone(),
                        drain,
                    ));
                }
                Err(e) => tracing::error!(error = %e, "cannot adopt listener socket"),
            }
        }
        while serving.join_next().await.is_some() {}
    });
}
