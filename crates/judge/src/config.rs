//! The `analysis:` section of a service spec, and its validation.
//!
//! Deserialisation only checks shapes; [`AnalysisConfig::validate`] checks
//! meaning and names the offending field by its path
//! (`analysis.checks[1].tolerance`) so a YAML loader can map it back to
//! file:line:col. Every field has a default, so an empty section (or none)
//! gives the judge the defaults documented on each field.

mod seconds;

pub use seconds::Seconds;

use crate::check::{
    Check, ErrorRateCheck, LatencyCheck, Statistic, ThresholdCheck, ThresholdMetric,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The analysis configuration of one service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisConfig {
    /// Probability of rolling back a canary that is within tolerance, for
    /// the whole rollout, all looks and all checks together (default 0.01).
    pub alpha: f64,
    /// Probability of promoting a canary that is outside tolerance
    /// (default 0.05): promotion is reversible, a false rollback costs trust.
    pub promote_alpha: f64,
    /// Never promote before this much time has passed (default 60 s), so
    /// slow-burning problems have a chance to show.
    pub promote_after: Seconds,
    /// Detection of incidents that hit baseline and canary alike.
    pub incident: IncidentConfig,
    /// The warm-up phase: how long a canary that keeps improving is given
    /// to recover from its cold start.
    pub warmup: WarmupConfig,
    /// The checks; when absent, [`AnalysisConfig::default_checks`] apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<CheckConfig>>,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            alpha: 0.01,
            promote_alpha: 0.05,
            promote_after: Seconds(60.0),
            incident: IncidentConfig::default(),
            warmup: WarmupConfig::default(),
            checks: None,
        }
    }
}

/// The warm-up phase (see [`crate::warmup`]).
///
/// It lasts at least each check's own `warmup` (30 s by default) and then
/// for as long as the canary keeps getting measurably better relative to
/// the baseline, up to `max`. While it lasts, only gross error
/// regressions roll back: canary errors above ten times the baseline's
/// and above 5 % of its requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarmupConfig {
    /// The longest a recovering canary is given (default 5 min); `0`
    /// leaves only the checks' own warm-up.
    pub max: Seconds,
}

impl Default for WarmupConfig {
    fn default() -> Self {
        WarmupConfig {
            max: Seconds(300.0),
        }
    }
}

/// When is the baseline itself in trouble?
///
/// The baseline's recent error rate is compared with its own earlier level;
/// while it is well above it, relative checks stop betting (the canary is
/// not to blame for a shared incident) and failing absolute guards pause
/// instead of rolling back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IncidentConfig {
    /// Turn incident detection off (default on).
    pub enabled: bool,
    /// How far back "recent" reaches (default 30 s).
    pub window: Seconds,
    /// Recent baseline error rate must exceed `factor` × its earlier level… (default 3)
    pub factor: f64,
    /// …and exceed it by at least this much absolute rate (default 0.01).
    pub min_increase: f64,
    /// Recent baseline median latency above `latency_factor` × its earlier
    /// median also counts (default 1.5).
    pub latency_factor: f64,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        IncidentConfig {
            enabled: true,
            window: Seconds(30.0),
            factor: 3.0,
            min_increase: 0.01,
            latency_factor: 1.5,
        }
    }
}

/// Which statistic a check runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Canary error rate vs baseline's, sequential test with a tolerance.
    ErrorRate,
    /// Canary latency distribution vs baseline's, sequential test with a tolerance.
    Latency,
    /// An absolute guard on a canary metric, sustained over time.
    Threshold,
}

/// How bad a failing check is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A failure rolls back (or pauses during a shared incident).
    #[default]
    Critical,
    /// A failure pauses the rollout for a human.
    Warning,
}

/// One check as written in a spec. Which fields apply depends on `kind`;
/// validation rejects the others so typos do not silently do nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// Name in reports (default: derived from kind and metric); unique.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Which statistic.
    pub kind: CheckKind,
    /// Critical (rollback) or warning (pause).
    #[serde(default)]
    pub severity: Severity,
    /// Sequential checks: the check's share of its severity's pooled wealth
    /// on ticks when other checks of that severity bet too, and, summed per
    /// severity, how α is split between critical and warning checks
    /// (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// Ignore the first this-many seconds of data (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<Seconds>,
    /// Relative checks: how much worse is still fine (0.2 = 20 % worse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// Relative checks: how far back the bet size is estimated from;
    /// thresholds: the window the metric is aggregated over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Seconds>,
    /// Thresholds: `error_rate`, `latency_p50_ms`, `latency_p99_ms` or the
    /// name of a provider metric (`cpu`, `memory`, `ready`, `breaker_open`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Thresholds: fail above this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Thresholds: fail below this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Thresholds on request metrics: need this many canary requests in
    /// the window before judging (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    /// Thresholds: the violation must last this long (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sustained: Option<Seconds>,
    /// Error rate: a canary error rate shown to be below this counts as
    /// within tolerance whatever the baseline does (default 0.001), so
    /// services with almost no errors can still be promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote_below: Option<f64>,
}

impl CheckConfig {
    fn new(kind: CheckKind) -> Self {
        CheckConfig {
            name: None,
            kind,
            severity: Severity::Critical,
            weight: None,
            warmup: None,
            tolerance: None,
            window: None,
            metric: None,
            max: None,
            min: None,
            min_requests: None,
            sustained: None,
            promote_below: None,
        }
    }

    fn threshold(metric: &str, severity: Severity) -> Self {
        CheckConfig {
            metric: Some(metric.to_owned()),
            severity,
            ..CheckConfig::new(CheckKind::Threshold)
        }
    }
}

/// One thing wrong with a config, with the path of the field at fault.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Dotted path from the section root, e.g. `analysis.checks[1].tolerance`.
    pub path: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

/// Everything wrong with a config, so a user fixes it in one go.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects errors with their paths while walking a config.
struct Problems<'a> {
    prefix: &'a str,
    errors: Vec<ConfigError>,
}

impl Problems<'_> {
    fn add(&mut self, field: impl fmt::Display, message: impl Into<String>) {
        let path = if self.prefix.is_empty() {
            field.to_string()
        } else {
            format!("{}.{field}", self.prefix)
        };
        self.errors.push(ConfigError {
            path,
            message: message.into(),
        });
    }

    fn probability(&mut self, field: impl fmt::Display, v: f64, hint: &str) {
        if !(v > 0.0 && v < 1.0) {
            self.add(
                field,
                format!("must be between 0 and 1, exclusive (got {v}); {hint}"),
            );
        }
    }
}

impl AnalysisConfig {
    /// The checks used when a spec lists none: relative error rate and
    /// latency, an absolute error-rate guard, and guards on provider metrics
    /// that only act when a provider supplies them.
    pub fn default_checks() -> Vec<CheckConfig> {
        vec![
            CheckConfig::new(CheckKind::ErrorRate),
            CheckConfig::new(CheckKind::Latency),
            CheckConfig {
                max: Some(0.05),
                ..CheckConfig::threshold("error_rate", Severity::Critical)
            },
            CheckConfig {
                max: Some(0.0),
                sustained: Some(Seconds(10.0)),
                ..CheckConfig::threshold("breaker_open", Severity::Critical)
            },
            CheckConfig {
                min: Some(1.0),
                sustained: Some(Seconds(60.0)),
                ..CheckConfig::threshold("ready", Severity::Warning)
            },
            CheckConfig {
                max: Some(0.9),
                sustained: Some(Seconds(60.0)),
                ..CheckConfig::threshold("cpu", Severity::Warning)
            },
            CheckConfig {
                max: Some(0.9),
                sustained: Some(Seconds(60.0)),
                ..CheckConfig::threshold("memory", Severity::Warning)
            },
        ]
    }

    /// Checks meaning and builds the checks. `prefix` is the path of this
    /// section in its document (`"analysis"` in a service spec, `""` when
    /// the document is the section itself) and starts every error path.
    pub fn validate(&self, prefix: &str) -> Result<Vec<Check>, ConfigErrors> {
        let mut p = Problems {
            prefix,
            errors: Vec::new(),
        };
        p.probability("alpha", self.alpha, "1% is written 0.01");
        p.probability("promote_alpha", self.promote_alpha, "5% is written 0.05");
        let inc = &self.incident;
        if !(inc.factor.is_finite() && inc.factor >= 1.0) {
            p.add(
                "incident.factor",
                format!("must be ≥ 1 (got {})", inc.factor),
            );
        }
        if !(inc.min_increase.is_finite() && (0.0..=1.0).contains(&inc.min_increase)) {
            p.add(
                "incident.min_increase",
                format!(
                    "must be an error rate between 0 and 1 (got {})",
                    inc.min_increase
                ),
            );
        }
        if !(inc.latency_factor.is_finite() && inc.latency_factor >= 1.0) {
            p.add(
                "incident.latency_factor",
                format!("must be ≥ 1 (got {})", inc.latency_factor),
            );
        }
        if inc.window.get() <= 0.0 {
            p.add("incident.window", "must be longer than 0 s; e.g. 30s");
        }
        if self.warmup.max.get() > 3600.0 {
            p.add(
                "warmup.max",
                format!(
                    "must be at most 1h (got {} s): a canary still improving after an hour is not warming up; e.g. 5m",
                    self.warmup.max.get()
                ),
            );
        }
        let defaults;
        let configs = match &self.checks {
            Some(list) => {
                if list.is_empty() {
                    p.add(
                        "checks",
                        "an empty list leaves nothing to judge; remove `checks` to get the defaults",
                    );
                }
                list
            }
            None => {
                defaults = AnalysisConfig::default_checks();
                &defaults
            }
        };
        let mut checks = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let at = format!("checks[{i}]");
            if let Some(check) = build_check(c, &at, &mut p) {
                if names.contains(&check.name().to_owned()) {
                    p.add(
                        format!("{at}.name"),
                        format!(
                            "another check is already named \"{}\"; give each check a unique `name`",
                            check.name()
                        ),
                    );
                }
                names.push(check.name().to_owned());
                checks.push(check);
            }
        }
        if p.errors.is_empty() {
            Ok(checks)
        } else {
            Err(ConfigErrors(p.errors))
        }
    }
}

/// Reports a field that `kind` does not use.
fn reject_unused(c: &CheckConfig, at: &str, p: &mut Problems<'_>) {
    let kind = c.kind;
    let relative = matches!(kind, CheckKind::ErrorRate | CheckKind::Latency);
    let mut unused = |set: bool, field: &str, who: &str| {
        if set {
            p.add(
                format!("{at}.{field}"),
                format!(
                    "is not used by a {} check (only by {who}); remove it",
                    kind_name(kind)
                ),
            );
        }
    };
    unused(
        !relative && c.tolerance.is_some(),
        "tolerance",
        "error_rate and latency checks",
    );
    unused(
        kind != CheckKind::Threshold && c.metric.is_some(),
        "metric",
        "threshold checks",
    );
    unused(
        kind != CheckKind::Threshold && c.max.is_some(),
        "max",
        "threshold checks",
    );
    unused(
        kind != CheckKind::Threshold && c.min.is_some(),
        "min",
        "threshold checks",
    );
    unused(
        kind != CheckKind::Threshold && c.min_requests.is_some(),
        "min_requests",
        "threshold checks",
    );
    unused(
        kind != CheckKind::Threshold && c.sustained.is_some(),
        "sustained",
        "threshold checks",
    );
    unused(
        kind != CheckKind::ErrorRate && c.promote_below.is_some(),
        "promote_below",
        "error_rate checks",
    );
}

fn kind_name(kind: CheckKind) -> &'static str {
    match kind {
        CheckKind::ErrorRate => "error_rate",
        CheckKind::Latency => "latency",
        CheckKind::Threshold => "threshold",
    }
}

fn build_check(c: &CheckConfig, at: &str, p: &mut Problems<'_>) -> Option<Check> {
    let before = p.errors.len();
    reject_unused(c, at, p);
    let weight = c.weight.unwrap_or(1.0);
    if !(weight.is_finite() && weight > 0.0) {
        p.add(
            format!("{at}.weight"),
            format!("must be a positive number (got {weight}); default is 1"),
        );
    }
    let warmup = c.warmup.unwrap_or(Seconds(30.0)).get();
    let tolerance = c.tolerance.unwrap_or(match c.kind {
        CheckKind::Latency => 0.1,
        _ => 0.2,
    });
    if !(tolerance.is_finite() && (0.0..=10.0).contains(&tolerance)) {
        p.add(
            format!("{at}.tolerance"),
            format!(
                "must be between 0 and 10 (got {tolerance}); 0.2 means the canary may be 20% worse"
            ),
        );
    }
    if let Some(name) = &c.name
        && name.trim().is_empty()
    {
        p.add(
            format!("{at}.name"),
            "must not be empty; remove it for a default name",
        );
    }
    let window = c.window.map(Seconds::get);
    if let Some(w) = window
        && w <= 0.0
    {
        p.add(format!("{at}.window"), "must be longer than 0 s; e.g. 60s");
    }
    let check = match c.kind {
        CheckKind::ErrorRate => {
            let floor = c.promote_below.unwrap_or(0.001);
            if !(floor.is_finite() && (0.0..1.0).contains(&floor)) {
                p.add(
                    format!("{at}.promote_below"),
                    format!("must be an error rate in [0, 1) (got {floor}); 0 turns it off"),
                );
            }
            Check::new(
                c.name.clone().unwrap_or_else(|| "error_rate".into()),
                Statistic::ErrorRate(ErrorRateCheck::new(
                    tolerance,
                    window.unwrap_or(120.0),
                    floor,
                )),
            )
        }
        CheckKind::Latency => Check::new(
            c.name.clone().unwrap_or_else(|| "latency".into()),
            Statistic::Latency(LatencyCheck::new(tolerance, window.unwrap_or(120.0))),
        ),
        CheckKind::Threshold => {
            let Some(metric_name) = c.metric.as_deref() else {
                p.add(
                    format!("{at}.metric"),
                    "a threshold check needs a metric: error_rate, latency_p50_ms, latency_p99_ms or a provider metric name such as cpu",
                );
                return None;
            };
            let metric = ThresholdMetric::parse(metric_name);
            // Request metrics aggregate a minute by default; provider metrics
            // (cpu, breaker_open...) look at the latest tick, so one blip is
            // not stretched into a sustained violation.
            let window = match metric {
                ThresholdMetric::Named(_) => window,
                _ => Some(window.unwrap_or(60.0)),
            };
            match (c.max, c.min) {
                (None, None) => p.add(
                    format!("{at}.max"),
                    "a threshold check needs `max` (fail above) or `min` (fail below)",
                ),
                (Some(_), Some(_)) => p.add(
                    format!("{at}.min"),
                    "give either `max` or `min`, not both; write two checks for a band",
                ),
                _ => {}
            }
            for (field, v) in [("max", c.max), ("min", c.min)] {
                if let Some(v) = v
                    && !v.is_finite()
                {
                    p.add(
                        format!("{at}.{field}"),
                        format!("must be a finite number (got {v})"),
                    );
                }
            }
            let default_name = match (c.max, c.min) {
                (_, Some(_)) => format!("{metric_name}_min"),
                _ => format!("{metric_name}_max"),
            };
            Check::new(
                c.name.clone().unwrap_or(default_name),
                Statistic::Threshold(ThresholdCheck::new(
                    metric,
                    c.max,
                    c.min,
                    window,
                    c.min_requests.unwrap_or(100),
                    c.sustained.unwrap_or(Seconds(30.0)).get(),
                )),
            )
        }
    };
    if p.errors.len() > before {
        return None;
    }
    Some(check.with_common(c.severity, weight, warmup))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `json` as an analysis section and validates it under the
    /// prefix `analysis`; compares the error paths+messages or the check names.
    fn check(json: &str, expected: Result<&[&str], &[&str]>) {
        let config: AnalysisConfig = match serde_json::from_str(json) {
            Ok(c) => c,
            Err(e) => panic!("{json}: does not parse: {e}"),
        };
        match (config.validate("analysis"), expected) {
            (Ok(checks), Ok(names)) => {
                let got: Vec<&str> = checks.iter().map(Check::name).collect();
                assert_eq!(got, names, "{json}");
            }
            (Err(errors), Err(wanted)) => {
                assert_eq!(errors.0.len(), wanted.len(), "{json}: {errors}");
                for (e, w) in errors.0.iter().zip(wanted) {
                    assert!(
                        e.to_string().starts_with(w),
                        "{json}: `{e}` does not start with `{w}`"
                    );
                }
            }
            (got, want) => panic!("{json}: got {got:?}, want {want:?}"),
        }
    }

    const DEFAULT_NAMES: &[&str] = &[
        "error_rate",
        "latency",
        "error_rate_max",
        "breaker_open_max",
        "ready_min",
        "cpu_max",
        "memory_max",
    ];

    #[test]
    fn validates_field_paths() {
        check("{}", Ok(DEFAULT_NAMES));
        check(r#"{"alpha": 0.05}"#, Ok(DEFAULT_NAMES));
        check(
            r#"{"alpha": 0}"#,
            Err(&["analysis.alpha: must be between 0 and 1"]),
        );
        check(
            r#"{"alpha": 1.5}"#,
            Err(&["analysis.alpha: must be between 0 and 1"]),
        );
        check(
            r#"{"promote_alpha": -1}"#,
            Err(&["analysis.promote_alpha: must be between"]),
        );
        check(
            r#"{"checks": []}"#,
            Err(&["analysis.checks: an empty list"]),
        );
        check(
            r#"{"checks": [{"kind": "error_rate"}]}"#,
            Ok(&["error_rate"]),
        );
        check(
            r#"{"checks": [{"kind": "error_rate"}, {"kind": "latency", "tolerance": -1}]}"#,
            Err(&["analysis.checks[1].tolerance: must be between 0 and 10"]),
        );
        check(
            r#"{"checks": [{"kind": "threshold", "metric": "cpu", "max": 0.9, "tolerance": 0.1}]}"#,
            Err(&["analysis.checks[0].tolerance: is not used by a threshold check"]),
        );
        check(
            r#"{"checks": [{"kind": "threshold", "max": 0.9}]}"#,
            Err(&["analysis.checks[0].metric: a threshold check needs a metric"]),
        );
        check(
            r#"{"checks": [{"kind": "threshold", "metric": "cpu"}]}"#,
            Err(&["analysis.checks[0].max: a threshold check needs `max`"]),
        );
        check(
            r#"{"checks": [{"kind": "threshold", "metric": "cpu", "max": 1, "min": 0}]}"#,
            Err(&["analysis.checks[0].min: give either"]),
        );
        check(
            r#"{"checks": [{"kind": "latency", "max": 3}]}"#,
            Err(&["analysis.checks[0].max: is not used by a latency check"]),
        );
        check(
            r#"{"checks": [{"kind": "error_rate"}, {"kind": "error_rate"}]}"#,
            Err(&["analysis.checks[1].name: another check is already named \"error_rate\""]),
        );
        check(
            r#"{"checks": [{"kind": "error_rate", "weight": 0}]}"#,
            Err(&["analysis.checks[0].weight: must be a positive number"]),
        );
        check(
            r#"{"checks": [{"kind": "error_rate", "window": 0}]}"#,
            Err(&["analysis.checks[0].window: must be longer than 0 s"]),
        );
        check(
            r#"{"checks": [{"kind": "error_rate", "promote_below": 2}]}"#,
            Err(&["analysis.checks[0].promote_below: must be an error rate"]),
        );
        check(
            r#"{"checks": [{"kind": "threshold", "metric": "latency_p99_ms", "max": 800, "sustained": "1m"}]}"#,
            Ok(&["latency_p99_ms_max"]),
        );
        check(r#"{"warmup": {"max": "2m"}}"#, Ok(DEFAULT_NAMES));
        check(r#"{"warmup": {"max": 0}}"#, Ok(DEFAULT_NAMES));
        check(
            r#"{"warmup": {"max": "2h"}}"#,
            Err(&["analysis.warmup.max: must be at most 1h"]),
        );
        check(
            r#"{"incident": {"factor": 0.5}}"#,
            Err(&["analysis.incident.factor: must be ≥ 1"]),
        );
        check(
            r#"{"alpha": 2, "checks": [{"kind": "latency", "tolerance": 11}]}"#,
            Err(&["analysis.alpha", "analysis.checks[0].tolerance"]),
        );
    }

    #[test]
    fn paths_without_prefix() {
        let config = AnalysisConfig {
            alpha: 3.0,
            ..AnalysisConfig::default()
        };
        let errors = config.validate("").err().map(|e| e.0[0].path.clone());
        assert_eq!(errors.as_deref(), Some("alpha"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<AnalysisConfig>(r#"{"alpah": 0.01}"#)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("unknown field `alpah`")));
    }
}
