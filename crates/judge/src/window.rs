//! What the judge is fed: one tick's worth of measurements per group.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Measurements of one group (baseline or canary) over one tick.
///
/// Counts are for that tick only, not cumulative, so a missed tick loses a
/// tick's evidence instead of corrupting every later one. `latency_ms` is a
/// uniform sample of the tick's request latencies (the proxy keeps at most
/// 200): uniform sampling is what makes the latency check's comparisons
/// unbiased.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupWindow {
    /// Requests completed in the tick.
    pub requests: u64,
    /// Of those, the ones that count as errors (5xx and upstream failures by default).
    pub errors: u64,
    /// A uniform sample of the tick's latencies in milliseconds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_ms: Vec<f64>,
    /// Extra metrics from providers (`cpu`, `memory`, `ready`, `breaker_open`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

impl GroupWindow {
    /// A window with counts only.
    pub fn counts(requests: u64, errors: u64) -> Self {
        GroupWindow {
            requests,
            errors,
            ..GroupWindow::default()
        }
    }

    /// Errors, never more than requests: a peer that reports more errors
    /// than requests is clamped rather than trusted or allowed to panic.
    pub fn errors_clamped(&self) -> u64 {
        self.errors.min(self.requests)
    }

    /// The latency sample without values no clock can produce (NaN,
    /// infinities, negatives), which would otherwise poison comparisons.
    pub fn latencies(&self) -> impl Iterator<Item = f64> + '_ {
        self.latency_ms
            .iter()
            .copied()
            .filter(|v| v.is_finite() && *v >= 0.0)
    }

    /// A named extra metric, if it is a usable number.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied().filter(|v| v.is_finite())
    }

    /// Adds another window of the same group (several 1-second proxy
    /// windows folded into one tick). Extra metrics keep the latest value.
    pub fn merge(&mut self, other: &GroupWindow) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
        self.latency_ms.extend_from_slice(&other.latency_ms);
        for (k, v) in &other.metrics {
            self.metrics.insert(k.clone(), *v);
        }
    }
}

/// One tick: both groups measured over the same interval.
///
/// Baseline is the stable version serving at the same time as the canary, so
/// anything that hits both (a shared dependency failing, a traffic spike) is
/// visible as such.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Seconds since the canary started; the judge's only notion of "now".
    pub t: f64,
    /// The stable version.
    pub baseline: GroupWindow,
    /// The version under test.
    pub canary: GroupWindow,
}
