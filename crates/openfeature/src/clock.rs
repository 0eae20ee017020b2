//! The one place the provider reads the wall clock (rules see it as
//! `$flagd.timestamp`).
#![allow(clippy::disallowed_methods)]

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
