//! A Kayenta-like judge: Mann–Whitney on metric series every 10 minutes.

use super::{Rule, every};
use crate::stats::mann_whitney_greater;
use crate::traffic::Truth;
use backout_judge::Window;

/// Like Kayenta's NetflixACAJudge in a canary config with two metrics
/// (error rate, latency) and a 10-minute interval: at the end of each
/// interval, each metric's per-second series for canary and baseline are
/// compared with a one-sided Mann–Whitney U test at 98 % confidence; a
/// metric fails when the canary is significantly higher. The score is the
/// share of passing metrics; below the marginal threshold (75) the canary
/// is rolled back, so one failing metric of two rolls back.
#[derive(Debug, Default)]
pub struct Kayenta {
    errors: (Vec<f64>, Vec<f64>),
    latency: (Vec<f64>, Vec<f64>),
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = v.fold((0.0, 0u32), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| s / f64::from(n))
}

impl Rule for Kayenta {
    fn name(&self) -> &'static str {
        "kayenta-10m"
    }

    fn observe(&mut self, w: &Window, _: &Truth) -> bool {
        for (g, errors, latency) in [
            (&w.canary, &mut self.errors.0, &mut self.latency.0),
            (&w.baseline, &mut self.errors.1, &mut self.latency.1),
        ] {
            if g.requests > 0 {
                errors.push(g.errors.min(g.requests) as f64 / g.requests as f64);
            }
            if let Some(m) = mean(g.latencies()) {
                latency.push(m);
            }
        }
        if !every(w.t, 600.0) {
            return false;
        }
        let fails = |(c, b): &(Vec<f64>, Vec<f64>)| {
            mann_whitney_greater(c, b).is_some_and(|(_, p)| p < 0.02)
        };
        let failed = u32::from(fails(&self.errors)) + u32::from(fails(&self.latency));
        self.errors = Default::default();
        self.latency = Default::default();
        let score = 100.0 * f64::from(2 - failed) / 2.0;
        score < 75.0
    }
}
