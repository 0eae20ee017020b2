//! Runs the probes of every endpoint: one task per endpoint and probe
//! kind, on the probe's own period.

use std::sync::Arc;
use std::time::Duration;

use backout_spec::{ProbeSpec, Protocol};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::watch;

use crate::endpoint::Endpoint;
use crate::events::{EventKind, EventLog};
use crate::pool::Pool;
use crate::probe::ProbeKind;

type ProbeClient = Client<HttpConnector, Empty<Bytes>>;

fn client(protocol: Protocol) -> ProbeClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .http2_only(protocol == Protocol::H2c)
        .build(connector)
}

/// Where probe tasks run and report, handed to every service so pools and
/// endpoints added at run time get probes too.
#[derive(Debug, Clone)]
pub(crate) struct Prober {
    pub events: Arc<EventLog>,
    pub shutdown: watch::Receiver<bool>,
    pub runtime: tokio::runtime::Handle,
}

impl Prober {
    /// Probes every endpoint of a new pool.
    pub(crate) fn pool(&self, pool: &Arc<Pool>) {
        self.endpoints(pool, &pool.endpoints());
    }

    /// Probes endpoints just added to `pool`.
    pub(crate) fn endpoints(&self, pool: &Arc<Pool>, endpoints: &[Arc<Endpoint>]) {
        let _guard = self.runtime.enter();
        spawn(pool, endpoints, &self.events, &self.shutdown);
    }
}

/// Starts the probe tasks for `endpoints` of `pool`.
fn spawn(
    pool: &Arc<Pool>,
    endpoints: &[Arc<Endpoint>],
    events: &Arc<EventLog>,
    shutdown: &watch::Receiver<bool>,
) {
    let probes = &pool.spec.probes;
    let kinds = [
        (ProbeKind::Startup, &probes.startup),
        (ProbeKind::Liveness, &probes.liveness),
        (ProbeKind::Readiness, &probes.readiness),
    ];
    let client = client(pool.spec.protocol);
    for endpoint in endpoints {
        for (kind, spec) in &kinds {
            let Some(spec) = (*spec).clone() else {
                continue;
            };
            let task = ProbeTask {
                pool: Arc::clone(pool),
                endpoint: Arc::clone(endpoint),
                kind: *kind,
                spec,
                client: client.clone(),
                events: Arc::clone(events),
            };
            let mut shutdown = shutdown.clone();
            let cancel = endpoint.cancel.clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = task.run() => {}
                    _ = shutdown.changed() => {}
                    () = cancel.cancelled() => {}
                }
            });
        }
    }
}

struct ProbeTask {
    pool: Arc<Pool>,
    endpoint: Arc<Endpoint>,
    kind: ProbeKind,
    spec: ProbeSpec,
    client: ProbeClient,
    events: Arc<EventLog>,
}

impl ProbeTask {
    async fn run(self) {
        tokio::time::sleep(self.spec.initial_delay.get()).await;
        let mut tick = tokio::time::interval(self.spec.period.get());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !self.endpoint.should_probe(self.kind) {
                if self.kind == ProbeKind::Startup {
                    return; // started: this probe's job is done
                }
                continue; // waiting for startup
            }
            let ok = self.probe_once().await;
            if let Some(change) = self.endpoint.observe_probe(self.kind, ok) {
                tracing::info!(
                    service = %self.pool.service, version = %self.pool.name, endpoint = %self.endpoint.label,
                    probe = self.kind.as_str(), passing = change.passing, "probe state changed"
                );
                self.events.push(
                    &self.pool.service,
                    EventKind::ProbeChanged {
                        version: self.pool.name.clone(),
                        endpoint: self.endpoint.label.clone(),
                        probe: change.kind,
                        passing: change.passing,
                    },
                );
            }
        }
    }

    /// One GET; a 2xx or 3xx status within the timeout is a success.
    async fn probe_once(&self) -> bool {
        if self.endpoint.url.is_tls() {
            return tokio::time::timeout(self.spec.timeout.get(), self.probe_tls())
                .await
                .unwrap_or(false);
        }
        let uri = format!("http://{}{}", self.endpoint.label, self.spec.path);
        let Ok(uri) = uri.parse::<http::Uri>() else {
            return false;
        };
        let mut req = http::Request::new(Empty::<Bytes>::new());
        *req.uri_mut() = uri;
        req.headers_mut().insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static("backout-probe"),
        );
        if self.pool.spec.protocol == Protocol::H2c {
            *req.version_mut() = http::Version::HTTP_2;
        }
        match tokio::time::timeout(self.spec.timeout.get(), self.client.request(req)).await {
            Ok(Ok(resp)) => {
                let s = resp.status().as_u16();
                (200..400).contains(&s)
            }
            _ => false,
        }
    }

    /// A probe of an `https://` endpoint, over a new connection each time
    /// through the pool's own TLS client: it verifies the certificate as
    /// requests do, so an endpoint whose certificate the proxy refuses is
    /// not ready, and a renewed certificate is checked at the next probe.
    async fn probe_tls(&self) -> bool {
        let authority = &self.endpoint.uri_base;
        let stream = match crate::upstream::tls_stream(
            authority,
            &self.pool.tls,
            self.spec.timeout.get(),
        )
        .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(endpoint = %self.endpoint.label, error = %e, "probe could not connect");
                return false;
            }
        };
        let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        else {
            return false;
        };
        // Closed when the sender is dropped after this one request.
        tokio::spawn(conn);
        let req = http::Request::get(self.spec.path.as_str())
            .header(http::header::HOST, authority.as_str())
            .header(http::header::USER_AGENT, "backout-probe")
            .body(Empty::<Bytes>::new());
        let Ok(req) = req else { return false };
        match sender.send_request(req).await {
            Ok(resp) => (200..400).contains(&resp.status().as_u16()),
            Err(_) => false,
        }
    }
}
