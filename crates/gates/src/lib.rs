//! Release gates: what a release's schema migrations and API contracts do
//! to its rollback.
//!
//! Linters stop at pass or fail. This crate answers the question a rollback
//! asks: if the code goes back to the previous release, does the previous
//! release still work? Every finding carries a [`Class`]:
//!
//! - `unsafe`: the previous release's code would break against what the new
//!   release leaves behind (a dropped column, a response field it reads that
//!   is gone), so rolling the code back would not restore service;
//! - `risky`: rolling back stays possible, but running the change can hurt
//!   (long locks, rewrites, statements that fail when re-run), or only
//!   tolerant readers survive it;
//! - `hygiene`: the seeds' schema checks (no primary key, money in floats).
//!
//! Pure: text in, findings out. Reading files, scratch databases and starting
//! releases are the callers' business (`backout check …`, the API's
//! registration).

pub mod api;
mod class;
mod location;
pub mod migrations;

pub use class::{Class, Verdict};
pub use location::LineIndex;
