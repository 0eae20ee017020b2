//! The MTTR clock of every rollback: detect → decide → act → verify.
//!
//! * detect: from when the regression started (the judge's estimate) to the
//!   verdict;
//! * decide: from the verdict to the rollback action (0 for a human, who
//!   decides and acts at once);
//! * act: from the action to the proxy's switch (its own timestamp);
//! * verify: from the switch to the canary being gone and the error rate
//!   back at the stable version's level.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackKind {
    /// The judge said roll back and backout did.
    Automatic,
    /// Someone ran `backout rollback` (break-glass).
    Manual,
    /// `backout rollback --to VERSION`.
    ToVersion,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackRecord {
    pub rollout_id: u64,
    pub kind: RollbackKind,
    /// The version that lost its traffic.
    pub from_version: String,
    /// The version that took it all.
    pub to_version: String,
    pub reason: String,
    pub actor: String,
    pub onset_ms: Option<i64>,
    pub verdict_ms: Option<i64>,
    pub action_ms: i64,
    pub switched_ms: Option<i64>,
    pub torn_down_ms: Option<i64>,
    pub recovered_ms: Option<i64>,
    /// What was done about stable's capacity, in words.
    pub capacity: String,
}

/// One rollback's phases, in milliseconds; `None` where a timestamp is
/// missing (no onset estimate, switch not yet confirmed…).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MttrBreakdown {
    pub detect_ms: Option<i64>,
    pub decide_ms: Option<i64>,
    pub act_ms: Option<i64>,
    pub verify_ms: Option<i64>,
    /// From the earliest known start (onset, else verdict, else action) to
    /// verified.
    pub total_ms: Option<i64>,
}

impl RollbackRecord {
    /// When the rollback is fully verified: canary gone and errors back.
    pub fn verified_ms(&self) -> Option<i64> {
        match (self.torn_down_ms, self.recovered_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        }
    }

    pub fn breakdown(&self) -> MttrBreakdown {
        let span = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (Some(a), Some(b)) => Some((b - a).max(0)),
            _ => None,
        };
        let verified = self.verified_ms();
        let start = self.onset_ms.or(self.verdict_ms).or(Some(self.action_ms));
        MttrBreakdown {
            detect_ms: span(self.onset_ms, self.verdict_ms),
            decide_ms: span(self.verdict_ms, Some(self.action_ms)),
            act_ms: span(Some(self.action_ms), self.switched_ms),
            verify_ms: span(self.switched_ms, verified),
            total_ms: span(start, verified),
        }
    }
}

/// p50 and p95 of each phase over a service's rollbacks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MttrSummary {
    pub rollbacks: usize,
    pub p50: MttrBreakdown,
    pub p95: MttrBreakdown,
}

impl MttrSummary {
    pub fn of(records: &[RollbackRecord]) -> MttrSummary {
        let all: Vec<MttrBreakdown> = records.iter().map(RollbackRecord::breakdown).collect();
        let at = |q: f64| {
            let pick = |f: fn(&MttrBreakdown) -> Option<i64>| {
                percentile(all.iter().filter_map(f).collect(), q)
            };
            MttrBreakdown {
                detect_ms: pick(|b| b.detect_ms),
                decide_ms: pick(|b| b.decide_ms),
                act_ms: pick(|b| b.act_ms),
                verify_ms: pick(|b| b.verify_ms),
                total_ms: pick(|b| b.total_ms),
            }
        };
        MttrSummary {
            rollbacks: records.len(),
            p50: at(0.50),
            p95: at(0.95),
        }
    }
}

/// Nearest-rank percentile; `None` for no data.
fn percentile(mut values: Vec<i64>, q: f64) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        onset: Option<i64>,
        verdict: Option<i64>,
        action: i64,
        switched: Option<i64>,
        gone: Option<i64>,
        ok: Option<i64>,
    ) -> RollbackRecord {
        RollbackRecord {
            rollout_id: 1,
            kind: RollbackKind::Automatic,
            from_version: "v2".into(),
            to_version: "v1".into(),
            reason: String::new(),
            actor: "controller".into(),
            onset_ms: onset,
            verdict_ms: verdict,
            action_ms: action,
            switched_ms: switched,
            torn_down_ms: gone,
            recovered_ms: ok,
            capacity: String::new(),
        }
    }

    fn check(r: RollbackRecord, expected: [Option<i64>; 5]) {
        let b = r.breakdown();
        assert_eq!(
            [b.detect_ms, b.decide_ms, b.act_ms, b.verify_ms, b.total_ms],
            expected,
            "{r:?}"
        );
    }

    #[test]
    fn phases() {
        check(
            record(
                Some(1_000),
                Some(9_000),
                9_000,
                Some(9_002),
                Some(12_000),
                Some(14_000),
            ),
            [Some(8_000), Some(0), Some(2), Some(4_998), Some(13_000)],
        );
        check(
            record(
                None,
                Some(9_000),
                9_050,
                Some(9_051),
                Some(10_000),
                Some(10_000),
            ),
            [None, Some(50), Some(1), Some(949), Some(1_000)],
        );
        check(
            record(None, None, 5_000, None, None, None),
            [None, None, None, None, None],
        );
        check(
            record(None, None, 5_000, Some(5_001), Some(6_000), None),
            [None, None, Some(1), None, None],
        );
    }

    #[test]
    fn percentiles() {
        assert_eq!(percentile(vec![], 0.5), None);
        assert_eq!(percentile(vec![7], 0.95), Some(7));
        assert_eq!(percentile((1..=100).collect(), 0.5), Some(50));
        assert_eq!(percentile((1..=100).collect(), 0.95), Some(95));
        assert_eq!(percentile(vec![3, 1, 2], 0.5), Some(2));
        let s = MttrSummary::of(&[
            record(Some(0), Some(10), 10, Some(11), Some(20), Some(20)),
            record(Some(0), Some(30), 30, Some(31), Some(40), Some(40)),
        ]);
        assert_eq!(
            (s.rollbacks, s.p50.total_ms, s.p95.total_ms),
            (2, Some(20), Some(40))
        );
    }
}
