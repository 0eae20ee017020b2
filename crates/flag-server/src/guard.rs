//! Guarded flag rollouts at run time: the management endpoints, the
//! observation endpoint apps report to, and the one-second ticker that
//! feeds each rollout's judge and applies the changes its guard asks for.
//!
//! The decisions are `backout_flags::guard` (pure); this module reads the
//! clock, keeps the per-variant tallies, applies changes through the
//! [`Manager`] (so each step is written to the flag file, recorded in the
//! change history and served through the same atomic swap and change
//! stream as a kill), and keeps the rollouts in a file beside the flag file
//! (`flags.json` → `flags.json.rollouts.json`), judges included, so a
//! restarted server goes on guarding them with the evidence saved at the
//! last change or within the last ten seconds.
//!
//! Invariant: changes made for guards are applied one at a time (the `act`
//! lock), so an abort or a switch-off can never be overtaken by a step that
//! was decided before it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use backout_flags::edit::Edit;
use backout_flags::guard::{
    ChangeKind, GuardedRollout, Mttr, Phase, Plan, Share, StartError, Tally, set_share,
};
use backout_judge::{AnalysisConfig, Seconds};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use super::auth::{self, Tokens};
use super::clock;
use super::events::FlagEvent;
use super::manage::{ManageError, Manager};

/// How often each rollout's judge looks: once a second, like the
/// controller's.
pub const TICK: Duration = Duration::from_secs(1);

/// The actor recorded for changes the guard makes by itself.
pub const ACTOR: &str = "guard";

/// The guarded rollouts of one flag file.
#[derive(Clone)]
pub struct Guards {
    inner: Arc<Inner>,
}

/// Unix milliseconds: the wall clock in service, a virtual one in tests.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

struct Inner {
    manager: Manager,
    clock: Clock,
    slots: Mutex<HashMap<String, Slot>>,
    /// Serialises flag changes made for guards (see the module invariant).
    act: tokio::sync::Mutex<()>,
    path: PathBuf,
    ticks: std::sync::atomic::AtomicU64,
}

/// One flag's rollout (the running one, or the last one, kept for its
/// status) and the outcomes reported since the last tick.
#[derive(Serialize, Deserialize)]
struct Slot {
    rollout: GuardedRollout,
    started_by: String,
    #[serde(default)]
    totals: Totals,
    #[serde(skip)]
    control: Tally,
    #[serde(skip)]
    variant: Tally,
}

/// Outcomes reported since the rollout started, per side.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Totals {
    control: Count,
    variant: Count,
    /// Reports naming another variant (not judged).
    other: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Count {
    requests: u64,
    errors: u64,
}

/// Why a guard operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
}

impl GuardError {
    fn status(&self) -> StatusCode {
        match self {
            GuardError::NotFound(_) => StatusCode::NOT_FOUND,
            GuardError::Conflict(_) => StatusCode::CONFLICT,
            GuardError::Invalid(_) => StatusCode::BAD_REQUEST,
            GuardError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// `POST /api/v1/flags/{key}/rollout`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The variant to roll out.
    pub variant: String,
    /// The variant to compare with; the flag's default variant if absent.
    #[serde(default)]
    pub control: Option<String>,
    /// The variant's share at each step, in percent (default 1, 5, 25, 100).
    #[serde(default = "default_steps")]
    pub steps: Vec<Share>,
    /// The least time at each step: seconds or "30s", "2m" (default 60 s).
    #[serde(default = "default_step_time")]
    pub step_time: Seconds,
    /// The judge's configuration, as a service's `analysis:` section.
    #[serde(default)]
    pub analysis: Option<AnalysisConfig>,
    #[serde(default)]
    pub reason: Option<String>,
}

fn default_steps() -> Vec<Share> {
    [1.0, 5.0, 25.0, 100.0]
        .into_iter()
        .filter_map(|p| Share::from_percent(p).ok())
        .collect()
}

fn default_step_time() -> Seconds {
    Seconds(60.0)
}

/// One report of requests served with a variant of the flag.
///
/// OFREP has no tracking endpoint yet (open-feature/protocol#71 is still
/// open), so this shape is ours; it is chosen to be what the two sources
/// the issue names can send without translation:
///
/// * a proxy or an app's middleware that counts per variant sends a
///   window: `{"variant": "on", "requests": 120, "errors": 3,
///   "latency_ms": [12.5, 30.1, ...]}`, the same fields as the judge's
///   `GroupWindow` (and the proxy's own windows);
/// * an OpenFeature tracking hook sends one request as a tracking event's
///   details: OpenFeature's `track(eventName, context, details)` carries a
///   numeric `value` and free-form fields, so `{"value": 12.5, "error":
///   false, "feature_flag.result.variant": "on"}` (the variant under its
///   OpenTelemetry semantic-convention name) is accepted as one request
///   with that latency.
///
/// A body is one report or an array of them. `requests` defaults to 1,
/// `errors` to `error` (0 or 1), and `latency_ms` (alias `value`) is a
/// number or an array. Outcomes are folded into one-second windows per
/// variant when they arrive; the server's clock, not the reporter's, says
/// which second a report belongs to.
#[derive(Debug, Clone, Deserialize)]
pub struct Observation {
    #[serde(alias = "feature_flag.result.variant", alias = "feature_flag.variant")]
    pub variant: String,
    #[serde(default)]
    pub requests: Option<u64>,
    #[serde(default)]
    pub errors: Option<u64>,
    #[serde(default)]
    pub error: Option<bool>,
    #[serde(default, alias = "value")]
    pub latency_ms: Option<Latencies>,
}

/// One latency or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Latencies {
    One(f64),
    Many(Vec<f64>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Reports {
    Many(Vec<Observation>),
    One(Observation),
}

impl Guards {
    /// The guards of `manager`'s flag file, resuming the rollouts recorded
    /// beside it.
    pub fn new(manager: Manager) -> Guards {
        Guards::with_clock(manager, Arc::new(clock::unix_millis))
    }

    /// [`Guards::new`] on another clock: every time the guards use (steps,
    /// verdicts, the MTTR stamps) comes from `clock`, so a test can run a
    /// rollout's minutes in milliseconds by calling [`Guards::tick`].
    pub fn with_clock(manager: Manager, clock: Clock) -> Guards {
        let mut name = manager.source().path().as_os_str().to_owned();
        name.push(".rollouts.json");
        let path = PathBuf::from(name);
        let slots = match std::fs::read_to_string(&path) {
            Ok(text) => match serde_json::from_str::<HashMap<String, Slot>>(&text) {
                Ok(slots) => {
                    for (key, slot) in &slots {
                        if slot.rollout.guard.phase().is_active() {
                            tracing::info!(flag = %key, "resuming the guarded rollout");
                        }
                    }
                    slots
                }
                Err(e) => {
                    // Kept aside rather than overwritten by the next save.
                    let aside = path.with_extension("json.unreadable");
                    let _ = std::fs::rename(&path, &aside);
                    tracing::error!(
                        "{}: cannot read the guarded rollouts ({e}); moved to {} and starting without them",
                        path.display(),
                        aside.display()
                    );
                    HashMap::new()
                }
            },
            Err(_) => HashMap::new(),
        };
        Guards {
            inner: Arc::new(Inner {
                manager,
                clock,
                slots: Mutex::new(slots),
                act: tokio::sync::Mutex::new(()),
                path,
                ticks: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    fn now(&self) -> i64 {
        (self.inner.clock)()
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a guarded rollout of flag `key` and serves its first step.
    pub async fn start(
        &self,
        key: &str,
        request: StartRequest,
        actor: &str,
    ) -> Result<Json, GuardError> {
        let _act = self.inner.act.lock().await;
        let snapshot = self
            .inner
            .manager
            .store()
            .snapshot()
            .ok_or_else(|| GuardError::Unavailable("flags are not loaded yet".into()))?;
        let flag = snapshot
            .document
            .get("flags")
            .and_then(|f| f.get(key))
            .cloned()
            .ok_or_else(|| GuardError::NotFound(format!("flag `{key}` does not exist")))?;
        let control = match request.control.clone() {
            Some(c) => c,
            None => flag
                .get("defaultVariant")
                .and_then(Json::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    GuardError::Invalid(format!(
                        "flag `{key}` has no default variant: say which variant is the control (`control`, --control)"
                    ))
                })?,
        };
        if let Some(slot) = self.slots().get(key)
            && slot.rollout.guard.phase().is_active()
        {
            return Err(GuardError::Conflict(format!(
                "a guarded rollout of `{key}` is already running ({}); abort it first",
                slot.rollout.guard.note()
            )));
        }
        let plan = Plan {
            flag: key.to_owned(),
            variant: request.variant.clone(),
            control: control.clone(),
            steps: request.steps.clone(),
            step_ms: (request.step_time.get() * 1000.0).round() as i64,
        };
        // Refuse a flag whose split cannot be moved before anything starts.
        let first = plan.steps.first().copied().unwrap_or(Share::ZERO);
        set_share(&flag, &plan.variant, &control, first)
            .map_err(|e| GuardError::Invalid(format!("flag `{key}`: {e}")))?;
        let analysis = request.analysis.clone().unwrap_or_default();
        let rollout = GuardedRollout::new(plan, &analysis, self.now()).map_err(|e| match e {
            StartError::Plan(p) => GuardError::Invalid(p.to_string()),
            StartError::Analysis(a) => GuardError::Invalid(a.to_string()),
        })?;
        let slot = Slot {
            rollout,
            started_by: actor.to_owned(),
            totals: Totals::default(),
            control: Tally::default(),
            variant: Tally::default(),
        };
        self.slots().insert(key.to_owned(), slot);
        tracing::info!(flag = %key, by = %actor, "guarded rollout started");
        self.apply_pending(key, Some((actor, request.reason.as_deref())))
            .await;
        self.save();
        let slots = self.slots();
        let slot = slots
            .get(key)
            .ok_or_else(|| GuardError::NotFound(format!("no guarded rollout of `{key}`")))?;
        if slot.rollout.guard.phase() == Phase::Aborted {
            return Err(GuardError::Invalid(format!(
                "flag `{key}`: {}",
                slot.rollout.guard.note()
            )));
        }
        Ok(status_json(key, slot))
    }

    /// Stops the rollout of `key`; the variant's share goes to 0.
    pub async fn abort(&self, key: &str, actor: &str, reason: &str) -> Result<Json, GuardError> {
        let _act = self.inner.act.lock().await;
        {
            let mut slots = self.slots();
            let slot = slots
                .get_mut(key)
                .ok_or_else(|| GuardError::NotFound(format!("no guarded rollout of `{key}`")))?;
            slot.rollout
                .guard
                .abort(self.now(), actor, reason)
                .map_err(GuardError::Conflict)?;
        }
        self.apply_pending(key, Some((actor, None))).await;
        self.save();
        self.status(key)
            .ok_or_else(|| GuardError::NotFound(format!("no guarded rollout of `{key}`")))
    }

    /// The rollout of `key` (running or last), as JSON.
    pub fn status(&self, key: &str) -> Option<Json> {
        self.slots().get(key).map(|slot| status_json(key, slot))
    }

    /// Every flag's rollout, sorted by flag.
    pub fn list(&self) -> Json {
        let slots = self.slots();
        let mut keys: Vec<&String> = slots.keys().collect();
        keys.sort();
        Json::Array(
            keys.into_iter()
                .filter_map(|k| slots.get(k).map(|s| status_json(k, s)))
                .collect(),
        )
    }

    /// Adds reports for `key`. Returns how many were taken, or why none
    /// were: reports are only kept while a rollout of the flag runs (and
    /// after a switch-off until no request is served with the variant).
    pub fn observe(&self, key: &str, reports: &[Observation]) -> Result<usize, String> {
        let mut slots = self.slots();
        let Some(slot) = slots.get_mut(key) else {
            return Err(format!(
                "no guarded rollout of `{key}` is running; reports are kept only during one"
            ));
        };
        let guard = &slot.rollout.guard;
        let listening = guard.phase().is_active()
            || guard
                .rollback()
                .is_some_and(|m| m.switched_ms.is_none() || m.quiet_ms.is_none());
        if !listening {
            return Err(format!(
                "the guarded rollout of `{key}` is over ({}); reports are kept only during one",
                guard.note()
            ));
        }
        let (variant, control) = (guard.plan().variant.clone(), guard.plan().control.clone());
        for r in reports {
            let requests = r.requests.unwrap_or(1);
            let errors = r
                .errors
                .unwrap_or_else(|| u64::from(r.error.unwrap_or(false)));
            let latencies: &[f64] = match &r.latency_ms {
                None => &[],
                Some(Latencies::One(v)) => std::slice::from_ref(v),
                Some(Latencies::Many(vs)) => vs,
            };
            let (tally, count) = if r.variant == variant {
                (&mut slot.variant, &mut slot.totals.variant)
            } else if r.variant == control {
                (&mut slot.control, &mut slot.totals.control)
            } else {
                slot.totals.other = slot.totals.other.saturating_add(requests);
                continue;
            };
            tally.add(requests, errors, latencies);
            count.requests = count.requests.saturating_add(requests);
            count.errors = count.errors.saturating_add(errors.min(requests));
        }
        Ok(reports.len())
    }

    /// One tick at `now_ms`: every rollout's judge sees the outcomes since
    /// the last tick, and the changes their guards ask for are applied.
    pub async fn tick(&self, now_ms: i64) {
        let _act = self.inner.act.lock().await;
        let mut changed = false;
        let mut active = false;
        let mut due = Vec::new();
        {
            let mut slots = self.slots();
            for (key, slot) in slots.iter_mut() {
                active |= slot.rollout.guard.phase().is_active();
                let control = slot.control.take();
                let variant = slot.variant.take();
                let before = slot.rollout.guard.phase();
                if slot.rollout.tick(now_ms, control, variant) {
                    changed = true;
                    let after = slot.rollout.guard.phase();
                    if after != before {
                        tracing::info!(flag = %key, phase = ?after, "{}", slot.rollout.guard.note());
                    }
                }
                if slot.rollout.guard.pending().is_some() {
                    due.push(key.clone());
                }
            }
        }
        for key in &due {
            self.apply_pending(key, None).await;
        }
        // Besides every change, the judge's evidence is saved every ten
        // ticks: a restart loses at most that much of it.
        let ticks = self
            .inner
            .ticks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if changed || !due.is_empty() || (active && ticks.is_multiple_of(10)) {
            self.save();
        }
    }

    /// Ticks every second until dropped.
    pub async fn run(self) {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            self.tick(self.now()).await;
        }
    }

    /// Applies the change `key`'s guard asks for (and the one it asks for
    /// next if that one fails for good, such as the switch-off after a step
    /// that cannot be applied). Call with the `act` lock held. `human` is
    /// who asked, for a start or abort made through the API.
    async fn apply_pending(&self, key: &str, human: Option<(&str, Option<&str>)>) {
        for _ in 0..3 {
            let Some((change, plan)) = self.slots().get(key).and_then(|s| {
                let g = &s.rollout.guard;
                g.pending().cloned().map(|c| (c, g.plan().clone()))
            }) else {
                return;
            };
            let by_human = matches!(change.kind, ChangeKind::Start | ChangeKind::Abort);
            let (actor, reason) = match human {
                Some((actor, extra)) if by_human => (
                    actor.to_owned(),
                    match extra.filter(|r| !r.is_empty()) {
                        Some(r) => format!("{r}; {}", change.reason),
                        None => change.reason.clone(),
                    },
                ),
                _ => (ACTOR.to_owned(), change.reason.clone()),
            };
            let edit = Edit::Split {
                key: key.to_owned(),
                variant: plan.variant.clone(),
                control: plan.control.clone(),
                share: change.share,
            };
            let manager = self.inner.manager.clone();
            let now = self.inner.clock.clone();
            let action = change.kind.action();
            let outcome = tokio::task::spawn_blocking(move || {
                let action_ms = now();
                let result = manager.apply_as(&edit, &actor, Some(reason), Some(action));
                (action_ms, result, now())
            })
            .await;
            let (action_ms, result, served_ms) = match outcome {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(flag = %key, "applying a guarded change panicked: {e}");
                    return;
                }
            };
            let mut slots = self.slots();
            let Some(slot) = slots.get_mut(key) else {
                return;
            };
            match result {
                Ok(_) => {
                    slot.rollout.guard.applied(change.seq, action_ms, served_ms);
                    if change.kind == ChangeKind::SwitchOff
                        && let Some(m) = slot.rollout.guard.rollback().cloned()
                    {
                        let event = switched_off_event(key, &plan, &m, served_ms);
                        drop(slots);
                        if let Err(e) = self.inner.manager.record(&event) {
                            tracing::error!(flag = %key, "cannot record the switch-off's MTTR: {e}");
                        }
                    }
                    return;
                }
                Err(e) => {
                    let permanent = matches!(e, ManageError::Edit(_));
                    tracing::warn!(flag = %key, permanent, "guarded change not applied: {e}");
                    let moved = slot.rollout.guard.failed(
                        change.seq,
                        self.now(),
                        &e.to_string(),
                        permanent,
                    );
                    if !moved {
                        // Passing trouble: tried again on the next tick.
                        return;
                    }
                }
            }
        }
    }

    /// Writes the rollouts beside the flag file, atomically.
    fn save(&self) {
        let text = {
            let slots = self.slots();
            match serde_json::to_string(&*slots) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!("cannot encode the guarded rollouts: {e}");
                    return;
                }
            }
        };
        let tmp = self.inner.path.with_extension("json.tmp");
        let result =
            std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.inner.path));
        if let Err(e) = result {
            tracing::error!(
                "cannot write {}: {e}; a restart would lose the guarded rollouts",
                self.inner.path.display()
            );
        }
    }
}

/// The MTTR clock as JSON: timestamps and phases.
pub fn mttr_json(m: &Mttr) -> Json {
    let p = m.phases();
    json!({
        "onset_ms": m.onset_ms,
        "verdict_ms": m.verdict_ms,
        "action_ms": m.action_ms,
        "switched_ms": m.switched_ms,
        "quiet_ms": m.quiet_ms,
        "detect_ms": p.detect_ms,
        "decide_ms": p.decide_ms,
        "act_ms": p.act_ms,
        "verify_ms": p.verify_ms,
        "total_ms": p.total_ms,
    })
}

fn seconds(ms: Option<i64>) -> String {
    ms.map_or_else(
        || "?".to_owned(),
        |ms| format!("{:.3}s", ms as f64 / 1000.0),
    )
}

fn switched_off_event(key: &str, plan: &Plan, m: &Mttr, at_ms: i64) -> FlagEvent {
    let p = m.phases();
    FlagEvent {
        at_ms,
        actor: ACTOR.to_owned(),
        action: "switched-off".to_owned(),
        flag: key.to_owned(),
        reason: Some(format!(
            "`{}` switched off, everyone gets `{}`: MTTR detect {}, decide {}, act {} ({} from onset to switch)",
            plan.variant,
            plan.control,
            seconds(p.detect_ms),
            seconds(p.decide_ms),
            seconds(p.act_ms),
            seconds(p.total_ms)
        )),
        before: None,
        after: None,
        mttr: Some(mttr_json(m)),
    }
}

fn status_json(key: &str, slot: &Slot) -> Json {
    let g = &slot.rollout.guard;
    let plan = g.plan();
    let decision = slot.rollout.last_decision();
    json!({
        "flag": key,
        "variant": plan.variant,
        "control": plan.control,
        "steps": plan.steps,
        "step_time_s": plan.step_ms as f64 / 1000.0,
        "phase": g.phase(),
        "step": g.step() + 1,
        "share": g.served(),
        "note": g.note(),
        "started_by": slot.started_by,
        "started_ms": g.started_ms(),
        "step_since_ms": g.step_since_ms(),
        "ended_ms": g.ended_ms(),
        "pending": g.pending(),
        "error": g.error(),
        "verdict": g.last_verdict(),
        "checks": decision.map(|d| d.checks.iter().map(|c| json!({
            "name": c.name, "state": c.state, "reason": c.reason,
            "control_samples": c.baseline_samples, "variant_samples": c.canary_samples,
        })).collect::<Vec<_>>()),
        "rollback": g.rollback().map(mttr_json),
        "traffic": slot.totals,
    })
}

/// The guarded-rollout routes, behind the token check.
pub fn routes(guards: Guards, tokens: Tokens) -> Router {
    api_routes(guards).layer(axum::middleware::from_fn_with_state(
        tokens,
        auth::require_token,
    ))
}

/// The guarded-rollout routes without authentication, for a server that
/// checks callers itself (`backout up`).
pub fn api_routes(guards: Guards) -> Router {
    Router::new()
        .route(
            "/api/v1/flags/{key}/rollout",
            get(get_rollout).post(start_rollout),
        )
        .route("/api/v1/flags/{key}/rollout/abort", post(abort_rollout))
        .route("/api/v1/flags/{key}/observations", post(observations))
        .route("/api/v1/flag-rollouts", get(list_rollouts))
        .with_state(guards)
}

fn actor(headers: &HeaderMap) -> String {
    headers
        .get("x-backout-actor")
        .and_then(|v| v.to_str().ok())
        .filter(|a| !a.trim().is_empty())
        .unwrap_or("api")
        .to_owned()
}

fn refuse(status: StatusCode, message: String) -> Response {
    // A code as well as the message, so clients need not parse prose.
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::CONFLICT => "conflict",
        StatusCode::BAD_REQUEST => "invalid",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ => "internal",
    };
    (status, axum::Json(json!({"error": message, "code": code}))).into_response()
}

fn refused(e: GuardError) -> Response {
    refuse(e.status(), e.to_string())
}

async fn start_rollout(
    State(g): State<Guards>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request: StartRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected {{\"variant\": \"on\", \"control\": \"off\", \"steps\": [1, 5, 25, 100], \"step_time\": \"30s\", \"analysis\": {{...}}}}: {e}"
                ),
            );
        }
    };
    match g.start(&key, request, &actor(&headers)).await {
        Ok(status) => (StatusCode::CREATED, axum::Json(status)).into_response(),
        Err(e) => refused(e),
    }
}

async fn get_rollout(State(g): State<Guards>, Path(key): Path<String>) -> Response {
    match g.status(&key) {
        Some(status) => axum::Json(status).into_response(),
        None => refuse(
            StatusCode::NOT_FOUND,
            format!(
                "no guarded rollout of `{key}`; start one with `backout flag rollout {key} --variant ...`"
            ),
        ),
    }
}

async fn list_rollouts(State(g): State<Guards>) -> Response {
    axum::Json(g.list()).into_response()
}

#[derive(Deserialize, Default)]
struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn abort_rollout(
    State(g): State<Guards>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: ReasonBody = if body.iter().all(u8::is_ascii_whitespace) {
        ReasonBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!("expected {{\"reason\": \"...\"}}: {e}"),
                );
            }
        }
    };
    let reason = body.reason.unwrap_or_default();
    match g.abort(&key, &actor(&headers), &reason).await {
        Ok(status) => axum::Json(status).into_response(),
        Err(e) => refused(e),
    }
}

async fn observations(
    State(g): State<Guards>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let reports = match serde_json::from_slice::<Reports>(&body) {
        Ok(Reports::Many(r)) => r,
        Ok(Reports::One(r)) => vec![r],
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected a report {{\"variant\": \"on\", \"requests\": 10, \"errors\": 1, \"latency_ms\": [12.5]}} \
                     or a tracking event's details {{\"feature_flag.result.variant\": \"on\", \"value\": 12.5, \"error\": false}}, \
                     or an array of them: {e}"
                ),
            );
        }
    };
    match g.observe(&key, &reports) {
        Ok(n) => (StatusCode::ACCEPTED, axum::Json(json!({"accepted": n}))).into_response(),
        // Not an error for the reporter: apps may report all the time, and
        // only a running rollout needs the numbers.
        Err(why) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"accepted": 0, "note": why})),
        )
            .into_response(),
    }
}
