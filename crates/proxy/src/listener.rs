//! A data-plane listener: accepts connections, speaks HTTP/1.1 (with
//! upgrades) and HTTP/2 with prior knowledge on the same port, and drains
//! in-flight requests on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::forward;
use crate::router::ServiceIndex;

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Slow or idle clients cannot hold a connection open forever before
/// sending their request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves until `shutdown` turns true, then waits up to `drain` for
/// in-flight requests to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    index: Arc<ServiceIndex>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let connections = TaskTracker::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off
                        // briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                connections.spawn(connection(stream, client, Arc::clone(&index), shutdown.clone()));
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    connections.close();
    tokio::select! {
        () = connections.wait() => tracing::info!("listener drained"),
        () = tokio::time::sleep(drain) => tracing::warn!(drain = ?drain, "drain timeout; closing remaining connections"),
    }
}

/// One client connection, HTTP/1.1 or HTTP/2 by its first bytes.
///
/// The protocols are served by separate hyper builders rather than one
/// that handles both, because a connection's state then only takes the
/// memory of the protocol it speaks (HTTP/2's is several KiB larger, which
/// adds up over thousands of idle keep-alive connections).
async fn connection(
    stream: TcpStream,
    client: SocketAddr,
    index: Arc<ServiceIndex>,
    shutdown: watch::Receiver<bool>,
) {
    // Boxed: hyper keeps the service future's slot for the connection's whole
    // life, so an idle keep-alive connection holds a pointer instead of the
    // whole request state machine.
    let svc = service_fn(move |req| Box::pin(forward::handle(Arc::clone(&index), req, client)));
    // A client that connects and says nothing is closed after the header
    // timeout, and at once on shutdown: it has no request to drain.
    let mut stop = shutdown.clone();
    let sniffed = tokio::select! {
        r = tokio::time::timeout(HEADER_READ_TIMEOUT, is_h2(&stream)) => {
            r.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        }
        _ = stop.changed() => return,
    };
    match sniffed {
        Ok(false) => {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .keep_alive(true)
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            drive(conn, shutdown, |c| c.graceful_shutdown(), client).await;
        }
        Ok(true) => {
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_concurrent_streams(1024);
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            Box::pin(drive(conn, shutdown, |c| c.graceful_shutdown(), client)).await;
        }
        Err(e) => {
            tracing::debug!(client = %client, error = %e, "connection closed before a request")
        }
    }
}

/// Runs a connection to completion; on shutdown asks it to finish the
/// requests in flight and close.
async fn drive<C, E>(
    conn: C,
    mut shutdown: watch::Receiver<bool>,
    stop: fn(Pin<&mut C>),
    client: SocketAddr,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.changed() => {
            stop(conn.as_mut());
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %client, error = %e, "connection ended with an error");
    }
}

/// Looks at the first bytes without consuming them: the HTTP/2 preface or
/// anything else (HTTP/1.1). Most requests decide on the first byte or two.
async fn is_h2(stream: &TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; 24];
    let deadline = tokio::time::Instant::now() + HEADER_READ_TIMEOUT;
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // A prefix of the preface so far: wait for more bytes. `peek` would
        // return the same bytes at once, so poll gently.
        if tokio::time::Instant::now() > deadline {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Binds a listener with a deep backlog, as a std socket (no runtime
/// needed) that a worker thread adopts into its own runtime. With
/// `reuse_port`, several sockets (one per worker) share the address and the
/// kernel spreads new connections over them.
pub(crate) fn bind_std(
    addr: SocketAddr,
    reuse_port: bool,
) -> std::io::Result<std::net::TcpListener> {
    let domain = match addr {
        SocketAddr::V4(_) => socket2::Domain::IPV4,
        SocketAddr::V6(_) => socket2::Domain::IPV6,
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}
