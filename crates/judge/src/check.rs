//! The checks: each turns a stream of windows into a per-tick report.
//!
//! Sequential checks ([`ErrorRateCheck`], [`LatencyCheck`]) run two
//! e-processes each: one against "the canary is within tolerance" (crossing
//! means rollback) and one against "the canary is outside tolerance"
//! (crossing means it may be promoted). Guards ([`ThresholdCheck`]) compare a
//! canary metric with a fixed limit and need the violation to last.

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
    /// This check's share of the rollback error budget.
    pub alpha: f64,
    /// This check's share of the promotion error budget.
    pub promote_alpha: f64,
    /// The baseline was in an incident as of the previous tick (known
    /// before this tick's data, so bets may depend on it).
    pub incident: bool,
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
    /// Share of α and of the vote.
    pub weight: f64,
    /// Sequential (e-process) or guard.
    pub sequential: bool,
    /// Where the check stands.
    pub state: CheckState,
    /// Sequential: ln of the e-value against "within tolerance";
    /// guards: the canary's metric value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistic: Option<f64>,
    /// What `statistic` is compared with: ln(1/α) or the guard's limit.
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
            bound: None,
            promote_statistic: None,
            promote_bound: None,
            estimate: None,
            threshold: None,
            baseline_samples: 0,
            canary_samples: 0,
            reason,
        }
    }
}

/// Makes reported numbers safe to serialise: JSON has no NaN or infinity.
pub(crate) fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
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

    /// Whether it is an e-process (and so takes a share of α).
    pub fn is_sequential(&self) -> bool {
        self.kind() != CheckKind::Threshold
    }

    /// Feeds one window and reports.
    pub fn observe(&mut self, ctx: &Context, window: &Window) -> CheckReport {
        let mut report = if ctx.t < self.warmup {
            CheckReport::new(
                &self.name,
                self.kind(),
                CheckState::Warmup,
                format!("warming up until t = {} s", self.warmup),
            )
        } else {
            match &mut self.statistic {
                Statistic::ErrorRate(c) => c.observe(&self.name, ctx, window),
                Statistic::Latency(c) => c.observe(&self.name, ctx, window),
                Statistic::Threshold(c) => c.observe(&self.name, ctx, window),
            }
        };
        report.severity = self.severity;
        report.weight = self.weight;
        report
    }
}
