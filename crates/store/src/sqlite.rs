//! The SQLite backend: one file, WAL mode, every commit fsync'd.
//!
//! * **Durability**: `journal_mode=WAL` with `synchronous=FULL` syncs the
//!   write-ahead log on every commit, so a transaction that returned is on
//!   disk; a SIGKILL or power cut loses at most a transaction that had not
//!   returned, and SQLite rolls that one back whole on the next open.
//! * **Concurrency**: writes go through one connection behind a mutex and
//!   start with `BEGIN IMMEDIATE`, which takes SQLite's write lock up front,
//!   so other processes writing the same file are serialised too (they wait
//!   up to the busy timeout). Reads use a second connection and, thanks to
//!   WAL, never wait for a writer.
//! * **Safety**: the file is checked before anything is written to it: a
//!   foreign SQLite database or a non-SQLite file is refused, and so is a
//!   schema newer than this binary knows.

mod errors;
mod events;
mod leases;
mod migrate;
mod snapshots;
mod tokens;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::StoreError;
use crate::lease::{self, Check, Fence};

pub use migrate::SCHEMA_VERSION;

/// Tuning for [`SqliteStore::open_with`]. The defaults suit `backout up`.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long a write waits for another process's write lock before
    /// failing with [`StoreError::Busy`].
    pub busy_timeout: Duration,
    /// Caps the database's size: an append that would grow the file past it
    /// fails with [`StoreError::DiskFull`] (and stores nothing) instead of
    /// filling the disk. `None` means no cap.
    pub max_size_bytes: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            busy_timeout: Duration::from_secs(5),
            max_size_bytes: None,
        }
    }
}

/// The store on one SQLite file. `Send + Sync`: share it in an `Arc`.
///
/// All methods block on disk I/O; async callers run them on a blocking
/// thread.
pub struct SqliteStore {
    path: PathBuf,
    busy_timeout: Duration,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    fence: Fence,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The path `backout up` uses, relative to its working directory.
    pub const DEFAULT_PATH: &'static str = "backout-data/backout.db";

    /// Opens (creating it and its parent directories if needed) the store
    /// at `path`, and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, &Options::default())
    }

    /// [`SqliteStore::open`] with explicit options.
    pub fn open_with(path: impl AsRef<Path>, options: &Options) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                dir: dir.to_path_buf(),
                source,
            })?;
        }
        let ctx = errors::Ctx {
            path: &path,
            busy_timeout: options.busy_timeout,
        };

        let mut writer = connect(&ctx, options)?;
        migrate::check_is_ours(&ctx, &writer)?;
        configure_writer(&ctx, &writer)?;
        migrate::migrate(&ctx, &mut writer)?;
        // The new file's directory entry must be durable too, or a power cut
        // could lose the whole (synced) file.
        sync_dir(&path);

        let reader = connect(&ctx, options)?;
        reader
            .pragma_update(None, "query_only", true)
            .map_err(|e| ctx.err("opening a read connection", e))?;

        Ok(SqliteStore {
            path,
            busy_timeout: options.busy_timeout,
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            fence: Fence::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn ctx(&self) -> errors::Ctx<'_> {
        errors::Ctx {
            path: &self.path,
            busy_timeout: self.busy_timeout,
        }
    }

    /// Runs `f` in an immediate write transaction, committing on `Ok`. A
    /// commit that returns is on disk (`synchronous=FULL`); on `Err` the
    /// transaction is rolled back when dropped.
    ///
    /// Once this store object has campaigned, the transaction first checks
    /// the lease row: the write lock it holds is the one a takeover needs,
    /// so the lease cannot change hands before the commit.
    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&errors::Ctx<'_>, &rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let check = self.fence.check();
        if let Check::Refuse { last_won } = check {
            use crate::Leases;
            return Err(StoreError::Fenced {
                term: last_won,
                leader: self.leader().ok().flatten(),
            });
        }
        self.transaction(op, |ctx, tx| {
            if let Check::Lease { holder, term } = &check {
                let row = leases::row(ctx, tx)?;
                if row.holder != *holder || row.term != *term {
                    self.fence.lost(*term);
                    return Err(lease::fenced(*term, &row));
                }
            }
            f(ctx, tx)
        })
    }

    /// An immediate transaction without the fencing check (the election's
    /// own).
    fn transaction<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&errors::Ctx<'_>, &rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let ctx = self.ctx();
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| ctx.err(op, e))?;
        let out = f(&ctx, &tx)?;
        tx.commit().map_err(|e| ctx.err(op, e))?;
        Ok(out)
    }

    /// Runs `f` on the read connection (a consistent snapshot per statement;
    /// use a transaction inside `f` for several).
    fn read<T>(
        &self,
        f: impl FnOnce(&errors::Ctx<'_>, &Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let ctx = self.ctx();
        let conn = lock(&self.reader);
        f(&ctx, &conn)
    }
}

/// A panic while holding the lock cannot leave the connection half-written:
/// the open transaction is rolled back when it is dropped during unwinding.
/// So a poisoned mutex is still safe to use.
fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn connect(ctx: &errors::Ctx<'_>, options: &Options) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(ctx.path, flags).map_err(|e| ctx.err("opening", e))?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(|e| ctx.err("opening", e))?;
    if let Some(max) = options.max_size_bytes {
        let page_size: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(|e| ctx.err("opening", e))?;
        let pages = max / u64::try_from(page_size.max(512)).unwrap_or(4096);
        let pages = i64::try_from(pages.max(1)).unwrap_or(i64::MAX);
        conn.pragma_update(None, "max_page_count", pages)
            .map_err(|e| ctx.err("opening", e))?;
    }
    Ok(conn)
}

/// WAL and full sync are per-file and per-connection settings the store's
/// guarantees rest on: refuse to run without them.
fn configure_writer(ctx: &errors::Ctx<'_>, conn: &Connection) -> Result<(), StoreError> {
    let op = "configuring the database";
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))
        .map_err(|e| ctx.err(op, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Access {
            location: ctx.location(),
            detail: format!(
                "SQLite could not switch it to WAL mode (it stays in {mode:?}); network and \
                 some container file systems cannot hold a WAL: use a local disk"
            ),
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| ctx.err(op, e))?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(|e| ctx.err(op, e))?;
    Ok(())
}

/// Best effort: some platforms cannot open or sync a directory, and the
/// file itself is synced by SQLite regardless.
fn sync_dir(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The durability promise rests on these settings of the writing
    /// connection; `synchronous` is per connection, so only this module can
    /// see it.
    #[test]
    fn the_writer_syncs_every_commit_of_a_wal() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("backout.db")).unwrap();
        let writer = lock(&store.writer);
        let get = |pragma: &str| -> String {
            writer
                .query_row(&format!("PRAGMA {pragma}"), [], |r| {
                    r.get::<_, rusqlite::types::Value>(0)
                })
                .map(|v| format!("{v:?}"))
                .unwrap()
        };
        assert_eq!(get("journal_mode"), "Text(\"wal\")");
        assert_eq!(get("synchronous"), "Integer(2)"); // FULL
        assert_eq!(get("busy_timeout"), "Integer(5000)");
        assert_eq!(get("application_id"), "Integer(1651208052)");
        drop(writer);
        let reader = lock(&store.reader);
        let query_only: bool = reader
            .query_row("PRAGMA query_only", [], |r| r.get(0))
            .unwrap();
        assert!(query_only);
    }
}
