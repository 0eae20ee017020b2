//! Failures are attributed to the side that caused them: the version
//! (upstream: connect, reset, timeout) or the client (downstream).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{Harness, eventually, local};

/// Sums one field over every window of one version.
async fn window_sum(h: &Harness, version: &str, pick: impl Fn(&serde_json::Value) -> u64) -> u64 {
    let w = h.admin_json("/admin/v1/services/web/windows?since=0").await;
    w["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["version"] == version)
        .flat_map(|v| v["windows"].as_array().unwrap().clone())
        .map(|w| pick(&w))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_the_versions_errors() {
    // A port nobody listens on, and a server that hangs up on every request.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let rude = TcpListener::bind(local()).await.unwrap();
    let rude_addr = rude.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = rude.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    let yaml = format!(
        "name: web
timeouts: {{request: 300ms}}
outlier: {{enabled: false}}
breaker: {{enabled: false}}
pools:
  refused: {{endpoints: ['http://{refused}']}}
  rude: {{endpoints: ['http://{rude_addr}']}}
  slow: {{endpoints: [$slow]}}
route: {{stable: slow, canary: refused, canary_weight: 0, rules: [
  {{header: x-to, equals: refused, to: canary}}]}}
"
    );
    let h = Harness::start(&yaml).await;
    let resp = h
        .http
        .get(h.url("/"))
        .header("x-to", "refused")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["x-backout-error"], "upstream-connect");
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("version refused") && body.contains(&refused.to_string()),
        "{body}"
    );

    let (status, _, body) = h.get("/slow/2000", &[]).await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("no response headers within 300ms"), "{body}");

    h.put_route(
        "web",
        r#"{"stable":"slow","canary":"rude","canary_weight":100}"#,
    )
    .await;
    let resp = h.http.get(h.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["x-backout-error"], "upstream-reset");

    assert_eq!(
        window_sum(&h, "refused", |w| w["upstream_failures"]["connect"]
            .as_u64()
            .unwrap())
        .await,
        1
    );
    assert_eq!(
        window_sum(&h, "slow", |w| w["upstream_failures"]["timeout"]
            .as_u64()
            .unwrap())
        .await,
        1
    );
    assert_eq!(
        window_sum(&h, "rude", |w| w["upstream_failures"]["reset"]
            .as_u64()
            .unwrap())
        .await,
        1
    );
    for v in ["refused", "slow", "rude"] {
        assert_eq!(
            window_sum(&h, v, |w| w["errors"].as_u64().unwrap()).await,
            1,
            "{v}"
        );
    }
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
        metrics.contains(
            r#"backout_upstream_failures_total{kind="connect",service="web",version="refused"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_is_not_the_versions_fault() {
    let h =
        Harness::start("name: web\npools: {v1: {endpoints: [$v1]}}\nroute: {stable: v1}\n").await;
    // Ask for a large body, read a little, hang up.
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"GET /bytes/1000000000 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let _ = s.read(&mut buf).await.unwrap();
    drop(s);
    eventually(
        Duration::from_secs(5),
        "downstream failure recorded",
        || async {
            window_sum(&h, "v1", |w| w["downstream_failures"].as_u64().unwrap()).await == 1
        },
    )
    .await;
    assert_eq!(
        window_sum(&h, "v1", |w| w["errors"].as_u64().unwrap()).await,
        0
    );
    // 4xx are the client's too.
    assert_eq!(h.get("/status/404", &[]).await.0, 404);
    assert_eq!(
        window_sum(&h, "v1", |w| w["errors"].as_u64().unwrap()).await,
        0
    );
    assert_eq!(h.get("/status/503", &[]).await.0, 503);
    assert_eq!(
        window_sum(&h, "v1", |w| w["errors"].as_u64().unwrap()).await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_never_take_the_proxy_down() {
    let h =
        Harness::start("name: web\npools: {v1: {endpoints: [$v1]}}\nroute: {stable: v1}\n").await;
    let mut rng = fastrand::Rng::with_seed(42);
    let nasty: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        b"GET /\x00\xff HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
        b"GET http://[::1 HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999999999999\r\n\r\n".to_vec(),
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nhost: x\r\nx-forwarded-for: \xff\xfe\r\ncookie: \xff=\xff\r\n\r\n"
            .to_vec(),
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00garbage".to_vec(),
        format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(100_000)).into_bytes(),
        format!("GET / HTTP/1.1\r\n{}\r\n", "x-h: v\r\n".repeat(10_000)).into_bytes(),
    ];
    let random = (0..200).map(|_| {
        let len = rng.usize(0..2000);
        (0..len).map(|_| rng.u8(..)).collect::<Vec<u8>>()
    });
    for bytes in nasty.into_iter().chain(random) {
        let Ok(mut s) = tokio::net::TcpStream::connect(h.addr).await else {
            panic!("proxy stopped accepting")
        };
        let _ = s.write_all(&bytes).await;
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await;
    }
    assert_eq!(h.get("/", &[]).await.0, 200, "the proxy still serves");
}
