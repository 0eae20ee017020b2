//! The flag set currently served, swapped atomically when it changes.
//!
//! Readers take a snapshot (one atomic load) and evaluate against it; a
//! reload builds a whole new snapshot and swaps it in, so a request never
//! sees half of a change. When the source becomes unavailable the last good
//! flag set stays in service and the snapshot says since when it is stale
//! (static stability).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwapOption;
use backout_flags::{FlagSet, Loaded, Problem};
use serde_json::Value as Json;
use tokio::sync::watch;

/// Whether the source behind the served flag set is reachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceHealth {
    Fresh,
    /// The source failed at `since` (Unix seconds) with `error`; the last good
    /// flag set is still served.
    Unavailable {
        since: i64,
        error: String,
    },
}

/// One served version of the flag set.
#[derive(Debug)]
pub struct Snapshot {
    pub flags: Arc<FlagSet>,
    /// The document the flags were loaded from, for management and sync.
    pub document: Arc<Json>,
    /// Increases by one with every change of the flag set.
    pub revision: u64,
    /// When this revision was loaded (Unix seconds).
    pub loaded_at: i64,
    pub problems: Arc<Vec<Problem>>,
    pub source: SourceHealth,
}

impl Snapshot {
    pub fn is_stale(&self) -> bool {
        matches!(self.source, SourceHealth::Unavailable { .. })
    }
}

/// The served flag set, its change notifications and its usage record.
#[derive(Clone)]
pub struct FlagStore {
    current: Arc<ArcSwapOption<Snapshot>>,
    revisions: Arc<watch::Sender<u64>>,
    usage: Arc<RwLock<HashMap<String, Arc<AtomicI64>>>>,
}

impl Default for FlagStore {
    fn default() -> FlagStore {
        FlagStore::new()
    }
}

impl FlagStore {
    pub fn new() -> FlagStore {
        let (tx, _) = watch::channel(0);
        FlagStore {
            current: Arc::new(ArcSwapOption::empty()),
            revisions: Arc::new(tx),
            usage: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// The served snapshot, or `None` before the first load.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Serves a newly loaded flag set and tells subscribers. Returns the new
    /// revision.
    pub fn publish(&self, document: Json, loaded: Loaded, now: i64) -> u64 {
        let revision = self.snapshot().map_or(1, |s| s.revision + 1);
        self.current.store(Some(Arc::new(Snapshot {
            flags: Arc::new(loaded.flags),
            document: Arc::new(document),
            revision,
            loaded_at: now,
            problems: Arc::new(loaded.problems),
            source: SourceHealth::Fresh,
        })));
        self.revisions.send_replace(revision);
        revision
    }

    /// Records that the source failed; the last good flag set stays served.
    /// Does nothing before the first successful load.
    pub fn mark_unavailable(&self, error: String, now: i64) {
        let Some(current) = self.snapshot() else {
            return;
        };
        let since = match &current.source {
            SourceHealth::Unavailable { since, error: old } if *old == error => *since,
            SourceHealth::Unavailable { since, .. } => *since,
            SourceHealth::Fresh => now,
        };
        self.current.store(Some(Arc::new(Snapshot {
            flags: current.flags.clone(),
            document: current.document.clone(),
            revision: current.revision,
            loaded_at: current.loaded_at,
            problems: current.problems.clone(),
            source: SourceHealth::Unavailable { since, error },
        })));
    }

    /// A receiver that sees every new revision (coalesced: a slow reader
    /// sees the latest).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revisions.subscribe()
    }

    /// Notes that `key` was evaluated at `now`, for the stale-flag report.
    pub fn record_evaluation(&self, key: &str, now: i64) {
        if let Ok(usage) = self.usage.read()
            && let Some(last) = usage.get(key)
        {
            if last.load(Ordering::Relaxed) != now {
                last.store(now, Ordering::Relaxed);
            }
            return;
        }
        if let Ok(mut usage) = self.usage.write() {
            usage
                .entry(key.to_owned())
                .or_insert_with(|| Arc::new(AtomicI64::new(now)))
                .store(now, Ordering::Relaxed);
        }
    }

    /// When each flag was last evaluated (Unix seconds) by this process.
    pub fn last_evaluated(&self) -> HashMap<String, i64> {
        self.usage
            .read()
            .map(|u| {
                u.iter()
                    .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Seeds the usage record (from a previous run's file).
    pub fn seed_usage(&self, seen: HashMap<String, i64>) {
        if let Ok(mut usage) = self.usage.write() {
            for (key, at) in seen {
                let slot = usage
                    .entry(key)
                    .or_insert_with(|| Arc::new(AtomicI64::new(at)));
                slot.fetch_max(at, Ordering::Relaxed);
            }
        }
    }
}
