//! The Prometheus provider against a real `prometheus` server on loopback,
//! scraping a small exporter this test serves.

use axum::Router;
use axum::routing::get;
use backout_provider::{
    MetricProvider, PrometheusProvider, PrometheusQuery, ProviderError, WindowQuery,
};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const EXPOSITION: &str = "\
# TYPE app_requests_total counter
app_requests_total{version=\"stable\"} 1000
app_requests_total{version=\"canary\"} 100
# TYPE app_errors_total counter
app_errors_total{version=\"stable\"} 10
app_errors_total{version=\"canary\"} 7
# TYPE app_cpu gauge
app_cpu{version=\"stable\"} 0.25
app_cpu{version=\"canary\"} 0.75
";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn now_ms() -> i64 {
    #[allow(clippy::disallowed_methods)] // a test at the edge, against a real server's clock
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Starts the exporter and Prometheus; `None` (with a printed reason) when
/// the binary is missing outside the strict test run.
async fn start() -> Option<(Server, String, tempfile::TempDir)> {
    let binary = std::env::var("BACKOUT_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    if Command::new(&binary).arg("--version").output().is_err() {
        let msg = format!(
            "`{binary}` not found; install the Debian package `prometheus` (scripts/test does)"
        );
        if std::env::var("BACKOUT_TEST_STRICT").is_ok_and(|v| v == "1") {
            panic!("{msg}");
        }
        eprintln!("skipping: {msg}");
        return None;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind exporter");
    let exporter = listener.local_addr().expect("exporter addr");
    tokio::spawn(async move {
        let app = Router::new().route("/metrics", get(|| async { EXPOSITION }));
        axum::serve(listener, app).await.expect("exporter");
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{exporter}']\n"
        ),
    )
    .expect("write config");
    let port = free_port();
    let child = Command::new(&binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let server = Server(child);
    let address = format!("http://127.0.0.1:{port}");
    // Wait until it has scraped the exporter at least once.
    let client = reqwest::Client::new();
    for _ in 0..120 {
        let url = format!("{address}/api/v1/query?query=app_cpu");
        if let Ok(r) = client.get(&url).send().await
            && let Ok(body) = r.text().await
            && body.contains("canary")
        {
            return Some((server, address, dir));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("prometheus at {address} did not scrape the exporter within 30 s");
}

fn q(metric: &str, baseline: &str, canary: &str) -> PrometheusQuery {
    PrometheusQuery {
        metric: metric.into(),
        baseline: baseline.into(),
        canary: canary.into(),
    }
}

fn span(seconds: i64) -> WindowQuery {
    let until = now_ms();
    WindowQuery {
        service: "app".into(),
        since_ms: until - seconds * 1000,
        until_ms: until,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_a_real_prometheus() {
    let Some((_server, address, _dir)) = start().await else {
        return;
    };
    let timeout = Duration::from_secs(5);

    // Instant queries: one window per group, counts and metrics filled.
    let p = PrometheusProvider::new(
        "prom",
        &address,
        vec![
            q(
                "requests",
                r#"sum(app_requests_total{version="stable"})"#,
                r#"sum(app_requests_total{version="canary"})"#,
            ),
            q(
                "errors",
                r#"sum(app_errors_total{version="stable"})"#,
                r#"sum(app_errors_total{version="canary"})"#,
            ),
            q(
                "cpu",
                r#"max(app_cpu{version="stable"})"#,
                r#"max(app_cpu{version="canary"})"#,
            ),
        ],
        None,
        timeout,
    )
    .expect("provider");
    let got = p.fetch(&span(10)).await.expect("instant fetch");
    assert_eq!(got.baseline.len(), 1, "{got:?}");
    assert_eq!(
        (got.baseline[0].requests, got.baseline[0].errors),
        (1000, 10)
    );
    assert_eq!((got.canary[0].requests, got.canary[0].errors), (100, 7));
    assert_eq!(got.canary[0].metrics.get("cpu"), Some(&0.75));
    assert_eq!(got.baseline[0].metrics.get("cpu"), Some(&0.25));

    // Range queries: one window per step, each with the value.
    let p = PrometheusProvider::new(
        "prom",
        &address,
        vec![q(
            "cpu",
            r#"max(app_cpu{version="stable"})"#,
            r#"max(app_cpu{version="canary"})"#,
        )],
        Some(Duration::from_secs(1)),
        timeout,
    )
    .expect("provider");
    let got = p.fetch(&span(3)).await.expect("range fetch");
    assert!(!got.canary.is_empty(), "{got:?}");
    assert!(
        got.canary
            .iter()
            .all(|w| w.metrics.get("cpu") == Some(&0.75)),
        "{got:?}"
    );
    assert!(
        got.canary
            .windows(2)
            .all(|w| w[1].start_ms - w[0].start_ms == 1000),
        "{got:?}"
    );

    // Several series: refuse rather than pick one.
    let p = PrometheusProvider::new(
        "prom",
        &address,
        vec![q("cpu", "app_cpu", "app_cpu")],
        None,
        timeout,
    )
    .expect("provider");
    let e = p.fetch(&span(10)).await.expect_err("two series");
    assert!(matches!(e, ProviderError::Query { .. }), "{e}");
    assert!(e.to_string().contains("returned 2 series"), "{e}");

    // A syntax error: Prometheus's own message comes through.
    let p = PrometheusProvider::new(
        "prom",
        &address,
        vec![q("cpu", "sum(", "sum(")],
        None,
        timeout,
    )
    .expect("provider");
    let e = p.fetch(&span(10)).await.expect_err("bad promql");
    assert!(e.to_string().contains("Prometheus says bad_data"), "{e}");
}
