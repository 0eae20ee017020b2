//! A small, configurable HTTP application: the versions `backout demo`
//! rolls out, and the real upstream servers the tests proxy to.
//!
//! It speaks HTTP/1.1 and HTTP/2 (prior knowledge) on one port and its
//! behaviour can be changed while it runs (readiness, liveness, error rate,
//! added latency), which is how tests make a version go bad.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How a demo version behaves; changeable at run time through [`Control`].
#[derive(Debug)]
pub struct Control {
    pub version: String,
    ready: AtomicBool,
    live: AtomicBool,
    /// Share of requests answered with 500, in parts per million.
    error_ppm: AtomicU32,
    /// Mean added latency per request, in microseconds.
    latency_us: AtomicU64,
    /// Share of requests that take 10× the mean (a tail), in ppm.
    tail_ppm: AtomicU32,
    requests: AtomicU64,
}

impl Control {
    pub fn new(version: &str) -> Self {
        Control {
            version: version.to_string(),
            ready: AtomicBool::new(true),
            live: AtomicBool::new(true),
            error_ppm: AtomicU32::new(0),
            latency_us: AtomicU64::new(0),
            tail_ppm: AtomicU32::new(0),
            requests: AtomicU64::new(0),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Relaxed);
    }
    /// `rate` in 0.0..=1.0.
    pub fn set_error_rate(&self, rate: f64) {
        self.error_ppm
            .store((rate.clamp(0.0, 1.0) * 1e6) as u32, Ordering::Relaxed);
    }
    pub fn set_latency(&self, mean: Duration) {
        self.latency_us
            .store(mean.as_micros() as u64, Ordering::Relaxed);
    }
    /// `rate` of requests (0.0..=1.0) take ten times the mean latency.
    pub fn set_tail(&self, rate: f64) {
        self.tail_ppm
            .store((rate.clamp(0.0, 1.0) * 1e6) as u32, Ordering::Relaxed);
    }
    /// Application requests served (probes excluded).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// A running demo application.
#[derive(Debug)]
pub struct DemoApp {
    pub addr: SocketAddr,
    pub control: Arc<Control>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl DemoApp {
    /// Starts serving on `addr` (port 0 picks a free port).
    pub async fn start(addr: SocketAddr, control: Arc<Control>) -> std::io::Result<DemoApp> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, mut rx) = watch::channel(false);
        let ctl = Arc::clone(&control);
        let task = tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            loop {
                let (stream, _) = tokio::select! {
                    a = listener.accept() => match a {
                        Ok(a) => a,
                        Err(_) => { tokio::time::sleep(Duration::from_millis(10)).await; continue }
                    },
                    _ = rx.changed() => return,
                };
                let _ = stream.set_nodelay(true);
                let ctl = Arc::clone(&ctl);
                let builder = builder.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| serve(Arc::clone(&ctl), req));
                    let mut b = builder;
                    b.http1().timer(TokioTimer::new());
                    let _ = b
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(DemoApp {
            addr,
            control,
            shutdown,
            task,
        })
    }

    /// Stops accepting connections (open ones finish on their own).
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

type DemoBody = BoxBody<Bytes, hyper::Error>;

fn full(status: StatusCode, text: impl Into<Bytes>) -> Response<DemoBody> {
    let mut r = Response::new(Full::new(text.into()).map_err(|n| match n {}).boxed());
    *r.status_mut() = status;
    r
}

async fn serve(
    ctl: Arc<Control>,
    req: Request<Incoming>,
) -> Result<Response<DemoBody>, Infallible> {
    let path = req.uri().path().to_string();
    let mut resp = match path.as_str() {
        "/healthz" | "/live" => health(ctl.live.load(Ordering::Relaxed)),
        "/ready" => health(ctl.ready.load(Ordering::Relaxed) && ctl.live.load(Ordering::Relaxed)),
        "/echo" => {
            ctl.requests.fetch_add(1, Ordering::Relaxed);
            // Streams the request body straight back, chunk by chunk.
            Response::new(req.into_body().boxed())
        }
        "/sink" => {
            ctl.requests.fetch_add(1, Ordering::Relaxed);
            let mut body = req.into_body();
            let mut n: u64 = 0;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => return Ok(full(StatusCode::BAD_REQUEST, "body broken\n")),
                }
            }
            full(StatusCode::OK, format!("{n}\n"))
        }
        "/headers" => {
            ctl.requests.fetch_add(1, Ordering::Relaxed);
            let mut text = String::new();
            for (k, v) in req.headers() {
                text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("<binary>")));
            }
            text.push_str(&format!(
                "uri: {}\nversion: {:?}\n",
                req.uri(),
                req.version()
            ));
            full(StatusCode::OK, text)
        }
        p if p.starts_with("/bytes/") => {
            ctl.requests.fetch_add(1, Ordering::Relaxed);
            match p["/bytes/".len()..].parse::<u64>() {
                Ok(n) => Response::new(Zeros { remaining: n }.boxed()),
                Err(_) => full(StatusCode::BAD_REQUEST, "usage: /bytes/<count>\n"),
            }
        }
        p if p.starts_with("/status/") => {
            ctl.requests.fetch_add(1, Ordering::Relaxed);
            let code = p["/status/".len()..]
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok());
            match code {
                Some(c) => full(c, format!("{}\n", ctl.version)),
                None => full(StatusCode::BAD_REQUEST, "usage: /status/<code>\n"),
            }
        }
        p if p.starts_with("/slow/") => {
            ctl.requests.fetch_add(1, Ordering::Relaxed);
            let ms = p["/slow/".len()..].parse::<u64>().unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            full(StatusCode::OK, format!("{}\n", ctl.version))
        }
        _ => {
            ctl.requests.fetch_add(1, Ordering::Relaxed);
            let mean = ctl.latency_us.load(Ordering::Relaxed);
            if mean > 0 {
                // Exponential around the mean, with an optional 10× tail.
                let mut us = (-(1.0 - fastrand::f64()).ln() * mean as f64) as u64;
                if fastrand::u32(0..1_000_000) < ctl.tail_ppm.load(Ordering::Relaxed) {
                    us = us.saturating_mul(10);
                }
                tokio::time::sleep(Duration::from_micros(us)).await;
            }
            if fastrand::u32(0..1_000_000) < ctl.error_ppm.load(Ordering::Relaxed) {
                full(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("{} failed\n", ctl.version),
                )
            } else {
                full(StatusCode::OK, format!("{}\n", ctl.version))
            }
        }
    };
    if let Ok(v) = http::HeaderValue::from_str(&ctl.version) {
        resp.headers_mut().insert("x-demo-version", v);
    }
    Ok(resp)
}

fn health(ok: bool) -> Response<DemoBody> {
    if ok {
        full(StatusCode::OK, "ok\n")
    } else {
        full(StatusCode::SERVICE_UNAVAILABLE, "not ok\n")
    }
}

/// `remaining` zero bytes in 64 KiB chunks, produced as they are read, so
/// large responses need no large buffers.
struct Zeros {
    remaining: u64,
}

const CHUNK: usize = 64 * 1024;
static ZEROS: [u8; CHUNK] = [0; CHUNK];

impl Body for Zeros {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(CHUNK as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZEROS[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
