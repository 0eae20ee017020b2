//! Whatever a peer sends, the judge answers: no panic, no NaN, always a
//! reason.

use backout_judge::{AnalysisConfig, GroupWindow, Judge, Verdict, Window};
use proptest::prelude::*;

fn count() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        0u64..5,
        0u64..10_000,
        Just(u64::MAX),
        any::<u64>()
    ]
}

fn latency() -> impl Strategy<Value = f64> {
    prop_oneof![
        0.0..5000.0,
        Just(0.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-1.0),
        Just(f64::MAX),
        any::<f64>()
    ]
}

fn group() -> impl Strategy<Value = GroupWindow> {
    (
        count(),
        count(),
        prop::collection::vec(latency(), 0..40),
        prop::collection::btree_map(
            prop_oneof![
                Just("cpu".to_owned()),
                Just("breaker_open".to_owned()),
                Just("ready".to_owned())
            ],
            prop_oneof![Just(f64::NAN), any::<f64>(), 0.0..1.0],
            0..3,
        ),
    )
        .prop_map(|(requests, errors, latency_ms, metrics)| GroupWindow {
            requests,
            errors,
            latency_ms,
            metrics,
        })
}

fn time() -> impl Strategy<Value = f64> {
    prop_oneof![
        0.0..4000.0,
        Just(f64::NAN),
        Just(-5.0),
        Just(f64::INFINITY),
        Just(1e300)
    ]
}

fn windows() -> impl Strategy<Value = Vec<Window>> {
    prop::collection::vec(
        (time(), group(), group()).prop_map(|(t, baseline, canary)| Window {
            t,
            baseline,
            canary,
        }),
        0..60,
    )
}

/// Every number in a decision, once serialised, is a real number: JSON has
/// no NaN, serde_json would write `null` for one.
fn assert_sane(d: &backout_judge::Decision) {
    let json = serde_json::to_string(d).expect("decision serialises");
    assert!(!json.contains("null"), "non-finite number in {json}");
    assert!(!d.reason.is_empty());
    assert!(d.checks.iter().all(|c| !c.reason.is_empty()));
    assert!(d.t.is_finite());
    // An onset is dated no later than the verdict, and only for a verdict
    // that acts on a problem.
    if let Some(onset) = d.onset_t {
        assert!(
            onset.is_finite() && onset <= d.t,
            "onset {onset} at t = {}",
            d.t
        );
        assert!(
            matches!(d.verdict, Verdict::Rollback | Verdict::Pause),
            "onset on {:?}",
            d.verdict
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_input_gets_a_sane_verdict(ws in windows()) {
        let mut judge = Judge::with_defaults();
        for w in &ws {
            let d = judge.observe(w);
            assert_sane(&d);
        }
        // A snapshot of whatever state that left survives a round trip.
        let json = serde_json::to_string(&judge).expect("judge serialises");
        let back: Judge = serde_json::from_str(&json).expect("judge deserialises");
        prop_assert_eq!(back, judge);
    }

    #[test]
    fn a_stream_of_ticks_with_no_traffic_is_insufficient(n in 1usize..200) {
        let mut judge = Judge::with_defaults();
        for i in 0..n {
            let d = judge.observe(&Window { t: i as f64, ..Window::default() });
            prop_assert_eq!(d.verdict, Verdict::Insufficient);
        }
    }

    #[test]
    fn all_errors_everywhere_never_rolls_back(n in 1usize..300, rps in 1u64..5000) {
        // Everything failing for both groups is an incident, not the canary.
        let mut judge = Judge::with_defaults();
        for i in 0..n {
            let g = GroupWindow::counts(rps, rps);
            let d = judge.observe(&Window { t: i as f64, baseline: g.clone(), canary: g });
            prop_assert_ne!(d.verdict, Verdict::Rollback, "{}", d.reason);
        }
    }

    #[test]
    fn configs_that_validate_make_judges(alpha in 1e-6f64..0.5, tol in 0.0f64..10.0, weight in 0.01f64..100.0) {
        let json = format!(
            r#"{{"alpha": {alpha}, "checks": [{{"kind": "error_rate", "tolerance": {tol}, "weight": {weight}}}, {{"kind": "latency"}}]}}"#
        );
        let config: AnalysisConfig = serde_json::from_str(&json).expect("parses");
        let mut judge = Judge::new(&config, "analysis").expect("valid");
        let d = judge.observe(&Window { t: 100.0, baseline: GroupWindow::counts(10, 1), canary: GroupWindow::counts(10, 10) });
        assert_sane(&d);
    }
}
