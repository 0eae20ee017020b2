//! How one proxied request ended, in the terms metrics and the judge need:
//! which side failed (upstream = the version's fault, downstream = the
//! client's) and why.

use serde::Serialize;

/// Why the upstream (the version under test) failed to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamFailure {
    /// Could not open a connection (refused, unreachable, connect timeout).
    Connect,
    /// The connection broke before or while the response came back.
    Reset,
    /// No response headers within the request timeout.
    Timeout,
    /// The TLS handshake with an `https://` endpoint failed: most often its
    /// certificate does not verify (unknown CA, wrong name, expired).
    Tls,
}

impl UpstreamFailure {
    pub const ALL: [UpstreamFailure; 4] = [
        UpstreamFailure::Connect,
        UpstreamFailure::Reset,
        UpstreamFailure::Timeout,
        UpstreamFailure::Tls,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamFailure::Connect => "connect",
            UpstreamFailure::Reset => "reset",
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Tls => "tls",
        }
    }
}

/// Why the proxy itself refused the request before it reached an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// The pool's concurrency limit was reached.
    Bulkhead,
    /// The pool's circuit breaker is open.
    Breaker,
    /// No endpoint of the pool is ready.
    NoEndpoint,
}

impl Rejection {
    pub const ALL: [Rejection; 3] = [
        Rejection::Bulkhead,
        Rejection::Breaker,
        Rejection::NoEndpoint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Bulkhead => "bulkhead",
            Rejection::Breaker => "breaker",
            Rejection::NoEndpoint => "no_endpoint",
        }
    }
}

/// The end of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Status sent to the client, if a response started.
    pub status: Option<u16>,
    pub upstream_failure: Option<UpstreamFailure>,
    /// The client went away or sent a broken request body: not the
    /// version's fault, so not an error of the version.
    pub downstream_failure: bool,
    pub rejection: Option<Rejection>,
    /// From routing to the end of the response, in microseconds.
    pub latency_us: Option<u64>,
}

impl Outcome {
    /// Whether this counts against the version: a 5xx (including the
    /// proxy's own 502/503/504 on the version's behalf) or an upstream
    /// failure, but never a client's mistake or departure.
    pub fn is_error(&self) -> bool {
        if self.downstream_failure {
            return false;
        }
        self.upstream_failure.is_some()
            || self.rejection.is_some()
            || self.status.is_some_and(|s| s >= 500)
    }

    /// Status class index 0..5 for 1xx..5xx.
    pub fn class(&self) -> Option<usize> {
        self.status.and_then(|s| match s / 100 {
            c @ 1..=5 => Some(c as usize - 1),
            _ => None,
        })
    }
}
