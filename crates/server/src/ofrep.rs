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
    Router::new()
        .route(
            "/ofrep/v1/evaluate/flags/{key}",
            post(evaluate::evaluate_one),
        )
        .route("/ofrep/v1/evaluate/flags", post(evaluate::evaluate_bulk))
        .route(EVENTS_PATH, get(sse::events))
        .route("/ofrep/v1/configuration", get(configuration))
        .with_state(store)
        .layer(axum::middleware::from_fn_with_state(
            tokens,
            auth::require_token,
        ))
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
