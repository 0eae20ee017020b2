//! Watches every pool's availability: updates gauges, and records an event
//! when a pool loses its last available endpoint or gets one back (probe
//! changes and ejections are instant; ejections also end by the clock, so
//! this looks a few times a second).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock;
use crate::events::{EventKind, EventLog};
use crate::registry::Registry;

pub(crate) async fn watch_pools(
    registry: Arc<Registry>,
    events: Arc<EventLog>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last: HashMap<(String, String), bool> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = clock::mono_ms();
        let services = registry.all();
        for service in services.values() {
            let route = service.route();
            for pool in service.pools() {
                let count = pool.available_count(now);
                pool.available_gauge.set(count as i64);
                let available = count > 0;
                let key = (service.name.clone(), pool.name.clone());
                // The first look only sets the baseline: at start-up probes
                // have not run yet, and "not ready before the first probe"
                // is not news. The status API shows the state all along.
                let previous = last.insert(key, available);
                if previous.is_none_or(|p| p == available) {
                    continue;
                }
                let effect = if available {
                    "traffic flows to this version again".to_string()
                } else if route.canary.as_ref().is_some_and(|c| Arc::ptr_eq(c, &pool)) {
                    "canary traffic goes to stable".to_string()
                } else if route.stable.as_ref().is_some_and(|s| Arc::ptr_eq(s, &pool)) {
                    "stable has no endpoint that can take traffic: requests fail with 503"
                        .to_string()
                } else {
                    "the route does not use this version".to_string()
                };
                tracing::warn!(service = %service.name, version = %pool.name, available, %effect, "pool availability changed");
                events.push(
                    &service.name,
                    EventKind::PoolAvailability {
                        version: pool.name.clone(),
                        available,
                        effect,
                    },
                );
            }
        }
    }
}
