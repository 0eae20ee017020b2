//! Kubernetes probe semantics for one endpoint, as a pure state machine.
//!
//! * startup: until it succeeds once, liveness and readiness are not run and
//!   the endpoint gets no traffic;
//! * liveness: live until `failure_threshold` failures in a row; one
//!   success makes it live again;
//! * readiness: not ready until `success_threshold` successes in a row;
//!   unready after `failure_threshold` failures in a row.
//!
//! An endpoint without a probe of a kind counts as passing it.

use backout_spec::{ProbeSpec, ProbesSpec};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        }
    }
}

/// Consecutive-result counting for one probe.
#[derive(Debug, Clone)]
struct Tracker {
    success_threshold: u32,
    failure_threshold: u32,
    passing: bool,
    successes: u32,
    failures: u32,
}

impl Tracker {
    fn new(spec: &ProbeSpec, initially_passing: bool) -> Self {
        Tracker {
            success_threshold: spec.success_threshold.get(),
            failure_threshold: spec.failure_threshold.get(),
            passing: initially_passing,
            successes: 0,
            failures: 0,
        }
    }

    /// Returns the new verdict if it changed.
    fn observe(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if !self.passing && self.successes >= self.success_threshold {
                self.passing = true;
                return Some(true);
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.passing && self.failures >= self.failure_threshold {
                self.passing = false;
                return Some(false);
            }
        }
        None
    }
}

/// Probe-derived health of one endpoint.
#[derive(Debug, Clone)]
pub struct ProbeHealth {
    startup: Option<Tracker>,
    liveness: Option<Tracker>,
    readiness: Option<Tracker>,
    started: bool,
    /// Startup failed `failure_threshold` times in a row: Kubernetes would
    /// restart the container; we report it and keep probing.
    startup_failed: bool,
}

/// A change worth an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthChange {
    pub kind: ProbeKind,
    pub passing: bool,
}

impl ProbeHealth {
    pub fn new(spec: &ProbesSpec) -> Self {
        ProbeHealth {
            startup: spec.startup.as_ref().map(|s| Tracker::new(s, false)),
            liveness: spec.liveness.as_ref().map(|s| Tracker::new(s, true)),
            readiness: spec.readiness.as_ref().map(|s| Tracker::new(s, false)),
            started: spec.startup.is_none(),
            startup_failed: false,
        }
    }

    /// Health for an endpoint the control plane last saw ready (or not):
    /// started and passing when `ready`, so a proxy that starts from its
    /// state file serves at once; its own probes then take over and fail it
    /// after `failure_threshold` failures like any other endpoint.
    pub fn assumed(spec: &ProbesSpec, ready: bool) -> Self {
        if !ready {
            return Self::new(spec);
        }
        ProbeHealth {
            startup: spec.startup.as_ref().map(|s| Tracker::new(s, true)),
            liveness: spec.liveness.as_ref().map(|s| Tracker::new(s, true)),
            readiness: spec.readiness.as_ref().map(|s| Tracker::new(s, true)),
            started: true,
            startup_failed: false,
        }
    }

    pub fn started(&self) -> bool {
        self.started
    }

    pub fn live(&self) -> bool {
        self.liveness.as_ref().is_none_or(|t| t.passing)
    }

    pub fn ready(&self) -> bool {
        self.readiness.as_ref().is_none_or(|t| t.passing)
    }

    pub fn startup_failed(&self) -> bool {
        self.startup_failed
    }

    /// Whether probes allow traffic to this endpoint.
    pub fn serving(&self) -> bool {
        self.started && self.live() && self.ready()
    }

    /// Whether a probe of this kind should run now: liveness and readiness
    /// wait for startup; startup stops once it has succeeded.
    pub fn should_run(&self, kind: ProbeKind) -> bool {
        match kind {
            ProbeKind::Startup => !self.started,
            ProbeKind::Liveness | ProbeKind::Readiness => self.started,
        }
    }

    /// Records one probe result.
    pub fn observe(&mut self, kind: ProbeKind, ok: bool) -> Option<HealthChange> {
        if !self.should_run(kind) {
            return None;
        }
        let tracker = match kind {
            ProbeKind::Startup => self.startup.as_mut(),
            ProbeKind::Liveness => self.liveness.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
        }?;
        if kind == ProbeKind::Startup {
            if ok {
                self.started = true;
                self.startup_failed = false;
                return Some(HealthChange {
                    kind,
                    passing: true,
                });
            }
            tracker.failures += 1;
            if !self.startup_failed && tracker.failures >= tracker.failure_threshold {
                self.startup_failed = true;
                return Some(HealthChange {
                    kind,
                    passing: false,
                });
            }
            return None;
        }
        tracker
            .observe(ok)
            .map(|passing| HealthChange { kind, passing })
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn probe(success: u32, failure: u32) -> Option<ProbeSpec> {
        Some(ProbeSpec {
            success_threshold: NonZeroU32::new(success).unwrap(),
            failure_threshold: NonZeroU32::new(failure).unwrap(),
            ..ProbeSpec::http("/")
        })
    }

    /// Feeds results and returns `serving` after each.
    fn check(spec: ProbesSpec, results: &[(ProbeKind, bool)], expected: &[bool]) {
        let mut h = ProbeHealth::new(&spec);
        let got: Vec<bool> = results
            .iter()
            .map(|&(k, ok)| {
                h.observe(k, ok);
                h.serving()
            })
            .collect();
        assert_eq!(got, expected, "{results:?}");
    }

    use ProbeKind::{Liveness as L, Readiness as R, Startup as S};

    #[test]
    fn no_probes_means_serving() {
        assert!(ProbeHealth::new(&ProbesSpec::default()).serving());
    }

    #[test]
    fn readiness_thresholds() {
        let spec = ProbesSpec {
            readiness: probe(2, 3),
            ..Default::default()
        };
        check(spec.clone(), &[(R, true), (R, true)], &[false, true]);
        check(
            spec.clone(),
            &[
                (R, true),
                (R, true),
                (R, false),
                (R, false),
                (R, true),
                (R, false),
                (R, false),
                (R, false),
            ],
            &[false, true, true, true, true, true, true, false],
        );
        check(
            spec,
            &[
                (R, true),
                (R, true),
                (R, false),
                (R, false),
                (R, false),
                (R, true),
                (R, true),
            ],
            &[false, true, true, true, false, false, true],
        );
    }

    #[test]
    fn liveness_and_readiness_wait_for_startup() {
        let spec = ProbesSpec {
            startup: probe(1, 3),
            liveness: probe(1, 2),
            readiness: probe(1, 1),
        };
        // Readiness results before startup are ignored.
        check(
            spec.clone(),
            &[(R, true), (S, true), (R, true)],
            &[false, false, true],
        );
        // Liveness failing takes the endpoint out; one success brings it back.
        check(
            spec.clone(),
            &[(S, true), (R, true), (L, false), (L, false), (L, true)],
            &[false, true, true, false, true],
        );
        let mut h = ProbeHealth::new(&spec);
        assert!(h.should_run(S) && !h.should_run(R) && !h.should_run(L));
        assert_eq!(h.observe(S, false), None);
        assert_eq!(h.observe(S, false), None);
        assert_eq!(
            h.observe(S, false),
            Some(HealthChange {
                kind: S,
                passing: false
            })
        );
        assert!(h.startup_failed());
        assert_eq!(
            h.observe(S, true),
            Some(HealthChange {
                kind: S,
                passing: true
            })
        );
        assert!(!h.should_run(S) && h.should_run(R));
    }
}
