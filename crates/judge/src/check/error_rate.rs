//! Canary error rate against baseline's, with a tolerance.

use super::{CheckReport, Context, finite, pooled_evidence};
use crate::config::CheckKind;
use crate::evalue::{binomial_log_lr, canary_share, log_bound, poisson_log_lr, ratio_from_share};
use crate::onset::Onset;
use crate::recent::Recent;
use crate::verdict::CheckState;
use crate::window::Window;
use serde::{Deserialize, Serialize};

/// Pseudo-errors at the tolerance line added to a window before
/// estimating the bet: with a handful of errors the raw ratio is wild, and a
/// wild bet on a healthy canary drains the e-process. Two rather than one,
/// together with the gate below: in the simulator's late-onset family
/// (tuning seeds), the median wealth lost to noise bets over a 10–20
/// minute healthy stretch fell from 2.8 to 1.5 nats. Most of it is lost at
/// 0.3–4 errors per second, where a bet sized from two or three errors is
/// the costliest.
const PRIOR_ERRORS: f64 = 2.0;
/// A window must show at least this much evidence (ln of its likelihood
/// ratio at its own estimate) before its estimate is bet on against the
/// canary. Each bet on noise loses wealth that a later regression must win
/// back, and the gate is tried on four windows every tick, so over a long
/// healthy stretch noise clears a low gate many times: at 1.5 nats (and
/// one prior error) a 3× regression after 10–20 healthy minutes started 2.8
/// nats in the red (median) and took 24 s to detect; at 2.0 (and two) it
/// takes 21–23 s, while errors present from the start, whose first bet is
/// sized from the warm-up, lose about 1 s. (Tuning seeds 1000–1004, 300
/// runs per family.)
const GATE: f64 = 2.0;
/// The same gate for the promotion bet. Healthy canaries are promoted after
/// minutes, not seconds, so it was left where it was.
const PROMOTE_GATE: f64 = 1.5;
/// Largest ratio bet on, as a multiple of the tolerance line.
const MAX_RATIO: f64 = 200.0;
/// Estimation windows tried, in seconds, besides the configured one.
const SHORT_WINDOWS: [f64; 3] = [10.0, 30.0, 60.0];
/// Post-change rate ratios of the CUSUMs that date a regression (see
/// [`Onset`]), as multiples of the tolerance line: from barely over it to
/// ten times it.
const ONSET_GRID: [f64; 6] = [1.25, 1.5, 2.0, 3.0, 5.0, 10.0];

/// Sequential test of the canary error rate `p_c` against `(1 + tolerance)`
/// times the baseline's `p_b`.
///
/// **Statistic.** Within a tick, given the total number of errors `E`, the
/// canary's count is Binomial(`E`, θ) with `θ = ρ n_c / (ρ n_c + n_b)` and
/// `ρ = p_c / p_b`, whatever `p_b` is. Under the null `ρ ≤ r = 1 + tolerance`
/// the likelihood ratio of any `ρ₁ > r` against `r` has expectation ≤ 1
/// (monotone likelihood ratio), so multiplying those ratios across ticks is
/// an e-process. Conditioning on the total makes the test indifferent to
/// anything that scales both groups' errors alike: traffic bursts, shared
/// dependencies failing, overdispersed error rates.
///
/// **Bet.** `ρ₁` is a predictable plug-in: estimated from recent ticks only,
/// never from the tick being bet on. Several look-back windows are tried
/// (10, 30, 60 s and the configured `window`); the one whose own likelihood
/// ratio is largest wins, and only if that ratio clears a gate (2 nats). So a
/// regression that starts late is picked up by a short window within
/// seconds, unmixed with the healthy past, and a long healthy history
/// drains the e-process only by the bets that noise tricks the gate into
/// (see [`GATE`]). The warm-up's ticks fill the windows too (see
/// [`Check::observe`](super::Check::observe)), so a regression present from
/// the start is bet on from the first tick after the warm-up.
///
/// **Why no restart.** Resetting the wealth to 1 when it has sunk (CUSUM,
/// e-detectors) bounds the *rate* of false alarms, not the chance of one
/// over the rollout, which is what α promises; the gate keeps the sinking
/// small instead. **Why a plug-in, not a mixture over ρ.** A mixture pays
/// for its spread from the first tick and keeps paying through a healthy
/// stretch, while the gated plug-in pays nothing until a window shows an
/// edge. **Why not estimate the baseline's rate.** The statistic does not
/// contain it: conditioning on each tick's total removes it, which is also
/// why no test can beat the SPRT told the true ratio on the same data
/// (see the judge section of `bench/RESULTS.md`).
///
/// **Promotion.** A mirror e-process bets on `ρ₁ < r` against `ρ ≥ r`. For
/// services with almost no errors there is a second route: a Poisson
/// e-process against `p_c ≥ promote_below` (alternative `promote_below/2`).
/// The two routes share the promotion budget equally.
///
/// **Onset.** Besides its bets, the check runs a small bank of CUSUMs of
/// the same binomial likelihood ratios at fixed ratios (`ONSET_GRID`)
/// against the tolerance line, every tick after the warm-up; when the check
/// fails, their change point is the report's `onset_t` (see [`Onset`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorRateCheck {
    tolerance: f64,
    span: f64,
    promote_below: f64,
    log_e: f64,
    log_e_promote: f64,
    log_e_floor: f64,
    failed: bool,
    recent: Recent<Counts>,
    total: Counts,
    /// The raw rate ratio over the longest window, as of the last tick (for
    /// the report).
    estimate: Option<f64>,
    /// CUSUMs that date the change once the check fails (see [`Onset`]).
    #[serde(default)]
    onset: Onset,
}

/// What to bet on this tick.
#[derive(Clone, Copy, Debug, Default)]
struct Bets {
    against: Option<f64>,
    promote: Option<f64>,
    raw: Option<f64>,
}

/// Requests and errors of both groups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Counts {
    nc: u64,
    ec: u64,
    nb: u64,
    eb: u64,
}

impl Counts {
    fn of(window: &Window) -> Self {
        Counts {
            nc: window.canary.requests,
            ec: window.canary.errors_clamped(),
            nb: window.baseline.requests,
            eb: window.baseline.errors_clamped(),
        }
    }

    fn add(&mut self, o: &Counts) {
        self.nc = self.nc.saturating_add(o.nc);
        self.ec = self.ec.saturating_add(o.ec);
        self.nb = self.nb.saturating_add(o.nb);
        self.eb = self.eb.saturating_add(o.eb);
    }
}

impl ErrorRateCheck {
    /// A fresh check; `window` is how far back bets are estimated from.
    pub fn new(tolerance: f64, window: f64, promote_below: f64) -> Self {
        ErrorRateCheck {
            tolerance,
            span: window,
            promote_below,
            log_e: 0.0,
            log_e_promote: 0.0,
            log_e_floor: 0.0,
            failed: false,
            recent: Recent::new(window),
            total: Counts::default(),
            estimate: None,
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

    /// Remembers a warm-up tick for sizing later bets; no bet, no evidence.
    pub(super) fn learn(&mut self, t: f64, window: &Window) {
        self.recent.push(t, Counts::of(window));
    }

    /// The rate ratios to bet on (against, for promotion) from the
    /// recent window with the most evidence, and the raw estimate over the
    /// longest window for the report.
    fn estimate(&self, r: f64) -> Bets {
        let mut bets = Bets::default();
        let mut w = Counts::default();
        let mut windows = SHORT_WINDOWS
            .iter()
            .copied()
            .filter(|&s| s < self.span)
            .chain([self.span]);
        let mut edge = windows.next();
        let newest = self.recent.newest().unwrap_or(0.0);
        let mut best_up = GATE;
        let mut best_down = PROMOTE_GATE;
        let mut consider = |w: &Counts, bets: &mut Bets| {
            let errors = w.ec.saturating_add(w.eb);
            if errors == 0 || w.nc == 0 || w.nb == 0 {
                return;
            }
            let (nc, nb) = (w.nc as f64, w.nb as f64);
            let null_share = canary_share(r, nc, nb);
            let raw_share = w.ec as f64 / errors as f64;
            let evidence = binomial_log_lr(w.ec, errors, raw_share, null_share);
            let share = (w.ec as f64 + PRIOR_ERRORS * null_share) / (errors as f64 + PRIOR_ERRORS);
            let ratio = ratio_from_share(share, nc, nb);
            if raw_share > null_share && evidence > best_up {
                best_up = evidence;
                bets.against = Some(ratio);
            }
            if raw_share < null_share && evidence > best_down {
                best_down = evidence;
                bets.promote = Some(ratio);
            }
        };
        for (t, c) in self.recent.iter_rev() {
            while let Some(span) = edge {
                if newest - t < span {
                    break;
                }
                consider(&w, &mut bets);
                edge = windows.next();
            }
            if edge.is_none() {
                break;
            }
            w.add(c);
        }
        if edge.is_some() {
            consider(&w, &mut bets);
        }
        if w.nc > 0 && w.nb > 0 && w.ec.saturating_add(w.eb) > 0 {
            bets.raw = Some(ratio_from_share(
                w.ec as f64 / w.ec.saturating_add(w.eb) as f64,
                w.nc as f64,
                w.nb as f64,
            ));
        }
        bets
    }

    /// Feeds one tick: bets on it with sizes from earlier ticks, and
    /// returns ln of the rollback bet's factor (`None` when no rollback bet
    /// was placed: no edge in recent data, or a baseline incident).
    pub(super) fn observe(&mut self, ctx: &Context, window: &Window) -> Option<f64> {
        let r = 1.0 + self.tolerance;
        let tick = Counts::of(window);
        let bets = self.estimate(r);
        self.estimate = bets.raw;
        // Whether to bet is decided before looking at this tick: the pool
        // shares its wealth among the checks that bet, and that split must
        // not depend on the data it is betting on.
        let betting = bets.against.filter(|_| !ctx.incident);
        let mut factor = betting.map(|_| 0.0);
        let errors = tick.ec.saturating_add(tick.eb);
        if tick.nc > 0 && tick.nb > 0 && errors > 0 {
            let (nc, nb) = (tick.nc as f64, tick.nb as f64);
            let null_share = canary_share(r, nc, nb);
            if let Some(rho) = betting {
                let alt = canary_share(rho.clamp(r, r * MAX_RATIO), nc, nb);
                let step = binomial_log_lr(tick.ec, errors, alt, null_share);
                self.log_e += step;
                factor = Some(step);
            }
            if let Some(rho) = bets.promote {
                let alt = canary_share(rho.clamp(r / MAX_RATIO, r), nc, nb);
                self.log_e_promote += binomial_log_lr(tick.ec, errors, alt, null_share);
            }
            // Dating a change is not a bet: every informative tick counts.
            let llrs = ONSET_GRID
                .map(|k| binomial_log_lr(tick.ec, errors, canary_share(k * r, nc, nb), null_share));
            self.onset.step(ctx.t, &llrs);
        }
        if self.promote_below > 0.0 && tick.nc > 0 {
            let f = self.promote_below;
            self.log_e_floor += poisson_log_lr(tick.ec, tick.nc as f64, f / 2.0, f);
        }
        self.recent.push(ctx.t, tick);
        self.total.add(&tick);
        factor
    }

    /// Where the check stands after this tick's pool update.
    pub(super) fn report(&self, name: &str, ctx: &Context) -> CheckReport {
        let r = 1.0 + self.tolerance;
        let bound = log_bound(ctx.alpha);
        let promote_bound = log_bound(ctx.promote_alpha / 2.0);
        let promote_e = self.log_e_promote.max(self.log_e_floor);
        let t = self.total;
        let rate = |e: u64, n: u64| if n > 0 { e as f64 / n as f64 } else { 0.0 };
        let (state, reason) = if self.failed {
            (
                CheckState::Fail,
                format!(
                    "canary error rate is more than {r:.2}× baseline's: pooled e-value e^{:.2} ≥ 1/α = e^{bound:.2}, this check's own e^{:.2} (canary {}/{}, baseline {}/{})",
                    ctx.pooled, self.log_e, t.ec, t.nc, t.eb, t.nb
                ),
            )
        } else if t.nc == 0 || t.nb == 0 {
            (
                CheckState::Insufficient,
                format!(
                    "need requests in both groups (canary {}, baseline {})",
                    t.nc, t.nb
                ),
            )
        } else if promote_e >= promote_bound {
            let how = if self.log_e_promote >= promote_bound {
                format!("at most {r:.2}× baseline's")
            } else {
                format!("below {}", self.promote_below)
            };
            (
                CheckState::Pass,
                format!(
                    "canary error rate is {how}: promotion e-value e^{promote_e:.2} ≥ e^{promote_bound:.2} (canary {:.4}%, baseline {:.4}%)",
                    100.0 * rate(t.ec, t.nc),
                    100.0 * rate(t.eb, t.nb)
                ),
            )
        } else {
            (
                CheckState::Continue,
                format!(
                    "no conclusion: {}, promotion e^{promote_e:.2} < e^{promote_bound:.2}{} (canary {}/{}, baseline {}/{})",
                    pooled_evidence(self.log_e, ctx.pooled, bound),
                    if ctx.incident {
                        "; not betting during a baseline incident"
                    } else {
                        ""
                    },
                    t.ec,
                    t.nc,
                    t.eb,
                    t.nb
                ),
            )
        };
        let mut report = CheckReport::new(name, CheckKind::ErrorRate, state, reason);
        report.statistic = finite(self.log_e);
        report.pooled_statistic = finite(ctx.pooled);
        report.bound = finite(bound);
        report.promote_statistic = finite(promote_e);
        report.promote_bound = finite(promote_bound);
        report.estimate = self.estimate.and_then(finite);
        report.threshold = Some(r);
        report.baseline_samples = t.nb;
        report.canary_samples = t.nc;
        report.onset_t = self.onset.t().filter(|_| self.failed);
        report
    }
}
