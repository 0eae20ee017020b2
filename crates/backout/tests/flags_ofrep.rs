//! End to end: `backout flags serve` answering real OpenFeature clients over
//! OFREP, plus the protocol's details (status codes, ETag, auth, change
//! stream, hot reload, static stability).

#[path = "flags/support.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use futures_util::StreamExt;
use serde_json::{Value as Json, json};
use support::{Server, eventually, external, get_text, post};

fn flags() -> Json {
    json!({
        "metadata": {"flagSetId": "e2e"},
        "flags": {
            "new-checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                "targeting": {"if": [{"==": [{"var": "country"}, "jp"]}, "on"]}},
            "color": {"state": "ENABLED", "variants": {"red": "#f00", "blue": "#00f"}, "defaultVariant": "red",
                "metadata": {"owner": "web"}},
            "limit": {"state": "ENABLED", "variants": {"low": 10, "high": 1000}, "defaultVariant": "low",
                "targeting": {"if": [{"==": [{"var": "plan"}, "pro"]}, "high"]}},
            "ratio": {"state": "ENABLED", "variants": {"a": 0.25}, "defaultVariant": "a"},
            "layout": {"state": "ENABLED", "variants": {"grid": {"cols": 3}}, "defaultVariant": "grid"},
            "split": {"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": "a",
                "targeting": {"fractional": [["a", 50], ["b", 50]]}},
            "killed": {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"},
            "broken": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "targeting": {"regex": [1]}}
        }
    })
}

/// The evaluations both clients run, and what each must see: (flag, type,
/// default, context, value, reason, error).
fn cases() -> Vec<(Json, Json, Option<&'static str>)> {
    let c = |flag: &str, ty: &str, default: Json, ctx: Json| json!({"flag": flag, "type": ty, "default": default, "context": ctx});
    vec![
        (
            c(
                "new-checkout",
                "boolean",
                json!(false),
                json!({"targetingKey": "u1", "country": "jp"}),
            ),
            json!([true, "TARGETING_MATCH"]),
            None,
        ),
        (
            c(
                "new-checkout",
                "boolean",
                json!(true),
                json!({"targetingKey": "u1", "country": "us"}),
            ),
            json!([false, "DEFAULT"]),
            None,
        ),
        (
            c("color", "string", json!("none"), json!({})),
            json!(["#f00", "STATIC"]),
            None,
        ),
        (
            c(
                "limit",
                "integer",
                json!(1),
                json!({"targetingKey": "u2", "plan": "pro"}),
            ),
            json!([1000, "TARGETING_MATCH"]),
            None,
        ),
        (
            c("ratio", "float", json!(1.0), json!({})),
            json!([0.25, "STATIC"]),
            None,
        ),
        (
            c("layout", "object", json!({}), json!({})),
            json!([{"cols": 3}, "STATIC"]),
            None,
        ),
        (
            // The bucket is checked against the reference evaluator.
            c(
                "split",
                "string",
                json!("z"),
                json!({"targetingKey": "user-2"}),
            ),
            json!(["B", "TARGETING_MATCH"]),
            None,
        ),
        (
            c("broken", "boolean", json!(false), json!({})),
            json!([false, "ERROR"]),
            Some("PARSE_ERROR"),
        ),
        (
            c("missing", "boolean", json!(true), json!({})),
            json!([true, "ERROR"]),
            Some("FLAG_NOT_FOUND"),
        ),
        (
            c("color", "boolean", json!(true), json!({})),
            json!([true, "ERROR"]),
            Some("TYPE_MISMATCH"),
        ),
    ]
}

fn run_client(program: &str, script: &Path, url: &str, token: &str, input: &Json) -> Vec<Json> {
    let mut child = Command::new(program)
        .arg(script)
        .args([url, token])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.to_string().as_bytes())
            .expect("write cases");
    }
    let out = child.wait_with_output().expect("client output");
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client prints JSON")
}

fn check_client_results(
    results: &[Json],
    client: &str,
    disabled: Json,
    disabled_error: Option<&'static str>,
) {
    let mut expected = cases();
    expected.push((json!(null), disabled, disabled_error));
    for ((case, want, error), got) in expected.iter().zip(results) {
        let got_pair = json!([got["value"], got["reason"]]);
        let want_error = error.map(Json::from).unwrap_or(Json::Null);
        assert_eq!(
            (&got_pair, &got["error"]),
            (want, &want_error),
            "{client}: {case}: {got}"
        );
    }
}

#[test]
fn python_openfeature_sdk_with_ofrep_provider() {
    let Some(python) = external(
        "BACKOUT_TEST_PYTHON",
        "the Python openfeature-sdk and openfeature-provider-ofrep",
    ) else {
        return;
    };
    let server = Server::start(&flags(), &["py-token"]);
    let mut input: Vec<Json> = cases().into_iter().map(|(c, _, _)| c).collect();
    input.push(json!({"flag": "killed", "type": "boolean", "default": false, "context": {}}));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flags/ofrep_client.py");
    let results = run_client(
        &python,
        &script,
        &server.url,
        "py-token",
        &Json::Array(input),
    );
    // A disabled flag is a success with the caller's default.
    check_client_results(&results, "python", json!([false, "DISABLED"]), None);
    assert_eq!(
        results[2]["metadata"],
        json!({"flagSetId": "e2e", "owner": "web"})
    );
}

#[test]
fn javascript_openfeature_server_sdk_with_ofrep_provider() {
    let Some(node_dir) = external(
        "BACKOUT_TEST_NODE_DIR",
        "@openfeature/server-sdk and @openfeature/ofrep-provider",
    ) else {
        return;
    };
    let server = Server::start(&flags(), &["js-token"]);
    let mut input: Vec<Json> = cases().into_iter().map(|(c, _, _)| c).collect();
    input.push(json!({"flag": "killed", "type": "boolean", "default": false, "context": {}}));
    let script = Path::new(&node_dir).join("ofrep-client.cjs");
    let results = run_client(
        "node",
        &script,
        &server.url,
        "js-token",
        &Json::Array(input),
    );
    // @openfeature/ofrep-provider 0.1.3 predates OFREP's code-default rule
    // (no `value` means "use your default") and reports it as an error; the
    // caller still gets its default, which is what a kill switch needs.
    check_client_results(
        &results,
        "javascript",
        json!([false, "ERROR"]),
        Some("GENERAL"),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_codes_and_error_bodies() {
    let server = Server::start(&flags(), &[]);
    let one = |key: &str| format!("{}/ofrep/v1/evaluate/flags/{key}", server.url);
    let check = |status: u16, body: Json, want_status: u16, want_code: Option<&str>| {
        assert_eq!(status, want_status, "{body}");
        assert_eq!(
            body.get("errorCode").and_then(Json::as_str),
            want_code,
            "{body}"
        );
    };
    let (s, _, b) = post(&one("color"), "{\"context\": {}}", &[]).await;
    check(s, b.clone(), 200, None);
    assert_eq!(
        b,
        json!({"key": "color", "value": "#f00", "reason": "STATIC", "variant": "red", "metadata": {"flagSetId": "e2e", "owner": "web"}})
    );
    let (s, _, b) = post(&one("killed"), "", &[]).await;
    check(s, b.clone(), 200, None);
    assert!(
        b.get("value").is_none(),
        "a disabled flag defers to the caller's default: {b}"
    );
    let (s, _, b) = post(&one("missing"), "{}", &[]).await;
    check(s, b, 404, Some("FLAG_NOT_FOUND"));
    let (s, _, b) = post(&one("broken"), "{}", &[]).await;
    check(s, b.clone(), 400, Some("PARSE_ERROR"));
    assert!(
        b["errorDetails"]
            .as_str()
            .is_some_and(|d| d.contains("/flags/broken/targeting/regex")),
        "{b}"
    );
    let (s, _, b) = post(&one("color"), "{not json", &[]).await;
    check(s, b, 400, Some("PARSE_ERROR"));
    let (s, _, b) = post(&one("color"), "{\"context\": [1]}", &[]).await;
    check(s, b, 400, Some("INVALID_CONTEXT"));
    let (s, _, b) = post(&one("color"), "{\"context\": {\"targetingKey\": 7}}", &[]).await;
    check(s, b.clone(), 400, Some("INVALID_CONTEXT"));
    assert!(
        b["errorDetails"]
            .as_str()
            .is_some_and(|d| d.contains("targetingKey")),
        "{b}"
    );
    let (s, _, b) = post(
        &format!("{}/ofrep/v1/evaluate/flags", server.url),
        "[]",
        &[],
    )
    .await;
    check(s, b.clone(), 400, Some("INVALID_CONTEXT"));
    assert!(b.get("key").is_none(), "bulk failures have no key: {b}");
    assert_eq!(get_text(&format!("{}/readyz", server.url)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_evaluation_with_etag() {
    let server = Server::start(&flags(), &[]);
    let bulk = format!("{}/ofrep/v1/evaluate/flags", server.url);
    let ctx = "{\"context\": {\"targetingKey\": \"u1\", \"country\": \"jp\"}}";
    let (s, headers, body) = post(&bulk, ctx, &[]).await;
    assert_eq!(s, 200);
    let etag = headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("ETag")
        .to_owned();
    let flags = body["flags"].as_array().expect("flags");
    assert_eq!(flags.len(), 8);
    let by_key = |k: &str| {
        flags
            .iter()
            .find(|f| f["key"] == k)
            .cloned()
            .expect("flag in bulk")
    };
    assert_eq!(by_key("new-checkout")["value"], json!(true));
    assert_eq!(by_key("broken")["errorCode"], json!("PARSE_ERROR"));
    assert_eq!(by_key("killed")["reason"], json!("DISABLED"));
    assert_eq!(body["refreshConnections"][0]["type"], json!("sse"));
    // Same context, same flags: 304.
    let (s, _, _) = post(&bulk, ctx, &[("if-none-match", &etag)]).await;
    assert_eq!(s, 304);
    // Another context gives another result, so the tag no longer matches.
    let (s, headers2, _) = post(
        &bulk,
        "{\"context\": {\"country\": \"us\"}}",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(s, 200);
    assert_ne!(headers2.get("etag"), Some(&etag.parse().expect("header")));
    // A change to the flags changes the tag too.
    let mut changed = flags_json_with(|f| f["flags"]["color"]["defaultVariant"] = json!("blue"));
    server.write_flags(&changed);
    eventually("the change is served", || async {
        post(&bulk, ctx, &[("if-none-match", &etag)]).await.0 == 200
    })
    .await;
    changed["flags"]["color"]["defaultVariant"] = json!("red");
    server.write_flags(&changed);
}

fn flags_json_with(edit: impl FnOnce(&mut Json)) -> Json {
    let mut f = flags();
    edit(&mut f);
    f
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_token_or_api_key() {
    let server = Server::start(&flags(), &["s3cret"]);
    let url = format!("{}/ofrep/v1/evaluate/flags/color", server.url);
    assert_eq!(post(&url, "{}", &[]).await.0, 401);
    assert_eq!(
        post(&url, "{}", &[("authorization", "Bearer wrong")])
            .await
            .0,
        403
    );
    assert_eq!(
        post(&url, "{}", &[("authorization", "Bearer s3cret")])
            .await
            .0,
        200
    );
    assert_eq!(post(&url, "{}", &[("x-api-key", "s3cret")]).await.0, 200);
    let (s, _) = get_text(&format!("{}/api/v1/flags", server.url)).await;
    assert_eq!(s, 401, "management needs the token too");
    // Health endpoints stay open for probes.
    assert_eq!(get_text(&format!("{}/readyz", server.url)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn change_stream_announces_refetch() {
    let server = Server::start(&flags(), &[]);
    let resp = reqwest::get(format!("{}/ofrep/v1/events", server.url))
        .await
        .expect("connect SSE");
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut stream = resp.bytes_stream();
    server.write_flags(&flags_json_with(|f| {
        f["flags"]["color"]["defaultVariant"] = json!("blue")
    }));
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains("refetchEvaluation") {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("an event within 10 s")
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
    }
    assert!(
        seen.contains("id: 2"),
        "the event carries the new revision: {seen}"
    );
    let data = seen
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("data line");
    let data: Json = serde_json::from_str(data).expect("event data is JSON");
    assert_eq!(data["type"], json!("refetchEvaluation"));
    assert_eq!(data["etag"], json!("\"r2\""));
    // A client reconnecting with an old Last-Event-ID is told to refetch at once.
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("{}/ofrep/v1/events", server.url))
        .header("last-event-id", "1")
        .send()
        .await
        .expect("reconnect");
    let mut stream = resp.bytes_stream();
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
        .await
        .expect("replay")
        .expect("open")
        .expect("chunk");
    assert!(String::from_utf8_lossy(&chunk).contains("refetchEvaluation"));
}

#[tokio::test(flavor = "multi_thread")]
async fn hot_reload_and_static_stability() {
    let server = Server::start(&flags(), &[]);
    let url = format!("{}/ofrep/v1/evaluate/flags/color", server.url);
    server.write_flags(&flags_json_with(|f| {
        f["flags"]["color"]["defaultVariant"] = json!("blue")
    }));
    eventually("the edited file is served", || async {
        post(&url, "{}", &[]).await.2["value"] == json!("#00f")
    })
    .await;
    // The source breaks: the last good set keeps serving, marked stale.
    support::write_atomically(&server.file, "{ this is not json");
    eventually("the stale mark", || async {
        post(&url, "{}", &[]).await.2["metadata"]["backout.stale"] == json!(true)
    })
    .await;
    let (s, _, body) = post(&url, "{}", &[]).await;
    assert_eq!((s, &body["value"]), (200, &json!("#00f")), "{body}");
    let (s, ready) = get_text(&format!("{}/readyz", server.url)).await;
    assert_eq!(s, 200);
    assert!(
        ready.contains("stale since") && ready.contains("not valid JSON"),
        "{ready}"
    );
    // The file disappears altogether: still serving.
    std::fs::remove_file(&server.file).expect("remove");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(post(&url, "{}", &[]).await.2["value"], json!("#00f"));
    // Fixed: fresh again.
    server.write_flags(&flags());
    eventually("fresh again", || async {
        let b = post(&url, "{}", &[]).await.2;
        b["value"] == json!("#f00") && b["metadata"].get("backout.stale").is_none()
    })
    .await;
}

#[test]
fn start_refuses_a_broken_file_with_its_location() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("flags.json");
    std::fs::write(&file, "{\"flags\": {\n  \"a\": }").expect("write");
    let out = Command::new(support::BIN)
        .args(["flags", "serve", "-f"])
        .arg(&file)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("flags.json:2:8"), "{stderr}");
}
