//! One wealth process shared by several sequential checks.
//!
//! Splitting α between checks (Bonferroni) makes each check prove its case
//! against `1/α_i`: with two checks of equal weight, `2/α`. Most of the
//! time only one of them has anything to say (an error regression leaves
//! latency alone, and a check whose recent data shows no edge does not
//! bet), so half the budget sits idle.
//!
//! A pool instead keeps *one* wealth for its checks and, every tick, splits
//! it among the checks that bet this tick, in proportion to their weights.
//! Its factor for the tick is the convex combination `Σ πᵢ fᵢ` of the
//! checks' own factors. Each `fᵢ` has conditional expectation ≤ 1 given the
//! past when check `i`'s null holds, and the weights `πᵢ` are fixed before
//! the tick's data is seen (which checks bet is decided from earlier ticks
//! only), so under the null that *every* check in the pool is within
//! tolerance `E[Σ πᵢ fᵢ | past] = Σ πᵢ E[fᵢ | past] ≤ 1`: the pooled wealth
//! is a non-negative supermartingale and, by Ville's inequality, reaches
//! `1/α` with probability at most `α` over the whole rollout, however the
//! checks depend on each other. A check that does not bet contributes the
//! factor 1 and receives no share, so the whole budget goes to the checks
//! with evidence, without spending anything on the choice.
//!
//! What the pool's crossing proves is that *some* check of the pool is
//! outside tolerance, which is exactly what a rollback claims. Which check
//! is named is a report, not a test: the one whose own e-value (the product
//! of its own factors) is largest, which is the one whose bets made the
//! money.

use serde::{Deserialize, Serialize};

/// The pooled wealth of a set of checks, in logs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    log_wealth: f64,
}

impl Pool {
    /// A pool holding wealth 1.
    pub fn new() -> Self {
        Pool::default()
    }

    /// ln of the pooled e-value.
    pub fn log_wealth(&self) -> f64 {
        self.log_wealth
    }

    /// Compounds one tick: `bets` holds `(weight, ln fᵢ)` for each check
    /// that bet this tick. The wealth is split by weight among them, so the
    /// factor is `Σ wᵢ fᵢ / Σ wᵢ`; no bets leave the wealth as it was.
    pub fn step(&mut self, bets: &[(f64, f64)]) {
        let total: f64 = bets
            .iter()
            .map(|&(w, _)| w)
            .filter(|w| w.is_finite() && *w > 0.0)
            .sum();
        if total <= 0.0 || !total.is_finite() {
            return;
        }
        // log-sum-exp around the largest factor, so extreme bets neither
        // overflow nor vanish.
        let top = bets
            .iter()
            .filter(|&&(w, l)| w.is_finite() && w > 0.0 && !l.is_nan())
            .map(|&(_, l)| l)
            .fold(f64::NEG_INFINITY, f64::max);
        if !top.is_finite() {
            return;
        }
        let mixed: f64 = bets
            .iter()
            .filter(|&&(w, l)| w.is_finite() && w > 0.0 && !l.is_nan())
            .map(|&(w, l)| w / total * (l - top).exp())
            .sum();
        let step = top + mixed.ln();
        if step.is_finite() {
            self.log_wealth += step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps a fresh pool through `ticks` and compares its log-wealth.
    fn check(ticks: &[&[(f64, f64)]], expected: f64) {
        let mut pool = Pool::new();
        for bets in ticks {
            pool.step(bets);
        }
        let got = pool.log_wealth();
        assert!(
            (got - expected).abs() <= 1e-9 * (1.0 + expected.abs()),
            "{ticks:?}: got {got}, expected {expected}"
        );
    }

    #[test]
    fn splits_wealth_among_the_checks_that_bet() {
        let ln = f64::ln;
        check(&[], 0.0);
        check(&[&[]], 0.0);
        // One check betting gets the whole wealth, whatever its weight.
        check(&[&[(1.0, ln(3.0))]], ln(3.0));
        check(&[&[(0.2, ln(3.0))], &[(5.0, ln(0.5))]], ln(1.5));
        // Two checks: the weighted mean of their factors.
        check(&[&[(1.0, ln(3.0)), (1.0, ln(1.0))]], ln(2.0));
        check(&[&[(3.0, ln(2.0)), (1.0, ln(6.0))]], ln(3.0));
        // Extreme factors stay finite and exact in logs.
        check(&[&[(1.0, 2000.0), (1.0, -2000.0)]], 2000.0 - ln(2.0));
        // Nonsense weights are ignored rather than poisoning the wealth.
        check(&[&[(0.0, 5.0), (f64::NAN, 5.0), (1.0, 1.0)]], 1.0);
        check(&[&[(1.0, f64::NAN)]], 0.0);
    }

    #[test]
    fn a_convex_mix_of_fair_bets_is_fair() {
        // Two checks betting on independent fair coins with different bets:
        // each factor has mean exactly 1, so must their mixture, for any
        // fixed split. Enumerate the four outcomes.
        let (a, b) = (0.8, -0.3);
        for weights in [(1.0, 1.0), (1.0, 4.0), (9.0, 1.0)] {
            let mut mean = 0.0;
            for x in [-1.0, 1.0] {
                for y in [-1.0, 1.0] {
                    let mut pool = Pool::new();
                    pool.step(&[
                        (weights.0, f64::ln(1.0 + a * x)),
                        (weights.1, f64::ln(1.0 + b * y)),
                    ]);
                    mean += 0.25 * pool.log_wealth().exp();
                }
            }
            assert!((mean - 1.0).abs() < 1e-12, "{weights:?}: {mean}");
        }
    }
}
