//! Flagger's documented default analysis.

use super::{Rule, Totals, every};
use crate::traffic::Truth;
use backout_judge::Window;

/// Flagger's canary analysis with its docs' defaults: every 1 minute,
/// `request-success-rate` over the last minute must be ≥ 99 % and
/// `request-duration` p99 over the last minute ≤ 500 ms; each failed
/// check counts, and the canary is rolled back when the count reaches
/// `threshold: 5`.
#[derive(Debug, Default)]
pub struct Flagger {
    minute: Totals,
    latencies: Vec<f64>,
    failed: u32,
}

impl Rule for Flagger {
    fn name(&self) -> &'static str {
        "flagger"
    }

    fn observe(&mut self, w: &Window, _: &Truth) -> bool {
        self.minute.add(w.canary.requests, w.canary.errors);
        self.latencies.extend(w.canary.latencies());
        if !every(w.t, 60.0) {
            return false;
        }
        let success_ok = self.minute.rate().is_none_or(|r| 1.0 - r >= 0.99);
        self.latencies.sort_by(f64::total_cmp);
        let p99 = backout_judge::evalue::quantile(&self.latencies, 0.99);
        let latency_ok = p99.is_none_or(|p| p <= 500.0);
        if !(success_ok && latency_ok) {
            self.failed += 1;
        }
        self.minute = Totals::default();
        self.latencies.clear();
        self.failed >= 5
    }
}
