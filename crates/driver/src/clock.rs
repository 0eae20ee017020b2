//! The one place the drivers read the wall clock: instance start times and
//! event times are facts recorded as they happen. Waits and back-offs use
//! tokio's clock, which tests can pause.
#![allow(clippy::disallowed_methods)]

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub(super) fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
