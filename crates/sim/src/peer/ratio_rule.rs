//! The "1.5× baseline after 1000 requests and 5 minutes" rule.

use super::{Rule, Totals};
use crate::traffic::Truth;
use backout_judge::Window;

/// A fixed rule many teams write by hand: once the canary has served 1000
/// requests and run 5 minutes, roll back as soon as its cumulative error
/// rate exceeds 1.5× the baseline's. Checked every second.
#[derive(Debug, Default)]
pub struct RatioRule {
    canary: Totals,
    baseline: Totals,
}

impl Rule for RatioRule {
    fn name(&self) -> &'static str {
        "ratio-1.5x"
    }

    fn observe(&mut self, w: &Window, _: &Truth) -> bool {
        self.canary.add(w.canary.requests, w.canary.errors);
        self.baseline.add(w.baseline.requests, w.baseline.errors);
        if self.canary.requests < 1000 || w.t < 300.0 {
            return false;
        }
        match (self.canary.rate(), self.baseline.rate()) {
            (Some(c), Some(b)) => c > 1.5 * b && c > 0.0,
            _ => false,
        }
    }
}
