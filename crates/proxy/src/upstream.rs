//! Keep-alive HTTP/1.1 connections to a pool's endpoints, one set per
//! data-plane worker.
//!
//! hyper-util's pooled client costs more per request than the rest of the
//! forwarding path together: it hashes the endpoint into a shared map under
//! a mutex on checkout and check-in, moves large futures around, and spawns
//! a task per request to put the connection back once the response body is
//! done. Here a worker takes an idle connection from its own short list
//! (the mutex is never contended: only that worker's thread takes it), and
//! the connection goes back when the response's last byte has been passed
//! on, which the proxy notices anyway to record the request.
//!
//! HTTP/2 pools keep hyper-util's client, which multiplexes requests over
//! one connection per endpoint.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::RequestBody;
use crate::outcome::UpstreamFailure;
use crate::pool::Pool;

/// Idle connections kept per worker and endpoint; bursts beyond this
/// reconnect rather than keep thousands of idle upstream connections (and
/// their buffers).
pub(crate) const MAX_IDLE_PER_ENDPOINT: usize = 128;
/// An idle connection unused for this long is closed.
pub(crate) const IDLE_TIMEOUT_MS: u64 = 90_000;
/// How often a worker looks for connections idle past the timeout when no
/// request comes to do it.
const REAP_EVERY: Duration = Duration::from_secs(30);

pub(crate) type Sender = SendRequest<RequestBody>;

/// One worker's idle connections to every endpoint of one pool.
#[derive(Debug, Default)]
pub(crate) struct Idle {
    inner: Mutex<IdleInner>,
}

#[derive(Debug, Default)]
struct IdleInner {
    /// Per endpoint, oldest first; the most recently used is taken first,
    /// so the rest age out when traffic drops.
    by_endpoint: Vec<(Authority, VecDeque<(Sender, u64)>)>,
    /// A reaper task runs on this worker for this pool.
    reaping: bool,
}

impl Idle {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdleInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently returned connection to `endpoint` that is still
    /// open, if any.
    pub(crate) fn take(&self, endpoint: &Authority) -> Option<Sender> {
        let mut inner = self.lock();
        let list = inner
            .by_endpoint
            .iter_mut()
            .find(|(a, _)| a == endpoint)
            .map(|(_, l)| l)?;
        while let Some((sender, _)) = list.pop_back() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// Returns a connection whose last exchange is complete. Reports
    /// whether a reaper should be started for this list.
    pub(crate) fn put(&self, endpoint: &Authority, sender: Sender, now_ms: u64) -> bool {
        if sender.is_closed() {
            return false;
        }
        let mut inner = self.lock();
        let list = match inner.by_endpoint.iter().position(|(a, _)| a == endpoint) {
            Some(i) => &mut inner.by_endpoint[i].1,
            None => {
                inner.by_endpoint.push((endpoint.clone(), VecDeque::new()));
                let last = inner.by_endpoint.len() - 1;
                &mut inner.by_endpoint[last].1
            }
        };
        expire(list, now_ms);
        if list.len() >= MAX_IDLE_PER_ENDPOINT {
            // Full: the oldest goes, and dropping its sender closes it.
            list.pop_front();
        }
        list.push_back((sender, now_ms));
        let start_reaper = !inner.reaping;
        inner.reaping = true;
        start_reaper
    }

    /// Closes connections idle past the timeout. Returns false, and stops
    /// counting a reaper, once nothing is left to watch.
    fn reap(&self, now_ms: u64) -> bool {
        let mut inner = self.lock();
        for (_, list) in &mut inner.by_endpoint {
            list.retain(|(s, _)| !s.is_closed());
            expire(list, now_ms);
        }
        inner.by_endpoint.retain(|(_, l)| !l.is_empty());
        let any = !inner.by_endpoint.is_empty();
        inner.reaping = any;
        any
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().by_endpoint.iter().map(|(_, l)| l.len()).sum()
    }
}

/// Drops the connections idle past the timeout. They are the oldest, at
/// the front, so the common case looks at one entry; closed ones further in
/// are skipped by [`Idle::take`] and swept by the reaper.
fn expire(list: &mut VecDeque<(Sender, u64)>, now_ms: u64) {
    while list
        .front()
        .is_some_and(|(s, at)| s.is_closed() || now_ms.saturating_sub(*at) >= IDLE_TIMEOUT_MS)
    {
        list.pop_front();
    }
}

/// Starts a task on the calling worker that closes the pool's stale
/// connections of that worker every [`REAP_EVERY`], until none is left or
/// the pool is gone.
pub(crate) fn spawn_reaper(pool: Weak<Pool>, worker: usize) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(REAP_EVERY).await;
            let Some(pool) = pool.upgrade() else { return };
            if !pool.idle(worker).reap(crate::clock::mono_ms()) {
                return;
            }
        }
    });
}

/// Why a request could not be exchanged with an endpoint.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error("cannot connect to {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to {endpoint}: no connection within {timeout:?}")]
    ConnectTimeout { endpoint: String, timeout: Duration },
    /// The endpoint's certificate was refused, or TLS broke down.
    #[error("TLS with {endpoint} failed: {source}")]
    Tls {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP/1.1 handshake with {endpoint} failed")]
    Handshake {
        endpoint: String,
        #[source]
        source: hyper::Error,
    },
    #[error("request to the upstream failed")]
    Exchange(#[source] hyper::Error),
    #[error("request to the upstream failed")]
    Pooled(#[source] hyper_util::client::legacy::Error),
}

impl SendError {
    /// Connect failures and timeouts by their I/O error kind; everything
    /// else that broke the exchange is a reset.
    pub(crate) fn failure(&self) -> UpstreamFailure {
        match self {
            SendError::Connect { source, .. } => match source.kind() {
                std::io::ErrorKind::TimedOut => UpstreamFailure::Timeout,
                _ => UpstreamFailure::Connect,
            },
            SendError::ConnectTimeout { .. } => UpstreamFailure::Timeout,
            SendError::Tls { source, .. } if source.kind() == std::io::ErrorKind::TimedOut => {
                UpstreamFailure::Timeout
            }
            SendError::Tls { .. } => UpstreamFailure::Tls,
            SendError::Handshake { .. } => UpstreamFailure::Reset,
            SendError::Exchange(e) => io_kind(e).unwrap_or(UpstreamFailure::Reset),
            SendError::Pooled(e) => io_kind(e).unwrap_or(if e.is_connect() {
                UpstreamFailure::Connect
            } else {
                UpstreamFailure::Reset
            }),
        }
    }
}

/// The failure an I/O error in `e`'s chain of sources stands for, if any.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<UpstreamFailure> {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::TimedOut => return Some(UpstreamFailure::Timeout),
                std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::AddrNotAvailable
                | std::io::ErrorKind::HostUnreachable
                | std::io::ErrorKind::NetworkUnreachable => return Some(UpstreamFailure::Connect),
                _ => {}
            }
        }
        source = err.source();
    }
    None
}

/// Opens a new connection to `endpoint` (over TLS with `tls`, verifying
/// the endpoint's certificate for its host name) and starts its task on
/// the calling worker.
pub(crate) async fn connect(
    endpoint: &Authority,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<Sender, SendError> {
    let addr = endpoint.as_str();
    match tls {
        None => handshake(addr, tcp(endpoint, timeout).await?).await,
        Some(config) => handshake(addr, tls_stream(endpoint, config, timeout).await?).await,
    }
}

/// A TCP connection to `endpoint`, within `timeout`.
async fn tcp(endpoint: &Authority, timeout: Duration) -> Result<TcpStream, SendError> {
    let addr = endpoint.as_str();
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => {
            return Err(SendError::Connect {
                endpoint: addr.to_string(),
                source,
            });
        }
        Err(_) => {
            return Err(SendError::ConnectTimeout {
                endpoint: addr.to_string(),
                timeout,
            });
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A TLS connection to `endpoint`, its certificate verified by
/// `connector` for the endpoint's host name; each step within `timeout`.
pub(crate) async fn tls_stream(
    endpoint: &Authority,
    config: &Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, SendError> {
    let stream = tcp(endpoint, timeout).await?;
    tls_connect(config, endpoint, stream, timeout).await
}

/// The TLS handshake with an endpoint, within `timeout`. A refusal is
/// logged with the reason, since it usually means a certificate problem
/// on the endpoint or a missing CA in `upstream_tls`, not a crash.
async fn tls_connect(
    config: &Arc<rustls::ClientConfig>,
    endpoint: &Authority,
    stream: TcpStream,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, SendError> {
    let fail = |source: std::io::Error| {
        tracing::warn!(endpoint = %endpoint, error = %source, "TLS with the upstream failed");
        SendError::Tls {
            endpoint: endpoint.to_string(),
            source,
        }
    };
    // The name the certificate must carry: the host without IPv6 brackets.
    let host = endpoint
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = rustls_pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
        fail(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{host:?} cannot be a TLS server name: {e}"),
        ))
    })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
    match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(fail(e)),
        Err(_) => Err(fail(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no TLS handshake within {timeout:?}"),
        ))),
    }
}

/// The HTTP/1.1 handshake on a new connection, whose task then runs on
/// the calling worker.
async fn handshake<S>(addr: &str, stream: S) -> Result<Sender, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| SendError::Handshake {
            endpoint: addr.to_string(),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Sends `req` over a pooled connection to `endpoint`, or a new one.
/// A request that a reused connection turned down before writing a byte
/// (the upstream had just closed it) is tried again on another; one that
/// fails on a fresh connection is the endpoint's failure.
pub(crate) async fn send(
    idle: &Idle,
    endpoint: &Authority,
    tls: Option<&Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    mut req: Request<RequestBody>,
) -> Result<(Response<Incoming>, Sender), SendError> {
    loop {
        let (mut sender, reused) = match idle.take(endpoint) {
            Some(s) => (s, true),
            // Boxed: connecting is rare, and its state would otherwise
            // make every request's future (moved several times) larger.
            None => (
                Box::pin(connect(endpoint, tls, connect_timeout)).await?,
                false,
            ),
        };
        // A connection returned to the list may still be finishing its last
        // exchange; it is ready once hyper has read the response's end.
        if let Err(e) = sender.ready().await {
            if reused {
                continue;
            }
            return Err(SendError::Exchange(e));
        }
        match sender.try_send_request(req).await {
            Ok(resp) => return Ok((resp, sender)),
            Err(mut e) => match e.take_message() {
                Some(unsent) if reused => req = unsent,
                _ => return Err(SendError::Exchange(e.into_error())),
            },
        }
    }
}

/// A connection lent to one request, given back to its worker's list when
/// the response has been passed on whole.
#[derive(Debug)]
pub(crate) struct Lent {
    pub(crate) sender: Sender,
    pub(crate) endpoint: Authority,
    pub(crate) worker: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender whose connection is an in-memory pipe; dropping the
    /// returned task handle's connection closes it.
    async fn sender() -> (Sender, tokio::task::JoinHandle<()>) {
        let (client, _server) = tokio::io::duplex(1024);
        let (sender, conn) = http1::handshake::<_, RequestBody>(TokioIo::new(client))
            .await
            .unwrap();
        // The far end is kept open for as long as the connection task runs.
        let task = tokio::spawn(async move {
            let _server = _server;
            let _ = conn.await;
        });
        (sender, task)
    }

    fn authority(s: &str) -> Authority {
        Authority::try_from(s).unwrap()
    }

    #[tokio::test]
    async fn connections_are_reused_per_endpoint_newest_first() {
        let idle = Idle::default();
        let (a, b) = (authority("10.0.0.1:80"), authority("10.0.0.2:80"));
        assert!(idle.take(&a).is_none());
        let (s1, _t1) = sender().await;
        let (s2, _t2) = sender().await;
        assert!(idle.put(&a, s1, 0), "the first put starts a reaper");
        assert!(!idle.put(&a, s2, 1), "one reaper is enough");
        assert_eq!(idle.len(), 2);
        assert!(
            idle.take(&b).is_none(),
            "another endpoint's connections stay"
        );
        assert!(idle.take(&a).is_some());
        assert!(idle.take(&a).is_some());
        assert!(idle.take(&a).is_none());
    }

    #[tokio::test]
    async fn closed_stale_and_surplus_connections_are_dropped() {
        let idle = Idle::default();
        let a = authority("10.0.0.1:80");
        let (closed, task) = sender().await;
        task.abort();
        let _ = task.await;
        assert!(closed.is_closed());
        assert!(!idle.put(&a, closed, 0), "a closed connection is not kept");
        assert_eq!(idle.len(), 0);

        let mut tasks = Vec::new();
        for i in 0..MAX_IDLE_PER_ENDPOINT + 3 {
            let (s, t) = sender().await;
            tasks.push(t);
            idle.put(&a, s, i as u64);
        }
        assert_eq!(idle.len(), MAX_IDLE_PER_ENDPOINT);
        // Past the idle timeout every one of them goes, and with nothing
        // left to watch the reaper stops.
        assert!(idle.reap(IDLE_TIMEOUT_MS / 2));
        assert_eq!(idle.len(), MAX_IDLE_PER_ENDPOINT);
        assert!(!idle.reap(IDLE_TIMEOUT_MS + MAX_IDLE_PER_ENDPOINT as u64 + 3));
        assert_eq!(idle.len(), 0);
    }

    #[test]
    fn failures_are_classified_by_their_io_error() {
        let check = |e: SendError, want: UpstreamFailure| assert_eq!(e.failure(), want, "{e}");
        let io = |k: std::io::ErrorKind| std::io::Error::from(k);
        let endpoint = "10.0.0.1:80".to_string();
        check(
            SendError::Connect {
                endpoint: endpoint.clone(),
                source: io(std::io::ErrorKind::ConnectionRefused),
            },
            UpstreamFailure::Connect,
        );
        check(
            SendError::Connect {
                endpoint: endpoint.clone(),
                source: io(std::io::ErrorKind::TimedOut),
            },
            UpstreamFailure::Timeout,
        );
        check(
            SendError::ConnectTimeout {
                endpoint,
                timeout: Duration::from_secs(2),
            },
            UpstreamFailure::Timeout,
        );
    }
}
