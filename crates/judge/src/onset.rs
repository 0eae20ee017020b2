//! When did the regression start? The change-point estimate behind a
//! rollback, for the "detect" phase of MTTR (regression start → verdict).
//!
//! **Model.** The classic step change: a check's data follow the null
//! boundary (the canary exactly at the tolerance line) up to an unknown
//! tick `τ`, and an alternative from `τ` on. With `S_t` the running sum of
//! the ticks' log-likelihood ratios (alternative against null), the
//! log-likelihood of "the change came at `τ`" is, up to a constant,
//! `S_now − S_{τ−1}`, so its maximum likelihood estimate is the tick after
//! the one where `S` sat at its running minimum. That is Page's CUSUM and
//! its change-point estimate (Page 1954; Hinkley 1970 for the MLE): the
//! CUSUM statistic `S_t − min_{s ≤ t} S_s` is the log-likelihood ratio
//! maximised over `τ`, and the argmin is where it was last zero. Before the
//! change a healthy canary sits below the tolerance line, so `S` drifts
//! down; after it, `S` climbs; the minimum is where one turns into the
//! other.
//!
//! **A bank of CUSUMs.** The post-change alternative is unknown, so each
//! check runs one CUSUM per alternative on a small fixed grid (error-rate
//! ratios, latency bet sizes) and reports the change point of the one with
//! the largest CUSUM statistic: the joint maximum likelihood estimate of
//! `(τ, alternative)` over the grid (a grid GLR-CUSUM; Lorden 1971).
//!
//! **Why not the argmin of the check's own wealth.** The check's e-process
//! bets with a gated plug-in: before the change it mostly does not bet, so
//! its log-wealth is flat instead of falling, and a lucky noise bet can lift
//! it above its start for good. Its argmin then marks where the *betting*
//! started, or the end of the warm-up. On the synthetic runs of
//! `tests/onset.rs` (200 seeds, 5× errors from t = 200 s, first bad tick
//! 201) it put the onset at a median 204 s against a verdict at 206 s,
//! with a few runs at the warm-up end (37 s); the bank gives a median of
//! 201 s, all runs within 196–206 s. Neither path is a test: the estimate
//! only dates evidence that the e-processes have already judged, so it
//! need not be predictable and costs no α.
//!
//! **Cost.** O(1) memory: per grid point, the running sum, its minimum and
//! the tick that last started from it. The estimate freezes when the check
//! fails, so a rollback reports the onset of the evidence that decided,
//! not of whatever the data do afterwards. Only ticks after the warm-up
//! are fed: a regression present from the start is dated to the warm-up's
//! end, the first moment the judge would accept it as evidence.

use serde::{Deserialize, Serialize};

/// One CUSUM: the cumulative log-likelihood ratio of one alternative, its
/// running minimum and the tick that last started from that minimum.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Cusum {
    sum: f64,
    min: f64,
    t: Option<f64>,
}

impl Cusum {
    fn step(&mut self, t: f64, llr: f64) {
        // Ties go to the later tick: a tick with no information (no errors
        // to share out) at the minimum moves the start past it.
        if self.t.is_none() || self.sum <= self.min {
            self.min = self.sum;
            self.t = Some(t);
        }
        if llr.is_finite() {
            self.sum += llr;
        }
    }

    /// The CUSUM statistic: the evidence since the estimated change.
    fn statistic(&self) -> f64 {
        self.sum - self.min
    }
}

/// A check's change-point estimate: one CUSUM per grid alternative.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Onset {
    cusums: Vec<Cusum>,
    frozen: bool,
}

impl Onset {
    /// Takes tick `t` with its log-likelihood ratio under each grid
    /// alternative against the null boundary, always in the same order.
    pub fn step(&mut self, t: f64, llrs: &[f64]) {
        if self.frozen {
            return;
        }
        if self.cusums.len() != llrs.len() {
            self.cusums = vec![Cusum::default(); llrs.len()];
        }
        for (cusum, &llr) in self.cusums.iter_mut().zip(llrs) {
            cusum.step(t, llr);
        }
    }

    /// Stops updating: the check has failed on the evidence so far.
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    /// The estimated first tick of the change: that of the grid
    /// alternative with the largest CUSUM statistic (the first of equals).
    pub fn t(&self) -> Option<f64> {
        self.cusums
            .iter()
            .fold(None, |best: Option<&Cusum>, c| match best {
                Some(b) if b.statistic() >= c.statistic() => best,
                _ => Some(c),
            })
            .and_then(|c| c.t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `(t, llrs)` ticks, freezing after the tick at `freeze_at`,
    /// and compares the estimate.
    fn check(ticks: &[(f64, &[f64])], freeze_at: Option<f64>, expected: Option<f64>) {
        let mut onset = Onset::default();
        for &(t, llrs) in ticks {
            onset.step(t, llrs);
            if freeze_at == Some(t) {
                onset.freeze();
            }
        }
        assert_eq!(onset.t(), expected, "{ticks:?}");
    }

    #[test]
    fn finds_the_tick_after_the_running_minimum() {
        check(&[], None, None);
        // Rising from the start: the change is at the first tick.
        check(&[(31.0, &[1.0]), (32.0, &[1.0])], None, Some(31.0));
        // Down, then up: the change starts after the lowest point.
        check(
            &[(1.0, &[-0.5]), (2.0, &[-0.5]), (3.0, &[1.0]), (4.0, &[2.0])],
            None,
            Some(3.0),
        );
        // A flat stretch at the minimum: after the last tick of it.
        check(
            &[(1.0, &[-0.5]), (2.0, &[0.0]), (3.0, &[0.0]), (4.0, &[2.0])],
            None,
            Some(4.0),
        );
        // A dip that stays above the minimum is not a new start.
        check(
            &[(1.0, &[-1.0]), (2.0, &[2.0]), (3.0, &[-0.5]), (4.0, &[2.0])],
            None,
            Some(2.0),
        );
        // Frozen at failure: later losses do not move it.
        check(
            &[(1.0, &[3.0]), (2.0, &[3.0]), (3.0, &[-10.0]), (4.0, &[1.0])],
            Some(2.0),
            Some(1.0),
        );
        // Non-finite ratios are skipped rather than poisoning the sum.
        check(&[(1.0, &[f64::NAN]), (2.0, &[1.0])], None, Some(2.0));
    }

    #[test]
    fn takes_the_alternative_with_the_most_evidence() {
        // The first alternative turns at t = 3 with 1 nat since; the
        // second at t = 2 with 3 nats: the second is the better fit.
        check(
            &[
                (1.0, &[-1.0, -0.5]),
                (2.0, &[-1.0, 1.0]),
                (3.0, &[0.5, 1.0]),
                (4.0, &[0.5, 1.0]),
            ],
            None,
            Some(2.0),
        );
    }
}
