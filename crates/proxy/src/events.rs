//! What happened in the data plane, in order: route switches, breaker
//! transitions, probe results that changed health, ejections. Kept in a
//! bounded in-memory log for the admin API and broadcast to subscribers
//! (the control plane persists them to its event log).

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::breaker::BreakerState;
use crate::clock;
use crate::probe::ProbeKind;

/// Events kept for the admin API; older ones are dropped (subscribers that
/// persist events see every one as it happens).
const KEEP: usize = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Increases by one per event, from 1.
    pub seq: u64,
    pub at_unix_ms: u64,
    pub service: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    RouteChanged {
        generation: u64,
        stable: String,
        canary: Option<String>,
        canary_weight: f64,
        rules: usize,
        /// Who asked: `admin-api`, `rollback`, `config`, …
        source: String,
        /// Wall-clock microseconds when the new table became visible.
        applied_at_unix_us: u64,
    },
    BreakerTransition {
        version: String,
        from: BreakerState,
        to: BreakerState,
        reason: String,
    },
    ProbeChanged {
        version: String,
        endpoint: String,
        probe: ProbeKind,
        passing: bool,
    },
    EndpointEjected {
        version: String,
        endpoint: String,
        failures: u32,
        for_ms: u64,
    },
    /// Whether the pool has at least one endpoint that can take traffic.
    PoolAvailability {
        version: String,
        available: bool,
        /// What happens to traffic meanwhile, e.g. "canary traffic goes to stable".
        effect: String,
    },
}

/// The event log shared by every service of one proxy.
#[derive(Debug)]
pub struct EventLog {
    inner: Mutex<(u64, VecDeque<Event>)>,
    tx: broadcast::Sender<Event>,
}

impl Default for EventLog {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(4096);
        EventLog {
            inner: Mutex::new((0, VecDeque::new())),
            tx,
        }
    }
}

impl EventLog {
    pub fn push(&self, service: &str, kind: EventKind) -> Event {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard.0 += 1;
        let event = Event {
            seq: guard.0,
            at_unix_ms: clock::unix_ms(),
            service: service.to_string(),
            kind,
        };
        if guard.1.len() == KEEP {
            guard.1.pop_front();
        }
        guard.1.push_back(event.clone());
        // Sent under the lock so subscribers see events in `seq` order.
        let _ = self.tx.send(event.clone());
        event
    }

    /// Events with `seq > after`, at most `limit`, oldest first.
    pub fn after(&self, after: u64, limit: usize) -> Vec<Event> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .1
            .iter()
            .filter(|e| e.seq > after)
            .take(limit)
            .cloned()
            .collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
