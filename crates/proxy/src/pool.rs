//! A version pool: the endpoints running one version, the HTTP client that
//! reaches them, and what protects them (circuit breaker, bulkhead, outlier
//! detection).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use backout_spec::{EndpointUrl, PoolSpec, Protocol, TimeoutsSpec};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Serialize;

use crate::body::RequestBody;
use crate::breaker::{Admission, Breaker, BreakerState, Transition};
use crate::endpoint::{Endpoint, EndpointStatus};
use crate::events::{EventKind, EventLog};
use crate::metrics::{Metrics, Quantiles, VersionMetrics};
use crate::upstream;

pub(crate) type UpstreamClient = Client<HttpConnector, RequestBody>;

#[derive(Debug)]
pub struct Pool {
    pub name: String,
    pub service: String,
    pub spec: PoolSpec,
    /// Swapped as a whole when the version scales or an instance moves;
    /// endpoints that stay keep their health history.
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    endpoint_gauges: prometheus::IntGaugeVec,
    /// HTTP/2 pools: one hyper-util client per data-plane worker
    /// (connections stay on the thread that made them), plus one for any
    /// other thread. Empty for HTTP/1.1 pools.
    clients: Vec<UpstreamClient>,
    /// HTTP/1.1 pools: idle keep-alive connections, one list per worker
    /// plus one for any other thread.
    idle: Vec<upstream::Idle>,
    connect_timeout: std::time::Duration,
    /// TLS for `https://` endpoints, with the service's roots.
    pub(crate) tls: Arc<rustls::ClientConfig>,
    breaker: Mutex<Breaker>,
    in_flight: AtomicU32,
    pub metrics: VersionMetrics,
    breaker_state_gauges: [prometheus::IntGauge; 3],
    breaker_transitions: [prometheus::IntCounter; 3],
    pub(crate) available_gauge: prometheus::IntGauge,
    pub(crate) ejections: prometheus::IntCounter,
    events: Arc<EventLog>,
}

/// Pool state for the admin API.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PoolStatus {
    pub version: String,
    pub protocol: Protocol,
    pub available_endpoints: usize,
    pub endpoints: Vec<EndpointStatus>,
    pub breaker: BreakerState,
    pub breaker_since_ms_ago: u64,
    pub in_flight: u32,
    pub max_concurrent: u32,
    pub latency: Quantiles,
}

/// Why the pool would not take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Bulkhead,
    Breaker,
    NoEndpoint,
}

/// A request admitted to the pool. Dropping it without `finish` still
/// releases the bulkhead slot and the endpoint's in-flight count.
#[derive(Debug)]
pub struct Admitted {
    pub pool: Arc<Pool>,
    pub endpoint: Arc<Endpoint>,
    admission: Admission,
    done: bool,
}

impl Admitted {
    /// Reports how the request ended to the breaker and outlier detection.
    pub fn finish(mut self, now_ms: u64, failed: bool) {
        self.done = true;
        self.release();
        let transition = self
            .pool
            .lock_breaker()
            .record(now_ms, self.admission, failed);
        if let Some(t) = transition {
            self.pool.breaker_changed(t);
        }
        let pool = &self.pool;
        let ejection = self
            .endpoint
            .observe_result(&pool.spec.outlier, now_ms, failed, || {
                pool.may_eject(now_ms)
            });
        if let Some(e) = ejection {
            pool.ejections.inc();
            pool.events.push(
                &pool.service,
                EventKind::EndpointEjected {
                    version: pool.name.clone(),
                    endpoint: self.endpoint.label.clone(),
                    failures: e.failures,
                    for_ms: e.duration_ms,
                },
            );
        }
    }

    /// The request ended in a way that says nothing about the version (the
    /// client went away): release it without judging the pool.
    pub fn abandon(mut self) {
        self.done = true;
        self.release();
        self.pool.lock_breaker().abandon(self.admission);
    }

    fn release(&self) {
        self.pool.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.endpoint.end();
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if !self.done {
            self.release();
            self.pool.lock_breaker().abandon(self.admission);
        }
    }
}

fn new_endpoint(
    gauges: &prometheus::IntGaugeVec,
    service: &str,
    pool: &str,
    url: &EndpointUrl,
    spec: &PoolSpec,
    ready: bool,
) -> Arc<Endpoint> {
    let gauge = gauges.with_label_values(&[service, pool, url.authority().as_ref()]);
    Arc::new(Endpoint::assumed(url.clone(), &spec.probes, gauge, ready))
}

fn upstream_client(spec: &PoolSpec, timeouts: &TimeoutsSpec) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(timeouts.connect.get()));
    connector.set_nodelay(true);
    connector.enforce_http(true);
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(std::time::Duration::from_millis(upstream::IDLE_TIMEOUT_MS))
        // Per worker and endpoint; bursts beyond this reconnect rather than
        // keep thousands of idle upstream connections (and their buffers).
        .pool_max_idle_per_host(upstream::MAX_IDLE_PER_ENDPOINT)
        .http2_only(spec.protocol == Protocol::H2c);
    builder.build(connector)
}

/// What every pool of a service shares when it is built.
#[derive(Debug, Clone, Copy)]
pub struct PoolContext<'a> {
    pub service: &'a str,
    pub timeouts: &'a TimeoutsSpec,
    pub metrics: &'a Metrics,
    pub events: &'a Arc<EventLog>,
    /// Data-plane worker threads, each of which gets its own client.
    pub workers: usize,
    pub now_ms: u64,
    /// How `https://` endpoints are verified (the service's roots).
    pub tls: &'a Arc<rustls::ClientConfig>,
}

impl Pool {
    pub fn new(ctx: PoolContext<'_>, name: &str, spec: PoolSpec) -> Self {
        Self::with_ready(ctx, name, spec, &[])
    }

    /// A pool whose endpoints in `ready` start as ready (the control
    /// plane's last knowledge), the others as not probed yet.
    pub fn with_ready(
        ctx: PoolContext<'_>,
        name: &str,
        spec: PoolSpec,
        ready: &[EndpointUrl],
    ) -> Self {
        let PoolContext {
            service,
            timeouts,
            metrics,
            events,
            workers,
            now_ms,
            tls,
        } = ctx;
        let events = Arc::clone(events);
        let endpoints = spec
            .endpoints
            .iter()
            .map(|url| {
                let hint = ready.contains(url);
                new_endpoint(&metrics.endpoint_serving, service, name, url, &spec, hint)
            })
            .collect();
        let clients = match spec.protocol {
            Protocol::H2c => (0..=workers)
                .map(|_| upstream_client(&spec, timeouts))
                .collect(),
            Protocol::Http1 => Vec::new(),
        };
        let idle = (0..=workers).map(|_| upstream::Idle::default()).collect();
        let states = [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ];
        let breaker_state_gauges = states.map(|s| {
            metrics
                .breaker_state
                .with_label_values(&[service, name, s.as_str()])
        });
        breaker_state_gauges[0].set(1);
        Pool {
            name: name.to_string(),
            service: service.to_string(),
            breaker: Mutex::new(Breaker::new(spec.breaker, now_ms)),
            breaker_transitions: states.map(|s| {
                metrics
                    .breaker_transitions
                    .with_label_values(&[service, name, s.as_str()])
            }),
            available_gauge: metrics
                .pool_available_endpoints
                .with_label_values(&[service, name]),
            ejections: metrics.ejections.with_label_values(&[service, name]),
            metrics: metrics.version(service, name),
            endpoints: ArcSwap::from_pointee(endpoints),
            endpoint_gauges: metrics.endpoint_serving.clone(),
            clients,
            idle,
            connect_timeout: timeouts.connect.get(),
            tls: Arc::clone(tls),
            in_flight: AtomicU32::new(0),
            breaker_state_gauges,
            spec,
            events,
        }
    }

    /// The calling thread's slot in the per-worker client state.
    fn slot(&self) -> usize {
        let last = self.idle.len() - 1;
        crate::worker::current().map_or(last, |w| w.min(last))
    }

    /// One worker's idle HTTP/1.1 connections.
    pub(crate) fn idle(&self, worker: usize) -> &upstream::Idle {
        let last = self.idle.len() - 1;
        &self.idle[worker.min(last)]
    }

    /// Sends a request to `endpoint`. `req` carries the path and query
    /// only: an HTTP/1.1 request goes out in origin form as it is, and an
    /// HTTP/2 request gets the endpoint's authority added. An HTTP/1.1
    /// connection is lent to the request and comes back to the pool when
    /// its response has been passed on whole ([`Pool::give_back`]).
    pub(crate) async fn send(
        &self,
        endpoint: &Endpoint,
        mut req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Option<upstream::Lent>), upstream::SendError> {
        let worker = self.slot();
        match self.spec.protocol {
            Protocol::Http1 => {
                let (resp, sender) = upstream::send(
                    &self.idle[worker],
                    &endpoint.uri_base,
                    endpoint.url.is_tls().then_some(&self.tls),
                    self.connect_timeout,
                    req,
                )
                .await?;
                let lent = upstream::Lent {
                    sender,
                    endpoint: endpoint.uri_base.clone(),
                    worker,
                };
                Ok((resp, Some(lent)))
            }
            Protocol::H2c => {
                let mut parts = http::uri::Parts::default();
                parts.scheme = Some(http::uri::Scheme::HTTP);
                parts.authority = Some(endpoint.uri_base.clone());
                parts.path_and_query = req.uri().path_and_query().cloned();
                if let Ok(uri) = Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
                let resp = self.clients[worker]
                    .request(req)
                    .await
                    .map_err(upstream::SendError::Pooled)?;
                Ok((resp, None))
            }
        }
    }

    /// Takes back a connection whose exchange is complete.
    pub(crate) fn give_back(self: &Arc<Self>, lent: upstream::Lent, now_ms: u64) {
        if self
            .idle(lent.worker)
            .put(&lent.endpoint, lent.sender, now_ms)
        {
            upstream::spawn_reaper(Arc::downgrade(self), lent.worker);
        }
    }

    /// Idle HTTP/1.1 connections over all workers.
    pub fn idle_connections(&self) -> usize {
        self.idle.iter().map(upstream::Idle::len).sum()
    }

    /// The endpoints now.
    pub fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.load_full()
    }

    /// Replaces the endpoint set (scaling, an instance restarted on another
    /// port). Endpoints whose URL stays keep their state; the caller starts
    /// probes for `added` and the removed ones' probes stop (their tokens
    /// are cancelled here).
    pub(crate) fn set_endpoints(&self, urls: &[EndpointUrl]) -> Vec<Arc<Endpoint>> {
        self.set_endpoints_ready(urls, &[])
    }

    /// [`Pool::set_endpoints`], with the new endpoints in `ready` starting
    /// as ready.
    pub(crate) fn set_endpoints_ready(
        &self,
        urls: &[EndpointUrl],
        ready: &[EndpointUrl],
    ) -> Vec<Arc<Endpoint>> {
        let old = self.endpoints.load_full();
        let mut next = Vec::with_capacity(urls.len());
        let mut added = Vec::new();
        for url in urls {
            if let Some(e) = old.iter().find(|e| e.url == *url) {
                next.push(Arc::clone(e));
            } else {
                let e = new_endpoint(
                    &self.endpoint_gauges,
                    &self.service,
                    &self.name,
                    url,
                    &self.spec,
                    ready.contains(url),
                );
                added.push(Arc::clone(&e));
                next.push(e);
            }
        }
        for gone in old.iter().filter(|e| !urls.contains(&e.url)) {
            gone.cancel.cancel();
            let _ =
                self.endpoint_gauges
                    .remove_label_values(&[&self.service, &self.name, &gone.label]);
        }
        self.endpoints.store(Arc::new(next));
        added
    }

    /// Whether `spec` protects the pool the same way (probes, breaker,
    /// bulkhead, outlier ejection, protocol): then a new endpoint list is
    /// all a change needs; otherwise the pool must be built again.
    pub fn same_settings(&self, spec: &PoolSpec) -> bool {
        let mine = PoolSpec {
            endpoints: Vec::new(),
            ..self.spec.clone()
        };
        mine == PoolSpec {
            endpoints: Vec::new(),
            ..spec.clone()
        }
    }

    /// Stops every endpoint's probes: the pool is being removed.
    pub(crate) fn retire(&self) {
        for e in self.endpoints.load().iter() {
            e.cancel.cancel();
        }
    }

    /// Whether any endpoint can take traffic now.
    pub fn has_available(&self, now_ms: u64) -> bool {
        self.endpoints.load().iter().any(|e| e.available(now_ms))
    }

    pub fn available_count(&self, now_ms: u64) -> usize {
        self.endpoints
            .load()
            .iter()
            .filter(|e| e.available(now_ms))
            .count()
    }

    /// Whether the breaker would turn requests away now (open and still
    /// cooling down). Half-open counts as accepting: it needs trials.
    pub fn breaker_open(&self, now_ms: u64) -> bool {
        let b = self.lock_breaker();
        b.state() == BreakerState::Open
            && now_ms < b.since_ms() + self.spec.breaker.cooldown.get().as_millis() as u64
    }

    /// Admits one request: bulkhead slot, breaker, then an endpoint by
    /// power of two choices on in-flight requests.
    pub fn admit(self: &Arc<Self>, now_ms: u64) -> Result<Admitted, Refusal> {
        let max = self.spec.bulkhead.max_concurrent.get();
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= max {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::Bulkhead);
        }
        let Some(endpoint) = self.pick(now_ms) else {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::NoEndpoint);
        };
        let (admission, transition) = self.lock_breaker().admit(now_ms);
        if let Some(t) = transition {
            self.breaker_changed(t);
        }
        if admission == Admission::Rejected {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::Breaker);
        }
        endpoint.begin();
        Ok(Admitted {
            pool: Arc::clone(self),
            endpoint,
            admission,
            done: false,
        })
    }

    /// Power of two choices: two random endpoints, the one with fewer
    /// requests in flight wins; if neither can serve, the first that can.
    fn pick(&self, now_ms: u64) -> Option<Arc<Endpoint>> {
        let endpoints = self.endpoints.load();
        let n = endpoints.len();
        match n {
            0 => return None,
            1 => return endpoints.first().filter(|e| e.available(now_ms)).cloned(),
            _ => {}
        }
        let i = fastrand::usize(0..n);
        let j = (i + 1 + fastrand::usize(0..n - 1)) % n;
        let (a, b) = (&endpoints[i], &endpoints[j]);
        match (a.available(now_ms), b.available(now_ms)) {
            (true, true) => Some(Arc::clone(if b.in_flight() < a.in_flight() {
                b
            } else {
                a
            })),
            (true, false) => Some(Arc::clone(a)),
            (false, true) => Some(Arc::clone(b)),
            (false, false) => (0..n)
                .map(|k| &endpoints[(i + k) % n])
                .find(|e| e.available(now_ms))
                .cloned(),
        }
    }

    /// Outlier detection may take out at most `max_ejection_percent` of the
    /// pool (at least one endpoint when there are several), and never the
    /// last endpoint that can serve: with nothing left, the pool would be
    /// down because of passive guesses rather than probes.
    fn may_eject(&self, now_ms: u64) -> bool {
        let n = self.endpoints.load().len();
        let available = self.available_count(now_ms);
        let ejected = n - available;
        let limit = (n * self.spec.outlier.max_ejection_percent as usize)
            .div_ceil(100)
            .max(1);
        available > 1 && ejected < limit
    }

    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Updates gauges and records the transition as an event.
    fn breaker_changed(&self, t: Transition) {
        let idx = |s: BreakerState| match s {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        };
        self.breaker_state_gauges[idx(t.from)].set(0);
        self.breaker_state_gauges[idx(t.to)].set(1);
        self.breaker_transitions[idx(t.to)].inc();
        tracing::info!(service = %self.service, version = %self.name, from = t.from.as_str(), to = t.to.as_str(), reason = %t.reason, "circuit breaker");
        self.events.push(
            &self.service,
            EventKind::BreakerTransition {
                version: self.name.clone(),
                from: t.from,
                to: t.to,
                reason: t.reason,
            },
        );
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.lock_breaker().state()
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn status(&self, now_ms: u64) -> PoolStatus {
        let (breaker, since) = {
            let b = self.lock_breaker();
            (b.state(), b.since_ms())
        };
        PoolStatus {
            version: self.name.clone(),
            protocol: self.spec.protocol,
            available_endpoints: self.available_count(now_ms),
            endpoints: self
                .endpoints
                .load()
                .iter()
                .map(|e| e.status(now_ms))
                .collect(),
            breaker,
            breaker_since_ms_ago: now_ms.saturating_sub(since),
            in_flight: self.in_flight(),
            max_concurrent: self.spec.bulkhead.max_concurrent.get(),
            latency: self.metrics.quantiles(),
        }
    }
}
