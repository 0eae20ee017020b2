//! Synthetic traffic: the windows a proxy would report for a scenario.

use crate::scenario::Scenario;
use backout_judge::{GroupWindow, Window};
use rand::Rng;
use rand_distr::{Binomial, Distribution, Gamma, LogNormal, Poisson};

/// At most this many latencies per group per window, like the proxy.
pub const SAMPLE_CAP: u64 = 200;

/// The true state of a tick, which only the simulator (and the oracle
/// SPRT) knows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Truth {
    /// Baseline error probability this tick.
    pub p_baseline: f64,
    /// Canary error probability this tick.
    pub p_canary: f64,
    /// Whether the canary's own regression is active (t ≥ onset).
    pub regressed: bool,
}

/// The true rates at time `t`, given this tick's shared burst multiplier.
pub fn truth(s: &Scenario, t: f64, burst: f64) -> (Truth, f64, f64) {
    let mut pb = s.base_error * burst;
    let mut pc = pb;
    let mut lat_b = s.latency_median_ms;
    let mut lat_c = lat_b;
    let regressed = t >= s.onset && (s.error_ratio != 1.0 || s.latency_ratio != 1.0);
    if t >= s.onset {
        pc *= s.error_ratio;
        lat_c *= s.latency_ratio;
    }
    if let Some(cs) = &s.cold_start {
        let decay = (-t / cs.tau).exp();
        pc *= 1.0 + (cs.error_factor - 1.0) * decay;
        lat_c *= 1.0 + (cs.latency_factor - 1.0) * decay;
    }
    if let Some(inc) = &s.incident
        && t >= inc.start
        && t < inc.start + inc.duration
    {
        pb += inc.error_add;
        pc += inc.error_add;
        lat_b *= inc.latency_factor;
        lat_c *= inc.latency_factor;
    }
    (
        Truth {
            p_baseline: pb.min(1.0),
            p_canary: pc.min(1.0),
            regressed,
        },
        lat_b,
        lat_c,
    )
}

fn group<R: Rng>(rng: &mut R, rate: f64, p: f64, median: f64, sigma: f64) -> GroupWindow {
    let requests = if rate > 0.0 {
        Poisson::new(rate)
            .map(|d| d.sample(rng) as u64)
            .unwrap_or(0)
    } else {
        0
    };
    let errors = Binomial::new(requests, p.clamp(0.0, 1.0))
        .map(|d| d.sample(rng))
        .unwrap_or(0);
    let n = requests.min(SAMPLE_CAP);
    let latency_ms = match LogNormal::new(median.max(1e-6).ln(), sigma) {
        Ok(d) => (0..n)
            .map(|_| (d.sample(rng) * 1000.0).round() / 1000.0)
            .collect(),
        Err(_) => Vec::new(),
    };
    GroupWindow {
        requests,
        errors,
        latency_ms,
        ..GroupWindow::default()
    }
}

/// Draws the window of the one-second tick ending at `t`.
pub fn tick<R: Rng>(s: &Scenario, t: f64, rng: &mut R) -> (Window, Truth) {
    let burst = match s.burst_shape {
        Some(k) => Gamma::new(k, 1.0 / k).map(|d| d.sample(rng)).unwrap_or(1.0),
        None => 1.0,
    };
    let (truth, lat_b, lat_c) = truth(s, t, burst);
    let canary_rate = s.rps * s.canary_weight;
    let baseline_rate = s.rps - canary_rate;
    let baseline = group(rng, baseline_rate, truth.p_baseline, lat_b, s.latency_sigma);
    let canary = group(rng, canary_rate, truth.p_canary, lat_c, s.latency_sigma);
    (
        Window {
            t,
            baseline,
            canary,
        },
        truth,
    )
}

/// Seconds folded into one coarser window: counts summed, latency samples
/// thinned to [`SAMPLE_CAP`] (evenly, without drawing from the generator,
/// so the traffic stays the same at every window size), like a metrics
/// backend that keeps a bounded sample per scrape.
#[derive(Clone, Debug, Default)]
pub struct Fold {
    window: Option<Window>,
    truth: Option<Truth>,
}

impl Fold {
    /// Adds one second and its truth.
    pub fn add(&mut self, second: &Window, truth: Truth) {
        match &mut self.window {
            Some(w) => {
                w.baseline.merge(&second.baseline);
                w.canary.merge(&second.canary);
            }
            None => self.window = Some(second.clone()),
        }
        // The oracle is told the latest rates; the regression counts as
        // present in the window if it was present in any of its seconds.
        let regressed = self.truth.is_some_and(|t| t.regressed) || truth.regressed;
        self.truth = Some(Truth { regressed, ..truth });
    }

    /// The folded window stamped `t` (its end), and starts a new one.
    pub fn take(&mut self, t: f64) -> Option<(Window, Truth)> {
        let mut w = self.window.take()?;
        let truth = self.truth.take()?;
        w.t = t;
        for g in [&mut w.baseline, &mut w.canary] {
            thin(&mut g.latency_ms, SAMPLE_CAP as usize);
        }
        Some((w, truth))
    }
}

/// Keeps `cap` evenly spaced values of `v`.
fn thin(v: &mut Vec<f64>, cap: usize) {
    if v.len() <= cap || cap == 0 {
        return;
    }
    let n = v.len();
    let kept: Vec<f64> = (0..cap).map(|i| v[i * n / cap]).collect();
    *v = kept;
}
