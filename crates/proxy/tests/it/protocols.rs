//! Correct proxying: HTTP/2 both sides, streaming bodies, WebSocket
//! upgrades, forwarding headers, graceful shutdown.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Harness, local};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_on_the_listener_and_to_upstreams() {
    let yaml = "name: web\nversion_header: x-backout-version\npools:\n  v1: {protocol: h2c, endpoints: [$v1]}\n  v2: {endpoints: [$v2]}\nroute: {stable: v1, canary: v2, canary_weight: 0, rules: [{header: x-h1, equals: '1', to: canary}]}\n";
    let h = Harness::start(yaml).await;
    let h2: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let resp = h2.get(h.url("/headers").parse().unwrap()).await.unwrap();
    assert_eq!(
        resp.version(),
        http::Version::HTTP_2,
        "the listener speaks h2c"
    );
    assert_eq!(resp.headers()["x-backout-version"], "v1");
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains("version: HTTP/2.0"), "h2c upstream: {text}");
    assert!(text.contains("x-forwarded-proto: http"), "{text}");
    // An HTTP/2 client reaching an HTTP/1.1 pool still names its host.
    let req = http::Request::get(h.url("/headers"))
        .header("x-h1", "1")
        .body(Empty::new())
        .unwrap();
    let resp = h2.request(req).await.unwrap();
    assert_eq!(resp.headers()["x-backout-version"], "v2");
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains("version: HTTP/1.1"), "{text}");
    assert!(text.contains(&format!("host: {}", h.addr)), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_and_hop_by_hop_handling() {
    // The client stands for a proxy in front, whose X-Forwarded-For is
    // appended to (see routing.rs for clients that are not trusted).
    let h = Harness::start(
        "name: web\ntrusted_proxies: [127.0.0.1]\npools: {v1: {endpoints: [$v1]}}\nroute: {stable: v1}\n",
    )
    .await;
    let text = h
        .http
        .get(h.url("/headers"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "x-private")
        .header("x-private", "secret")
        .header("x-keep", "yes")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1"),
        "{text}"
    );
    assert!(text.contains("x-forwarded-proto: http"));
    assert!(text.contains(&format!("x-forwarded-host: {}", h.addr)));
    assert!(text.contains("x-keep: yes"));
    assert!(
        !text.contains("x-private"),
        "a header named in Connection is hop-by-hop: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways() {
    let h =
        Harness::start("name: web\npools: {v1: {endpoints: [$v1]}}\nroute: {stable: v1}\n").await;
    // 64 MiB each way through the proxy: echo it back and compare.
    let payload: Vec<u8> = (0..64 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let resp = h
        .http
        .post(h.url("/echo"))
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let back = resp.bytes().await.unwrap();
    assert!(
        back == payload,
        "echoed body differs ({} bytes back)",
        back.len()
    );
    let resp = h.http.get(h.url("/bytes/100000000")).send().await.unwrap();
    assert_eq!(resp.content_length(), Some(100_000_000));
    assert_eq!(resp.bytes().await.unwrap().len(), 100_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_pass_through() {
    // A real WebSocket echo server as the upstream.
    let upstream = TcpListener::bind(local()).await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = upstream.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        ws.send(msg).await.unwrap();
                    }
                }
            });
        }
    });
    let yaml = format!(
        "name: web\npools: {{v1: {{endpoints: ['http://{upstream_addr}']}}}}\nroute: {{stable: v1}}\n"
    );
    let h = Harness::start(&yaml).await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/socket", h.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..10 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("hello {i}"))
        );
    }
    ws.send(Message::binary(vec![7u8; 100_000])).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().into_data().len(), 100_000);
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests() {
    let h =
        Harness::start("name: web\npools: {v1: {endpoints: [$v1]}}\nroute: {stable: v1}\n").await;
    let (client, url) = (h.http.clone(), h.url("/slow/500"));
    let in_flight = tokio::spawn(async move {
        let r = client.get(url).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let addr = h.addr;
    let Harness { proxy, apps, .. } = h;
    let shutdown = tokio::spawn(proxy.shutdown());
    tokio::time::sleep(Duration::from_millis(50)).await;
    // New connections are refused while the old request finishes.
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener still open during drain"
    );
    assert_eq!(in_flight.await.unwrap(), (200, "v1\n".to_string()));
    shutdown.await.unwrap();
    drop(apps);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_does_not_hold_up_shutdown() {
    let h =
        Harness::start("name: web\npools: {v1: {endpoints: [$v1]}}\nroute: {stable: v1}\n").await;
    // Connected, never a byte: nothing to drain.
    let silent = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let Harness { proxy, apps, .. } = h;
    // The drain timeout is 5 s; a connection waited on would use it all.
    tokio::time::timeout(Duration::from_secs(4), proxy.shutdown())
        .await
        .expect("shutdown waited for a connection that never sent a request");
    drop((silent, apps));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_not_buffered() {
    // The upstream answers after reading the first chunk; a proxy that
    // buffered the whole body would never deliver it.
    let h =
        Harness::start("name: web\npools: {v1: {endpoints: [$v1]}}\nroute: {stable: v1}\n").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let resp = tokio::spawn({
        let (c, u) = (h.http.clone(), h.url("/echo"));
        async move { c.post(u).body(body).send().await.unwrap() }
    });
    tx.send(Ok(Bytes::from_static(b"first chunk")))
        .await
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .expect("response headers before the request body ended")
        .unwrap();
    let mut body = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first chunk");
    drop(tx);
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
