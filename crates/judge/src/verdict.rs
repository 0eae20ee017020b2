//! What the judge says, and how per-check states combine into it.

use crate::check::CheckReport;
use crate::config::Severity;
use serde::{Deserialize, Serialize};

/// The judge's answer for one tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Not enough data to say anything yet. A state of its own, never a
    /// silent pass: a canary that gets no traffic is not a healthy canary.
    Insufficient,
    /// Keep going; nothing is proven either way.
    Continue,
    /// Something is off but rolling back may be wrong (a shared incident, a
    /// warning check): ask a human.
    Pause,
    /// Enough evidence that the canary is worse than tolerated.
    Rollback,
    /// Enough evidence that the canary is within tolerance on every check.
    Promote,
}

/// Where one check stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    /// Still in its warm-up; data is ignored.
    Warmup,
    /// The check has never received the data it needs (e.g. no provider
    /// supplies the metric); it neither blocks promotion nor acts.
    NoData,
    /// Some data, not enough to judge.
    Insufficient,
    /// Judging, no conclusion (for guards: violated, not yet for long enough).
    Continue,
    /// Within tolerance (sequential: proven; guards: currently fine).
    Pass,
    /// Outside tolerance.
    Fail,
    /// Would fail, but the baseline is as bad: a shared incident.
    Excused,
}

/// The verdict for one tick with every check's report: the judge never
/// returns a verdict without its reasons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Seconds since the canary started.
    pub t: f64,
    /// The verdict.
    pub verdict: Verdict,
    /// One sentence: why this verdict.
    pub reason: String,
    /// Whether the baseline looked like it was in an incident of its own.
    pub incident: bool,
    /// Every check's report, in config order.
    pub checks: Vec<CheckReport>,
}

/// Combines check reports into a verdict with its reason.
///
/// Order matters: a critical failure rolls back even if another check
/// passed; anything excused or any warning failure pauses; promotion needs
/// every check that has data to be fine, and `promote_after` to have passed.
pub fn decide(t: f64, promote_after: f64, checks: &[CheckReport]) -> (Verdict, String) {
    let names = |pred: &dyn Fn(&CheckReport) -> bool| -> String {
        checks
            .iter()
            .filter(|c| pred(c))
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let failing_critical =
        names(&|c| c.state == CheckState::Fail && c.severity == Severity::Critical);
    if !failing_critical.is_empty() {
        return (
            Verdict::Rollback,
            format!("critical check failed: {failing_critical}"),
        );
    }
    let excused = names(&|c| c.state == CheckState::Excused);
    let warned = names(&|c| c.state == CheckState::Fail);
    if !excused.is_empty() || !warned.is_empty() {
        let mut parts = Vec::new();
        if !excused.is_empty() {
            parts.push(format!(
                "baseline is failing too (shared incident): {excused}"
            ));
        }
        if !warned.is_empty() {
            parts.push(format!("warning check failed: {warned}"));
        }
        return (Verdict::Pause, parts.join("; "));
    }
    let quiet = |s: CheckState| {
        matches!(
            s,
            CheckState::Warmup | CheckState::NoData | CheckState::Insufficient
        )
    };
    if checks.iter().all(|c| quiet(c.state)) {
        let waiting = names(&|c| c.state != CheckState::NoData);
        return (
            Verdict::Insufficient,
            if waiting.is_empty() {
                "no check has data yet".to_owned()
            } else {
                format!("not enough data yet for: {waiting}")
            },
        );
    }
    let sequential_with_data = checks
        .iter()
        .filter(|c| c.sequential && c.state != CheckState::NoData);
    let all_fine = checks
        .iter()
        .all(|c| matches!(c.state, CheckState::Pass | CheckState::NoData));
    if all_fine && sequential_with_data.clone().count() > 0 {
        if t >= promote_after {
            return (
                Verdict::Promote,
                "every check shows the canary within tolerance".to_owned(),
            );
        }
        return (
            Verdict::Continue,
            format!("every check passes; promotion waits until t = {promote_after} s"),
        );
    }
    let open = names(&|c| !matches!(c.state, CheckState::Pass | CheckState::NoData));
    (Verdict::Continue, format!("no conclusion yet from: {open}"))
}
