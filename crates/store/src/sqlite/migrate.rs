//! Schema versions and the ordered migrations that reach them.
//!
//! `backout_schema` has one row per applied migration; the schema version
//! is its highest `version`. At open, every migration above it runs in one
//! immediate transaction together with its row, so a crash mid-migration
//! leaves the previous version intact, and two processes opening the same
//! file cannot both migrate it. A file whose version is above
//! [`SCHEMA_VERSION`] was written by a newer backout and is refused before
//! anything is written to it.
//!
//! To change the schema, append a [`Migration`] with the next version; never
//! edit one that has shipped.

use rusqlite::{Connection, TransactionBehavior};

use super::errors::Ctx;
use crate::StoreError;

/// SQLite's `application_id` header field for backout databases ("bkot"):
/// tells our files from other programs' SQLite files.
const APPLICATION_ID: i32 = 0x626b_6f74;

/// One step of the schema.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, in order; versions are 1, 2, 3, …
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "event log, snapshots, tokens",
        sql: r#"
        -- The append-only log. `seq` is assigned by the store (last + 1, in
        -- an immediate transaction), so it is gap-free; `batch` is the seq
        -- of the first event of the same append.
        CREATE TABLE events (
            seq             INTEGER PRIMARY KEY,
            batch           INTEGER NOT NULL,
            service         TEXT    NOT NULL,
            kind            TEXT    NOT NULL CHECK (kind <> ''),
            actor           TEXT    NOT NULL,
            reason          TEXT,
            idempotency_key TEXT    UNIQUE,
            at_ms           INTEGER NOT NULL,
            body            TEXT    NOT NULL,
            CHECK (seq > 0 AND batch > 0 AND batch <= seq)
        ) STRICT;
        CREATE INDEX events_by_service ON events (service, seq);
        CREATE TRIGGER events_no_update BEFORE UPDATE ON events
            BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
        CREATE TRIGGER events_no_delete BEFORE DELETE ON events
            BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;

        -- Folds of a service's events, a cache the log can always rebuild.
        CREATE TABLE snapshots (
            service   TEXT    NOT NULL,
            up_to_seq INTEGER NOT NULL,
            body      TEXT    NOT NULL,
            PRIMARY KEY (service, up_to_seq)
        ) STRICT;

        -- API tokens: only the SHA-256 of the secret is kept.
        CREATE TABLE tokens (
            name          TEXT    PRIMARY KEY,
            role          TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
            secret_sha256 BLOB    NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
            created_at_ms INTEGER NOT NULL
        ) STRICT;
    "#,
    },
    Migration {
        version: 2,
        name: "the proxy role",
        // SQLite cannot alter a CHECK constraint: the table is rebuilt with
        // every token in it, inside the migration's transaction.
        sql: r#"
        CREATE TABLE tokens_v2 (
            name          TEXT    PRIMARY KEY,
            role          TEXT    NOT NULL
                                  CHECK (role IN ('viewer', 'operator', 'admin', 'proxy')),
            secret_sha256 BLOB    NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
            created_at_ms INTEGER NOT NULL
        ) STRICT;
        INSERT INTO tokens_v2 (name, role, secret_sha256, created_at_ms)
            SELECT name, role, secret_sha256, created_at_ms FROM tokens;
        DROP TABLE tokens;
        ALTER TABLE tokens_v2 RENAME TO tokens;
    "#,
    },
    Migration {
        version: 3,
        name: "the leader lease",
        sql: r#"
        -- One row: who leads, under which term, until when (milliseconds
        -- since the epoch on this machine's clock, the only clock a SQLite
        -- file has). An empty holder means the lease is free.
        CREATE TABLE lease (
            id            INTEGER PRIMARY KEY CHECK (id = 1),
            holder        TEXT    NOT NULL,
            advertise     TEXT    NOT NULL,
            term          INTEGER NOT NULL CHECK (term >= 0),
            expires_at_ms INTEGER NOT NULL
        ) STRICT;
        INSERT INTO lease (id, holder, advertise, term, expires_at_ms) VALUES (1, '', '', 0, 0);
        -- Fencing rests on terms only ever growing: a deleted row or a
        -- lowered term could hand an old term out again.
        CREATE TRIGGER lease_no_delete BEFORE DELETE ON lease
            BEGIN SELECT RAISE(ABORT, 'the lease row is never deleted: its term only grows'); END;
        CREATE TRIGGER lease_term_grows BEFORE UPDATE OF term ON lease WHEN NEW.term < OLD.term
            BEGIN SELECT RAISE(ABORT, 'the lease term never goes down'); END;
    "#,
    },
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Refuses files that are not ours before anything is written to them: a
/// non-SQLite file, another program's SQLite database.
pub(super) fn check_is_ours(ctx: &Ctx<'_>, conn: &Connection) -> Result<(), StoreError> {
    let op = "reading the database header";
    let app_id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(|e| ctx.err(op, e))?;
    if app_id == APPLICATION_ID {
        return Ok(());
    }
    let foreign = |detail: String| StoreError::Foreign {
        location: ctx.location(),
        detail,
    };
    if app_id != 0 {
        return Err(foreign(format!(
            "it is another program's SQLite database (application id {app_id:#010x})"
        )));
    }
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY name LIMIT 4",
        )
        .map_err(|e| ctx.err(op, e))?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ctx.err(op, e))?;
    if names.is_empty() {
        // A new (or empty) file: ours to initialise.
        return Ok(());
    }
    Err(foreign(format!(
        "it is an SQLite database with other tables: {}",
        names.join(", ")
    )))
}

/// Applies the migrations the file lacks; refuses a newer schema.
pub(super) fn migrate(ctx: &Ctx<'_>, conn: &mut Connection) -> Result<(), StoreError> {
    migrate_to(ctx, conn, SCHEMA_VERSION)
}

/// Brings the file to version `target` (older versions: for tests that
/// make a file as an older backout would have).
fn migrate_to(ctx: &Ctx<'_>, conn: &mut Connection, target: i64) -> Result<(), StoreError> {
    let op = "migrating the schema";
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| ctx.err(op, e))?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS backout_schema (
             version INTEGER PRIMARY KEY,
             name    TEXT NOT NULL
         ) STRICT;",
    )
    .map_err(|e| ctx.err(op, e))?;
    let found: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM backout_schema",
            [],
            |r| r.get(0),
        )
        .map_err(|e| ctx.err(op, e))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            location: ctx.location(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    if found >= target {
        return Ok(());
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(|e| ctx.err(op, e))?;
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version > found && m.version <= target)
    {
        tx.execute_batch(m.sql).map_err(|e| ctx.err(op, e))?;
        tx.execute(
            "INSERT INTO backout_schema (version, name) VALUES (?1, ?2)",
            (m.version, m.name),
        )
        .map_err(|e| ctx.err(op, e))?;
    }
    tx.commit().map_err(|e| ctx.err(op, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "migration {:?}", m.name);
        }
    }

    /// A file written by the first backout (schema 1, whose token table
    /// knew three roles) opens, migrates in place and keeps every token,
    /// secrets included; the proxy role then works.
    #[test]
    fn a_version_1_file_migrates_and_keeps_its_tokens() {
        use crate::{Role, SqliteStore, Tokens};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backout.db");
        let ctx = Ctx {
            path: &path,
            busy_timeout: std::time::Duration::from_secs(5),
        };
        let mut secrets = Vec::new();
        {
            let mut conn = Connection::open(&path).unwrap();
            migrate_to(&ctx, &mut conn, 1).unwrap();
            for (i, (name, role)) in [("root", "admin"), ("ci", "operator"), ("dash", "viewer")]
                .into_iter()
                .enumerate()
            {
                let (secret, hash) = crate::token::new_secret().unwrap();
                conn.execute(
                    "INSERT INTO tokens (name, role, secret_sha256, created_at_ms) \
                     VALUES (?1, ?2, ?3, ?4)",
                    (name, role, hash.as_slice(), i as i64),
                )
                .unwrap();
                secrets.push((name, role, secret));
            }
            // Schema 1 refuses the new role: the migration is needed.
            let (_, hash) = crate::token::new_secret().unwrap();
            conn.execute(
                "INSERT INTO tokens VALUES ('edge', 'proxy', ?1, 9)",
                [hash.as_slice()],
            )
            .unwrap_err();
        }

        let store = SqliteStore::open(&path).unwrap();
        let versions: Vec<i64> = {
            let conn = Connection::open(&path).unwrap();
            let mut stmt = conn
                .prepare("SELECT version FROM backout_schema ORDER BY version")
                .unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
        let listed: Vec<String> = store
            .list_tokens()
            .unwrap()
            .iter()
            .map(|t| format!("{}:{}@{}", t.name, t.role, t.created_at_ms))
            .collect();
        assert_eq!(listed, ["ci:operator@1", "dash:viewer@2", "root:admin@0"]);
        for (name, role, secret) in &secrets {
            let info = store.verify_token(secret).unwrap().unwrap();
            assert_eq!((info.name.as_str(), info.role.as_str()), (*name, *role));
        }
        let edge = store.create_token("edge", Role::Proxy, 9).unwrap();
        assert_eq!(
            store.verify_token(&edge).unwrap().unwrap().role,
            Role::Proxy
        );
        drop(store);
        // Opening again is a no-op.
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.list_tokens().unwrap().len(), 4);
    }
}
