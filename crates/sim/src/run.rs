//! One simulated rollout, judged by backout and every peer rule at once.

use crate::peer::{self, Rule};
use crate::scenario::Scenario;
use crate::traffic;
use backout_judge::{AnalysisConfig, CheckKind, Judge, Verdict};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What one rule did in one run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    /// When it first rolled back, if it did (s).
    pub rollback_at: Option<f64>,
    /// When backout's judge first said promote (judge only).
    pub promote_at: Option<f64>,
    /// Canary errors above the baseline's rate served from onset until the
    /// rollback (or the end): what users paid for the wait.
    pub excess_errors: f64,
}

/// What happened in one run, per rule (backout first).
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    /// The scenario drawn for this run.
    pub scenario: Scenario,
    /// `(rule name, outcome)`, backout's judge first.
    pub outcomes: Vec<(&'static str, Outcome)>,
}

/// Tolerances the oracle SPRT must respect: the judge's own.
#[derive(Clone, Copy, Debug)]
pub struct Tolerances {
    /// Rollout-wide α.
    pub alpha: f64,
    /// Error-rate tolerance.
    pub errors: f64,
    /// Latency tolerance.
    pub latency: f64,
    /// The judge's warm-up: the oracle starts no earlier, so it is shown
    /// the same data the judge may use.
    pub warmup: f64,
}

impl Tolerances {
    /// The tolerances an analysis config gives its relative checks (the
    /// first error-rate and latency checks; defaults where absent).
    pub fn from_config(config: &AnalysisConfig) -> Self {
        let checks = config
            .checks
            .clone()
            .unwrap_or_else(AnalysisConfig::default_checks);
        let find = |kind: CheckKind| checks.iter().find(|c| c.kind == kind);
        let errors = find(CheckKind::ErrorRate);
        let latency = find(CheckKind::Latency);
        let warmup = [errors, latency]
            .into_iter()
            .flatten()
            .map(|c| c.warmup.map_or(30.0, |w| w.get()))
            .fold(0.0, f64::max);
        Tolerances {
            alpha: config.alpha,
            errors: errors.and_then(|c| c.tolerance).unwrap_or(0.2),
            latency: latency.and_then(|c| c.tolerance).unwrap_or(0.1),
            warmup,
        }
    }
}

/// Derives a run's seed from the simulation seed, family and run index,
/// so runs are independent and any one can be reproduced alone.
///
/// Each input goes through the SplitMix64 finaliser before the next is
/// mixed in. XOR-ing them first would make seed `s`, run `r` the very same
/// run as seed `s ^ 1`, run `r ^ 1`: neighbouring seeds would draw the same
/// scenarios in another order, and "tuned on one seed, reported on
/// another" would mean nothing.
pub fn run_seed(seed: u64, family: usize, run: usize) -> u64 {
    let z = splitmix(seed);
    let z = splitmix(z ^ family as u64);
    splitmix(z ^ run as u64)
}

/// SplitMix64's step and finaliser: a bijection on `u64` that sends nearby
/// inputs to unrelated outputs.
fn splitmix(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Runs one rollout of a family with `seed`: draws the scenario, then
/// feeds its windows to a fresh copy of `judge` and to every peer.
///
/// Traffic is drawn one second at a time whatever `window` is (seconds per
/// window, at least 1), and the seconds are folded into windows of that
/// length, stamped at their end, the way a Prometheus query over
/// `[10s]` reports them. So the same seed gives the same traffic at every
/// window size, and the sizes can be compared run by run. Errors served
/// while a window is still open count as excess until the window that
/// rolls back: coarse windows pay for their wait.
pub fn run(
    family: &crate::Family,
    judge: &Judge,
    tol: Tolerances,
    seed: u64,
    window: u32,
) -> RunResult {
    let window = u64::from(window.max(1));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let scenario = family.sample(&mut rng);
    let mut judge = judge.clone();
    let mut peers: Vec<Box<dyn Rule>> = peer::all(&scenario, tol, &judge);
    let mut judge_out = Outcome {
        rollback_at: None,
        promote_at: None,
        excess_errors: 0.0,
    };
    let mut peer_out = vec![judge_out; peers.len()];
    let ticks = scenario.duration as u64;
    let mut open = traffic::Fold::default();
    for i in 1..=ticks {
        let t = i as f64;
        let (second, truth) = traffic::tick(&scenario, t, &mut rng);
        let excess = if truth.regressed {
            second.canary.requests as f64 * (truth.p_canary - truth.p_baseline).max(0.0)
        } else {
            0.0
        };
        if judge_out.rollback_at.is_none() {
            judge_out.excess_errors += excess;
        }
        for out in peer_out.iter_mut().filter(|o| o.rollback_at.is_none()) {
            out.excess_errors += excess;
        }
        open.add(&second, truth);
        if i % window != 0 && i != ticks {
            continue;
        }
        let Some((window, truth)) = open.take(t) else {
            continue;
        };
        if judge_out.rollback_at.is_none() {
            let decision = judge.observe(&window);
            match decision.verdict {
                Verdict::Rollback => judge_out.rollback_at = Some(t),
                Verdict::Promote if judge_out.promote_at.is_none() => {
                    judge_out.promote_at = Some(t)
                }
                _ => {}
            }
        }
        for (p, out) in peers.iter_mut().zip(peer_out.iter_mut()) {
            if out.rollback_at.is_none() && p.observe(&window, &truth) {
                out.rollback_at = Some(t);
            }
        }
        if judge_out.rollback_at.is_some() && peer_out.iter().all(|o| o.rollback_at.is_some()) {
            break;
        }
    }
    let mut outcomes = vec![("backout", judge_out)];
    outcomes.extend(peers.iter().map(|p| p.name()).zip(peer_out));
    RunResult { scenario, outcomes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn neighbouring_seeds_draw_different_runs() {
        let mut seen = HashSet::new();
        for seed in 1000..1008 {
            for family in 0..16 {
                for run in 0..256 {
                    assert!(
                        seen.insert(run_seed(seed, family, run)),
                        "seed {seed}, family {family}, run {run} repeats an earlier run"
                    );
                }
            }
        }
    }
}
