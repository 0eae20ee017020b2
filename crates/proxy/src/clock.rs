//! The proxy's only window onto time. Everything else takes `now` as an
//! argument, so the state machines (breaker, outlier, probes, windows) are
//! tested with plain numbers and no sleeps.
#![allow(clippy::disallowed_methods)]

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Monotonic milliseconds since the process first asked. Used for
/// back-offs and cool-downs, which must not jump with the wall clock.
pub fn mono_ms() -> u64 {
    mono_ms_at(Instant::now())
}

/// [`mono_ms`] for an instant already read, so a caller that needs both an
/// `Instant` and the milliseconds reads the clock once.
pub fn mono_ms_at(at: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    at.saturating_duration_since(start).as_millis() as u64
}

/// A monotonic instant, for measuring request latency.
pub fn instant() -> Instant {
    Instant::now()
}

/// Wall-clock milliseconds since the Unix epoch, for windows and events that
/// other processes line up with their own records.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Wall-clock microseconds since the Unix epoch, for switch timestamps.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
