//! The services a proxy serves. A proxy that follows a control plane
//! learns them at run time, so the set can change: each listener's
//! [`ServiceIndex`] is swapped whole, and a connection looks it up once
//! per request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use backout_spec::ServiceSpec;

use crate::ProxyError;
use crate::events::EventLog;
use crate::metrics::Metrics;
use crate::prober::Prober;
use crate::router::ServiceIndex;
use crate::service::Service;

/// The service index of one listener, shared by its workers.
pub type SharedIndex = Arc<ArcSwap<ServiceIndex>>;

#[derive(Debug)]
pub struct Registry {
    services: ArcSwap<BTreeMap<String, Arc<Service>>>,
    /// By the address the listener was asked for.
    listeners: BTreeMap<SocketAddr, SharedIndex>,
    /// Where services without `listen:` go.
    default_listen: Option<SocketAddr>,
    /// Serialises changes, so two of them cannot lose each other's
    /// service.
    writer: Mutex<()>,
    metrics: Arc<Metrics>,
    events: Arc<EventLog>,
    workers: usize,
    prober: Prober,
}

impl Registry {
    pub(crate) fn new(
        listeners: BTreeMap<SocketAddr, SharedIndex>,
        default_listen: Option<SocketAddr>,
        metrics: Arc<Metrics>,
        events: Arc<EventLog>,
        workers: usize,
        prober: Prober,
    ) -> Self {
        Registry {
            services: ArcSwap::from_pointee(BTreeMap::new()),
            listeners,
            default_listen,
            writer: Mutex::new(()),
            metrics,
            events,
            workers,
            prober,
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Service>> {
        self.services.load().get(name).cloned()
    }

    /// Every service, by name.
    pub fn all(&self) -> Arc<BTreeMap<String, Arc<Service>>> {
        self.services.load_full()
    }

    pub fn names(&self) -> Vec<String> {
        self.services.load().keys().cloned().collect()
    }

    /// The listener address a service goes on.
    fn place(&self, spec: &ServiceSpec) -> Result<SocketAddr, ProxyError> {
        let addr = spec
            .listen
            .or(self.default_listen)
            .ok_or_else(|| ProxyError::NoListener(spec.name.clone()))?;
        if self.listeners.contains_key(&addr) {
            Ok(addr)
        } else {
            Err(ProxyError::NoListener(spec.name.clone()))
        }
    }

    /// Adds a service, or replaces the one of the same name (whose pools
    /// stop probing; requests already routed to them finish). The new
    /// service's probes start at once.
    pub fn insert(&self, spec: ServiceSpec) -> Result<Arc<Service>, ProxyError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let addr = self.place(&spec)?;
        let current = self.services.load_full();
        let placed = |s: &Service| self.place(&s.spec).ok();
        if let Some(other) = current.values().find(|o| {
            o.name != spec.name
                && placed(o) == Some(addr)
                && o.spec.hosts == spec.hosts
                && o.spec.path_prefix == spec.path_prefix
        }) {
            return Err(ProxyError::Ambiguous {
                addr,
                first: other.name.clone(),
                second: spec.name.clone(),
            });
        }
        let name = spec.name.clone();
        let service = Service::new(
            spec,
            Arc::clone(&self.metrics),
            Arc::clone(&self.events),
            self.workers,
            self.prober.clone(),
        )
        .map_err(|e| match e {
            crate::service::BuildError::Route(source) => ProxyError::Route {
                service: name.clone(),
                source,
            },
            crate::service::BuildError::Tls(message) => ProxyError::Tls {
                service: name.clone(),
                message,
            },
        })?;
        let service = Arc::new(service);
        let mut next = (*current).clone();
        let old = next.insert(name, Arc::clone(&service));
        self.services.store(Arc::new(next));
        self.reindex();
        service.start_probes();
        if let Some(old) = old {
            old.retire();
        }
        Ok(service)
    }

    /// Removes a service; `None` if there was none.
    pub fn remove(&self, name: &str) -> Option<Arc<Service>> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = (*self.services.load_full()).clone();
        let old = next.remove(name)?;
        self.services.store(Arc::new(next));
        self.reindex();
        old.retire();
        Some(old)
    }

    /// Rebuilds every listener's index from the services. Callers hold
    /// the writer lock.
    fn reindex(&self) {
        let services = self.services.load();
        for (addr, index) in &self.listeners {
            let here: Vec<Arc<Service>> = services
                .values()
                .filter(|s| self.place(&s.spec).ok() == Some(*addr))
                .cloned()
                .collect();
            index.store(Arc::new(ServiceIndex::new(here)));
        }
    }
}
