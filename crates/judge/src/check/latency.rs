//! Canary latency against baseline's, with a tolerance.

use super::{CheckReport, Context, finite, pooled_evidence};
use crate::config::CheckKind;
use crate::evalue::{exceedance, grapa_lambda, log_bet, log_bound};
use crate::onset::Onset;
use crate::recent::Recent;
use crate::verdict::CheckState;
use crate::window::Window;
use serde::{Deserialize, Serialize};

/// Pseudo-scores at 1/2 (the null boundary) added to a window before
/// estimating a bet, so a few lucky scores do not produce a large bet.
const PRIOR_SCORES: f64 = 4.0;
/// A window must show at least this much evidence (the Gaussian
/// approximation of its log-likelihood ratio, `n·(μ̂ − ½)² / 2σ̂²`) before
/// its estimate is bet on, so healthy noise rarely drains the e-process.
const GATE: f64 = 2.0;
/// Largest bet: the factor `1 + λ(x − ½)` stays ≥ 1/4 for any score.
const MAX_LAMBDA: f64 = 1.5;
/// Estimation windows tried, in seconds, besides the configured one.
const SHORT_WINDOWS: [f64; 3] = [10.0, 30.0, 60.0];
/// Fixed bet sizes of the CUSUMs that date a regression (see [`Onset`]):
/// small bets fit small shifts, large ones large shifts.
const ONSET_GRID: [f64; 5] = [0.1, 0.25, 0.5, 1.0, 1.5];

/// Sequential test that canary latencies are at most `(1 + tolerance)` ×
/// baseline's, in the sense of stochastic order: no model of latency
/// (log-normal or otherwise) is assumed.
///
/// **Scores.** Each tick, the baseline sample is split at random into as
/// many disjoint groups as there are canary samples (or the other way round
/// when the canary has more). A canary latency `c` scores the fraction of its
/// group's baseline latencies `b` with `c > (1+tol)·b` (see
/// [`exceedance`]). Under the null each score has mean ≤ 1/2, and because
/// groups are disjoint the scores are independent, so betting on them is an
/// e-process. Comparing against a whole group rather than one partner cuts
/// the score's variance, which is where most of the speed comes from.
///
/// **Bets.** `1 + λ(x − ½)` with `λ` from the mean and variance of recent
/// scores (aGRAPA). As in the error-rate check, several look-back windows
/// are tried (10, 30, 60 s and `window`) and the one with the most evidence
/// is used, only once it clears a gate (2 nats): a late change is bet on within
/// seconds and a long healthy history does not drain the wealth. The
/// warm-up's scores fill the windows too (they size bets, never count as
/// evidence), so a canary slow from the start is bet on from the first
/// tick after the warm-up.
/// The mirror bet `1 + λ(½ − x)` on the same scores tests the promotion null
/// "the canary is at least (1+tol)× slower" (there `E[x] ≥ 1/2`).
///
/// **Onset.** The same scores also feed a small bank of CUSUMs with fixed
/// bet sizes (`ONSET_GRID`), every tick after the warm-up; when the check
/// fails, their change point is the report's `onset_t` (see [`Onset`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyCheck {
    tolerance: f64,
    span: f64,
    log_e: f64,
    log_e_promote: f64,
    failed: bool,
    recent: Recent<Scores>,
    total: Scores,
    baseline_samples: u64,
    canary_samples: u64,
    /// Mean score over the longest window as of the last tick (for the
    /// report).
    recent_mean: Option<f64>,
    /// CUSUMs that date the change once the check fails (see [`Onset`]).
    #[serde(default)]
    onset: Onset,
}

/// Running sums of scores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Scores {
    n: u64,
    sum: f64,
    sum_sq: f64,
}

impl Scores {
    fn push(&mut self, x: f64) {
        self.n += 1;
        self.sum += x;
        self.sum_sq += x * x;
    }

    fn add(&mut self, o: &Scores) {
        self.n = self.n.saturating_add(o.n);
        self.sum += o.sum;
        self.sum_sq += o.sum_sq;
    }
}

/// A small deterministic generator (SplitMix64) for the random split: it
/// must not depend on the latencies themselves, and the judge must stay a
/// pure function of its inputs.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fisher–Yates shuffle.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// The scores of one tick: independent, each with null mean ≤ 1/2.
pub(crate) fn tick_scores(t: f64, canary: &[f64], baseline: &[f64], factor: f64) -> Vec<f64> {
    if canary.is_empty() || baseline.is_empty() {
        return Vec::new();
    }
    let mut rng = SplitMix(t.to_bits() ^ ((canary.len() as u64) << 32) ^ baseline.len() as u64);
    if canary.len() <= baseline.len() {
        let mut b = baseline.to_vec();
        rng.shuffle(&mut b);
        let g = b.len() / canary.len();
        canary
            .iter()
            .zip(b.chunks_exact(g))
            .map(|(&c, group)| exceedance(c, group, factor))
            .collect()
    } else {
        let mut c = canary.to_vec();
        rng.shuffle(&mut c);
        let g = c.len() / baseline.len();
        baseline
            .iter()
            .zip(c.chunks_exact(g))
            .map(|(&b, group)| {
                let scaled = factor * b;
                let s: f64 = group
                    .iter()
                    .map(|&c| {
                        if c > scaled {
                            1.0
                        } else if c == scaled {
                            0.5
                        } else {
                            0.0
                        }
                    })
                    .sum();
                s / group.len() as f64
            })
            .collect()
    }
}

impl LatencyCheck {
    /// A fresh check; `window` is how far back bets are estimated from.
    pub fn new(tolerance: f64, window: f64) -> Self {
        LatencyCheck {
            tolerance,
            span: window,
            log_e: 0.0,
            log_e_promote: 0.0,
            failed: false,
            recent: Recent::new(window),
            total: Scores::default(),
            baseline_samples: 0,
            canary_samples: 0,
            recent_mean: None,
            onset: Onset::default(),
        }
    }

    /// ln of this check's own e-value against "within tolerance".
    pub(super) fn log_e(&self) -> f64 {
        self.log_e
    }

    /// Marks the check failed (its pool crossed, with this check's
    /// evidence the largest); it stays failed.
    pub(super) fn fail(&mut self) {
        self.failed = true;
        self.onset.freeze();
    }

    /// Remembers a warm-up tick's scores for sizing later bets; no bet, no
    /// evidence.
    pub(super) fn learn(&mut self, t: f64, window: &Window) {
        let canary: Vec<f64> = window.canary.latencies().collect();
        let baseline: Vec<f64> = window.baseline.latencies().collect();
        let mut tick = Scores::default();
        for x in tick_scores(t, &canary, &baseline, 1.0 + self.tolerance) {
            tick.push(x);
        }
        self.recent.push(t, tick);
    }

    /// Bet sizes (against, for promotion) from the recent window with the
    /// most evidence, and the mean score over the longest window.
    fn estimate(&self) -> (f64, f64, Option<f64>) {
        let mut against: (f64, f64) = (GATE, 0.0);
        let mut promote: (f64, f64) = (GATE, 0.0);
        let mut w = Scores::default();
        let mut windows = SHORT_WINDOWS
            .iter()
            .copied()
            .filter(|&s| s < self.span)
            .chain([self.span]);
        let mut edge = windows.next();
        let newest = self.recent.newest().unwrap_or(0.0);
        let mut consider = |w: &Scores| {
            if w.n < 2 {
                return;
            }
            let n = w.n as f64;
            let raw = w.sum / n;
            let variance = (w.sum_sq / n - raw * raw).max(1.0 / 144.0);
            let evidence = n * (raw - 0.5).powi(2) / (2.0 * variance);
            let mean = (w.sum + PRIOR_SCORES * 0.5) / (n + PRIOR_SCORES);
            if raw > 0.5 && evidence > against.0 {
                against = (evidence, grapa_lambda(mean, variance, 0.5, MAX_LAMBDA));
            }
            if raw < 0.5 && evidence > promote.0 {
                promote = (
                    evidence,
                    grapa_lambda(1.0 - mean, variance, 0.5, MAX_LAMBDA),
                );
            }
        };
        for (t, s) in self.recent.iter_rev() {
            while let Some(span) = edge {
                if newest - t < span {
                    break;
                }
                consider(&w);
                edge = windows.next();
            }
            if edge.is_none() {
                break;
            }
            w.add(s);
        }
        if edge.is_some() {
            consider(&w);
        }
        let mean = (w.n > 0).then(|| w.sum / w.n as f64);
        (against.1, promote.1, mean)
    }

    /// Feeds one tick: bets on its scores with sizes from earlier ticks,
    /// and returns ln of the rollback bet's factor (`None` when no rollback
    /// bet was placed: no edge in recent data, or a baseline incident).
    pub(super) fn observe(&mut self, ctx: &Context, window: &Window) -> Option<f64> {
        let factor = 1.0 + self.tolerance;
        let canary: Vec<f64> = window.canary.latencies().collect();
        let baseline: Vec<f64> = window.baseline.latencies().collect();
        self.canary_samples = self.canary_samples.saturating_add(canary.len() as u64);
        self.baseline_samples = self.baseline_samples.saturating_add(baseline.len() as u64);
        let (lambda, lambda_promote, recent_mean) = self.estimate();
        self.recent_mean = recent_mean;
        // Decided before looking at this tick, like the bet itself: the
        // pool's split among checks must be predictable.
        let lambda = if ctx.incident { 0.0 } else { lambda };
        let mut tick = Scores::default();
        let mut step = 0.0;
        let scores = tick_scores(ctx.t, &canary, &baseline, factor);
        for &x in &scores {
            step += log_bet(lambda, x, 0.5);
            self.log_e_promote += log_bet(lambda_promote, 1.0 - x, 0.5);
            tick.push(x);
        }
        self.log_e += step;
        // Dating a change is not a bet: every tick with scores counts.
        if tick.n > 0 {
            let llrs = ONSET_GRID.map(|l| scores.iter().map(|&x| log_bet(l, x, 0.5)).sum::<f64>());
            self.onset.step(ctx.t, &llrs);
        }
        self.recent.push(ctx.t, tick);
        self.total.add(&tick);
        (lambda > 0.0).then_some(step)
    }

    /// Where the check stands after this tick's pool update.
    pub(super) fn report(&self, name: &str, ctx: &Context) -> CheckReport {
        let factor = 1.0 + self.tolerance;
        let bound = log_bound(ctx.alpha);
        let promote_bound = log_bound(ctx.promote_alpha);
        let p = self.recent_mean;
        let p_text = p.map_or("n/a".to_owned(), |p| format!("{p:.3}"));
        let (state, reason) = if self.failed {
            (
                CheckState::Fail,
                format!(
                    "canary is slower than {factor:.2}× baseline: pooled e-value e^{:.2} ≥ 1/α = e^{bound:.2}, this check's own e^{:.2}; recent P(canary > {factor:.2}×baseline) = {p_text} > 0.5",
                    ctx.pooled, self.log_e
                ),
            )
        } else if self.canary_samples == 0 && self.baseline_samples == 0 {
            (
                CheckState::NoData,
                "no latency samples from either group".to_owned(),
            )
        } else if self.total.n == 0 {
            (
                CheckState::Insufficient,
                format!(
                    "need latency samples in both groups (canary {}, baseline {})",
                    self.canary_samples, self.baseline_samples
                ),
            )
        } else if self.log_e_promote >= promote_bound {
            (
                CheckState::Pass,
                format!(
                    "canary latency is within {factor:.2}× baseline: promotion e-value e^{:.2} ≥ e^{promote_bound:.2}; recent P(canary > {factor:.2}×baseline) = {p_text}",
                    self.log_e_promote
                ),
            )
        } else {
            (
                CheckState::Continue,
                format!(
                    "no conclusion: {}, promotion e^{:.2} < e^{promote_bound:.2}; recent P(canary > {factor:.2}×baseline) = {p_text}{}",
                    pooled_evidence(self.log_e, ctx.pooled, bound),
                    self.log_e_promote,
                    if ctx.incident {
                        "; not betting during a baseline incident"
                    } else {
                        ""
                    }
                ),
            )
        };
        let mut report = CheckReport::new(name, CheckKind::Latency, state, reason);
        report.statistic = finite(self.log_e);
        report.pooled_statistic = finite(ctx.pooled);
        report.bound = finite(bound);
        report.promote_statistic = finite(self.log_e_promote);
        report.promote_bound = finite(promote_bound);
        report.estimate = p.and_then(finite);
        report.threshold = Some(0.5);
        report.baseline_samples = self.baseline_samples;
        report.canary_samples = self.canary_samples;
        report.onset_t = self.onset.t().filter(|_| self.failed);
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(canary: &[f64], baseline: &[f64], factor: f64, expected: &[f64]) {
        let mut got = tick_scores(1.0, canary, baseline, factor);
        got.sort_by(f64::total_cmp);
        assert_eq!(got, expected, "canary {canary:?} baseline {baseline:?}");
    }

    #[test]
    fn scores_use_disjoint_groups() {
        check(&[], &[1.0], 1.0, &[]);
        check(&[1.0], &[], 1.0, &[]);
        check(&[10.0], &[5.0, 20.0], 1.0, &[0.5]);
        check(&[10.0], &[10.0], 1.0, &[0.5]);
        check(&[100.0, 100.0], &[1.0, 2.0, 3.0, 4.0], 1.0, &[1.0, 1.0]);
        check(&[0.0, 0.0, 0.0], &[1.0, 2.0, 3.0], 1.0, &[0.0, 0.0, 0.0]);
        // More canary than baseline: each baseline value meets a canary group.
        check(&[50.0, 50.0, 50.0, 50.0], &[10.0, 100.0], 1.0, &[0.0, 1.0]);
        // Five canary values, two baseline groups of two; one baseline spare.
        assert_eq!(
            tick_scores(3.0, &[1.0, 2.0], &[1.0, 1.0, 1.0, 1.0, 1.0], 1.0).len(),
            2
        );
    }
}
