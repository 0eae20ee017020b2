//! One service's controller: a task that owns the service's state and is
//! the only writer of it.
//!
//! Every input goes the same way: check it against the state (refuse what
//! does not apply, before anything is written), apply it to a copy, append
//! the input and the actions it caused to the event log as one fsync'd
//! batch, and only then adopt the copy and act. The world (driver
//! instances, proxy pools and route) is then reconciled with the state,
//! level-triggered, so an action lost to a crash is simply done again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use backout_judge::{Decision, Judge, Verdict, Window};
use backout_proxy::{Role, Service};
use backout_rollout::{
    Action, Envelope, Input, MttrSummary, Notice, Phase, Policy, Rejection, RolloutKind,
    ServiceState,
};
use backout_spec::{PoolSpec, ServiceSpec};
use backout_store::{NewEvent, Store, StoredEvent};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::clock::unix_ms;
use super::liveness::LivenessRestarts;
use super::log::{self, Folded, INSTANCES};
use super::notify::Notifier;
use crate::driver::{DeployRequest, Driver, DriverError, DriverEvent, Instance};
use crate::provider::{ErrorClasses, WindowQuery, proxy_series};

/// How often the controller looks at the world even when nothing happens.
pub const TICK: Duration = Duration::from_secs(1);
/// After a failed deploy, wait this long before the level-triggered loop
/// tries again (the failure itself is an input that usually ends the
/// rollout, so this only matters for stable).
const DEPLOY_RETRY_MS: i64 = 5_000;
/// After a rollback with no traffic at all, how long before the service
/// counts as recovered.
const QUIET_RECOVERY_MS: i64 = 10_000;
/// How often the judge's evidence is saved, in judged seconds: a restart
/// of backout resumes the analysis from there instead of from nothing.
const JUDGE_CHECKPOINT_TICKS: u64 = 5;

/// A request to change a service, as the API makes it.
#[derive(Debug, Clone)]
pub struct Submission {
    pub input: Input,
    /// Who: a token's name.
    pub actor: String,
    pub reason: Option<String>,
    /// The client's idempotency key: a retried request is applied once.
    pub key: Option<String>,
}

/// What became of an accepted submission.
#[derive(Debug, Clone, Serialize)]
pub struct Submitted {
    /// The input's position in the event log.
    pub seq: i64,
    /// The key was seen before: this is the earlier request's result, and
    /// nothing was applied now.
    pub duplicate: bool,
    /// What the input set off, for people.
    pub notices: Vec<Notice>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    Rejected(Rejection),
    #[error("the event log could not record the change, so nothing was done: {0}")]
    Store(String),
    #[error("the controller of this service has stopped")]
    Stopped,
}

/// Everything the API shows about a service, published after every change.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    pub name: String,
    /// The last event-log seq folded into `state`.
    pub seq: i64,
    pub driver: &'static str,
    pub state: ServiceState,
    /// The judge's latest decision on the rollout in progress.
    pub decision: Option<Decision>,
    /// The proxy's route now, which the controller keeps equal to the
    /// state's desired route.
    pub proxy: ProxyView,
    /// Instances per version, as the driver reported them.
    pub instances: BTreeMap<String, Vec<Instance>>,
    pub mttr: MttrSummary,
    /// Step labels of the strategy, in order.
    pub steps: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProxyView {
    pub route: Option<backout_routing::RouteSpec>,
    pub generation: u64,
    pub applied_at_unix_us: u64,
    pub canary_fallback: bool,
    pub pools: Vec<backout_proxy::pool::PoolStatus>,
}

pub(super) enum Request {
    Submit(Submission, oneshot::Sender<Result<Submitted, SubmitError>>),
}

/// A driver operation finished.
enum DriverDone {
    Deployed {
        version: String,
        result: Result<Vec<Instance>, DriverError>,
    },
    TornDown {
        version: String,
        result: Result<(), DriverError>,
    },
    /// A restart the controller asked for because the probes found the
    /// instance wedged.
    Restarted {
        version: String,
        instance_id: String,
        result: Result<Instance, DriverError>,
    },
}

/// The judge running on the current rollout.
#[derive(Serialize, serde::Deserialize)]
struct Analysis {
    rollout_id: u64,
    judge: Judge,
    started_ms: i64,
    fed_until_ms: i64,
    /// Stable's totals while the canary was judged: the level the service
    /// must return to after a rollback.
    baseline_requests: u64,
    baseline_errors: u64,
}

pub(super) struct ServiceActor {
    pub name: String,
    pub spec: Arc<ServiceSpec>,
    pub policy: Policy,
    pub state: ServiceState,
    pub seq: i64,
    pub store: Arc<dyn Store>,
    pub proxy: Arc<Service>,
    pub driver: Arc<dyn Driver>,
    pub notifier: Notifier,
    pub classes: ErrorClasses,
    pub view: watch::Sender<Arc<ServiceView>>,
    running: BTreeMap<String, Vec<Instance>>,
    in_flight: BTreeSet<String>,
    deploy_failed_ms: BTreeMap<String, i64>,
    analysis: Option<Analysis>,
    /// The judge's last decision and the rollout it was about.
    decision: Option<(u64, Decision)>,
    /// Stable's error rate before the last rollback, for the verify phase.
    recovery_baseline: Option<f64>,
    /// Instances whose liveness (or startup) probe failed, and when each
    /// may be restarted again.
    liveness: LivenessRestarts,
    done_tx: mpsc::UnboundedSender<DriverDone>,
    done_rx: mpsc::UnboundedReceiver<DriverDone>,
}

impl ServiceActor {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        spec: Arc<ServiceSpec>,
        policy: Policy,
        store: Arc<dyn Store>,
        proxy: Arc<Service>,
        driver: Arc<dyn Driver>,
        notifier: Notifier,
        view: watch::Sender<Arc<ServiceView>>,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let liveness = liveness_policy(&spec);
        ServiceActor {
            name: spec.name.clone(),
            state: ServiceState::new(&spec.name),
            spec,
            policy,
            seq: 0,
            store,
            proxy,
            driver,
            notifier,
            classes: ErrorClasses::default(),
            view,
            running: BTreeMap::new(),
            in_flight: BTreeSet::new(),
            deploy_failed_ms: BTreeMap::new(),
            analysis: None,
            decision: None,
            recovery_baseline: None,
            liveness,
            done_tx,
            done_rx,
        }
    }

    /// Rebuilds the state from the log and takes over the instances that
    /// still run. Called once, before the loop.
    pub(super) async fn recover(&mut self) -> Result<Folded, String> {
        let mut folded = Folded::default();
        let mut after = 0;
        loop {
            let store = Arc::clone(&self.store);
            let name = self.name.clone();
            let page = tokio::task::spawn_blocking(move || store.read_service(&name, after, 2000))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            log::fold(&mut self.state, &page, &self.policy, &mut folded);
        }
        self.seq = folded.seq;
        // Versions that should run, versions that ran and should not (a
        // teardown cut short by the crash), and versions a driver was
        // told to start whose instances were never reported (a deploy cut
        // short): adopt them all; the loop tears down the unwanted ones.
        let mut versions: BTreeSet<String> = self.state.instances.keys().cloned().collect();
        versions.extend(
            folded
                .instances
                .iter()
                .filter(|(_, i)| !i.is_empty())
                .map(|(v, _)| v.clone()),
        );
        versions.extend(folded.deployed.iter().cloned());
        let mut facts = Vec::new();
        let mut gone = Vec::new();
        for version in versions {
            let replicas = self.state.instances.get(&version).copied().unwrap_or(0);
            let req = self.request(&version, replicas);
            let recorded = folded.instances.get(&version).cloned().unwrap_or_default();
            let found = match self.driver.adopt(&req, &recorded).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(service = %self.name, %version, error = %e, "adopting instances failed; they will be deployed again");
                    continue;
                }
            };
            let wanted = self.state.instances.contains_key(&version);
            if found.is_empty() && !wanted {
                // Stopped (or never started), but the crash came before
                // the log said so.
                gone.push(version);
                continue;
            }
            // The log says what runs now: adoption may have found fewer
            // instances than it recorded, or ones it never recorded.
            if !same_instances(&found, &recorded) {
                facts.push(self.instances_event(&version, &found));
            }
            if !found.is_empty() {
                self.running.insert(version, found);
            }
        }
        if !facts.is_empty() {
            self.append_facts(facts).await;
        }
        for version in gone {
            let fact = self.instances_event(&version, &[]);
            let _ = self.internal(Input::TornDown { version }, vec![fact]).await;
        }
        self.resume_analysis().await;
        // The API serves as soon as this returns: it must show the folded
        // state, not the empty one the view started with.
        self.publish();
        Ok(folded)
    }

    /// The snapshot name the judge's evidence is kept under. Service names
    /// start with a letter or digit, so it is nobody's service.
    fn checkpoint_name(&self) -> String {
        format!("@judge/{}", self.name)
    }

    /// Saves the judge's evidence (best effort: losing it only means a
    /// restart judges from nothing, as the first start did).
    async fn save_analysis(&self) {
        let Some(a) = &self.analysis else { return };
        let body = serde_json::json!({
            "v": 1,
            "config": serde_json::to_value(&self.spec.analysis).unwrap_or_default(),
            "analysis": serde_json::to_value(a).unwrap_or_default(),
        });
        let (store, name, seq) = (Arc::clone(&self.store), self.checkpoint_name(), self.seq);
        let saved =
            tokio::task::spawn_blocking(move || store.save_snapshot(&name, seq, &body)).await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::debug!(service = %self.name, "cannot save the judge's evidence");
        }
    }

    /// After a restart: takes up the current rollout's analysis where its
    /// last checkpoint left it, if it was judged with the same config. The
    /// e-processes go on from their saved wealth; the seconds missed while
    /// backout was down are simply not observed, which keeps their bets
    /// predictable and their guarantee intact.
    async fn resume_analysis(&mut self) {
        let Some(r) = &self.state.rollout else { return };
        let rollout_id = r.id;
        let (store, name) = (Arc::clone(&self.store), self.checkpoint_name());
        let Ok(Ok(Some(snapshot))) =
            tokio::task::spawn_blocking(move || store.latest_snapshot(&name)).await
        else {
            return;
        };
        let body = snapshot.body;
        let config = serde_json::to_value(&self.spec.analysis).unwrap_or_default();
        if body["v"] != 1 || body["config"] != config {
            return;
        }
        match serde_json::from_value::<Analysis>(body["analysis"].clone()) {
            Ok(mut a) if a.rollout_id == rollout_id => {
                tracing::info!(service = %self.name, rollout = rollout_id, "resuming the judge's evidence from its checkpoint");
                // Windows from before the restart are gone with the old
                // proxy; feeding resumes from now.
                let now = unix_ms();
                a.fed_until_ms = a.fed_until_ms.max(now - now.rem_euclid(1000) - 1000);
                self.analysis = Some(a);
            }
            _ => {}
        }
    }

    pub(super) async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        stop: CancellationToken,
    ) {
        let mut events = self.driver.subscribe();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.reconcile().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                req = requests.recv() => match req {
                    Some(Request::Submit(sub, reply)) => {
                        let result = self.process(sub.input, &sub.actor, sub.reason.as_deref(), sub.key.as_deref(), Vec::new()).await;
                        // The world first, then the answer: a break-glass
                        // rollback has moved the traffic when it returns.
                        self.reconcile().await;
                        let _ = reply.send(result);
                    }
                    None => break,
                },
                Some(done) = self.done_rx.recv() => {
                    self.driver_done(done).await;
                    self.reconcile().await;
                }
                ev = events.recv() => {
                    if let Ok(ev) = ev {
                        self.driver_event(ev).await;
                    }
                }
                _ = tick.tick() => {
                    let _ = self.internal(Input::Tick, Vec::new()).await;
                    self.judge().await;
                    self.verify_recovery().await;
                    self.restart_wedged().await;
                    self.reconcile().await;
                }
            }
        }
    }

    fn request(&self, version: &str, replicas: u32) -> DeployRequest {
        let mut req = DeployRequest::new(&self.name, version, replicas);
        if let Some(rel) = self.state.release(version) {
            req.artifact = rel.artifact.clone();
            req.config = rel.config.clone();
        }
        req
    }

    /// An input the controller itself observed.
    async fn internal(&mut self, input: Input, extra: Vec<NewEvent>) -> Option<Submitted> {
        match self.process(input, "controller", None, None, extra).await {
            Ok(s) => Some(s),
            Err(SubmitError::Rejected(_)) => None,
            Err(e) => {
                tracing::warn!(service = %self.name, error = %e, "input not recorded; retried on the next tick");
                None
            }
        }
    }

    /// Check, apply to a copy, log, adopt, act.
    async fn process(
        &mut self,
        input: Input,
        actor: &str,
        reason: Option<&str>,
        key: Option<&str>,
        extra: Vec<NewEvent>,
    ) -> Result<Submitted, SubmitError> {
        let key = key.map(|k| format!("{}:{k}", self.name));
        // A retried request (its answer lost, e.g. to a crash) is answered
        // from the log before it is checked: once applied, it usually no
        // longer applies (the rollout it approved has moved on), and the
        // client must hear "done", not "conflict".
        if let Some(k) = &key
            && let Some(earlier) = self.find_key(k).await?
        {
            return earlier_result(k, &earlier, &input);
        }
        self.state
            .check(&input, &self.policy)
            .map_err(SubmitError::Rejected)?;
        let env = Envelope {
            at_ms: unix_ms(),
            actor,
            reason,
        };
        let mut next = self.state.clone();
        let actions = next.apply(&env, &input, &self.policy);
        let observed = key.is_none() && actor == "controller";
        if observed && next == self.state && actions.is_empty() && extra.is_empty() {
            // Nothing changed: not worth a log entry (the fold is the same
            // without it).
            return Ok(Submitted {
                seq: self.seq,
                duplicate: false,
                notices: Vec::new(),
            });
        }
        let batch = log::batch(&self.name, &env, key.as_deref(), &input, &actions, extra);
        let store = Arc::clone(&self.store);
        let appended = tokio::task::spawn_blocking(move || store.append(batch))
            .await
            .map_err(|e| SubmitError::Store(e.to_string()))?
            .map_err(|e| SubmitError::Store(e.to_string()))?;
        let Some(first) = appended.first() else {
            return Err(SubmitError::Store("the log returned nothing".into()));
        };
        if first.duplicate {
            return Ok(Submitted {
                seq: first.event.seq,
                duplicate: true,
                notices: Vec::new(),
            });
        }
        self.seq = appended
            .iter()
            .map(|a| a.event.seq)
            .max()
            .unwrap_or(self.seq);
        self.state = next;
        let notices: Vec<Notice> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Notify(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        for n in &notices {
            tracing::info!(service = %self.name, kind = %n.kind, "{}", n.message);
            self.notifier.send(&self.name, n, env.at_ms);
        }
        self.publish();
        Ok(Submitted {
            seq: first.event.seq,
            duplicate: false,
            notices,
        })
    }

    /// The event logged earlier under an idempotency key, if any.
    async fn find_key(&self, key: &str) -> Result<Option<StoredEvent>, SubmitError> {
        let store = Arc::clone(&self.store);
        let key = key.to_string();
        tokio::task::spawn_blocking(move || store.find_key(&key))
            .await
            .map_err(|e| SubmitError::Store(e.to_string()))?
            .map_err(|e| SubmitError::Store(e.to_string()))
    }

    async fn append_facts(&mut self, events: Vec<NewEvent>) {
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || store.append(events)).await {
            Ok(Ok(a)) => {
                self.seq = a.iter().map(|a| a.event.seq).max().unwrap_or(self.seq);
            }
            Ok(Err(e)) => {
                tracing::warn!(service = %self.name, error = %e, "could not record a fact")
            }
            Err(e) => tracing::warn!(service = %self.name, error = %e, "could not record a fact"),
        }
    }

    fn instances_event(&self, version: &str, instances: &[Instance]) -> NewEvent {
        NewEvent::new(
            &self.name,
            INSTANCES,
            "controller",
            unix_ms(),
            serde_json::json!({"version": version, "instances": instances}),
        )
    }

    async fn driver_done(&mut self, done: DriverDone) {
        match done {
            DriverDone::Deployed { version, result } => {
                self.in_flight.remove(&version);
                match result {
                    Ok(instances) => {
                        self.deploy_failed_ms.remove(&version);
                        let fact = self.instances_event(&version, &instances);
                        self.append_facts(vec![fact]).await;
                        if self.state.instances.contains_key(&version) {
                            self.running.insert(version, instances);
                        } else {
                            // No longer wanted while it was starting.
                            self.running.insert(version, instances);
                        }
                    }
                    Err(e) => {
                        self.deploy_failed_ms.insert(version.clone(), unix_ms());
                        let _ = self
                            .internal(
                                Input::DeployFailed {
                                    version,
                                    error: e.to_string(),
                                },
                                Vec::new(),
                            )
                            .await;
                    }
                }
            }
            DriverDone::Restarted {
                version,
                instance_id,
                result,
            } => {
                let restarts = self.liveness.done(&instance_id, unix_ms());
                match result {
                    Ok(instance) => {
                        tracing::info!(service = %self.name, instance = %instance_id, restarts, "wedged instance restarted");
                        self.replace_instance(&version, instance).await;
                    }
                    Err(e) => {
                        tracing::warn!(service = %self.name, instance = %instance_id, error = %e, "restarting a wedged instance failed; tried again after its back-off");
                        let fact = NewEvent::new(
                            &self.name,
                            "driver.restart_failed",
                            "controller",
                            unix_ms(),
                            serde_json::json!({
                                "version": version,
                                "instance": instance_id,
                                "restarts": restarts,
                                "error": e.to_string(),
                            }),
                        );
                        self.append_facts(vec![fact]).await;
                    }
                }
            }
            DriverDone::TornDown { version, result } => {
                self.in_flight.remove(&version);
                match result {
                    Ok(()) => {
                        self.running.remove(&version);
                        let fact = self.instances_event(&version, &[]);
                        let _ = self.internal(Input::TornDown { version }, vec![fact]).await;
                    }
                    Err(e) => {
                        tracing::warn!(service = %self.name, %version, error = %e, "teardown failed; retried on the next tick");
                    }
                }
            }
        }
        self.publish();
    }

    async fn driver_event(&mut self, ev: DriverEvent) {
        let (service, version) = match &ev {
            DriverEvent::Exited { instance, .. } | DriverEvent::Restarted { instance, .. } => {
                (instance.service.clone(), instance.version.clone())
            }
            DriverEvent::RestartFailed {
                service, version, ..
            } => (service.clone(), version.clone()),
        };
        if service != self.name {
            return;
        }
        let body = serde_json::to_value(&ev).unwrap_or_default();
        let fact = NewEvent::new(&self.name, "driver.event", "driver", unix_ms(), body);
        self.append_facts(vec![fact]).await;
        if let DriverEvent::Restarted { instance, .. } = ev {
            self.replace_instance(&version, instance).await;
        }
    }

    /// Puts a restarted instance's new incarnation in place of the old one
    /// and logs the version's instances when that changed them: the new
    /// pid is what a restart of backout must adopt. Both the driver's own
    /// event and the controller's restart report it, in either order.
    async fn replace_instance(&mut self, version: &str, instance: Instance) {
        let Some(list) = self.running.get_mut(version) else {
            return;
        };
        let Some(slot) = list.iter_mut().find(|i| i.id == instance.id) else {
            return;
        };
        if same_instances(std::slice::from_ref(slot), std::slice::from_ref(&instance)) {
            return;
        }
        *slot = instance;
        let list = list.clone();
        let fact = self.instances_event(version, &list);
        self.append_facts(vec![fact]).await;
        self.publish();
    }

    /// Restarts the instances whose liveness probe failed or whose startup
    /// probe never passed: the proxy already keeps traffic off them, but
    /// only a restart unwedges a process that is stuck without exiting.
    /// The decision is logged before the driver is asked.
    async fn restart_wedged(&mut self) {
        if self.driver.kind() == "static" {
            // Nothing of backout's to restart; probes and outlier
            // ejection keep traffic off the endpoint meanwhile.
            return;
        }
        let now = unix_ms();
        let mono = backout_proxy::clock::mono_ms();
        let mut known = BTreeSet::new();
        let mut restart = Vec::new();
        for (version, instances) in &self.running {
            known.extend(instances.iter().map(|i| i.id.clone()));
            if !self.state.instances.contains_key(version) || self.in_flight.contains(version) {
                continue;
            }
            let Some(pool) = self.proxy.pool(version) else {
                continue;
            };
            let endpoints = pool.endpoints();
            for inst in instances {
                let Some(endpoint) = endpoints.iter().find(|e| e.url == inst.endpoint) else {
                    continue;
                };
                let health = endpoint.status(mono);
                let wedged = !health.live || health.startup_failed;
                if self.liveness.observe(&inst.id, !wedged, now) {
                    let why = if health.startup_failed {
                        "its startup probe failed"
                    } else {
                        "its liveness probe failed"
                    };
                    restart.push((version.clone(), inst.clone(), why));
                }
            }
        }
        self.liveness.retain(|id| known.contains(id));
        for (version, inst, why) in restart {
            let reason = format!("instance {} ({}) {why}", inst.id, inst.endpoint);
            let decision = NewEvent::new(
                &self.name,
                "action.restart",
                "controller",
                unix_ms(),
                serde_json::json!({
                    "action": "restart",
                    "version": version,
                    "instance": inst.id,
                    "endpoint": inst.endpoint.to_string(),
                    "pid": inst.pid,
                }),
            )
            .with_reason(&reason);
            let store = Arc::clone(&self.store);
            let logged = tokio::task::spawn_blocking(move || store.append(vec![decision])).await;
            if !matches!(logged, Ok(Ok(_))) {
                // Not in the log, so not done: asked again after the
                // back-off.
                tracing::warn!(service = %self.name, instance = %inst.id, "cannot log a restart; not restarting yet");
                self.liveness.done(&inst.id, unix_ms());
                continue;
            }
            tracing::warn!(service = %self.name, instance = %inst.id, "{reason}; restarting it");
            let driver = Arc::clone(&self.driver);
            let tx = self.done_tx.clone();
            let service = self.name.clone();
            tokio::spawn(async move {
                let result = driver.restart(&service, &version, &inst.id).await;
                let _ = tx.send(DriverDone::Restarted {
                    version,
                    instance_id: inst.id,
                    result,
                });
            });
        }
    }

    /// Makes instances, pools and the route match the state.
    async fn reconcile(&mut self) {
        // Bounded: each pass either settles or feeds an input that moves
        // the state on.
        for _ in 0..8 {
            self.reconcile_instances();
            self.reconcile_pools();
            let mut inputs = Vec::new();
            if let Some(applied) = self.reconcile_route() {
                inputs.push(applied);
            }
            inputs.extend(self.readiness_inputs());
            if inputs.is_empty() {
                break;
            }
            for input in inputs {
                let _ = self.internal(input, Vec::new()).await;
            }
        }
        self.publish();
    }

    fn reconcile_instances(&mut self) {
        let now = unix_ms();
        let desired = self.state.instances.clone();
        for (version, replicas) in desired {
            if self.in_flight.contains(&version) {
                continue;
            }
            if self
                .deploy_failed_ms
                .get(&version)
                .is_some_and(|at| now - at < DEPLOY_RETRY_MS)
            {
                continue;
            }
            let running = self.running.get(&version).map_or(0, Vec::len);
            let static_driver = self.driver.kind() == "static";
            let settled = if static_driver {
                running > 0
            } else {
                running == replicas as usize
            };
            if settled {
                continue;
            }
            let req = self.request(&version, replicas);
            let driver = Arc::clone(&self.driver);
            let tx = self.done_tx.clone();
            let scale = running > 0;
            self.in_flight.insert(version.clone());
            tokio::spawn(async move {
                let result = if scale {
                    driver.scale(&req).await
                } else {
                    driver.deploy(&req).await
                };
                let _ = tx.send(DriverDone::Deployed {
                    version: req.version,
                    result,
                });
            });
        }
        let unwanted: Vec<String> = self
            .running
            .keys()
            .filter(|v| !self.state.instances.contains_key(*v) && !self.in_flight.contains(*v))
            .cloned()
            .collect();
        for version in unwanted {
            // The pool goes first; while the route still uses it, wait.
            if self.proxy.pool(&version).is_some() && self.proxy.remove_pool(&version).is_err() {
                continue;
            }
            let driver = Arc::clone(&self.driver);
            let tx = self.done_tx.clone();
            let service = self.name.clone();
            self.in_flight.insert(version.clone());
            tokio::spawn(async move {
                let result = driver.teardown(&service, &version).await;
                let _ = tx.send(DriverDone::TornDown { version, result });
            });
        }
    }

    fn reconcile_pools(&mut self) {
        for (version, instances) in &self.running {
            if !self.state.instances.contains_key(version) {
                continue;
            }
            let endpoints: Vec<_> = instances.iter().map(|i| i.endpoint.clone()).collect();
            match self.proxy.pool(version) {
                Some(pool) => {
                    let now: Vec<_> = pool.endpoints().iter().map(|e| e.url.clone()).collect();
                    if now != endpoints {
                        self.proxy.set_endpoints(version, &endpoints);
                    }
                }
                None => {
                    let spec = PoolSpec {
                        endpoints,
                        ..self.spec.pool_defaults.clone()
                    };
                    if let Err(e) = self.proxy.upsert_pool(version, spec) {
                        tracing::warn!(service = %self.name, %version, error = %e, "cannot create pool");
                    }
                }
            }
        }
    }

    /// Installs the desired route when the proxy's differs; returns the
    /// `RouteApplied` input to record.
    fn reconcile_route(&mut self) -> Option<Input> {
        let desired = self.state.desired_route()?.clone();
        let wanted = desired.to_spec();
        let current = self.proxy.route();
        if current.spec() == Some(&wanted) {
            return None;
        }
        let have = |v: &str| self.proxy.pool(v).is_some();
        if !have(&desired.stable) {
            return None;
        }
        let spec = if desired.canary.as_deref().is_some_and(|c| !have(c)) {
            // After a restart the canary may not be back yet: stable takes
            // everything meanwhile, which is always safe.
            let stable_only = backout_rollout::DesiredRoute::stable_only(&desired.stable).to_spec();
            if current.spec() == Some(&stable_only) {
                return None;
            }
            let _ = self.proxy.set_route(stable_only, "controller");
            return None;
        } else {
            wanted
        };
        match self.proxy.set_route(spec, "controller") {
            Ok(applied) => Some(Input::RouteApplied {
                stable: desired.stable.clone(),
                canary: desired.canary.clone(),
                weight_permille: desired.weight.get(),
                generation: applied.generation,
                applied_at_ms: (applied.applied_at_unix_us / 1000) as i64,
            }),
            Err(e) => {
                tracing::warn!(service = %self.name, error = %e, "cannot install route");
                None
            }
        }
    }

    fn readiness_inputs(&self) -> Vec<Input> {
        let mono = backout_proxy::clock::mono_ms();
        let mut out = Vec::new();
        for (version, replicas) in &self.state.instances {
            let (ready, total) = match self.proxy.pool(version) {
                Some(p) if self.running.contains_key(version) => {
                    // Ready means able to take traffic: behind an open
                    // breaker no endpoint is (the proxy sends a canary's
                    // share to stable meanwhile, so the canary is not
                    // being judged and must not move on).
                    let ready = if p.breaker_open(mono) {
                        0
                    } else {
                        p.available_count(mono) as u32
                    };
                    (ready, p.endpoints().len() as u32)
                }
                _ => (0, *replicas),
            };
            if self.state.readiness.get(version) != Some(&(ready, total)) {
                out.push(Input::Readiness {
                    version: version.clone(),
                    ready,
                    total,
                });
            }
        }
        out
    }

    /// Feeds the judge the windows completed since its last look, and
    /// records its verdict when it matters.
    async fn judge(&mut self) {
        let Some(r) = &self.state.rollout else {
            // The last decision stays on view after a rollout ends: it
            // says why it was rolled back.
            self.analysis = None;
            return;
        };
        if r.kind != RolloutKind::Canary || r.phase != Phase::Stepping || r.baseline.is_none() {
            if r.phase != Phase::RollingBack {
                self.analysis = None;
            }
            return;
        }
        let now = unix_ms();
        if self.analysis.as_ref().map(|a| a.rollout_id) != Some(r.id) {
            let judge = Judge::new(&self.spec.analysis, "analysis")
                .unwrap_or_else(|_| Judge::with_defaults());
            let start = now - now.rem_euclid(1000);
            self.analysis = Some(Analysis {
                rollout_id: r.id,
                judge,
                started_ms: start,
                fed_until_ms: start,
                baseline_requests: 0,
                baseline_errors: 0,
            });
            self.decision = None;
            return;
        }
        let (step_started, last) = (r.step_started_ms, r.last_verdict.clone());
        let Some(a) = &mut self.analysis else { return };
        // One second behind, so the window is complete in the proxy.
        let until = now - now.rem_euclid(1000) - 1000;
        if until <= a.fed_until_ms {
            return;
        }
        let report = self.proxy.windows(a.fed_until_ms as u64);
        let query = WindowQuery {
            service: self.name.clone(),
            since_ms: a.fed_until_ms,
            until_ms: until,
        };
        let series = proxy_series(&report, &query, self.classes);
        let mut window = Window {
            t: (until - a.started_ms) as f64 / 1000.0,
            ..Window::default()
        };
        series.fold_into(&mut window);
        a.fed_until_ms = until;
        a.baseline_requests += window.baseline.requests;
        a.baseline_errors += window.baseline.errors;
        let decision = a.judge.observe(&window);
        let started = a.started_ms;
        let checkpoint = (((until - started) / 1000) as u64).is_multiple_of(JUDGE_CHECKPOINT_TICKS);
        let changed = last.as_ref().map(|l| l.verdict) != Some(decision.verdict);
        let fresh_promote = decision.verdict == Verdict::Promote
            && last.as_ref().is_none_or(|l| l.at_ms < step_started);
        let onset_ms = decision_onset(&decision).map(|t| started + (t * 1000.0) as i64);
        if decision.verdict == Verdict::Rollback && a.baseline_requests > 0 {
            self.recovery_baseline = Some(a.baseline_errors as f64 / a.baseline_requests as f64);
        }
        self.decision = Some((a.rollout_id, decision.clone()));
        if checkpoint {
            self.save_analysis().await;
        }
        if changed || fresh_promote {
            let fact = NewEvent::new(
                &self.name,
                "judge.decision",
                "judge",
                unix_ms(),
                serde_json::to_value(&decision).unwrap_or_default(),
            );
            let input = Input::Verdict {
                verdict: decision.verdict,
                reason: decision.reason.clone(),
                onset_ms,
            };
            let _ = self.internal(input, vec![fact]).await;
        }
    }

    /// After a rollback: once stable serves at its old error rate again,
    /// the rollback is verified.
    async fn verify_recovery(&mut self) {
        let Some(switched) = self
            .state
            .rollbacks
            .iter()
            .filter(|r| r.recovered_ms.is_none())
            .filter_map(|r| r.switched_ms)
            .min()
        else {
            return;
        };
        let since = switched - switched.rem_euclid(1000) + 1000;
        let report = self.proxy.windows(since.max(0) as u64);
        let Some(stable) = report.versions.iter().find(|v| v.role == Role::Stable) else {
            return;
        };
        let windows: Vec<_> = stable
            .windows
            .iter()
            .filter(|w| w.complete && w.start_ms as i64 >= since)
            .collect();
        let requests: u64 = windows.iter().map(|w| w.requests).sum();
        let errors: u64 = windows
            .iter()
            .map(|w| w.error_causes.http_5xx + w.error_causes.upstream + w.error_causes.rejected)
            .sum();
        let baseline = self.recovery_baseline.unwrap_or(0.0);
        let recovered = if requests == 0 {
            // No traffic at all for a while: nothing is failing either.
            // The proxy keeps windows only where there was traffic, so
            // "a while" is counted on the clock, not in windows.
            unix_ms() - since >= QUIET_RECOVERY_MS
        } else {
            let rate = errors as f64 / requests as f64;
            windows.len() >= 3 && rate <= baseline * 1.5 + 0.002
        };
        if recovered {
            let _ = self.internal(Input::Recovered, Vec::new()).await;
        }
    }

    fn publish(&self) {
        let status = self.proxy.status();
        let view = ServiceView {
            name: self.name.clone(),
            seq: self.seq,
            driver: self.driver.kind(),
            state: self.state.clone(),
            // A decision about an earlier rollout stays on view until the
            // next one starts (it says why that one ended), not after.
            decision: self
                .decision
                .as_ref()
                .filter(|(id, _)| self.state.rollout.as_ref().is_none_or(|r| r.id == *id))
                .map(|(_, d)| d.clone()),
            proxy: ProxyView {
                route: status.route,
                generation: status.generation,
                applied_at_unix_us: status.applied_at_unix_us,
                canary_fallback: status.canary_fallback,
                pools: status.pools,
            },
            instances: self.running.clone(),
            mttr: MttrSummary::of(&self.state.rollbacks),
            steps: self
                .policy
                .strategy
                .steps
                .iter()
                .map(ToString::to_string)
                .collect(),
        };
        self.view.send_replace(Arc::new(view));
    }
}

/// The restart back-off for wedged instances: the process driver's own
/// (the one it uses for replicas that exit), and a grace long enough for
/// the probes to judge a new incarnation.
fn liveness_policy(spec: &ServiceSpec) -> LivenessRestarts {
    let restart = match &spec.driver {
        Some(backout_spec::DriverSpec::Process(p)) => p.restart,
        _ => backout_spec::RestartSpec::default(),
    };
    let probes = &spec.pool_defaults.probes;
    let ms = |d: backout_spec::Duration| d.get().as_millis() as i64;
    let judged_in = |p: &Option<backout_spec::ProbeSpec>| {
        p.as_ref().map_or(0, |p| {
            ms(p.initial_delay)
                + ms(p.period) * i64::from(p.failure_threshold.get())
                + ms(p.timeout)
        })
    };
    let grace = judged_in(&probes.startup) + judged_in(&probes.liveness);
    LivenessRestarts::new(ms(restart.backoff), ms(restart.max_backoff), grace)
}

/// Whether two lists name the same instances (their start times aside: a
/// driver that runs nothing itself stamps them anew).
fn same_instances(a: &[Instance], b: &[Instance]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.id == y.id && x.pid == y.pid && x.endpoint == y.endpoint)
}

/// The answer to a request whose key the log already holds: the earlier
/// result when it is the same request, a conflict when the key was used
/// for another one.
fn earlier_result(
    key: &str,
    earlier: &StoredEvent,
    input: &Input,
) -> Result<Submitted, SubmitError> {
    let same = earlier.kind == log::input_kind(input)
        && serde_json::to_value(input).is_ok_and(|body| body == earlier.body);
    if same {
        Ok(Submitted {
            seq: earlier.seq,
            duplicate: true,
            notices: Vec::new(),
        })
    } else {
        let key = key.split_once(':').map_or(key, |(_, k)| k);
        Err(SubmitError::Rejected(Rejection {
            code: "conflict",
            message: format!(
                "the Idempotency-Key {key:?} was already used for another request ({} at seq {}); use a new key for a new request",
                earlier.kind, earlier.seq
            ),
        }))
    }
}

/// When the judge thinks the regression began (seconds since the canary
/// started), if it says.
fn decision_onset(decision: &Decision) -> Option<f64> {
    decision.onset_t
}
