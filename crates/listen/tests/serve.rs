//! The accept loop with real sockets on loopback.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::get;
use backout_listen::{Limits, Settings, serve};
use http::{Request, StatusCode, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Starts `app` with a short header timeout; returns its address and the
/// sender that stops it.
async fn start(
    app: Router,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let settings = Settings {
        limits: Limits {
            header_timeout: Duration::from_millis(200),
            drain: Duration::from_millis(500),
            ..Limits::default()
        },
        ..Settings::default()
    };
    let task = tokio::spawn(async move {
        serve(listener, app, settings, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (addr, tx, task)
}

/// An upgrade that echoes what it reads, as a WebSocket would carry
/// frames for as long as both sides like.
async fn echo_upgrade(mut req: Request<Body>) -> Response {
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let mut io = hyper_util::rt::TokioIo::new(upgraded);
            let mut buf = [0u8; 64];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "echo")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn an_upgraded_connection_outlives_the_header_timeout() {
    let (addr, _stop, _task) = start(Router::new().route("/echo", get(echo_upgrade))).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /echo HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "{head:?}");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // Idle for five header timeouts: the upgraded stream is not reading
    // request heads any more, so nothing cuts it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let (addr, _stop, _task) = start(Router::new().route("/", get(|| async { "ok" }))).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Then silence: the server closes its side.
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the server closes an idle connection");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_stream_that_never_ends() {
    let forever = || async {
        let stream = futures_util::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
        Response::new(Body::from_stream(stream))
    };
    let (addr, stop, task) = start(Router::new().route("/forever", get(forever))).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /forever HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("serve returns after the drain")
        .unwrap();
}
