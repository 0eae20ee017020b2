//! The judge: checks plus incident detection, fed one window at a time.

use crate::check::{Check, CheckReport, Context};
use crate::config::{AnalysisConfig, ConfigErrors};
use crate::incident::IncidentDetector;
use crate::verdict::{Decision, decide};
use crate::window::Window;
use serde::{Deserialize, Serialize};

/// The judge of one rollout: a pure value that accumulates evidence.
///
/// `observe` is the whole interface: a window in, a [`Decision`] out. It is
/// `Clone + Serialize + Deserialize` so the controller can snapshot it with
/// the rollout state and resume after a restart without losing evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Judge {
    alpha: f64,
    promote_alpha: f64,
    promote_after: f64,
    sequential_weight: f64,
    checks: Vec<Check>,
    incident: IncidentDetector,
    last_t: Option<f64>,
}

impl Judge {
    /// A judge for `config`, or every problem with it. `prefix` is where the
    /// section sits in its document (`"analysis"`), used in error paths.
    pub fn new(config: &AnalysisConfig, prefix: &str) -> Result<Self, ConfigErrors> {
        Ok(Judge::from_checks(config, config.validate(prefix)?))
    }

    /// A judge with every default.
    pub fn with_defaults() -> Self {
        let config = AnalysisConfig::default();
        // The defaults are valid (a unit test says so); were they not, an
        // empty judge answers `insufficient` rather than panicking.
        let checks = config.validate("").unwrap_or_default();
        Judge::from_checks(&config, checks)
    }

    fn from_checks(config: &AnalysisConfig, checks: Vec<Check>) -> Self {
        let sequential_weight = checks
            .iter()
            .filter(|c| c.is_sequential())
            .map(Check::weight)
            .sum();
        Judge {
            alpha: config.alpha,
            promote_alpha: config.promote_alpha,
            promote_after: config.promote_after.get(),
            sequential_weight,
            checks,
            incident: IncidentDetector::new(config.incident.clone()),
            last_t: None,
        }
    }

    /// Feeds one tick and returns the verdict with its reasons.
    ///
    /// Time is `window.t`. It never goes backwards: a window stamped earlier
    /// than the previous one (clock skew in a peer) is taken as happening at
    /// the previous time, and a non-finite stamp likewise.
    pub fn observe(&mut self, window: &Window) -> Decision {
        let last = self.last_t.unwrap_or(0.0);
        let t = if window.t.is_finite() {
            window.t.max(last)
        } else {
            last
        };
        self.last_t = Some(t);
        // The incident flag comes from earlier ticks only: bets may depend
        // on the past, never on the data they are betting on.
        let incident = self.incident.active();
        let reports: Vec<CheckReport> = self
            .checks
            .iter_mut()
            .map(|check| {
                // Weighted Bonferroni: the shares of α sum to α, so the
                // chance that *any* sequential check wrongly fails over the
                // whole rollout stays at most α.
                let share = if self.sequential_weight > 0.0 {
                    check.weight() / self.sequential_weight
                } else {
                    1.0
                };
                let ctx = Context {
                    t,
                    alpha: self.alpha * share,
                    promote_alpha: self.promote_alpha * share,
                    incident,
                };
                check.observe(&ctx, window)
            })
            .collect();
        self.incident.update(t, &window.baseline);
        let (verdict, reason) = decide(t, self.promote_after, &reports);
        Decision {
            t,
            verdict,
            reason,
            incident,
            checks: reports,
        }
    }
}
