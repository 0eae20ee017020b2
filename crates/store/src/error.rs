//! The one error type of the store.
//!
//! Every variant says what failed, on which file, and what the operator can
//! do about it, because these messages reach a terminal through the CLI. No
//! backend type appears in it (the SQLite error is boxed as a source), so a
//! PostgreSQL backend can return the same variants.

use std::error::Error as StdError;
use std::path::PathBuf;

/// Boxed cause from the backend, kept for `source()` chains and logs.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

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

    /// Another connection held the write lock for longer than the busy timeout.
    #[error(
        "database {} is locked (while {op}; waited {waited_ms} ms): is another backout process \
         writing to it? Stop it or retry",
        path.display()
    )]
    Busy {
        path: PathBuf,
        op: &'static str,
        waited_ms: u64,
    },

    /// The disk (or the configured size cap) is full. Nothing of the failed
    /// write was stored: the transaction was rolled back.
    #[error(
        "disk full while {op} on {}: nothing of this write was stored; free disk space (or raise \
         the store's size cap) and retry",
        path.display()
    )]
    DiskFull { path: PathBuf, op: &'static str },

    /// The file is damaged.
    #[error(
        "database {} is corrupt ({detail}); stop backout, move the file aside and restore a \
         backup (`sqlite3 FILE .recover` may salvage events)",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },

    /// The file exists but belongs to something else (another program's
    /// SQLite database, or not SQLite at all).
    #[error(
        "{} is not a backout database ({detail}); point backout at its own data file (default \
         ./backout-data/backout.db) or move this file away",
        path.display()
    )]
    Foreign { path: PathBuf, detail: String },

    /// The file was written by a newer backout whose schema this binary does
    /// not know; writing to it could destroy data.
    #[error(
        "database {} has schema version {found}, newer than this backout understands (up to \
         {known}); upgrade backout, or run the version that wrote it",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    /// The file or its directory cannot be written.
    #[error(
        "cannot open or write {} ({detail}); check that the file and its directory exist and are \
         writable by this user",
        path.display()
    )]
    Access { path: PathBuf, detail: String },

    /// A low-level I/O error from the operating system.
    #[error(
        "I/O error while {op} on {}: {detail}; check the disk and the file system (dmesg)",
        path.display()
    )]
    Io {
        path: PathBuf,
        op: &'static str,
        detail: String,
    },

    /// Any other backend failure. These are bugs or environment problems
    /// the variants above do not name.
    #[error("storage error while {op} on {}: {source}", path.display())]
    Backend {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: BoxError,
    },

    /// A stored row cannot be decoded: the file was damaged or edited by
    /// another program.
    #[error(
        "{what} in {} cannot be decoded ({detail}); the file may be damaged or edited by another \
         program",
        path.display()
    )]
    Decode {
        path: PathBuf,
        what: String,
        detail: String,
    },

    /// An event of a batch is malformed; nothing of the batch was appended.
    #[error("event {index} of the batch is invalid: {detail}; nothing of the batch was appended")]
    InvalidEvent { index: usize, detail: String },

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
}
