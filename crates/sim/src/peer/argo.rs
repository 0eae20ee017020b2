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
    /// `(end of window, requests, errors)` of the last 2 minutes.
    recent: VecDeque<(f64, u64, u64)>,
    failures: u32,
}

impl Rule for Argo {
    fn name(&self) -> &'static str {
        "argo"
    }

    fn observe(&mut self, w: &Window, _: &Truth) -> bool {
        self.recent
            .push_back((w.t, w.canary.requests, w.canary.errors));
        // The query's range is 2 minutes of time, whatever the windows.
        while self
            .recent
            .front()
            .is_some_and(|&(t, _, _)| t <= w.t - 120.0)
        {
            self.recent.pop_front();
        }
        if !every(w.t, 30.0) {
            return false;
        }
        let mut t = Totals::default();
        for &(_, n, e) in &self.recent {
            t.add(n, e);
        }
        // No data is an inconclusive measurement in Argo, not a failure.
        if t.rate().is_some_and(|r| r >= 0.01) {
            self.failures += 1;
        }
        self.failures > 2
    }
}
