//! What the proxies should serve, from what the controller knows: the
//! service's settings, a pool per version that runs and is wanted, and
//! the desired route — as far as the pools it names exist. Pure.
//!
//! Make-before-break: a route never names a pool the same snapshot lacks,
//! and a pool the previous route used stays until a route without it has
//! been published.

use std::collections::BTreeMap;

use backout_fleet::{Config, PoolSnapshot, ServiceSettings};
use backout_rollout::{DesiredRoute, ServiceState};
use backout_spec::{EndpointUrl, PoolSpec, ServiceSpec};

use backout_driver::Instance;

/// The composed configuration, and whether its route is the state's
/// desired one (its acknowledgement then completes a route change).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Composed {
    pub config: Config,
    pub desired: Option<DesiredRoute>,
}

/// `ready(version, endpoint)` says whether the fleet finds an endpoint
/// ready (`None`: nobody reported it, so the previous snapshot's word
/// stands).
pub(super) fn compose(
    spec: &ServiceSpec,
    state: &ServiceState,
    running: &BTreeMap<String, Vec<Instance>>,
    previous: Option<&Config>,
    ready: impl Fn(&str, &EndpointUrl) -> Option<bool>,
) -> Composed {
    let mut pools = BTreeMap::new();
    for (version, instances) in running {
        if !state.instances.contains_key(version) {
            continue;
        }
        let endpoints: Vec<EndpointUrl> = instances.iter().map(|i| i.endpoint.clone()).collect();
        let before = previous.and_then(|p| p.pools.get(version));
        let ready: Vec<EndpointUrl> = endpoints
            .iter()
            .filter(|e| {
                ready(version, e).unwrap_or_else(|| before.is_some_and(|b| b.ready.contains(e)))
            })
            .cloned()
            .collect();
        pools.insert(
            version.clone(),
            PoolSnapshot {
                spec: PoolSpec {
                    endpoints,
                    ..spec.pool_defaults.clone()
                },
                ready,
            },
        );
    }
    let previous_route = previous.and_then(|p| p.route.clone());
    let (route, desired) = match state.desired_route() {
        None => (previous_route, None),
        Some(d) if !pools.contains_key(&d.stable) => (previous_route, None),
        Some(d) => match &d.canary {
            // After a restart the canary may not be back yet: stable takes
            // everything meanwhile, which is always safe.
            Some(c) if !pools.contains_key(c) => {
                (Some(DesiredRoute::stable_only(&d.stable).to_spec()), None)
            }
            _ => (Some(d.to_spec()), Some(d.clone())),
        },
    };
    // Pools a kept route still names stay, from the previous snapshot.
    if let (Some(r), Some(prev)) = (&route, previous) {
        for name in std::iter::once(&r.stable).chain(r.canary.as_ref()) {
            if !pools.contains_key(name)
                && let Some(p) = prev.pools.get(name)
            {
                pools.insert(name.clone(), p.clone());
            }
        }
    }
    // A kept route whose pool is gone from both would not compile: stable
    // alone, or nothing.
    let route = route.and_then(|r| {
        if !pools.contains_key(&r.stable) {
            None
        } else if r.canary.as_ref().is_some_and(|c| !pools.contains_key(c)) {
            Some(DesiredRoute::stable_only(&r.stable).to_spec())
        } else {
            Some(r)
        }
    });
    let desired = desired.filter(|d| route.as_ref() == Some(&d.to_spec()));
    Composed {
        config: Config {
            settings: ServiceSettings::of(spec),
            pools,
            route,
        },
        desired,
    }
}

#[cfg(test)]
mod tests;
