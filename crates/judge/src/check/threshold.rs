//! Absolute guards: a canary metric against a fixed limit.

use super::{CheckReport, Context, finite};
use crate::config::CheckKind;
use crate::evalue::quantile;
use crate::recent::Recent;
use crate::verdict::CheckState;
use crate::window::{GroupWindow, Window};
use serde::{Deserialize, Serialize};

/// What a guard measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdMetric {
    /// Errors / requests over the window.
    ErrorRate,
    /// A latency quantile (0.5, 0.99...) in ms over the window's samples.
    LatencyQuantile(f64),
    /// A provider metric by name (`cpu`, `memory`, `ready`, `breaker_open`),
    /// averaged over the window.
    Named(String),
}

impl ThresholdMetric {
    /// Reads a metric name from a config.
    pub fn parse(name: &str) -> Self {
        match name {
            "error_rate" => ThresholdMetric::ErrorRate,
            "latency_p50_ms" => ThresholdMetric::LatencyQuantile(0.5),
            "latency_p90_ms" => ThresholdMetric::LatencyQuantile(0.9),
            "latency_p95_ms" => ThresholdMetric::LatencyQuantile(0.95),
            "latency_p99_ms" => ThresholdMetric::LatencyQuantile(0.99),
            other => ThresholdMetric::Named(other.to_owned()),
        }
    }
}

/// A guard: fails when the canary's metric has been past the limit for
/// `sustained` seconds, with at least `min_requests` canary requests in the
/// window (request metrics only).
///
/// Fixed limits are blunt (they know nothing of the baseline) but they are
/// what an operator means by "never serve more than 5 % errors". To avoid
/// blaming the canary for an outage it did not cause, the same metric is
/// computed for the baseline: if the baseline is past the limit too, the
/// check is *excused* and the judge pauses instead of rolling back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThresholdCheck {
    metric: ThresholdMetric,
    max: Option<f64>,
    min: Option<f64>,
    min_requests: u64,
    sustained: f64,
    recent: Recent<GroupPair>,
    latest_only: bool,
    violated_since: Option<f64>,
    seen: bool,
    canary_requests: u64,
    baseline_requests: u64,
}

/// What the guard keeps of each tick.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct GroupPair {
    canary: Kept,
    baseline: Kept,
    incident: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Kept {
    requests: u64,
    errors: u64,
    latency: Vec<f64>,
    value: Option<f64>,
}

/// A metric value over the window, or why there is none.
enum Value {
    Some(f64),
    TooFew(u64),
    Missing,
}

impl ThresholdCheck {
    /// Whether the guard is on a request metric (errors, latency), which
    /// a cold start moves, rather than on a provider's.
    pub fn on_requests(&self) -> bool {
        !matches!(self.metric, ThresholdMetric::Named(_))
    }

    /// A fresh guard. `window` of `None` means "the latest tick only".
    pub fn new(
        metric: ThresholdMetric,
        max: Option<f64>,
        min: Option<f64>,
        window: Option<f64>,
        min_requests: u64,
        sustained: f64,
    ) -> Self {
        ThresholdCheck {
            metric,
            max,
            min,
            min_requests,
            sustained,
            recent: Recent::new(window.unwrap_or(f64::MAX)),
            latest_only: window.is_none(),
            violated_since: None,
            seen: false,
            canary_requests: 0,
            baseline_requests: 0,
        }
    }

    fn keep(&self, g: &GroupWindow) -> Kept {
        Kept {
            requests: g.requests,
            errors: g.errors_clamped(),
            latency: match self.metric {
                ThresholdMetric::LatencyQuantile(_) => g.latencies().collect(),
                _ => Vec::new(),
            },
            value: match &self.metric {
                ThresholdMetric::Named(name) => g.metric(name),
                _ => None,
            },
        }
    }

    fn value(&self, pick: impl Fn(&GroupPair) -> &Kept) -> Value {
        let requests = self
            .recent
            .values()
            .fold(0u64, |a, p| a.saturating_add(pick(p).requests));
        match &self.metric {
            ThresholdMetric::ErrorRate => {
                if requests < self.min_requests.max(1) {
                    return Value::TooFew(requests);
                }
                let errors = self
                    .recent
                    .values()
                    .fold(0u64, |a, p| a.saturating_add(pick(p).errors));
                Value::Some(errors as f64 / requests as f64)
            }
            ThresholdMetric::LatencyQuantile(q) => {
                if requests < self.min_requests {
                    return Value::TooFew(requests);
                }
                let mut all: Vec<f64> = self
                    .recent
                    .values()
                    .flat_map(|p| pick(p).latency.iter().copied())
                    .collect();
                all.sort_by(f64::total_cmp);
                match quantile(&all, *q) {
                    Some(v) => Value::Some(v),
                    None => Value::TooFew(requests),
                }
            }
            ThresholdMetric::Named(_) => {
                let values: Vec<f64> = self.recent.values().filter_map(|p| pick(p).value).collect();
                if values.is_empty() {
                    Value::Missing
                } else {
                    Value::Some(values.iter().sum::<f64>() / values.len() as f64)
                }
            }
        }
    }

    fn violates(&self, v: f64) -> bool {
        self.max.is_some_and(|m| v > m) || self.min.is_some_and(|m| v < m)
    }

    pub(super) fn observe(&mut self, name: &str, ctx: &Context, window: &Window) -> CheckReport {
        let pair = GroupPair {
            canary: self.keep(&window.canary),
            baseline: self.keep(&window.baseline),
            incident: ctx.incident,
        };
        self.canary_requests = self.canary_requests.saturating_add(pair.canary.requests);
        self.baseline_requests = self
            .baseline_requests
            .saturating_add(pair.baseline.requests);
        if self.latest_only {
            self.recent.clear();
        }
        self.recent.push(ctx.t, pair);
        let limit = self.max.or(self.min).unwrap_or(0.0);
        let side = if self.max.is_some() { "above" } else { "below" };
        let canary = self.value(|p| &p.canary);
        let baseline = match self.value(|p| &p.baseline) {
            Value::Some(v) => Some(v),
            _ => None,
        };
        let mut report = CheckReport::new(
            name,
            CheckKind::Threshold,
            CheckState::Continue,
            String::new(),
        );
        report.bound = finite(limit);
        report.threshold = finite(limit);
        report.estimate = baseline.and_then(finite);
        report.canary_samples = self.canary_requests;
        report.baseline_samples = self.baseline_requests;
        let v = match canary {
            Value::Missing => {
                self.violated_since = None;
                report.state = if self.seen {
                    CheckState::Insufficient
                } else {
                    CheckState::NoData
                };
                report.reason = "no value for this metric from the canary".to_owned();
                return report;
            }
            Value::TooFew(n) => {
                self.violated_since = None;
                report.state = CheckState::Insufficient;
                report.reason = format!(
                    "{n} canary requests in the window, need {}",
                    self.min_requests.max(1)
                );
                return report;
            }
            Value::Some(v) => v,
        };
        self.seen = true;
        report.statistic = finite(v);
        if !self.violates(v) {
            self.violated_since = None;
            report.state = CheckState::Pass;
            report.reason = format!("canary value {v:.4} is not {side} {limit}");
            return report;
        }
        let since = *self.violated_since.get_or_insert(ctx.t);
        let lasted = ctx.t - since;
        // The window may still hold an incident's ticks after the baseline
        // has recovered: the canary's value is then the incident's echo.
        let incident_in_window = self.recent.values().any(|p| p.incident);
        let shared = baseline.is_some_and(|b| self.violates(b)) || incident_in_window;
        // A failing or excused guard dates its problem from the start of
        // the breach that has now lasted long enough.
        report.onset_t = (lasted >= self.sustained).then_some(since);
        if lasted < self.sustained {
            report.state = CheckState::Continue;
            report.reason = format!(
                "canary value {v:.4} is {side} {limit} for {lasted} s of the {} s it must last",
                self.sustained
            );
        } else if shared {
            report.state = CheckState::Excused;
            report.reason = format!(
                "canary value {v:.4} is {side} {limit} for {lasted} s, but so is the baseline's ({}): a shared incident",
                baseline.map_or("in an incident".to_owned(), |b| format!("{b:.4}"))
            );
        } else {
            report.state = CheckState::Fail;
            report.reason = format!(
                "canary value {v:.4} has been {side} {limit} for {lasted} s (baseline {})",
                baseline.map_or("n/a".to_owned(), |b| format!("{b:.4}"))
            );
        }
        report
    }
}
