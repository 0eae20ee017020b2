//! The fleet protocol: how proxies follow a control plane.
//!
//! The control plane publishes one versioned [`Snapshot`] per service —
//! the whole configuration a proxy needs, small enough to send whole. A
//! proxy subscribes, applies each snapshot atomically and answers with
//! the generation it applied (or why it could not), keeps the last one in
//! a [`state`] file so it can serve without the control plane, and
//! reports its pools' health and one-second windows back. The control
//! plane's [`Roster`] counts those answers: when a route change is done,
//! which proxies lag, how ready a version is, and every proxy's traffic
//! merged for the judge.
//!
//! Pure: serde types and functions of their arguments. The transports
//! (WebSocket, in-process channels) are the proxy's and the control
//! plane's.

pub mod message;
pub mod roster;
pub mod snapshot;
pub mod state;
pub mod window;

pub use message::{
    BreakerState, EndpointReport, FromProxy, Hello, PROTOCOL, PoolReport, Report, ToProxy, Welcome,
};
pub use roster::{EndpointHealth, MemberView, PoolHealth, Progress, Roster};
pub use snapshot::{Config, PoolSnapshot, ServiceSettings, Snapshot, SnapshotError};
pub use window::WindowView;
