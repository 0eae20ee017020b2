//! The accept loop every control listener runs instead of `axum::serve`:
//! HTTP/1.1 (with upgrades, for WebSockets) under [`Limits`], error bodies
//! in the listener's [`ErrorStyle`], the client's address in every request,
//! and a shutdown that waits for requests in flight, but not for ever.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use http::{Request, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::Peer;
use crate::credentials::{Failure, Tokens};
use crate::errors::{ErrorStyle, json_errors};
use crate::limits::{Deadline, Limits};
use crate::origin::{self, Hosts};
use crate::tls::Tls;

/// How one control listener serves.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub limits: Limits,
    pub errors: ErrorStyle,
    /// The `Host` names it answers to ([`Hosts::Any`] when it checks
    /// credentials).
    pub hosts: Hosts,
    /// Tokens every request needs but the health checks (`/healthz`,
    /// `/readyz`); `None` when the handlers check credentials themselves,
    /// or nobody does.
    pub tokens: Option<Tokens>,
    /// HTTPS instead of plain HTTP.
    pub tls: Option<Tls>,
}

/// What answers without a token on every listener.
const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// The largest request head (request line and headers) hyper buffers.
const MAX_HEAD: usize = 64 * 1024;

/// Serves `app` on `listener` until `shutdown` completes, then lets
/// requests in flight finish for up to `limits.drain`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let settings = Arc::new(settings);
    // A renewed certificate is picked up while serving.
    let _watch = settings.tls.as_ref().map(|tls| {
        let task = tokio::spawn(Arc::clone(&tls.certs).watch());
        AbortOnDrop(task)
    });
    let slots = Arc::new(Semaphore::new(settings.limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait for
                        // connections to close rather than spin.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                match Arc::clone(&slots).try_acquire_owned() {
                    Ok(slot) => {
                        let (app, settings, stop) = (app.clone(), Arc::clone(&settings), stop_rx.clone());
                        tasks.spawn(async move {
                            let _ = stream.set_nodelay(true);
                            match settings.tls.clone() {
                                None => connection(stream, peer, app, settings, stop).await,
                                Some(tls) => {
                                    // The handshake counts against the
                                    // header timeout: a client that stalls in
                                    // it holds the slot no longer.
                                    let limit = settings.limits.header_timeout;
                                    match tokio::time::timeout(limit, tls.acceptor.accept(stream)).await {
                                        Ok(Ok(stream)) => connection(stream, peer, app, settings, stop).await,
                                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                                    }
                                }
                            }
                            drop(slot);
                        });
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "connection refused: at the connection limit");
                        // Over TLS a plain answer would be noise: just close.
                        if settings.tls.is_none() {
                            tasks.spawn(refuse(stream, settings.errors, settings.limits.max_connections));
                        }
                    }
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(settings.limits.drain, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(
            open = tasks.len(),
            "closing the connections still open after the drain"
        );
        tasks.abort_all();
    }
    Ok(())
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One connection, HTTP/1.1 with upgrades, over TCP or TLS.
async fn connection<IO>(
    stream: IO,
    peer: SocketAddr,
    app: Router,
    settings: Arc<Settings>,
    mut stop: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let limits = settings.limits.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (app, settings) = (app.clone(), Arc::clone(&settings));
        async move { Ok::<_, Infallible>(handle(req, peer, app, &settings).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let stopping = async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        }
        () = stopping => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// One request: refused early when its declared body is too large,
/// otherwise passed to the router with a bounded body and the client's
/// address, and its error answered in the listener's shape.
async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    app: Router,
    settings: &Settings,
) -> Response {
    let limits = &settings.limits;
    if let Err(refusal) = origin::check(req.method(), req.headers(), &settings.hosts) {
        tracing::warn!(%peer, "refused {} {}: {}", req.method(), req.uri().path(), refusal.message);
        return settings.errors.response(refusal.status, &refusal.message);
    }
    if let Some(tokens) = &settings.tokens
        && !OPEN_PATHS.contains(&req.uri().path())
        && let Err(failure) = tokens.check(req.headers())
    {
        tokens.failures().record(
            failure,
            Some(peer),
            req.method().as_str(),
            req.uri().path(),
            None,
        );
        let message = match failure {
            Failure::Missing | Failure::Malformed => {
                "this endpoint needs a token: send `Authorization: Bearer <token>`"
            }
            Failure::Unknown | Failure::Forbidden => "unknown token",
        };
        let mut resp = settings.errors.response(StatusCode::UNAUTHORIZED, message);
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"backout\""),
        );
        return resp;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > limits.max_body as u64) {
        // A client that is still sending would see its connection reset,
        // and not this answer, if the body were left unread; so a body of
        // reasonable size is read and thrown away, within the body timeout.
        if n <= DRAIN_BODY {
            tokio::spawn(discard(req.into_body(), limits.body_timeout));
        }
        return settings.errors.response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "the request body ({n} bytes) is larger than the {} bytes this server accepts",
                limits.max_body
            ),
        );
    }
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(Peer(peer));
    if let Some(tokens) = &settings.tokens {
        // For the listener's `/metrics`.
        parts.extensions.insert(Arc::clone(tokens.failures()));
    }
    parts.extensions.insert(ConnectInfo(peer));
    let body =
        http_body_util::Limited::new(Deadline::new(body, limits.body_timeout), limits.max_body);
    let req = Request::from_parts(parts, Body::new(body));
    let resp = match app.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    json_errors(resp, settings.errors).await
}

/// The largest refused body read to the end so that its sender sees the
/// 413; a larger one gets the connection closed under it.
const DRAIN_BODY: u64 = 16 << 20;

async fn discard(mut body: Incoming, timeout: Duration) {
    use http_body_util::BodyExt;
    let _ = tokio::time::timeout(timeout, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
}

/// Answers a connection over the limit with 503 and closes it. The answer
/// waits for the request's head (a client that is sent a response before
/// its request takes it for garbage), but only for a second, so a slow
/// client gets no hold on the connection.
async fn refuse(mut stream: TcpStream, style: ErrorStyle, max: usize) {
    use tokio::io::AsyncReadExt;
    let body = style.body(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("this server is at its limit of {max} connections; try again shortly"),
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut head = Vec::with_capacity(1024);
    let read_head = async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), read_head).await;
    let answer = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what else the client sent before closing: closing with
        // unread bytes makes the kernel reset the connection, and the
        // client might never see the answer.
        let mut sink = [0u8; 4096];
        let mut left: usize = 64 * 1024;
        while left > 0 {
            let n = stream.read(&mut sink).await?;
            if n == 0 {
                break;
            }
            left = left.saturating_sub(n);
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}
