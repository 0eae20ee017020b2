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

use backout_fleet::{MemberView, PoolReport, Progress, Snapshot};
use backout_judge::{Decision, Judge, Verdict, Window};
use backout_proxy::breaker::BreakerState;
use backout_proxy::{Role, VersionWindows, WindowsReport};
use backout_rollout::{
    Action, DesiredRoute, Envelope, Input, MttrSummary, Notice, Phase, Policy, Rejection,
    RolloutKind, ServiceState,
};
use backout_spec::ServiceSpec;
use backout_store::{NewEvent, Store, StoredEvent};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::clock::unix_ms;
use super::compose::{Composed, compose};
use super::election::Lead;
use super::liveness::LivenessRestarts;
use super::log::{self, Folded, INSTANCES};
use super::notify::Notifier;
use crate::fleet::Fleet;
use backout_driver::{DeployRequest, Driver, DriverError, DriverEvent, Instance};
use backout_provider::{ErrorClasses, WindowQuery, proxy_series};

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
/// A route change is done when every connected proxy serves it; one that
/// has not acknowledged it by then is reported as lagging, not waited for.
pub const ACK_DEADLINE_MS: i64 = 5_000;
/// How often a follower folds what the leader logged.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

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
    /// Another control-plane process leads (or none does right now): only
    /// the leader changes services.
    #[error("{}", not_leader_message(.leader))]
    NotLeader { leader: Option<String> },
}

fn not_leader_message(leader: &Option<String>) -> String {
    match leader {
        Some(url) => format!(
            "this control-plane process does not lead; the leader's API is {url}: send the request there (the CLI does when given several --server URLs)"
        ),
        None => "this control-plane process does not lead and no leader is known right now (an election is under way, or the database cannot be reached); try again in a few seconds".to_string(),
    }
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
    /// Which control-plane process answers, and whether it leads.
    pub control_plane: ControlPlaneView,
}

/// The control-plane process that published a view.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ControlPlaneView {
    /// Its name among control planes (its lease holder name).
    pub name: String,
    /// It leads (acts on the service); a follower shows what the leader
    /// logged.
    pub leading: bool,
    /// The fencing term it won last (0 alone, or never).
    pub term: i64,
    /// The leader's API when another process leads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_url: Option<String>,
}

/// The data plane as the control plane sees it: the snapshot it
/// published and the proxies that follow it.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyView {
    /// The route of the newest snapshot published to the proxies.
    pub route: Option<backout_routing::RouteSpec>,
    /// That snapshot's generation.
    pub generation: u64,
    /// When every connected proxy served it; 0 while some still apply it.
    pub applied_at_unix_us: u64,
    /// Some proxy sends canary traffic to stable because the canary cannot
    /// take it.
    pub canary_fallback: bool,
    /// The pools as one proxy reports them (endpoint health, breaker).
    pub pools: Vec<PoolReport>,
    /// Every proxy that follows the service: name, address, the
    /// generation it serves, last contact.
    pub proxies: Vec<MemberView>,
    /// How far the proxies are with the newest generation.
    pub progress: Progress,
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

/// The snapshot published last.
#[derive(Debug, Clone)]
struct Published {
    snapshot: Arc<Snapshot>,
    at_ms: i64,
    /// Every connected proxy acknowledged it, or its deadline passed.
    settled: bool,
}

/// A route change published and not yet acknowledged by the fleet.
#[derive(Debug, Clone)]
struct PendingRoute {
    generation: u64,
    route: DesiredRoute,
    published_ms: i64,
}

/// An answer held back until the route change it caused is served.
struct Waiting {
    deadline_ms: i64,
    reply: oneshot::Sender<Result<Submitted, SubmitError>>,
    result: Result<Submitted, SubmitError>,
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
    pub fleet: Arc<Fleet>,
    /// The control plane's identity in every snapshot.
    epoch: String,
    published: Option<Published>,
    pending_route: Option<PendingRoute>,
    waiting: Vec<Waiting>,
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
    /// This process's standing: only a leader writes and acts.
    lead: watch::Receiver<Lead>,
    /// This process's name among control planes.
    process_name: String,
    /// A term in which the store refused a write: another process took
    /// over, whatever this one's election loop believes yet.
    /// -1: none.
    deposed: std::sync::atomic::AtomicI64,
}

impl ServiceActor {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        spec: Arc<ServiceSpec>,
        policy: Policy,
        store: Arc<dyn Store>,
        fleet: Arc<Fleet>,
        epoch: String,
        driver: Arc<dyn Driver>,
        notifier: Notifier,
        view: watch::Sender<Arc<ServiceView>>,
        lead: watch::Receiver<Lead>,
        process_name: String,
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
            fleet,
            epoch,
            published: None,
            pending_route: None,
            waiting: Vec::new(),
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
            lead,
            process_name,
            deposed: std::sync::atomic::AtomicI64::new(-1),
        }
    }

    /// Whether this process may write and act now.
    fn acting(&self) -> bool {
        let lead = self.lead.borrow();
        lead.acting() && self.deposed.load(std::sync::atomic::Ordering::Relaxed) != lead.term
    }

    fn not_leader(&self) -> SubmitError {
        SubmitError::NotLeader {
            leader: self.lead.borrow().leader_url(),
        }
    }

    /// A write the store refused because another process leads: this one
    /// must stop acting at once, whatever its election loop thinks yet.
    fn fenced(&self, e: &backout_store::StoreError) -> SubmitError {
        tracing::warn!(service = %self.name, "{e}");
        let term = self.lead.borrow().term;
        self.deposed
            .store(term, std::sync::atomic::Ordering::Relaxed);
        match e {
            backout_store::StoreError::Fenced { leader, .. } => SubmitError::NotLeader {
                leader: leader
                    .as_ref()
                    .map(|l| l.advertise.clone())
                    .filter(|u| !u.is_empty())
                    .or_else(|| self.lead.borrow().leader_url()),
            },
            _ => self.not_leader(),
        }
    }

    /// Rebuilds the state from the log and takes over the instances that
    /// still run. Called once, before the loop.
    pub(super) async fn recover(&mut self) -> Result<Folded, String> {
        self.restore_snapshot().await;
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

    /// The store's name of the service's last published snapshot.
    fn snapshot_name(&self) -> String {
        format!("@fleet/{}", self.name)
    }

    /// Publishes the snapshot stored last, before anything else: proxies
    /// that connect while the log is being folded get what they served
    /// before, and generations go on from it.
    async fn restore_snapshot(&mut self) {
        let (store, name) = (Arc::clone(&self.store), self.snapshot_name());
        let found = tokio::task::spawn_blocking(move || store.latest_snapshot(&name)).await;
        let Ok(Ok(Some(stored))) = found else { return };
        match serde_json::from_value::<Snapshot>(stored.body) {
            Ok(snap) if snap.service == self.name && snap.epoch == self.epoch => {
                let snap = Arc::new(snap);
                self.fleet.publish(Arc::clone(&snap));
                self.published = Some(Published {
                    snapshot: snap,
                    at_ms: unix_ms(),
                    settled: true,
                });
            }
            _ => {
                tracing::warn!(service = %self.name, "the stored snapshot is unreadable; generations start again")
            }
        }
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
        if !self.acting() {
            return;
        }
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

    /// The service's loop for the life of the process: follow while
    /// another process leads, take over when this one wins, act until it
    /// loses, step down, and so on. `recovered`: the state was already
    /// folded because this process led at start.
    pub(super) async fn main(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        stop: CancellationToken,
        recovered: bool,
    ) {
        let mut recovered = recovered;
        loop {
            if !recovered {
                if !self.follow(&mut requests, &stop).await {
                    return;
                }
                if let Err(e) = self.take_over().await {
                    tracing::error!(service = %self.name, error = %e, "cannot take over the service; following again");
                    self.step_down();
                    continue;
                }
            }
            recovered = false;
            if !self.run(&mut requests, &stop).await {
                return;
            }
            self.step_down();
        }
    }

    /// While another process leads: the state is the log as the leader
    /// writes it, folded a few times a second; proxies that connect here
    /// get the snapshot the leader stored last; changes are answered with
    /// where the leader is. Returns true once this process leads, false
    /// when it stops.
    async fn follow(
        &mut self,
        requests: &mut mpsc::Receiver<Request>,
        stop: &CancellationToken,
    ) -> bool {
        let mut lead = self.lead.clone();
        let mut tick = tokio::time::interval(FOLLOW_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.acting() {
                return true;
            }
            tokio::select! {
                () = stop.cancelled() => return false,
                req = requests.recv() => match req {
                    Some(Request::Submit(_, reply)) => {
                        let _ = reply.send(Err(self.not_leader()));
                    }
                    None => return false,
                },
                changed = lead.changed() => {
                    if changed.is_err() {
                        return false;
                    }
                }
                // Operations started before a step-down end here; the new
                // leader owns their outcome.
                Some(_) = self.done_rx.recv() => {}
                _ = tick.tick() => {
                    if let Err(e) = self.catch_up().await {
                        tracing::warn!(service = %self.name, error = %e, "cannot read the leader's log");
                    }
                    self.publish();
                }
            }
        }
    }

    /// Folds what the leader appended since the last look, and serves its
    /// newest stored snapshot.
    async fn catch_up(&mut self) -> Result<(), String> {
        self.restore_snapshot().await;
        let mut folded = Folded::default();
        loop {
            let (store, name, after) = (Arc::clone(&self.store), self.name.clone(), self.seq);
            let page = tokio::task::spawn_blocking(move || store.read_service(&name, after, 2000))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let Some(last) = page.last() else { break };
            self.seq = last.seq;
            log::fold(&mut self.state, &page, &self.policy, &mut folded);
        }
        Ok(())
    }

    /// This process won the lease: everything is taken from the log again
    /// (what the follower folded may be behind by the last writes of the
    /// old leader), the instances the old leader ran are adopted, and the
    /// loop acts from there.
    async fn take_over(&mut self) -> Result<(), String> {
        let term = self.lead.borrow().term;
        self.state = ServiceState::new(&self.name);
        self.seq = 0;
        self.published = None;
        let folded = self.recover().await?;
        tracing::info!(service = %self.name, term, seq = folded.seq, "took over the service as the leader");
        Ok(())
    }

    /// This process no longer leads: it stops acting on the service at
    /// once. Instances run on (the driver lets go of them without stopping
    /// them) for the new leader to adopt.
    fn step_down(&mut self) {
        tracing::warn!(service = %self.name, "no longer the leader: stopped acting; the instances run on for the new leader");
        self.driver.release();
        self.running.clear();
        self.in_flight.clear();
        self.deploy_failed_ms.clear();
        self.analysis = None;
        self.pending_route = None;
        self.liveness = liveness_policy(&self.spec);
        for w in std::mem::take(&mut self.waiting) {
            let _ = w.reply.send(w.result);
        }
        self.publish();
    }

    /// Acts on the service while this process leads. Returns true when it
    /// lost the leadership, false when it stops.
    async fn run(
        &mut self,
        requests: &mut mpsc::Receiver<Request>,
        stop: &CancellationToken,
    ) -> bool {
        let mut events = self.driver.subscribe();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut fleet = match self.fleet.changes(&self.name) {
            Some(rx) => rx,
            None => tokio::sync::watch::channel(0).1,
        };
        let mut lead = self.lead.clone();
        self.reconcile().await;
        let lost = loop {
            if !self.acting() {
                break true;
            }
            tokio::select! {
                () = stop.cancelled() => break false,
                req = requests.recv() => match req {
                    Some(Request::Submit(sub, reply)) => {
                        let result = self.process(sub.input, &sub.actor, sub.reason.as_deref(), sub.key.as_deref(), Vec::new()).await;
                        // The world first, then the answer: a break-glass
                        // rollback has moved the traffic when it returns,
                        // on every proxy that follows the service (or the
                        // ones that did not are reported as lagging).
                        self.reconcile().await;
                        if self.pending_route.is_some() {
                            self.waiting.push(Waiting {
                                deadline_ms: unix_ms() + ACK_DEADLINE_MS,
                                reply,
                                result,
                            });
                        } else {
                            let _ = reply.send(result);
                        }
                    }
                    None => break false,
                },
                changed = lead.changed() => {
                    if changed.is_err() {
                        break false;
                    }
                }
                changed = fleet.changed() => {
                    if changed.is_err() {
                        continue;
                    }
                    // Answers and reports from the proxies: a route change
                    // acknowledged, a pool's readiness.
                    self.reconcile().await;
                }
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
            self.answer_waiting();
        };
        for w in std::mem::take(&mut self.waiting) {
            let _ = w.reply.send(w.result);
        }
        lost
    }

    /// Sends the answers held for a route change once it is served (or
    /// its deadline passed: the lagging proxies are in the log then).
    fn answer_waiting(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let now = unix_ms();
        let done = self.pending_route.is_none();
        let (ready, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| done || now >= w.deadline_ms);
        self.waiting = wait;
        for w in ready {
            let _ = w.reply.send(w.result);
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
            Err(SubmitError::Rejected(_) | SubmitError::NotLeader { .. }) => None,
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
        if !self.acting() {
            return Err(self.not_leader());
        }
        let batch = log::batch(&self.name, &env, key.as_deref(), &input, &actions, extra);
        let store = Arc::clone(&self.store);
        let appended = match tokio::task::spawn_blocking(move || store.append(batch)).await {
            Ok(Ok(appended)) => appended,
            Ok(Err(e)) if e.is_fenced() => return Err(self.fenced(&e)),
            Ok(Err(e)) => return Err(SubmitError::Store(e.to_string())),
            Err(e) => return Err(SubmitError::Store(e.to_string())),
        };
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
        // The view is published once the world is reconciled with the new
        // state (every caller reconciles next), so it never shows a state
        // whose route the proxies have not been sent yet.
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
        if !self.acting() {
            return;
        }
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || store.append(events)).await {
            Ok(Ok(a)) => {
                self.seq = a.iter().map(|a| a.event.seq).max().unwrap_or(self.seq);
            }
            Ok(Err(e)) if e.is_fenced() => {
                self.fenced(&e);
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
        let mut known = BTreeSet::new();
        let mut restart = Vec::new();
        for (version, instances) in &self.running {
            known.extend(instances.iter().map(|i| i.id.clone()));
            if !self.state.instances.contains_key(version) || self.in_flight.contains(version) {
                continue;
            }
            for inst in instances {
                // Only what every proxy that reports the endpoint agrees
                // on: one proxy's failing probe may be its own network.
                let Some(health) = self
                    .fleet
                    .roster(|r| r.endpoint(&self.name, version, &inst.endpoint, now))
                else {
                    continue;
                };
                let wedged = health.dead || health.startup_failed;
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
            if !self.acting() {
                break;
            }
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

    /// Makes instances, the proxies' snapshot and the route match the
    /// state.
    async fn reconcile(&mut self) {
        // Bounded: each pass either settles or feeds an input that moves
        // the state on.
        for _ in 0..8 {
            self.reconcile_instances();
            self.reconcile_snapshot().await;
            let mut inputs = Vec::new();
            let mut facts = Vec::new();
            if let Some((applied, fact)) = self.route_served() {
                inputs.push(applied);
                facts.push(fact);
            }
            inputs.extend(self.readiness_inputs());
            if inputs.is_empty() {
                break;
            }
            for (i, input) in inputs.into_iter().enumerate() {
                let extra = if i == 0 {
                    std::mem::take(&mut facts)
                } else {
                    Vec::new()
                };
                let _ = self.internal(input, extra).await;
            }
        }
        self.publish();
    }

    fn reconcile_instances(&mut self) {
        if !self.acting() {
            return;
        }
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
            // The pool goes first: a version stops only once the proxies
            // serve a snapshot without it (or are reported as lagging).
            if !self.pool_gone(&version) {
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

    /// Whether the proxies no longer have a version's pool: the latest
    /// snapshot lacks it and every connected proxy serves that snapshot
    /// (or its deadline passed).
    fn pool_gone(&self, version: &str) -> bool {
        match &self.published {
            None => true,
            Some(p) => !p.snapshot.config.pools.contains_key(version) && p.settled,
        }
    }

    /// Publishes a new snapshot when what the proxies should serve has
    /// changed. It is stored first (with the generation), so generations
    /// survive a restart and a fenced leader publishes nothing.
    async fn reconcile_snapshot(&mut self) {
        let now = unix_ms();
        if let Some(p) = &mut self.published
            && !p.settled
        {
            let progress = self
                .fleet
                .roster(|r| r.progress(&self.name, p.snapshot.generation));
            p.settled = progress.complete() || now - p.at_ms >= ACK_DEADLINE_MS;
        }
        let previous = self.published.as_ref().map(|p| &p.snapshot.config);
        let Composed { config, desired } = self.fleet.roster(|r| {
            compose(&self.spec, &self.state, &self.running, previous, |v, e| {
                r.endpoint(&self.name, v, e, now).map(|h| h.available)
            })
        });
        if previous == Some(&config) || !self.acting() {
            return;
        }
        let route_changed = previous.map(|p| &p.route) != Some(&config.route);
        let generation = self.published.as_ref().map_or(0, |p| p.snapshot.generation) + 1;
        let snapshot = Arc::new(Snapshot {
            service: self.name.clone(),
            generation,
            epoch: self.epoch.clone(),
            config,
        });
        let body = serde_json::to_value(&*snapshot).unwrap_or_default();
        let (store, name, seq) = (Arc::clone(&self.store), self.snapshot_name(), self.seq);
        let saved =
            tokio::task::spawn_blocking(move || store.save_snapshot(&name, seq, &body)).await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.is_fenced() => {
                self.fenced(&e);
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(service = %self.name, error = %e, "cannot store the new snapshot, so it is not published; tried again on the next tick");
                return;
            }
            Err(e) => {
                tracing::warn!(service = %self.name, error = %e, "cannot store the new snapshot");
                return;
            }
        }
        self.fleet.publish(Arc::clone(&snapshot));
        tracing::debug!(service = %self.name, generation, "snapshot published");
        self.published = Some(Published {
            snapshot,
            at_ms: now,
            settled: self.fleet.roster(|r| r.followers(&self.name)) == 0,
        });
        if route_changed {
            self.pending_route = desired.map(|route| PendingRoute {
                generation,
                route,
                published_ms: now,
            });
        }
    }

    /// The `RouteApplied` input (and the fact of who serves it) once the
    /// desired route is served by every connected proxy, or its deadline
    /// passed.
    fn route_served(&mut self) -> Option<(Input, NewEvent)> {
        let pending = self.pending_route.as_ref()?;
        let now = unix_ms();
        let progress = self
            .fleet
            .roster(|r| r.progress(&self.name, pending.generation));
        let late = now - pending.published_ms >= ACK_DEADLINE_MS;
        if !progress.complete() && !late {
            return None;
        }
        let pending = self.pending_route.take()?;
        let applied_at_ms = if progress.complete() {
            progress
                .last_ack_ms
                .unwrap_or(pending.published_ms)
                .max(pending.published_ms)
        } else {
            now
        };
        if !progress.complete() {
            tracing::warn!(service = %self.name, generation = pending.generation, lagging = ?progress.pending, refused = ?progress.nacked, "proxies did not serve the route change within {ACK_DEADLINE_MS} ms");
        }
        let fact = NewEvent::new(
            &self.name,
            "fleet.applied",
            "controller",
            now,
            serde_json::json!({
                "generation": pending.generation,
                "served_by": progress.acked,
                "lagging": progress.pending,
                "refused": progress.nacked,
                "published_ms": pending.published_ms,
                "applied_at_ms": applied_at_ms,
            }),
        );
        let input = Input::RouteApplied {
            stable: pending.route.stable.clone(),
            canary: pending.route.canary.clone(),
            weight_permille: pending.route.weight.get(),
            generation: pending.generation,
            applied_at_ms,
        };
        Some((input, fact))
    }

    /// Readiness as the proxies report it: a version is as ready as the
    /// proxy that sees the fewest of its endpoints ready (an open breaker
    /// counts as none: behind it the canary takes no traffic and cannot be
    /// judged). Without any fresh report nothing is known and nothing
    /// changes.
    fn readiness_inputs(&self) -> Vec<Input> {
        let now = unix_ms();
        let mut out = Vec::new();
        let published = self.published.as_ref().map(|p| &p.snapshot.config.pools);
        for (version, replicas) in &self.state.instances {
            let in_snapshot = published.is_some_and(|p| p.contains_key(version));
            let (ready, total) = match self.running.get(version) {
                Some(instances) if in_snapshot => {
                    match self.fleet.roster(|r| r.pool(&self.name, version, now)) {
                        Some(h) => (h.ready.min(instances.len() as u32), instances.len() as u32),
                        None => continue,
                    }
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

    /// The proxies' windows of `[since_ms, until_ms)`, merged per version,
    /// in the shape the providers read, with roles from the published
    /// route.
    fn fleet_windows(&self, since_ms: i64, until_ms: i64) -> WindowsReport {
        let now = unix_ms();
        let route = self
            .published
            .as_ref()
            .and_then(|p| p.snapshot.config.route.clone());
        let role = |v: &str| match &route {
            Some(r) if r.stable == v => Role::Stable,
            Some(r) if r.canary.as_deref() == Some(v) => Role::Canary,
            _ => Role::Idle,
        };
        let (windows, health): (BTreeMap<String, Vec<_>>, BTreeMap<String, _>) =
            self.fleet.roster(|r| {
                let windows = r.windows(&self.name, since_ms, until_ms);
                let health = windows
                    .keys()
                    .filter_map(|v| r.pool(&self.name, v, now).map(|h| (v.clone(), h)))
                    .collect();
                (windows, health)
            });
        WindowsReport {
            service: self.name.clone(),
            now_ms: now.max(0) as u64,
            window_ms: backout_proxy::window::WINDOW_MS,
            route: route.clone(),
            generation: self.published.as_ref().map_or(0, |p| p.snapshot.generation),
            versions: windows
                .into_iter()
                .map(|(version, windows)| {
                    let h = health.get(&version);
                    VersionWindows {
                        role: role(&version),
                        available_endpoints: h.map_or(0, |h| h.ready as usize),
                        endpoints: h.map_or(0, |h| h.total as usize),
                        breaker: if h.is_some_and(|h| h.breaker_open) {
                            BreakerState::Open
                        } else {
                            BreakerState::Closed
                        },
                        version,
                        windows,
                    }
                })
                .collect(),
        }
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
        let Some(since) = self.analysis.as_ref().map(|a| a.fed_until_ms) else {
            return;
        };
        // One second behind, so the window is complete on every proxy and
        // reported (they report a few times a second).
        let until = now - now.rem_euclid(1000) - 1000;
        if until <= since {
            return;
        }
        let report = self.fleet_windows(since, until);
        let Some(a) = &mut self.analysis else { return };
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
        let report = self.fleet_windows(since.max(0), unix_ms());
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
        let now = unix_ms();
        let generation = self.published.as_ref().map_or(0, |p| p.snapshot.generation);
        let (progress, proxies, pools, canary_fallback) = self.fleet.roster(|r| {
            (
                r.progress(&self.name, generation),
                r.members(&self.name),
                r.sample_pools(&self.name, now),
                r.canary_fallback(&self.name, now),
            )
        });
        let applied_at_unix_us = match &self.published {
            Some(p) if progress.complete() => {
                let at = progress.last_ack_ms.unwrap_or(p.at_ms).max(p.at_ms);
                (at.max(0) as u64) * 1000
            }
            _ => 0,
        };
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
                route: self
                    .published
                    .as_ref()
                    .and_then(|p| p.snapshot.config.route.clone()),
                generation,
                applied_at_unix_us,
                canary_fallback,
                pools,
                proxies,
                progress,
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
            control_plane: {
                let lead = self.lead.borrow();
                ControlPlaneView {
                    name: self.process_name.clone(),
                    leading: lead.acting(),
                    term: lead.term,
                    leader_url: lead.leader_url(),
                }
            },
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
