//! Feature flags in flagd's flag-definition format, compiled once and
//! evaluated without I/O.
//!
//! This crate is a pure core: values in, values out. It reads no clock (the
//! caller passes `now`), opens no file and no socket, and has no async
//! runtime. The OFREP server, the file watcher and the OpenFeature provider
//! are edges built on top of it.
//!
//! ```
//! use backout_flags::{Context, Format, Reason, load_str};
//!
//! let doc = r#"{"flags": {"new-checkout": {
//!     "state": "ENABLED",
//!     "variants": {"on": true, "off": false},
//!     "defaultVariant": "off",
//!     "targeting": {"if": [{"==": [{"var": "country"}, "jp"]}, "on"]}
//! }}}"#;
//! let loaded = load_str(doc, Format::Json).unwrap();
//! let ctx = Context::with_key("user-1").attr("country", "jp");
//! let res = loaded.flags.evaluate("new-checkout", &ctx, 0);
//! assert_eq!(res.reason, Reason::TargetingMatch);
//! assert!(res.bool_or(false));
//! ```
//!
//! Evaluation agrees with the reference evaluator, `openfeature-flagd-core`
//! (Python): the test suite checks committed vectors generated from it, and
//! `scripts/test` compares both on a random corpus.

mod cbor;
mod context;
pub mod dsl;
pub mod edit;
mod eval;
mod flag;
mod fractional;
pub mod guard;
mod load;
mod locate;
mod pynum;
mod resolve;
mod rule;
mod sem_ver;
pub mod stale;
mod value;

pub use context::{Context, ContextError};
pub use flag::{Flag, FlagSet, State};
pub use load::{
    DocumentError, Format, Loaded, Problem, Severity, load, load_str, locate_problems, parse,
};
pub use resolve::{ErrorCode, EvalError, FlagType, Reason, Resolution};
