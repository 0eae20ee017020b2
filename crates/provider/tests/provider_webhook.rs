//! The webhook provider against a real HTTP server on loopback.

use axum::Router;
use axum::extract::Json;
use axum::http::StatusCode;
use axum::routing::post;
use backout_provider::{MetricProvider, ProviderError, WebhookProvider, WindowQuery};
use std::time::Duration;

/// Serves `app` on a free loopback port; returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    format!("http://{addr}")
}

fn query() -> WindowQuery {
    WindowQuery {
        service: "checkout".into(),
        since_ms: 1_700_000_000_000,
        until_ms: 1_700_000_010_000,
    }
}

async fn fetch(url: &str, timeout_ms: u64) -> Result<backout_provider::GroupSeries, ProviderError> {
    let p = WebhookProvider::new("kpi", url, Duration::from_millis(timeout_ms)).expect("client");
    p.fetch(&query()).await
}

#[tokio::test]
async fn reads_windows_and_sends_the_query() {
    let app = Router::new().route(
        "/windows",
        post(|Json(q): Json<serde_json::Value>| async move {
            // Echo the query back inside a metric, to prove it was sent.
            let since = q["since_ms"].as_i64().unwrap_or(-1);
            let service_ok = q["service"] == "checkout";
            Json(serde_json::json!({
                "baseline": [{"start_ms": since, "requests": 100, "errors": 1, "latency_ms": [10.0, 12.5],
                              "metrics": {"cpu": 0.4}}],
                "canary": [{"start_ms": since, "requests": 10, "errors": 0,
                            "metrics": {"cpu": 0.5, "service_ok": if service_ok { 1.0 } else { 0.0 }},
                            "extra_field_from_newer_peer": true}],
            }))
        }),
    );
    let base = serve(app).await;
    let got = fetch(&format!("{base}/windows"), 2000)
        .await
        .expect("fetch");
    assert_eq!(got.baseline.len(), 1);
    assert_eq!(got.baseline[0].start_ms, 1_700_000_000_000);
    assert_eq!(got.baseline[0].requests, 100);
    assert_eq!(got.baseline[0].latency_ms, vec![10.0, 12.5]);
    assert_eq!(got.canary[0].metrics.get("cpu"), Some(&0.5));
    assert_eq!(got.canary[0].metrics.get("service_ok"), Some(&1.0));
    let mut window = backout_judge::Window::default();
    got.fold_into(&mut window);
    assert_eq!(
        (window.baseline.requests, window.canary.requests),
        (100, 10)
    );
}

#[tokio::test]
async fn errors_say_what_went_wrong() {
    let app = Router::new()
        .route("/boom", post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "database is down") }))
        .route(
            "/bad",
            post(|| async { Json(serde_json::json!({"baseline": [], "canary": [{"start_ms": 1, "requests": "many"}]})) }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                Json(serde_json::json!({"baseline": [], "canary": []}))
            }),
        );
    let base = serve(app).await;

    let e = fetch(&format!("{base}/boom"), 2000).await.expect_err("500");
    assert!(
        matches!(e, ProviderError::Status { status: 500, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("database is down"), "{e}");

    let e = fetch(&format!("{base}/bad"), 2000)
        .await
        .expect_err("bad body");
    assert!(matches!(e, ProviderError::Decode { .. }), "{e}");
    assert!(e.to_string().contains("at `canary[0].requests`"), "{e}");

    let e = fetch(&format!("{base}/slow"), 200)
        .await
        .expect_err("timeout");
    assert!(matches!(e, ProviderError::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("did not answer within 200ms"), "{e}");

    // A port nothing listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let e = fetch(&format!("http://127.0.0.1:{port}/x"), 2000)
        .await
        .expect_err("refused");
    assert!(matches!(e, ProviderError::Connect { .. }), "{e}");
    assert!(e.to_string().contains("cannot connect"), "{e}");
}
