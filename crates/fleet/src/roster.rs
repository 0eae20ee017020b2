//! The control plane's view of its proxies, pure: who is connected, which
//! generation each serves, what each reports about the pools, and every
//! proxy's windows merged into one per version and second.
//!
//! Time is an argument (`now_ms`, the control plane's wall clock), so the
//! rules — when a proxy lags, when its report is too old to count, how
//! skewed clocks are lined up — are tested on plain numbers.

use std::collections::BTreeMap;

use backout_spec::EndpointUrl;
use serde::Serialize;

use crate::message::{BreakerState, FromProxy, Hello, PoolReport, Report};
use crate::window::{self, WINDOW_MS, WindowView};

/// A report older than this no longer describes the proxy's pools (a
/// connected proxy reports several times a second).
pub const STALE_MS: i64 = 3_000;
/// Windows are kept this long, as long as the proxies keep theirs.
pub const KEEP_WINDOWS_MS: i64 = 15 * 60 * 1000;
/// A proxy that left is still listed (as disconnected) this long.
pub const FORGET_MS: i64 = 60 * 60 * 1000;

/// Every proxy the control plane has heard from, by name.
#[derive(Debug, Default, Clone)]
pub struct Roster {
    members: BTreeMap<String, Member>,
}

#[derive(Debug, Clone)]
struct Member {
    /// The connection it speaks on now; messages of a replaced connection
    /// are ignored.
    session: u64,
    address: String,
    listen: Vec<String>,
    connected: bool,
    connected_ms: i64,
    last_contact_ms: i64,
    services: BTreeMap<String, Follow>,
}

/// One proxy's state of one service.
#[derive(Debug, Clone, Default)]
struct Follow {
    applied: u64,
    applied_ms: i64,
    nack: Option<Nack>,
    health: Option<Health>,
    /// The control plane's clock minus the proxy's, from its last report.
    skew_ms: i64,
    /// Complete windows by version and start (on the control plane's clock).
    windows: BTreeMap<String, BTreeMap<i64, WindowView>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nack {
    pub generation: u64,
    pub reason: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone)]
struct Health {
    at_ms: i64,
    canary_fallback: bool,
    pools: Vec<PoolReport>,
}

/// How far the fleet got with one generation of a service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Connected proxies serving this generation or a later one.
    pub acked: Vec<String>,
    /// Connected proxies still behind.
    pub pending: Vec<String>,
    /// Connected proxies that refused it, with their reasons.
    pub nacked: Vec<(String, String)>,
    /// When the last of `acked` acknowledged (control-plane clock).
    pub last_ack_ms: Option<i64>,
}

impl Progress {
    /// Every connected proxy serves it.
    pub fn complete(&self) -> bool {
        self.pending.is_empty() && self.nacked.is_empty()
    }
}

/// One pool's health over the proxies whose reports are fresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolHealth {
    /// Endpoints that can take traffic, on the proxy that sees the fewest:
    /// a version counts as ready only as far as every proxy can use it.
    /// 0 on a proxy whose breaker for the pool is open.
    pub ready: u32,
    pub total: u32,
    /// Some proxy has the pool's breaker open.
    pub breaker_open: bool,
    /// How many proxies the numbers come from.
    pub reporters: u32,
}

/// One endpoint's health over the proxies whose reports are fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EndpointHealth {
    /// Every reporting proxy can send it traffic.
    pub available: bool,
    /// Every reporting proxy finds it not live: only then is it wedged
    /// (one proxy's failing probe may be that proxy's network).
    pub dead: bool,
    /// Every reporting proxy saw its startup probe fail.
    pub startup_failed: bool,
}

/// A proxy as `backout status` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberView {
    pub name: String,
    pub address: String,
    pub listen: Vec<String>,
    pub connected: bool,
    pub connected_ms: i64,
    pub last_contact_ms: i64,
    /// The generation it serves of the service asked about.
    pub generation: u64,
    pub acked_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nack: Option<Nack>,
    pub clock_skew_ms: i64,
}

fn align(ms: i64) -> i64 {
    let w = WINDOW_MS as i64;
    (ms + w / 2).div_euclid(w) * w
}

impl Roster {
    /// A proxy subscribed for `services`. A proxy of the same name that is
    /// still listed is replaced: it restarted, or its old connection has
    /// not noticed yet that it is gone. Its windows are kept.
    pub fn join(
        &mut self,
        session: u64,
        hello: &Hello,
        address: &str,
        services: &[String],
        now_ms: i64,
    ) {
        let member = self
            .members
            .entry(hello.name.clone())
            .or_insert_with(|| Member {
                session,
                address: String::new(),
                listen: Vec::new(),
                connected: true,
                connected_ms: now_ms,
                last_contact_ms: now_ms,
                services: BTreeMap::new(),
            });
        member.session = session;
        member.address = address.to_string();
        member.listen = hello.listen.clone();
        member.connected = true;
        member.connected_ms = now_ms;
        member.last_contact_ms = now_ms;
        member.services.retain(|s, _| services.contains(s));
        for s in services {
            let follow = member.services.entry(s.clone()).or_default();
            follow.applied = hello.have.get(s).copied().unwrap_or(0);
            follow.applied_ms = now_ms;
            follow.nack = None;
            follow.health = None;
        }
    }

    /// The connection ended. Only the member's current session counts.
    pub fn leave(&mut self, session: u64, now_ms: i64) {
        if let Some(m) = self.members.values_mut().find(|m| m.session == session) {
            m.connected = false;
            m.last_contact_ms = now_ms;
        }
    }

    /// Records a message; returns the service it concerns, if any.
    pub fn receive(&mut self, session: u64, msg: &FromProxy, now_ms: i64) -> Option<String> {
        let member = self
            .members
            .values_mut()
            .find(|m| m.session == session && m.connected)?;
        member.last_contact_ms = now_ms;
        match msg {
            FromProxy::Hello(_) => None,
            FromProxy::Ack {
                service,
                generation,
            } => {
                let f = member.services.get_mut(service)?;
                if *generation >= f.applied {
                    f.applied = *generation;
                    f.applied_ms = now_ms;
                }
                if f.nack.as_ref().is_some_and(|n| n.generation <= *generation) {
                    f.nack = None;
                }
                Some(service.clone())
            }
            FromProxy::Nack {
                service,
                generation,
                reason,
            } => {
                let f = member.services.get_mut(service)?;
                f.nack = Some(Nack {
                    generation: *generation,
                    reason: reason.clone(),
                    at_ms: now_ms,
                });
                Some(service.clone())
            }
            FromProxy::Report(report) => {
                let f = member.services.get_mut(&report.service)?;
                record(f, report, now_ms);
                Some(report.service.clone())
            }
        }
    }

    fn following<'a>(&'a self, service: &'a str) -> impl Iterator<Item = (&'a str, &'a Follow)> {
        self.members
            .iter()
            .filter(|(_, m)| m.connected)
            .filter_map(move |(n, m)| m.services.get(service).map(|f| (n.as_str(), f)))
    }

    /// How far the connected proxies got with `generation`.
    pub fn progress(&self, service: &str, generation: u64) -> Progress {
        let mut p = Progress::default();
        for (name, f) in self.following(service) {
            if f.applied >= generation {
                p.acked.push(name.to_string());
                p.last_ack_ms = Some(p.last_ack_ms.map_or(f.applied_ms, |t| t.max(f.applied_ms)));
            } else if let Some(n) = f.nack.as_ref().filter(|n| n.generation >= generation) {
                p.nacked.push((name.to_string(), n.reason.clone()));
            } else {
                p.pending.push(name.to_string());
            }
        }
        p
    }

    /// How many connected proxies follow the service.
    pub fn followers(&self, service: &str) -> usize {
        self.following(service).count()
    }

    fn fresh<'a>(&'a self, service: &'a str, now_ms: i64) -> impl Iterator<Item = &'a Health> + 'a {
        self.following(service)
            .filter_map(|(_, f)| f.health.as_ref())
            .filter(move |h| now_ms - h.at_ms <= STALE_MS)
    }

    /// A pool's health over the fresh reports; `None` when no proxy
    /// reports it.
    pub fn pool(&self, service: &str, version: &str, now_ms: i64) -> Option<PoolHealth> {
        let mut out: Option<PoolHealth> = None;
        for h in self.fresh(service, now_ms) {
            let Some(p) = h.pools.iter().find(|p| p.version == version) else {
                continue;
            };
            let open = p.breaker == BreakerState::Open;
            let ready = if open {
                0
            } else {
                p.endpoints.iter().filter(|e| e.available).count() as u32
            };
            let total = p.endpoints.len() as u32;
            out = Some(match out {
                None => PoolHealth {
                    ready,
                    total,
                    breaker_open: open,
                    reporters: 1,
                },
                Some(o) => PoolHealth {
                    ready: o.ready.min(ready),
                    total: o.total.max(total),
                    breaker_open: o.breaker_open || open,
                    reporters: o.reporters + 1,
                },
            });
        }
        out
    }

    /// One endpoint's health over the fresh reports that list it.
    pub fn endpoint(
        &self,
        service: &str,
        version: &str,
        url: &EndpointUrl,
        now_ms: i64,
    ) -> Option<EndpointHealth> {
        let mut out: Option<EndpointHealth> = None;
        for h in self.fresh(service, now_ms) {
            let Some(e) = h
                .pools
                .iter()
                .find(|p| p.version == version)
                .and_then(|p| p.endpoints.iter().find(|e| e.url == *url))
            else {
                continue;
            };
            let this = EndpointHealth {
                available: e.available,
                dead: !e.live,
                startup_failed: e.startup_failed,
            };
            out = Some(match out {
                None => this,
                Some(o) => EndpointHealth {
                    available: o.available && this.available,
                    dead: o.dead && this.dead,
                    startup_failed: o.startup_failed && this.startup_failed,
                },
            });
        }
        out
    }

    /// Whether some proxy sends canary traffic to stable because the
    /// canary cannot take it.
    pub fn canary_fallback(&self, service: &str, now_ms: i64) -> bool {
        self.fresh(service, now_ms).any(|h| h.canary_fallback)
    }

    /// The pools as the freshest report of the first proxy by name shows
    /// them (for a human's overview; decisions use [`Roster::pool`]).
    pub fn sample_pools(&self, service: &str, now_ms: i64) -> Vec<PoolReport> {
        self.fresh(service, now_ms)
            .next()
            .map(|h| h.pools.clone())
            .unwrap_or_default()
    }

    /// Every proxy's complete windows of `service` with a start in
    /// `[since_ms, until_ms)`, merged per version and second, oldest first.
    pub fn windows(
        &self,
        service: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> BTreeMap<String, Vec<WindowView>> {
        let mut by_version: BTreeMap<&str, BTreeMap<i64, Vec<&WindowView>>> = BTreeMap::new();
        for m in self.members.values() {
            let Some(f) = m.services.get(service) else {
                continue;
            };
            for (version, windows) in &f.windows {
                let slot = by_version.entry(version).or_default();
                for (start, w) in windows.range(since_ms..until_ms) {
                    slot.entry(*start).or_default().push(w);
                }
            }
        }
        by_version
            .into_iter()
            .map(|(version, seconds)| {
                let merged = seconds
                    .into_iter()
                    .map(|(start, parts)| window::merge(start.max(0) as u64, &parts))
                    .collect();
                (version.to_string(), merged)
            })
            .collect()
    }

    /// The proxies that follow `service`, by name, connected or not.
    pub fn members(&self, service: &str) -> Vec<MemberView> {
        self.members
            .iter()
            .filter_map(|(name, m)| {
                let f = m.services.get(service)?;
                Some(MemberView {
                    name: name.clone(),
                    address: m.address.clone(),
                    listen: m.listen.clone(),
                    connected: m.connected,
                    connected_ms: m.connected_ms,
                    last_contact_ms: m.last_contact_ms,
                    generation: f.applied,
                    acked_ms: f.applied_ms,
                    nack: f.nack.clone(),
                    clock_skew_ms: f.skew_ms,
                })
            })
            .collect()
    }

    /// Drops windows older than [`KEEP_WINDOWS_MS`] and proxies gone for
    /// longer than [`FORGET_MS`].
    pub fn prune(&mut self, now_ms: i64) {
        self.members
            .retain(|_, m| m.connected || now_ms - m.last_contact_ms < FORGET_MS);
        for m in self.members.values_mut() {
            for f in m.services.values_mut() {
                for w in f.windows.values_mut() {
                    *w = w.split_off(&(now_ms - KEEP_WINDOWS_MS));
                }
                f.windows.retain(|_, w| !w.is_empty());
            }
        }
    }
}

fn record(f: &mut Follow, report: &Report, now_ms: i64) {
    f.skew_ms = now_ms - i64::try_from(report.now_ms).unwrap_or(now_ms);
    for pool in &report.pools {
        let windows = f.windows.entry(pool.version.clone()).or_default();
        for w in pool.windows.iter().filter(|w| w.complete) {
            let start = align(i64::try_from(w.start_ms).unwrap_or(0) + f.skew_ms);
            windows.insert(start, w.clone());
        }
    }
    let pools = report
        .pools
        .iter()
        .map(|p| PoolReport {
            windows: Vec::new(),
            ..p.clone()
        })
        .collect();
    f.health = Some(Health {
        at_ms: now_ms,
        canary_fallback: report.canary_fallback,
        pools,
    });
}

#[cfg(test)]
mod tests;
