//! The store against a real SQLite file in a temporary directory and a
//! real PostgreSQL server (`BACKOUT_TEST_POSTGRES`), from the same test
//! code: the event log, snapshots, tokens, leases and fencing, opening and
//! its failures, concurrency, and round-trips of arbitrary values.
#![allow(clippy::unwrap_used)]

mod support;

mod store {
    mod concurrency;
    mod event_log;
    mod leases;
    mod open;
    mod open_postgres;
    mod roundtrip;
    mod snapshots;
    mod tokens;
}

use backout_store::StoreError;
pub use support::{Kind, TestStore, backends};

/// The variant name of an error, for compact transcripts.
pub fn variant(e: &StoreError) -> String {
    let debug = format!("{e:?}");
    let name: String = debug
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    format!("!{name}")
}
