//! Authentication for the flag endpoints: a bearer token
//! (`Authorization: Bearer …`) or an API key (`X-API-Key: …`), as the OFREP
//! document's two security schemes say. With no tokens configured the
//! endpoints are open (a loopback-only development server).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The accepted tokens.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Arc<Vec<String>>);

impl Tokens {
    pub fn new(tokens: Vec<String>) -> Tokens {
        Tokens(Arc::new(
            tokens.into_iter().filter(|t| !t.is_empty()).collect(),
        ))
    }

    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks the request headers: `Ok` when allowed, otherwise the status
    /// to answer with (401 without credentials, 403 with wrong ones).
    pub fn check(&self, headers: &HeaderMap) -> Result<(), StatusCode> {
        if self.is_open() {
            return Ok(());
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        let api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
        let presented: Vec<&str> = bearer.into_iter().chain(api_key).collect();
        if presented.is_empty() {
            return Err(StatusCode::UNAUTHORIZED);
        }
        let accepted = presented.iter().any(|p| {
            self.0
                .iter()
                .any(|t| constant_time_eq(p.trim().as_bytes(), t.as_bytes()))
        });
        if accepted {
            Ok(())
        } else {
            Err(StatusCode::FORBIDDEN)
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
        Err(status) => {
            let details = if status == StatusCode::UNAUTHORIZED {
                "credentials required: send `Authorization: Bearer <token>` or `X-API-Key: <token>`"
            } else {
                "the token is not accepted by this server"
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

    fn check(tokens: &[&str], headers: &[(&'static str, &str)], expected: Result<(), StatusCode>) {
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
        check(&["s3cret"], &[], Err(StatusCode::UNAUTHORIZED));
        check(&["s3cret"], &[("authorization", "Bearer s3cret")], Ok(()));
        check(&["s3cret"], &[("x-api-key", "s3cret")], Ok(()));
        check(
            &["s3cret"],
            &[("authorization", "Bearer nope")],
            Err(StatusCode::FORBIDDEN),
        );
        check(
            &["s3cret"],
            &[("authorization", "Basic s3cret")],
            Err(StatusCode::UNAUTHORIZED),
        );
        check(&["a", "b"], &[("x-api-key", "b")], Ok(()));
    }
}
