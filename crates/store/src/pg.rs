//! The PostgreSQL backend: the same promises as the SQLite file, kept by a
//! database server that several `backout up` processes share.
//!
//! * **Durability**: every write transaction sets `synchronous_commit = on`
//!   itself, so a commit that returned is in the server's fsync'd WAL,
//!   whatever the database's default says; a server running with
//!   `fsync = off` is refused at open ([`StoreError::NotDurable`]).
//! * **Order**: appends first lock one row (`append_lock`, FOR UPDATE) and
//!   then read the last seq, so appends of every process are serialised and
//!   seqs are consecutive and gap-free; a sequence would leave gaps when a
//!   transaction rolls back. Commit order is seq order, so a reader polling
//!   `read(after_seq)` never skips an event that commits later.
//! * **Append-only**: triggers refuse UPDATE, DELETE and TRUNCATE on the
//!   log, to raw SQL too.
//! * **Fencing**: once this store object has campaigned, every write locks
//!   the lease row FOR SHARE in its own transaction and checks the term (see
//!   [`crate::Leases`]); no advisory locks, which break behind connection
//!   poolers.
//! * **Faults**: a call made while the server is down fails with
//!   [`StoreError::Unreachable`]; the next call after it is back connects
//!   again. A lock held too long (`lock_timeout`) is [`StoreError::Busy`].
//!   A transaction left open by a process that was paused is ended by the
//!   server after `idle_in_transaction_timeout`, so it cannot hold up a
//!   takeover for longer.
//!
//! The connection is plain TCP (or a unix socket): the store does not speak
//! TLS to PostgreSQL yet, so run it on a network you trust. Behind a
//! connection pooler use session pooling (the store prepares statements on
//! its connections).

mod errors;
mod events;
mod leases;
mod migrate;
mod pool;
mod snapshots;
mod tokens;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use pool::{Conn, Db, Pool, Shared};

use crate::lease::{self, Check, Fence};
use crate::{Location, StoreError};

pub use migrate::PG_SCHEMA_VERSION;

/// Tuning for [`PgStore::open_with`]. The defaults suit `backout up`.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// The PostgreSQL schema (namespace) that holds the store's tables:
    /// lowercase letters, digits and `_`, starting with a letter or `_`.
    /// Several stores can share a database under different schemas.
    pub schema: String,
    /// How many connections (each on a thread of its own) the store opens
    /// at most; they are made when first needed.
    pub connections: usize,
    /// How long connecting may take before the call fails.
    pub connect_timeout: Duration,
    /// How long a write waits for a lock another connection holds before
    /// failing with [`StoreError::Busy`].
    pub lock_timeout: Duration,
    /// How long the server lets a transaction of this store sit idle before
    /// it ends the session (a process paused in the middle of a write).
    pub idle_in_transaction_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            schema: "backout".to_owned(),
            connections: 4,
            connect_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(5),
            idle_in_transaction_timeout: Duration::from_secs(5),
        }
    }
}

/// The store in a PostgreSQL database. `Send + Sync`: share it in an `Arc`.
///
/// All methods block until the server answers. They are safe to call from
/// any thread, an async task's included: the connections live on threads
/// of their own.
pub struct PgStore {
    location: Location,
    schema: String,
    pool: Pool,
    fence: Fence,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.location)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn validate_schema(schema: &str) -> Result<(), StoreError> {
    let ok = schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.starts_with("pg_");
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidValue {
            what: format!("PostgreSQL schema name {schema:?}"),
            detail: "use up to 63 lowercase letters, digits and _, starting with a letter or _ \
                     (and not pg_)"
                .to_owned(),
        })
    }
}

impl PgStore {
    /// Opens the store in the database `url` names
    /// (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`), creating its
    /// tables on first use and bringing them up to date.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, &PgOptions::default())
    }

    /// [`PgStore::open`] with explicit options.
    pub fn open_with(url: &str, options: &PgOptions) -> Result<Self, StoreError> {
        let shown = crate::open::redact(url);
        let mut config = postgres::Config::from_str(url).map_err(|e| StoreError::BadLocation {
            location: shown.clone(),
            detail: format!("{e}; write it as postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"),
        })?;
        validate_schema(&options.schema)?;
        config.connect_timeout(options.connect_timeout);
        config.keepalives(true);
        if config.get_application_name().is_none() {
            config.application_name("backout");
        }
        let location = Location::Postgres(shown);
        let lock_timeout_ms = millis(options.lock_timeout);
        let begin = format!(
            "BEGIN; SET LOCAL synchronous_commit = on; SET LOCAL lock_timeout = {lock_timeout_ms}; \
             SET LOCAL idle_in_transaction_session_timeout = {};",
            millis(options.idle_in_transaction_timeout)
        );
        let shared = Arc::new(Shared {
            config,
            location: location.clone(),
            schema: options.schema.clone(),
            begin,
            lock_timeout_ms,
        });
        let pool = Pool::new(shared, options.connections)?;
        let store = PgStore {
            location,
            schema: options.schema.clone(),
            pool,
            fence: Fence::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Checks the database and migrates it. Two processes creating the
    /// schema at once race on the catalog; the loser tries again and finds
    /// the schema made.
    fn migrate(&self) -> Result<(), StoreError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let out = self.transaction("opening the store", migrate::migrate);
            match out {
                Err(StoreError::Backend { ref source, .. })
                    if tries < 3 && is_creation_race(source.as_ref()) => {}
                out => return out,
            }
        }
    }

    /// The database, as errors name it (without a password).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The PostgreSQL schema holding the store's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Runs `f` in a transaction on a connection thread, without the
    /// fencing check (the election's own, and the migrations).
    fn transaction<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Db<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.pool
            .run(op, move |conn: &mut Conn| conn.transaction(op, f))
    }

    /// Runs a write in a transaction, fenced once this object campaigned:
    /// the transaction first locks the lease row FOR SHARE and checks that
    /// it still carries the term this object won.
    fn write<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Db<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let check = self.fence.check();
        match check {
            Check::Refuse { last_won } => {
                use crate::Leases;
                Err(StoreError::Fenced {
                    term: last_won,
                    leader: self.leader().ok().flatten(),
                })
            }
            Check::None => self.transaction(op, f),
            Check::Lease { holder, term } => {
                let out = self.transaction(op, move |db| {
                    let row = leases::row_for_share(db)?;
                    if row.holder != holder || row.term != term {
                        return Err(lease::fenced(term, &row));
                    }
                    f(db)
                });
                if let Err(StoreError::Fenced { term, .. }) = &out {
                    self.fence.lost(*term);
                }
                out
            }
        }
    }

    /// Runs a read on a connection thread.
    fn read<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnMut(&mut Db<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.pool.run(op, move |conn: &mut Conn| conn.read(op, f))
    }
}

/// A unique violation on the catalog: another process created the schema
/// (or one of its objects) at the same moment.
fn is_creation_race(source: &(dyn std::error::Error + 'static)) -> bool {
    use postgres::error::SqlState;
    source
        .downcast_ref::<postgres::Error>()
        .and_then(postgres::Error::code)
        .is_some_and(|c| {
            *c == SqlState::UNIQUE_VIOLATION
                || *c == SqlState::DUPLICATE_SCHEMA
                || *c == SqlState::DUPLICATE_TABLE
                || *c == SqlState::DUPLICATE_OBJECT
                || *c == SqlState::DUPLICATE_FUNCTION
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        for ok in ["backout", "_x", "t_123_abc", &"a".repeat(63)] {
            validate_schema(ok).unwrap();
        }
        for bad in [
            "",
            "Backout",
            "1abc",
            "a-b",
            "a;drop",
            "pg_x",
            &"a".repeat(64),
            "a b",
        ] {
            assert!(validate_schema(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_urls_are_refused_without_their_password() {
        let err = PgStore::open("postgres://u:hunter2@h:notaport/db").unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(
            msg.starts_with("cannot use \"postgres://u:***@h:notaport/db\""),
            "{msg}"
        );
        assert!(msg.contains("write it as postgres://USER"), "{msg}");
    }
}
