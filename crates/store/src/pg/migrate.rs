//! The PostgreSQL schema, its versions, and the checks made before anything
//! is written to a database.
//!
//! Everything lives in one PostgreSQL schema (namespace), `backout` unless
//! [`crate::PgOptions::schema`] says otherwise, marked as ours by its
//! comment. `schema_version` in it has one row per applied migration. At
//! open, every migration above the stored version runs in one transaction
//! together with its row, under an exclusive lock on `schema_version`, so
//! concurrent openers migrate once and a failed migration leaves the
//! previous version intact.
//!
//! A database is refused before anything is written to it when it is not
//! ours: when it holds tables outside schemas that backout made (another
//! application's database), or has a schema of the store's name that
//! backout did not make, or a schema version newer than this binary knows.
//!
//! To change the schema, append a [`Migration`] with the next version; never
//! edit one that has shipped.

use super::pool::Db;
use crate::{Location, StoreError};

/// The comment on every schema this store made: tells ours from others'.
pub(super) const MARKER: &str = "backout store: event log, snapshots, tokens, lease";

/// One step of the schema. `backout.` in the SQL stands for the store's
/// schema.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, in order; versions are 1, 2, 3, …
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "event log, snapshots, tokens, lease",
    sql: r#"
        -- The append-only log. `seq` is assigned by the store (last + 1,
        -- while holding the lock row below), so it is gap-free: never a
        -- sequence, whose numbers a rolled-back transaction would lose.
        -- `body` is JSON as text: jsonb would not keep floats bit for bit.
        CREATE TABLE backout.events (
            seq             bigint  PRIMARY KEY CHECK (seq > 0),
            batch           bigint  NOT NULL CHECK (batch > 0 AND batch <= seq),
            service         text    NOT NULL,
            kind            text    NOT NULL CHECK (kind <> ''),
            actor           text    NOT NULL,
            reason          text,
            idempotency_key text    UNIQUE,
            at_ms           bigint  NOT NULL,
            body            text    NOT NULL
        );
        CREATE INDEX events_by_service ON backout.events (service, seq);

        CREATE FUNCTION backout.append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the event log is append-only';
        END $$;
        CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON backout.events
            FOR EACH ROW EXECUTE FUNCTION backout.append_only();
        CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON backout.events
            FOR EACH STATEMENT EXECUTE FUNCTION backout.append_only();

        -- Appenders lock this row (FOR UPDATE) before reading the last seq:
        -- it serialises appends across every process on the database.
        CREATE TABLE backout.append_lock (id int PRIMARY KEY CHECK (id = 1));
        INSERT INTO backout.append_lock VALUES (1);

        -- Folds of a service's events, a cache the log can always rebuild.
        CREATE TABLE backout.snapshots (
            service   text   NOT NULL,
            up_to_seq bigint NOT NULL,
            body      text   NOT NULL,
            PRIMARY KEY (service, up_to_seq)
        );

        -- API tokens: only the SHA-256 of the secret is kept.
        CREATE TABLE backout.tokens (
            name          text   PRIMARY KEY,
            role          text   NOT NULL
                                 CHECK (role IN ('viewer', 'operator', 'admin', 'proxy')),
            secret_sha256 bytea  NOT NULL UNIQUE CHECK (octet_length(secret_sha256) = 32),
            created_at_ms bigint NOT NULL
        );

        -- The leader lease: one row, expiry on the database's clock. An
        -- empty holder means free. Writes of a fenced store lock it FOR
        -- SHARE; a campaign locks it FOR UPDATE, so a takeover waits for
        -- the writes in flight.
        CREATE TABLE backout.lease (
            id         int         PRIMARY KEY CHECK (id = 1),
            holder     text        NOT NULL,
            advertise  text        NOT NULL,
            term       bigint      NOT NULL CHECK (term >= 0),
            expires_at timestamptz NOT NULL
        );
        INSERT INTO backout.lease VALUES (1, '', '', 0, 'epoch');
        -- Fencing rests on terms only ever growing.
        CREATE FUNCTION backout.lease_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'UPDATE' THEN
                RAISE EXCEPTION 'the lease row is never deleted: its term only grows';
            END IF;
            IF NEW.term < OLD.term OR NEW.id <> OLD.id THEN
                RAISE EXCEPTION 'the lease term never goes down';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER lease_guard BEFORE UPDATE OR DELETE ON backout.lease
            FOR EACH ROW EXECUTE FUNCTION backout.lease_guard();
        CREATE TRIGGER lease_no_truncate BEFORE TRUNCATE ON backout.lease
            FOR EACH STATEMENT EXECUTE FUNCTION backout.lease_guard();
    "#,
}];

/// The schema version this binary writes to PostgreSQL.
pub const PG_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The oldest server the schema works on (`EXECUTE FUNCTION`, PostgreSQL
/// 11).
const MIN_SERVER_VERSION: i64 = 110_000;

fn foreign(location: &Location, detail: String) -> StoreError {
    StoreError::Foreign {
        location: location.clone(),
        detail,
    }
}

/// Checks the server and the database, then applies the migrations the
/// schema lacks. Runs inside one transaction (the caller's).
pub(super) fn migrate(db: &mut Db<'_>) -> Result<(), StoreError> {
    migrate_to(db, PG_SCHEMA_VERSION)
}

/// [`migrate`] up to version `target` only (for tests of old versions).
pub(super) fn migrate_to(db: &mut Db<'_>, target: i64) -> Result<(), StoreError> {
    let op = "checking the database";
    let location = db.shared.location.clone();
    let schema = db.shared.schema.clone();
    let row = db.query_one(
        op,
        "SELECT current_setting('server_version_num')::bigint, current_setting('fsync')",
        &[],
    )?;
    let version: i64 = db.get(&row, 0, || "the server version".to_owned())?;
    let fsync: String = db.get(&row, 1, || "the fsync setting".to_owned())?;
    if version < MIN_SERVER_VERSION {
        return Err(StoreError::Access {
            location,
            detail: format!("the server is PostgreSQL {version}; the store needs 11 or newer"),
        });
    }
    if fsync != "on" {
        return Err(StoreError::NotDurable {
            location,
            detail: "the server runs with fsync=off, so a crash of its machine could lose \
                     events it acknowledged; turn fsync on (postgresql.conf) and restart it"
                .to_owned(),
        });
    }

    let marker: Option<Option<String>> = db
        .query_opt(
            op,
            "SELECT obj_description(oid, 'pg_namespace') FROM pg_catalog.pg_namespace \
             WHERE nspname = $1",
            &[&schema],
        )?
        .map(|row| db.get(&row, 0, || "the schema's comment".to_owned()))
        .transpose()?;
    match marker {
        Some(Some(m)) if m == MARKER => {}
        Some(_) => {
            return Err(foreign(
                &location,
                format!("it has a schema named {schema:?} that backout did not create"),
            ));
        }
        None => {
            // Tables outside the schemas backout made belong to another
            // application: this is its database, not ours.
            let others = db.query(
                op,
                "SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                   AND n.nspname NOT LIKE 'pg\\_%' \
                   AND obj_description(n.oid, 'pg_namespace') IS DISTINCT FROM $1 \
                 ORDER BY 1 LIMIT 4",
                &[&MARKER],
            )?;
            if !others.is_empty() {
                let names: Vec<String> = others
                    .iter()
                    .map(|r| db.get::<String>(r, 0, || "a table name".to_owned()))
                    .collect::<Result<_, _>>()?;
                return Err(foreign(
                    &location,
                    format!(
                        "it is another application's database, with tables {}",
                        names.join(", ")
                    ),
                ));
            }
            let op = "creating the store's schema";
            // The identifier was checked at open: letters, digits, `_`.
            db.batch(
                op,
                &format!(
                    "CREATE SCHEMA {schema}; COMMENT ON SCHEMA {schema} IS '{MARKER}'; \
                     CREATE TABLE backout.schema_version (version bigint PRIMARY KEY, \
                     name text NOT NULL);"
                ),
            )?;
        }
    }

    let op = "migrating the schema";
    db.batch(op, "LOCK TABLE backout.schema_version IN EXCLUSIVE MODE")?;
    let row = db.query_one(
        op,
        "SELECT COALESCE(MAX(version), 0) FROM backout.schema_version",
        &[],
    )?;
    let found: i64 = db.get(&row, 0, || "the schema version".to_owned())?;
    if found > PG_SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            location,
            found,
            known: PG_SCHEMA_VERSION,
        });
    }
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version > found && m.version <= target)
    {
        db.batch(op, m.sql)?;
        db.execute(
            op,
            "INSERT INTO backout.schema_version (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )?;
    }
    Ok(())
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

    /// The schema's name is swapped in for `backout.`: no other text of
    /// the migrations may contain it.
    #[test]
    fn only_qualified_names_say_backout_dot() {
        for m in MIGRATIONS {
            for (i, _) in m.sql.match_indices("backout.") {
                let next = &m.sql[i + "backout.".len()..];
                assert!(
                    next.starts_with(|c: char| c.is_ascii_lowercase()),
                    "{:?}: {}",
                    m.name,
                    &m.sql[i..i + 30]
                );
            }
        }
    }
}
