//! End to end: guarded flag rollouts on a real `backout flags serve`.
//!
//! A client stands in for an app: it evaluates the flag over OFREP for many
//! users, "serves" each request with the variant it got (the treatment
//! failing a share of them, or not), and reports the outcomes per variant
//! to the observation endpoint, as an app's middleware would. The server's
//! guard steps the variant up, and its judge decides.

#![allow(clippy::unwrap_used)]

#[path = "flags/support.rs"]
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value as Json, json};
use support::{Server, post};

const TOKEN: &str = "tok";

fn flags() -> Json {
    json!({"flags": {
        "checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"},
        "search": {"state": "ENABLED", "variants": {"v1": "v1", "v2": "v2"}, "defaultVariant": "v1",
            "targeting": {"if": [{"==": [{"var": "beta"}, true]}, "v2"]}}
    }})
}

/// A short warm-up and promotion time, so a rollout takes seconds.
const ANALYSIS: &str = "\
promote_after: 5s
checks:
  - kind: error_rate
    warmup: 2s
    promote_below: 0.02
  - kind: latency
    warmup: 2s
";

fn auth() -> [(&'static str, &'static str); 1] {
    [("authorization", "Bearer tok")]
}

async fn get_json(url: &str) -> (u16, Json) {
    let resp = reqwest::Client::new()
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Json::Null))
}

/// What the stand-in app saw: for each user, the variants it was served,
/// in order.
type Seen = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// Runs the stand-in app until `stop`: batches of 25 users (from a
/// population of 3000) evaluated concurrently, requests with `on` failing
/// `on_error_permille`/1000 of the time while `failing` is set, outcomes
/// reported per variant after each batch.
async fn app(
    url: String,
    on_error_permille: u64,
    failing: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    seen: Seen,
) {
    let client = reqwest::Client::new();
    let eval = format!("{url}/ofrep/v1/evaluate/flags/checkout");
    let report = format!("{url}/api/v1/flags/checkout/observations");
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let users: Vec<String> = (0..25)
            .map(|_| {
                n += 1;
                // A fixed scramble of the request number: users recur.
                format!("user-{}", (n * 7919) % 3000)
            })
            .collect();
        let calls = users.iter().map(|user| {
            let client = client.clone();
            let eval = eval.clone();
            let body = json!({"context": {"targetingKey": user}});
            async move {
                let resp = client
                    .post(&eval)
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .ok()?;
                let body: Json = resp.json().await.ok()?;
                body["variant"].as_str().map(str::to_owned)
            }
        });
        let variants = futures_util::future::join_all(calls).await;
        let mut windows: HashMap<String, (u64, u64, Vec<f64>)> = HashMap::new();
        for (i, (user, variant)) in users.iter().zip(variants).enumerate() {
            let Some(variant) = variant else { continue };
            seen.lock()
                .unwrap()
                .entry(user.clone())
                .or_default()
                .push(variant.clone());
            let k = n + i as u64;
            let failed = variant == "on"
                && failing.load(Ordering::Relaxed)
                && (k * 37) % 1000 < on_error_permille;
            // The same latency spread for both variants.
            let latency = 10.0 + ((k * 53) % 40) as f64;
            let w = windows.entry(variant).or_default();
            w.0 += 1;
            w.1 += u64::from(failed);
            w.2.push(latency);
        }
        let reports: Vec<Json> = windows
            .into_iter()
            .map(|(variant, (requests, errors, latency_ms))| {
                json!({"variant": variant, "requests": requests, "errors": errors, "latency_ms": latency_ms})
            })
            .collect();
        let (status, _, body) = post(&report, &Json::from(reports).to_string(), &auth()).await;
        assert_eq!(status, 202, "{body}");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

/// Polls the rollout until `done` holds (up to `secs`), returning it.
async fn wait_for(server: &Server, secs: u64, what: &str, done: impl Fn(&Json) -> bool) -> Json {
    let url = format!("{}/api/v1/flags/checkout/rollout", server.url);
    // Five polls a second (slow polls only make the wait longer).
    for _ in 0..secs * 5 {
        let (_, status) = get_json(&url).await;
        if done(&status) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, status) = get_json(&url).await;
    panic!("never happened in {secs}s: {what}; the rollout is at {status:#}");
}

fn start(server: &Server) -> String {
    let analysis = server.dir.path().join("analysis.yaml");
    std::fs::write(&analysis, ANALYSIS).unwrap();
    let (ok, stdout, stderr) = server.cli(&[
        "flag",
        "rollout",
        "checkout",
        "--variant",
        "on",
        "--control",
        "off",
        "--steps",
        "1,5,25,100",
        "--step-time",
        "3s",
        "--analysis",
        analysis.to_str().unwrap(),
        "--reason",
        "new checkout flow",
        "--server",
        &server.url,
        "--token",
        TOKEN,
    ]);
    assert!(ok, "{stderr}");
    stdout
}

async fn variants_served(server: &Server, users: u32) -> HashMap<String, u32> {
    let eval = format!("{}/ofrep/v1/evaluate/flags/checkout", server.url);
    let mut counts = HashMap::new();
    for i in 0..users {
        let ctx = json!({"context": {"targetingKey": format!("user-{i}")}}).to_string();
        let body = post(&eval, &ctx, &auth()).await.2;
        *counts
            .entry(body["variant"].as_str().unwrap_or("none").to_owned())
            .or_default() += 1;
    }
    counts
}

async fn history(server: &Server) -> Vec<Json> {
    let (_, events) = get_json(&format!("{}/api/v1/flag-events", server.url)).await;
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["flag"] == "checkout")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_variant_is_switched_off_by_itself_with_its_mttr() {
    let server = Server::start(&flags(), &[TOKEN]);
    let stdout = start(&server);
    assert!(
        stdout.contains("`on` against `off` in steps 1% → 5% → 25% → 100%"),
        "{stdout}"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let failing = Arc::new(AtomicBool::new(false));
    let seen: Seen = Arc::default();
    // The new checkout fails a fifth of its requests once it carries 5% of
    // the load (a problem that shows under load); the old one never fails.
    let traffic = tokio::spawn(app(
        server.url.clone(),
        200,
        failing.clone(),
        stop.clone(),
        seen.clone(),
    ));
    wait_for(&server, 60, "the rollout reaches 5%", |s| {
        s["step"].as_u64() >= Some(2) && s["pending"].is_null()
    })
    .await;
    failing.store(true, Ordering::Relaxed);
    let status = wait_for(&server, 90, "the judge rolls back", |s| {
        s["phase"] == "rolled_back"
    })
    .await;
    assert_eq!(status["verdict"]["verdict"], "rollback", "{status:#}");
    assert!(
        status["note"]
            .as_str()
            .unwrap()
            .contains("everyone gets `off`"),
        "{status:#}"
    );
    // Served at once, and verified once a whole second passes with
    // requests and none of them served with `on`.
    let status = wait_for(&server, 20, "the switch-off is verified", |s| {
        s["rollback"]["quiet_ms"].is_i64()
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    eprintln!("switched off: {status:#}");
    let m = &status["rollback"];
    for phase in ["detect_ms", "decide_ms", "act_ms", "verify_ms", "total_ms"] {
        assert!(m[phase].as_i64().is_some_and(|v| v >= 0), "{phase}: {m:#}");
    }
    // The decision and the change take milliseconds, not ticks.
    assert!(m["decide_ms"].as_i64().unwrap() < 1000, "{m:#}");
    assert!(m["act_ms"].as_i64().unwrap() < 1000, "{m:#}");
    assert!(status["traffic"]["variant"]["errors"].as_u64().unwrap() > 0);
    assert_eq!(status["traffic"]["control"]["errors"], 0);

    // Everyone gets the control now.
    let served = variants_served(&server, 500).await;
    assert_eq!(served, HashMap::from([("off".to_owned(), 500)]));
    let file: Json = serde_json::from_str(&std::fs::read_to_string(&server.file).unwrap()).unwrap();
    assert_eq!(
        file["flags"]["checkout"]["targeting"],
        json!({"fractional": [["on", 0], ["off", 100]]})
    );

    // The history: started by a person, stepped and switched off by the
    // guard, with its reason, then the MTTR record.
    let events = history(&server).await;
    let actions: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions[0],
        ("rollout-start", "test-operator"),
        "{actions:?}"
    );
    assert!(
        events[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("new checkout flow; guarded rollout of `on` against `off`"),
        "{:#}",
        events[0]
    );
    let steps = &actions[1..actions.len() - 2];
    assert!(
        !steps.is_empty() && steps.iter().all(|a| *a == ("rollout-step", "guard")),
        "{actions:?}"
    );
    let [.., off, record] = events.as_slice() else {
        panic!("{events:#?}")
    };
    assert_eq!(
        (&off["action"], &off["actor"]),
        (&json!("switch-off"), &json!("guard"))
    );
    assert!(
        off["reason"]
            .as_str()
            .unwrap()
            .contains("the judge says roll back"),
        "{off:#}"
    );
    assert_eq!(
        off["after"]["targeting"],
        json!({"fractional": [["on", 0], ["off", 100]]})
    );
    assert_eq!(record["action"], "switched-off");
    for phase in ["detect_ms", "decide_ms", "act_ms", "total_ms"] {
        assert!(record["mttr"][phase].is_i64(), "{phase}: {record:#}");
    }
    assert_eq!(record["mttr"]["switched_ms"], m["switched_ms"]);

    // The command line tells the same story.
    let (ok, out, stderr) = server.cli(&[
        "flag",
        "rollout-status",
        "checkout",
        "--server",
        &server.url,
        "--token",
        TOKEN,
    ]);
    assert!(ok, "{stderr}");
    assert!(out.contains("phase:   rolled_back"), "{out}");
    assert!(out.contains("MTTR:    detect "), "{out}");
    let (ok, out, stderr) = server.cli(&[
        "flag",
        "history",
        "checkout",
        "--server",
        &server.url,
        "--token",
        TOKEN,
    ]);
    assert!(ok, "{stderr}");
    assert!(
        out.contains("switch-off") && out.contains("switched-off") && out.contains("MTTR detect"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_variant_reaches_everyone_and_nobody_moves_back() {
    let server = Server::start(&flags(), &[TOKEN]);
    start(&server);
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Seen = Arc::default();
    let traffic = tokio::spawn(app(
        server.url.clone(),
        0,
        Arc::new(AtomicBool::new(false)),
        stop.clone(),
        seen.clone(),
    ));
    let status = wait_for(&server, 120, "promotion to 100%", |s| {
        s["phase"] == "promoted"
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    eprintln!("promoted: {status:#}");
    assert_eq!(status["share"], json!(100.0), "{status:#}");
    assert_eq!(status["step"], 4, "{status:#}");
    assert_eq!(status["verdict"]["verdict"], "promote", "{status:#}");
    assert!(status["rollback"].is_null());
    let served = variants_served(&server, 500).await;
    assert_eq!(served, HashMap::from([("on".to_owned(), 500)]));
    // Raising the share only ever moved users from `off` to `on`.
    let mut moved = 0;
    for (user, variants) in seen.lock().unwrap().iter() {
        if let Some(first_on) = variants.iter().position(|v| v == "on") {
            assert!(
                variants[first_on..].iter().all(|v| v == "on"),
                "{user} went back to `off`: {variants:?}"
            );
            moved += usize::from(first_on > 0);
        }
    }
    assert!(moved > 100, "only {moved} users were seen moving to `on`");
    let actions: Vec<String> = history(&server)
        .await
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            "rollout-start test-operator",
            "rollout-step guard",
            "rollout-step guard",
            "rollout-promote guard",
        ]
    );
    // Reports after the end are answered, and not kept.
    let report = format!("{}/api/v1/flags/checkout/observations", server.url);
    let (status, _, body) = post(&report, r#"{"variant": "on"}"#, &auth()).await;
    assert_eq!((status, &body["accepted"]), (202, &json!(0)), "{body}");
    assert!(body["note"].as_str().unwrap().contains("is over"), "{body}");
}

fn flat(text: &str) -> String {
    text.replace(['│', '×'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_abort_and_report_shapes() {
    let server = Server::start(&flags(), &[TOKEN]);
    // Errors are drawn in boxes and wrapped: compare their words.
    let cli = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--server", &server.url, "--token", TOKEN]);
        let (ok, out, err) = server.cli(&all);
        (ok, out, flat(&err))
    };
    // A rollout runs in a server, not on a file.
    let (ok, _, stderr) = server.cli(&[
        "flag",
        "rollout",
        "checkout",
        "--variant",
        "on",
        "-f",
        server.file.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        flat(&stderr).contains("runs inside a flag server"),
        "{stderr}"
    );
    // A flag whose targeting has no split to move says what to do.
    let (ok, _, stderr) = cli(&["flag", "rollout", "search", "--variant", "v2"]);
    assert!(!ok);
    assert!(
        stderr.contains("no `fractional` split between `v2` and `v1`"),
        "{stderr}"
    );
    // Steps that go down, and unknown variants.
    let (ok, _, stderr) = cli(&[
        "flag",
        "rollout",
        "checkout",
        "--variant",
        "on",
        "--steps",
        "5,1",
    ]);
    assert!(!ok);
    assert!(stderr.contains("steps must grow"), "{stderr}");
    let (ok, _, stderr) = cli(&["flag", "rollout", "checkout", "--variant", "blue"]);
    assert!(!ok);
    assert!(stderr.contains("no variant `blue`"), "{stderr}");
    let (ok, _, stderr) = cli(&["flag", "rollout-status", "checkout"]);
    assert!(!ok);
    assert!(
        stderr.contains("no guarded rollout of `checkout`"),
        "{stderr}"
    );

    // Start (control = the default variant), refuse a second, then abort.
    let (ok, out, stderr) = cli(&[
        "flag",
        "rollout",
        "checkout",
        "--variant",
        "on",
        "--steps",
        "10,100",
        "--step-time",
        "10m",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        out.contains("phase:   stepping at step 1/2 (10% served)"),
        "{out}"
    );
    let (ok, _, stderr) = cli(&["flag", "rollout", "checkout", "--variant", "on"]);
    assert!(!ok);
    assert!(
        stderr.contains("409") && stderr.contains("already running"),
        "{stderr}"
    );
    let served = variants_served(&server, 1000).await;
    assert!(
        (60..=140).contains(&served["on"]),
        "10% of 1000 users: {served:?}"
    );

    // Reports: unauthenticated ones are refused; a window, and an
    // OpenFeature tracking event's details, are both taken.
    let report = format!("{}/api/v1/flags/checkout/observations", server.url);
    let (status, _, _) = post(&report, r#"{"variant": "on"}"#, &[]).await;
    assert_eq!(status, 401);
    let batch = json!([
        {"variant": "on", "requests": 10, "errors": 1, "latency_ms": [12.0, 14.5]},
        {"feature_flag.result.variant": "off", "value": 11.0, "error": false},
        {"variant": "other"}
    ]);
    let (status, _, body) = post(&report, &batch.to_string(), &auth()).await;
    assert_eq!((status, &body["accepted"]), (202, &json!(3)), "{body}");
    let (status, _, body) = post(&report, r#"{"requests": 3}"#, &auth()).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("expected a report"),
        "{body}"
    );
    let (_, status) = get_json(&format!("{}/api/v1/flags/checkout/rollout", server.url)).await;
    assert_eq!(
        status["traffic"],
        json!({"control": {"requests": 1, "errors": 0}, "variant": {"requests": 10, "errors": 1}, "other": 1})
    );

    let (ok, out, stderr) = cli(&[
        "flag",
        "rollout-abort",
        "checkout",
        "--reason",
        "wrong week",
    ]);
    assert!(ok, "{stderr}");
    assert!(out.contains("phase:   aborted"), "{out}");
    assert_eq!(
        variants_served(&server, 300).await,
        HashMap::from([("off".to_owned(), 300)])
    );
    let (ok, _, stderr) = cli(&["flag", "rollout-abort", "checkout"]);
    assert!(!ok);
    assert!(stderr.contains("already over"), "{stderr}");
    let last = history(&server).await.pop().unwrap();
    assert_eq!(
        (&last["action"], &last["actor"]),
        (&json!("rollout-abort"), &json!("test-operator"))
    );
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .starts_with("aborted by test-operator: wrong week"),
        "{last:#}"
    );
}
