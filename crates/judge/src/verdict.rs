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
    /// Rollback and pause: when the problem is estimated to have started,
    /// in seconds since the canary started (the clock of `t`, and never
    /// after it). The earliest `onset_t` of the checks behind the verdict;
    /// see [`onset`]. `t − onset_t` is the "detect" phase of MTTR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onset_t: Option<f64>,
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
    // Sequential checks must have proven the canary fine. A guard only has
    // to be quiet: one that lacks the traffic to judge (a low-traffic
    // service never reaches its `min_requests`) says nothing either way and
    // must not hold a proven canary back forever.
    let all_fine = checks.iter().all(|c| {
        matches!(c.state, CheckState::Pass | CheckState::NoData)
            || (!c.sequential && matches!(c.state, CheckState::Insufficient | CheckState::Warmup))
    });
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

/// When the problem behind a rollback or pause started: the earliest
/// `onset_t` among the checks that decided it (critical failures for a
/// rollback; excused checks and warning failures for a pause), never later
/// than `t`. `None` for any other verdict.
///
/// The earliest, because the verdict is about the canary, and the first
/// check whose evidence turned is the best guess at when it went wrong;
/// checks that decided later only confirm it.
pub fn onset(t: f64, verdict: Verdict, checks: &[CheckReport]) -> Option<f64> {
    let decided = |c: &CheckReport| match verdict {
        Verdict::Rollback => c.state == CheckState::Fail && c.severity == Severity::Critical,
        Verdict::Pause => matches!(c.state, CheckState::Fail | CheckState::Excused),
        _ => false,
    };
    checks
        .iter()
        .filter(|c| decided(c))
        .filter_map(|c| c.onset_t)
        .filter(|o| o.is_finite())
        .reduce(f64::min)
        .map(|o| o.min(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CheckKind;

    /// Builds reports from `(state, severity, sequential)` triples and
    /// checks the verdict at `t` (promote_after = 60).
    fn check(t: f64, states: &[(CheckState, Severity, bool)], expected: Verdict, because: &str) {
        let reports: Vec<CheckReport> = states
            .iter()
            .enumerate()
            .map(|(i, &(state, severity, sequential))| {
                let kind = if sequential {
                    CheckKind::ErrorRate
                } else {
                    CheckKind::Threshold
                };
                let mut r = CheckReport::new(&format!("c{i}"), kind, state, "why".into());
                r.severity = severity;
                r
            })
            .collect();
        let (verdict, reason) = decide(t, 60.0, &reports);
        assert_eq!(verdict, expected, "{states:?}: {reason}");
        assert!(
            reason.contains(because),
            "{states:?}: `{reason}` lacks `{because}`"
        );
    }

    use CheckState::*;
    use Severity::{Critical as C, Warning as W};

    /// The onset of `verdict` at t = 100 from `(state, severity, onset_t)`
    /// reports.
    fn check_onset(
        verdict: Verdict,
        states: &[(CheckState, Severity, Option<f64>)],
        expected: Option<f64>,
    ) {
        let reports: Vec<CheckReport> = states
            .iter()
            .map(|&(state, severity, onset_t)| {
                let mut r = CheckReport::new("c", CheckKind::ErrorRate, state, "why".into());
                r.severity = severity;
                r.onset_t = onset_t;
                r
            })
            .collect();
        assert_eq!(onset(100.0, verdict, &reports), expected, "{states:?}");
    }

    #[test]
    fn dates_a_verdict_from_the_checks_behind_it() {
        check_onset(Verdict::Continue, &[(Continue, C, Some(50.0))], None);
        check_onset(Verdict::Promote, &[(Pass, C, None)], None);
        // The earliest of the checks that decided…
        check_onset(
            Verdict::Rollback,
            &[(Fail, C, Some(80.0)), (Fail, C, Some(60.0))],
            Some(60.0),
        );
        // …and only those: a warning failure does not date a rollback.
        check_onset(
            Verdict::Rollback,
            &[(Fail, C, Some(80.0)), (Fail, W, Some(10.0))],
            Some(80.0),
        );
        check_onset(
            Verdict::Pause,
            &[(Excused, C, Some(70.0)), (Fail, W, Some(90.0))],
            Some(70.0),
        );
        // Never after the verdict, never a non-number.
        check_onset(Verdict::Rollback, &[(Fail, C, Some(120.0))], Some(100.0));
        check_onset(Verdict::Rollback, &[(Fail, C, Some(f64::NAN))], None);
        check_onset(Verdict::Rollback, &[(Fail, C, None)], None);
    }

    #[test]
    fn combines_checks() {
        check(100.0, &[], Verdict::Insufficient, "no check has data");
        check(
            100.0,
            &[(Warmup, C, true), (NoData, C, false)],
            Verdict::Insufficient,
            "c0",
        );
        check(
            100.0,
            &[(Continue, C, true), (Pass, C, false)],
            Verdict::Continue,
            "c0",
        );
        check(
            100.0,
            &[(Fail, C, true), (Pass, C, true)],
            Verdict::Rollback,
            "critical check failed: c0",
        );
        check(
            100.0,
            &[(Fail, C, true), (Excused, C, false)],
            Verdict::Rollback,
            "c0",
        );
        check(
            100.0,
            &[(Pass, C, true), (Excused, C, false)],
            Verdict::Pause,
            "shared incident): c1",
        );
        check(
            100.0,
            &[(Pass, C, true), (Fail, W, false)],
            Verdict::Pause,
            "warning check failed: c1",
        );
        check(
            100.0,
            &[(Pass, C, true), (Pass, C, true), (NoData, C, false)],
            Verdict::Promote,
            "within tolerance",
        );
        check(
            30.0,
            &[(Pass, C, true)],
            Verdict::Continue,
            "promotion waits until t = 60",
        );
        // A guard without enough traffic does not hold a proven canary back…
        check(
            100.0,
            &[(Pass, C, true), (Insufficient, C, false)],
            Verdict::Promote,
            "within tolerance",
        );
        // …but a sequential check without enough data does.
        check(
            100.0,
            &[(Pass, C, true), (Insufficient, C, true)],
            Verdict::Continue,
            "c1",
        );
        // Guards alone prove nothing: no promotion without a sequential check.
        check(100.0, &[(Pass, C, false)], Verdict::Continue, "");
        // A guard whose violation has not lasted long enough blocks promotion.
        check(
            100.0,
            &[(Pass, C, true), (Continue, C, false)],
            Verdict::Continue,
            "c1",
        );
    }
}
