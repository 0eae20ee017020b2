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
use backout_judge::Window;

/// A rollback rule: sees one window per tick, says whether to roll back now.
pub trait Rule {
    /// Short name for tables.
    fn name(&self) -> &'static str;
    /// Feeds one tick; `true` means "roll back".
    fn observe(&mut self, window: &Window, truth: &Truth) -> bool;
}

/// Every rule compared with the judge, fresh for one run of `scenario`.
pub fn all(scenario: &Scenario, tol: Tolerances) -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(Argo::default()),
        Box::new(Flagger::default()),
        Box::new(RatioRule::default()),
        Box::new(ChiSquared::default()),
        Box::new(Kayenta::default()),
        Box::new(Sprt::new(scenario, tol)),
    ]
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
