//! The one error type of the store.
//!
//! Every variant says what failed, where (the file, or the PostgreSQL
//! database without its password) and what the operator can do about it,
//! because these messages reach a terminal through the CLI. No backend type
//! appears in it (the driver's error is boxed as a source), and the variants
//! mean the same on both backends: only the advice differs where the remedy
//! does (move a file away, or create a database).

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;

use crate::LeaseInfo;

/// Boxed cause from the backend, kept for `source()` chains and logs.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Where a store keeps its data, as errors name it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A SQLite file.
    File(PathBuf),
    /// A PostgreSQL database, as a URL without its password.
    Postgres(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(url),
        }
    }
}

impl Location {
    fn foreign_advice(&self) -> &'static str {
        match self {
            Location::File(_) => {
                "point backout at its own data file (default ./backout-data/backout.db) or move \
                 this file away"
            }
            Location::Postgres(_) => {
                "give backout a database of its own (`CREATE DATABASE backout`) and put its name \
                 in the URL"
            }
        }
    }

    fn access_advice(&self) -> &'static str {
        match self {
            Location::File(_) => {
                "check that the file and its directory exist and are writable by this user"
            }
            Location::Postgres(_) => {
                "check the user, password and database name in the URL, and that this user may \
                 connect to the database and create tables in it"
            }
        }
    }

    fn corrupt_advice(&self) -> &'static str {
        match self {
            Location::File(_) => {
                "stop backout, move the file aside and restore a backup (`sqlite3 FILE .recover` \
                 may salvage events)"
            }
            Location::Postgres(_) => {
                "stop backout and have the database checked (amcheck) or restored from a backup"
            }
        }
    }

    fn disk_full_advice(&self) -> &'static str {
        match self {
            Location::File(_) => "free disk space (or raise the store's size cap) and retry",
            Location::Postgres(_) => "free disk space on the database server and retry",
        }
    }
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The directory that should hold the database could not be created.
    #[error(
        "cannot create the data directory {}: {source}; check the path and its permissions",
        dir.display()
    )]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The location given to [`crate::open`] is not one the store can use.
    #[error("cannot use {location:?} as a store: {detail}")]
    BadLocation { location: String, detail: String },

    /// Another connection held a lock for longer than the store waits.
    #[error(
        "database {location} is locked (while {op}; waited {waited_ms} ms): is another backout \
         process writing to it? Stop it or retry"
    )]
    Busy {
        location: Location,
        op: &'static str,
        waited_ms: u64,
    },

    /// The disk (or the configured size cap) is full. Nothing of the failed
    /// write was stored: the transaction was rolled back.
    #[error(
        "disk full while {op} on {location}: nothing of this write was stored; {}",
        .location.disk_full_advice()
    )]
    DiskFull {
        location: Location,
        op: &'static str,
    },

    /// The database is damaged.
    #[error("database {location} is corrupt ({detail}); {}", .location.corrupt_advice())]
    Corrupt { location: Location, detail: String },

    /// The file or database belongs to something else (another program's
    /// tables, or not SQLite at all).
    #[error("{location} is not a backout database ({detail}); {}", .location.foreign_advice())]
    Foreign { location: Location, detail: String },

    /// The database was written by a newer backout whose schema this binary
    /// does not know; writing to it could destroy data.
    #[error(
        "database {location} has schema version {found}, newer than this backout understands \
         (up to {known}); upgrade backout, or run the version that wrote it"
    )]
    TooNew {
        location: Location,
        found: i64,
        known: i64,
    },

    /// The file cannot be written, or the database refused this user.
    #[error("cannot open or write {location} ({detail}); {}", .location.access_advice())]
    Access { location: Location, detail: String },

    /// A low-level I/O error from the operating system.
    #[error(
        "I/O error while {op} on {location}: {detail}; check the disk and the file system (dmesg)"
    )]
    Io {
        location: Location,
        op: &'static str,
        detail: String,
    },

    /// The database server cannot be reached, or it closed the connection
    /// (it is restarting, or the network is down). The store connects
    /// again on the next call.
    #[error(
        "cannot reach the database {location} while {op} ({detail}); is the server running and \
         reachable from here? The store connects again on the next call. A write cut off while \
         committing may or may not be stored: read the log before retrying one without an \
         idempotency key"
    )]
    Unreachable {
        location: Location,
        op: &'static str,
        detail: String,
    },

    /// The database is set up so that an acknowledged write could be lost.
    #[error("database {location} cannot keep the event log safe: {detail}")]
    NotDurable { location: Location, detail: String },

    /// Any other backend failure. These are bugs or environment problems
    /// the variants above do not name.
    #[error("storage error while {op} on {location}: {source}")]
    Backend {
        location: Location,
        op: &'static str,
        #[source]
        source: BoxError,
    },

    /// A stored row cannot be decoded: the database was damaged or edited
    /// by another program.
    #[error(
        "{what} in {location} cannot be decoded ({detail}); the database may be damaged or \
         edited by another program"
    )]
    Decode {
        location: Location,
        what: String,
        detail: String,
    },

    /// An event of a batch is malformed; nothing of the batch was appended.
    #[error("event {index} of the batch is invalid: {detail}; nothing of the batch was appended")]
    InvalidEvent { index: usize, detail: String },

    /// An argument other than an event is malformed; nothing was written.
    #[error("invalid {what}: {detail}; nothing was written")]
    InvalidValue { what: String, detail: String },

    /// An idempotency key came back on a different kind of event: two
    /// different operations share a key, which would make one of them vanish.
    #[error(
        "idempotency key {key:?} already belongs to event {seq} ({stored}), not to {attempted}; \
         a retry must resend the same event, and different operations need different keys"
    )]
    KeyReused {
        key: String,
        seq: i64,
        /// The stored event's kind and service.
        stored: String,
        /// The refused event's kind and service.
        attempted: String,
    },

    /// A snapshot claimed to cover events that are not in the log.
    #[error(
        "snapshot of service {service:?} up to seq {up_to_seq} is ahead of the log (last seq \
         {last_seq}); snapshot only state folded from appended events"
    )]
    SnapshotAhead {
        service: String,
        up_to_seq: i64,
        last_seq: i64,
    },

    /// Token names are unique.
    #[error(
        "a token named {name:?} already exists; revoke it first (`backout token revoke {name}`) \
         or choose another name"
    )]
    TokenExists { name: String },

    /// Revoking this token would leave no admin token, and nobody could
    /// manage tokens any more.
    #[error(
        "token {name:?} is the last admin token; revoking it would lock every admin out. Create \
         another admin token first (`backout token create NAME --role admin`), then revoke this \
         one"
    )]
    LastAdmin { name: String },

    /// Token names are shown in audit records and typed on command lines.
    #[error("invalid token name {name:?}: {reason}")]
    InvalidTokenName { name: String, reason: &'static str },

    /// The operating system's random source failed; no token was created.
    #[error("cannot read randomness from the operating system ({detail}); no token was created")]
    Random { detail: String },

    /// This store object campaigned for the leadership and does not hold it
    /// (any more): another process leads, so this one must not write.
    /// Nothing of the refused write was stored.
    #[error("{}", describe_fenced(*.term, .leader))]
    Fenced {
        /// The last term this store object won, or 0 if it never led.
        term: i64,
        /// Who leads now, when known.
        leader: Option<LeaseInfo>,
    },
}

fn describe_fenced(term: i64, leader: &Option<LeaseInfo>) -> String {
    let lost = if term > 0 {
        format!("this process lost the leadership (it last led at term {term})")
    } else {
        "this process is not the leader".to_owned()
    };
    let now = match leader {
        Some(l) => format!(
            "; {} leads at term {} (API {})",
            l.holder,
            l.term,
            if l.advertise.is_empty() {
                "unknown"
            } else {
                &l.advertise
            }
        ),
        None => "; no process leads right now".to_owned(),
    };
    format!(
        "{lost}{now}: nothing was written. Only the leader writes: send the request to the \
         leader, or wait until this process wins an election"
    )
}

impl StoreError {
    /// Whether the error is a refusal by the fencing term: this process is
    /// not the leader.
    pub fn is_fenced(&self) -> bool {
        matches!(self, StoreError::Fenced { .. })
    }
}
