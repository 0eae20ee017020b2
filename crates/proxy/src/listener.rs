//! A data-plane listener: accepts connections, speaks HTTP/1.1 (with
//! upgrades), HTTP/2 with prior knowledge and TLS (HTTP/1.1 or HTTP/2 by
//! ALPN, see [`crate::tls`]) on the same port, and drains in-flight
//! requests on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::body::ResponseBody;
use crate::forward::{self, Peer, TlsConn};
use crate::registry::SharedIndex;
use crate::tls::DataTls;

/// What an HTTP/2 client sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Slow or idle clients cannot hold a connection open forever before
/// sending their request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves until `shutdown` turns true, then waits up to `drain` for
/// in-flight requests to finish.
pub(crate) async fn serve(
    listener: TcpListener,
    index: SharedIndex,
    tls: DataTls,
    mut shutdown: watch::Receiver<bool>,
    mut gate: watch::Receiver<bool>,
    drain: Duration,
) {
    // Until there is a configuration, connections wait in the backlog.
    tokio::select! {
        opened = gate.wait_for(|open| *open) => if opened.is_err() { return },
        _ = shutdown.changed() => return,
    }
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
                connections.spawn(connection(stream, client, Arc::clone(&index), tls.clone(), shutdown.clone()));
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

/// One client connection, HTTP/1.1, HTTP/2 or TLS by its first bytes.
///
/// The protocols are served by separate hyper builders rather than one
/// that handles both, because a connection's state then only takes the
/// memory of the protocol it speaks (HTTP/2's is several KiB larger, which
/// adds up over thousands of idle keep-alive connections).
async fn connection(
    stream: TcpStream,
    client: SocketAddr,
    index: SharedIndex,
    tls: DataTls,
    shutdown: watch::Receiver<bool>,
) {
    // A client that connects and says nothing is closed after the header
    // timeout, and at once on shutdown: it has no request to drain.
    let mut stop = shutdown.clone();
    let sniffed = tokio::select! {
        r = tokio::time::timeout(HEADER_READ_TIMEOUT, sniff(&stream)) => {
            r.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        }
        _ = stop.changed() => return,
    };
    match sniffed {
        Ok(Sniffed::Http1) => {
            serve_http1(stream, Arc::new(Peer::new(index, client, None)), shutdown).await
        }
        Ok(Sniffed::H2) => {
            let peer = Arc::new(Peer::new(index, client, None));
            Box::pin(serve_h2(stream, peer, shutdown)).await
        }
        Ok(Sniffed::Tls) => Box::pin(serve_tls(stream, client, index, tls, shutdown)).await,
        Err(e) => {
            tracing::debug!(client = %client, error = %e, "connection closed before a request")
        }
    }
}

/// A TLS connection: the handshake (within the header timeout), then
/// HTTP/2 if ALPN chose it, HTTP/1.1 otherwise. TLS connections are not
/// parked: rustls keeps buffers of its own between requests anyway.
async fn serve_tls(
    stream: TcpStream,
    client: SocketAddr,
    index: SharedIndex,
    tls: DataTls,
    shutdown: watch::Receiver<bool>,
) {
    let mut stop = shutdown.clone();
    let accepted = tokio::select! {
        r = tokio::time::timeout(HEADER_READ_TIMEOUT, tls.acceptor.accept(stream)) => r,
        _ = stop.changed() => return,
    };
    let stream = match accepted {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(client = %client, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(client = %client, "TLS handshake timed out");
            return;
        }
    };
    let (_, conn) = stream.get_ref();
    let h2 = conn.alpn_protocol() == Some(b"h2".as_slice());
    let served = tls.sni.pick(conn.server_name()).map(|r| r.files().clone());
    let peer = Arc::new(Peer::new(index, client, Some(TlsConn { served })));
    if h2 {
        Box::pin(serve_h2(stream, peer, shutdown)).await;
    } else {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let idle = Arc::new(IdleState::new());
        let conn = builder
            .serve_connection(TokioIo::new(stream), service(&peer, &idle))
            .with_upgrades();
        drive(conn, shutdown, |c| c.graceful_shutdown(), peer.addr).await;
    }
}

/// The service hyper calls for each request. The forwarding future is boxed:
/// hyper keeps the service future's slot for the connection's whole life,
/// so an idle connection holds a pointer instead of the whole request state
/// machine. The response body carries a guard that counts the request as in
/// flight until hyper drops it.
fn service(
    peer: &Arc<Peer>,
    idle: &Arc<IdleState>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<Tracked>,
    Error = std::convert::Infallible,
    Future = Handled,
> + Clone {
    let peer = Arc::clone(peer);
    let idle = Arc::clone(idle);
    service_fn(move |req| {
        let guard = InFlight::new(&idle);
        let peer = Arc::clone(&peer);
        Box::pin(async move {
            let resp = forward::handle(peer, req).await?;
            Ok(resp.map(|body| Tracked {
                inner: body,
                _guard: guard,
            }))
        }) as Handled
    })
}

/// One request being handled, boxed (see [`service`]).
type Handled =
    Pin<Box<dyn Future<Output = Result<http::Response<Tracked>, std::convert::Infallible>> + Send>>;

/// HTTP/1.1 with keep-alive and upgrades. A connection that has been idle
/// between requests for [`PARK_AFTER`] or more is *parked*: hyper's
/// connection, with its 8 KiB read and 8 KiB write buffers, is taken apart
/// and only the socket is kept, waiting to become readable. The next request
/// gets a fresh hyper connection. Ten thousand idle keep-alive clients then
/// cost a socket and a small task each instead of hyper's buffers, which do
/// not shrink while a connection lives.
async fn serve_http1(mut stream: TcpStream, peer: Arc<Peer>, mut shutdown: watch::Receiver<bool>) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        // Boxed: while parked, the task keeps no room for the serving state.
        stream = match Box::pin(serve_until_parked(stream, &peer, &mut shutdown, &builder)).await {
            Some(s) => s,
            None => return,
        };
        // Parked: the socket alone, until the client speaks, leaves, or has
        // been idle as long as hyper's header timeout would have allowed.
        let woke = tokio::select! {
            r = tokio::time::timeout(HEADER_READ_TIMEOUT.saturating_sub(PARK_AFTER), stream.readable()) => r,
            _ = shutdown.changed() => return,
        };
        match woke {
            Ok(Ok(())) => tracing::trace!(client = %peer.addr, "parked connection woken"),
            Ok(Err(e)) => {
                tracing::debug!(client = %peer.addr, error = %e, "parked connection failed");
                return;
            }
            Err(_) => {
                tracing::debug!(client = %peer.addr, "idle keep-alive connection timed out");
                return;
            }
        }
    }
}

/// Serves requests with one hyper connection until the connection ends
/// (`None`) or is parked (the socket, with nothing left unread by hyper).
async fn serve_until_parked(
    stream: TcpStream,
    peer: &Arc<Peer>,
    shutdown: &mut watch::Receiver<bool>,
    builder: &http1::Builder,
) -> Option<TcpStream> {
    let idle = Arc::new(IdleState::new());
    let io = TokioIo::new(ParkingIo {
        stream,
        idle: Arc::clone(&idle),
    });
    // Boxed so that a parked connection's task does not keep room for
    // hyper's connection state.
    let mut conn = Box::new(
        builder
            .serve_connection(io, service(peer, &idle))
            .with_upgrades(),
    );
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + PARK_AFTER, PARK_AFTER);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = idle.activity();
    let result = loop {
        tokio::select! {
            r = &mut *conn => break r,
            _ = shutdown.changed() => {
                Pin::new(&mut *conn).graceful_shutdown();
                break (&mut *conn).await;
            }
            _ = ticks.tick() => {
                // Nothing read or written for a whole tick, and no request
                // open: the next poll of the connection reads from an
                // empty socket and sees the end of the stream, which
                // hyper takes as a clean close between requests.
                let now = idle.activity();
                if now == seen && idle.may_park() {
                    idle.request_park();
                }
                seen = now;
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %peer.addr, error = %e, "connection ended with an error");
        return None;
    }
    if !idle.parked() {
        // Closed by either side, or handed over to an upgrade.
        return None;
    }
    let parts = conn.into_parts()?;
    if !parts.read_buf.is_empty() {
        // Parking only happens on an empty socket with nothing left
        // unparsed; if hyper held bytes anyway, dropping them would lose
        // a request, so close rather than guess.
        tracing::debug!(client = %peer.addr, "parked connection had unread bytes; closing");
        return None;
    }
    PARKED.fetch_add(1, Ordering::Relaxed);
    tracing::trace!(client = %peer.addr, "idle connection parked");
    Some(parts.io.into_inner().stream)
}

async fn serve_h2<S>(stream: S, peer: Arc<Peer>, shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024);
    // HTTP/2 connections are not parked; the idle state only counts.
    let idle = Arc::new(IdleState::new());
    let conn = builder.serve_connection(TokioIo::new(stream), service(&peer, &idle));
    drive(conn, shutdown, |c| c.graceful_shutdown(), peer.addr).await;
}

/// How long a keep-alive connection waits between requests before it is
/// parked (between one and two of these, as it is checked on a tick). A
/// client sending requests back to back never waits this long, so it never
/// pays for rebuilding hyper's connection (parking at once when a read
/// would wait costs about a fifth more instructions per request under a
/// closed-loop load); a client that goes quiet gives its buffers back
/// within half a second.
const PARK_AFTER: Duration = Duration::from_millis(250);

/// Connections parked since the process started, for tests.
static PARKED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What the driver of one HTTP/1 connection knows about it, shared with the
/// socket wrapper and the service. Every user runs on the connection's own
/// worker thread, so the atomics are never contended; they are atomics only
/// because hyper wants a `Send` socket.
#[derive(Debug)]
struct IdleState {
    /// Bumped on every read that returned bytes and every write.
    activity: AtomicU32,
    /// Requests whose response hyper has not dropped yet.
    in_flight: AtomicU32,
    /// The last four bytes read, to tell whether the stream stopped at the
    /// end of a request head (`\r\n\r\n`) and hyper holds nothing unparsed.
    tail: AtomicU32,
    /// The last write took every byte hyper offered, so hyper's write
    /// buffer is empty.
    flushed: AtomicBool,
    /// The driver asks the next empty read to report the end of the stream.
    park_requested: AtomicBool,
    /// A read did report it: hyper's close is a park, not a real close.
    parked: AtomicBool,
}

const HEAD_END: u32 = u32::from_be_bytes(*b"\r\n\r\n");

impl IdleState {
    fn new() -> Self {
        IdleState {
            activity: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            // A fresh connection has nothing unparsed.
            tail: AtomicU32::new(HEAD_END),
            flushed: AtomicBool::new(true),
            park_requested: AtomicBool::new(false),
            parked: AtomicBool::new(false),
        }
    }

    fn activity(&self) -> u32 {
        self.activity.load(Ordering::Relaxed)
    }

    fn bump(&self) {
        // One writer thread: a load and a store, not a locked increment.
        self.activity
            .store(self.activity().wrapping_add(1), Ordering::Relaxed);
    }

    fn saw_read(&self, bytes: &[u8]) {
        self.bump();
        self.park_requested.store(false, Ordering::Relaxed);
        let tail = bytes
            .iter()
            .rev()
            .take(4)
            .rev()
            .fold(self.tail.load(Ordering::Relaxed), |t, &b| {
                (t << 8) | u32::from(b)
            });
        self.tail.store(tail, Ordering::Relaxed);
    }

    fn saw_write(&self, complete: bool) {
        self.bump();
        self.flushed.store(complete, Ordering::Relaxed);
    }

    /// No request open, hyper's write buffer empty, and the bytes read so
    /// far end with a request head, so hyper has no partial request.
    /// A request with a body that does not end in `\r\n\r\n` keeps its
    /// connection unparked until a request without one.
    fn may_park(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
            && self.flushed.load(Ordering::Relaxed)
            && self.tail.load(Ordering::Relaxed) == HEAD_END
    }

    fn request_park(&self) {
        self.park_requested.store(true, Ordering::Relaxed);
    }

    fn parked(&self) -> bool {
        self.parked.load(Ordering::Relaxed)
    }
}

/// Counts one request as in flight until the response body hyper sends is
/// dropped.
#[derive(Debug)]
struct InFlight(Arc<IdleState>);

impl InFlight {
    fn new(idle: &Arc<IdleState>) -> Self {
        let n = idle.in_flight.load(Ordering::Relaxed);
        idle.in_flight.store(n + 1, Ordering::Relaxed);
        InFlight(Arc::clone(idle))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let n = self.0.in_flight.load(Ordering::Relaxed);
        self.0
            .in_flight
            .store(n.saturating_sub(1), Ordering::Relaxed);
    }
}

/// The response body with the request's in-flight guard.
#[derive(Debug)]
pub(crate) struct Tracked {
    inner: ResponseBody,
    _guard: InFlight,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The client socket as hyper sees it: it notes activity for the idle
/// check, and once the driver asks for a park it answers a read that would
/// wait with the end of the stream, and a shutdown with nothing, so the
/// socket survives hyper's close.
#[derive(Debug)]
struct ParkingIo {
    stream: TcpStream,
    idle: Arc<IdleState>,
}

impl AsyncRead for ParkingIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let got = &buf.filled()[before..];
                if !got.is_empty() {
                    this.idle.saw_read(got);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.idle.park_requested.load(Ordering::Relaxed) => {
                this.idle.parked.store(true, Ordering::Relaxed);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for ParkingIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.idle
            .saw_write(matches!(r, Poll::Ready(Ok(n)) if n == buf.len()));
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        this.idle
            .saw_write(matches!(r, Poll::Ready(Ok(n)) if n == total));
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.idle.parked() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_shutdown(cx)
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

/// What a connection speaks, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    H2,
    /// A TLS record: 0x16 is a handshake, which no HTTP/1 method starts
    /// with.
    Tls,
}

/// Looks at the first bytes without consuming them: a TLS handshake, the
/// HTTP/2 preface or anything else (HTTP/1.1). Most requests decide on
/// the first byte or two.
async fn sniff(stream: &TcpStream) -> std::io::Result<Sniffed> {
    let mut buf = [0u8; 24];
    let deadline = tokio::time::Instant::now() + HEADER_READ_TIMEOUT;
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if buf[0] == 0x16 {
            return Ok(Sniffed::Tls);
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(Sniffed::Http1);
        }
        if n == H2_PREFACE.len() {
            return Ok(Sniffed::H2);
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Feeds reads to a fresh connection's idle state; says whether it may
    /// be parked afterwards (nothing in flight, everything written).
    fn check(reads: &[&[u8]], expected: bool) {
        let idle = IdleState::new();
        for r in reads {
            idle.saw_read(r);
        }
        assert_eq!(idle.may_park(), expected, "{reads:?}");
    }

    #[test]
    fn parks_only_where_a_request_head_ended() {
        check(&[], true);
        check(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"], true);
        check(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r", b"\n"], true);
        check(&[b"GET / HTTP/1.1\r\nHost: a\r\n", b"\r", b"\n"], true);
        check(&[b"GET / HTTP/1.1\r\nHo"], false);
        check(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next"], false);
        // A body that does not end like a head keeps the connection as it is.
        check(&[b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\nab"], false);
        // A chunked body ends with an empty chunk and a blank line.
        check(
            &[b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"],
            true,
        );
    }

    #[test]
    fn open_requests_and_unwritten_bytes_prevent_parking() {
        let idle = Arc::new(IdleState::new());
        let guard = InFlight::new(&idle);
        assert!(!idle.may_park());
        drop(guard);
        assert!(idle.may_park());
        idle.saw_write(false);
        assert!(!idle.may_park());
        idle.saw_write(true);
        assert!(idle.may_park());
    }

    async fn proxy() -> (SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        let index = Arc::new(arc_swap::ArcSwap::from_pointee(
            crate::router::ServiceIndex::default(),
        ));
        let (_open, gate) = watch::channel(true);
        let tls = DataTls::new(Arc::clone(&index), None).unwrap();
        tokio::spawn(serve(
            listener,
            index,
            tls,
            rx,
            gate,
            Duration::from_secs(1),
        ));
        (addr, tx)
    }

    /// Sends `req` and reads one response head and its body (the proxy's
    /// own 404, whose length is in its header).
    async fn exchange(conn: &mut TcpStream, req: &[u8]) -> String {
        conn.write_all(req).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "connection closed; got {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    return text;
                }
            }
        }
    }

    const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: nowhere\r\n\r\n";

    #[tokio::test]
    async fn an_idle_connection_is_parked_and_then_serves_again() {
        let (addr, _stop) = proxy().await;
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let before = PARKED.load(Ordering::Relaxed);
        assert!(exchange(&mut conn, GET).await.starts_with("HTTP/1.1 404"));
        // Waits for the park (other tests in this process may park too,
        // which only makes this wait shorter).
        while PARKED.load(Ordering::Relaxed) == before {
            tokio::time::sleep(PARK_AFTER).await;
        }
        for _ in 0..3 {
            assert!(exchange(&mut conn, GET).await.starts_with("HTTP/1.1 404"));
        }
    }

    #[tokio::test]
    async fn a_request_half_sent_survives_the_idle_check() {
        let (addr, _stop) = proxy().await;
        let mut conn = TcpStream::connect(addr).await.unwrap();
        assert!(exchange(&mut conn, GET).await.starts_with("HTTP/1.1 404"));
        conn.write_all(b"GET /y HTTP/1.1\r\nHo").await.unwrap();
        tokio::time::sleep(PARK_AFTER * 4).await;
        let resp = exchange(&mut conn, b"st: nowhere\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    }

    #[tokio::test]
    async fn a_parked_connection_closes_at_once_on_shutdown() {
        let (addr, stop) = proxy().await;
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let before = PARKED.load(Ordering::Relaxed);
        assert!(exchange(&mut conn, GET).await.starts_with("HTTP/1.1 404"));
        while PARKED.load(Ordering::Relaxed) == before {
            tokio::time::sleep(PARK_AFTER).await;
        }
        stop.send(true).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            conn.read(&mut buf).await.unwrap(),
            0,
            "closed without a byte"
        );
    }
}
