//! The judge: decides whether a canary is worse than the version it replaces.
//!
//! It is a pure value. Time and measurements come in as arguments
//! ([`Judge::observe`] takes a [`Window`] whose `t` is "now"); nothing here
//! reads a clock, opens a socket or spawns a task. That is what lets the same
//! code run in the controller, in `backout analysis replay` and in the
//! simulator, and what makes every verdict reproducible from its inputs.
//!
//! Every verdict carries its reasons: one [`CheckReport`] per check with the
//! statistic, the bound it is compared with, the estimate and sample sizes.
//!
//! The statistics are anytime-valid: each sequential check bets on every
//! tick with factors whose conditional expectation is at most 1 under the
//! null "the canary is within tolerance", and the checks of one severity
//! pool their wealth ([`pool`]), so the pooled wealth is a non-negative
//! supermartingale and by Ville's inequality the chance that it ever
//! crosses `1/α` is at most `α`, however often the judge looks. See
//! [`evalue`] for the maths and [`check`] for the checks built on it.

pub mod check;
pub mod config;
pub mod evalue;
pub mod incident;
pub mod judge;
pub mod onset;
pub mod pool;
pub mod recent;
pub mod verdict;
pub mod warmup;
pub mod window;

pub use check::CheckReport;
pub use config::{
    AnalysisConfig, CheckConfig, CheckKind, ConfigError, ConfigErrors, Seconds, Severity,
    WarmupConfig,
};
pub use judge::Judge;
pub use verdict::{CheckState, Decision, Verdict};
pub use window::{GroupWindow, Window};
