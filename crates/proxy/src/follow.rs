//! Following a control plane: the proxy subscribes to its services'
//! snapshots, applies each one atomically, answers with the generation it
//! applied (or why it could not), keeps the last one on disk, and reports
//! health and windows back.
//!
//! Static stability is the point: the proxy never drops a route because
//! the control plane is away. It starts from its state files when the
//! control plane cannot be reached, keeps probing, ejecting and breaking
//! locally, reconnects with back-off and jitter, and says in its log,
//! `/readyz` and metrics that it is on its own.

pub mod link;
mod report;
pub mod state_dir;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backout_fleet::{FromProxy, Hello, PROTOCOL, Snapshot, ToProxy};
use serde::Serialize;
use tokio::sync::watch;

use crate::clock;
use crate::metrics::Metrics;
use crate::registry::Registry;
pub use link::{Attach, Conn, ConnectError, Link};
pub use state_dir::{StateDir, StateFileError};

/// How often the proxy reports (it sends only what changed, and a
/// heartbeat every second).
const REPORT_EVERY: Duration = Duration::from_millis(250);
/// Reconnect back-off: from this, doubling, up to `BACKOFF_MAX`, each wait
/// drawn at random between half and all of it, so a fleet that lost its
/// control plane does not come back in lock-step.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// After the control plane refused the subscription (wrong token, unknown
/// service), retrying soon cannot help.
const REFUSED_WAIT: Duration = Duration::from_secs(10);
/// A control plane that says nothing for this long is taken for gone (it
/// says `alive` every second).
const SILENCE: Duration = Duration::from_secs(5);

/// What the follower is to do.
#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// The proxy's name in the fleet (unique).
    pub name: String,
    /// Services to follow; empty: every service of the control plane.
    pub services: Vec<String>,
    /// Where the last snapshots are kept; `None` keeps nothing (the proxy
    /// then cannot start without its control plane).
    pub state: Option<StateDir>,
    /// Control planes, tried in turn; the leader's address, when a
    /// follower names it, first.
    pub links: Vec<Link>,
    /// Where this proxy serves traffic, for `backout status`.
    pub listen: Vec<String>,
}

/// The snapshot held of one service.
#[derive(Debug, Clone, Serialize)]
pub struct Held {
    pub generation: u64,
    pub epoch: String,
    pub received_at_ms: u64,
    pub control_plane: String,
    /// It came from the state file and the control plane has not
    /// confirmed it since.
    pub from_state_file: bool,
}

/// The follower's state, for `/readyz`, the metrics and the log.
#[derive(Debug, Default)]
pub struct FollowStatus {
    connected: AtomicBool,
    last_contact_ms: AtomicU64,
    disconnected_since_ms: AtomicU64,
    control_plane: Mutex<Option<String>>,
    held: Mutex<BTreeMap<String, Held>>,
    problems: Mutex<Vec<String>>,
}

/// `/readyz` of a following proxy.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// There is a configuration to serve.
    pub serving: bool,
    pub control_plane_connected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<String>,
    /// Unix ms of the last message from a control plane (0: never).
    pub last_contact_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disconnected_since_ms: Option<u64>,
    pub services: BTreeMap<String, Held>,
    /// State files refused, subscriptions refused, snapshots refused.
    pub problems: Vec<String>,
    pub detail: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FollowStatus {
    pub fn control_plane(&self) -> Option<String> {
        lock(&self.control_plane).clone()
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn held(&self) -> BTreeMap<String, Held> {
        lock(&self.held).clone()
    }

    fn problem(&self, p: String) {
        let mut all = lock(&self.problems);
        if !all.contains(&p) {
            all.push(p);
        }
        // The list is for humans looking now, not a log.
        let excess = all.len().saturating_sub(20);
        all.drain(..excess);
    }

    pub fn readiness(&self) -> Readiness {
        let services = self.held();
        let connected = self.connected();
        let since = self.disconnected_since_ms.load(Ordering::Relaxed);
        let detail = match (connected, services.is_empty()) {
            (true, _) => "following the control plane".to_string(),
            (false, false) => format!(
                "the control plane cannot be reached; serving the last snapshot of {} service(s) until it is back",
                services.len()
            ),
            (false, true) => {
                "no snapshot yet: waiting for the control plane (nothing to serve)".to_string()
            }
        };
        Readiness {
            serving: !services.is_empty(),
            control_plane_connected: connected,
            control_plane: self.control_plane(),
            last_contact_ms: self.last_contact_ms.load(Ordering::Relaxed),
            disconnected_since_ms: (!connected && since > 0).then_some(since),
            services,
            problems: lock(&self.problems).clone(),
            detail,
        }
    }
}

/// The proxy side of the fleet protocol.
pub struct Follower {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    status: Arc<FollowStatus>,
    config: FollowConfig,
    /// Opens the listeners once there is something to serve.
    opener: watch::Sender<bool>,
}

/// How a session ended.
enum End {
    /// Connection lost or closed: reconnect with back-off.
    Lost,
    /// The control plane said no: wait longer.
    Refused,
    /// A follower named the leader: try it first.
    Leader(String),
    Shutdown,
}

impl Follower {
    pub fn new(
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        status: Arc<FollowStatus>,
        config: FollowConfig,
        opener: watch::Sender<bool>,
    ) -> Self {
        Follower {
            registry,
            metrics,
            status,
            config,
            opener,
        }
    }

    /// Serves what the state files hold: called before the first
    /// connection, so a proxy restarted while its control plane is down
    /// serves at once. A damaged file is refused, with its path, and that
    /// service waits for the control plane.
    pub fn restore(&self) -> usize {
        let Some(dir) = &self.config.state else {
            return 0;
        };
        let (saved, errors) = dir.load();
        for e in errors {
            tracing::error!("{e}");
            self.metrics.fleet.state_file_errors.inc();
            self.status.problem(e.to_string());
        }
        let mut restored = 0;
        for s in saved {
            let wanted = self.config.services.is_empty()
                || self.config.services.contains(&s.snapshot.service);
            if !wanted {
                continue;
            }
            match self.install(&s.snapshot) {
                Ok(()) => {
                    restored += 1;
                    tracing::info!(
                        service = %s.snapshot.service,
                        generation = s.snapshot.generation,
                        control_plane = %s.header.control_plane,
                        "serving the snapshot from the state file until the control plane answers"
                    );
                    self.hold(
                        &s.snapshot,
                        s.header.received_at_ms,
                        &s.header.control_plane,
                        true,
                    );
                }
                Err(e) => {
                    let p = format!(
                        "state file of {}: cannot apply its snapshot: {e}",
                        s.snapshot.service
                    );
                    tracing::error!("{p}");
                    self.status.problem(p);
                }
            }
        }
        if restored > 0 {
            self.opener.send_replace(true);
        }
        restored
    }

    fn hold(&self, s: &Snapshot, received_at_ms: u64, control_plane: &str, from_file: bool) {
        lock(&self.status.held).insert(
            s.service.clone(),
            Held {
                generation: s.generation,
                epoch: s.epoch.clone(),
                received_at_ms,
                control_plane: control_plane.to_string(),
                from_state_file: from_file,
            },
        );
        self.metrics
            .fleet
            .snapshot_generation
            .with_label_values(&[&s.service])
            .set(s.generation as i64);
    }

    /// Puts a checked snapshot in place: a new service, or the existing
    /// one when its settings are the same (pools and route then change in
    /// one swap), or a new service in its place when they are not.
    fn install(&self, s: &Snapshot) -> Result<(), String> {
        s.check().map_err(|e| e.to_string())?;
        let service = match self.registry.get(&s.service) {
            Some(existing) if existing.serves(&s.config.settings) => existing,
            _ => self
                .registry
                .insert(s.to_spec())
                .map_err(|e| e.to_string())?,
        };
        service.apply(s, "control-plane").map(|_| ())
    }

    /// Applies a snapshot from the control plane; the answer to send.
    fn receive(&self, s: &Snapshot, peer: &str) -> FromProxy {
        let (service, generation) = (s.service.clone(), s.generation);
        let held = lock(&self.status.held).get(&service).cloned();
        if let Some(h) = &held
            && h.epoch == s.epoch
        {
            if generation < h.generation {
                return self.nack(
                    s,
                    format!(
                        "generation {generation} is older than the {} this proxy serves",
                        h.generation
                    ),
                );
            }
            if generation == h.generation && !h.from_state_file {
                return FromProxy::Ack {
                    service,
                    generation,
                };
            }
        }
        if let Some(h) = &held
            && h.epoch != s.epoch
        {
            tracing::warn!(%service, from = %h.epoch, to = %s.epoch, "the control plane's store is not the one this proxy followed before; following the new one");
        }
        if let Err(e) = self.install(s) {
            return self.nack(s, e);
        }
        let now = clock::unix_ms();
        self.hold(s, now, peer, false);
        self.opener.send_replace(true);
        self.metrics
            .fleet
            .snapshots
            .with_label_values(&[&service, "applied"])
            .inc();
        if let Some(dir) = &self.config.state
            && let Err(e) = dir.save(s, now, peer)
        {
            // Serving is right; only the next start without a control
            // plane would be worse off. Loud, not fatal.
            tracing::error!("{e}; the proxy serves the new snapshot but could not keep it");
            self.metrics.fleet.state_file_errors.inc();
            self.status.problem(e.to_string());
        }
        tracing::debug!(%service, generation, "snapshot applied");
        FromProxy::Ack {
            service,
            generation,
        }
    }

    fn nack(&self, s: &Snapshot, reason: String) -> FromProxy {
        tracing::warn!(service = %s.service, generation = s.generation, %reason, "snapshot refused; still serving the previous one");
        self.metrics
            .fleet
            .snapshots
            .with_label_values(&[&s.service, "refused"])
            .inc();
        self.status.problem(format!(
            "snapshot {} of {} refused: {reason}",
            s.generation, s.service
        ));
        FromProxy::Nack {
            service: s.service.clone(),
            generation: s.generation,
            reason,
        }
    }

    /// Follows until `shutdown` turns true, reconnecting for ever.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let ages = {
            let (status, metrics, mut stop) = (
                Arc::clone(&self.status),
                Arc::clone(&self.metrics),
                shutdown.clone(),
            );
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = tick.tick() => refresh_ages(&status, &metrics),
                        _ = stop.changed() => return,
                    }
                }
            })
        };
        self.follow(&mut shutdown).await;
        ages.abort();
    }

    async fn follow(&self, shutdown: &mut watch::Receiver<bool>) {
        let mut backoff = BACKOFF_MIN;
        let mut next = 0usize;
        let mut leader: Option<String> = None;
        let token = self.config.links.iter().find_map(|l| match l {
            Link::Remote { token, .. } => Some(token.clone()),
            Link::Local(_) => None,
        });
        loop {
            if self.config.links.is_empty() {
                return;
            }
            let link = match (leader.take(), &token) {
                (Some(url), Some(token)) => Link::Remote {
                    url,
                    token: token.clone(),
                },
                _ => {
                    let l = self.config.links[next % self.config.links.len()].clone();
                    next += 1;
                    l
                }
            };
            let wait = match link.connect().await {
                Ok(conn) => {
                    backoff = BACKOFF_MIN;
                    match self.session(conn, shutdown).await {
                        End::Shutdown => return,
                        End::Leader(url) => {
                            leader = Some(url);
                            Duration::ZERO
                        }
                        End::Refused => REFUSED_WAIT,
                        End::Lost => jitter(BACKOFF_MIN),
                    }
                }
                Err(e) => {
                    let refused = matches!(e, ConnectError::Refused { .. });
                    if refused {
                        tracing::error!("{e}");
                        self.status.problem(e.to_string());
                    } else {
                        tracing::warn!("{e}; serving the last snapshots meanwhile");
                    }
                    if !next.is_multiple_of(self.config.links.len().max(1)) {
                        // Other control planes are left to try now.
                        Duration::ZERO
                    } else if refused {
                        REFUSED_WAIT
                    } else {
                        let w = jitter(backoff);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        w
                    }
                }
            };
            if !wait.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => return,
                }
            }
        }
    }

    /// The leader's URL when `peer` does not lead and names another
    /// process that does (a proxy embedded in a control plane stays with
    /// it: it has no other way in).
    fn leader_elsewhere(&self, leader: bool, url: Option<String>, peer: &str) -> Option<String> {
        let url = url.filter(|_| !leader)?;
        (url.trim_end_matches('/') != peer.trim_end_matches('/')
            && matches!(self.config.links.first(), Some(Link::Remote { .. })))
        .then_some(url)
    }

    async fn session(&self, mut conn: Conn, shutdown: &mut watch::Receiver<bool>) -> End {
        let have = lock(&self.status.held)
            .iter()
            .map(|(s, h)| (s.clone(), h.generation))
            .collect();
        let hello = FromProxy::Hello(Hello {
            protocol: PROTOCOL,
            name: self.config.name.clone(),
            services: self.config.services.clone(),
            have,
            listen: self.config.listen.clone(),
        });
        if conn.tx.send(hello).await.is_err() {
            return End::Lost;
        }
        let peer = conn.peer.clone();
        let mut sent = report::Sent::default();
        let mut tick = tokio::time::interval(REPORT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = clock::mono_ms();
        let mut welcomed = false;
        let end = loop {
            tokio::select! {
                _ = shutdown.changed() => break End::Shutdown,
                msg = conn.rx.recv() => {
                    let Some(msg) = msg else { break End::Lost };
                    last_heard = clock::mono_ms();
                    self.status.last_contact_ms.store(clock::unix_ms(), Ordering::Relaxed);
                    match msg {
                        ToProxy::Welcome(w) => {
                            welcomed = true;
                            *lock(&self.status.control_plane) = Some(format!("{peer} ({})", w.control_plane));
                            self.status.connected.store(true, Ordering::Relaxed);
                            self.metrics.fleet.connected.set(1);
                            tracing::info!(control_plane = %peer, name = %w.control_plane, leader = w.leader, services = ?w.services, "following the control plane");
                            if let Some(url) = self.leader_elsewhere(w.leader, w.leader_url, &peer) {
                                break End::Leader(url);
                            }
                        }
                        ToProxy::Snapshot(s) => {
                            let answer = self.receive(&s, &peer);
                            if conn.tx.send(answer).await.is_err() {
                                break End::Lost;
                            }
                        }
                        ToProxy::Alive { leader, leader_url } => {
                            if let Some(url) = self.leader_elsewhere(leader, leader_url, &peer) {
                                tracing::info!(control_plane = %peer, leader = %url, "this control plane no longer leads; moving to the leader");
                                break End::Leader(url);
                            }
                        }
                        ToProxy::Refused { code, message } => {
                            let p = format!("{peer} refused the subscription ({code}): {message}");
                            tracing::error!("{p}; keeping the snapshots this proxy has");
                            self.status.problem(p);
                            break End::Refused;
                        }
                    }
                }
                _ = tick.tick() => {
                    if clock::mono_ms().saturating_sub(last_heard) > SILENCE.as_millis() as u64 {
                        tracing::warn!(control_plane = %peer, "the control plane has been silent for {SILENCE:?}; reconnecting");
                        break End::Lost;
                    }
                    if !welcomed {
                        continue;
                    }
                    let held = self.status.held();
                    for (name, h) in &held {
                        let Some(service) = self.registry.get(name) else { continue };
                        if let Some(r) = sent.next(&service, h.generation)
                            && conn.tx.send(FromProxy::Report(r)).await.is_err()
                        {
                            break;
                        }
                    }
                }
            }
        };
        if welcomed {
            tracing::warn!(control_plane = %peer, "lost the control plane; serving the last snapshots until it is back");
        }
        self.status.connected.store(false, Ordering::Relaxed);
        self.status
            .disconnected_since_ms
            .store(clock::unix_ms(), Ordering::Relaxed);
        self.metrics.fleet.connected.set(0);
        end
    }
}

/// Snapshot ages for the metrics: they grow while the control plane is
/// away, which is what an alert on staleness wants to see.
fn refresh_ages(status: &FollowStatus, metrics: &Metrics) {
    let now = clock::unix_ms();
    for (name, h) in status.held() {
        metrics
            .fleet
            .snapshot_age
            .with_label_values(&[&name])
            .set(now.saturating_sub(h.received_at_ms) as f64 / 1000.0);
    }
}

/// A wait drawn at random between half of `d` and `d`.
fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    half + Duration::from_millis(fastrand::u64(0..=half.as_millis() as u64))
}
