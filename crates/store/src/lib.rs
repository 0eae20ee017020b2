//! Durable storage for backout: the append-only event log that every
//! rollout input and action goes through, snapshots of its folds, the API's
//! tokens, and the leader lease that lets several control-plane processes
//! share one database.
//!
//! The traits ([`EventLog`], [`Snapshots`], [`Tokens`], [`Leases`],
//! together [`Store`]) are the interface. Two backends implement them with
//! the same promises, checked by the same tests:
//!
//! * [`SqliteStore`]: one SQLite file (WAL, every commit fsync'd), for one
//!   machine.
//! * [`PgStore`]: a PostgreSQL database, for several `backout up` processes
//!   on several machines, one of which leads.
//!
//! [`open`] picks the backend from a location string. The API is
//! synchronous: call it from a blocking thread (both backends are also
//! safe to call from an async task; they block it). The store reads no
//! clock: callers pass `at_ms`. Only the lease's expiry is judged on a
//! clock, the database's.
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
mod lease;
mod open;
mod pg;
mod snapshot;
mod sqlite;
mod token;

pub use error::{BoxError, Location, StoreError};
pub use event::{Appended, EventLog, NewEvent, StoredEvent};
pub use lease::{Candidate, Leadership, LeaseInfo, Leases, MAX_TTL};
pub use open::{is_postgres_url, open, redact};
pub use pg::{PG_SCHEMA_VERSION, PgOptions, PgStore};
pub use snapshot::{Snapshot, Snapshots};
pub use sqlite::{Options, SCHEMA_VERSION, SqliteStore};
pub use token::{ParseRoleError, Role, SECRET_PREFIX, TokenInfo, Tokens};

/// Everything the control plane needs from storage, as one object
/// (`Arc<dyn Store>`).
pub trait Store: EventLog + Snapshots + Tokens + Leases + std::fmt::Debug {}

impl<T: EventLog + Snapshots + Tokens + Leases + std::fmt::Debug + ?Sized> Store for T {}
