//! [`EventLog`] on PostgreSQL.

use std::collections::HashMap;

use postgres::Row;

use super::PgStore;
use super::pool::Db;
use crate::{Appended, EventLog, NewEvent, StoreError, StoredEvent};

/// A query of whole events, in the column order [`decode`] reads.
macro_rules! select {
    ($rest:literal) => {
        concat!(
            "SELECT seq, batch, service, kind, actor, reason, idempotency_key, at_ms, body \
             FROM backout.events ",
            $rest
        )
    };
}

fn decode(db: &Db<'_>, row: &Row) -> Result<StoredEvent, StoreError> {
    let seq: i64 = db.get(row, 0, || "the seq of an event".to_owned())?;
    let what = |field: &'static str| move || format!("the {field} of event {seq}");
    let body: String = db.get(row, 8, what("body"))?;
    let body = serde_json::from_str(&body).map_err(|e| StoreError::Decode {
        location: db.shared.location.clone(),
        what: format!("the body of event {seq}"),
        detail: e.to_string(),
    })?;
    Ok(StoredEvent {
        seq,
        batch: db.get(row, 1, what("batch"))?,
        service: db.get(row, 2, what("service"))?,
        kind: db.get(row, 3, what("kind"))?,
        actor: db.get(row, 4, what("actor"))?,
        reason: db.get(row, 5, what("reason"))?,
        idempotency_key: db.get(row, 6, what("idempotency key"))?,
        at_ms: db.get(row, 7, what("time"))?,
        body,
    })
}

fn decode_all(db: &Db<'_>, rows: &[Row]) -> Result<Vec<StoredEvent>, StoreError> {
    rows.iter().map(|r| decode(db, r)).collect()
}

/// PostgreSQL's LIMIT is a bigint; a larger `usize` means "no limit".
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(super) fn last_seq(db: &mut Db<'_>) -> Result<i64, StoreError> {
    let row = db.query_one(
        "reading the last seq",
        "SELECT COALESCE(MAX(seq), 0) FROM backout.events",
        &[],
    )?;
    db.get(&row, 0, || "the last seq".to_owned())
}

/// The idempotency keys of a batch.
fn keys(events: &[NewEvent]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| e.idempotency_key.as_deref())
        .collect()
}

/// The stored events of a batch's keys, by key, in one round trip.
fn by_keys(db: &mut Db<'_>, keys: &[&str]) -> Result<HashMap<String, StoredEvent>, StoreError> {
    let mut stored = HashMap::new();
    if !keys.is_empty() {
        let rows = db.query(
            "looking up idempotency keys",
            select!("WHERE idempotency_key = ANY($1)"),
            &[&keys.to_vec()],
        )?;
        for e in decode_all(db, &rows)? {
            if let Some(k) = e.idempotency_key.clone() {
                stored.insert(k, e);
            }
        }
    }
    Ok(stored)
}

/// The append itself, inside the (fenced) transaction.
fn append(db: &mut Db<'_>, events: Vec<NewEvent>) -> Result<Vec<Appended>, StoreError> {
    let op = "appending events";
    // Every appender of every process takes this lock first, so nobody
    // else can take `last + 1` until this transaction ends. The last seq
    // is read by a statement of its own, after the lock is granted: under
    // READ COMMITTED it then sees whatever the previous holder committed.
    db.execute(
        op,
        "SELECT id FROM backout.append_lock WHERE id = 1 FOR UPDATE",
        &[],
    )?;
    let batch = last_seq(db)? + 1;

    let mut stored = by_keys(db, &keys(&events))?;

    let mut out = Vec::with_capacity(events.len());
    let mut next = batch;
    let mut columns = Columns::default();
    for ev in events {
        if let Some(key) = &ev.idempotency_key
            && let Some(earlier) = stored.get(key)
        {
            if earlier.service != ev.service || earlier.kind != ev.kind {
                return Err(crate::event::key_reused(&ev, earlier));
            }
            out.push(Appended {
                event: earlier.clone(),
                duplicate: true,
            });
            continue;
        }
        let body = serde_json::to_string(&ev.body).map_err(|e| StoreError::Backend {
            location: db.shared.location.clone(),
            op,
            source: Box::new(e),
        })?;
        let event = StoredEvent {
            seq: next,
            batch,
            service: ev.service,
            kind: ev.kind,
            actor: ev.actor,
            reason: ev.reason,
            idempotency_key: ev.idempotency_key,
            at_ms: ev.at_ms,
            body: ev.body,
        };
        columns.push(&event, body);
        if let Some(k) = &event.idempotency_key {
            // A key repeated later in the batch is a duplicate of this one.
            stored.insert(k.clone(), event.clone());
        }
        out.push(Appended {
            event,
            duplicate: false,
        });
        next += 1;
    }
    if !columns.seq.is_empty() {
        // The whole batch in one statement.
        db.execute(
            op,
            "INSERT INTO backout.events \
                 (seq, batch, service, kind, actor, reason, idempotency_key, at_ms, body) \
             SELECT seq, $2::bigint, service, kind, actor, reason, key, at_ms, body \
             FROM unnest($1::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], \
                         $7::text[], $8::bigint[], $9::text[]) \
                  AS u(seq, service, kind, actor, reason, key, at_ms, body)",
            &[
                &columns.seq,
                &batch,
                &columns.service,
                &columns.kind,
                &columns.actor,
                &columns.reason,
                &columns.key,
                &columns.at_ms,
                &columns.body,
            ],
        )?;
    }
    Ok(out)
}

/// The new events of a batch, column by column (for `unnest`).
#[derive(Default)]
struct Columns {
    seq: Vec<i64>,
    service: Vec<String>,
    kind: Vec<String>,
    actor: Vec<String>,
    reason: Vec<Option<String>>,
    key: Vec<Option<String>>,
    at_ms: Vec<i64>,
    body: Vec<String>,
}

impl Columns {
    fn push(&mut self, e: &StoredEvent, body: String) {
        self.seq.push(e.seq);
        self.service.push(e.service.clone());
        self.kind.push(e.kind.clone());
        self.actor.push(e.actor.clone());
        self.reason.push(e.reason.clone());
        self.key.push(e.idempotency_key.clone());
        self.at_ms.push(e.at_ms);
        self.body.push(body);
    }
}

impl EventLog for PgStore {
    fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, StoreError> {
        for (i, ev) in events.iter().enumerate() {
            ev.validate(i)?;
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        if events.iter().all(|e| e.idempotency_key.is_some()) {
            // A retry of a batch stored earlier: answered from a read,
            // without a commit.
            let keys: Vec<String> = keys(&events).into_iter().map(str::to_owned).collect();
            let stored = self.read("appending events", move |db| {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                by_keys(db, &keys)
            })?;
            if let Some(answer) = crate::event::all_duplicates(&events, &stored) {
                return answer;
            }
        }
        self.write("appending events", move |db| append(db, events))
    }

    fn read(&self, after_seq: i64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let limit = sql_limit(limit);
        self.read("reading events", move |db| {
            let rows = db.query(
                "reading events",
                select!("WHERE seq > $1 ORDER BY seq LIMIT $2"),
                &[&after_seq, &limit],
            )?;
            decode_all(db, &rows)
        })
    }

    fn read_service(
        &self,
        service: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let limit = sql_limit(limit);
        let service = service.to_owned();
        let op = "reading a service's events";
        self.read(op, move |db| {
            if service.contains('\0') {
                // No stored service can contain NUL, and the server would
                // refuse the text.
                return Ok(Vec::new());
            }
            let rows = db.query(
                op,
                select!("WHERE service = $1 AND seq > $2 ORDER BY seq LIMIT $3"),
                &[&service, &after_seq, &limit],
            )?;
            decode_all(db, &rows)
        })
    }

    fn read_newest(
        &self,
        service: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let limit = sql_limit(limit);
        let service = service.map(str::to_owned);
        let op = "reading the newest events";
        let mut newest = self.read(op, move |db| {
            let rows = match &service {
                // No stored service can contain NUL, and the server would
                // refuse the text.
                Some(s) if s.contains('\0') => return Ok(Vec::new()),
                Some(s) => db.query(
                    op,
                    select!("WHERE service = $1 ORDER BY seq DESC LIMIT $2"),
                    &[s, &limit],
                )?,
                None => db.query(op, select!("ORDER BY seq DESC LIMIT $1"), &[&limit])?,
            };
            decode_all(db, &rows)
        })?;
        newest.reverse();
        Ok(newest)
    }

    fn find_key(&self, key: &str) -> Result<Option<StoredEvent>, StoreError> {
        let key = key.to_owned();
        let op = "looking up an idempotency key";
        self.read(op, move |db| {
            if key.contains('\0') {
                return Ok(None);
            }
            let row = db.query_opt(op, select!("WHERE idempotency_key = $1"), &[&key])?;
            row.map(|r| decode(db, &r)).transpose()
        })
    }

    fn last_seq(&self) -> Result<i64, StoreError> {
        self.read("reading the last seq", last_seq)
    }
}
