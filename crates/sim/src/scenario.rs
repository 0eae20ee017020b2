//! Scenario families: what kinds of rollout the simulator draws.
//!
//! A family is a *range* of scenarios, not one: each run draws its traffic,
//! error rate, latency shape and canary weight from the family's ranges, so
//! a judge tuned to one service shape cannot look good by accident. Regression
//! families are restricted to traffic where the regression is detectable at
//! all within the run (Wald's SPRT told the truth detects it), so they
//! measure the judge rather than physics.

use rand::Rng;
use serde::Serialize;

/// The parameters of one simulated rollout.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scenario {
    /// Simulated seconds (one window per second).
    pub duration: f64,
    /// Requests per second to the service, both groups together.
    pub rps: f64,
    /// Share of requests routed to the canary.
    pub canary_weight: f64,
    /// Baseline error probability per request.
    pub base_error: f64,
    /// Canary error probability ÷ baseline's, from `onset` on.
    pub error_ratio: f64,
    /// Baseline median latency (ms).
    pub latency_median_ms: f64,
    /// Log-normal shape of latencies (σ of ln latency).
    pub latency_sigma: f64,
    /// Canary latency ÷ baseline's, from `onset` on.
    pub latency_ratio: f64,
    /// When the canary's regression starts (s); 0 for "from the start".
    pub onset: f64,
    /// Gamma shape of a per-second error-rate multiplier shared by both
    /// groups (overdispersion); `None` for plain binomial errors.
    pub burst_shape: Option<f64>,
    /// A shared incident hitting both groups.
    pub incident: Option<Incident>,
    /// A canary cold start that settles.
    pub cold_start: Option<ColdStart>,
}

/// Something failing for both versions at once.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Incident {
    /// Start (s).
    pub start: f64,
    /// Length (s).
    pub duration: f64,
    /// Added error probability, both groups.
    pub error_add: f64,
    /// Latency multiplier, both groups.
    pub latency_factor: f64,
}

/// A new version warming caches and JIT: worse at first, settling
/// exponentially.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ColdStart {
    /// Error multiplier at t = 0.
    pub error_factor: f64,
    /// Latency multiplier at t = 0.
    pub latency_factor: f64,
    /// Time constant of the settling (s).
    pub tau: f64,
}

/// A named family of scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Family {
    /// Short name, used by `--family`.
    pub name: &'static str,
    /// What it models.
    pub description: &'static str,
    /// Healthy families count false rollbacks; the others detections.
    pub healthy: bool,
    /// What the median time to detect is held against (regressions).
    pub ttd_goal: TtdGoal,
    kind: Kind,
}

/// The yardstick of a regression family's median time to detect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TtdGoal {
    /// The larger of a third of the best peer's and 1.5× the oracle SPRT's.
    PeersOrOracle,
    /// 2× the oracle SPRT's (issue 10: rare errors and coarse windows).
    TwiceOracle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
enum Kind {
    AaHigh,
    AaMedium,
    /// A cold start settling over 1-5 minutes.
    SlowWarmup,
    AaVeryLow,
    Bursty,
    SharedIncident,
    ColdStart,
    AtTolerance,
    Errors(u32),
    LateOnset,
    Latency(u32),
    LowTraffic,
    /// Rare errors (baseline 0.01–1 %) with the canary's error ratio in
    /// tenths, traffic scaled so the oracle needs 1–5 minutes.
    Rare(u32),
    /// The case: baseline 0.1 %, canary 2×, 100 canary requests/s.
    RareExample,
}

const fn family(
    name: &'static str,
    description: &'static str,
    healthy: bool,
    kind: Kind,
) -> Family {
    Family {
        name,
        description,
        healthy,
        ttd_goal: TtdGoal::PeersOrOracle,
        kind,
    }
}

const fn rare(name: &'static str, description: &'static str, healthy: bool, kind: Kind) -> Family {
    Family {
        ttd_goal: TtdGoal::TwiceOracle,
        ..family(name, description, healthy, kind)
    }
}

/// Every family. New ones go last: a family's place seeds its runs, so
/// the figures of the others stay comparable.
pub fn families() -> Vec<Family> {
    vec![
        family("aa-high", "A/A, 300-3000 rps", true, Kind::AaHigh),
        family("aa-medium", "A/A, 30-300 rps", true, Kind::AaMedium),
        family("aa-very-low", "A/A, 0.1-2 rps", true, Kind::AaVeryLow),
        family(
            "bursty",
            "A/A, overdispersed errors shared by both groups",
            true,
            Kind::Bursty,
        ),
        family(
            "shared-incident",
            "A/A, a 1-5 min incident (+5-30% errors, 1.5-4x latency) hits both groups",
            true,
            Kind::SharedIncident,
        ),
        family(
            "cold-start",
            "A/A after a canary cold start (2-5x errors, 1.5-3x latency, settling in 3-10 s)",
            true,
            Kind::ColdStart,
        ),
        family(
            "at-tolerance",
            "canary exactly on the default tolerance line: errors 1.2x, latency 1.1x",
            true,
            Kind::AtTolerance,
        ),
        family(
            "errors-1.5x",
            "canary errors 1.5x baseline's",
            false,
            Kind::Errors(15),
        ),
        family(
            "errors-2x",
            "canary errors 2x baseline's",
            false,
            Kind::Errors(20),
        ),
        family(
            "errors-5x",
            "canary errors 5x baseline's",
            false,
            Kind::Errors(50),
        ),
        family(
            "errors-50x",
            "canary errors 50x baseline's",
            false,
            Kind::Errors(500),
        ),
        family(
            "late-onset",
            "canary errors 3x baseline's from 10-20 min after a healthy start",
            false,
            Kind::LateOnset,
        ),
        family(
            "latency-1.3x",
            "canary latency 1.3x baseline's",
            false,
            Kind::Latency(13),
        ),
        family(
            "latency-2x",
            "canary latency 2x baseline's",
            false,
            Kind::Latency(20),
        ),
        family(
            "latency-3x",
            "canary latency 3x baseline's",
            false,
            Kind::Latency(30),
        ),
        family(
            "low-traffic",
            "2-10 rps service, canary errors 10x baseline's",
            false,
            Kind::LowTraffic,
        ),
        rare(
            "rare-aa",
            "A/A, baseline errors 0.01-1%, traffic as in the rare-errors families",
            true,
            Kind::Rare(10),
        ),
        rare(
            "rare-at-tolerance",
            "canary errors 1.2x (the tolerance line), baseline errors 0.01-1%",
            true,
            Kind::Rare(12),
        ),
        rare(
            "rare-errors-1.5x",
            "canary errors 1.5x, baseline errors 0.01-1%, oracle needs 1-5 min",
            false,
            Kind::Rare(15),
        ),
        rare(
            "rare-errors-2x",
            "canary errors 2x, baseline errors 0.01-1%, oracle needs 1-5 min",
            false,
            Kind::Rare(20),
        ),
        rare(
            "rare-errors-3x",
            "canary errors 3x, baseline errors 0.01-1%, oracle needs 1-5 min",
            false,
            Kind::Rare(30),
        ),
        rare(
            "rare-example",
            "baseline errors 0.1%, canary 2x at 100 canary requests/s, 10% weight",
            false,
            Kind::RareExample,
        ),
        family(
            "slow-warmup",
            "A/A after a canary cold start (2-5x errors and latency) settling over 1-5 min",
            true,
            Kind::SlowWarmup,
        ),
    ]
}

/// Information per canary request (nats) that tells a canary erring at
/// `p1` from one at `p0` when both rates are known: the KL divergence the
/// oracle SPRT accumulates.
fn information(p1: f64, p0: f64) -> f64 {
    p1 * (p1 / p0).ln() + (1.0 - p1) * ((1.0 - p1) / (1.0 - p0)).ln()
}

/// Log-uniform draw: traffic and error rates span orders of magnitude.
fn log_uniform<R: Rng>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    (rng.random_range(lo.ln()..hi.ln())).exp()
}

impl Family {
    /// Draws one scenario of this family.
    pub fn sample<R: Rng>(&self, rng: &mut R) -> Scenario {
        let mut s = Scenario {
            duration: 1800.0,
            rps: log_uniform(rng, 30.0, 3000.0),
            canary_weight: log_uniform(rng, 0.05, 0.5),
            base_error: log_uniform(rng, 0.0005, 0.02),
            error_ratio: 1.0,
            latency_median_ms: log_uniform(rng, 20.0, 300.0),
            latency_sigma: rng.random_range(0.3..1.0),
            latency_ratio: 1.0,
            onset: 0.0,
            burst_shape: None,
            incident: None,
            cold_start: None,
        };
        match self.kind {
            Kind::AaHigh => s.rps = log_uniform(rng, 300.0, 3000.0),
            Kind::AaMedium => s.rps = log_uniform(rng, 30.0, 300.0),
            Kind::AaVeryLow => s.rps = log_uniform(rng, 0.1, 2.0),
            Kind::Bursty => s.burst_shape = Some(rng.random_range(0.2..1.0)),
            Kind::SharedIncident => {
                s.incident = Some(Incident {
                    start: rng.random_range(120.0..900.0),
                    duration: rng.random_range(60.0..300.0),
                    error_add: rng.random_range(0.05..0.3),
                    latency_factor: rng.random_range(1.5..4.0),
                });
            }
            Kind::ColdStart => {
                s.cold_start = Some(ColdStart {
                    error_factor: rng.random_range(2.0..5.0),
                    latency_factor: rng.random_range(1.5..3.0),
                    tau: rng.random_range(3.0..10.0),
                });
            }
            Kind::SlowWarmup => {
                // Settled to within 1 % of its excess after `settle`.
                let settle = rng.random_range(60.0..300.0);
                s.cold_start = Some(ColdStart {
                    error_factor: rng.random_range(2.0..5.0),
                    latency_factor: rng.random_range(2.0..5.0),
                    tau: settle / 100.0f64.ln(),
                });
            }
            Kind::AtTolerance => {
                // The hardest healthy canary: as bad as the defaults allow
                // (error tolerance 0.2, latency tolerance 0.1), with plenty
                // of traffic so every look has something to see.
                s.error_ratio = 1.2;
                s.latency_ratio = 1.1;
                s.rps = log_uniform(rng, 300.0, 3000.0);
                s.base_error = log_uniform(rng, 0.003, 0.03);
                s.canary_weight = log_uniform(rng, 0.1, 0.5);
            }
            Kind::Errors(tenths) => {
                let ratio = f64::from(tenths) / 10.0;
                s.error_ratio = ratio;
                // Enough errors per second that a 30-minute rollout can tell.
                let (lo, hi) = match tenths {
                    0..=15 => (0.01, 0.03),
                    16..=20 => (0.003, 0.02),
                    21..=50 => (0.001, 0.01),
                    _ => (0.0002, 0.005),
                };
                s.base_error = log_uniform(rng, lo, hi);
                s.rps = log_uniform(rng, if tenths <= 15 { 500.0 } else { 100.0 }, 3000.0);
                s.canary_weight = log_uniform(rng, 0.1, 0.5);
            }
            Kind::LateOnset => {
                s.error_ratio = 3.0;
                s.onset = rng.random_range(600.0..1200.0);
                s.base_error = log_uniform(rng, 0.002, 0.02);
                s.rps = log_uniform(rng, 100.0, 3000.0);
                s.canary_weight = log_uniform(rng, 0.1, 0.5);
            }
            Kind::Latency(tenths) => {
                s.latency_ratio = f64::from(tenths) / 10.0;
                s.rps = log_uniform(rng, 30.0, 3000.0);
            }
            Kind::Rare(tenths) => {
                s.base_error = log_uniform(rng, 0.0001, 0.01);
                s.error_ratio = f64::from(tenths) / 10.0;
                // Real canaries take a small share; above a quarter the
                // baseline's rate is learnt from as little data as the
                // canary's, which no test that conditions on it can beat.
                s.canary_weight = log_uniform(rng, 0.05, 0.25);
                // Traffic such that the oracle told a regression of this
                // size (healthy families: of a size drawn like theirs)
                // needs 1-5 minutes on average: rare errors need volume
                // to be seen at all, and a family the oracle cannot
                // settle in 30 minutes would measure physics, not judges.
                let ratio = if tenths > 12 {
                    s.error_ratio
                } else {
                    rng.random_range(1.5..3.0)
                };
                let p0 = 1.2 * s.base_error;
                let per_request = information(ratio * s.base_error, p0);
                let oracle_s = log_uniform(rng, 60.0, 300.0);
                let canary_rps = (100.0f64).ln() / (per_request * oracle_s);
                s.rps = canary_rps / s.canary_weight;
            }
            Kind::RareExample => {
                s.base_error = 0.001;
                s.error_ratio = 2.0;
                s.canary_weight = 0.1;
                s.rps = 1000.0;
            }
            Kind::LowTraffic => {
                s.rps = log_uniform(rng, 2.0, 10.0);
                s.canary_weight = log_uniform(rng, 0.2, 0.5);
                s.base_error = log_uniform(rng, 0.005, 0.02);
                s.error_ratio = 10.0;
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Draws `n` scenarios of `name` and checks a property of each.
    fn check(name: &str, property: impl Fn(&Scenario) -> bool) {
        let family = families()
            .into_iter()
            .find(|f| f.name == name)
            .expect("family exists");
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..200 {
            let s = family.sample(&mut rng);
            assert!(
                s.rps > 0.0 && (0.0..1.0).contains(&s.canary_weight),
                "{name}: {s:?}"
            );
            assert!(property(&s), "{name}: {s:?}");
        }
    }

    #[test]
    fn families_draw_what_they_promise() {
        check("aa-very-low", |s| {
            s.rps <= 2.0 && s.error_ratio == 1.0 && s.latency_ratio == 1.0
        });
        check("aa-high", |s| s.rps >= 300.0);
        check("bursty", |s| s.burst_shape.is_some());
        check("shared-incident", |s| {
            s.incident
                .as_ref()
                .is_some_and(|i| i.start + i.duration < s.duration)
        });
        check("cold-start", |s| {
            s.cold_start.as_ref().is_some_and(|c| c.tau <= 10.0)
        });
        check("at-tolerance", |s| {
            s.error_ratio == 1.2 && s.latency_ratio == 1.1
        });
        check("errors-50x", |s| {
            s.error_ratio == 50.0 && s.base_error * 50.0 <= 0.25
        });
        check("late-onset", |s| (600.0..1200.0).contains(&s.onset));
        check("latency-1.3x", |s| {
            s.latency_ratio == 1.3 && s.error_ratio == 1.0
        });
        check("low-traffic", |s| s.rps <= 10.0 && s.error_ratio == 10.0);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = families().iter().map(|f| f.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before);
    }
}
