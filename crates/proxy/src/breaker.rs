//! Per-pool circuit breaker: closed → open on a failure rate or a run of
//! failures over a minimum volume → half-open after a cool-down, letting a
//! few trial requests through → closed if they all succeed, open otherwise.
//!
//! Pure: every call takes `now_ms` (monotonic milliseconds).

use backout_spec::BreakerSpec;
use serde::Serialize;

/// The breaker's state, as reported over the admin API and to the control plane.
pub use backout_fleet::BreakerState;

/// Whether a request may go to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Normal request while closed.
    Allowed,
    /// One of the limited trial requests while half-open.
    Trial,
    /// Open, or half-open with all trial slots taken.
    Rejected,
}

/// A change of state, with the reason, for events and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    spec: BreakerSpec,
    state: BreakerState,
    /// When the current state began.
    since_ms: u64,
    /// Per-second (ok, failed) counts over the rolling window, by second.
    buckets: Vec<(u64, u32, u32)>,
    consecutive_failures: u32,
    trials_admitted: u32,
    trials_succeeded: u32,
}

impl Breaker {
    pub fn new(spec: BreakerSpec, now_ms: u64) -> Self {
        let secs = spec.window.get().as_secs().max(1) as usize;
        Breaker {
            spec,
            state: BreakerState::Closed,
            since_ms: now_ms,
            buckets: vec![(u64::MAX, 0, 0); secs],
            consecutive_failures: 0,
            trials_admitted: 0,
            trials_succeeded: 0,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn since_ms(&self) -> u64 {
        self.since_ms
    }

    /// Asks to send one request. May move open → half-open when the
    /// cool-down is over.
    pub fn admit(&mut self, now_ms: u64) -> (Admission, Option<Transition>) {
        if !self.spec.enabled {
            return (Admission::Allowed, None);
        }
        let mut transition = None;
        if self.state == BreakerState::Open
            && now_ms >= self.since_ms + self.spec.cooldown.get().as_millis() as u64
        {
            transition = Some(self.go(
                BreakerState::HalfOpen,
                now_ms,
                "cool-down elapsed; letting trial requests through".into(),
            ));
        }
        let admission = match self.state {
            BreakerState::Closed => Admission::Allowed,
            BreakerState::Open => Admission::Rejected,
            BreakerState::HalfOpen => {
                if self.trials_admitted < self.spec.half_open_requests.get() {
                    self.trials_admitted += 1;
                    Admission::Trial
                } else {
                    Admission::Rejected
                }
            }
        };
        (admission, transition)
    }

    /// Reports how an admitted request ended.
    pub fn record(
        &mut self,
        now_ms: u64,
        admission: Admission,
        failed: bool,
    ) -> Option<Transition> {
        if !self.spec.enabled {
            return None;
        }
        match (self.state, admission) {
            (BreakerState::HalfOpen, Admission::Trial) => {
                if failed {
                    return Some(self.go(
                        BreakerState::Open,
                        now_ms,
                        "a trial request failed while half-open".into(),
                    ));
                }
                self.trials_succeeded += 1;
                if self.trials_succeeded >= self.spec.half_open_requests.get() {
                    return Some(self.go(
                        BreakerState::Closed,
                        now_ms,
                        format!("{} trial requests succeeded", self.trials_succeeded),
                    ));
                }
                None
            }
            (BreakerState::Closed, Admission::Allowed) => {
                self.count(now_ms, failed);
                if failed {
                    self.consecutive_failures += 1;
                } else {
                    self.consecutive_failures = 0;
                }
                let run = self.spec.consecutive_failures;
                if run > 0 && self.consecutive_failures >= run {
                    return Some(self.go(
                        BreakerState::Open,
                        now_ms,
                        format!("{run} failures in a row"),
                    ));
                }
                let (ok, bad) = self.totals(now_ms);
                let total = ok + bad;
                if total >= u64::from(self.spec.min_requests).max(1)
                    && (bad as f64) * 100.0 >= self.spec.failure_rate * total as f64
                {
                    return Some(self.go(
                        BreakerState::Open,
                        now_ms,
                        format!(
                            "{bad} of {total} requests failed in the last {} (threshold {}%)",
                            self.spec.window, self.spec.failure_rate
                        ),
                    ));
                }
                None
            }
            // Results of requests admitted under an earlier state do not
            // count: they say nothing about the pool since the change.
            _ => None,
        }
    }

    /// A trial request ended without saying anything about the pool (the
    /// client went away): give its slot back so half-open cannot stall.
    pub fn abandon(&mut self, admission: Admission) {
        if self.state == BreakerState::HalfOpen && admission == Admission::Trial {
            self.trials_admitted = self.trials_admitted.saturating_sub(1);
        }
    }

    fn go(&mut self, to: BreakerState, now_ms: u64, reason: String) -> Transition {
        let from = self.state;
        self.state = to;
        self.since_ms = now_ms;
        self.trials_admitted = 0;
        self.trials_succeeded = 0;
        self.consecutive_failures = 0;
        if to == BreakerState::Closed {
            self.buckets.iter_mut().for_each(|b| *b = (u64::MAX, 0, 0));
        }
        Transition { from, to, reason }
    }

    fn count(&mut self, now_ms: u64, failed: bool) {
        let sec = now_ms / 1000;
        let n = self.buckets.len();
        let slot = &mut self.buckets[(sec % n as u64) as usize];
        if slot.0 != sec {
            *slot = (sec, 0, 0);
        }
        if failed {
            slot.2 += 1;
        } else {
            slot.1 += 1;
        }
    }

    fn totals(&self, now_ms: u64) -> (u64, u64) {
        let sec = now_ms / 1000;
        let n = self.buckets.len() as u64;
        self.buckets
            .iter()
            .filter(|(s, _, _)| *s != u64::MAX && *s + n > sec)
            .fold((0, 0), |(ok, bad), (_, o, b)| {
                (ok + u64::from(*o), bad + u64::from(*b))
            })
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use backout_spec::Duration;

    use super::*;

    fn spec() -> BreakerSpec {
        BreakerSpec {
            enabled: true,
            failure_rate: 50.0,
            min_requests: 10,
            window: Duration::from_secs(10),
            consecutive_failures: 5,
            cooldown: Duration::from_secs(2),
            half_open_requests: NonZeroU32::new(2).unwrap(),
        }
    }

    /// Feeds `(now_ms, failed)` results and returns the state after each.
    fn check(events: &[(u64, bool)], expected: &[BreakerState]) {
        let mut b = Breaker::new(spec(), 0);
        let mut got = Vec::new();
        for &(now, failed) in events {
            let (adm, _) = b.admit(now);
            if adm != Admission::Rejected {
                b.record(now, adm, failed);
            }
            got.push(b.state());
        }
        assert_eq!(got, expected, "{events:?}");
    }

    use BreakerState::{Closed as C, HalfOpen as H, Open as O};

    #[test]
    fn consecutive_failures_open() {
        check(&[(0, true); 5], &[C, C, C, C, O]);
        check(
            &[(0, true), (0, true), (0, false), (0, true), (0, true)],
            &[C; 5],
        );
    }

    #[test]
    fn failure_rate_needs_minimum_volume() {
        // Alternating: 50% failures but never 5 in a row.
        let ev: Vec<_> = (0..10).map(|i| (i * 100, i % 2 == 0)).collect();
        let mut want = vec![C; 9];
        want.push(O);
        check(&ev, &want);
        // Old failures leave the rolling window.
        let mut ev: Vec<_> = (0..8).map(|i| (i * 10, i % 2 == 0)).collect();
        ev.extend((0..4).map(|i| (20_000 + i, i % 2 == 0)));
        check(&ev, &[C; 12]);
    }

    #[test]
    fn half_open_closes_after_trials_succeed() {
        let mut ev = vec![(0, true); 5];
        ev.push((1_000, false)); // still open: rejected, state unchanged
        ev.push((2_000, false)); // half-open, trial 1 ok
        ev.push((2_001, false)); // trial 2 ok → closed
        check(&ev, &[C, C, C, C, O, O, H, C]);
    }

    #[test]
    fn half_open_reopens_on_failure() {
        let mut ev = vec![(0, true); 5];
        ev.push((2_000, true));
        ev.push((2_500, false)); // cool-down restarted at 2000
        ev.push((4_000, false));
        check(&ev, &[C, C, C, C, O, O, O, H]);
    }

    #[test]
    fn half_open_limits_trials() {
        let mut b = Breaker::new(spec(), 0);
        for _ in 0..5 {
            let (a, _) = b.admit(0);
            b.record(0, a, true);
        }
        assert_eq!(b.admit(2_000).0, Admission::Trial);
        assert_eq!(b.admit(2_000).0, Admission::Trial);
        assert_eq!(b.admit(2_000).0, Admission::Rejected);
    }

    #[test]
    fn abandoned_trials_free_their_slot() {
        let mut b = Breaker::new(spec(), 0);
        for _ in 0..5 {
            let (a, _) = b.admit(0);
            b.record(0, a, true);
        }
        let (t1, _) = b.admit(2_000);
        let (t2, _) = b.admit(2_000);
        assert_eq!(b.admit(2_000).0, Admission::Rejected);
        b.abandon(t1);
        assert_eq!(b.admit(2_000).0, Admission::Trial);
        b.abandon(t2);
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn disabled_breaker_admits_everything() {
        let mut b = Breaker::new(
            BreakerSpec {
                enabled: false,
                ..spec()
            },
            0,
        );
        for _ in 0..100 {
            let (a, t) = b.admit(0);
            assert_eq!(a, Admission::Allowed);
            assert!(t.is_none());
            assert!(b.record(0, a, true).is_none());
        }
    }
}
