//! The control plane runtime: the API, the controller loop (with the
//! leader election), the fleet hub and the release gates' tie-in. The
//! drivers (`backout-driver`), metric providers (`backout-provider`) and
//! flag server (`backout-flag-server`) are crates of their own.

pub mod api;
pub mod controller;
pub mod fleet;
pub mod gates;
