//! Opening PostgreSQL databases, good and bad, and the server's faults:
//! every failure is an error that names the database (never its password)
//! and says what to do, never a panic, and the store recovers by itself
//! when the server comes back.

use std::sync::Arc;
use std::time::Duration;

use backout_store::{
    EventLog, Leases, NewEvent, PG_SCHEMA_VERSION, PgOptions, PgStore, Store, Tokens,
};
use serde_json::json;

use crate::support::{
    PrivateServer, fresh_schema, pg_options, postgres_admin_url, postgres_test_url, with_database,
};
use crate::{TestStore, variant};

fn ev(n: i64) -> NewEvent {
    NewEvent::new("web", "test.event", "test", n, json!({"n": n}))
}

fn raw(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

/// Opens `schema` in the test database and returns the error's variant
/// (or `ok`), checking that its message says `says`.
fn open_says(url: &str, schema: &str, says: &str) -> String {
    match PgStore::open_with(url, &pg_options(schema)) {
        Ok(store) => {
            store.append(vec![ev(0)]).unwrap();
            "ok".to_owned()
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(says), "message {msg:?} lacks {says:?}");
            variant(&e)
        }
    }
}

#[test]
fn opening_fresh_and_existing_schemas() {
    let Some(url) = postgres_test_url() else {
        return;
    };
    let schema = fresh_schema();
    assert_eq!(open_says(&url, &schema, ""), "ok");
    // Again: nothing to migrate, the data is there.
    let store = PgStore::open_with(&url, &pg_options(&schema)).unwrap();
    assert_eq!(store.last_seq().unwrap(), 1);
    let versions: Vec<i64> = raw(&url)
        .query(
            &format!("SELECT version FROM {schema}.schema_version ORDER BY version"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=PG_SCHEMA_VERSION).collect::<Vec<_>>());
    raw(&url)
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
}

#[test]
fn foreign_and_newer_databases_are_refused_untouched() {
    let Some(url) = postgres_test_url() else {
        return;
    };
    // A schema of the store's name that backout did not make.
    let schema = fresh_schema();
    raw(&url)
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    assert_eq!(
        open_says(
            &url,
            &schema,
            &format!(
                "is not a backout database (it has a schema named \"{schema}\" that backout did not create); give backout a database of its own"
            )
        ),
        "!Foreign"
    );
    let tables: i64 = raw(&url)
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1",
            &[&schema],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "the refused schema was written to");
    raw(&url)
        .batch_execute(&format!("DROP SCHEMA {schema}"))
        .unwrap();

    // Another application's database.
    let admin = postgres_admin_url().unwrap();
    let app = with_database(&admin, "backout_store_tests_app");
    if raw(&admin)
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = 'backout_store_tests_app'",
            &[],
        )
        .unwrap()
        .is_none()
    {
        let _ = raw(&admin).batch_execute("CREATE DATABASE backout_store_tests_app");
    }
    raw(&app)
        .batch_execute("CREATE TABLE IF NOT EXISTS public.customers (id int)")
        .unwrap();
    assert_eq!(
        open_says(
            &app,
            "backout",
            "is not a backout database (it is another application's database, with tables public.customers)"
        ),
        "!Foreign"
    );
    let ours: i64 = raw(&app)
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'backout'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(ours, 0, "the refused database was written to");

    // A newer schema.
    let schema = fresh_schema();
    drop(PgStore::open_with(&url, &pg_options(&schema)).unwrap());
    raw(&url)
        .batch_execute(&format!(
            "INSERT INTO {schema}.schema_version VALUES (99, 'from the future')"
        ))
        .unwrap();
    assert_eq!(
        open_says(
            &url,
            &schema,
            &format!(
                "has schema version 99, newer than this backout understands (up to {PG_SCHEMA_VERSION}); upgrade backout"
            )
        ),
        "!TooNew"
    );
    raw(&url)
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
}

#[test]
fn concurrent_openers_create_the_schema_once() {
    let Some(url) = postgres_test_url() else {
        return;
    };
    let schema = fresh_schema();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| PgStore::open_with(&url, &pg_options(&schema)).map(|_| ())))
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    });
    let rows: i64 = raw(&url)
        .query_one(
            &format!("SELECT count(*) FROM {schema}.schema_version"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(rows, PG_SCHEMA_VERSION);
    raw(&url)
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
}

#[test]
fn the_log_is_append_only_even_to_raw_sql() {
    let Some(t) = TestStore::postgres() else {
        return;
    };
    t.append(vec![ev(1)]).unwrap();
    for sql in [
        "UPDATE events SET kind = 'forged'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let err = t.raw_execute(sql).unwrap_err();
        assert!(err.contains("the event log is append-only"), "{sql}: {err}");
    }
    assert_eq!(t.read(0, 10).unwrap().len(), 1);
}

#[test]
fn undecodable_rows_are_errors() {
    let Some(t) = TestStore::postgres() else {
        return;
    };
    t.append(vec![ev(1)]).unwrap();
    t.raw_execute(
        "INSERT INTO events (seq, batch, service, kind, actor, at_ms, body) \
         VALUES (2, 2, 'web', 'x', 'intruder', 0, '{not json')",
    )
    .unwrap();
    let err = t.read(0, 10).unwrap_err();
    assert_eq!(variant(&err), "!Decode");
    assert!(
        err.to_string()
            .starts_with("the body of event 2 in postgres://"),
        "{err}"
    );
    assert_eq!(t.read(0, 1).unwrap().len(), 1);
    // The next append goes after the intruder's row: seqs stay unique.
    assert_eq!(t.append(vec![ev(3)]).unwrap()[0].event.seq, 3);
}

#[test]
fn a_held_lock_is_a_busy_error_that_says_so() {
    let Some(url) = postgres_test_url() else {
        return;
    };
    let schema = fresh_schema();
    let options = PgOptions {
        lock_timeout: Duration::from_millis(100),
        ..pg_options(&schema)
    };
    let store = PgStore::open_with(&url, &options).unwrap();
    let mut other = raw(&url);
    let mut tx = other.transaction().unwrap();
    tx.batch_execute(&format!("SELECT * FROM {schema}.append_lock FOR UPDATE"))
        .unwrap();
    let err = store.append(vec![ev(1)]).unwrap_err();
    assert_eq!(variant(&err), "!Busy");
    assert!(
        err.to_string()
            .contains("is locked (while appending events; waited 100 ms)"),
        "{err}"
    );
    // Reads do not wait for writers.
    assert_eq!(store.last_seq().unwrap(), 0);
    tx.commit().unwrap();
    assert_eq!(store.append(vec![ev(1)]).unwrap()[0].event.seq, 1);
    raw(&url)
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
}

#[test]
fn an_unreachable_server_is_an_error_without_the_password() {
    if postgres_admin_url().is_none() {
        return;
    }
    // Nothing listens on port 1.
    let err = PgStore::open("postgres://backout:hunter2@127.0.0.1:1/backout").unwrap_err();
    assert_eq!(variant(&err), "!Unreachable");
    let msg = err.to_string();
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(
        msg.starts_with(
            "cannot reach the database postgres://backout:***@127.0.0.1:1/backout while \
             opening the store"
        ),
        "{msg}"
    );
    // Through `open`, too.
    let err = backout_store::open("postgresql://backout:hunter2@127.0.0.1:1/backout").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn wrong_credentials_say_what_to_check() {
    let Some(url) = postgres_test_url() else {
        return;
    };
    let bad = with_database(&url, "no_such_database_here");
    let err = PgStore::open(&bad).unwrap_err();
    assert_eq!(variant(&err), "!Access");
    assert!(
        err.to_string()
            .contains("check the user, password and database name in the URL"),
        "{err}"
    );
}

/// The store is safe to call from inside an async task: the `postgres`
/// client would panic there if the store ran it on the caller's thread.
#[test]
fn callable_from_an_async_task() {
    let Some(url) = postgres_test_url() else {
        return;
    };
    let schema = fresh_schema();
    let rt = tokio_runtime();
    let store: Arc<dyn Store> = rt.block_on(async {
        let store = Arc::new(PgStore::open_with(&url, &pg_options(&schema)).unwrap());
        store.append(vec![ev(1)]).unwrap();
        store
            .create_token("ci", backout_store::Role::Operator, 0)
            .unwrap();
        store
    });
    assert_eq!(store.last_seq().unwrap(), 1);
    drop(store);
    raw(&url)
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap()
}

/// A server of the test's own: stopped, the store's calls fail with
/// `Unreachable`; started again, the next call works with no help. Then a
/// server running with fsync off is refused.
#[test]
fn a_restarted_server_is_an_error_then_works_again() {
    let Some(server) = PrivateServer::start(&[]) else {
        return;
    };
    let store = PgStore::open(&server.url).unwrap();
    store.append(vec![ev(1)]).unwrap();
    store
        .create_token("root", backout_store::Role::Admin, 0)
        .unwrap();
    let candidate = PgStore::open(&server.url).unwrap();
    let me = backout_store::Candidate::new("ha-1", "http://ha-1");

    server.stop();
    // A campaign during the outage fails, and fences the store: it writes
    // only once it has won.
    let err = candidate
        .campaign(&me, Duration::from_secs(10))
        .unwrap_err();
    assert_eq!(variant(&err), "!Unreachable", "{err}");
    let err = store.append(vec![ev(2)]).unwrap_err();
    assert_eq!(variant(&err), "!Unreachable", "{err}");
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{}", server.port)),
        "{err}"
    );
    assert_eq!(variant(&store.read(0, 10).unwrap_err()), "!Unreachable");
    assert_eq!(variant(&store.list_tokens().unwrap_err()), "!Unreachable");

    server.start_again(&[]);
    // Every connection of the store finds out by itself.
    for n in 2..6 {
        assert_eq!(store.append(vec![ev(n)]).unwrap()[0].event.seq, n);
    }
    let all = store.read(0, 10).unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(store.list_tokens().unwrap().len(), 1);

    assert_eq!(
        variant(&candidate.append(vec![ev(9)]).unwrap_err()),
        "!Fenced"
    );
    assert_eq!(
        candidate.campaign(&me, Duration::from_secs(10)).unwrap(),
        backout_store::Leadership::Leader { term: 1 }
    );
    assert_eq!(candidate.append(vec![ev(6)]).unwrap()[0].event.seq, 6);

    server.stop();
    server.start_again(&["-c fsync=off"]);
    let err = PgStore::open(&server.url).unwrap_err();
    assert_eq!(variant(&err), "!NotDurable");
    assert!(err.to_string().contains("turn fsync on"), "{err}");
}
