//! When to restart an instance whose liveness probe failed (or whose
//! startup probe never passed), the way Kubernetes' kubelet does.
//!
//! The proxy's probes only take such an endpoint out of traffic; a process
//! that is wedged but not dead (a deadlock, an exhausted pool) would stay
//! wedged. The controller asks the driver to restart it. Pure: the caller
//! passes what the probes say and the time, and carries out the restarts
//! this returns.
//!
//! Back-off: the first restart of an instance happens at once; each
//! further one waits twice as long as the last, from `first` up to `max`
//! (Kubernetes' CrashLoopBackOff), and never less than `grace`, the time
//! its probes need to judge the new incarnation. An instance that has
//! been live for `max` starts over.

use std::collections::BTreeMap;

/// Restart bookkeeping for every instance of one service.
#[derive(Debug, Clone)]
pub(super) struct LivenessRestarts {
    first_ms: i64,
    max_ms: i64,
    grace_ms: i64,
    instances: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Entry {
    /// Restarts asked for since the instance last stayed live for `max`.
    restarts: u32,
    /// No restart before this (Unix ms).
    not_before_ms: i64,
    /// A restart was asked for and has not finished.
    pending: bool,
    /// Since when the probes have said live, if they do.
    live_since_ms: Option<i64>,
}

impl LivenessRestarts {
    pub(super) fn new(first_ms: i64, max_ms: i64, grace_ms: i64) -> Self {
        LivenessRestarts {
            first_ms: first_ms.max(0),
            max_ms: max_ms.max(first_ms).max(0),
            grace_ms: grace_ms.max(0),
            instances: BTreeMap::new(),
        }
    }

    /// What the probes say of instance `id` at `now_ms`; true means
    /// "restart it now" (the caller must report back with [`done`]).
    ///
    /// [`done`]: LivenessRestarts::done
    pub(super) fn observe(&mut self, id: &str, live: bool, now_ms: i64) -> bool {
        if live {
            if let Some(e) = self.instances.get_mut(id) {
                let since = *e.live_since_ms.get_or_insert(now_ms);
                if !e.pending && now_ms - since >= self.max_ms {
                    self.instances.remove(id);
                }
            }
            return false;
        }
        let e = self.instances.entry(id.to_string()).or_default();
        e.live_since_ms = None;
        if e.pending || now_ms < e.not_before_ms {
            return false;
        }
        e.pending = true;
        true
    }

    /// A restart asked for by [`observe`](LivenessRestarts::observe)
    /// finished (or failed) at `now_ms`; returns how many restarts the
    /// instance has had in this streak.
    pub(super) fn done(&mut self, id: &str, now_ms: i64) -> u32 {
        let e = self.instances.entry(id.to_string()).or_default();
        e.pending = false;
        e.restarts = e.restarts.saturating_add(1);
        let doublings = (e.restarts - 1).min(32);
        let delay = self
            .first_ms
            .saturating_mul(1i64 << doublings)
            .min(self.max_ms);
        e.not_before_ms = now_ms + delay.max(self.grace_ms);
        e.restarts
    }

    /// Forgets instances that are gone (their version torn down).
    pub(super) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.instances.retain(|id, _| keep(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step: `Live(t)`/`Dead(t)` are probe readings at `t` ms, `Done(t)`
    /// a restart finishing. `expected` lists the times at which a restart
    /// was asked for.
    #[derive(Clone, Copy)]
    enum Step {
        Live(i64),
        Dead(i64),
        Done(i64),
    }
    use Step::{Dead, Done, Live};

    fn check(steps: &[Step], expected: &[i64]) {
        // first 10 s, max 80 s, grace 3 s.
        let mut r = LivenessRestarts::new(10_000, 80_000, 3_000);
        let mut asked = Vec::new();
        for step in steps {
            match *step {
                Live(t) => assert!(!r.observe("web-v1-0", true, t), "live never restarts"),
                Dead(t) => {
                    if r.observe("web-v1-0", false, t) {
                        asked.push(t);
                    }
                }
                Done(t) => {
                    r.done("web-v1-0", t);
                }
            }
        }
        assert_eq!(asked, expected);
    }

    #[test]
    fn live_instances_are_left_alone() {
        check(&[Live(0), Live(1_000), Live(100_000)], &[]);
    }

    #[test]
    fn the_first_restart_is_at_once_and_only_one_at_a_time() {
        check(&[Dead(0), Dead(1_000), Dead(2_000)], &[0]);
    }

    #[test]
    fn later_restarts_back_off_doubling_up_to_the_maximum() {
        check(
            &[
                Dead(0),
                Done(1_000),
                Dead(5_000),
                Dead(11_000), // 10 s after the first finished
                Done(12_000),
                Dead(31_000),
                Dead(32_000), // 20 s
                Done(32_000),
                Dead(72_000), // 40 s
                Done(72_000),
                Dead(151_000),
                Dead(152_000), // 80 s, the maximum
                Done(152_000),
                Dead(232_000), // still 80 s
            ],
            &[0, 11_000, 32_000, 72_000, 152_000, 232_000],
        );
    }

    #[test]
    fn the_probes_get_their_grace_even_when_the_back_off_is_shorter() {
        let mut r = LivenessRestarts::new(100, 1_000, 3_000);
        assert!(r.observe("a", false, 0));
        r.done("a", 0);
        assert!(!r.observe("a", false, 2_999));
        assert!(r.observe("a", false, 3_000));
    }

    #[test]
    fn an_instance_live_for_the_maximum_starts_over() {
        check(
            &[
                Dead(0),
                Done(0),
                Live(5_000),
                Dead(10_000), // back-off of 10 s over: restart
                Done(10_000),
                Live(15_000),
                Live(94_999),
                Dead(95_000), // not live for 80 s yet: 20 s back-off is over
                Done(95_000),
                Live(100_000),
                Live(180_000), // 80 s live: the streak is forgotten
                Dead(181_000), // so at once
            ],
            &[0, 10_000, 95_000, 181_000],
        );
    }

    #[test]
    fn a_pending_restart_is_not_forgotten_while_live() {
        let mut r = LivenessRestarts::new(10, 10, 0);
        assert!(r.observe("a", false, 0));
        assert!(!r.observe("a", true, 1_000));
        assert!(!r.observe("a", true, 2_000));
        assert!(!r.observe("a", false, 3_000), "still pending");
        assert_eq!(r.done("a", 3_000), 1);
    }

    #[test]
    fn gone_instances_are_forgotten() {
        let mut r = LivenessRestarts::new(10_000, 10_000, 0);
        assert!(r.observe("a", false, 0));
        r.done("a", 0);
        r.retain(|id| id != "a");
        assert!(r.observe("a", false, 1), "a new instance of that id");
    }
}
