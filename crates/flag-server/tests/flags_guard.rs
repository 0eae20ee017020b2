//! Guarded flag rollouts through the router on loopback, on a virtual
//! clock: reports go over HTTP as an app would send them, and the test
//! ticks the guards itself, so minutes of judging take milliseconds.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use backout_flag_server::guard::Guards;
use backout_flag_server::manage::Manager;
use backout_flag_server::{self as ofrep, FileSource, FlagStore, Tokens};
use backout_flags::edit::Edit;
use serde_json::{Value as Json, json};

/// Virtual time starts here (Unix ms) and moves only when told.
const T0: i64 = 1_800_000_000_000;

struct Rig {
    url: String,
    manager: Manager,
    guards: Guards,
    now: Arc<AtomicI64>,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn rig(flags: Json) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flags.json"), flags.to_string()).unwrap();
    serve(dir, Arc::new(AtomicI64::new(T0))).await
}

/// A flag server over the files in `dir`, as `backout flags serve` wires
/// it (without its wall-clock ticker).
async fn serve(dir: tempfile::TempDir, now: Arc<AtomicI64>) -> Rig {
    let file = dir.path().join("flags.json");
    let store = FlagStore::new();
    let source = FileSource::new(&file);
    source.reload_into(&store).unwrap();
    let manager = Manager::new(source, store.clone());
    let clock = now.clone();
    let guards = Guards::with_clock(
        manager.clone(),
        Arc::new(move || clock.load(Ordering::SeqCst)),
    );
    let tokens = Tokens::new("flags", vec!["t".into()]);
    let app = ofrep::guarded_router(store, tokens, manager.clone(), guards.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Rig {
        url,
        manager,
        guards,
        now,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

fn flags() -> Json {
    json!({"flags": {"pay": {"state": "ENABLED", "variants": {"new": "v2", "old": "v1"}, "defaultVariant": "old"}}})
}

const ANALYSIS: &str = r#"{"promote_after": 20, "checks": [
    {"kind": "error_rate", "warmup": 10, "promote_below": 0.01},
    {"kind": "latency", "warmup": 10}]}"#;

impl Rig {
    async fn call(&self, method: reqwest::Method, path: &str, body: Json) -> (u16, Json) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth("t")
            .header("x-backout-actor", "ann");
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Json::Null))
    }

    async fn start(&self, steps: Json, step_time: &str) -> (u16, Json) {
        let analysis: Json = serde_json::from_str(ANALYSIS).unwrap();
        self.call(
            reqwest::Method::POST,
            "/api/v1/flags/pay/rollout",
            json!({"variant": "new", "steps": steps, "step_time": step_time, "analysis": analysis}),
        )
        .await
    }

    async fn status(&self) -> Json {
        self.call(
            reqwest::Method::GET,
            "/api/v1/flags/pay/rollout",
            Json::Null,
        )
        .await
        .1
    }

    /// One virtual second: the second's reports, then the tick.
    async fn second(&self, old: (u64, u64), new: (u64, u64), new_latency: f64) {
        let latencies = |n: u64, scale: f64| -> Vec<f64> {
            (0..n.min(50))
                .map(|i| scale * (20.0 + (i * 7 % 30) as f64))
                .collect()
        };
        let reports = json!([
            {"variant": "old", "requests": old.0, "errors": old.1, "latency_ms": latencies(old.0, 1.0)},
            {"variant": "new", "requests": new.0, "errors": new.1, "latency_ms": latencies(new.0, new_latency)},
        ]);
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/flags/pay/observations",
                reports,
            )
            .await;
        assert_eq!(status, 202, "{body}");
        let now = self.now.fetch_add(1000, Ordering::SeqCst) + 1000;
        self.guards.tick(now).await;
    }

    fn history(&self) -> Vec<Json> {
        self.manager
            .events()
            .unwrap()
            .into_iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect()
    }
}

/// The variant's traffic at a share: 1000 requests a second in all.
fn split(status: &Json) -> (u64, u64) {
    let share = status["share"].as_f64().unwrap_or(0.0);
    let new = (1000.0 * share / 100.0).round() as u64;
    (1000 - new, new)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_latency_regression_is_switched_off_on_virtual_time() {
    let rig = rig(flags()).await;
    let (code, body) = rig.start(json!([2, 10, 50, 100]), "15s").await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        (body["phase"].as_str(), body["share"].as_f64()),
        (Some("stepping"), Some(2.0))
    );
    let mut seconds = 0;
    loop {
        let status = rig.status().await;
        if status["phase"] != "stepping" || seconds > 300 {
            break;
        }
        let (old, new) = split(&status);
        // Healthy for the first 40 s, then the new version gets 3× slower.
        let slow = if seconds >= 40 { 3.0 } else { 1.0 };
        rig.second((old, 0), (new, 0), slow).await;
        seconds += 1;
    }
    let status = rig.status().await;
    assert_eq!(status["phase"], "rolled_back", "{status:#}");
    assert!(
        status["note"].as_str().unwrap().contains("latency"),
        "{status:#}"
    );
    // On the virtual clock the judge's onset sits after the regression
    // began, and the switch follows the verdict at once.
    let m = &status["rollback"];
    let onset = m["onset_ms"].as_i64().unwrap();
    assert!(onset >= T0 + 40_000, "{m:#}");
    assert_eq!(m["decide_ms"], 0, "{m:#}");
    assert_eq!(m["act_ms"], 0, "{m:#}");
    assert!(m["detect_ms"].as_i64().unwrap() <= 30_000, "{m:#}");
    // It got past the first step before the regression.
    assert!(status["step"].as_u64().unwrap() >= 2, "{status:#}");
    // Two quiet seconds verify it.
    rig.second((1000, 0), (0, 0), 1.0).await;
    rig.second((1000, 0), (0, 0), 1.0).await;
    let status = rig.status().await;
    assert!(status["rollback"]["verify_ms"].is_i64(), "{status:#}");
    let history = rig.history();
    let last = history.last().unwrap();
    assert_eq!(
        (&last["action"], &last["actor"]),
        (&json!("switched-off"), &json!("guard"))
    );
    assert_eq!(
        last["mttr"]["switched_ms"],
        status["rollback"]["switched_ms"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_server_resumes_the_rollout() {
    let rig = rig(flags()).await;
    let (code, body) = rig.start(json!([5, 50, 100]), "5s").await;
    assert_eq!(code, 201, "{body}");
    for _ in 0..12 {
        let (old, new) = split(&rig.status().await);
        rig.second((old, 0), (new, 0), 1.0).await;
    }
    let before = rig.status().await;
    assert_eq!(before["phase"], "stepping", "{before:#}");
    // A new server over the same files, as after a restart.
    let Rig { _dir: dir, now, .. } = rig;
    let rig = serve(dir, now).await;
    let after = rig.status().await;
    for field in ["phase", "step", "share", "started_ms", "step_since_ms"] {
        assert_eq!(after[field], before[field], "{field}");
    }
    // Evidence and counts are saved with every change and every ten ticks.
    assert_eq!(
        after["traffic"]["control"]["requests"],
        10 * 1000 - 500,
        "{after:#}"
    );
    // …and it goes on to 100%.
    for _ in 0..120 {
        let status = rig.status().await;
        if status["phase"] != "stepping" {
            break;
        }
        let (old, new) = split(&status);
        rig.second((old, 0), (new, 0), 1.0).await;
    }
    let status = rig.status().await;
    assert_eq!(status["phase"], "promoted", "{status:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_split_removed_by_hand_stops_the_rollout() {
    let rig = rig(flags()).await;
    let (code, _) = rig.start(json!([5, 50, 100]), "5s").await;
    assert_eq!(code, 201);
    // Someone replaces the flag's targeting while the rollout runs.
    let mut flag = flags()["flags"]["pay"].clone();
    flag["targeting"] = json!({"if": [{"==": [{"var": "beta"}, true]}, "new"]});
    rig.manager
        .apply(
            &Edit::Put {
                key: "pay".into(),
                flag,
            },
            "bob",
            None,
        )
        .unwrap();
    for _ in 0..30 {
        let (old, new) = split(&rig.status().await);
        rig.second((old, 0), (new, 0), 1.0).await;
    }
    let status = rig.status().await;
    assert_eq!(status["phase"], "aborted", "{status:#}");
    assert!(
        status["note"]
            .as_str()
            .unwrap()
            .contains("could not switch `new` off"),
        "{status:#}"
    );
    assert!(
        status["error"]
            .as_str()
            .unwrap()
            .contains("no `fractional` split"),
        "{status:#}"
    );
    // Bob's targeting is left as he wrote it.
    let served = rig.manager.store().snapshot().unwrap();
    assert_eq!(
        served.document["flags"]["pay"]["targeting"],
        json!({"if": [{"==": [{"var": "beta"}, true]}, "new"]})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn start_refusals() {
    let rig = rig(flags()).await;
    let check = |body: Json, code: u16, needle: &'static str| {
        let rig = &rig;
        async move {
            let (got, answer) = rig
                .call(reqwest::Method::POST, "/api/v1/flags/pay/rollout", body)
                .await;
            assert_eq!(got, code, "{answer}");
            let error = answer["error"].as_str().unwrap_or_default().to_owned();
            assert!(error.contains(needle), "`{error}` lacks `{needle}`");
        }
    };
    check(json!({"steps": [1]}), 400, "missing field `variant`").await;
    check(
        json!({"variant": "new", "steps": [0.001]}),
        400,
        "finer than 0.01%",
    )
    .await;
    check(
        json!({"variant": "new", "step_time": "soon"}),
        400,
        "step_time",
    )
    .await;
    check(
        json!({"variant": "new", "analysis": {"alpha": 3}}),
        400,
        "analysis.alpha",
    )
    .await;
    check(json!({"variant": "old"}), 400, "the control must differ").await;
    let (code, answer) = rig
        .call(
            reqwest::Method::POST,
            "/api/v1/flags/nope/rollout",
            json!({"variant": "new"}),
        )
        .await;
    assert_eq!(
        (code, answer["error"].as_str()),
        (404, Some("flag `nope` does not exist"))
    );
    // Nothing was changed by the refusals.
    assert!(rig.history().is_empty());
    let (code, _) = rig.start(json!([1, 100]), "1m").await;
    assert_eq!(code, 201);
    check(json!({"variant": "new"}), 409, "already running").await;
    let (code, list) = rig
        .call(reqwest::Method::GET, "/api/v1/flag-rollouts", Json::Null)
        .await;
    assert_eq!((code, list.as_array().map(Vec::len)), (200, Some(1)));
}
