//! [`EventLog`] on SQLite.

use rusqlite::{Connection, OptionalExtension, Row};

use super::SqliteStore;
use super::errors::Ctx;
use crate::{Appended, EventLog, NewEvent, StoreError, StoredEvent};

const COLUMNS: &str = "seq, batch, service, kind, actor, reason, idempotency_key, at_ms, body";

/// A row as SQLite returns it; the body is decoded outside the row callback
/// so a damaged body becomes a [`StoreError::Decode`] naming its seq.
type RawRow = (StoredEvent, String);

fn raw(row: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        StoredEvent {
            seq: row.get(0)?,
            batch: row.get(1)?,
            service: row.get(2)?,
            kind: row.get(3)?,
            actor: row.get(4)?,
            reason: row.get(5)?,
            idempotency_key: row.get(6)?,
            at_ms: row.get(7)?,
            body: serde_json::Value::Null,
        },
        row.get(8)?,
    ))
}

fn decode(ctx: &Ctx<'_>, (mut event, body): RawRow) -> Result<StoredEvent, StoreError> {
    event.body = serde_json::from_str(&body)
        .map_err(|e| ctx.decode(format!("the body of event {}", event.seq), e))?;
    Ok(event)
}

fn query(
    ctx: &Ctx<'_>,
    conn: &Connection,
    op: &'static str,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(|e| ctx.err(op, e))?;
    let rows = stmt
        .query_map(params, raw)
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ctx.err(op, e))?;
    rows.into_iter().map(|r| decode(ctx, r)).collect()
}

fn by_key(ctx: &Ctx<'_>, conn: &Connection, key: &str) -> Result<Option<StoredEvent>, StoreError> {
    let op = "looking up an idempotency key";
    let sql = format!("SELECT {COLUMNS} FROM events WHERE idempotency_key = ?1");
    let mut stmt = conn.prepare_cached(&sql).map_err(|e| ctx.err(op, e))?;
    let row = stmt
        .query_row([key], raw)
        .optional()
        .map_err(|e| ctx.err(op, e))?;
    row.map(|r| decode(ctx, r)).transpose()
}

pub(super) fn last_seq(ctx: &Ctx<'_>, conn: &Connection) -> Result<i64, StoreError> {
    conn.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(|e| ctx.err("reading the last seq", e))
}

/// SQLite's LIMIT is an i64; a larger `usize` means "no limit".
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl EventLog for SqliteStore {
    fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, StoreError> {
        for (i, ev) in events.iter().enumerate() {
            ev.validate(i)?;
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        if events.iter().all(|e| e.idempotency_key.is_some()) {
            // A retry of a batch stored earlier: answered from a read.
            let stored = self.read(|ctx, conn| {
                let mut stored = std::collections::HashMap::new();
                for key in events.iter().filter_map(|e| e.idempotency_key.as_deref()) {
                    if let Some(e) = by_key(ctx, conn, key)? {
                        stored.insert(key.to_owned(), e);
                    }
                }
                Ok(stored)
            })?;
            if let Some(answer) = crate::event::all_duplicates(&events, &stored) {
                return answer;
            }
        }
        let op = "appending events";
        self.write(op, |ctx, tx| {
            // The immediate transaction holds the write lock, so no other
            // writer can take `last + 1` between this read and the inserts.
            let batch = last_seq(ctx, tx)? + 1;
            let mut next = batch;
            let mut out = Vec::with_capacity(events.len());
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (seq, batch, service, kind, actor, reason, \
                     idempotency_key, at_ms, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(|e| ctx.err(op, e))?;
            for ev in events {
                if let Some(key) = &ev.idempotency_key
                    && let Some(stored) = by_key(ctx, tx, key)?
                {
                    if stored.service != ev.service || stored.kind != ev.kind {
                        return Err(crate::event::key_reused(&ev, &stored));
                    }
                    out.push(Appended {
                        event: stored,
                        duplicate: true,
                    });
                    continue;
                }
                let body = serde_json::to_string(&ev.body).map_err(|e| StoreError::Backend {
                    location: ctx.location(),
                    op,
                    source: Box::new(e),
                })?;
                insert
                    .execute((
                        next,
                        batch,
                        &ev.service,
                        &ev.kind,
                        &ev.actor,
                        &ev.reason,
                        &ev.idempotency_key,
                        ev.at_ms,
                        &body,
                    ))
                    .map_err(|e| ctx.err(op, e))?;
                out.push(Appended {
                    event: StoredEvent {
                        seq: next,
                        batch,
                        service: ev.service,
                        kind: ev.kind,
                        actor: ev.actor,
                        reason: ev.reason,
                        idempotency_key: ev.idempotency_key,
                        at_ms: ev.at_ms,
                        body: ev.body,
                    },
                    duplicate: false,
                });
                next += 1;
            }
            Ok(out)
        })
    }

    fn read(&self, after_seq: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(|ctx, conn| {
            query(
                ctx,
                conn,
                "reading events",
                &format!("SELECT {COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"),
                (after_seq, sql_limit(limit)),
            )
        })
    }

    fn read_service(
        &self,
        service: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.read(|ctx, conn| {
            query(
                ctx,
                conn,
                "reading a service's events",
                &format!(
                    "SELECT {COLUMNS} FROM events WHERE service = ?1 AND seq > ?2 \
                     ORDER BY seq LIMIT ?3"
                ),
                (service, after_seq, sql_limit(limit)),
            )
        })
    }

    fn read_newest(
        &self,
        service: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut newest = self.read(|ctx, conn| match service {
            Some(service) => query(
                ctx,
                conn,
                "reading a service's newest events",
                &format!(
                    "SELECT {COLUMNS} FROM events WHERE service = ?1 \
                     ORDER BY seq DESC LIMIT ?2"
                ),
                (service, sql_limit(limit)),
            ),
            None => query(
                ctx,
                conn,
                "reading the newest events",
                &format!("SELECT {COLUMNS} FROM events ORDER BY seq DESC LIMIT ?1"),
                (sql_limit(limit),),
            ),
        })?;
        newest.reverse();
        Ok(newest)
    }

    fn find_key(&self, key: &str) -> Result<Option<StoredEvent>, StoreError> {
        self.read(|ctx, conn| by_key(ctx, conn, key))
    }

    fn last_seq(&self) -> Result<i64, StoreError> {
        self.read(last_seq)
    }
}
