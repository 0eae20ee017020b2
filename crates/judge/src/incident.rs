//! Is the baseline in trouble of its own?

use crate::config::IncidentConfig;
use crate::recent::Recent;
use crate::window::GroupWindow;
use serde::{Deserialize, Serialize};

/// Minimum recent baseline requests before the detector says anything.
const MIN_RECENT_REQUESTS: u64 = 50;
/// Minimum earlier baseline requests to compare with.
const MIN_REFERENCE_REQUESTS: u64 = 200;

/// Watches the baseline against its own past.
///
/// When the stable version, which did not change, suddenly fails or slows
/// down, the cause is shared (a dependency, the network, load), and a canary
/// failing at the same time is not to blame. The reference level is built
/// only from ticks that have left the recent window and were not themselves
/// part of an incident, so a long incident never becomes the new normal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncidentDetector {
    config: IncidentConfig,
    recent: Recent<Tick>,
    reference: Tick,
    active: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Tick {
    requests: u64,
    errors: u64,
    log_latency_sum: f64,
    latency_n: u64,
    during_incident: bool,
}

impl Tick {
    fn add(&mut self, o: &Tick) {
        self.requests = self.requests.saturating_add(o.requests);
        self.errors = self.errors.saturating_add(o.errors);
        self.log_latency_sum += o.log_latency_sum;
        self.latency_n = self.latency_n.saturating_add(o.latency_n);
    }
}

impl IncidentDetector {
    /// A detector with no history.
    pub fn new(config: IncidentConfig) -> Self {
        let span = config.window.get();
        IncidentDetector {
            config,
            recent: Recent::new(span),
            reference: Tick::default(),
            active: false,
        }
    }

    /// Whether the baseline was in an incident as of the last update.
    pub fn active(&self) -> bool {
        self.active
    }

    /// Adds the baseline's window of tick `t` and re-evaluates.
    pub fn update(&mut self, t: f64, baseline: &GroupWindow) {
        if !self.config.enabled {
            return;
        }
        let mut tick = Tick {
            requests: baseline.requests,
            errors: baseline.errors_clamped(),
            during_incident: self.active,
            ..Tick::default()
        };
        for v in baseline.latencies() {
            tick.log_latency_sum += v.max(1e-3).ln();
            tick.latency_n += 1;
        }
        let reference = &mut self.reference;
        self.recent.push_with(t, tick, |gone| {
            if !gone.during_incident {
                reference.add(&gone);
            }
        });
        let mut now = Tick::default();
        for r in self.recent.values() {
            now.add(r);
        }
        let c = &self.config;
        let errors_up = now.requests >= MIN_RECENT_REQUESTS
            && self.reference.requests >= MIN_REFERENCE_REQUESTS
            && {
                let recent_rate = now.errors as f64 / now.requests as f64;
                let ref_rate = self.reference.errors as f64 / self.reference.requests as f64;
                recent_rate >= c.factor * ref_rate && recent_rate - ref_rate >= c.min_increase
            };
        let slower = now.latency_n >= MIN_RECENT_REQUESTS
            && self.reference.latency_n >= MIN_REFERENCE_REQUESTS
            && {
                let recent = now.log_latency_sum / now.latency_n as f64;
                let earlier = self.reference.log_latency_sum / self.reference.latency_n as f64;
                recent - earlier > c.latency_factor.ln()
            };
        self.active = errors_up || slower;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `healthy` ticks of 100 requests at 1 % errors and 50 ms, then
    /// `bad` ticks at `rate` errors and `latency` ms; returns the flag.
    fn check(healthy: u32, bad: u32, rate: f64, latency: f64, expected: bool) {
        let mut d = IncidentDetector::new(IncidentConfig::default());
        let mut t = 0.0;
        for (n, r, l) in [(healthy, 0.01, 50.0), (bad, rate, latency)] {
            for _ in 0..n {
                t += 1.0;
                let w = GroupWindow {
                    requests: 100,
                    errors: (100.0 * r) as u64,
                    latency_ms: vec![l; 10],
                    ..GroupWindow::default()
                };
                d.update(t, &w);
            }
        }
        assert_eq!(
            d.active(),
            expected,
            "{healthy} healthy, {bad} at {rate}/{latency} ms"
        );
    }

    #[test]
    fn flags_baseline_trouble() {
        check(100, 0, 0.0, 0.0, false);
        check(100, 10, 0.01, 50.0, false);
        check(100, 10, 0.2, 50.0, true);
        check(100, 10, 0.02, 50.0, false);
        check(100, 20, 0.01, 150.0, true);
        check(100, 10, 0.01, 60.0, false);
        // No history to compare with: no incident can be claimed.
        check(0, 100, 0.5, 500.0, false);
        // A long incident does not become the reference.
        check(100, 600, 0.2, 50.0, true);
    }
}
