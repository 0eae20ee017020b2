//! The controller: closes the loop between the rollout state machine, the
//! event log, the drivers, the proxy and the judge.
//!
//! One task per service owns that service's [`ServiceState`]; the API talks
//! to it through a [`ServiceHandle`]. State is a fold of the event log: on
//! start each service folds its events, adopts the instances still running
//! and reconciles the proxy to the folded state before taking requests.
//!
//! With several control-plane processes on one database (see [`election`]),
//! only the leader's controllers act; a follower's fold the log as the
//! leader writes it, serve the snapshots it stored, answer changes with
//! "not the leader", and take over (fold, adopt, act) when this process
//! wins the lease.

pub(crate) mod clock;
mod compose;
pub mod election;
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

pub use election::Lead;
pub use notify::{Notifier, Payload};
pub use service::{
    ACK_DEADLINE_MS, ControlPlaneView, ProxyView, ServiceView, Submission, SubmitError, Submitted,
    TICK,
};

use crate::fleet::Fleet;
use backout_driver::{self as driver, Driver, DriverContext};
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
    /// Keeps a lone control plane's standing open (a closed channel would
    /// wake the loops for ever).
    _alone: Option<watch::Sender<Lead>>,
    lead: watch::Receiver<Lead>,
}

impl Controller {
    /// Recovers every service from the log, adopts its instances and
    /// starts its loop. `fleet` must know every service.
    ///
    /// `lead` is this process's standing in an election; `None` leads
    /// alone. A process that does not lead now starts its loops as a
    /// follower: they recover when it wins.
    pub async fn start(
        store: Arc<dyn Store>,
        fleet: Arc<Fleet>,
        services: Vec<ManagedService>,
        data_dir: PathBuf,
        lead: Option<watch::Receiver<Lead>>,
    ) -> Result<Controller, ControllerError> {
        let stop = CancellationToken::new();
        let (alone, lead) = match lead {
            Some(rx) => (None, rx),
            None => {
                let (tx, rx) = watch::channel(Lead::alone());
                (Some(tx), rx)
            }
        };
        let name = fleet.standing().name;
        let epoch = epoch(&store, &lead).await?;
        let mut handles = BTreeMap::new();
        let mut tasks = Vec::new();
        let mut drivers = Vec::new();
        for managed in services {
            let spec = Arc::new(managed.spec);
            let service = spec.name.clone();
            let driver_spec = spec
                .driver
                .as_ref()
                .ok_or_else(|| ControllerError::NoDriver(service.clone()))?;
            if !fleet.service_names().any(|s| *s == service) {
                return Err(ControllerError::NotInFleet(service));
            }
            let driver = driver::build(
                driver_spec,
                DriverContext {
                    data_dir: data_dir.clone(),
                    base_dir: managed.base_dir.clone(),
                    gate: {
                        let lead = lead.clone();
                        driver::Gate::new(move || lead.borrow().acting())
                    },
                },
            );
            drivers.push((service.clone(), Arc::clone(&driver)));
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
                lead.clone(),
                name.clone(),
            );
            // Leading now: recover before the API serves, so a bad log
            // fails the start. A follower catches up in its loop.
            let recovered = if lead.borrow().acting() {
                let folded = actor
                    .recover()
                    .await
                    .map_err(|detail| ControllerError::Recover {
                        service: spec.name.clone(),
                        detail,
                    })?;
                if folded.undecodable > 0 {
                    tracing::warn!(service = %spec.name, count = folded.undecodable, "events written by a newer backout were skipped");
                }
                true
            } else {
                false
            };
            let (tx, rx) = mpsc::channel(64);
            tasks.push(tokio::spawn(actor.main(rx, stop.clone(), recovered)));
            handles.insert(
                service,
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
            _alone: alone,
            lead,
        })
    }

    /// This process's standing among control planes.
    pub fn lead(&self) -> Lead {
        self.lead.borrow().clone()
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
    /// A follower never stops anything: the instances are the leader's.
    pub async fn shutdown(&self, stop_instances: bool) {
        let stop_instances = stop_instances && self.lead.borrow().acting();
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
///
/// Only a leader may write it: a follower on a new database waits until
/// the leader has (or until it wins the election itself).
pub async fn epoch(
    store: &Arc<dyn Store>,
    lead: &watch::Receiver<Lead>,
) -> Result<String, ControllerError> {
    const NAME: &str = "@fleet";
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);
    let started = tokio::time::Instant::now();
    loop {
        let s = Arc::clone(store);
        let acting = lead.borrow().acting();
        let found = tokio::task::spawn_blocking(move || {
            if let Some(snap) = s.latest_snapshot(NAME)?
                && let Some(e) = snap.body["epoch"].as_str()
            {
                return Ok(Some(e.to_string()));
            }
            if !acting {
                return Ok(None);
            }
            let epoch = format!("{:x}-{:016x}", clock::unix_ms(), fastrand::u64(..));
            let seq = s.last_seq()?;
            s.save_snapshot(NAME, seq, &serde_json::json!({ "epoch": epoch }))?;
            Ok(Some(epoch))
        })
        .await
        .map_err(|e| ControllerError::Epoch(e.to_string()))?;
        match found {
            Ok(Some(epoch)) => return Ok(epoch),
            // Fenced: another process won the lease between our look at
            // the standing and the write; it writes the epoch.
            Ok(None) | Err(backout_store::StoreError::Fenced { .. }) => {}
            Err(e) => return Err(ControllerError::Epoch(e.to_string())),
        }
        if started.elapsed() > PATIENCE {
            return Err(ControllerError::Epoch(format!(
                "no process has led the control plane for {}s to create it; is the database reachable by the leader?",
                PATIENCE.as_secs()
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
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
        control_plane: ControlPlaneView::default(),
    }
}
