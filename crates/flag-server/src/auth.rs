//! Authentication for the flag endpoints: a bearer token
//! (`Authorization: Bearer …`, the scheme in any case) or an API key
//! (`X-API-Key: …`), as the OFREP document's two security schemes say.
//! With no tokens configured the endpoints are open (a loopback-only
//! development server). Failed attempts are logged without the token and
//! counted in `backout_auth_failures_total{listener="flags"}`.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use backout_listen::credentials::Failure;

pub use backout_listen::credentials::Tokens;

/// Middleware rejecting requests without an accepted token.
pub async fn require_token(State(tokens): State<Tokens>, request: Request, next: Next) -> Response {
    match tokens.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(failure) => {
            tokens.failures().record(
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
    use axum::http::{HeaderMap, HeaderValue};

    fn check(tokens: &[&str], headers: &[(&'static str, &str)], expected: Result<(), Failure>) {
        let tokens = Tokens::new("flags", tokens.iter().map(|t| t.to_string()).collect());
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
