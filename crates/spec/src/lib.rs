//! Service specs: the types people write in YAML, parsing that reports
//! file:line:col and the field at fault, and validation of what parses but
//! makes no sense.
//!
//! Pure: no I/O beyond what the caller hands in as text.

pub mod driver;
mod duration;
mod endpoint;
mod error;
mod gates;
mod service;
mod span_tree;
mod strategy;
mod yaml;

/// The `analysis:` section's type, so users of the spec need not name the judge.
pub use backout_judge::AnalysisConfig;
pub use driver::{
    ByteSize, CommandSpec, DriverFile, DriverSpec, HooksSpec, PortRange, ProcessSpec, RestartSpec,
    StaticSpec,
};
pub use duration::Duration;
pub use endpoint::{EndpointUrl, Protocol};
pub use error::SpecError;
pub use gates::{GatesPolicy, SqlDialect, UnsafeGate};
pub use service::{
    BreakerSpec, BulkheadSpec, OutlierSpec, PoolSpec, ProbeSpec, ProbesSpec, ServiceSpec,
    TimeoutsSpec, TlsSpec, UpstreamTlsSpec,
};
pub use span_tree::SpanTree;
pub use strategy::{
    AnalysisStep, CapacityMode, HistoryPolicy, Notification, OnTimeout, RollbackPolicy, Step,
    Strategy,
};
pub use yaml::{Source, parse_yaml};

/// Whether `n` may name a service or a version: 1 to 63 lower-case
/// letters, digits, `-`, `_` or `.`, starting with a letter or digit (so
/// it is safe in file names, metric labels and URLs).
pub fn is_valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && n.as_bytes()[0].is_ascii_alphanumeric()
}
