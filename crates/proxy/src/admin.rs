//! The admin API: the route switch, rollback, state, windows for the judge,
//! events and Prometheus metrics. JSON in and out; every refusal names the
//! field at fault.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use backout_routing::RouteSpec;
use serde::Serialize;

use crate::events::EventLog;
use crate::follow::FollowStatus;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::service::Service;

/// What the admin API serves from.
#[derive(Debug)]
pub struct AdminState {
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub events: Arc<EventLog>,
    /// Set when the proxy follows a control plane: the routes are the
    /// control plane's, and `/readyz` says how current they are.
    pub follow: OnceLock<Arc<FollowStatus>>,
}

pub(crate) fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/admin/v1/services", get(list))
        .route("/admin/v1/services/{name}", get(show))
        .route(
            "/admin/v1/services/{name}/route",
            get(show_route).put(put_route),
        )
        .route("/admin/v1/services/{name}/rollback", post(rollback))
        .route("/admin/v1/services/{name}/windows", get(windows))
        .route("/admin/v1/events", get(events))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                None,
                "no such admin endpoint; see /admin/v1/services",
            )
        })
        .with_state(state)
}

/// `{"error": {"code": …, "field": …, "message": …}}`
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    field: Option<String>,
    message: String,
    /// Where the leading control plane's API is, for `not_leader`.
    leader: Option<String>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        field: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code,
            field,
            message: message.into(),
            leader: None,
        }
    }

    /// Names the leader's API in the error (`error.leader`).
    pub fn with_leader(mut self, leader: Option<String>) -> Self {
        self.leader = leader;
        self
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            (!field.is_empty()).then_some(field),
            message,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            field: Option<&'a str>,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            leader: Option<&'a str>,
        }
        let body = Body {
            error: Inner {
                code: self.code,
                field: self.field.as_deref(),
                message: &self.message,
                leader: self.leader.as_deref(),
            },
        };
        (self.status, Json(body)).into_response()
    }
}

fn service(state: &AdminState, name: &str) -> Result<Arc<Service>, ApiError> {
    state.registry.get(name).ok_or_else(|| {
        let known = state.registry.names();
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            None,
            format!(
                "no service named {name:?}; known services: {}",
                known.join(", ")
            ),
        )
    })
}

async fn metrics(
    State(state): State<Arc<AdminState>>,
    failures: Option<axum::Extension<Arc<backout_listen::credentials::Failures>>>,
) -> Response {
    let mut text = state.metrics.render();
    // Refused tokens, when the admin API has tokens.
    if let Some(axum::Extension(failures)) = failures {
        text.push_str(&failures.render());
    }
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

async fn list(State(state): State<Arc<AdminState>>) -> Response {
    let all: Vec<_> = state.registry.all().values().map(|s| s.status()).collect();
    Json(all).into_response()
}

/// Ready when there is a configuration to serve. A proxy that follows a
/// control plane says whether it is connected and how old each service's
/// snapshot is; serving from its state file while the control plane is
/// away still counts as ready (that is what the state file is for).
async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    let Some(follow) = state.follow.get() else {
        return "ready\n".into_response();
    };
    let report = follow.readiness();
    let status = if report.serving {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

/// Changes by hand would be undone by the next snapshot and leave the
/// control plane's picture wrong, so a following proxy refuses them.
fn refuse_if_following(state: &AdminState) -> Result<(), ApiError> {
    match state.follow.get() {
        Some(f) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "follows_control_plane",
            None,
            format!(
                "this proxy follows the control plane {}: change the route there (backout rollback, promote, …), not here",
                f.control_plane()
                    .unwrap_or_else(|| "given by --control-plane".into())
            ),
        )),
        None => Ok(()),
    }
}

async fn show(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(service(&state, &name)?.status()).into_response())
}

async fn show_route(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let s = service(&state, &name)?;
    let route = s.route();
    Ok(Json(serde_json::json!({
        "service": s.name,
        "route": route.spec(),
        "generation": route.generation,
        "applied_at_unix_us": route.applied_at_unix_us,
    }))
    .into_response())
}

/// Parses a JSON body, reporting the path of the field that failed.
pub fn parse_route(body: &[u8]) -> Result<RouteSpec, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            "",
            "the body is empty; send a JSON route such as {\"stable\": \"v1\", \"canary\": \"v2\", \"canary_weight\": 10}",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let spec: RouteSpec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path == "?" {
            String::new()
        } else {
            path
        };
        ApiError::invalid(field, format!("invalid route: {}", e.inner()))
    })?;
    de.end()
        .map_err(|e| ApiError::invalid("", format!("invalid route: {e}")))?;
    Ok(spec)
}

async fn put_route(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    refuse_if_following(&state)?;
    let s = service(&state, &name)?;
    let spec = parse_route(&body)?;
    let applied = s
        .set_route(spec, "admin-api")
        .map_err(|e| ApiError::invalid(e.field(), e.to_string()))?;
    Ok(Json(applied).into_response())
}

async fn rollback(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    refuse_if_following(&state)?;
    let s = service(&state, &name)?;
    match s.rollback("admin-api rollback") {
        Some(applied) => Ok(Json(applied).into_response()),
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_route",
            None,
            format!("service {name:?} has no route yet: nothing to roll back"),
        )),
    }
}

/// `?since=<unix-ms>`; one number, nothing else.
fn query_u64(query: Option<&str>, key: &str, default: u64) -> Result<u64, ApiError> {
    let Some(q) = query else { return Ok(default) };
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            return v.parse().map_err(|_| {
                ApiError::invalid(
                    key,
                    format!("query parameter `{key}` must be a non-negative integer; got {v:?}"),
                )
            });
        }
    }
    Ok(default)
}

async fn windows(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let s = service(&state, &name)?;
    let since = query_u64(query.as_deref(), "since", 0)?;
    Ok(Json(s.windows(since)).into_response())
}

async fn events(
    State(state): State<Arc<AdminState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let after = query_u64(query.as_deref(), "after", 0)?;
    let limit = query_u64(query.as_deref(), "limit", 1000)?.min(10_000) as usize;
    Ok(Json(state.events.after(after, limit)).into_response())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn check(body: &str, expected_field: Option<&str>) {
        match (parse_route(body.as_bytes()), expected_field) {
            (Ok(_), None) => {}
            (Err(e), Some(field)) => assert_eq!(
                e.field.as_deref().unwrap_or(""),
                field,
                "{body}: {}",
                e.message
            ),
            (got, want) => panic!("{body}: got {got:?}, want field {want:?}"),
        }
    }

    #[test]
    fn route_bodies() {
        check(r#"{"stable":"v1","canary":"v2","canary_weight":10}"#, None);
        check(
            r#"{"stable":"v1","canary":"v2","canary_weight":150}"#,
            Some("canary_weight"),
        );
        check(
            r#"{"stable":"v1","canary":"v2","canary_weight":"ten"}"#,
            Some("canary_weight"),
        );
        check(
            r#"{"stable":"v1","rules":[{"header":"a","equals":"b","to":"sideways"}]}"#,
            Some("rules[0].to"),
        );
        check(r#"{"stable":"v1","colour":"blue"}"#, Some("colour"));
        check(r#"{"canary":"v2"}"#, Some(""));
        check("", Some(""));
        check("{", Some(""));
        check(r#"{"stable":"v1"} trailing"#, Some(""));
    }

    fn check_query(q: Option<&str>, expected: Result<u64, &str>) {
        assert_eq!(
            query_u64(q, "since", 7).map_err(|e| e.field.unwrap_or_default()),
            expected.map_err(str::to_string),
            "{q:?}"
        );
    }

    #[test]
    fn queries() {
        check_query(None, Ok(7));
        check_query(Some(""), Ok(7));
        check_query(Some("since=12"), Ok(12));
        check_query(Some("x=1&since=12"), Ok(12));
        check_query(Some("since=-1"), Err("since"));
        check_query(Some("since="), Err("since"));
        check_query(Some("since=abc"), Err("since"));
    }

    proptest! {
        /// No body, however malformed, panics the route parser.
        #[test]
        fn route_parsing_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_route(&body);
        }

        #[test]
        fn query_parsing_never_panics(q in ".{0,100}") {
            let _ = query_u64(Some(&q), "since", 0);
        }
    }
}
