//! The flag server: OFREP evaluation over HTTP, a change stream, readiness,
//! and (in standalone mode) the management API, all over one flag store.
//!
//! The evaluation itself is `backout-flags`, a pure crate; this module only
//! moves requests in and results out, reads the clock, and watches the
//! source.

pub mod auth;
pub mod clock;
pub mod evaluate;
pub mod events;
pub mod guard;
pub mod manage;
pub mod source;
pub mod sse;
pub mod store;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use auth::Tokens;
pub use source::FileSource;
pub use store::{FlagStore, Snapshot, SourceHealth};

/// Where clients listen for changes.
pub const EVENTS_PATH: &str = "/ofrep/v1/events";

/// The OFREP routes (evaluation, change stream, configuration), behind the
/// token check.
pub fn ofrep_routes(store: FlagStore, tokens: Tokens) -> Router {
    evaluation_routes(store).layer(axum::middleware::from_fn_with_state(
        tokens,
        auth::require_token,
    ))
}

/// The OFREP routes without authentication, for a server that checks
/// callers itself (`backout up`, with its API tokens).
pub fn evaluation_routes(store: FlagStore) -> Router {
    Router::new()
        .route(
            "/ofrep/v1/evaluate/flags/{key}",
            post(evaluate::evaluate_one),
        )
        .route("/ofrep/v1/evaluate/flags", post(evaluate::evaluate_bulk))
        .route(EVENTS_PATH, get(sse::events))
        .route("/ofrep/v1/configuration", get(configuration))
        .with_state(store)
}

/// Liveness and readiness: ready only once a flag set is loaded.
pub fn health_routes(store: FlagStore) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(store)
}

/// Everything the standalone `backout flags serve` exposes.
pub fn standalone_router(store: FlagStore, tokens: Tokens, manager: manage::Manager) -> Router {
    ofrep_routes(store.clone(), tokens.clone())
        .merge(manage::routes(manager, tokens))
        .merge(health_routes(store))
}

/// [`standalone_router`] with guarded rollouts: their management routes
/// and the observation endpoint. The caller runs [`guard::Guards::run`].
pub fn guarded_router(
    store: FlagStore,
    tokens: Tokens,
    manager: manage::Manager,
    guards: guard::Guards,
) -> Router {
    standalone_router(store, tokens.clone(), manager).merge(guard::routes(guards, tokens))
}

async fn ready(State(store): State<FlagStore>) -> Response {
    match store.snapshot() {
        None => (StatusCode::SERVICE_UNAVAILABLE, "flags not loaded yet\n").into_response(),
        Some(s) => match &s.source {
            SourceHealth::Fresh => {
                (StatusCode::OK, format!("ready: revision {}\n", s.revision)).into_response()
            }
            // Still ready: serving the last good set is the point of static
            // stability, but say so.
            SourceHealth::Unavailable { since, error } => (
                StatusCode::OK,
                format!(
                    "ready (stale since {since}): revision {}; source unavailable: {error}\n",
                    s.revision
                ),
            )
                .into_response(),
        },
    }
}

async fn configuration() -> Response {
    axum::Json(serde_json::json!({
        "name": "backout",
        "capabilities": {
            "cacheInvalidation": {"polling": {"enabled": true, "minPollingIntervalMs": 1000}},
            "flagEvaluation": {"supportedTypes": ["int", "float", "string", "boolean", "object"]}
        }
    }))
    .into_response()
}

/// How often the flag file is checked for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(200);
/// How often the record of when each flag was last evaluated is saved.
const USAGE_SAVE_INTERVAL: Duration = Duration::from_secs(30);

/// A flag file being served: loaded into a store, changed through one
/// manager, with its guarded rollouts. The standalone server and `backout
/// up` both start it this way.
#[derive(Clone)]
pub struct Served {
    pub store: FlagStore,
    pub manager: manage::Manager,
    pub guards: guard::Guards,
}

impl Served {
    /// Loads `file`, recording changes in `log` (by default a JSON-lines
    /// file beside it). A file that is broken at start is an error: there
    /// is no last good set to serve yet. Once serving, a broken file only
    /// makes the served set stale.
    pub fn open(
        file: &Path,
        log: Option<Arc<dyn events::FlagEventLog>>,
    ) -> Result<Served, source::SourceError> {
        let store = FlagStore::new();
        let source = FileSource::new(file);
        source.reload_into(&store)?;
        let manager = match log {
            Some(log) => manage::Manager::with_log(source, store.clone(), log),
            None => manage::Manager::new(source, store.clone()),
        };
        store.seed_usage(manager.read_usage().last_evaluated);
        let guards = guard::Guards::new(manager.clone());
        Ok(Served {
            store,
            manager,
            guards,
        })
    }

    /// Starts the file watcher, the guarded rollouts' ticker and the usage
    /// saver on the current runtime.
    pub fn spawn(&self) {
        tokio::spawn(
            self.manager
                .source()
                .clone()
                .watch(self.store.clone(), WATCH_INTERVAL),
        );
        tokio::spawn(self.guards.clone().run());
        let usage = self.manager.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(USAGE_SAVE_INTERVAL);
            loop {
                tick.tick().await;
                let _ = usage.save_usage(clock::unix_now());
            }
        });
    }

    /// Saves the usage record, on the way out.
    pub fn save_usage(&self) {
        let _ = self.manager.save_usage(clock::unix_now());
    }
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("file", &self.manager.source().path())
            .finish_non_exhaustive()
    }
}
