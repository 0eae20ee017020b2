//! Integration tests of the proxy against real upstream servers on
//! loopback. One binary, one module per concern.

// Test support code panics on purpose when the world is not as expected;
// clippy only exempts `#[test]` functions themselves.
#![allow(clippy::unwrap_used)]

mod support;

mod admin;
mod failures;
mod health;
mod protocols;
mod routing;
mod switch;
mod tls;
