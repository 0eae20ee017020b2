//! Flag management in standalone mode: list, create, change, delete, kill,
//! with every change recorded as an event (who, why, before/after).
//!
//! The flag file stays the source of truth: a change is checked by the pure
//! `backout_flags::edit`, written to the file atomically, recorded, and
//! loaded into the store at once (not waiting for the file watcher), so a
//! kill reaches connected clients as fast as the change stream can carry it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use backout_flags::edit::{self, Edit, EditError};
use backout_flags::stale::{self, StaleFlag};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use super::auth::{self, Tokens};
use super::clock;
use super::events::{FlagEvent, FlagEventLog, JsonlEventLog};
use super::source::{FileSource, SourceError};
use super::store::FlagStore;

/// Why a management operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot record the change in {path}: {source}")]
    Log {
        path: String,
        source: std::io::Error,
    },
}

/// When each flag was last evaluated, kept in a file beside the flag file so
/// the stale report survives restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    /// When usage records began (Unix seconds).
    pub since: i64,
    #[serde(rename = "lastEvaluated")]
    pub last_evaluated: HashMap<String, i64>,
}

/// Performs changes on one flag file.
#[derive(Clone)]
pub struct Manager {
    source: FileSource,
    store: FlagStore,
    log: Arc<dyn FlagEventLog>,
    usage_path: PathBuf,
    lock: Arc<std::sync::Mutex<()>>,
}

impl Manager {
    /// A manager for `source`, recording events beside the flag file.
    pub fn new(source: FileSource, store: FlagStore) -> Manager {
        let log = Arc::new(JsonlEventLog::beside(source.path()));
        Manager::with_log(source, store, log)
    }

    pub fn with_log(source: FileSource, store: FlagStore, log: Arc<dyn FlagEventLog>) -> Manager {
        let mut usage = source.path().as_os_str().to_owned();
        usage.push(".usage.json");
        Manager {
            source,
            store,
            log,
            usage_path: PathBuf::from(usage),
            lock: Arc::new(std::sync::Mutex::new(())),
        }
    }

    pub fn store(&self) -> &FlagStore {
        &self.store
    }

    pub fn source(&self) -> &FileSource {
        &self.source
    }

    /// Applies one change: checked, written, recorded, served.
    pub fn apply(
        &self,
        edit: &Edit,
        actor: &str,
        reason: Option<String>,
    ) -> Result<FlagEvent, ManageError> {
        self.apply_as(edit, actor, reason, None)
    }

    /// [`Manager::apply`], recorded under `action` instead of the edit's own
    /// name (a guarded rollout's `rollout-step` or `switch-off` is a split
    /// edit). When this returns `Ok`, the new flag set is being served.
    pub fn apply_as(
        &self,
        edit: &Edit,
        actor: &str,
        reason: Option<String>,
        action: Option<&str>,
    ) -> Result<FlagEvent, ManageError> {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let doc = match self.source.read() {
            Ok((doc, _)) => doc,
            Err(SourceError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Json::Null
            }
            Err(e) => return Err(e.into()),
        };
        let applied = edit::apply(&doc, edit)?;
        self.source.write(&applied.document)?;
        let event = FlagEvent {
            at_ms: clock::unix_millis(),
            actor: actor.to_owned(),
            action: action
                .unwrap_or_else(|| edit.action(applied.before.is_some()))
                .to_owned(),
            flag: edit.key().to_owned(),
            reason,
            before: applied.before,
            after: applied.after,
            mttr: None,
        };
        self.record(&event)?;
        self.source.reload_into(&self.store)?;
        Ok(event)
    }

    /// Appends an event that goes with a change already made (the MTTR of
    /// a switch-off, known only once it is served).
    pub fn record(&self, event: &FlagEvent) -> Result<(), ManageError> {
        self.log.append(event).map_err(|source| ManageError::Log {
            path: self.usage_path.display().to_string(),
            source,
        })
    }

    pub fn events(&self) -> std::io::Result<Vec<FlagEvent>> {
        self.log.read_all()
    }

    /// Reads the usage file (empty if there is none yet).
    pub fn read_usage(&self) -> Usage {
        std::fs::read_to_string(&self.usage_path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// Merges this process's evaluation record into the usage file.
    pub fn save_usage(&self, now: i64) -> std::io::Result<()> {
        let mut usage = self.read_usage();
        if usage.since == 0 {
            usage.since = now;
        }
        for (key, at) in self.store.last_evaluated() {
            let slot = usage.last_evaluated.entry(key).or_insert(at);
            *slot = (*slot).max(at);
        }
        let text = serde_json::to_string_pretty(&usage).map_err(std::io::Error::other)?;
        std::fs::write(&self.usage_path, text)
    }

    /// The stale-flag report for the served flag set.
    pub fn stale(&self, now: i64, threshold_secs: i64) -> Result<Vec<StaleFlag>, ManageError> {
        let snapshot = match self.store.snapshot() {
            Some(s) => s,
            None => {
                self.source.reload_into(&self.store)?;
                self.store.snapshot().ok_or_else(|| {
                    ManageError::Source(SourceError::Encode("no flag set loaded".into()))
                })?
            }
        };
        let events = self.events().map_err(|source| ManageError::Log {
            path: self.usage_path.display().to_string(),
            source,
        })?;
        let mut last_change = HashMap::new();
        for e in &events {
            last_change.insert(e.flag.clone(), e.at_ms / 1000);
        }
        let usage = self.read_usage();
        let mut evaluated = usage.last_evaluated.clone();
        for (k, v) in self.store.last_evaluated() {
            let slot = evaluated.entry(k).or_insert(v);
            *slot = (*slot).max(v);
        }
        let first_event = events.first().map(|e| e.at_ms / 1000);
        let since = [Some(usage.since).filter(|s| *s > 0), first_event]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now);
        Ok(stale::report(
            &snapshot.flags,
            &last_change,
            &evaluated,
            since,
            now,
            threshold_secs,
        ))
    }
}

/// The management API routes, behind the token check, with the flag
/// metrics at `/metrics` (standalone mode).
pub fn routes(manager: Manager, tokens: Tokens) -> Router {
    api_routes(manager.clone())
        .merge(
            Router::new()
                .route("/metrics", get(metrics))
                .with_state((manager, tokens.clone())),
        )
        .layer(axum::middleware::from_fn_with_state(
            tokens,
            auth::require_token,
        ))
}

/// The management API routes without authentication or `/metrics`, for a
/// server that checks callers itself and exports the flag metrics with
/// its own ([`metrics_text`]): `backout up`.
pub fn api_routes(manager: Manager) -> Router {
    Router::new()
        .route("/api/v1/flags", get(list))
        .route(
            "/api/v1/flags/{key}",
            get(get_flag).put(put_flag).delete(delete_flag),
        )
        .route("/api/v1/flags/{key}/kill", post(kill))
        .route("/api/v1/flags/{key}/revive", post(revive))
        .route("/api/v1/flag-document", get(document))
        .route("/api/v1/flag-events", get(events))
        .route("/api/v1/flag-stale", get(stale_report))
        .with_state(manager)
}

fn actor(headers: &HeaderMap) -> String {
    headers
        .get("x-backout-actor")
        .and_then(|v| v.to_str().ok())
        .filter(|a| !a.trim().is_empty())
        .unwrap_or("api")
        .to_owned()
}

fn error_response(error: ManageError) -> Response {
    let (status, code) = match &error {
        ManageError::Edit(EditError::NotFound(_)) => (StatusCode::NOT_FOUND, "not_found"),
        ManageError::Edit(_) => (StatusCode::BAD_REQUEST, "invalid"),
        ManageError::Source(_) | ManageError::Log { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    };
    let problems = match &error {
        ManageError::Edit(EditError::Invalid { problems, .. }) => problems
            .iter()
            .map(|p| json!({"flag": p.flag, "path": p.path, "message": p.message}))
            .collect(),
        _ => Vec::new(),
    };
    (
        status,
        axum::Json(json!({"error": error.to_string(), "code": code, "problems": problems})),
    )
        .into_response()
}

fn not_loaded() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"error": "flags are not loaded yet", "code": "unavailable"})),
    )
        .into_response()
}

async fn list(State(m): State<Manager>) -> Response {
    let Some(s) = m.store.snapshot() else {
        return not_loaded();
    };
    let problems: Vec<Json> = s
        .problems
        .iter()
        .map(|p| json!({"flag": p.flag, "path": p.path, "message": p.message, "severity": format!("{:?}", p.severity).to_lowercase()}))
        .collect();
    axum::Json(json!({
        "revision": s.revision,
        "stale": s.is_stale(),
        "flags": s.document.get("flags").cloned().unwrap_or_else(|| json!({})),
        "problems": problems,
    }))
    .into_response()
}

async fn get_flag(State(m): State<Manager>, Path(key): Path<String>) -> Response {
    let Some(s) = m.store.snapshot() else {
        return not_loaded();
    };
    match s.document.get("flags").and_then(|f| f.get(&key)) {
        Some(flag) => axum::Json(flag.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({"error": format!("flag `{key}` does not exist"), "code": "not_found"}),
            ),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct PutBody {
    flag: Json,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct ReasonBody {
    #[serde(default)]
    reason: Option<String>,
}

fn run(m: &Manager, edit: Edit, headers: &HeaderMap, reason: Option<String>) -> Response {
    match m.apply(&edit, &actor(headers), reason) {
        Ok(event) => axum::Json(event).into_response(),
        Err(e) => error_response(e),
    }
}

fn parse_body<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        let body =
            json!({"error": format!("the request body is not valid: {e}"), "code": "invalid"});
        Box::new((StatusCode::BAD_REQUEST, axum::Json(body)).into_response())
    })
}

async fn put_flag(
    State(m): State<Manager>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: PutBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": format!("expected {{\"flag\": {{...flagd flag...}}, \"reason\": \"...\"}}: {e}"), "code": "invalid"})),
            )
                .into_response();
        }
    };
    tokio::task::block_in_place(|| {
        run(
            &m,
            Edit::Put {
                key,
                flag: body.flag,
            },
            &headers,
            body.reason,
        )
    })
}

async fn delete_flag(
    State(m): State<Manager>,
    Path(key): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let reason = q.get("reason").cloned();
    tokio::task::block_in_place(|| run(&m, Edit::Delete { key }, &headers, reason))
}

async fn kill(
    State(m): State<Manager>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: ReasonBody = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    tokio::task::block_in_place(|| run(&m, Edit::Kill { key }, &headers, body.reason))
}

async fn revive(
    State(m): State<Manager>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: ReasonBody = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    tokio::task::block_in_place(|| run(&m, Edit::Revive { key }, &headers, body.reason))
}

async fn document(State(m): State<Manager>, headers: HeaderMap) -> Response {
    let Some(s) = m.store.snapshot() else {
        return not_loaded();
    };
    let etag = format!("\"r{}\"", s.revision);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let mut response = axum::Json(s.document.as_ref().clone()).into_response();
    if let Ok(v) = etag.parse() {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

async fn events(State(m): State<Manager>) -> Response {
    match m.events() {
        Ok(events) => axum::Json(events).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": e.to_string(), "code": "internal"})),
        )
            .into_response(),
    }
}

async fn stale_report(
    State(m): State<Manager>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let days: f64 = q.get("days").and_then(|d| d.parse().ok()).unwrap_or(7.0);
    match m.stale(clock::unix_now(), (days * 86_400.0) as i64) {
        Ok(report) => axum::Json(report).into_response(),
        Err(e) => error_response(e),
    }
}

async fn metrics(State((m, tokens)): State<(Manager, auth::Tokens)>) -> Response {
    let mut text = metrics_text(&m);
    text.push_str(&tokens.failures().render());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Prometheus text exposition: the stale report as a gauge per flag, and
/// when each flag was last evaluated.
pub fn metrics_text(m: &Manager) -> String {
    let now = clock::unix_now();
    let mut out = String::new();
    out.push_str("# HELP backout_flag_stale Whether a flag is stale technical debt (1) per the 7-day report.\n");
    out.push_str("# TYPE backout_flag_stale gauge\n");
    if let (Ok(report), Some(s)) = (m.stale(now, 7 * 86_400), m.store.snapshot()) {
        let stale: std::collections::HashSet<&str> =
            report.iter().map(|f| f.key.as_str()).collect();
        for key in s.flags.keys() {
            out.push_str(&format!(
                "backout_flag_stale{{flag=\"{}\"}} {}\n",
                escape_label(key),
                u8::from(stale.contains(key))
            ));
        }
    }
    out.push_str("# HELP backout_flag_last_evaluated_timestamp_seconds When the flag was last evaluated by this server.\n");
    out.push_str("# TYPE backout_flag_last_evaluated_timestamp_seconds gauge\n");
    let mut usage: Vec<(String, i64)> = m.store.last_evaluated().into_iter().collect();
    usage.sort();
    for (key, at) in usage {
        out.push_str(&format!(
            "backout_flag_last_evaluated_timestamp_seconds{{flag=\"{}\"}} {at}\n",
            escape_label(&key)
        ));
    }
    if let Some(s) = m.store.snapshot() {
        out.push_str("# HELP backout_flags_revision Revision of the served flag set.\n# TYPE backout_flags_revision gauge\n");
        out.push_str(&format!("backout_flags_revision {}\n", s.revision));
        out.push_str("# HELP backout_flags_source_stale Whether the flag source is unavailable and the last good set is served.\n");
        out.push_str("# TYPE backout_flags_source_stale gauge\n");
        out.push_str(&format!(
            "backout_flags_source_stale {}\n",
            u8::from(s.is_stale())
        ));
    }
    out
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
