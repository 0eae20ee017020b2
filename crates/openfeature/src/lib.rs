//! An OpenFeature provider for Rust services (the `open-feature` crate) that
//! evaluates backout flags in process.
//!
//! The flag set lives in memory and is swapped atomically when it changes;
//! evaluation is `backout-flags`, the same pure evaluator the OFREP server
//! uses, so a flag means the same thing in process and over the wire. The
//! set can be handed in directly ([`BackoutProvider::new`]) or kept in sync
//! with a running `backout flags serve` ([`sync::connect`]), which listens
//! to the server's change stream and keeps serving the last good set when
//! the server goes away (static stability).
//!
//! The `open-feature` 0.3 provider interface has no way to say "use the
//! caller's default" in a successful result, so results that defer to it
//! (a disabled flag, a flag with no default variant) come back as errors
//! whose message says why; `client.get_bool_value(..).unwrap_or(default)`
//! then yields the caller's default, never a made-up value.

mod clock;
mod convert;
mod provider;
pub mod sync;

pub use provider::{BackoutProvider, FlagSetHandle};
