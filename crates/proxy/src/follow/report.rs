//! What a proxy tells the control plane about a service: each pool's
//! health now and the one-second windows completed since it last told.

use std::collections::BTreeMap;

use backout_fleet::{EndpointReport, PoolReport, Report};

use crate::clock;
use crate::service::Service;

/// After a reconnect the proxy sends this much of its past again: the
/// control plane may have missed it, and it keeps one window per second
/// and proxy, so what it already had counts once.
pub const RESEND_MS: u64 = 60_000;

/// The windows already sent on this connection, per service and version.
#[derive(Debug, Default)]
pub struct Sent {
    /// Start of the newest window sent.
    upto: BTreeMap<(String, String), u64>,
    /// When the last report of each service went out (monotonic ms).
    at: BTreeMap<String, u64>,
    /// The health part of the last report, to send only changes early.
    health: BTreeMap<String, Vec<PoolReport>>,
}

/// How often a report goes out even when nothing changed, so the control
/// plane's view stays fresh (it counts a report older than 3 s as stale).
const HEARTBEAT_MS: u64 = 1_000;

impl Sent {
    /// The report to send about `service` now, or `None` when there is
    /// nothing new and the last one is recent.
    pub fn next(&mut self, service: &Service, generation: u64) -> Option<Report> {
        let now = clock::unix_ms();
        let mono = clock::mono_ms();
        let mut pools = Vec::new();
        let mut new_windows = false;
        for pool in service.pools() {
            let key = (service.name.clone(), pool.name.clone());
            let since = self
                .upto
                .get(&key)
                .map_or(now.saturating_sub(RESEND_MS), |u| u + 1);
            let windows: Vec<_> = pool
                .metrics
                .windows(since, now)
                .into_iter()
                .filter(|w| w.complete)
                .collect();
            if let Some(last) = windows.last() {
                self.upto.insert(key, last.start_ms);
                new_windows = true;
            }
            let endpoints = pool
                .endpoints()
                .iter()
                .map(|e| {
                    let st = e.status(mono);
                    EndpointReport {
                        url: e.url.clone(),
                        available: st.available,
                        live: st.live,
                        startup_failed: st.startup_failed,
                    }
                })
                .collect();
            pools.push(PoolReport {
                version: pool.name.clone(),
                breaker: pool.breaker_state(),
                endpoints,
                in_flight: pool.in_flight(),
                windows,
            });
        }
        let health: Vec<PoolReport> = pools
            .iter()
            .map(|p| PoolReport {
                windows: Vec::new(),
                in_flight: 0,
                ..p.clone()
            })
            .collect();
        let changed = self.health.get(&service.name) != Some(&health);
        let due = self
            .at
            .get(&service.name)
            .is_none_or(|at| mono.saturating_sub(*at) >= HEARTBEAT_MS);
        if !(new_windows || changed || due) {
            return None;
        }
        self.health.insert(service.name.clone(), health);
        self.at.insert(service.name.clone(), mono);
        Some(Report {
            service: service.name.clone(),
            generation,
            now_ms: now,
            canary_fallback: service.canary_fallback(mono),
            pools,
        })
    }
}
