//! The judge: checks plus incident detection, fed one window at a time.

use crate::check::{Check, CheckReport, Context, Step};
use crate::config::{AnalysisConfig, ConfigErrors, Severity};
use crate::evalue::log_bound;
use crate::incident::IncidentDetector;
use crate::pool::Pool;
use crate::verdict::{Decision, Verdict, decide, onset};
use crate::warmup::WarmupPhase;
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
    checks: Vec<Check>,
    pools: Vec<SeverityPool>,
    incident: IncidentDetector,
    /// The warm-up phase (a judge restored from a snapshot taken before
    /// there was one has none left).
    #[serde(default = "no_warmup")]
    warmup: WarmupPhase,
    last_t: Option<f64>,
}

fn no_warmup() -> WarmupPhase {
    WarmupPhase::new(0.0, 0.0)
}

/// The sequential checks of one severity and their pooled wealth.
///
/// Checks are pooled by severity because the pool's crossing names one
/// check, and what happens then (rollback or pause) depends on its
/// severity: pooling a warning check with a critical one could let a
/// warning's evidence roll back. Pools split α by weight (Bonferroni
/// across pools), so with the defaults (two critical checks) one pool gets
/// all of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SeverityPool {
    severity: Severity,
    alpha: f64,
    pool: Pool,
    crossed: bool,
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
        let sequential_weight: f64 = checks
            .iter()
            .filter(|c| c.is_sequential())
            .map(Check::weight)
            .sum();
        let pools = [Severity::Critical, Severity::Warning]
            .into_iter()
            .filter_map(|severity| {
                let weight: f64 = checks
                    .iter()
                    .filter(|c| c.is_sequential() && c.severity() == severity)
                    .map(Check::weight)
                    .sum();
                (weight > 0.0).then(|| SeverityPool {
                    severity,
                    // Weighted Bonferroni across pools: the shares sum to α,
                    // so the chance that *any* pool wrongly crosses over the
                    // whole rollout stays at most α.
                    alpha: config.alpha * weight / sequential_weight,
                    pool: Pool::new(),
                    crossed: false,
                })
            })
            .collect();
        // The phase lasts at least as long as the longest warm-up of the
        // checks that follow it.
        let min = checks
            .iter()
            .filter(|c| c.follows_phase())
            .map(Check::warmup)
            .fold(0.0, f64::max);
        Judge {
            warmup: WarmupPhase::new(min, config.warmup.max.get()),
            alpha: config.alpha,
            promote_alpha: config.promote_alpha,
            promote_after: config.promote_after.get(),
            checks,
            pools,
            incident: IncidentDetector::new(config.incident.clone()),
            last_t: None,
        }
    }

    /// The same judge with no warm-up phase beyond the checks' own (as if
    /// configured with `warmup: {max: 0}`): what the simulator compares
    /// the phase with.
    pub fn without_warmup_phase(&self) -> Judge {
        let mut judge = self.clone();
        let min = judge.warmup.min();
        judge.warmup = WarmupPhase::new(min, min);
        judge
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
        // So is whether the warm-up phase lasts.
        let warming = self.warmup.begin(t);
        let recovering = self
            .warmup
            .extended(t)
            .then(|| (self.warmup.progress().unwrap_or(0.0), self.warmup.max()));
        let context = |check: &Check, pools: &[SeverityPool]| {
            let pool = pools.iter().find(|p| p.severity == check.severity());
            Context {
                t,
                alpha: pool.map_or(self.alpha, |p| p.alpha),
                promote_alpha: self.promote_alpha,
                pooled: pool.map_or(0.0, |p| p.pool.log_wealth()),
                incident,
                warming,
                recovering,
            }
        };
        // Every check sees the tick; sequential ones say what they bet.
        let steps: Vec<Step> = self
            .checks
            .iter_mut()
            .map(|check| {
                let ctx = context(check, &self.pools);
                check.observe(&ctx, window)
            })
            .collect();
        // Each pool compounds its checks' bets. The first time it crosses
        // ln(1/α), the check with the most evidence of its own fails.
        for pool in &mut self.pools {
            let members = || {
                self.checks
                    .iter()
                    .zip(&steps)
                    .enumerate()
                    .filter(|(_, (c, _))| c.is_sequential() && c.severity() == pool.severity)
            };
            let bets: Vec<(f64, f64)> = members()
                .filter_map(|(_, (c, s))| match s {
                    Step::Bet(Some(l)) => Some((c.weight(), *l)),
                    _ => None,
                })
                .collect();
            pool.pool.step(&bets);
            if !pool.crossed && pool.pool.log_wealth() >= log_bound(pool.alpha) {
                pool.crossed = true;
                let blamed = members()
                    .filter_map(|(i, (c, _))| c.own_log_e().map(|l| (i, l)))
                    .fold(None, |best: Option<(usize, f64)>, (i, l)| match best {
                        Some((_, b)) if b >= l => best,
                        _ => Some((i, l)),
                    });
                if let Some((i, _)) = blamed
                    && let Some(check) = self.checks.get_mut(i)
                {
                    check.fail();
                }
            }
        }
        let reports: Vec<CheckReport> = self
            .checks
            .iter()
            .zip(steps)
            .map(|(check, step)| match step {
                Step::Report(report) => report,
                Step::Bet(_) => check.report(&context(check, &self.pools)),
            })
            .collect();
        self.incident.update(t, &window.baseline);
        self.warmup.update(t, window);
        let (verdict, mut reason) = decide(t, self.promote_after, &reports);
        if let Some((progress, max)) = recovering
            && matches!(verdict, Verdict::Insufficient | Verdict::Continue)
        {
            reason = crate::warmup::reason(progress, max);
        }
        Decision {
            t,
            verdict,
            reason,
            incident,
            onset_t: onset(t, verdict, &reports),
            checks: reports,
        }
    }
}
