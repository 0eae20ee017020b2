//! The connections of a [`super::PgStore`], each owned by a thread of its
//! own.
//!
//! The synchronous `postgres` client drives each connection with a small
//! tokio runtime of its own, and starting a runtime inside another one
//! panics. So callers never touch a connection: they send a job down a
//! channel to one of a few dedicated threads and wait for its answer. That
//! makes the store safe to call from any thread, an async worker included
//! (it blocks that worker for the call, like any blocking call would).
//!
//! Each thread connects when it first gets a job and again whenever its
//! connection was lost (the server restarted, the network failed): the call
//! that finds the server gone gets an error, and the first one after it is
//! back works.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

use super::errors;
use crate::{Location, StoreError};

/// What every connection of one store shares.
pub(super) struct Shared {
    pub config: postgres::Config,
    pub location: Location,
    /// The PostgreSQL schema (namespace) holding the store's tables; a
    /// checked identifier, safe to put in SQL text.
    pub schema: String,
    /// Starts a write transaction with the settings the store's promises
    /// rest on, set per transaction so that they hold behind a pooler too.
    pub begin: String,
    pub lock_timeout_ms: u64,
}

impl Shared {
    /// SQL text with the store's schema in place of `backout.`.
    pub fn sql(&self, template: &str) -> String {
        if self.schema == "backout" {
            template.to_owned()
        } else {
            template.replace("backout.", &format!("{}.", self.schema))
        }
    }

    pub fn err(&self, op: &'static str, e: postgres::Error) -> StoreError {
        errors::classify(&self.location, op, e, self.lock_timeout_ms)
    }
}

/// A live connection and the statements prepared on it.
struct Live {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

/// One thread's connection, made on first use and again after a loss.
pub(super) struct Conn {
    shared: Arc<Shared>,
    live: Option<Live>,
}

/// A connection inside a call: runs the store's SQL.
pub(super) struct Db<'a> {
    client: &'a mut Client,
    statements: &'a mut HashMap<&'static str, Statement>,
    pub shared: &'a Shared,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl Db<'_> {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(&self.shared.sql(sql))?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    pub fn query(
        &mut self,
        op: &'static str,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        let out = self
            .statement(sql)
            .and_then(|s| self.client.query(&s, params));
        out.map_err(|e| self.shared.err(op, e))
    }

    pub fn query_one(
        &mut self,
        op: &'static str,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Row, StoreError> {
        let out = self
            .statement(sql)
            .and_then(|s| self.client.query_one(&s, params));
        out.map_err(|e| self.shared.err(op, e))
    }

    pub fn query_opt(
        &mut self,
        op: &'static str,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let out = self
            .statement(sql)
            .and_then(|s| self.client.query_opt(&s, params));
        out.map_err(|e| self.shared.err(op, e))
    }

    pub fn execute(
        &mut self,
        op: &'static str,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<u64, StoreError> {
        let out = self
            .statement(sql)
            .and_then(|s| self.client.execute(&s, params));
        out.map_err(|e| self.shared.err(op, e))
    }

    /// Runs several statements without parameters (the schema's DDL).
    pub fn batch(&mut self, op: &'static str, sql: &str) -> Result<(), StoreError> {
        let sql = self.shared.sql(sql);
        self.client
            .batch_execute(&sql)
            .map_err(|e| self.shared.err(op, e))
    }

    /// A column of a row, or a [`StoreError::Decode`] naming `what`.
    pub fn get<'r, T: postgres::types::FromSql<'r>>(
        &self,
        row: &'r Row,
        index: usize,
        what: impl FnOnce() -> String,
    ) -> Result<T, StoreError> {
        row.try_get(index).map_err(|e| StoreError::Decode {
            location: self.shared.location.clone(),
            what: what(),
            detail: e.to_string(),
        })
    }
}

impl Conn {
    fn live(&mut self, op: &'static str) -> Result<&mut Live, StoreError> {
        if self.live.as_ref().is_some_and(|l| l.client.is_closed()) {
            self.live = None;
        }
        match &mut self.live {
            Some(live) => Ok(live),
            slot @ None => {
                let client = self
                    .shared
                    .config
                    .connect(NoTls)
                    .map_err(|e| self.shared.err(op, e))?;
                Ok(slot.insert(Live {
                    client,
                    statements: HashMap::new(),
                }))
            }
        }
    }

    /// Forgets a connection the server closed, so the next call connects.
    fn forget_if_closed(&mut self) {
        if self.live.as_ref().is_some_and(|l| l.client.is_closed()) {
            self.live = None;
        }
    }

    /// Runs `f` in a transaction, committing on `Ok` and rolling back on
    /// `Err`. A commit that returns is durable (`synchronous_commit=on`).
    ///
    /// A connection found dead at `BEGIN` (the server restarted since the
    /// last call) is replaced once: nothing was sent yet, so that retry is
    /// safe. A failure after `BEGIN` is returned as it is.
    pub fn transaction<T>(
        &mut self,
        op: &'static str,
        f: impl FnOnce(&mut Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let shared = Arc::clone(&self.shared);
        let begun = self.begin(op, &shared);
        begun?;
        let Some(live) = self.live.as_mut() else {
            return Err(stopped(&shared, op));
        };
        let mut db = Db {
            client: &mut live.client,
            statements: &mut live.statements,
            shared: &shared,
        };
        let out = match f(&mut db) {
            Ok(value) => db
                .client
                .batch_execute("COMMIT")
                .map(|()| value)
                .map_err(|e| shared.err(op, e)),
            Err(e) => {
                // A rollback that fails leaves a broken connection, which
                // is forgotten below.
                let _ = db.client.batch_execute("ROLLBACK");
                Err(e)
            }
        };
        self.forget_if_closed();
        out
    }

    fn begin(&mut self, op: &'static str, shared: &Shared) -> Result<(), StoreError> {
        let first = self.live(op)?.client.batch_execute(&shared.begin);
        match first {
            Ok(()) => Ok(()),
            Err(e) if e.is_closed() || self.live.as_ref().is_some_and(|l| l.client.is_closed()) => {
                self.live = None;
                self.live(op)?
                    .client
                    .batch_execute(&shared.begin)
                    .map_err(|e| shared.err(op, e))
                    .inspect_err(|_| self.forget_if_closed())
            }
            Err(e) => Err(shared.err(op, e)),
        }
    }

    /// Runs a read without a transaction. Reads change nothing, so a read
    /// on a connection that turns out dead is retried once on a new one.
    pub fn read<T>(
        &mut self,
        op: &'static str,
        mut f: impl FnMut(&mut Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let shared = Arc::clone(&self.shared);
        for attempt in 0..2 {
            let live = self.live(op)?;
            let mut db = Db {
                client: &mut live.client,
                statements: &mut live.statements,
                shared: &shared,
            };
            let out = f(&mut db);
            let closed = live.client.is_closed();
            if closed {
                self.live = None;
            }
            match out {
                Err(StoreError::Unreachable { .. }) if closed && attempt == 0 => {}
                out => return out,
            }
        }
        Err(stopped(&shared, op))
    }
}

fn stopped(shared: &Shared, op: &'static str) -> StoreError {
    StoreError::Backend {
        location: shared.location.clone(),
        op,
        source: "the store's connection thread stopped".into(),
    }
}

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// A few threads, each with its connection, fed by one channel.
pub(super) struct Pool {
    shared: Arc<Shared>,
    jobs: Option<mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    pub fn new(shared: Arc<Shared>, size: usize) -> Result<Pool, StoreError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let mut workers = Vec::with_capacity(size);
        for i in 0..size.max(1) {
            let queue = Arc::clone(&queue);
            let mut conn = Conn {
                shared: Arc::clone(&shared),
                live: None,
            };
            let worker = std::thread::Builder::new()
                .name(format!("backout-pg-{i}"))
                .spawn(move || {
                    loop {
                        // A poisoned queue lock only means another worker
                        // panicked while waiting; the receiver is intact.
                        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok(job) = job else { break };
                        // A panicking job (a bug) must not take the thread
                        // down; its caller sees a dropped answer.
                        if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn))).is_err() {
                            conn.live = None;
                        }
                    }
                })
                .map_err(|e| StoreError::Backend {
                    location: shared.location.clone(),
                    op: "starting the store's connection threads",
                    source: Box::new(e),
                })?;
            workers.push(worker);
        }
        Ok(Pool {
            shared,
            jobs: Some(jobs),
            workers,
        })
    }

    /// Runs `f` on one of the connection threads and waits for its answer.
    pub fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn| {
            let _ = answer.send(f(conn));
        });
        let Some(jobs) = &self.jobs else {
            return Err(stopped(&self.shared, op));
        };
        jobs.send(job).map_err(|_| stopped(&self.shared, op))?;
        answered
            .recv()
            .unwrap_or_else(|_| Err(stopped(&self.shared, op)))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the channel ends every worker once its job is done; their
        // connections close with them.
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
