//! The checks: each turns a stream of windows into a per-tick report.
//!
//! Sequential checks ([`ErrorRateCheck`], [`LatencyCheck`]) bet twice per
//! tick: against "the canary is within tolerance" (the bets of all checks of
//! one severity compound into one pooled wealth, see [`crate::pool`], whose
//! crossing means rollback) and against "the canary is outside tolerance"
//! (a check's own e-process, whose crossing means it may be promoted).
//! Guards ([`ThresholdCheck`]) compare a canary metric with a fixed limit and
//! need the violation to last.

mod error_rate;
mod latency;
mod threshold;

pub use error_rate::ErrorRateCheck;
pub use latency::LatencyCheck;
pub use threshold::{ThresholdCheck, ThresholdMetric};

use crate::config::{CheckKind, Severity};
use crate::verdict::CheckState;
use crate::window::Window;
use serde::{Deserialize, Serialize};

/// One configured check and its accumulated evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    name: String,
    severity: Severity,
    weight: f64,
    warmup: f64,
    statistic: Statistic,
}

/// The statistic a check runs, with its state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    /// See [`ErrorRateCheck`].
    ErrorRate(ErrorRateCheck),
    /// See [`LatencyCheck`].
    Latency(LatencyCheck),
    /// See [`ThresholdCheck`].
    Threshold(ThresholdCheck),
}

/// What a check needs to know besides the window.
#[derive(Clone, Copy, Debug)]
pub struct Context {
    /// Seconds since the canary started.
    pub t: f64,
    /// The rollback error budget of the check's pool (see [`crate::pool`]).
    pub alpha: f64,
    /// The promotion error budget. Each check gets all of it: promotion
    /// needs *every* check to pass, so a canary outside tolerance on some
    /// check is promoted only if that check wrongly passes, which has
    /// probability at most `promote_alpha` (an intersection–union test
    /// needs no split).
    pub promote_alpha: f64,
    /// ln of the pooled e-value of the check's pool after this tick, which
    /// is what is compared with ln(1/α).
    pub pooled: f64,
    /// The baseline was in an incident as of the previous tick (known
    /// before this tick's data, so bets may depend on it).
    pub incident: bool,
    /// The judge's warm-up phase lasts this tick (decided from earlier
    /// ticks, see [`crate::warmup`]): relative checks bet only against
    /// gross regressions, request guards wait.
    pub warming: bool,
    /// While the phase lasts beyond the checks' own warm-up: how far back
    /// to the baseline the canary has come (0–1) and the latest the phase
    /// ends (s).
    pub recovering: Option<(f64, f64)>,
}

/// One check's account of the current tick: enough to recompute the
/// decision by hand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The check's name from the config.
    pub name: String,
    /// Which statistic.
    pub kind: CheckKind,
    /// Critical or warning.
    pub severity: Severity,
    /// Share of its pool's wealth when several checks bet (sequential).
    pub weight: f64,
    /// Sequential (e-process) or guard.
    pub sequential: bool,
    /// Where the check stands.
    pub state: CheckState,
    /// Sequential: ln of this check's own e-value against "within
    /// tolerance" (the product of its own bets); guards: the canary's
    /// metric value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistic: Option<f64>,
    /// Sequential: ln of the e-value pooled over the sequential checks of
    /// the same severity (see [`crate::pool`]); this is what is compared
    /// with `bound`, and the check with the largest `statistic` in a pool
    /// that crosses it fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pooled_statistic: Option<f64>,
    /// What `pooled_statistic` (sequential) or `statistic` (guards) is
    /// compared with: ln(1/α of the pool) or the guard's limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound: Option<f64>,
    /// Sequential: ln of the e-value against "outside tolerance" (promotion).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promote_statistic: Option<f64>,
    /// What `promote_statistic` is compared with: ln(1/α_promote).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promote_bound: Option<f64>,
    /// The effect size as currently estimated from recent data (error rate
    /// ratio; P(canary > (1+tol)·baseline); the baseline's metric value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<f64>,
    /// The tolerance line the estimate is judged against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Baseline observations used so far (requests or latency samples).
    pub baseline_samples: u64,
    /// Canary observations used so far.
    pub canary_samples: u64,
    /// Failed or excused checks: when the problem is estimated to have
    /// started, in seconds since the canary started. Sequential checks:
    /// the tick after their own log e-value last sat at its running
    /// minimum before they failed (the CUSUM change point, see
    /// [`crate::onset`]); guards: the start of the sustained breach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onset_t: Option<f64>,
    /// Why the check is in this state, in words.
    pub reason: String,
}

impl CheckReport {
    pub(crate) fn new(name: &str, kind: CheckKind, state: CheckState, reason: String) -> Self {
        CheckReport {
            name: name.to_owned(),
            kind,
            severity: Severity::Critical,
            weight: 1.0,
            sequential: kind != CheckKind::Threshold,
            state,
            statistic: None,
            pooled_statistic: None,
            bound: None,
            promote_statistic: None,
            promote_bound: None,
            estimate: None,
            threshold: None,
            baseline_samples: 0,
            canary_samples: 0,
            onset_t: None,
            reason,
        }
    }
}

/// Makes reported numbers safe to serialise: JSON has no NaN or infinity.
pub(crate) fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The rollback evidence of a sequential check that has not failed, in
/// words: the pooled e-value against its bound, and the check's own part.
/// A pool that crossed on another check's evidence is said so, rather than
/// printing a pooled value "below" a bound it exceeds.
pub(crate) fn pooled_evidence(own: f64, pooled: f64, bound: f64) -> String {
    if pooled >= bound {
        format!(
            "this check's own e-value e^{own:.2}; its pool crossed e^{bound:.2} (e^{pooled:.2}) on another check's evidence"
        )
    } else {
        format!("pooled e-value e^{pooled:.2} < e^{bound:.2} (this check's own e^{own:.2})")
    }
}

impl Check {
    /// A check with default severity (critical), weight 1 and no warm-up.
    pub fn new(name: String, statistic: Statistic) -> Self {
        Check {
            name,
            severity: Severity::Critical,
            weight: 1.0,
            warmup: 0.0,
            statistic,
        }
    }

    /// Sets what every kind of check has.
    pub fn with_common(mut self, severity: Severity, weight: f64, warmup: f64) -> Self {
        self.severity = severity;
        self.weight = weight;
        self.warmup = warmup;
        self
    }

    /// The check's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The check's weight.
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// Which statistic it runs.
    pub fn kind(&self) -> CheckKind {
        match self.statistic {
            Statistic::ErrorRate(_) => CheckKind::ErrorRate,
            Statistic::Latency(_) => CheckKind::Latency,
            Statistic::Threshold(_) => CheckKind::Threshold,
        }
    }

    /// Whether it bets (and so belongs to a pool with a share of α).
    pub fn is_sequential(&self) -> bool {
        self.kind() != CheckKind::Threshold
    }

    /// This check's own ln e-value against "within tolerance" (sequential
    /// checks only).
    pub fn own_log_e(&self) -> Option<f64> {
        match &self.statistic {
            Statistic::ErrorRate(c) => Some(c.log_e()),
            Statistic::Latency(c) => Some(c.log_e()),
            Statistic::Threshold(_) => None,
        }
    }

    /// Marks a sequential check failed: its pool crossed ln(1/α) and its
    /// own evidence is the largest in the pool.
    pub fn fail(&mut self) {
        match &mut self.statistic {
            Statistic::ErrorRate(c) => c.fail(),
            Statistic::Latency(c) => c.fail(),
            Statistic::Threshold(_) => {}
        }
    }

    /// Feeds one window. A guard reports at once; a sequential check
    /// returns the bet it placed and reports once its pool has been
    /// compounded ([`Check::report`]).
    ///
    /// During the warm-up a sequential check places no bet against the
    /// tolerance line, but it does remember the tick for *sizing* its
    /// first bets: the warm-up keeps a cold start from counting as
    /// evidence, and a bet sized from data
    /// that came before it is still a predictable bet, so it keeps the
    /// e-process valid whatever that data was. If the warm-up held a cold
    /// start, the first bets are sized for a problem that has passed and
    /// lose a little wealth (they cannot cause a rollback against the
    /// line: that takes evidence after the warm-up). If it held a regression present from
    /// the start, the first bet after the warm-up is already sized for it,
    /// instead of waiting for fresh data to clear the gate.
    ///
    /// While the judge's warm-up phase lasts (`ctx.warming`), the error
    /// check bets against gross regressions only (see
    /// [`ErrorRateCheck`]), the latency check only learns, and guards on
    /// request metrics wait; guards on provider metrics (breaker, CPU…)
    /// keep to their own warm-up.
    pub fn observe(&mut self, ctx: &Context, window: &Window) -> Step {
        let warming = self.warming(ctx);
        match &mut self.statistic {
            Statistic::ErrorRate(c) if warming => {
                Step::Bet(c.observe_gross(ctx, window, ctx.t >= self.warmup))
            }
            Statistic::Latency(c) if warming => {
                c.learn(ctx.t, window);
                Step::Bet(None)
            }
            Statistic::ErrorRate(c) => Step::Bet(c.observe(ctx, window)),
            Statistic::Latency(c) => Step::Bet(c.observe(ctx, window)),
            Statistic::Threshold(_) if warming => Step::Report(self.report(ctx)),
            Statistic::Threshold(c) => {
                let mut report = c.observe(&self.name, ctx, window);
                report.severity = self.severity;
                report.weight = self.weight;
                Step::Report(report)
            }
        }
    }

    /// The report of a sequential check after its pool has been
    /// compounded (`ctx.pooled`), or of any check during its warm-up.
    pub fn report(&self, ctx: &Context) -> CheckReport {
        let failed = matches!(&self.statistic, Statistic::ErrorRate(c) if c.failed());
        let mut report = if self.warming(ctx) && !failed {
            CheckReport::new(
                &self.name,
                self.kind(),
                CheckState::Warmup,
                match ctx.recovering {
                    Some((progress, max)) if ctx.t >= self.warmup => {
                        crate::warmup::reason(progress, max)
                    }
                    _ => format!("warming up until t = {} s", self.warmup),
                },
            )
        } else {
            match &self.statistic {
                Statistic::ErrorRate(c) => c.report(&self.name, ctx),
                Statistic::Latency(c) => c.report(&self.name, ctx),
                // Guards report from `observe`; this is only reached during
                // their warm-up.
                Statistic::Threshold(_) => CheckReport::new(
                    &self.name,
                    self.kind(),
                    CheckState::Warmup,
                    format!("warming up until t = {} s", self.warmup),
                ),
            }
        };
        report.severity = self.severity;
        report.weight = self.weight;
        report
    }

    /// The check's severity.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// The check's own warm-up (s).
    pub fn warmup(&self) -> f64 {
        self.warmup
    }

    /// Whether the check waits for the judge's warm-up phase (relative
    /// checks and guards on request metrics) or only for its own.
    pub fn follows_phase(&self) -> bool {
        match &self.statistic {
            Statistic::Threshold(c) => c.on_requests(),
            _ => true,
        }
    }

    fn warming(&self, ctx: &Context) -> bool {
        ctx.t < self.warmup || (ctx.warming && self.follows_phase())
    }
}

/// What a check did with a tick.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// A guard's report.
    Report(CheckReport),
    /// A sequential check's bet: ln of its factor this tick, or `None` when
    /// it did not bet (warm-up, no edge in recent data, shared incident).
    Bet(Option<f64>),
}
