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
    TimeoutsSpec,
};
pub use span_tree::SpanTree;
pub use strategy::{
    AnalysisStep, CapacityMode, HistoryPolicy, Notification, OnTimeout, RollbackPolicy, Step,
    Strategy,
};
pub use yaml::{Source, parse_yaml};
