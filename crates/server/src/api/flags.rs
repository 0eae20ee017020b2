//! Feature flags under `backout up`: OFREP evaluation, flag management and
//! guarded flag rollouts on the API's own listener, behind the API's tokens
//! and roles, with every change in the control plane's event log.
//!
//! The handlers are the flag server's (`backout_flag_server`); what this adds is
//! the wiring: the least role each endpoint needs comes from [`ROUTES`],
//! and without a flag file the same endpoints exist and say how to turn
//! flags on, so the API's shape does not depend on the configuration.
//!
//! [`ROUTES`]: super::ROUTES

use std::sync::Arc;

use axum::Router;
use axum::http::{Method, StatusCode};
use axum::routing::{MethodFilter, on};
use backout_proxy::admin::ApiError;

use super::{ApiState, ROUTES, auth};
use backout_flag_server as ofrep;

/// Whether a route of [`ROUTES`] belongs to the flags.
pub(super) fn is_flag_route(path: &str) -> bool {
    path.starts_with("/ofrep/") || path.starts_with("/api/v1/flag")
}

/// The flag endpoints, each behind the role [`ROUTES`] gives it.
pub(super) fn routes(state: &Arc<ApiState>) -> Router {
    let router = match &state.flags {
        Some(f) => ofrep::evaluation_routes(f.store.clone())
            .merge(ofrep::manage::api_routes(f.manager.clone()))
            .merge(ofrep::guard::api_routes(f.guards.clone())),
        None => disabled(),
    };
    router.route_layer(axum::middleware::from_fn_with_state(
        Arc::clone(state),
        auth::require_listed,
    ))
}

/// Every flag endpoint, answering that flags are off.
fn disabled() -> Router {
    let mut router = Router::new();
    // Each path once, whatever the order of ROUTES: axum refuses a path
    // registered twice.
    let paths: std::collections::BTreeSet<&str> = ROUTES
        .iter()
        .map(|(_, p, _)| *p)
        .filter(|p| is_flag_route(p))
        .collect();
    for path in paths {
        let mut methods: Option<MethodFilter> = None;
        for (method, _, _) in ROUTES.iter().filter(|(_, p, _)| *p == path) {
            let Some(filter) = Method::from_bytes(method.as_bytes())
                .ok()
                .and_then(|m| MethodFilter::try_from(m).ok())
            else {
                continue;
            };
            methods = Some(methods.map_or(filter, |m| m.or(filter)));
        }
        if let Some(methods) = methods {
            router = router.route(path, on(methods, off));
        }
    }
    router
}

async fn off() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        None,
        "feature flags are off: start `backout up` with `--flags FILE` (a flagd flag file)",
    )
}
