//! Argo Rollouts' common analysis example.

use super::{Rule, Totals, every};
use crate::traffic::Truth;
use backout_judge::Window;
use std::collections::VecDeque;

/// Argo Rollouts' AnalysisTemplate as in its common Prometheus example:
/// every 30 s, measure the canary's 5xx ratio over the last 2 minutes;
/// a measurement fails when the ratio is ≥ 1 %; the analysis (and the
/// rollout) fails once more than `failureLimit: 2` measurements failed.
#[derive(Debug, Default)]
pub struct Argo {
    recent: VecDeque<(u64, u64)>,
    failures: u32,
}

impl Rule for Argo {
    fn name(&self) -> &'static str {
        "argo"
    }

    fn observe(&mut self, w: &Window, _: &Truth) -> bool {
        self.recent.push_back((w.canary.requests, w.canary.errors));
        if self.recent.len() > 120 {
            self.recent.pop_front();
        }
        if !every(w.t, 30.0) {
            return false;
        }
        let mut t = Totals::default();
        for &(n, e) in &self.recent {
            t.add(n, e);
        }
        // No data is an inconclusive measurement in Argo, not a failure.
        if t.rate().is_some_and(|r| r >= 0.01) {
            self.failures += 1;
        }
        self.failures > 2
    }
}
