//! The OFREP evaluation endpoints: one flag, and all flags (bulk, with
//! ETag / If-None-Match).
//!
//! Status codes and bodies follow the OFREP OpenAPI document: 200 with the
//! evaluation, 404 `FLAG_NOT_FOUND`, 400 with `errorCode` / `errorDetails`
//! for a bad request or a failed evaluation, 304 when the bulk result is
//! unchanged. A result that defers to the caller's default (disabled flag,
//! no default variant) has no `value`, as OFREP's code-default rule says.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backout_flags::{Context, ErrorCode, Resolution};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value as Json};

use super::clock;
use super::store::{FlagStore, Snapshot, SourceHealth};

/// Metadata key telling clients the served flag set is stale.
pub const STALE_KEY: &str = "backout.stale";
/// Metadata key saying since when (Unix seconds).
pub const STALE_SINCE_KEY: &str = "backout.staleSince";

#[derive(Serialize)]
struct Success<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a Json>,
    reason: &'static str,
    /// Empty when there is no variant (a result deferring to the caller's
    /// default): clients such as `openfeature-provider-ofrep` 0.3 require
    /// the member, and flagd sends it empty too.
    variant: &'a str,
    metadata: Metadata<'a>,
}

#[derive(Serialize)]
struct Failure<'a> {
    key: &'a str,
    #[serde(rename = "errorCode")]
    error_code: &'static str,
    #[serde(rename = "errorDetails")]
    error_details: &'a str,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Item<'a> {
    Success(Success<'a>),
    Failure(Failure<'a>),
}

/// Flag metadata, plus the staleness keys when the source is unavailable.
struct Metadata<'a> {
    own: &'a Map<String, Json>,
    stale_since: Option<i64>,
}

impl Serialize for Metadata<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let extra = if self.stale_since.is_some() { 2 } else { 0 };
        let mut map = s.serialize_map(Some(self.own.len() + extra))?;
        for (k, v) in self.own {
            map.serialize_entry(k, v)?;
        }
        if let Some(since) = self.stale_since {
            map.serialize_entry(STALE_KEY, &true)?;
            map.serialize_entry(STALE_SINCE_KEY, &since)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct Bulk<'a> {
    flags: Vec<Item<'a>>,
    metadata: Metadata<'a>,
    #[serde(rename = "refreshConnections", skip_serializing_if = "Vec::is_empty")]
    refresh_connections: Vec<RefreshConnection>,
}

#[derive(Serialize)]
struct RefreshConnection {
    #[serde(rename = "type")]
    kind: &'static str,
    url: String,
}

/// A request error body for the single-flag endpoint.
#[derive(Serialize)]
struct RequestFailure<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(rename = "errorCode")]
    error_code: &'static str,
    #[serde(rename = "errorDetails")]
    error_details: String,
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these borrowed structures cannot fail: every map key is a
    // string and every value is already JSON.
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

/// 503 until the first flag set is loaded: readiness, seen from OFREP.
fn not_ready() -> Response {
    let body = serde_json::json!({"errorDetails": "flags are not loaded yet; retry shortly"});
    json_response(StatusCode::SERVICE_UNAVAILABLE, encode(&body))
}

/// Reads the evaluation request: an optional JSON object with an optional
/// `context`. An empty body is an empty context.
fn read_context(body: &[u8]) -> Result<Context, (ErrorCode, String)> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Context::new());
    }
    let request: Json = serde_json::from_slice(body).map_err(|e| {
        (
            ErrorCode::ParseError,
            format!("the request body is not JSON ({e}); send {{\"context\": {{...}}}}"),
        )
    })?;
    let Json::Object(mut request) = request else {
        return Err((
            ErrorCode::InvalidContext,
            "the request body must be a JSON object like {\"context\": {...}}".into(),
        ));
    };
    let context = request.remove("context").unwrap_or(Json::Null);
    Context::from_json(context)
        .map_err(|e| (ErrorCode::InvalidContext, format!("invalid `context`: {e}")))
}

fn stale_since(snapshot: &Snapshot) -> Option<i64> {
    match snapshot.source {
        SourceHealth::Unavailable { since, .. } => Some(since),
        SourceHealth::Fresh => None,
    }
}

fn item<'a>(key: &'a str, res: &'a Resolution<'a>, stale_since: Option<i64>) -> Item<'a> {
    match &res.error {
        Some(error) => Item::Failure(Failure {
            key,
            error_code: error.code.as_str(),
            error_details: &error.message,
        }),
        None => Item::Success(Success {
            key,
            value: res.value,
            reason: res.reason.as_str(),
            variant: res.variant.unwrap_or(""),
            metadata: Metadata {
                own: res.metadata,
                stale_since,
            },
        }),
    }
}

/// `POST /ofrep/v1/evaluate/flags/{key}`
pub async fn evaluate_one(
    State(store): State<FlagStore>,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    let Some(snapshot) = store.snapshot() else {
        return not_ready();
    };
    let ctx = match read_context(&body) {
        Ok(ctx) => ctx,
        Err((code, details)) => {
            let body = RequestFailure {
                key: Some(&key),
                error_code: code.as_str(),
                error_details: details,
            };
            return json_response(StatusCode::BAD_REQUEST, encode(&body));
        }
    };
    let now = clock::unix_now();
    store.record_evaluation(&key, now);
    let res = snapshot.flags.evaluate(&key, &ctx, now);
    let status = match res.error.as_ref().map(|e| e.code) {
        None => StatusCode::OK,
        Some(ErrorCode::FlagNotFound) => StatusCode::NOT_FOUND,
        Some(_) => StatusCode::BAD_REQUEST,
    };
    json_response(status, encode(&item(&key, &res, stale_since(&snapshot))))
}

/// `POST /ofrep/v1/evaluate/flags`
pub async fn evaluate_bulk(
    State(store): State<FlagStore>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(snapshot) = store.snapshot() else {
        return not_ready();
    };
    let ctx = match read_context(&body) {
        Ok(ctx) => ctx,
        Err((code, details)) => {
            let body = RequestFailure {
                key: None,
                error_code: code.as_str(),
                error_details: details,
            };
            return json_response(StatusCode::BAD_REQUEST, encode(&body));
        }
    };
    let now = clock::unix_now();
    let snapshot: Arc<Snapshot> = snapshot;
    let since = stale_since(&snapshot);
    let results: Vec<(&str, Resolution<'_>)> = snapshot
        .flags
        .keys()
        .map(|key| (key, snapshot.flags.evaluate(key, &ctx, now)))
        .collect();
    for (key, _) in &results {
        store.record_evaluation(key, now);
    }
    let refresh_connections = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|host| {
            vec![RefreshConnection {
                kind: "sse",
                url: format!("http://{host}{}", super::EVENTS_PATH),
            }]
        })
        .unwrap_or_default();
    let bulk = Bulk {
        flags: results
            .iter()
            .map(|(key, res)| item(key, res, since))
            .collect(),
        metadata: Metadata {
            own: snapshot.flags.metadata(),
            stale_since: since,
        },
        refresh_connections,
    };
    let body = encode(&bulk);
    let etag = etag_of(&body);
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && if_none_match(inm, &etag)
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let mut response = json_response(StatusCode::OK, body);
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// A strong ETag from the response bytes: equal results, equal tags.
fn etag_of(body: &[u8]) -> String {
    let (high, low) = mur3::murmurhash3_x64_128(body, 0);
    format!("\"{high:016x}{low:016x}\"")
}

/// Whether an `If-None-Match` header matches the current tag.
fn if_none_match(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: &str, matches: bool) {
        assert_eq!(if_none_match(header, "\"abc\""), matches, "{header}");
    }

    #[test]
    fn if_none_match_forms() {
        check("\"abc\"", true);
        check("W/\"abc\"", true);
        check("\"x\", \"abc\"", true);
        check("*", true);
        check("\"abd\"", false);
        check("", false);
    }

    fn check_context(body: &str, expected: Result<Context, ErrorCode>) {
        assert_eq!(
            read_context(body.as_bytes()).map_err(|(code, _)| code),
            expected,
            "{body}"
        );
    }

    #[test]
    fn request_bodies() {
        check_context("", Ok(Context::new()));
        check_context("{}", Ok(Context::new()));
        check_context(
            "{\"context\": {\"targetingKey\": \"u\"}}",
            Ok(Context::with_key("u")),
        );
        check_context("{\"context\": null}", Ok(Context::new()));
        check_context("{", Err(ErrorCode::ParseError));
        check_context("[]", Err(ErrorCode::InvalidContext));
        check_context("{\"context\": 5}", Err(ErrorCode::InvalidContext));
        check_context(
            "{\"context\": {\"targetingKey\": 5}}",
            Err(ErrorCode::InvalidContext),
        );
    }
}
