//! Records a request once it is over: metrics, breaker, outlier detection.
//! Carried by the response body so "over" means the last byte, not the
//! headers.

use std::time::Instant;

use crate::clock;
use crate::outcome::{Outcome, UpstreamFailure};
use crate::pool::Admitted;

#[derive(Debug)]
pub struct Completion {
    admitted: Admitted,
    started: Instant,
    status: u16,
}

impl Completion {
    pub(crate) fn new(admitted: Admitted, started: Instant, status: u16) -> Self {
        Completion {
            admitted,
            started,
            status,
        }
    }

    /// The response was delivered whole.
    pub fn succeeded(self) {
        let failed = self.status >= 500;
        self.record(None, false, failed);
    }

    /// The upstream broke off the response body.
    pub fn upstream_broke(self) {
        self.record(Some(UpstreamFailure::Reset), false, true);
    }

    /// The client went away before the end.
    pub fn client_left(self) {
        self.record(None, true, false);
    }

    fn record(
        self,
        upstream_failure: Option<UpstreamFailure>,
        downstream_failure: bool,
        failed: bool,
    ) {
        let outcome = Outcome {
            status: Some(self.status),
            upstream_failure,
            downstream_failure,
            rejection: None,
            latency_us: Some(self.started.elapsed().as_micros() as u64),
        };
        let pool = std::sync::Arc::clone(&self.admitted.pool);
        if downstream_failure {
            self.admitted.abandon();
        } else {
            self.admitted.finish(clock::mono_ms(), failed);
        }
        pool.metrics.finished(&outcome, clock::unix_ms());
    }
}
