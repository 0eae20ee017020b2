//! Per-version metrics: cumulative counters and a latency histogram for
//! Prometheus, an HDR histogram for exact quantiles, and the one-second
//! windows the judge reads.
//!
//! The hot path touches a few atomics and one short mutex per request.

use std::sync::Mutex;

use hdrhistogram::Histogram as Hdr;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use serde::Serialize;

use crate::outcome::{Outcome, Rejection, UpstreamFailure};
use crate::window::{WindowRing, WindowView};

/// Latency buckets for the Prometheus histogram, in seconds.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric family the proxy exports, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    responses: IntCounterVec,
    upstream_failures: IntCounterVec,
    downstream_failures: IntCounterVec,
    rejected: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGaugeVec,
    pub(crate) canary_weight: GaugeVec,
    pub(crate) route_generation: IntGaugeVec,
    pub(crate) canary_fallback: IntCounterVec,
    pub(crate) endpoint_serving: IntGaugeVec,
    pub(crate) pool_available_endpoints: IntGaugeVec,
    pub(crate) breaker_state: IntGaugeVec,
    pub(crate) breaker_transitions: IntCounterVec,
    pub(crate) ejections: IntCounterVec,
    /// How a proxy that follows a control plane is doing.
    pub(crate) fleet: FleetMetrics,
}

/// Metrics of a proxy that follows a control plane.
#[derive(Debug)]
pub(crate) struct FleetMetrics {
    pub connected: IntGauge,
    pub snapshot_generation: IntGaugeVec,
    pub snapshot_age: GaugeVec,
    pub snapshots: IntCounterVec,
    pub state_file_errors: IntCounter,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .expect("static metric definition is valid");
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g =
        IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition is valid");
    registry
        .register(Box::new(g.clone()))
        .expect("metric names are unique");
    g
}

fn float_gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g =
        GaugeVec::new(Opts::new(name, help), labels).expect("static metric definition is valid");
    registry
        .register(Box::new(g.clone()))
        .expect("metric names are unique");
    g
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family. The definitions are constants, so a failure
    /// here is a programming error that every test would catch.
    pub fn new() -> Self {
        let r = Registry::new();
        let sv = &["service", "version"];
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "backout_request_duration_seconds",
                "Time from routing a request to the end of its response, per version.",
            )
            .buckets(BUCKETS.to_vec()),
            sv,
        )
        .expect("static metric definition is valid");
        r.register(Box::new(duration.clone()))
            .expect("metric names are unique");
        let canary_weight = GaugeVec::new(
            Opts::new(
                "backout_route_canary_weight_ratio",
                "Share of traffic (0 to 1) the route sends to the canary pool.",
            ),
            &["service"],
        )
        .expect("static metric definition is valid");
        r.register(Box::new(canary_weight.clone()))
            .expect("metric names are unique");
        Metrics {
            requests: counter(
                &r,
                "backout_requests_total",
                "Requests finished, per version.",
                sv,
            ),
            responses: counter(
                &r,
                "backout_responses_total",
                "Responses sent to clients by status class, per version.",
                &["service", "version", "class"],
            ),
            upstream_failures: counter(
                &r,
                "backout_upstream_failures_total",
                "Requests the version failed to answer (side=upstream), by kind.",
                &["service", "version", "kind"],
            ),
            downstream_failures: counter(
                &r,
                "backout_downstream_failures_total",
                "Requests cut short by the client (side=downstream); not the version's fault.",
                sv,
            ),
            rejected: counter(
                &r,
                "backout_rejected_total",
                "Requests the proxy refused for a pool, by reason.",
                &["service", "version", "reason"],
            ),
            duration,
            in_flight: gauge(
                &r,
                "backout_in_flight_requests",
                "Requests in flight, per version.",
                sv,
            ),
            canary_weight,
            route_generation: gauge(
                &r,
                "backout_route_generation",
                "Route table generation; increases by one per switch.",
                &["service"],
            ),
            canary_fallback: counter(
                &r,
                "backout_canary_fallback_total",
                "Requests routed to the canary but served by stable because no canary endpoint could take them.",
                &["service"],
            ),
            endpoint_serving: gauge(
                &r,
                "backout_endpoint_serving",
                "1 if the endpoint passes its probes and is not ejected.",
                &["service", "version", "endpoint"],
            ),
            pool_available_endpoints: gauge(
                &r,
                "backout_pool_available_endpoints",
                "Endpoints of the pool that can take traffic.",
                sv,
            ),
            breaker_state: gauge(
                &r,
                "backout_breaker_state",
                "1 for the circuit breaker's current state, 0 for the others.",
                &["service", "version", "state"],
            ),
            breaker_transitions: counter(
                &r,
                "backout_breaker_transitions_total",
                "Circuit breaker state changes, by the state entered.",
                &["service", "version", "to"],
            ),
            ejections: counter(
                &r,
                "backout_endpoint_ejections_total",
                "Endpoints ejected by outlier detection.",
                sv,
            ),
            fleet: FleetMetrics {
                connected: gauge(
                    &r,
                    "backout_control_plane_connected",
                    "1 while the proxy is subscribed to a control plane, 0 while it serves from its last snapshot without one.",
                    &[],
                )
                .with_label_values(&[] as &[&str]),
                snapshot_generation: gauge(
                    &r,
                    "backout_snapshot_generation",
                    "Generation of the control plane's snapshot the proxy serves, per service.",
                    &["service"],
                ),
                snapshot_age: float_gauge(
                    &r,
                    "backout_snapshot_age_seconds",
                    "Seconds since the served snapshot was received from a control plane (it may come from the state file).",
                    &["service"],
                ),
                snapshots: counter(
                    &r,
                    "backout_snapshots_total",
                    "Snapshots received from the control plane, by result (applied, refused).",
                    &["service", "result"],
                ),
                state_file_errors: counter(
                    &r,
                    "backout_state_file_errors_total",
                    "State files that could not be read or written.",
                    &[],
                )
                .with_label_values(&[] as &[&str]),
            },
            registry: r,
        }
    }

    /// The handles one version records into.
    pub fn version(&self, service: &str, version: &str) -> VersionMetrics {
        let sv = [service, version];
        let with = |v: &IntCounterVec, extra: &str| v.with_label_values(&[service, version, extra]);
        VersionMetrics {
            requests: self.requests.with_label_values(&sv),
            responses: ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|c| with(&self.responses, c)),
            upstream: UpstreamFailure::ALL.map(|k| with(&self.upstream_failures, k.as_str())),
            downstream: self.downstream_failures.with_label_values(&sv),
            rejected: Rejection::ALL.map(|r| with(&self.rejected, r.as_str())),
            duration: self.duration.with_label_values(&sv),
            in_flight: self.in_flight.with_label_values(&sv),
            stats: Mutex::new(Stats::new(service, version)),
        }
    }

    pub fn canary_weight(&self, service: &str) -> Gauge {
        self.canary_weight.with_label_values(&[service])
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail on I/O; an error would mean an
        // inconsistent family, which the registry prevents.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Windows, exact latency histogram and the sampler's random source.
#[derive(Debug)]
struct Stats {
    windows: WindowRing,
    hdr: Hdr<u64>,
    rng: fastrand::Rng,
}

impl Stats {
    fn new(service: &str, version: &str) -> Self {
        // Seeded from the names so a replayed run samples the same way.
        let seed = service
            .bytes()
            .chain(version.bytes())
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
        Stats {
            windows: WindowRing::default(),
            // 1 µs to 1 hour at 3 significant digits.
            hdr: Hdr::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid"),
            rng: fastrand::Rng::with_seed(seed),
        }
    }
}

/// Latency quantiles over the version's whole life, in milliseconds.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Quantiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// Everything one version records into.
#[derive(Debug)]
pub struct VersionMetrics {
    requests: IntCounter,
    responses: [IntCounter; 5],
    upstream: [IntCounter; 4],
    downstream: IntCounter,
    rejected: [IntCounter; 3],
    duration: Histogram,
    in_flight: IntGauge,
    stats: Mutex<Stats>,
}

impl VersionMetrics {
    pub fn started(&self) {
        self.in_flight.inc();
    }

    /// Records a finished request. `started` must have been called for it.
    pub fn finished(&self, outcome: &Outcome, now_unix_ms: u64) {
        self.in_flight.dec();
        self.requests.inc();
        if let Some(c) = outcome.class() {
            self.responses[c].inc();
        }
        if let Some(f) = outcome.upstream_failure {
            self.upstream[f as usize].inc();
        }
        if outcome.downstream_failure {
            self.downstream.inc();
        }
        if let Some(r) = outcome.rejection {
            self.rejected[r as usize].inc();
        }
        if let Some(us) = outcome.latency_us {
            self.duration.observe(us as f64 / 1e6);
        }
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(us) = outcome.latency_us {
            // Values beyond the histogram's range are clamped, not lost.
            let _ = s.hdr.record(us.clamp(1, 3_600_000_000));
        }
        let Stats { windows, rng, .. } = &mut *s;
        windows.record(now_unix_ms, outcome, rng);
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    pub fn windows(&self, since_ms: u64, now_ms: u64) -> Vec<WindowView> {
        let s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        s.windows.since(since_ms, now_ms)
    }

    pub fn quantiles(&self) -> Quantiles {
        let s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let ms = |q: f64| s.hdr.value_at_quantile(q) as f64 / 1000.0;
        Quantiles {
            count: s.hdr.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: s.hdr.max() as f64 / 1000.0,
        }
    }
}
