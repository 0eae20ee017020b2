//! One upstream endpoint of a version pool and what is known of its health.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use backout_spec::{EndpointUrl, OutlierSpec, ProbesSpec};
use prometheus::IntGauge;
use serde::Serialize;

use crate::outlier::{Ejection, Outlier};
use crate::probe::{HealthChange, ProbeHealth, ProbeKind};

#[derive(Debug)]
pub struct Endpoint {
    pub url: EndpointUrl,
    /// `host:port`, used in events, metrics and error bodies.
    pub label: String,
    pub(crate) uri_base: http::uri::Authority,
    in_flight: AtomicU32,
    /// Probes allow traffic (started, live and ready).
    serving: AtomicBool,
    /// Monotonic ms until which outlier detection keeps it out; 0 = never.
    ejected_until_ms: AtomicU64,
    /// Fast path for outlier detection: most results are successes after
    /// successes and need no lock.
    failure_run: AtomicU32,
    health: Mutex<Health>,
    pub(crate) serving_gauge: IntGauge,
    /// Cancelled when the endpoint leaves its pool: its probes stop.
    pub(crate) cancel: tokio_util::sync::CancellationToken,
}

#[derive(Debug)]
struct Health {
    probes: ProbeHealth,
    outlier: Outlier,
}

/// Health as shown by the admin API.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub available: bool,
    pub started: bool,
    pub startup_failed: bool,
    pub live: bool,
    pub ready: bool,
    /// Monotonic-clock deadline is not meaningful outside the process, so
    /// this is the time left.
    pub ejected_for_ms: u64,
    pub consecutive_failures: u32,
    pub in_flight: u32,
}

impl Endpoint {
    pub fn new(url: EndpointUrl, probes: &ProbesSpec, serving_gauge: IntGauge) -> Self {
        Self::assumed(url, probes, serving_gauge, false)
    }

    /// An endpoint that starts as ready when the control plane last saw it
    /// so ([`ProbeHealth::assumed`]).
    pub fn assumed(
        url: EndpointUrl,
        probes: &ProbesSpec,
        serving_gauge: IntGauge,
        ready: bool,
    ) -> Self {
        let health = ProbeHealth::assumed(probes, ready);
        let serving = health.serving();
        serving_gauge.set(i64::from(serving));
        Endpoint {
            label: url.authority().to_string(),
            uri_base: url.authority().clone(),
            url,
            in_flight: AtomicU32::new(0),
            serving: AtomicBool::new(serving),
            ejected_until_ms: AtomicU64::new(0),
            failure_run: AtomicU32::new(0),
            health: Mutex::new(Health {
                probes: health,
                outlier: Outlier::default(),
            }),
            serving_gauge,
            cancel: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Can take a request now: probes pass and not ejected.
    pub fn available(&self, now_ms: u64) -> bool {
        self.serving.load(Ordering::Relaxed)
            && self.ejected_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn should_probe(&self, kind: ProbeKind) -> bool {
        self.lock().probes.should_run(kind)
    }

    /// Records a probe result; returns the change if health flipped.
    pub fn observe_probe(&self, kind: ProbeKind, ok: bool) -> Option<HealthChange> {
        let mut h = self.lock();
        let change = h.probes.observe(kind, ok);
        let serving = h.probes.serving();
        self.serving.store(serving, Ordering::Relaxed);
        self.serving_gauge.set(i64::from(serving));
        change
    }

    /// Records a request result for outlier detection. `may_eject` is asked
    /// only when a run of failures is long enough to matter.
    pub(crate) fn observe_result(
        &self,
        spec: &OutlierSpec,
        now_ms: u64,
        failed: bool,
        may_eject: impl FnOnce() -> bool,
    ) -> Option<Ejection> {
        if !failed {
            if self.failure_run.load(Ordering::Relaxed) != 0 {
                self.failure_run.store(0, Ordering::Relaxed);
                self.lock().outlier.record(spec, now_ms, false, false);
            }
            return None;
        }
        let run = self.failure_run.fetch_add(1, Ordering::Relaxed) + 1;
        let allowed = run >= spec.consecutive_failures.get() && may_eject();
        let mut h = self.lock();
        let ejection = h.outlier.record(spec, now_ms, true, allowed);
        if let Some(e) = ejection {
            self.ejected_until_ms.store(e.until_ms, Ordering::Relaxed);
            self.failure_run.store(0, Ordering::Relaxed);
        }
        ejection
    }

    pub fn status(&self, now_ms: u64) -> EndpointStatus {
        let h = self.lock();
        EndpointStatus {
            endpoint: self.label.clone(),
            available: self.available(now_ms),
            started: h.probes.started(),
            startup_failed: h.probes.startup_failed(),
            live: h.probes.live(),
            ready: h.probes.ready(),
            ejected_for_ms: self
                .ejected_until_ms
                .load(Ordering::Relaxed)
                .saturating_sub(now_ms),
            consecutive_failures: h.outlier.consecutive_failures(),
            in_flight: self.in_flight(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }
}
