//! A deterministic simulator for the judge.
//!
//! Synthetic rollouts run on a virtual clock: one window per simulated
//! second, traffic drawn from a seeded generator (Poisson arrivals,
//! log-normal latencies, overdispersed errors, shared incidents, cold
//! starts, late onsets). Each run is judged by backout's [`Judge`] and, on
//! the very same windows, by the rules other tools ship ([`peer`]) and by
//! Wald's SPRT told the true rates (the best any test could do). Same seed,
//! same output: the generator is ChaCha8 seeded per run, and nothing reads
//! a clock.
//!
//! [`Judge`]: backout_judge::Judge

pub mod peer;
pub mod report;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod traffic;

pub use report::{FamilyReport, RuleSummary, simulate};
pub use scenario::{Family, families};
