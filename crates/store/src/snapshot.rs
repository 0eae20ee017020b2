//! Snapshots: a fold of a service's events up to some `seq`, saved so that a
//! restart need not fold years of events.
//!
//! A snapshot is only a cache of the log: the log stays the truth, and a
//! reader that cannot use a snapshot (for example because the fold's shape
//! changed; put a version in the body) folds from the start instead. The
//! store keeps the newest few snapshots per service and drops older ones.

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// A saved fold of one service's events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub service: String,
    /// The fold covers every event of the service with `seq <= up_to_seq`;
    /// resume with `read_service(service, up_to_seq, …)`.
    pub up_to_seq: i64,
    /// The folded state, opaque to the store.
    pub body: serde_json::Value,
}

/// Checks a snapshot's service name before any I/O.
pub(crate) fn validate_service(service: &str) -> Result<(), StoreError> {
    if service.contains('\0') {
        return Err(StoreError::InvalidValue {
            what: format!("snapshot service {service:?}"),
            detail: "it contains a NUL character (U+0000)".to_owned(),
        });
    }
    Ok(())
}

/// Saved folds of the event log.
pub trait Snapshots: Send + Sync {
    /// Saves (or replaces) the snapshot of `service` up to `up_to_seq`.
    /// Refused with [`StoreError::SnapshotAhead`] when `up_to_seq` is past
    /// the end of the log.
    fn save_snapshot(
        &self,
        service: &str,
        up_to_seq: i64,
        body: &serde_json::Value,
    ) -> Result<(), StoreError>;

    /// The snapshot of `service` with the highest `up_to_seq`, if any.
    fn latest_snapshot(&self, service: &str) -> Result<Option<Snapshot>, StoreError>;
}
