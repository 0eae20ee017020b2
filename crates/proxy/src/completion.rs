//! Records a request once it is over: metrics, breaker, outlier detection.
//! Carried by the response body so "over" means the last byte, not the
//! headers.

use std::time::Instant;

use crate::clock;
use crate::outcome::{Outcome, UpstreamFailure};
use crate::pool::Admitted;
use crate::upstream::Lent;

#[derive(Debug)]
pub struct Completion {
    admitted: Admitted,
    started: Instant,
    status: u16,
    /// The upstream connection, given back to the pool if the response
    /// arrives whole.
    lent: Option<Lent>,
}

impl Completion {
    pub(crate) fn new(
        admitted: Admitted,
        started: Instant,
        status: u16,
        lent: Option<Lent>,
    ) -> Self {
        Completion {
            admitted,
            started,
            status,
            lent,
        }
    }

    /// The connection will not be reused (it was upgraded).
    pub(crate) fn keep_connection(&mut self) -> Option<Lent> {
        self.lent.take()
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
        // One reading of the monotonic clock serves the latency and the
        // breaker's time.
        let now = clock::instant();
        let outcome = Outcome {
            status: Some(self.status),
            upstream_failure,
            downstream_failure,
            rejection: None,
            latency_us: Some(now.saturating_duration_since(self.started).as_micros() as u64),
        };
        let now_ms = clock::mono_ms_at(now);
        let pool = std::sync::Arc::clone(&self.admitted.pool);
        if downstream_failure {
            self.admitted.abandon();
        } else {
            self.admitted.finish(now_ms, failed);
        }
        // Only a connection whose response was read to its end can carry
        // another request; one cut short is dropped, which closes it.
        if let Some(lent) = self.lent
            && upstream_failure.is_none()
            && !downstream_failure
        {
            pool.give_back(lent, now_ms);
        }
        pool.metrics.finished(&outcome, clock::unix_ms());
    }
}
