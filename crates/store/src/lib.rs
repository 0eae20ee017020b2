//! Durable storage for backout: the append-only event log that every
//! rollout input and action goes through, snapshots of its folds, and the
//! API's tokens.
//!
//! The traits ([`EventLog`], [`Snapshots`], [`Tokens`], together [`Store`])
//! are the interface; [`SqliteStore`] implements them on one SQLite file
//! (WAL, every commit fsync'd). They use no backend type, so a PostgreSQL
//! backend can implement them later. The API is synchronous: call it from a
//! blocking thread. The store reads no clock: callers pass `at_ms`.
//!
//! ```
//! use backout_store::{EventLog, NewEvent, SqliteStore};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = SqliteStore::open(dir.path().join("backout.db")).unwrap();
//! let cmd = NewEvent::new("web", "input.command", "cli:alice", 1_700_000_000_000,
//!     serde_json::json!({"command": "approve"})).with_key("req-42");
//! let first = store.append(vec![cmd.clone()]).unwrap();
//! let retry = store.append(vec![cmd]).unwrap();
//! assert_eq!((first[0].event.seq, first[0].duplicate), (1, false));
//! assert_eq!((retry[0].event.seq, retry[0].duplicate), (1, true));
//! assert_eq!(store.read(0, 100).unwrap().len(), 1);
//! ```

mod error;
mod event;
mod snapshot;
mod sqlite;
mod token;

pub use error::{BoxError, StoreError};
pub use event::{Appended, EventLog, NewEvent, StoredEvent};
pub use snapshot::{Snapshot, Snapshots};
pub use sqlite::{Options, SCHEMA_VERSION, SqliteStore};
pub use token::{ParseRoleError, Role, SECRET_PREFIX, TokenInfo, Tokens};

/// Everything the control plane needs from storage, as one object
/// (`Arc<dyn Store>`).
pub trait Store: EventLog + Snapshots + Tokens + std::fmt::Debug {}

impl<T: EventLog + Snapshots + Tokens + std::fmt::Debug + ?Sized> Store for T {}
