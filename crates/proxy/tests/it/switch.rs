//! The atomic switch: route changes under load lose no request, and every
//! change reports when it took effect.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::support::{Harness, two_pools};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_switches_under_load_fail_no_request() {
    let h = Harness::start(&two_pools("")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for _ in 0..16 {
        let (client, url) = (h.http.clone(), h.url("/"));
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let result = match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        r.bytes().await.map(|_| ()).map_err(|e| e.to_string())
                    }
                    Ok(r) => Err(format!("status {}", r.status())),
                    Err(e) => Err(e.to_string()),
                };
                match result {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("failed request: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    let mut last_generation = 0;
    for i in 0..1000 {
        // Swing the weight, and every so often swap which version is stable.
        let (stable, canary) = if (i / 100) % 2 == 0 {
            ("v1", "v2")
        } else {
            ("v2", "v1")
        };
        let body = format!(
            r#"{{"stable":"{stable}","canary":"{canary}","canary_weight":{}}}"#,
            (i * 37) % 101
        );
        let (status, applied) = h.put_route("web", &body).await;
        assert_eq!(status, 200, "{applied}");
        let generation = applied["generation"].as_u64().unwrap();
        assert!(generation > last_generation);
        last_generation = generation;
        assert!(applied["applied_at_unix_us"].as_u64().unwrap() > 0);
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during switches"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 1000,
        "the load generator ran throughout"
    );
    assert_eq!(h.events("route_changed").await.len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_sends_everything_to_stable_at_once() {
    let h = Harness::start(&two_pools("")).await;
    h.put_route(
        "web",
        r#"{"stable":"v1","canary":"v2","canary_weight":60,"rules":[{"header":"x-group","equals":"staff","to":"canary"}]}"#,
    )
    .await;
    let resp = h
        .http
        .post(h.admin_url("/admin/v1/services/web/rollback"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let applied: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(applied["route"]["canary_weight"], 0.0);
    assert_eq!(applied["route"]["rules"].as_array().unwrap().len(), 0);
    assert!(applied["swap_ns"].as_u64().is_some());
    for _ in 0..100 {
        assert_eq!(h.get("/", &[("x-group", "staff")]).await.1, "v1");
    }
    let route = h.admin_json("/admin/v1/services/web/route").await;
    assert_eq!(route["generation"], applied["generation"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_keeps_the_version_it_was_routed_to() {
    let h = Harness::start(&two_pools("")).await;
    h.put_route(
        "web",
        r#"{"stable":"v1","canary":"v2","canary_weight":100}"#,
    )
    .await;
    // A slow request starts on v2 …
    let slow = {
        let (client, url) = (h.http.clone(), h.url("/slow/400"));
        tokio::spawn(async move {
            let r = client.get(url).send().await.unwrap();
            let v = r.headers()["x-backout-version"]
                .to_str()
                .unwrap()
                .to_string();
            (r.status().as_u16(), v, r.text().await.unwrap())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // … the route flips to v1 while it is in flight …
    h.put_route("web", r#"{"stable":"v1","canary":"v2","canary_weight":0}"#)
        .await;
    assert_eq!(
        h.get("/", &[]).await.1,
        "v1",
        "new requests see the new table at once"
    );
    // … and it finishes where it started.
    assert_eq!(
        slow.await.unwrap(),
        (200, "v2".to_string(), "v2\n".to_string())
    );
}
