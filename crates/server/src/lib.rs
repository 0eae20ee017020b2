//! The control plane runtime: everything that does I/O on behalf of the pure
//! cores (judge, rollout, flags). Each concept is one module.

pub mod api;
pub mod controller;
pub mod driver;
pub mod fleet;
pub mod gates;
pub mod ofrep;
pub mod provider;
