//! Wald's SPRT told the true rates: the physical limit.

use super::Rule;
use crate::run::Tolerances;
use crate::scenario::Scenario;
use crate::traffic::Truth;
use backout_judge::Window;
use backout_judge::evalue::{binomial_log_lr, canary_share};

/// Wald's sequential probability ratio test of "the canary sits exactly on
/// the judge's tolerance line" against "the canary is as bad as it really
/// is", with both hypotheses fully known (baseline rate, regression size,
/// latency shape, onset). It starts at the onset and restarts whenever it
/// accepts the null, so it is the fastest any level-α test could detect
/// the regression. It exists to show where "faster" would beat physics.
/// It starts at the onset or at the end of the judge's warm-up, whichever
/// is later: it sees the data the judge may use, and no more.
///
/// [`Sprt::ratio_only`] is the same test told only the error *ratio*, not
/// the baseline's rate: given each tick's errors it uses the canary's share,
/// as the judge must. The gap between the two is the price of not knowing
/// the baseline, which no judge can avoid; it is large when the canary takes
/// a large share of traffic.
#[derive(Debug)]
pub struct Sprt {
    name: &'static str,
    ratio_only: bool,
    start: f64,
    upper: f64,
    lower: f64,
    llr: f64,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Errors {
        tolerance: f64,
    },
    Latency {
        null_log: f64,
        alt_log: f64,
        sigma: f64,
    },
    None,
}

impl Sprt {
    /// The same oracle told only the error ratio (latency: unchanged).
    pub fn ratio_only(s: &Scenario, tol: Tolerances) -> Self {
        Sprt {
            name: "sprt-ratio",
            ratio_only: true,
            ..Sprt::new(s, tol)
        }
    }

    /// The oracle for `scenario`, at level `alpha` (β = 5 %).
    pub fn new(s: &Scenario, tol: Tolerances) -> Self {
        let (alpha, error_tolerance, latency_tolerance) = (tol.alpha, tol.errors, tol.latency);
        let beta: f64 = 0.05;
        let kind = if s.error_ratio > 1.0 + error_tolerance {
            Kind::Errors {
                tolerance: error_tolerance,
            }
        } else if s.latency_ratio > 1.0 + latency_tolerance {
            let base = s.latency_median_ms.ln();
            Kind::Latency {
                null_log: base + (1.0 + latency_tolerance).ln(),
                alt_log: base + s.latency_ratio.ln(),
                sigma: s.latency_sigma,
            }
        } else {
            Kind::None
        };
        Sprt {
            name: "sprt-oracle",
            ratio_only: false,
            start: tol.warmup,
            upper: ((1.0 - beta) / alpha).ln(),
            lower: (beta / (1.0 - alpha)).ln(),
            llr: 0.0,
            kind,
        }
    }
}

impl Rule for Sprt {
    fn name(&self) -> &'static str {
        self.name
    }

    fn observe(&mut self, w: &Window, truth: &Truth) -> bool {
        // The judge's first judged tick is the one stamped at the end of its
        // warm-up (`t < warmup` is warm-up), so the oracle's is too.
        if !truth.regressed || w.t < self.start {
            return false;
        }
        match self.kind {
            Kind::Errors { tolerance } => {
                let p1 = truth.p_canary;
                let p0 = ((1.0 + tolerance) * truth.p_baseline).min(1.0);
                if p1 <= p0 || p0 <= 0.0 {
                    return false;
                }
                if self.ratio_only {
                    let (nc, nb) = (w.canary.requests as f64, w.baseline.requests as f64);
                    let ec = w.canary.errors.min(w.canary.requests);
                    let errors = ec + w.baseline.errors.min(w.baseline.requests);
                    let share = |ratio: f64| canary_share(ratio, nc, nb);
                    let ratio = truth.p_canary / truth.p_baseline.max(f64::MIN_POSITIVE);
                    if nc > 0.0 && nb > 0.0 {
                        self.llr +=
                            binomial_log_lr(ec, errors, share(ratio), share(1.0 + tolerance));
                    }
                } else {
                    let n = w.canary.requests as f64;
                    let k = w.canary.errors.min(w.canary.requests) as f64;
                    self.llr +=
                        k * (p1 / p0).ln() + (n - k) * ((1.0 - p1) / (1.0 - p0)).max(1e-300).ln();
                }
            }
            Kind::Latency {
                null_log,
                alt_log,
                sigma,
            } => {
                let var = sigma * sigma;
                for x in w.canary.latencies() {
                    let l = x.max(1e-9).ln();
                    self.llr += ((l - null_log).powi(2) - (l - alt_log).powi(2)) / (2.0 * var);
                }
            }
            Kind::None => return false,
        }
        if self.llr <= self.lower {
            self.llr = 0.0;
        }
        self.llr >= self.upper
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backout_judge::GroupWindow;

    /// Feeds a blatant 50× error regression from t = 1 and returns when the
    /// oracle (or its ratio-only twin) first alarms.
    fn first_alarm(ratio_only: bool, warmup: f64) -> Option<f64> {
        let scenario = Scenario {
            duration: 100.0,
            rps: 1100.0,
            canary_weight: 1.0 / 11.0,
            base_error: 0.01,
            error_ratio: 50.0,
            latency_median_ms: 50.0,
            latency_sigma: 0.5,
            latency_ratio: 1.0,
            onset: 0.0,
            burst_shape: None,
            incident: None,
            cold_start: None,
        };
        let tol = Tolerances {
            alpha: 0.01,
            errors: 0.2,
            latency: 0.1,
            warmup,
        };
        let mut rule = if ratio_only {
            Sprt::ratio_only(&scenario, tol)
        } else {
            Sprt::new(&scenario, tol)
        };
        let truth = Truth {
            p_baseline: 0.01,
            p_canary: 0.5,
            regressed: true,
        };
        (1..=100).map(f64::from).find(|&t| {
            let w = Window {
                t,
                baseline: GroupWindow::counts(1000, 10),
                canary: GroupWindow::counts(100, 50),
            };
            rule.observe(&w, &truth)
        })
    }

    #[test]
    fn the_oracle_sees_what_the_judge_may_use() {
        // Ticks stamped before the end of the warm-up are the judge's
        // warm-up; the tick stamped at its end is the first one judged.
        for (ratio_only, warmup, expected) in [
            (false, 30.0, Some(30.0)),
            (true, 30.0, Some(30.0)),
            (false, 0.0, Some(1.0)),
            (true, 5.0, Some(5.0)),
            (false, 200.0, None),
        ] {
            assert_eq!(
                first_alarm(ratio_only, warmup),
                expected,
                "ratio_only {ratio_only}, warm-up {warmup}"
            );
        }
    }
}
