//! Error bodies in the listener's own shape, also for the refusals that
//! routing and body extraction make (405, 413, 400 on a broken body),
//! which would otherwise be a bare line of text a client cannot parse.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;

/// The JSON shape errors take on a listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ErrorStyle {
    /// `{"error": {"code", "field", "message"}}`: the control-plane API
    /// and the proxy's admin API.
    #[default]
    Api,
    /// `{"errorDetails": …}`, OFREP's general error: the flag server.
    Ofrep,
}

impl ErrorStyle {
    /// The body of an error with `status` and `message`, as JSON text.
    pub fn body(self, status: StatusCode, message: &str) -> String {
        match self {
            ErrorStyle::Api => serde_json::json!({"error": {
                "code": code(status),
                "field": null,
                "message": message,
            }}),
            ErrorStyle::Ofrep => serde_json::json!({"errorDetails": message}),
        }
        .to_string()
    }

    /// A whole error response.
    pub fn response(self, status: StatusCode, message: &str) -> Response {
        let mut resp = Response::new(Body::from(self.body(status, message)));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

/// A short machine-readable name for a status.
fn code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::UNAUTHORIZED => "unauthenticated",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::MISDIRECTED_REQUEST => "misdirected_request",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

/// How much of a plain-text error body becomes the message.
const MESSAGE_LIMIT: usize = 2048;

/// Replaces the body of an error response that is not JSON with one in
/// `style`, keeping its text as the message. Success responses and JSON
/// errors pass through untouched.
pub async fn json_errors(resp: Response, style: ErrorStyle) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = match http_body_util::Limited::new(body, MESSAGE_LIMIT)
        .collect()
        .await
    {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes())
            .trim()
            .to_string(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        default_message(status)
    } else {
        text
    };
    let mut out = style.response(status, &message);
    // Keep what tells the client what to do next (`Allow` on a 405).
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

fn default_message(status: StatusCode) -> String {
    match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            "this endpoint does not take that method (the Allow header lists the ones it takes)"
                .into()
        }
        StatusCode::NOT_FOUND => "no such endpoint".into(),
        s => s
            .canonical_reason()
            .map_or_else(|| s.to_string(), str::to_lowercase),
    }
}
