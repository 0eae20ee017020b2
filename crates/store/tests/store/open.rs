//! Opening SQLite files, good and bad, and failing writes: every failure is
//! an error that names the file and says what to do, never a panic.
//! (PostgreSQL's counterparts are in `open_postgres.rs`.)

use std::path::Path;
use std::time::Duration;

use backout_store::{EventLog, NewEvent, Options, SCHEMA_VERSION, SqliteStore, StoreError};
use rusqlite::Connection;
use serde_json::json;

use crate::variant;

/// Prepares a file with `setup`, opens it, and compares the error variant
/// (or `ok`) and checks that the message contains `says`.
fn check(setup: impl FnOnce(&Path), expected: &str, says: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backout.db");
    setup(&path);
    let got = match SqliteStore::open(&path) {
        Ok(store) => {
            // An opened store works.
            store.append(vec![ev(0)]).unwrap();
            "ok".to_owned()
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(says), "message {msg:?} lacks {says:?}");
            variant(&e)
        }
    };
    assert_eq!(got, expected);
}

fn ev(n: i64) -> NewEvent {
    NewEvent::new(
        "web",
        "test.event",
        "test",
        n,
        json!({"n": n, "pad": "p".repeat(500)}),
    )
}

fn sqlite(path: &Path, sql: &str) {
    Connection::open(path).unwrap().execute_batch(sql).unwrap();
}

#[test]
fn opening() {
    check(|_| {}, "ok", "");
    check(|p| std::fs::write(p, b"").unwrap(), "ok", "");
    check(
        |p| {
            drop(SqliteStore::open(p).unwrap());
        },
        "ok",
        "",
    );
    check(
        |p| std::fs::write(p, b"hello, I am a text file\n".repeat(100)).unwrap(),
        "!Foreign",
        "is not a backout database (not an SQLite file",
    );
    check(
        |p| sqlite(p, "CREATE TABLE customers (id INTEGER);"),
        "!Foreign",
        "is an SQLite database with other tables: customers",
    );
    check(
        |p| sqlite(p, "PRAGMA application_id = 42; CREATE TABLE t (x);"),
        "!Foreign",
        "another program's SQLite database (application id 0x0000002a)",
    );
    check(
        |p| {
            drop(SqliteStore::open(p).unwrap());
            sqlite(
                p,
                "INSERT INTO backout_schema VALUES (99, 'from the future');",
            );
        },
        "!TooNew",
        &format!(
            "has schema version 99, newer than this backout understands (up to {SCHEMA_VERSION}); upgrade backout"
        ),
    );
    check(|p| std::fs::create_dir(p).unwrap(), "!Access", "backout.db");
}

#[test]
fn creates_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/backout.db");
    SqliteStore::open(&path)
        .unwrap()
        .append(vec![ev(1)])
        .unwrap();
    assert!(path.is_file());
    let mode: String = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_parent_that_is_a_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data"), b"x").unwrap();
    let err = SqliteStore::open(dir.path().join("data/backout.db")).unwrap_err();
    assert_eq!(variant(&err), "!CreateDir");
    assert!(
        err.to_string()
            .starts_with("cannot create the data directory"),
        "{err}"
    );
}

#[test]
fn refused_files_are_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backout.db");
    sqlite(
        &path,
        "CREATE TABLE customers (id INTEGER); INSERT INTO customers VALUES (7);",
    );
    let before = std::fs::read(&path).unwrap();
    SqliteStore::open(&path).unwrap_err();
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(!dir.path().join("backout.db-wal").exists());
}

#[test]
fn the_log_is_append_only_even_to_raw_sql() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backout.db");
    SqliteStore::open(&path)
        .unwrap()
        .append(vec![ev(1)])
        .unwrap();
    let conn = Connection::open(&path).unwrap();
    for sql in ["UPDATE events SET kind = 'forged'", "DELETE FROM events"] {
        let err = conn.execute(sql, []).unwrap_err().to_string();
        assert!(err.contains("the event log is append-only"), "{sql}: {err}");
    }
}

#[test]
fn undecodable_rows_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backout.db");
    let store = SqliteStore::open(&path).unwrap();
    store.append(vec![ev(1)]).unwrap();
    sqlite(
        &path,
        "INSERT INTO events (seq, batch, service, kind, actor, at_ms, body) \
         VALUES (2, 2, 'web', 'x', 'intruder', 0, '{not json');",
    );
    let err = store.read(0, 10).unwrap_err();
    assert_eq!(variant(&err), "!Decode");
    assert!(
        err.to_string().starts_with("the body of event 2 in "),
        "{err}"
    );
    // Reads before the damage still work.
    assert_eq!(store.read(0, 1).unwrap().len(), 1);
}

/// Overwrites part of a checkpointed file with garbage; opening or reading
/// must fail with an error that names the file, never panic. SQLite keeps
/// no checksums, so damage inside unused space or a row may go unseen: for
/// those cases only "no panic" is required.
#[test]
fn corrupt_files_are_errors() {
    let page = 4096;
    for (offset, len, must_detect) in [
        (0, 100, true),
        (0, 1 << 20, true),
        (page, page, false),
        (2 * page, 200, false),
        (3 * page + 100, 3000, false),
        (6 * page, 6 * page, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backout.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            for n in 0..50 {
                store.append(vec![ev(n), ev(n)]).unwrap();
            }
        }
        // Closing the last connection checkpointed the WAL into the file.
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 12 * page, "file too small: {}", bytes.len());
        let end = (offset + len).min(bytes.len());
        for (i, b) in bytes[offset..end].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31) ^ 0xa5;
        }
        std::fs::write(&path, &bytes).unwrap();
        match SqliteStore::open(&path).and_then(|s| s.read(0, usize::MAX)) {
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("backout.db"), "{msg}");
                assert!(
                    matches!(
                        e,
                        StoreError::Corrupt { .. }
                            | StoreError::Foreign { .. }
                            | StoreError::Decode { .. }
                    ),
                    "offset {offset}: {e:?}"
                );
            }
            Ok(events) => assert!(
                !must_detect,
                "offset {offset}: damage went unnoticed ({} events)",
                events.len()
            ),
        }
    }
}

#[test]
fn a_held_write_lock_is_a_busy_error_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backout.db");
    let options = Options {
        busy_timeout: Duration::from_millis(100),
        ..Options::default()
    };
    let store = SqliteStore::open_with(&path, &options).unwrap();
    let other = Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = store.append(vec![ev(1)]).unwrap_err();
    assert_eq!(variant(&err), "!Busy");
    assert!(
        err.to_string()
            .contains("is another backout process writing to it?"),
        "{err}"
    );
    // Reads are not blocked by a writer.
    assert_eq!(store.last_seq().unwrap(), 0);
    other.execute_batch("COMMIT").unwrap();
    assert_eq!(store.append(vec![ev(1)]).unwrap()[0].event.seq, 1);
}

#[test]
fn a_full_disk_stores_nothing_of_the_failed_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backout.db");
    let options = Options {
        max_size_bytes: Some(256 * 1024),
        ..Options::default()
    };
    let store = SqliteStore::open_with(&path, &options).unwrap();
    let mut acked = 0;
    let err = loop {
        match store.append(vec![ev(acked), ev(acked), ev(acked)]) {
            Ok(a) => acked = a[2].event.seq,
            Err(e) => break e,
        }
        assert!(acked < 10_000, "the size cap was not enforced");
    };
    assert_eq!(variant(&err), "!DiskFull");
    assert!(
        err.to_string()
            .contains("nothing of this write was stored; free disk space"),
        "{err}"
    );
    assert!(acked > 30, "only {acked} events fit");
    assert_eq!(store.last_seq().unwrap(), acked);
    assert_eq!(
        store.read(0, usize::MAX).unwrap().len(),
        usize::try_from(acked).unwrap()
    );
    // Small writes may still fit; the log stays consistent either way.
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    let next = store.append(vec![ev(0)]).unwrap();
    assert_eq!(next[0].event.seq, acked + 1);
}

#[test]
fn open_picks_the_backend_from_the_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x/backout.db");
    let store = backout_store::open(path.to_str().unwrap()).unwrap();
    assert!(format!("{store:?}").starts_with("SqliteStore"), "{store:?}");
    store.append(vec![ev(1)]).unwrap();
    assert!(path.is_file());
    let err = backout_store::open("sqlite:///tmp/x.db").unwrap_err();
    assert_eq!(variant(&err), "!BadLocation");
}
