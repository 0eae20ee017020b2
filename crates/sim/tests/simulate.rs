//! The simulator is deterministic, and the judge keeps its false-rollback
//! promise on it.

use backout_judge::{AnalysisConfig, Judge};
use backout_sim::report::simulate;
use backout_sim::run::Tolerances;
use backout_sim::{Family, families};

fn pick(names: &[&str]) -> Vec<(usize, Family)> {
    families()
        .into_iter()
        .enumerate()
        .filter(|(_, f)| names.contains(&f.name))
        .collect()
}

fn tolerances() -> Tolerances {
    Tolerances::from_config(&AnalysisConfig::default())
}

#[test]
fn same_seed_same_output() {
    let chosen = pick(&["aa-medium", "errors-5x", "shared-incident"]);
    let judge = Judge::with_defaults();
    let a = simulate(&chosen, &judge, tolerances(), 3, 7, &[1, 10]);
    let b = simulate(&chosen, &judge, tolerances(), 3, 7, &[1, 10]);
    let c = simulate(&chosen, &judge, tolerances(), 3, 8, &[1, 10]);
    assert_eq!(
        serde_json::to_string(&a).ok(),
        serde_json::to_string(&b).ok()
    );
    assert_ne!(
        serde_json::to_string(&a).ok(),
        serde_json::to_string(&c).ok()
    );
}

#[test]
fn regressions_are_caught_and_healthy_canaries_are_not_rolled_back() {
    // A small version of the benchmark (bench/judge.sh runs thousands):
    // 60 A/A rollouts of 30 minutes with a look every second. At α = 1 %,
    // more than 4 false rollbacks in 60 has probability < 0.3 %.
    let judge = Judge::with_defaults();
    let reports = simulate(
        &pick(&["aa-high", "errors-5x"]),
        &judge,
        tolerances(),
        60,
        20261122,
        &[1],
    );
    let backout = |family: &str| {
        reports
            .iter()
            .find(|r| r.family == family)
            .and_then(|r| r.rules.iter().find(|s| s.rule == "backout"))
            .cloned()
            .expect("family was run")
    };
    let aa = backout("aa-high");
    assert!(aa.false_rollback_rate <= 4.0 / 60.0, "{aa:?}");
    let bad = backout("errors-5x");
    assert!(bad.detection_rate.unwrap_or(0.0) >= 0.9, "{bad:?}");
}

#[test]
fn rare_errors_are_caught_in_coarse_windows() {
    // Issue 10's case (baseline errors 0.1 %, canary 2× at 100 requests/s)
    // in 10- and 60-second windows, 30 runs each; bench/judge.sh runs it
    // 1000 times. Before the long estimation windows the judge caught
    // about 80 % in 30 minutes, with a median near 11 minutes.
    let judge = Judge::with_defaults();
    let reports = simulate(
        &pick(&["rare-example"]),
        &judge,
        tolerances(),
        30,
        20261202,
        &[10, 60],
    );
    for r in &reports {
        let ours = r
            .rules
            .iter()
            .find(|s| s.rule == "backout")
            .cloned()
            .expect("judged");
        assert!(
            ours.detection_rate.unwrap_or(0.0) >= 0.9,
            "{}s: {ours:?}",
            r.window_s
        );
        assert!(
            ours.median_time_to_detect.is_some_and(|t| t <= 600.0),
            "{}s: {ours:?}",
            r.window_s
        );
    }
}
