//! Passive outlier detection for one endpoint: a run of failures (5xx or
//! connect errors) ejects it for a back-off that doubles with each ejection,
//! capped; a long healthy stretch forgets past ejections.
//!
//! Pure: `now_ms` is monotonic milliseconds. Whether the pool can afford to
//! lose this endpoint is the caller's decision (`may_eject`).

use backout_spec::OutlierSpec;

#[derive(Debug, Clone, Default)]
pub struct Outlier {
    consecutive_failures: u32,
    /// Ejections so far; drives the back-off.
    ejections: u32,
    ejected_until_ms: Option<u64>,
}

/// The endpoint was just ejected until `until_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    pub until_ms: u64,
    pub duration_ms: u64,
    pub failures: u32,
}

impl Outlier {
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.is_some_and(|u| now_ms < u)
    }

    pub fn ejected_until_ms(&self) -> Option<u64> {
        self.ejected_until_ms
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Records one request's result. Returns an ejection if this failure
    /// completed a run and the pool allows it.
    pub fn record(
        &mut self,
        spec: &OutlierSpec,
        now_ms: u64,
        failed: bool,
        may_eject: bool,
    ) -> Option<Ejection> {
        if !spec.enabled {
            return None;
        }
        self.forget_if_healthy_long_enough(spec, now_ms);
        if !failed {
            self.consecutive_failures = 0;
            return None;
        }
        self.consecutive_failures += 1;
        if self.consecutive_failures < spec.consecutive_failures.get()
            || self.is_ejected(now_ms)
            || !may_eject
        {
            return None;
        }
        let base = spec.base_ejection.get().as_millis() as u64;
        let max = spec.max_ejection.get().as_millis() as u64;
        let duration_ms = base.saturating_mul(1u64 << self.ejections.min(32)).min(max);
        self.ejections += 1;
        let failures = self.consecutive_failures;
        self.consecutive_failures = 0;
        let until_ms = now_ms + duration_ms;
        self.ejected_until_ms = Some(until_ms);
        Some(Ejection {
            until_ms,
            duration_ms,
            failures,
        })
    }

    /// After a full `max_ejection` without being ejected, past ejections no
    /// longer lengthen the next one.
    fn forget_if_healthy_long_enough(&mut self, spec: &OutlierSpec, now_ms: u64) {
        if let Some(until) = self.ejected_until_ms
            && now_ms >= until + spec.max_ejection.get().as_millis() as u64
        {
            self.ejections = 0;
            self.ejected_until_ms = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use backout_spec::Duration;

    use super::*;

    fn spec() -> OutlierSpec {
        OutlierSpec {
            enabled: true,
            consecutive_failures: NonZeroU32::new(3).unwrap(),
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(5),
            max_ejection_percent: 50,
        }
    }

    /// Feeds `(now_ms, failed)`; returns the ejection durations produced.
    fn check(events: &[(u64, bool)], expected: &[u64]) {
        let mut o = Outlier::default();
        let got: Vec<u64> = events
            .iter()
            .filter_map(|&(now, failed)| o.record(&spec(), now, failed, true))
            .map(|e| e.duration_ms)
            .collect();
        assert_eq!(got, expected, "{events:?}");
    }

    #[test]
    fn runs_of_failures_eject_with_doubling_backoff() {
        check(&[(0, true), (0, true)], &[]);
        check(&[(0, true), (0, true), (0, false), (0, true)], &[]);
        check(&[(0, true), (0, true), (0, true)], &[1_000]);
        // Second run after the first ejection ended: 2 s; third: 4 s; then capped at 5 s.
        let mut ev = vec![(0, true); 3];
        ev.extend([(1_000, true); 3]);
        ev.extend([(3_000, true); 3]);
        ev.extend([(7_000, true); 3]);
        check(&ev, &[1_000, 2_000, 4_000, 5_000]);
    }

    #[test]
    fn failures_while_ejected_do_not_extend_the_ejection() {
        check(
            &[
                (0, true),
                (0, true),
                (0, true),
                (10, true),
                (20, true),
                (30, true),
            ],
            &[1_000],
        );
    }

    #[test]
    fn a_long_healthy_stretch_resets_the_backoff() {
        let mut ev = vec![(0, true); 3];
        // Ejected until 1 000; healthy past 1 000 + max_ejection (5 000).
        ev.extend([(7_000, true); 3]);
        check(&ev, &[1_000, 1_000]);
    }

    #[test]
    fn the_pool_can_veto() {
        let mut o = Outlier::default();
        for _ in 0..10 {
            assert!(o.record(&spec(), 0, true, false).is_none());
        }
        assert!(!o.is_ejected(0));
    }
}
