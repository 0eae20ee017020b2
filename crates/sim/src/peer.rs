//! The rules other tools ship, replayed on the same windows as the judge.
//!
//! Each is written from the tool's documentation of its common example or
//! defaults, as a user who copies that example would get it. They see only
//! what a real deployment sees (the windows); only [`Sprt`] is told the
//! truth, because it stands for the physical limit, not a competitor.

mod argo;
mod chi_squared;
mod flagger;
mod kayenta;
mod ratio_rule;
mod sprt;

pub use argo::Argo;
pub use chi_squared::ChiSquared;
pub use flagger::Flagger;
pub use kayenta::Kayenta;
pub use ratio_rule::RatioRule;
pub use sprt::Sprt;

use crate::run::Tolerances;
use crate::scenario::Scenario;
use crate::traffic::Truth;
use backout_judge::{Judge, Verdict, Window};

/// A rollback rule: sees one window per tick, says whether to roll back now.
pub trait Rule {
    /// Short name for tables.
    fn name(&self) -> &'static str;
    /// Feeds one tick; `true` means "roll back".
    fn observe(&mut self, window: &Window, truth: &Truth) -> bool;
}

/// backout's judge without its warm-up phase (a fixed warm-up, the
/// checks' own), on cold starts and persistent regressions: what the phase
/// costs a regression present from the start, and what it saves a
/// recovering canary.
pub struct FixedWarmup(Judge);

impl Rule for FixedWarmup {
    fn name(&self) -> &'static str {
        "backout-fixed"
    }

    fn observe(&mut self, window: &Window, _: &Truth) -> bool {
        self.0.observe(window).verdict == Verdict::Rollback
    }
}

/// Whether a run of `scenario` is judged by [`FixedWarmup`] too.
pub fn compares_warmup(scenario: &Scenario) -> bool {
    scenario.cold_start.is_some()
        || (scenario.onset == 0.0 && (scenario.error_ratio > 1.2 || scenario.latency_ratio > 1.1))
}

/// Every rule compared with the judge, fresh for one run of `scenario`.
pub fn all(scenario: &Scenario, tol: Tolerances, judge: &Judge) -> Vec<Box<dyn Rule>> {
    let mut rules: Vec<Box<dyn Rule>> = Vec::new();
    if compares_warmup(scenario) {
        rules.push(Box::new(FixedWarmup(judge.without_warmup_phase())));
    }
    rules.extend::<[Box<dyn Rule>; 7]>([
        Box::new(Argo::default()),
        Box::new(Flagger::default()),
        Box::new(RatioRule::default()),
        Box::new(ChiSquared::default()),
        Box::new(Kayenta::default()),
        Box::new(Sprt::new(scenario, tol)),
        Box::new(Sprt::ratio_only(scenario, tol)),
    ]);
    rules
}

/// Sums of a group's counts over ticks.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Totals {
    pub requests: u64,
    pub errors: u64,
}

impl Totals {
    pub(crate) fn add(&mut self, requests: u64, errors: u64) {
        self.requests += requests;
        self.errors += errors.min(requests);
    }

    pub(crate) fn rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }
}

/// True when `t` (whole seconds) is a multiple of `every`.
pub(crate) fn every(t: f64, every: f64) -> bool {
    t > 0.0 && (t / every).fract() == 0.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use backout_judge::GroupWindow;

    /// Feeds `rule` one window per second with constant counts and
    /// latencies; returns when it first rolls back, within `seconds`.
    fn first_rollback(
        mut rule: Box<dyn Rule>,
        seconds: u32,
        canary: (u64, u64, f64),
        baseline: (u64, u64),
    ) -> Option<f64> {
        let truth = Truth {
            p_baseline: 0.0,
            p_canary: 0.0,
            regressed: false,
        };
        (1..=seconds).map(f64::from).find(|&t| {
            let w = Window {
                t,
                baseline: GroupWindow {
                    latency_ms: vec![100.0; 20],
                    ..GroupWindow::counts(baseline.0, baseline.1)
                },
                canary: GroupWindow {
                    latency_ms: vec![canary.2; 20],
                    ..GroupWindow::counts(canary.0, canary.1)
                },
            };
            rule.observe(&w, &truth)
        })
    }

    fn check(
        rule: Box<dyn Rule>,
        canary: (u64, u64, f64),
        baseline: (u64, u64),
        expected: Option<f64>,
    ) {
        let name = rule.name();
        assert_eq!(
            first_rollback(rule, 1800, canary, baseline),
            expected,
            "{name}"
        );
    }

    #[test]
    fn peers_follow_their_documented_rules() {
        // Argo: 2 % errors fail every 30 s measurement; the third failure
        // exceeds failureLimit 2. Under 1 % it never fails.
        check(
            Box::new(Argo::default()),
            (100, 2, 100.0),
            (1000, 0),
            Some(90.0),
        );
        check(Box::new(Argo::default()), (100, 0, 100.0), (1000, 0), None);
        // Flagger: a failed check each minute, rollback at the fifth.
        check(
            Box::new(Flagger::default()),
            (100, 2, 100.0),
            (1000, 0),
            Some(300.0),
        );
        check(
            Box::new(Flagger::default()),
            (100, 0, 600.0),
            (1000, 0),
            Some(300.0),
        );
        check(
            Box::new(Flagger::default()),
            (100, 0, 400.0),
            (1000, 0),
            None,
        );
        // The 1.5x rule waits for 5 minutes (and 1000 requests).
        check(
            Box::new(RatioRule::default()),
            (100, 2, 100.0),
            (1000, 10),
            Some(300.0),
        );
        check(
            Box::new(RatioRule::default()),
            (1, 1, 100.0),
            (1000, 10),
            Some(1000.0),
        );
        check(
            Box::new(RatioRule::default()),
            (100, 1, 100.0),
            (1000, 10),
            None,
        );
        // Chi-squared: first look at one minute.
        check(
            Box::new(ChiSquared::default()),
            (100, 10, 100.0),
            (1000, 10),
            Some(60.0),
        );
        check(
            Box::new(ChiSquared::default()),
            (100, 1, 100.0),
            (1000, 10),
            None,
        );
        // Kayenta-like: only every 10 minutes; a slower canary fails latency.
        check(
            Box::new(Kayenta::default()),
            (100, 1, 150.0),
            (1000, 10),
            Some(600.0),
        );
        check(
            Box::new(Kayenta::default()),
            (100, 1, 100.0),
            (1000, 10),
            None,
        );
    }

    #[test]
    fn every_is_exact_on_whole_seconds() {
        assert!(every(30.0, 30.0));
        assert!(every(600.0, 60.0));
        assert!(!every(0.0, 30.0));
        assert!(!every(31.0, 30.0));
    }
}
