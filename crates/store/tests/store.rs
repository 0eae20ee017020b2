//! The store against a real SQLite file in a temporary directory: the event
//! log, snapshots, tokens, opening and its failures, concurrency, and
//! round-trips of arbitrary values.
#![allow(clippy::unwrap_used)]

mod store {
    mod concurrency;
    mod event_log;
    mod open;
    mod roundtrip;
    mod snapshots;
    mod tokens;
}

use backout_store::{SqliteStore, StoreError};
use tempfile::TempDir;

/// A fresh store in its own temporary directory (kept alive by the guard).
pub fn temp_store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("data/backout.db")).unwrap();
    (dir, store)
}

/// The variant name of an error, for compact transcripts.
pub fn variant(e: &StoreError) -> String {
    let debug = format!("{e:?}");
    let name: String = debug
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    format!("!{name}")
}
