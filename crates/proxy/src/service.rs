//! A service at run time: its pools and the route between them, held in
//! one atomically swapped pointer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use backout_routing::{RouteError, RouteSpec, RouteTable, StickyKey, Target};
use backout_spec::ServiceSpec;
use http::HeaderName;
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::events::{EventKind, EventLog};
use crate::metrics::Metrics;
use crate::pool::{Pool, PoolContext, PoolStatus};
use crate::window::WindowView;

/// The route in force, with its pools resolved, so a request needs one
/// atomic load to know everything about where it goes.
#[derive(Debug)]
pub struct ActiveRoute {
    pub table: RouteTable,
    pub stable: Arc<Pool>,
    pub canary: Option<Arc<Pool>>,
    pub generation: u64,
    pub applied_at_unix_us: u64,
}

impl ActiveRoute {
    pub fn pool(&self, target: Target) -> &Arc<Pool> {
        match (target, &self.canary) {
            (Target::Canary, Some(c)) => c,
            _ => &self.stable,
        }
    }
}

/// What a route change reports back.
#[derive(Debug, Clone, Serialize)]
pub struct RouteApplied {
    pub service: String,
    pub route: RouteSpec,
    pub generation: u64,
    /// Wall-clock microseconds at which new requests started seeing the
    /// new table.
    pub applied_at_unix_us: u64,
    /// How long the pointer swap itself took.
    pub swap_ns: u64,
}

#[derive(Debug)]
pub struct Service {
    pub name: String,
    pub spec: ServiceSpec,
    pub pools: BTreeMap<String, Arc<Pool>>,
    route: ArcSwap<ActiveRoute>,
    /// Serialises writers so generations are handed out in swap order.
    switch: Mutex<()>,
    pub(crate) sticky: Option<StickyKey>,
    pub(crate) version_header: Option<HeaderName>,
    pub(crate) events: Arc<EventLog>,
    pub(crate) fallback: prometheus::IntCounter,
    canary_weight_gauge: prometheus::Gauge,
    generation_gauge: prometheus::IntGauge,
}

/// Service state for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub hosts: Vec<String>,
    pub path_prefix: Option<String>,
    pub route: RouteSpec,
    pub generation: u64,
    pub applied_at_unix_us: u64,
    /// The canary has traffic assigned but no endpoint that can take it, so
    /// that traffic goes to stable.
    pub canary_fallback: bool,
    pub pools: Vec<PoolStatus>,
}

/// The part a version plays in the current route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Stable,
    Canary,
    /// A pool the route does not use.
    Idle,
}

/// The windows of every version, for the judge. This is the wire format of
/// `GET /admin/v1/services/{name}/windows`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowsReport {
    pub service: String,
    pub now_ms: u64,
    pub window_ms: u64,
    pub route: RouteSpec,
    pub generation: u64,
    pub versions: Vec<VersionWindows>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionWindows {
    pub version: String,
    pub role: Role,
    /// Endpoints that can take traffic now, out of how many.
    pub available_endpoints: usize,
    pub endpoints: usize,
    /// The circuit breaker's state now.
    pub breaker: crate::breaker::BreakerState,
    pub windows: Vec<WindowView>,
}

impl Service {
    pub fn new(
        spec: ServiceSpec,
        metrics: &Metrics,
        events: Arc<EventLog>,
        workers: usize,
    ) -> Result<Self, RouteError> {
        let now = clock::mono_ms();
        let pools: BTreeMap<String, Arc<Pool>> = spec
            .pools
            .iter()
            .map(|(name, p)| {
                let ctx = PoolContext {
                    service: &spec.name,
                    timeouts: &spec.timeouts,
                    metrics,
                    events: &events,
                    workers,
                    now_ms: now,
                };
                let pool = Pool::new(ctx, name, p.clone());
                (name.clone(), Arc::new(pool))
            })
            .collect();
        let names: Vec<&str> = pools.keys().map(String::as_str).collect();
        let table = RouteTable::compile(spec.route.clone(), &names)?;
        let route = resolve(table, &pools, 1, clock::unix_us());
        let service = Service {
            name: spec.name.clone(),
            sticky: spec.sticky.clone(),
            version_header: spec
                .version_header
                .as_deref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            pools,
            route: ArcSwap::from_pointee(route),
            switch: Mutex::new(()),
            events,
            fallback: metrics.canary_fallback.with_label_values(&[&spec.name]),
            canary_weight_gauge: metrics.canary_weight(&spec.name),
            generation_gauge: metrics.route_generation.with_label_values(&[&spec.name]),
            spec,
        };
        service.publish_gauges(&service.route.load());
        Ok(service)
    }

    /// The route in force now.
    pub fn route(&self) -> Arc<ActiveRoute> {
        self.route.load_full()
    }

    /// Cheap access for the request path (no reference-count traffic).
    pub(crate) fn route_guard(&self) -> arc_swap::Guard<Arc<ActiveRoute>> {
        self.route.load()
    }

    /// Installs a new route. Requests already routed keep their pool; every
    /// request routed after this returns sees the new table.
    pub fn set_route(&self, spec: RouteSpec, source: &str) -> Result<RouteApplied, RouteError> {
        let names: Vec<&str> = self.pools.keys().map(String::as_str).collect();
        let table = RouteTable::compile(spec, &names)?;
        Ok(self.install(table, source))
    }

    /// Break-glass: canary to 0% and match rules cleared, in one swap.
    pub fn rollback(&self, source: &str) -> RouteApplied {
        let table = self.route.load().table.rolled_back();
        self.install(table, source)
    }

    fn install(&self, table: RouteTable, source: &str) -> RouteApplied {
        let _writer = self.switch.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.route.load().generation + 1;
        let mut route = resolve(table, &self.pools, generation, 0);
        let started = clock::instant();
        route.applied_at_unix_us = clock::unix_us();
        let route = Arc::new(route);
        self.route.store(Arc::clone(&route));
        let swap_ns = started.elapsed().as_nanos() as u64;
        self.publish_gauges(&route);
        let spec = route.table.spec().clone();
        tracing::info!(service = %self.name, generation, stable = %spec.stable, canary = ?spec.canary, weight = %spec.canary_weight, source, "route switched");
        self.events.push(
            &self.name,
            EventKind::RouteChanged {
                generation,
                stable: spec.stable.clone(),
                canary: spec.canary.clone(),
                canary_weight: spec.canary_weight.as_percent(),
                rules: spec.rules.len(),
                source: source.to_string(),
                applied_at_unix_us: route.applied_at_unix_us,
            },
        );
        RouteApplied {
            service: self.name.clone(),
            route: spec,
            generation,
            applied_at_unix_us: route.applied_at_unix_us,
            swap_ns,
        }
    }

    fn publish_gauges(&self, route: &ActiveRoute) {
        self.canary_weight_gauge
            .set(f64::from(route.table.canary_weight().get()) / 1000.0);
        self.generation_gauge.set(route.generation as i64);
    }

    /// Whether canary traffic currently falls back to stable.
    pub fn canary_fallback(&self, now_ms: u64) -> bool {
        let route = self.route.load();
        match &route.canary {
            Some(c)
                if route.table.canary_weight().get() > 0
                    || !route.table.spec().rules.is_empty() =>
            {
                !c.has_available(now_ms) || c.breaker_open(now_ms)
            }
            _ => false,
        }
    }

    pub fn status(&self) -> ServiceStatus {
        let now = clock::mono_ms();
        let route = self.route.load();
        ServiceStatus {
            name: self.name.clone(),
            hosts: self.spec.hosts.clone(),
            path_prefix: self.spec.path_prefix.clone(),
            route: route.table.spec().clone(),
            generation: route.generation,
            applied_at_unix_us: route.applied_at_unix_us,
            canary_fallback: self.canary_fallback(now),
            pools: self.pools.values().map(|p| p.status(now)).collect(),
        }
    }

    pub fn windows(&self, since_ms: u64) -> WindowsReport {
        let now = clock::unix_ms();
        let mono = clock::mono_ms();
        let route = self.route.load();
        let role = |name: &str| {
            if route.table.stable() == name {
                Role::Stable
            } else if route.table.canary() == Some(name) {
                Role::Canary
            } else {
                Role::Idle
            }
        };
        WindowsReport {
            service: self.name.clone(),
            now_ms: now,
            window_ms: crate::window::WINDOW_MS,
            route: route.table.spec().clone(),
            generation: route.generation,
            versions: self
                .pools
                .values()
                .map(|p| VersionWindows {
                    version: p.name.clone(),
                    role: role(&p.name),
                    available_endpoints: p.available_count(mono),
                    endpoints: p.endpoints.len(),
                    breaker: p.breaker_state(),
                    windows: p.metrics.windows(since_ms, now),
                })
                .collect(),
        }
    }
}

fn resolve(
    table: RouteTable,
    pools: &BTreeMap<String, Arc<Pool>>,
    generation: u64,
    applied_at_unix_us: u64,
) -> ActiveRoute {
    // `RouteTable::compile` checked the names against these very pools.
    let stable = Arc::clone(&pools[table.stable()]);
    let canary = table.canary().and_then(|c| pools.get(c)).cloned();
    ActiveRoute {
        table,
        stable,
        canary,
        generation,
        applied_at_unix_us,
    }
}
