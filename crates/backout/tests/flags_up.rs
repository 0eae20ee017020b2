//! End to end: feature flags inside `backout up --flags FILE`. A real
//! OpenFeature client evaluates over OFREP on the API's listener with an
//! API token, `backout flag kill` reaches it through the same API, and the
//! change lands in the control plane's event log between the rollout
//! events, under the token's name.

#![allow(clippy::unwrap_used)]

mod harness;
#[path = "flags/support.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use harness::{Up, free_port, spec};
use serde_json::{Value as Json, json};

fn flags() -> String {
    json!({
        "flags": {
            "new-checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                "targeting": {"if": [{"==": [{"var": "country"}, "jp"]}, "on"]},
                "metadata": {"owner": "payments"}},
            "color": {"state": "ENABLED", "variants": {"red": "#f00"}, "defaultVariant": "red"}
        }
    })
    .to_string()
}

fn start() -> Up {
    let port = free_port();
    let flags = flags();
    Up::start_with(
        &spec(port, "[{set_weight: 50}, approve]", ""),
        port,
        &[("flags.json", &flags)],
        &["--flags", "flags.json"],
    )
}

/// The Python OpenFeature SDK with its OFREP provider, evaluating
/// `new-checkout` for a user in Japan; `None` when the test setup has no
/// Python clients (it fails instead under the test command).
fn python_evaluates(up: &Up, token: &str) -> Option<Json> {
    let python = support::external(
        "BACKOUT_TEST_PYTHON",
        "the Python openfeature-sdk and openfeature-provider-ofrep",
    )?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flags/ofrep_client.py");
    let cases = json!([{"flag": "new-checkout", "type": "boolean", "default": false,
        "context": {"targetingKey": "u1", "country": "jp"}}]);
    let mut child = Command::new(python)
        .arg(script)
        .args([&up.api, token])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(cases.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Json = serde_json::from_slice(&out.stdout).unwrap();
    Some(results[0].clone())
}

fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> (u16, Json) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new().request(method.parse().unwrap(), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !body.is_empty() {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Json::Null))
    })
}

#[test]
fn flags_are_served_changed_and_logged_by_backout_up() {
    let mut up = start();
    let tokens = harness::check_roles(&up, |p| {
        p.starts_with("/ofrep/") || p.starts_with("/api/v1/flag")
    });
    let viewer = tokens[1].1.clone();
    let operator = tokens[2].1.clone();

    // A rollout event before the flag change.
    up.release("v1", "--latency 1ms");

    // A real OpenFeature client, with an app's viewer token.
    if let Some(r) = python_evaluates(&up, &viewer) {
        assert_eq!(
            (&r["value"], &r["reason"]),
            (&json!(true), &json!("TARGETING_MATCH")),
            "{r}"
        );
        assert_eq!(r["metadata"]["owner"], "payments", "{r}");
    }
    // OFREP's other scheme: the token as an API key.
    let one = format!("{}/ofrep/v1/evaluate/flags/color", up.api);
    let (status, body) = request("POST", &one, &[("x-api-key", &viewer)], "{\"context\": {}}");
    assert_eq!((status, &body["value"]), (200, &json!("#f00")), "{body}");
    let (status, _) = request("POST", &one, &[], "{\"context\": {}}");
    assert_eq!(status, 401);

    // The kill switch, through the same API with the CLI; a viewer may not.
    let kill = |token: &str| {
        Command::new(harness::BIN)
            .current_dir(&up.dir)
            .args(["flag", "kill", "new-checkout", "--reason", "5xx spike"])
            .args(["--server", &up.api, "--token", token, "--actor", "mallory"])
            .output()
            .unwrap()
    };
    let refused = kill(&viewer);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let killed = kill(&operator);
    assert!(
        killed.status.success(),
        "{}",
        String::from_utf8_lossy(&killed.stderr)
    );
    if let Some(r) = python_evaluates(&up, &viewer) {
        assert_eq!(
            (&r["value"], &r["reason"]),
            (&json!(false), &json!("DISABLED")),
            "{r}"
        );
    }
    up.ok(&[
        "release",
        "shop",
        "--version",
        "v2",
        "--artifact=--latency 1ms",
        "--no-rollout",
    ]);

    // One timeline: the kill sits between the two releases, recorded
    // under the token's name (not the name the client claimed), with its
    // reason and the flag before and after.
    let check_log = |up: &Up| {
        let events = up.events();
        let seq_of = |pred: &dyn Fn(&Json) -> bool| {
            events
                .iter()
                .find(|e| pred(e))
                .and_then(|e| e["seq"].as_i64())
                .unwrap()
        };
        let v1 = seq_of(&|e| e["kind"] == "input.register_release" && e["body"]["version"] == "v1");
        let v2 = seq_of(&|e| e["kind"] == "input.register_release" && e["body"]["version"] == "v2");
        let kill = events
            .iter()
            .find(|e| e["kind"] == "flag.kill")
            .expect("the kill is in the event log");
        let at = kill["seq"].as_i64().unwrap();
        assert!(v1 < at && at < v2, "{v1} < {at} < {v2}");
        assert_eq!(kill["service"], "@flags");
        assert_eq!(kill["actor"], "t-operator");
        assert_eq!(kill["reason"], "5xx spike");
        assert_eq!(kill["body"]["flag"], "new-checkout");
        assert_eq!(kill["body"]["before"]["state"], "ENABLED");
        assert_eq!(kill["body"]["after"]["state"], "DISABLED");
        // The flag history reads the same log.
        let (status, history) = request(
            "GET",
            &format!("{}/api/v1/flag-events", up.api),
            &[("authorization", &format!("Bearer {}", up.token))],
            "",
        );
        assert_eq!(status, 200);
        let history = history.as_array().unwrap();
        assert_eq!(history.len(), 1, "{history:?}");
        assert_eq!(history[0]["action"], "kill");
        assert_eq!(history[0]["actor"], "t-operator");
    };
    check_log(&up);

    // One /metrics: the proxy's and the flags'.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let metrics = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/metrics", up.api))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(
        metrics.contains("backout_flag_stale{flag=\"new-checkout\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("backout_route_generation"), "{metrics}");

    // After a crash the flag stays killed and its history is still there.
    up.kill();
    up.launch();
    check_log(&up);
    let (status, body) = request(
        "POST",
        &format!("{}/ofrep/v1/evaluate/flags/new-checkout", up.api),
        &[("authorization", &format!("Bearer {viewer}"))],
        "{\"context\": {\"targetingKey\": \"u1\", \"country\": \"jp\"}}",
    );
    assert_eq!(
        (status, &body["reason"]),
        (200, &json!("DISABLED")),
        "{body}"
    );
}

#[test]
fn a_broken_flag_file_stops_backout_up_with_the_flag_and_the_path() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("shop.yaml"),
        spec(port, "[{set_weight: 50}]", ""),
    )
    .unwrap();
    std::fs::write(dir.path().join("flags.json"), "{\"flags\": [1, 2]}").unwrap();
    let api = free_port();
    let out = Command::new(harness::BIN)
        .current_dir(dir.path())
        .args(["up", "-f", "shop.yaml", "--flags", "flags.json"])
        .args(["--api", &format!("127.0.0.1:{api}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot serve the flags"), "{stderr}");
    // The file, the path inside it, and what is wrong.
    assert!(stderr.contains("flags.json:/flags"), "{stderr}");
    assert!(stderr.contains("must be an object"), "{stderr}");
}
