//! Bearer tokens: who is calling, and may they.

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use backout_listen::credentials::{self, Failure, Failures, Presented};
use backout_proxy::admin::ApiError;
use backout_store::Role;

use super::ApiState;

/// The authenticated caller, put in the request by [`require`].
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name: the actor recorded in the event log.
    pub name: String,
    pub role: Role,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                None,
                "no caller on this request",
            )
        })
    }
}

/// Middleware that lets through only callers with at least the role in
/// its state; use with `middleware::from_fn_with_state((state, role), require)`.
pub async fn require(
    State((state, needed)): State<(Arc<ApiState>, Role)>,
    req: Request,
    next: Next,
) -> Response {
    check(state, needed, req, next).await
}

/// Middleware that looks up the least role of the matched endpoint in
/// [`ROUTES`](super::ROUTES), for routers whose endpoints need different
/// roles (the flag endpoints, whose handlers come from the flag server).
/// Use as a `route_layer`, so the matched path is known.
pub async fn require_listed(
    State(state): State<Arc<ApiState>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let method = req.method().as_str().to_owned();
    let listed = super::ROUTES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path);
    match listed {
        Some((_, _, None)) => next.run(req).await,
        Some((_, _, Some(needed))) => check(state, *needed, req, next).await,
        // A listed path with a method it does not serve (TRACE, say): the
        // router answers 405 with the methods it has, and runs no handler.
        None if super::ROUTES.iter().any(|(_, p, _)| *p == path) => next.run(req).await,
        // A route served but not listed is a bug; refusing keeps it from
        // being open by accident.
        None => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            None,
            format!("{method} {path} has no role in the route list; this is a bug in backout"),
        )
        .into_response(),
    }
}

/// The header the flag handlers take the actor from.
const ACTOR: &str = "x-backout-actor";

fn unauthenticated(message: &str) -> Response {
    let mut resp =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", None, message).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"backout\""),
    );
    resp
}

async fn check(state: Arc<ApiState>, needed: Role, mut req: Request, next: Next) -> Response {
    let failures = req.extensions().get::<Arc<Failures>>().cloned();
    let fail = |req: &Request, failure: Failure, who: Option<&str>| {
        if let Some(f) = &failures {
            let path = req.uri().path();
            f.record(
                failure,
                backout_listen::peer(req.extensions()),
                req.method().as_str(),
                path,
                who,
            );
        }
    };
    let secret = match credentials::presented(req.headers()) {
        Presented::Token(t) => t.to_owned(),
        Presented::Nothing => {
            fail(&req, Failure::Missing, None);
            return unauthenticated(
                "this endpoint needs a token: send `Authorization: Bearer <token>` (create one with `backout token create`)",
            );
        }
        Presented::Malformed => {
            fail(&req, Failure::Malformed, None);
            return unauthenticated(
                "the Authorization header must be `Bearer <token>` (or send `X-API-Key: <token>`)",
            );
        }
    };
    let store = Arc::clone(&state.store);
    let found = tokio::task::spawn_blocking(move || store.verify_token(&secret)).await;
    let info = match found {
        Ok(Ok(Some(info))) => info,
        Ok(Ok(None)) => {
            fail(&req, Failure::Unknown, None);
            return unauthenticated("unknown or revoked token");
        }
        Ok(Err(e)) => {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store",
                None,
                format!("cannot check the token: {e}"),
            )
            .into_response();
        }
        Err(e) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                None,
                e.to_string(),
            )
            .into_response();
        }
    };
    if !info.role.allows(needed) {
        fail(&req, Failure::Forbidden, Some(&info.name));
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            None,
            format!(
                "token {:?} has role {}; this needs {needed} or above",
                info.name, info.role
            ),
        )
        .into_response();
    }
    // The flag handlers record the actor from this header: under the API
    // it is the token's name, whatever the client claimed.
    if let Ok(v) = HeaderValue::from_str(&info.name) {
        req.headers_mut().insert(ACTOR, v);
    }
    req.extensions_mut().insert(super::Caller {
        name: info.name,
        role: info.role,
    });
    next.run(req).await
}
