//! The control-plane API: JSON under `/api/v1`, bearer tokens with roles.
//!
//! Reads need `viewer`, rollout changes `operator`, tokens `admin`; only
//! `/healthz` and `/readyz` answer without a token. Every change goes
//! through the service's controller, which records it (who, why) in the
//! event log before it takes effect. [`ROUTES`] is the one list of
//! endpoints: the OpenAPI document and the role tests are checked against
//! it.

mod auth;
mod flags;
mod fleet;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use backout_listen::credentials::Failures;
use backout_proxy::admin::ApiError;
use backout_proxy::{AdminState, Metrics};
use backout_rollout::{Command, Input, MttrBreakdown, Release, RollbackRecord};
use backout_store::{NewEvent, Role, Store, StoredEvent};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub use auth::Caller;

use crate::controller::{Controller, ServiceHandle, Submission, SubmitError, Submitted};

/// The OpenAPI 3.1 document served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("api/openapi.json");

/// Every endpoint: method, path (OpenAPI template syntax) and the least
/// role that may call it (`None`: no token needed).
pub const ROUTES: &[(&str, &str, Option<Role>)] = &[
    ("GET", "/healthz", None),
    ("GET", "/readyz", None),
    ("GET", "/metrics", Some(Role::Viewer)),
    ("GET", "/api/v1/openapi.json", Some(Role::Viewer)),
    ("GET", "/api/v1/services", Some(Role::Viewer)),
    ("GET", "/api/v1/services/{service}", Some(Role::Viewer)),
    (
        "GET",
        "/api/v1/services/{service}/releases",
        Some(Role::Viewer),
    ),
    (
        "POST",
        "/api/v1/services/{service}/releases",
        Some(Role::Operator),
    ),
    (
        "GET",
        "/api/v1/services/{service}/rollouts",
        Some(Role::Viewer),
    ),
    (
        "POST",
        "/api/v1/services/{service}/rollouts",
        Some(Role::Operator),
    ),
    (
        "POST",
        "/api/v1/services/{service}/actions",
        Some(Role::Operator),
    ),
    (
        "PUT",
        "/api/v1/services/{service}/auto-rollback",
        Some(Role::Operator),
    ),
    (
        "GET",
        "/api/v1/services/{service}/history",
        Some(Role::Viewer),
    ),
    ("GET", "/api/v1/events", Some(Role::Viewer)),
    ("GET", "/api/v1/tokens", Some(Role::Admin)),
    ("POST", "/api/v1/tokens", Some(Role::Admin)),
    ("DELETE", "/api/v1/tokens/{name}", Some(Role::Admin)),
    // Proxies that follow this control plane (a WebSocket).
    ("GET", "/api/v1/fleet/subscribe", Some(Role::Proxy)),
    // Feature flags (`backout up --flags FILE`). Evaluating is reading;
    // an app's token needs no more than viewer.
    ("POST", "/ofrep/v1/evaluate/flags/{key}", Some(Role::Viewer)),
    ("POST", "/ofrep/v1/evaluate/flags", Some(Role::Viewer)),
    ("GET", "/ofrep/v1/events", Some(Role::Viewer)),
    ("GET", "/ofrep/v1/configuration", Some(Role::Viewer)),
    ("GET", "/api/v1/flags", Some(Role::Viewer)),
    ("GET", "/api/v1/flags/{key}", Some(Role::Viewer)),
    ("PUT", "/api/v1/flags/{key}", Some(Role::Operator)),
    ("DELETE", "/api/v1/flags/{key}", Some(Role::Operator)),
    ("POST", "/api/v1/flags/{key}/kill", Some(Role::Operator)),
    ("POST", "/api/v1/flags/{key}/revive", Some(Role::Operator)),
    ("GET", "/api/v1/flags/{key}/rollout", Some(Role::Viewer)),
    ("POST", "/api/v1/flags/{key}/rollout", Some(Role::Operator)),
    (
        "POST",
        "/api/v1/flags/{key}/rollout/abort",
        Some(Role::Operator),
    ),
    // Outcomes feed the judge that can switch a variant off or let it
    // advance, so reporting them is a change.
    (
        "POST",
        "/api/v1/flags/{key}/observations",
        Some(Role::Operator),
    ),
    ("GET", "/api/v1/flag-rollouts", Some(Role::Viewer)),
    ("GET", "/api/v1/flag-document", Some(Role::Viewer)),
    ("GET", "/api/v1/flag-events", Some(Role::Viewer)),
    ("GET", "/api/v1/flag-stale", Some(Role::Viewer)),
];

/// What the handlers share.
#[derive(Debug)]
pub struct ApiState {
    pub controller: Arc<Controller>,
    pub store: Arc<dyn Store>,
    /// The proxy's metrics, for `/metrics`.
    pub proxy: Option<Arc<AdminState>>,
    /// Feature flags, when a flag file is served.
    pub flags: Option<backout_flag_server::Served>,
    /// The proxies that follow this control plane.
    pub fleet: Arc<crate::fleet::Fleet>,
}

/// The router, with authentication on everything but the health checks.
pub fn router(state: Arc<ApiState>) -> Router {
    let flags = flags::routes(&state);
    let viewer = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/services", get(list_services))
        .route("/api/v1/services/{service}", get(show_service))
        .route("/api/v1/services/{service}/releases", get(list_releases))
        .route("/api/v1/services/{service}/rollouts", get(list_rollouts))
        .route("/api/v1/services/{service}/history", get(history))
        .route("/api/v1/events", get(events))
        .route_layer(axum::middleware::from_fn_with_state(
            (Arc::clone(&state), Role::Viewer),
            auth::require,
        ));
    let operator = Router::new()
        .route("/api/v1/services/{service}/releases", post(create_release))
        .route("/api/v1/services/{service}/rollouts", post(start_rollout))
        .route("/api/v1/services/{service}/actions", post(act))
        .route(
            "/api/v1/services/{service}/auto-rollback",
            put(auto_rollback),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            (Arc::clone(&state), Role::Operator),
            auth::require,
        ));
    let admin = Router::new()
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{name}", delete(revoke_token))
        .route_layer(axum::middleware::from_fn_with_state(
            (Arc::clone(&state), Role::Admin),
            auth::require,
        ));
    let proxies = Router::new()
        .route("/api/v1/fleet/subscribe", get(fleet::subscribe))
        .route_layer(axum::middleware::from_fn_with_state(
            (Arc::clone(&state), Role::Proxy),
            auth::require,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .merge(viewer)
        .merge(operator)
        .merge(admin)
        .merge(proxies)
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_endpoint",
                None,
                "no such endpoint; the API is described at /api/v1/openapi.json",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                None,
                "this endpoint does not take that method; see /api/v1/openapi.json",
            )
        })
        .with_state(state)
        .merge(flags)
        // Failed authentication attempts are counted for `/metrics`.
        .layer(axum::Extension(Arc::new(Failures::new("api"))))
}

/// Parses a JSON body, naming the field that is wrong.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::invalid("", "the request needs a JSON body"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        ApiError::invalid(field, e.inner().to_string())
    })
}

fn service<'a>(state: &'a ApiState, name: &str) -> Result<&'a ServiceHandle, ApiError> {
    state.controller.service(name).ok_or_else(|| {
        let known: Vec<&str> = state
            .controller
            .services()
            .map(|(n, _)| n.as_str())
            .collect();
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

/// The reason for a change: the body's `reason`, else the
/// `X-Backout-Reason` header.
fn reason(body: Option<String>, headers: &HeaderMap) -> Option<String> {
    body.filter(|r| !r.trim().is_empty()).or_else(|| {
        headers
            .get("x-backout-reason")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .filter(|r| !r.trim().is_empty())
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= 200 => Ok(Some(k.to_string())),
            _ => Err(ApiError::invalid(
                "Idempotency-Key",
                "the Idempotency-Key header must be 1 to 200 visible ASCII characters",
            )),
        },
    }
}

fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::Rejected(r) => {
            let status = match r.code {
                "not_found" => StatusCode::NOT_FOUND,
                "invalid" => StatusCode::BAD_REQUEST,
                _ => StatusCode::CONFLICT,
            };
            let code = match r.code {
                "not_found" => "not_found",
                "invalid" => "invalid_field",
                _ => "conflict",
            };
            ApiError::new(status, code, None, r.message)
        }
        SubmitError::Store(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store", None, m),
        SubmitError::Stopped => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopped",
            None,
            "the controller is shutting down",
        ),
        SubmitError::NotLeader { leader } => {
            let message = SubmitError::NotLeader {
                leader: leader.clone(),
            }
            .to_string();
            not_leader(message, leader)
        }
    }
}

/// 503 `not_leader`: another control-plane process leads; `error.leader`
/// names its API when known, so clients can go there.
fn not_leader(message: String, leader: Option<String>) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_leader", None, message).with_leader(leader)
}

/// A store error outside the controller (tokens): a write refused by the
/// fencing term is `not_leader`, anything else an internal error.
fn store_error(e: backout_store::StoreError) -> ApiError {
    match &e {
        backout_store::StoreError::Fenced { leader, .. } => {
            let url = leader
                .as_ref()
                .map(|l| l.advertise.clone())
                .filter(|u| !u.is_empty());
            not_leader(e.to_string(), url)
        }
        _ => internal(e.to_string()),
    }
}

async fn submit(
    handle: &ServiceHandle,
    caller: &Caller,
    input: Input,
    reason: Option<String>,
    key: Option<String>,
) -> Result<Submitted, ApiError> {
    handle
        .submit(Submission {
            input,
            actor: caller.name.clone(),
            reason,
            key,
        })
        .await
        .map_err(submit_error)
}

async fn metrics(
    State(state): State<Arc<ApiState>>,
    failures: Option<axum::Extension<Arc<Failures>>>,
) -> Response {
    let mut text = state
        .proxy
        .as_ref()
        .map(|p| p.metrics.render())
        .unwrap_or_else(|| Metrics::new().render());
    if let Some(f) = &state.flags {
        text.push_str(&backout_flag_server::manage::metrics_text(&f.manager));
    }
    if let Some(axum::Extension(failures)) = failures {
        text.push_str(&failures.render());
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// One line per service in `GET /api/v1/services`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ServiceSummary {
    pub name: String,
    pub stable: Option<String>,
    pub rollout: Option<String>,
    pub phase: Option<String>,
    pub canary_weight_permille: u16,
    pub verdict: Option<String>,
}

async fn list_services(State(state): State<Arc<ApiState>>) -> Response {
    let all: Vec<ServiceSummary> = state
        .controller
        .services()
        .map(|(name, h)| {
            let v = h.view();
            let r = v.state.rollout.as_ref();
            ServiceSummary {
                name: name.clone(),
                stable: v.state.stable.clone(),
                rollout: r.map(|r| r.version.clone()),
                phase: r.map(|r| format!("{:?}", r.phase).to_lowercase()),
                canary_weight_permille: v.state.route.as_ref().map_or(0, |r| r.weight.get()),
                verdict: v.decision.as_ref().and_then(|d| {
                    serde_json::to_value(d.verdict)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                }),
            }
        })
        .collect();
    axum::Json(all).into_response()
}

async fn show_service(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let h = service(&state, &name)?;
    Ok(axum::Json(&*h.view()).into_response())
}

/// A release with whether it is pinned (a `rollback --to` target).
#[derive(Debug, Serialize, Deserialize)]
pub struct ReleaseView {
    #[serde(flatten)]
    pub release: Release,
    pub pinned: bool,
    pub stable: bool,
}

fn release_views(h: &ServiceHandle) -> Vec<ReleaseView> {
    let v = h.view();
    let policy = crate::controller::policy_of(&h.spec);
    let pinned: Vec<&str> = v
        .state
        .pinned(&policy)
        .into_iter()
        .map(|r| r.version.as_str())
        .collect();
    v.state
        .releases
        .iter()
        .map(|r| ReleaseView {
            pinned: pinned.contains(&r.version.as_str()),
            stable: v.state.stable.as_deref() == Some(r.version.as_str()),
            release: r.clone(),
        })
        .collect()
}

async fn list_releases(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let h = service(&state, &name)?;
    Ok(axum::Json(release_views(h)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRelease {
    version: String,
    #[serde(default)]
    artifact: Option<String>,
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// Migrations and API contract, checked against the stable release.
    #[serde(default)]
    contracts: Option<backout_rollout::Contracts>,
    /// Start rolling it out at once (default true).
    #[serde(default = "yes")]
    rollout: bool,
    #[serde(default)]
    reason: Option<String>,
}

fn yes() -> bool {
    true
}

/// The answer to a change: what the log recorded and what it set off.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChangeResult {
    pub seq: i64,
    pub duplicate: bool,
    pub notices: Vec<backout_rollout::Notice>,
}

impl From<Submitted> for ChangeResult {
    fn from(s: Submitted) -> Self {
        ChangeResult {
            seq: s.seq,
            duplicate: s.duplicate,
            notices: s.notices,
        }
    }
}

fn check_version(version: &str) -> Result<(), ApiError> {
    let ok = !version.is_empty()
        && version.len() <= 63
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && version.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "version",
            format!(
                "{version:?} is not a valid version name: use 1 to 63 letters, digits, `-`, `_` or `.`, starting with a letter or digit"
            ),
        ))
    }
}

async fn create_release(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let h = service(&state, &name)?;
    let req: NewRelease = body(&bytes)?;
    check_version(&req.version)?;
    let key = idempotency_key(&headers)?;
    let why = reason(req.reason, &headers);
    // The gate: checked against the release stable right now. Should it
    // change before the registration is logged, the state machine refuses
    // the stale report and the client retries.
    let gates = match req.contracts {
        Some(contracts) => {
            let view = h.view();
            let stable = view
                .state
                .stable
                .as_deref()
                .and_then(|v| view.state.release(v))
                .cloned();
            let report = tokio::task::spawn_blocking(move || {
                crate::gates::check(stable.as_ref(), &contracts).map(|r| (contracts, r))
            })
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    None,
                    e.to_string(),
                )
            })?
            .map_err(|u| ApiError::invalid(u.field, u.message))?;
            Some(Box::new(backout_rollout::ReleaseGates {
                contracts: Some(report.0),
                report: Some(report.1),
            }))
        }
        None => None,
    };
    let registered = submit(
        h,
        &caller,
        Input::RegisterRelease {
            version: req.version.clone(),
            artifact: req.artifact,
            config: req.config,
            gates,
        },
        why.clone(),
        key.as_ref().map(|k| format!("{k}/register")),
    )
    .await?;
    let mut result = ChangeResult::from(registered);
    if req.rollout {
        recheck_if_stale(h, &caller, &req.version, why.clone(), key.as_deref()).await?;
        let started = submit(
            h,
            &caller,
            Input::StartRollout {
                version: req.version,
            },
            why,
            key.map(|k| format!("{k}/rollout")),
        )
        .await?;
        result.seq = started.seq;
        result.duplicate &= started.duplicate;
        result.notices.extend(started.notices);
    }
    Ok((StatusCode::CREATED, axum::Json(result)).into_response())
}

/// A release registered while another one was stable is checked again,
/// against the release stable now, before it is rolled out: the gate is
/// about what a rollback would go back to.
async fn recheck_if_stale(
    h: &ServiceHandle,
    caller: &Caller,
    version: &str,
    why: Option<String>,
    key: Option<&str>,
) -> Result<(), ApiError> {
    let view = h.view();
    let Some(release) = view.state.release(version) else {
        return Ok(());
    };
    let (Some(contracts), Some(report)) = (release.contracts.clone(), release.gates.as_ref())
    else {
        return Ok(());
    };
    if report.against == view.state.stable {
        return Ok(());
    }
    let stable = view
        .state
        .stable
        .as_deref()
        .and_then(|v| view.state.release(v))
        .cloned();
    let report =
        tokio::task::spawn_blocking(move || crate::gates::check(stable.as_ref(), &contracts))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    None,
                    e.to_string(),
                )
            })?
            .map_err(|u| ApiError::invalid(u.field, u.message))?;
    submit(
        h,
        caller,
        Input::RecheckGates {
            version: version.to_string(),
            report,
        },
        why,
        key.map(|k| format!("{k}/recheck")),
    )
    .await?;
    Ok(())
}

async fn list_rollouts(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let h = service(&state, &name)?;
    let v = h.view();
    Ok(axum::Json(serde_json::json!({
        "current": v.state.rollout,
        "finished": v.state.history,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRollout {
    version: String,
    #[serde(default)]
    reason: Option<String>,
}

async fn start_rollout(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let h = service(&state, &name)?;
    let req: NewRollout = body(&bytes)?;
    let key = idempotency_key(&headers)?;
    let why = reason(req.reason, &headers);
    recheck_if_stale(h, &caller, &req.version, why.clone(), key.as_deref()).await?;
    let done = submit(
        h,
        &caller,
        Input::StartRollout {
            version: req.version,
        },
        why,
        key,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(ChangeResult::from(done))).into_response())
}

// No `deny_unknown_fields`: serde cannot combine it with `flatten`.
#[derive(Debug, Deserialize)]
struct ActionRequest {
    #[serde(flatten)]
    command: Command,
    #[serde(default)]
    reason: Option<String>,
}

/// `{"command": "accept_gates", "version": "v2", "reason": "…"}`: an
/// operator accepts a release's gate findings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptGatesRequest {
    #[allow(dead_code)]
    command: String,
    version: String,
    #[serde(default)]
    reason: Option<String>,
}

async fn act(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let h = service(&state, &name)?;
    let key = idempotency_key(&headers)?;
    let peek: serde_json::Value = body(&bytes)?;
    if peek.get("command").and_then(serde_json::Value::as_str) == Some("accept_gates") {
        let req: AcceptGatesRequest = body(&bytes)?;
        let why = reason(req.reason, &headers);
        let Some(why) = why else {
            return Err(ApiError::invalid(
                "reason",
                "say why the gate findings are acceptable: it is audited",
            ));
        };
        let input = Input::AcceptGates {
            version: req.version,
            reason: why.clone(),
        };
        let done = submit(h, &caller, input, Some(why), key).await?;
        return Ok(axum::Json(ChangeResult::from(done)).into_response());
    }
    let req: ActionRequest = body(&bytes)?;
    let why = reason(req.reason, &headers);
    let done = submit(h, &caller, Input::Command(req.command), why, key).await?;
    Ok(axum::Json(ChangeResult::from(done)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AutoRollbackRequest {
    enabled: bool,
    /// Unix ms after which automatic rollback comes back on.
    #[serde(default)]
    until_ms: Option<i64>,
    #[serde(default)]
    reason: Option<String>,
}

async fn auto_rollback(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let h = service(&state, &name)?;
    let req: AutoRollbackRequest = body(&bytes)?;
    let why = reason(req.reason, &headers);
    if !req.enabled {
        if why.is_none() {
            return Err(ApiError::invalid(
                "reason",
                "say why automatic rollback is turned off: it is audited",
            ));
        }
        let Some(until) = req.until_ms else {
            return Err(ApiError::invalid(
                "until_ms",
                "give an expiry (Unix ms) after which automatic rollback comes back on by itself",
            ));
        };
        check_until(until, crate::controller::clock::unix_ms())?;
    }
    let key = idempotency_key(&headers)?;
    let done = submit(
        h,
        &caller,
        Input::SetAutoRollback {
            enabled: req.enabled,
            until_ms: req.until_ms,
        },
        why,
        key,
    )
    .await?;
    Ok(axum::Json(ChangeResult::from(done)).into_response())
}

/// The longest automatic rollback may be off through the API; longer is
/// a decision for the spec (`rollback: {automatic: false}`).
const MAX_AUTO_ROLLBACK_OFF_MS: i64 = 30 * 24 * 3600 * 1000;

/// An expiry for "automatic rollback off" must lie ahead, and not too far.
fn check_until(until: i64, now: i64) -> Result<(), ApiError> {
    if until <= now {
        return Err(ApiError::invalid(
            "until_ms",
            format!(
                "{until} is not in the future (now is {now} Unix ms); give the time automatic rollback comes back on"
            ),
        ));
    }
    if until - now > MAX_AUTO_ROLLBACK_OFF_MS {
        return Err(ApiError::invalid(
            "until_ms",
            format!(
                "{until} is more than 30 days ahead (now is {now} Unix ms); turn automatic rollback off for at most 30 days, or set `rollback: {{automatic: false}}` in the spec"
            ),
        ));
    }
    Ok(())
}

/// A rollback with its MTTR phases.
#[derive(Debug, Serialize, Deserialize)]
pub struct RollbackView {
    #[serde(flatten)]
    pub record: RollbackRecord,
    pub mttr: MttrBreakdown,
}

async fn history(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let h = service(&state, &name)?;
    let v = h.view();
    let rollbacks: Vec<RollbackView> = v
        .state
        .rollbacks
        .iter()
        .map(|r| RollbackView {
            record: r.clone(),
            mttr: r.breakdown(),
        })
        .collect();
    Ok(axum::Json(serde_json::json!({
        "service": name,
        "stable": v.state.stable,
        "releases": release_views(h),
        "rollouts": v.state.history,
        "rollbacks": rollbacks,
        "mttr": v.mttr,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<usize>,
    /// The newest `limit` events instead of the first after `after`.
    #[serde(default)]
    newest: bool,
}

async fn events(
    State(state): State<Arc<ApiState>>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let store = Arc::clone(&state.store);
    let list: Vec<StoredEvent> = tokio::task::spawn_blocking(move || match q.service {
        _ if q.newest => store.read_newest(q.service.as_deref(), limit),
        Some(s) => store.read_service(&s, after, limit),
        None => store.read(after, limit),
    })
    .await
    .map_err(|e| internal(e.to_string()))?
    .map_err(|e| internal(e.to_string()))?;
    Ok(axum::Json(list).into_response())
}

fn internal(message: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", None, message)
}

async fn list_tokens(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let store = Arc::clone(&state.store);
    let list = tokio::task::spawn_blocking(move || store.list_tokens())
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| internal(e.to_string()))?;
    Ok(axum::Json(list).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: Role,
    #[serde(default)]
    reason: Option<String>,
}

async fn create_token(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let req: NewToken = body(&bytes)?;
    let store = Arc::clone(&state.store);
    let at = crate::controller::clock::unix_ms();
    let (name, role) = (req.name.clone(), req.role);
    let secret = tokio::task::spawn_blocking(move || {
        let secret = store.create_token(&name, role, at)?;
        let mut ev = NewEvent::new(
            "",
            "token.created",
            caller.name.clone(),
            at,
            serde_json::json!({"name": name, "role": role}),
        );
        if let Some(r) = req.reason {
            ev = ev.with_reason(r);
        }
        store.append(vec![ev])?;
        Ok::<_, backout_store::StoreError>(secret)
    })
    .await
    .map_err(|e| internal(e.to_string()))?
    .map_err(|e| match e {
        backout_store::StoreError::TokenExists { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            Some("name".into()),
            e.to_string(),
        ),
        backout_store::StoreError::InvalidTokenName { .. } => {
            ApiError::invalid("name", e.to_string())
        }
        other => store_error(other),
    })?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({"name": req.name, "role": req.role, "secret": secret})),
    )
        .into_response())
}

async fn revoke_token(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let store = Arc::clone(&state.store);
    let at = crate::controller::clock::unix_ms();
    let n = name.clone();
    let revoked = tokio::task::spawn_blocking(move || {
        let revoked = store.revoke_token(&n)?;
        if revoked {
            store.append(vec![NewEvent::new(
                "",
                "token.revoked",
                caller.name.clone(),
                at,
                serde_json::json!({"name": n}),
            )])?;
        }
        Ok::<_, backout_store::StoreError>(revoked)
    })
    .await
    .map_err(|e| internal(e.to_string()))?
    .map_err(|e| match e {
        backout_store::StoreError::LastAdmin { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "last_admin",
            Some("name".into()),
            e.to_string(),
        ),
        other => store_error(other),
    })?;
    if revoked {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            None,
            format!("no token named {name:?}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_rollback_expiry_is_ahead_and_near() {
        let now = 1_800_000_000_000;
        assert!(check_until(now + 3_600_000, now).is_ok());
        for bad in [
            now,
            now - 1,
            0,
            -1,
            i64::MIN,
            now + MAX_AUTO_ROLLBACK_OFF_MS + 1,
            i64::MAX,
        ] {
            let e = check_until(bad, now).expect_err("refused");
            assert!(format!("{e:?}").contains("until_ms"), "{bad}: {e:?}");
        }
    }

    /// The OpenAPI document describes exactly the endpoints there are.
    #[test]
    fn openapi_matches_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap_or_default();
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        let mut documented = Vec::new();
        for (path, ops) in &paths {
            for method in ops
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
            {
                if method != "parameters" {
                    documented.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        documented.sort();
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        routes.sort();
        assert_eq!(documented, routes);
        // And with the role each needs.
        for (method, path, role) in ROUTES {
            let op = &paths[*path][method.to_lowercase()];
            let documented = op["x-backout-role"].as_str();
            assert_eq!(
                documented,
                role.map(Role::as_str),
                "{method} {path}: x-backout-role"
            );
        }
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
