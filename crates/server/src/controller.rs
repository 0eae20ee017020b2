//! The controller: closes the loop between the rollout state machine, the
//! event log, the drivers, the proxy and the judge.
//!
//! One task per service owns that service's [`ServiceState`]; the API talks
//! to it through a [`ServiceHandle`]. State is a fold of the event log: on
//! start each service folds its events, adopts the instances still running
//! and reconciles the proxy to the folded state before taking requests.

pub(crate) mod clock;
mod compose;
mod liveness;
pub mod log;
mod notify;
mod service;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use backout_rollout::{Policy, ServiceState};
use backout_spec::ServiceSpec;
use backout_store::Store;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use notify::{Notifier, Payload};
pub use service::{
    ACK_DEADLINE_MS, ProxyView, ServiceView, Submission, SubmitError, Submitted, TICK,
};

use crate::driver::{self, Driver, DriverContext};
use crate::fleet::Fleet;
use service::{Request, ServiceActor};

/// A service to manage: its spec and the directory its file is in
/// (relative paths in the driver section resolve against it).
#[derive(Debug, Clone)]
pub struct ManagedService {
    pub spec: ServiceSpec,
    pub base_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(
        "service {0:?} has no `driver:` section; `backout up` needs one to run its releases (e.g. `driver: {{process: {{command: \"./app --port {{port}}\"}}}}`)"
    )]
    NoDriver(String),
    #[error("service {0:?} is not in the fleet")]
    NotInFleet(String),
    #[error("cannot read or create the control plane's epoch in the store: {0}")]
    Epoch(String),
    #[error("reading the event log of {service:?}: {detail}")]
    Recover { service: String, detail: String },
}

/// The API's handle on one service's controller.
#[derive(Debug, Clone)]
pub struct ServiceHandle {
    pub spec: Arc<ServiceSpec>,
    tx: mpsc::Sender<Request>,
    view: watch::Receiver<Arc<ServiceView>>,
}

impl ServiceHandle {
    /// Records and applies a change; refused without a trace when it does
    /// not apply to the current state.
    pub async fn submit(&self, submission: Submission) -> Result<Submitted, SubmitError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::Submit(submission, reply))
            .await
            .map_err(|_| SubmitError::Stopped)?;
        answer.await.map_err(|_| SubmitError::Stopped)?
    }

    /// The latest published view.
    pub fn view(&self) -> Arc<ServiceView> {
        self.view.borrow().clone()
    }

    /// Changes to the view, for `status --watch`.
    pub fn watch(&self) -> watch::Receiver<Arc<ServiceView>> {
        self.view.clone()
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Request")
    }
}

/// The running controller.
#[derive(Debug)]
pub struct Controller {
    pub store: Arc<dyn Store>,
    services: BTreeMap<String, ServiceHandle>,
    drivers: Vec<(String, Arc<dyn Driver>)>,
    stop: CancellationToken,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for dyn Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Driver({})", self.kind())
    }
}

impl Controller {
    /// Recovers every service from the log, adopts its instances and
    /// starts its loop. `fleet` must know every service.
    pub async fn start(
        store: Arc<dyn Store>,
        fleet: Arc<Fleet>,
        services: Vec<ManagedService>,
        data_dir: PathBuf,
    ) -> Result<Controller, ControllerError> {
        let stop = CancellationToken::new();
        let epoch = epoch(&store).await?;
        let mut handles = BTreeMap::new();
        let mut tasks = Vec::new();
        let mut drivers = Vec::new();
        for managed in services {
            let spec = Arc::new(managed.spec);
            let name = spec.name.clone();
            let driver_spec = spec
                .driver
                .as_ref()
                .ok_or_else(|| ControllerError::NoDriver(name.clone()))?;
            if !fleet.service_names().any(|s| *s == name) {
                return Err(ControllerError::NotInFleet(name));
            }
            let driver = driver::build(
                driver_spec,
                DriverContext {
                    data_dir: data_dir.clone(),
                    base_dir: managed.base_dir.clone(),
                },
            );
            drivers.push((name.clone(), Arc::clone(&driver)));
            let policy = policy_of(&spec);
            let (view_tx, view_rx) = watch::channel(Arc::new(empty_view(&spec, &*driver)));
            let mut actor = ServiceActor::new(
                Arc::clone(&spec),
                policy,
                Arc::clone(&store),
                Arc::clone(&fleet),
                epoch.clone(),
                driver,
                Notifier::new(spec.notifications.clone()),
                view_tx,
            );
            let folded = actor
                .recover()
                .await
                .map_err(|detail| ControllerError::Recover {
                    service: name.clone(),
                    detail,
                })?;
            if folded.undecodable > 0 {
                tracing::warn!(service = %name, count = folded.undecodable, "events written by a newer backout were skipped");
            }
            let (tx, rx) = mpsc::channel(64);
            tasks.push(tokio::spawn(actor.run(rx, stop.clone())));
            handles.insert(
                name,
                ServiceHandle {
                    spec,
                    tx,
                    view: view_rx,
                },
            );
        }
        Ok(Controller {
            store,
            services: handles,
            drivers,
            stop,
            tasks: std::sync::Mutex::new(tasks),
        })
    }

    pub fn service(&self, name: &str) -> Option<&ServiceHandle> {
        self.services.get(name)
    }

    pub fn services(&self) -> impl Iterator<Item = (&String, &ServiceHandle)> {
        self.services.iter()
    }

    /// Stops the loops. With `stop_instances`, every instance the drivers
    /// run is stopped too (a clean `backout up` exit); without, they keep
    /// running for the next start to adopt.
    pub async fn shutdown(&self, stop_instances: bool) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        if stop_instances {
            for (name, driver) in &self.drivers {
                let versions: Vec<String> = self
                    .services
                    .get(name)
                    .map(|h| h.view().instances.keys().cloned().collect())
                    .unwrap_or_default();
                for v in versions {
                    if let Err(e) = driver.teardown(name, &v).await {
                        tracing::warn!(service = %name, version = %v, error = %e, "stopping instances");
                    }
                }
            }
        }
    }
}

/// The control plane's identity, made once when its store is new and
/// kept there: every snapshot carries it, so a proxy can tell a control
/// plane that starts counting generations again on a fresh store from a
/// stale one sending old generations.
pub async fn epoch(store: &Arc<dyn Store>) -> Result<String, ControllerError> {
    const NAME: &str = "@fleet";
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || {
        if let Some(s) = store.latest_snapshot(NAME)?
            && let Some(e) = s.body["epoch"].as_str()
        {
            return Ok(e.to_string());
        }
        let epoch = format!("{:x}-{:016x}", clock::unix_ms(), fastrand::u64(..));
        let seq = store.last_seq()?;
        store.save_snapshot(NAME, seq, &serde_json::json!({ "epoch": epoch }))?;
        Ok(epoch)
    })
    .await
    .map_err(|e| ControllerError::Epoch(e.to_string()))?
    .map_err(|e: backout_store::StoreError| ControllerError::Epoch(e.to_string()))
}

/// The spec's policy; a driver that fixes the replica count overrides the
/// strategy's.
pub fn policy_of(spec: &ServiceSpec) -> Policy {
    let mut policy = Policy::of(spec);
    if let Some(n) = spec.driver.as_ref().and_then(|d| d.replicas()) {
        policy.strategy.replicas = n;
    }
    policy
}

fn empty_view(spec: &ServiceSpec, driver: &dyn Driver) -> ServiceView {
    ServiceView {
        name: spec.name.clone(),
        seq: 0,
        driver: driver.kind(),
        state: ServiceState::new(&spec.name),
        decision: None,
        proxy: ProxyView {
            route: None,
            generation: 0,
            applied_at_unix_us: 0,
            canary_fallback: false,
            pools: Vec::new(),
            proxies: Vec::new(),
            progress: Default::default(),
        },
        instances: BTreeMap::new(),
        mttr: backout_rollout::MttrSummary::of(&[]),
        steps: Vec::new(),
    }
}
