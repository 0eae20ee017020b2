//! A χ² test of the cumulative error counts, checked every minute.

use super::{Rule, Totals, every};
use crate::stats::chi2_2x2;
use crate::traffic::Truth;
use backout_judge::Window;

/// Every minute, Pearson's χ² test (with Yates' correction) on the
/// cumulative 2×2 table errors/successes × canary/baseline at p < 0.05;
/// roll back when significant and the canary's rate is the higher. Each
/// look spends 5 %, so repeated looks inflate false rollbacks: this is the
/// rule the issue warns about.
#[derive(Debug, Default)]
pub struct ChiSquared {
    canary: Totals,
    baseline: Totals,
}

impl Rule for ChiSquared {
    fn name(&self) -> &'static str {
        "chi2-1m"
    }

    fn observe(&mut self, w: &Window, _: &Truth) -> bool {
        self.canary.add(w.canary.requests, w.canary.errors);
        self.baseline.add(w.baseline.requests, w.baseline.errors);
        if !every(w.t, 60.0) {
            return false;
        }
        let (c, b) = (self.canary, self.baseline);
        let worse = match (c.rate(), b.rate()) {
            (Some(rc), Some(rb)) => rc > rb,
            _ => false,
        };
        let test = chi2_2x2(
            c.errors as f64,
            (c.requests - c.errors) as f64,
            b.errors as f64,
            (b.requests - b.errors) as f64,
        );
        worse && test.is_some_and(|(_, p)| p < 0.05)
    }
}
