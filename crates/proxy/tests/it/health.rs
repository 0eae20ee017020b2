//! Probes, outlier detection, the circuit breaker and the bulkhead, with
//! real upstreams that go bad on command.

use std::time::Duration;

use crate::support::{Harness, eventually};

const PROBED: &str = "name: web
version_header: x-backout-version
probes:
  readiness: {path: /ready, period: 100ms, timeout: 100ms, failure_threshold: 2, success_threshold: 2}
pools:
  v1: {endpoints: [$v1]}
  v2: {endpoints: [$v2-a, $v2-b]}
route: {stable: v1, canary: v2, canary_weight: 50}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unready_endpoints_get_no_traffic_and_come_back() {
    let h = Harness::start(PROBED).await;
    eventually(Duration::from_secs(10), "all endpoints ready", || async {
        let s = h.admin_json("/admin/v1/services/web").await;
        s["pools"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["available_endpoints"] == p["endpoints"].as_array().unwrap().len())
    })
    .await;

    // One canary endpoint goes unready: it stops getting requests.
    h.app("v2-a").set_ready(false);
    eventually(Duration::from_secs(10), "v2-a leaves", || async {
        let s = h.admin_json("/admin/v1/services/web").await;
        s["pools"][1]["available_endpoints"] == 1
    })
    .await;
    let before = h.app("v2-a").requests();
    for _ in 0..100 {
        assert_eq!(h.get("/", &[]).await.0, 200);
    }
    assert_eq!(
        h.app("v2-a").requests(),
        before,
        "an unready endpoint got traffic"
    );
    assert!(h.app("v2-b").requests() > 0);

    // Every canary endpoint unready: canary traffic goes to stable, visibly.
    h.app("v2-b").set_ready(false);
    eventually(Duration::from_secs(10), "canary fallback", || async {
        h.admin_json("/admin/v1/services/web").await["canary_fallback"] == true
    })
    .await;
    for _ in 0..100 {
        let (status, version, _) = h.get("/", &[]).await;
        assert_eq!((status, version.as_str()), (200, "v1"));
    }
    eventually(
        Duration::from_secs(5),
        "pool availability event",
        || async {
            h.events("pool_availability").await.iter().any(|e| {
                e["version"] == "v2"
                    && e["available"] == false
                    && e["effect"] == "canary traffic goes to stable"
            })
        },
    )
    .await;
    let metrics = h
        .http
        .get(h.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("backout_canary_fallback_total{service=\"web\"}"),
        "{metrics}"
    );

    // Readmitted after success_threshold successes.
    h.app("v2-a").set_ready(true);
    h.app("v2-b").set_ready(true);
    eventually(Duration::from_secs(10), "canary back", || async {
        h.admin_json("/admin/v1/services/web").await["canary_fallback"] == false
    })
    .await;
    eventually(Duration::from_secs(10), "v2 serves again", || async {
        h.get("/", &[]).await.1 == "v2"
    })
    .await;
    let changes = h.events("probe_changed").await;
    assert!(
        changes
            .iter()
            .any(|e| e["endpoint"].as_str().is_some() && e["passing"] == false)
    );
    assert!(changes.iter().any(|e| e["passing"] == true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_waits_for_startup() {
    let yaml = "name: web
probes:
  startup: {path: /ready, period: 100ms, timeout: 100ms, failure_threshold: 3}
  liveness: {path: /live, period: 100ms, timeout: 100ms, failure_threshold: 1}
pools: {v1: {endpoints: [$v1]}}
route: {stable: v1}
";
    // Not started yet: liveness failures do not count, no traffic flows.
    let h = Harness::start_with(&[yaml], |_, app| app.set_ready(false)).await;
    let status = h.admin_json("/admin/v1/services/web").await;
    let ep = &status["pools"][0]["endpoints"][0];
    assert_eq!(
        (ep["started"].clone(), ep["available"].clone()),
        (false.into(), false.into())
    );
    let (code, _, body) = h.get("/", &[]).await;
    assert_eq!(code, 503);
    assert!(
        body.contains("no endpoint of version v1 is ready"),
        "{body}"
    );
    eventually(Duration::from_secs(5), "startup failure reported", || async {
        h.admin_json("/admin/v1/services/web").await["pools"][0]["endpoints"][0]["startup_failed"] == true
    })
    .await;
    h.app("v1").set_ready(true);
    eventually(Duration::from_secs(5), "started", || async {
        h.get("/", &[]).await.0 == 200
    })
    .await;
    h.app("v1").set_live(false);
    eventually(Duration::from_secs(5), "liveness takes it out", || async {
        h.get("/", &[]).await.0 == 503
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoints_are_ejected_with_growing_backoff() {
    let yaml = "name: web
version_header: x-backout-version
outlier: {consecutive_failures: 3, base_ejection: 1s, max_ejection: 10s}
breaker: {enabled: false}
pools: {v1: {endpoints: [$v1-good, $v1-bad]}}
route: {stable: v1}
";
    let h = Harness::start(yaml).await;
    h.app("v1-bad").set_error_rate(1.0);
    let mut errors = 0;
    for _ in 0..50 {
        if h.get("/", &[]).await.0 == 500 {
            errors += 1;
        }
    }
    // Three in a row eject it; with P2C it takes a few requests to get there.
    assert!(
        (3..20).contains(&errors),
        "errors before ejection: {errors}"
    );
    let ejected = h.events("endpoint_ejected").await;
    assert_eq!(ejected.len(), 1, "{ejected:?}");
    assert_eq!(ejected[0]["for_ms"], 1000);
    // It comes back after the back-off, fails again, and stays out longer.
    eventually(Duration::from_secs(10), "second ejection", || async {
        h.get("/", &[]).await;
        h.events("endpoint_ejected").await.len() == 2
    })
    .await;
    assert_eq!(h.events("endpoint_ejected").await[1]["for_ms"], 2000);
    // The last good endpoint is never ejected, however it fails.
    h.app("v1-good").set_error_rate(1.0);
    for _ in 0..50 {
        h.get("/", &[]).await;
    }
    let s = h.admin_json("/admin/v1/services/web").await;
    assert!(
        s["pools"][0]["available_endpoints"].as_u64().unwrap() >= 1,
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_fails_fast_and_recovers() {
    let yaml = "name: web
outlier: {enabled: false}
breaker: {failure_rate: 50, min_requests: 10, consecutive_failures: 5, cooldown: 500ms, half_open_requests: 2}
pools: {v1: {endpoints: [$v1]}}
route: {stable: v1}
";
    let h = Harness::start(yaml).await;
    h.app("v1").set_error_rate(1.0);
    let mut codes = Vec::new();
    for _ in 0..10 {
        let resp = h.http.get(h.url("/")).send().await.unwrap();
        let reason = resp
            .headers()
            .get("x-backout-error")
            .map(|v| v.to_str().unwrap().to_string());
        codes.push((resp.status().as_u16(), reason));
    }
    assert_eq!(codes[..5], vec![(500, None); 5]);
    assert_eq!(codes[5], (503, Some("breaker".into())), "{codes:?}");
    let served = h.app("v1").requests();
    assert_eq!(
        served, 5,
        "the open breaker keeps requests away from the version"
    );

    h.app("v1").set_error_rate(0.0);
    eventually(Duration::from_secs(5), "closed again", || async {
        h.get("/", &[]).await.0 == 200
    })
    .await;
    for _ in 0..5 {
        h.get("/", &[]).await;
    }
    let states: Vec<String> = h
        .events("breaker_transition")
        .await
        .iter()
        .map(|e| e["to"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states, ["open", "half_open", "closed"]);
    let metrics = h
        .http
        .get(h.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("backout_breaker_state{service=\"web\",state=\"closed\",version=\"v1\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains(
        "backout_breaker_transitions_total{service=\"web\",to=\"open\",version=\"v1\"} 1"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_canary_breaker_sends_canary_traffic_to_stable() {
    let yaml = "name: web
version_header: x-backout-version
outlier: {enabled: false}
breaker: {consecutive_failures: 3, cooldown: 60s}
pools: {v1: {endpoints: [$v1]}, v2: {endpoints: [$v2]}}
route: {stable: v1, canary: v2, canary_weight: 100}
";
    let h = Harness::start(yaml).await;
    h.app("v2").set_error_rate(1.0);
    for _ in 0..3 {
        assert_eq!(h.get("/", &[]).await.0, 500);
    }
    for _ in 0..20 {
        assert_eq!(h.get("/", &[]).await, (200, "v1".into(), "v1\n".into()));
    }
    assert_eq!(
        h.admin_json("/admin/v1/services/web").await["canary_fallback"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bulkhead_turns_away_excess_requests_at_once() {
    let yaml = "name: web
bulkhead: {max_concurrent: 2}
pools: {v1: {endpoints: [$v1]}}
route: {stable: v1}
";
    let h = Harness::start(yaml).await;
    let mut slow = Vec::new();
    for _ in 0..2 {
        let (c, u) = (h.http.clone(), h.url("/slow/1000"));
        slow.push(tokio::spawn(async move {
            c.get(u).send().await.unwrap().status().as_u16()
        }));
    }
    eventually(Duration::from_secs(5), "two in flight", || async {
        h.admin_json("/admin/v1/services/web").await["pools"][0]["in_flight"] == 2
    })
    .await;
    let (status, _, body) = h.get("/", &[]).await;
    assert_eq!(status, 503);
    assert!(
        body.contains("bulkhead full") && body.contains("max_concurrent 2"),
        "{body}"
    );
    for s in slow {
        assert_eq!(s.await.unwrap(), 200);
    }
    assert_eq!(h.get("/", &[]).await.0, 200, "capacity is back");
    let w = h.admin_json("/admin/v1/services/web/windows").await;
    let rejected: u64 = w["versions"][0]["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["rejected"]["bulkhead"].as_u64().unwrap())
        .sum();
    assert_eq!(rejected, 1);
}
