//! Authentication for the flag endpoints: a bearer token
//! (`Authorization: Bearer …`, the scheme in any case) or an API key
//! (`X-API-Key: …`), as the OFREP document's two security schemes say.
//! With no tokens configured the endpoints are open (a loopback-only
//! development server). Failed attempts are logged without the token and
//! counted in `backout_auth_failures_total{listener="flags"}`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use backout_listen::credentials::{self, Failure, Failures, Presented};

/// The accepted tokens, and the failed attempts to present one.
#[derive(Debug, Clone)]
pub struct Tokens {
    accepted: Arc<Vec<String>>,
    failures: Arc<Failures>,
}

impl Default for Tokens {
    fn default() -> Tokens {
        Tokens::new(Vec::new())
    }
}

impl Tokens {
    pub fn new(tokens: Vec<String>) -> Tokens {
        Tokens {
            accepted: Arc::new(tokens.into_iter().filter(|t| !t.is_empty()).collect()),
            failures: Arc::new(Failures::new("flags")),
        }
    }

    pub fn is_open(&self) -> bool {
        self.accepted.is_empty()
    }

    /// The failed attempts so far, for `/metrics`.
    pub fn failures(&self) -> &Failures {
        &self.failures
    }

    /// Checks the request headers: `Ok` when allowed, otherwise why not
    /// (401 without usable credentials, 403 with a wrong token).
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Failure> {
        if self.is_open() {
            return Ok(());
        }
        match credentials::presented(headers) {
            Presented::Nothing => Err(Failure::Missing),
            Presented::Malformed => Err(Failure::Malformed),
            Presented::Token(p) => {
                let accepted = self
                    .accepted
                    .iter()
                    .any(|t| constant_time_eq(p.as_bytes(), t.as_bytes()));
                if accepted {
                    Ok(())
                } else {
                    Err(Failure::Unknown)
                }
            }
        }
    }
}

/// Compares without stopping at the first difference, so the time taken
/// says nothing about how much of a token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Middleware rejecting requests without an accepted token.
pub async fn require_token(State(tokens): State<Tokens>, request: Request, next: Next) -> Response {
    match tokens.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(failure) => {
            tokens.failures.record(
                failure,
                backout_listen::peer(request.extensions()),
                request.method().as_str(),
                request.uri().path(),
                None,
            );
            let (status, details) = match failure {
                Failure::Unknown | Failure::Forbidden => (
                    StatusCode::FORBIDDEN,
                    "the token is not accepted by this server",
                ),
                Failure::Missing | Failure::Malformed => (
                    StatusCode::UNAUTHORIZED,
                    "credentials required: send `Authorization: Bearer <token>` or `X-API-Key: <token>`",
                ),
            };
            (
                status,
                axum::Json(serde_json::json!({"errorDetails": details})),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn check(tokens: &[&str], headers: &[(&'static str, &str)], expected: Result<(), Failure>) {
        let tokens = Tokens::new(tokens.iter().map(|t| t.to_string()).collect());
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        assert_eq!(tokens.check(&map), expected, "{headers:?}");
    }

    #[test]
    fn schemes() {
        check(&[], &[], Ok(()));
        check(&["s3cret"], &[], Err(Failure::Missing));
        check(&["s3cret"], &[("authorization", "Bearer s3cret")], Ok(()));
        check(&["s3cret"], &[("authorization", "BEARER s3cret")], Ok(()));
        check(&["s3cret"], &[("x-api-key", "s3cret")], Ok(()));
        check(
            &["s3cret"],
            &[("authorization", "Bearer nope")],
            Err(Failure::Unknown),
        );
        check(
            &["s3cret"],
            &[("authorization", "Basic s3cret")],
            Err(Failure::Malformed),
        );
        check(&["a", "b"], &[("x-api-key", "b")], Ok(()));
    }
}
