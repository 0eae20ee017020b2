//! The judge end to end on scripted, noise-free traffic: one `check` helper,
//! one line per situation.

use backout_judge::{AnalysisConfig, CheckState, Decision, GroupWindow, Judge, Verdict, Window};
use std::collections::BTreeMap;

/// One group's tick: requests, errors, latency (every sample the same
/// multiple of a fixed spread), extra metrics.
fn group(requests: u64, errors: u64, latency_factor: f64, metrics: &[(&str, f64)]) -> GroupWindow {
    let spread = [
        20.0, 35.0, 50.0, 65.0, 80.0, 95.0, 110.0, 150.0, 200.0, 300.0,
    ];
    let n = requests.min(200) as usize;
    GroupWindow {
        requests,
        errors,
        latency_ms: spread
            .iter()
            .cycle()
            .take(n)
            .map(|v| v * latency_factor)
            .collect(),
        metrics: metrics
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// A script: `seconds` ticks of (baseline, canary) produced by `tick(t)`.
fn run(
    config: &AnalysisConfig,
    seconds: u32,
    tick: impl Fn(f64) -> (GroupWindow, GroupWindow),
) -> Vec<Decision> {
    let mut judge = Judge::new(config, "analysis").expect("valid config");
    (1..=seconds)
        .map(|s| {
            let t = f64::from(s);
            let (baseline, canary) = tick(t);
            judge.observe(&Window {
                t,
                baseline,
                canary,
            })
        })
        .collect()
}

/// Runs a script with the default config; checks that `verdict` first
/// appears within the time range, with no rollback before it, and that
/// its reason mentions `because`.
fn check(
    seconds: u32,
    tick: impl Fn(f64) -> (GroupWindow, GroupWindow),
    verdict: Verdict,
    within: (f64, f64),
    because: &str,
) {
    check_with(
        &AnalysisConfig::default(),
        seconds,
        tick,
        verdict,
        within,
        because,
    );
}

/// [`check`] with a config of its own (JSON of an analysis section).
fn check_with(
    config: &AnalysisConfig,
    seconds: u32,
    tick: impl Fn(f64) -> (GroupWindow, GroupWindow),
    verdict: Verdict,
    within: (f64, f64),
    because: &str,
) {
    let decisions = run(config, seconds, tick);
    for d in &decisions {
        assert!(
            !d.reason.is_empty() && d.checks.iter().all(|c| !c.reason.is_empty()),
            "{d:?}"
        );
    }
    if verdict == Verdict::Insufficient {
        // Insufficient is a state that must last: check every tick.
        if let Some(d) = decisions.iter().find(|d| d.verdict != verdict) {
            panic!(
                "expected insufficient throughout, got {:?} at t = {}: {}",
                d.verdict, d.t, d.reason
            );
        }
    }
    let Some(decisive) = decisions.iter().find(|d| d.verdict == verdict) else {
        let last = decisions.last().expect("at least one tick");
        panic!(
            "never {verdict:?}; last at t = {}: {:?}, {}",
            last.t, last.verdict, last.reason
        );
    };
    if let Some(early) = decisions
        .iter()
        .find(|d| d.verdict == Verdict::Rollback && d.t < decisive.t)
    {
        panic!(
            "rolled back at t = {} before {verdict:?}: {}",
            early.t, early.reason
        );
    }
    assert!(
        decisive.t >= within.0 && decisive.t <= within.1,
        "{verdict:?} at t = {}, expected within {within:?}: {}",
        decisive.t,
        decisive.reason
    );
    assert!(
        decisive.reason.contains(because),
        "reason `{}` lacks `{because}`",
        decisive.reason
    );
}

#[test]
fn verdicts_on_scripted_traffic() {
    let healthy = |_| (group(1000, 10, 1.0, &[]), group(100, 1, 1.0, &[]));
    // Nothing at all, or traffic only during warm-up: insufficient.
    check(
        20,
        |_| (group(0, 0, 1.0, &[]), group(0, 0, 1.0, &[])),
        Verdict::Insufficient,
        (1.0, 1.0),
        "not enough data",
    );
    check(
        20,
        healthy,
        Verdict::Insufficient,
        (1.0, 1.0),
        "not enough data",
    );
    // A/A: promoted once the evidence is in and promote_after has passed.
    check(
        900,
        healthy,
        Verdict::Promote,
        (60.0, 900.0),
        "within tolerance",
    );
    // A canary with no traffic is never promoted.
    check(
        300,
        |_| (group(1000, 10, 1.0, &[]), group(0, 0, 1.0, &[])),
        Verdict::Insufficient,
        (1.0, 1.0),
        "not enough data",
    );
    // Error regressions: 5x, and 3x starting at 10 minutes. The tick at
    // t = 30 is the first after the 30 s warm-up, so the earliest possible
    // rollback.
    check(
        600,
        |_| (group(1000, 10, 1.0, &[]), group(100, 5, 1.0, &[])),
        Verdict::Rollback,
        (30.0, 120.0),
        "error_rate",
    );
    check(
        1200,
        |t| {
            (
                group(1000, 10, 1.0, &[]),
                group(100, if t > 600.0 { 3 } else { 1 }, 1.0, &[]),
            )
        },
        Verdict::Rollback,
        (601.0, 720.0),
        "error_rate",
    );
    // Latency 2x slower.
    check(
        600,
        |_| (group(1000, 10, 1.0, &[]), group(100, 1, 2.0, &[])),
        Verdict::Rollback,
        (30.0, 90.0),
        "latency",
    );
    // Everything fails for everyone at 40 %: pause (absolute guard excused), never rollback.
    check(
        600,
        |t| {
            let e = if t > 300.0 { 0.4 } else { 0.01 };
            (
                group(1000, (1000.0 * e) as u64, 1.0, &[]),
                group(100, (100.0 * e) as u64, 1.0, &[]),
            )
        },
        Verdict::Pause,
        (301.0, 400.0),
        "shared incident",
    );
    // Canary breaker open, baseline's closed: rollback; both open: pause.
    check(
        300,
        |t| {
            (
                group(1000, 10, 1.0, &[("breaker_open", 0.0)]),
                group(
                    100,
                    1,
                    1.0,
                    &[("breaker_open", if t > 100.0 { 1.0 } else { 0.0 })],
                ),
            )
        },
        Verdict::Rollback,
        (110.0, 112.0),
        "breaker_open_max",
    );
    check(
        300,
        |t| {
            let open = if t > 100.0 { 1.0 } else { 0.0 };
            (
                group(1000, 10, 1.0, &[("breaker_open", open)]),
                group(100, 1, 1.0, &[("breaker_open", open)]),
            )
        },
        Verdict::Pause,
        (110.0, 112.0),
        "breaker_open_max",
    );
    // Canary CPU pinned (a warning check): pause.
    check(
        300,
        |_| {
            (
                group(1000, 10, 1.0, &[("cpu", 0.3)]),
                group(100, 1, 1.0, &[("cpu", 0.97)]),
            )
        },
        Verdict::Pause,
        (60.0, 100.0),
        "warning check failed: cpu_max",
    );
}

fn config(json: &str) -> AnalysisConfig {
    serde_json::from_str(json).expect("valid analysis section")
}

#[test]
fn checks_of_one_severity_share_their_budget() {
    // Latency as a warning: its regression pauses; an error regression
    // still rolls back. Each severity has its own pool, so a warning's
    // evidence can never roll back.
    let split = config(
        r#"{"checks": [{"kind": "error_rate"}, {"kind": "latency", "severity": "warning"}]}"#,
    );
    check_with(
        &split,
        600,
        |_| (group(1000, 10, 1.0, &[]), group(100, 1, 2.0, &[])),
        Verdict::Pause,
        (30.0, 90.0),
        "warning check failed: latency",
    );
    check_with(
        &split,
        600,
        |_| (group(1000, 10, 1.0, &[]), group(100, 5, 1.0, &[])),
        Verdict::Rollback,
        (30.0, 120.0),
        "error_rate",
    );
    // A regression present from the start is bet on from the first tick
    // after the warm-up: the bet is sized from the warm-up's ticks.
    check(
        120,
        |_| (group(1000, 10, 1.0, &[]), group(100, 5, 1.0, &[])),
        Verdict::Rollback,
        (30.0, 35.0),
        "error_rate",
    );
}

#[test]
fn budgets_in_reports() {
    // (config, check, ln(1/α) of its pool, ln(1/α) of its promotion).
    // With both sequential checks critical, one pool holds all of α = 1 %;
    // a warning check's pool holds its weight's share. Promotion needs
    // every check to pass, so each gets all of promote_alpha = 5 % (the
    // error check splits it between its two routes).
    let ln = f64::ln;
    let both = AnalysisConfig::default();
    let split = config(
        r#"{"checks": [{"kind": "error_rate", "weight": 3}, {"kind": "latency", "severity": "warning"}]}"#,
    );
    for (config, name, bound, promote) in [
        (&both, "error_rate", ln(100.0), ln(40.0)),
        (&both, "latency", ln(100.0), ln(20.0)),
        (&split, "error_rate", ln(400.0 / 3.0), ln(40.0)),
        (&split, "latency", ln(400.0), ln(20.0)),
    ] {
        let last = run(config, 60, |_| {
            (group(1000, 10, 1.0, &[]), group(100, 1, 1.0, &[]))
        })
        .pop()
        .expect("ticks");
        let report = last
            .checks
            .iter()
            .find(|c| c.name == name)
            .expect("check reported");
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
        assert!(close(report.bound, bound), "{name}: {report:?}");
        assert!(close(report.promote_bound, promote), "{name}: {report:?}");
    }
}

#[test]
fn warm_up_is_ignored() {
    // Awful for 25 s (inside the 30 s warm-up), healthy afterwards.
    let decisions = run(&AnalysisConfig::default(), 300, |t| {
        let factor = if t <= 25.0 { 10.0 } else { 1.0 };
        (
            group(1000, 10, 1.0, &[]),
            group(100, (factor as u64).min(100), factor, &[]),
        )
    });
    assert!(decisions.iter().all(|d| d.verdict != Verdict::Rollback));
    assert!(
        decisions[0]
            .checks
            .iter()
            .any(|c| c.state == CheckState::Warmup)
    );
}

#[test]
fn a_snapshot_resumes_where_it_left_off() {
    let tick = |t: f64| Window {
        t,
        baseline: group(1000, 10, 1.0, &[]),
        canary: group(100, if t > 100.0 { 4 } else { 1 }, 1.0, &[]),
    };
    let mut straight = Judge::with_defaults();
    let mut resumed = Judge::with_defaults();
    for s in 1..=300 {
        let t = f64::from(s);
        let a = straight.observe(&tick(t));
        if s == 150 {
            let saved = serde_json::to_string(&resumed).expect("serialise judge");
            resumed = serde_json::from_str(&saved).expect("restore judge");
        }
        let b = resumed.observe(&tick(t));
        assert_eq!(a, b, "diverged at t = {t}");
    }
}

#[test]
fn the_judge_crate_has_no_io_dependencies() {
    // Invariant: the judge is pure. Its manifest may not name an async
    // runtime or network crate, directly (its few dependencies have none).
    let manifest = include_str!("../Cargo.toml");
    let deps = manifest
        .split("[dev-dependencies]")
        .next()
        .unwrap_or(manifest);
    for banned in ["tokio", "reqwest", "hyper", "axum", "mio", "socket2"] {
        assert!(!deps.contains(banned), "backout-judge depends on {banned}");
    }
}

#[test]
fn rare_errors_in_coarse_windows_are_caught() {
    // Issue 10's case without the noise: baseline errors 0.1 %, the canary
    // 2× at 100 requests/s, in 10-second windows. Two minutes hold a
    // dozen errors, so the bets are sized from the longer windows; before
    // those, only noise ever cleared the gate, and the check's e-value
    // sank for 15 minutes.
    let mut judge = Judge::with_defaults();
    let rollback = (1..=180).map(|i| f64::from(i) * 10.0).find_map(|t| {
        let d = judge.observe(&Window {
            t,
            baseline: group(8800, 9, 1.0, &[]),
            canary: group(1000, 2, 1.0, &[]),
        });
        (d.verdict == Verdict::Rollback).then_some((t, d.reason))
    });
    let Some((t, reason)) = rollback else {
        panic!("a 2× canary at 0.1 % was never rolled back in 30 minutes");
    };
    assert!(t <= 600.0, "rolled back only at t = {t}: {reason}");
    assert!(reason.contains("error_rate"), "{reason}");
}
