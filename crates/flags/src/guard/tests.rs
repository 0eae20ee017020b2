//! The guard on a virtual clock: one line of verdicts per situation, one
//! character per second, and the changes it asks for.

use super::*;

/// A decision with no check reports (the guard reads only the verdict,
/// reason and onset).
fn decision(verdict: Verdict, onset_t: Option<f64>) -> Decision {
    Decision {
        t: 0.0,
        verdict,
        reason: format!("{verdict:?}").to_lowercase(),
        incident: false,
        onset_t,
        checks: Vec::new(),
    }
}

fn plan(steps: &str, step_secs: i64) -> Plan {
    Plan {
        flag: "checkout".into(),
        variant: "on".into(),
        control: "off".into(),
        steps: steps
            .split(',')
            .map(|s| s.parse().expect("share"))
            .collect(),
        step_ms: step_secs * 1000,
    }
}

/// Runs `script` (one verdict per second from t = 1 s: `i`nsufficient,
/// `c`ontinue, `p`romote, `h`old/pause, `r`ollback, `.` no tick) against
/// a guard started at t = 0, serving every change at once. Returns the
/// changes as `"<second> <kind> <share>"` and the final phase.
fn run(steps: &str, step_secs: i64, script: &str) -> (Vec<String>, Phase, Guard) {
    let mut guard = Guard::new(plan(steps, step_secs), 0).expect("valid plan");
    let mut trace = Vec::new();
    serve(&mut guard, 0, &mut trace);
    for (i, c) in script.chars().filter(|c| !c.is_whitespace()).enumerate() {
        let now = (i as i64 + 1) * 1000;
        let verdict = match c {
            'i' => Verdict::Insufficient,
            'c' => Verdict::Continue,
            'p' => Verdict::Promote,
            'h' => Verdict::Pause,
            'r' => Verdict::Rollback,
            '.' => continue,
            other => panic!("unknown script letter {other:?}"),
        };
        guard.verdict(now, &decision(verdict, Some(0.0)));
        serve(&mut guard, now, &mut trace);
    }
    let phase = guard.phase();
    (trace, phase, guard)
}

fn serve(guard: &mut Guard, now: i64, trace: &mut Vec<String>) {
    if let Some(c) = guard.pending().cloned() {
        trace.push(format!("{} {} {}", now / 1000, c.kind.action(), c.share));
        assert!(guard.applied(c.seq, now, now));
    }
}

fn check(steps: &str, step_secs: i64, script: &str, expected: &[&str], phase: Phase) {
    let (trace, got, guard) = run(steps, step_secs, script);
    assert_eq!(trace, expected, "{script}\nnote: {}", guard.note());
    assert_eq!(got, phase, "{script}\nnote: {}", guard.note());
}

#[test]
fn steps() {
    use Phase::*;
    // Healthy: a step every 10 s on continue; 100 % waits for promote.
    check(
        "1,5,25,100",
        10,
        "cccccccccc cccccccccc cccccccccc cc ppp",
        &[
            "0 rollout-start 1%",
            "10 rollout-step 5%",
            "20 rollout-step 25%",
            "33 rollout-promote 100%",
        ],
        Promoted,
    );
    // Promote before the step time is up does not skip the step time.
    check(
        "1,5,100",
        10,
        "ppppppppp p ppppppppp p",
        &[
            "0 rollout-start 1%",
            "10 rollout-step 5%",
            "20 rollout-promote 100%",
        ],
        Promoted,
    );
    // No data: no step, however long.
    check(
        "1,5,100",
        5,
        "iiiiiiiiiiiiiiiiiiii",
        &["0 rollout-start 1%"],
        Stepping,
    );
    // Continue after insufficient: the step time counts from the serve.
    check(
        "1,5,100",
        5,
        "iiiiiii c",
        &["0 rollout-start 1%", "8 rollout-step 5%"],
        Stepping,
    );
    // Rollback at the second step switches the variant off at once.
    check(
        "1,5,25,100",
        3,
        "ccc cr ccc",
        &["0 rollout-start 1%", "3 rollout-step 5%", "5 switch-off 0%"],
        RolledBack,
    );
    // Rollback during the warm-up of the first step too.
    check(
        "1,5,100",
        60,
        "r",
        &["0 rollout-start 1%", "1 switch-off 0%"],
        RolledBack,
    );
    // Pause holds the step; continue resumes it.
    check(
        "1,5,100",
        3,
        "hhhhhh ccc",
        &["0 rollout-start 1%", "7 rollout-step 5%"],
        Stepping,
    );
    check("1,5,100", 3, "cc hhhh", &["0 rollout-start 1%"], Paused);
    // Rollback while paused.
    check(
        "1,5,100",
        3,
        "hh r",
        &["0 rollout-start 1%", "3 switch-off 0%"],
        RolledBack,
    );
    // A last step below 100 % ends on promote after its time, not on
    // continue.
    check(
        "1,50",
        2,
        "cc cccc pp",
        &["0 rollout-start 1%", "2 rollout-step 50%"],
        Promoted,
    );
    check(
        "1,50",
        2,
        "cc cccccc",
        &["0 rollout-start 1%", "2 rollout-step 50%"],
        Stepping,
    );
    // Verdicts after the end change nothing.
    check(
        "1,5,100",
        1,
        "r cpcpcp",
        &["0 rollout-start 1%", "1 switch-off 0%"],
        RolledBack,
    );
    // Fine shares.
    check(
        "0.5,2.5,100",
        1,
        "c c p",
        &[
            "0 rollout-start 0.5%",
            "1 rollout-step 2.5%",
            "3 rollout-promote 100%",
        ],
        Promoted,
    );
}

#[test]
fn the_switch_off_records_its_mttr() {
    let mut g = Guard::new(plan("1,5,100", 10), 1_000_000).expect("plan");
    let start = g.pending().expect("start").seq;
    assert!(g.applied(start, 1_000_010, 1_000_020));
    assert_eq!(g.started_ms(), Some(1_000_020));
    // The judge speaks 12 s in and puts the onset at 7 s.
    let now = 1_012_020;
    assert!(g.verdict(now, &decision(Verdict::Rollback, Some(7.0))));
    let change = g.pending().cloned().expect("switch-off");
    assert_eq!(
        (change.kind, change.share),
        (ChangeKind::SwitchOff, Share::ZERO)
    );
    assert!(
        change.reason.contains("the judge says roll back at 1%"),
        "{}",
        change.reason
    );
    assert!(
        change.reason.contains("everyone gets `off`"),
        "{}",
        change.reason
    );
    assert!(g.applied(change.seq, now + 40, now + 45));
    let m = g.rollback().expect("mttr").clone();
    assert_eq!(
        m,
        Mttr {
            onset_ms: Some(1_007_020),
            verdict_ms: now,
            action_ms: Some(now + 40),
            switched_ms: Some(now + 45),
            quiet_ms: None,
        }
    );
    // Verify: a tick still straddling the switch does not count, nor one
    // with variant traffic or no traffic at all.
    assert!(!g.traffic(now + 1000, 50, 0));
    assert!(!g.traffic(now + 2000, 50, 3));
    assert!(!g.traffic(now + 3000, 0, 0));
    assert!(g.traffic(now + 4000, 50, 0));
    assert!(!g.traffic(now + 5000, 50, 0));
    assert_eq!(
        g.rollback().expect("mttr").phases(),
        MttrPhases {
            detect_ms: Some(5_000),
            decide_ms: Some(40),
            act_ms: Some(5),
            verify_ms: Some(4_000 - 45),
            total_ms: Some(5_045),
        }
    );
    assert_eq!(g.ended_ms(), Some(now + 45));
}

#[test]
fn an_onset_after_the_verdict_or_missing_is_not_trusted() {
    let mut g = Guard::new(plan("1,100", 10), 0).expect("plan");
    let s = g.pending().expect("start").seq;
    g.applied(s, 0, 0);
    g.verdict(3000, &decision(Verdict::Rollback, Some(99.0)));
    assert_eq!(g.rollback().expect("mttr").onset_ms, Some(3000));
    let mut g = Guard::new(plan("1,100", 10), 0).expect("plan");
    let s = g.pending().expect("start").seq;
    g.applied(s, 0, 0);
    g.verdict(3000, &decision(Verdict::Rollback, Some(f64::NAN)));
    let m = g.rollback().expect("mttr").clone();
    assert_eq!(m.onset_ms, None);
    assert_eq!(m.phases().detect_ms, None);
}

#[test]
fn verdicts_before_the_first_step_is_served_are_ignored() {
    let mut g = Guard::new(plan("1,100", 1), 0).expect("plan");
    assert!(!g.verdict(5000, &decision(Verdict::Rollback, None)));
    assert_eq!(g.phase(), Phase::Stepping);
    assert_eq!(g.pending().map(|c| c.kind), Some(ChangeKind::Start));
    assert_eq!(g.judge_t(5000), None);
}

#[test]
fn abort() {
    // Before anything was served: nothing to undo.
    let mut g = Guard::new(plan("1,100", 1), 0).expect("plan");
    g.abort(10, "ann", "wrong flag").expect("abort");
    assert_eq!((g.phase(), g.pending()), (Phase::Aborted, None));
    assert!(g.note().contains("before the first step"), "{}", g.note());
    // While a step is served: the variant goes to 0 %.
    let (_, _, mut g) = run("1,5,100", 2, "ccc");
    g.abort(9000, "ann", "support tickets").expect("abort");
    let c = g.pending().cloned().expect("abort change");
    assert_eq!((c.kind, c.share), (ChangeKind::Abort, Share::ZERO));
    assert_eq!(
        c.reason,
        "aborted by ann: support tickets; switching `on` off"
    );
    assert!(g.applied(c.seq, 9001, 9002));
    assert_eq!(g.served(), Some(Share::ZERO));
    let err = g.abort(9500, "bob", "").expect_err("already over");
    assert!(err.contains("already over (aborted)"), "{err}");
    // Over rollouts cannot be aborted.
    let (_, _, mut g) = run("1,100", 1, "p");
    assert_eq!(g.phase(), Phase::Promoted);
    assert!(g.abort(5000, "ann", "").is_err());
}

#[test]
fn failures() {
    // A step that fails for a passing reason stays pending, and a rollback
    // verdict replaces it.
    let (_, _, mut g) = run("1,5,100", 1, "");
    g.verdict(1000, &decision(Verdict::Continue, None));
    let step = g.pending().cloned().expect("step");
    assert!(!g.failed(step.seq, 1001, "disk full", false));
    assert_eq!(g.pending(), Some(&step));
    assert_eq!(g.error(), Some("disk full"));
    g.verdict(2000, &decision(Verdict::Rollback, None));
    let off = g.pending().cloned().expect("switch-off");
    assert_eq!(off.kind, ChangeKind::SwitchOff);
    // A late report about the replaced step is ignored.
    assert!(!g.applied(step.seq, 2001, 2002));
    assert!(!g.failed(step.seq, 2001, "late", true));
    assert!(g.applied(off.seq, 2001, 2002));
    assert_eq!(g.error(), None);

    // A step that can never be applied stops the rollout and switches off.
    let (_, _, mut g) = run("1,5,100", 1, "");
    g.verdict(1000, &decision(Verdict::Continue, None));
    let step = g.pending().cloned().expect("step");
    assert!(g.failed(step.seq, 1001, "no split", true));
    assert_eq!(g.phase(), Phase::Aborted);
    let abort = g.pending().cloned().expect("abort");
    assert_eq!((abort.kind, abort.share), (ChangeKind::Abort, Share::ZERO));
    // …and when that fails for good too, the guard gives up and says so.
    assert!(g.failed(abort.seq, 1002, "flag `checkout` does not exist", true));
    assert_eq!(g.pending(), None);
    assert!(
        g.note().contains("check flag `checkout` by hand"),
        "{}",
        g.note()
    );

    // A start that cannot be applied leaves the flag unchanged.
    let mut g = Guard::new(plan("1,100", 1), 0).expect("plan");
    let s = g.pending().expect("start").seq;
    assert!(g.failed(s, 1, "no variant `on`", true));
    assert_eq!((g.phase(), g.pending()), (Phase::Aborted, None));
}

#[test]
fn plans() {
    let check = |steps: &str, secs: i64, expected: Result<(), &str>| {
        let p = plan(steps, secs);
        match expected {
            Ok(()) => assert_eq!(p.validate(), Ok(()), "{steps}"),
            Err(needle) => {
                let e = p.validate().expect_err(steps).to_string();
                assert!(e.contains(needle), "{steps}: `{e}` lacks `{needle}`");
            }
        }
    };
    check("1,5,25,100", 30, Ok(()));
    check("0.5,50", 1, Ok(()));
    check("5,1", 30, Err("steps: steps must grow: 1% after 5%"));
    check("5,5", 30, Err("steps must grow"));
    check("0,5", 30, Err("a step of 0%"));
    check("100", 30, Err("no control to compare with"));
    check("1,100", 0, Err("step_time:"));
    let mut p = plan("1,100", 1);
    p.control = "on".into();
    assert!(
        p.validate()
            .expect_err("same")
            .to_string()
            .starts_with("control:")
    );
    assert!("150".parse::<Share>().is_err());
    assert!("0.001".parse::<Share>().is_err());
    assert_eq!(
        "2.5%".parse::<Share>(),
        Ok(Share::from_percent(2.5).expect("share"))
    );
}

#[test]
fn the_guarded_rollout_feeds_its_judge_and_survives_json() {
    let analysis: AnalysisConfig = serde_json::from_value(serde_json::json!({
        "promote_after": 5,
        "checks": [
            {"kind": "error_rate", "warmup": 2, "promote_below": 0.05},
        ]
    }))
    .expect("analysis");
    let mut r = GuardedRollout::new(plan("10,50,100", 3), &analysis, 0).expect("start");
    let s = r.guard.pending().expect("start").seq;
    r.guard.applied(s, 0, 0);
    let window = |requests, errors| GroupWindow::counts(requests, errors);
    let mut t = 0;
    // A treatment failing a fifth of its requests is rolled back.
    let mut bad = r.clone();
    while bad.guard.phase().is_active() && t < 120 {
        t += 1;
        bad.tick(t * 1000, window(400, 0), window(100, 20));
        if let Some(c) = bad.guard.pending().cloned() {
            bad.guard.applied(c.seq, t * 1000, t * 1000);
        }
        let back: GuardedRollout =
            serde_json::from_str(&serde_json::to_string(&bad).expect("to json"))
                .expect("from json");
        assert_eq!(back.guard, bad.guard);
    }
    assert_eq!(bad.guard.phase(), Phase::RolledBack, "{}", bad.guard.note());
    assert!(t < 30, "rolled back only after {t}s");
    assert_eq!(
        bad.last_decision().map(|d| d.verdict),
        Some(Verdict::Rollback)
    );
    // A healthy one reaches 100 %.
    t = 0;
    while r.guard.phase().is_active() && t < 300 {
        t += 1;
        r.tick(t * 1000, window(400, 0), window(100, 0));
        if let Some(c) = r.guard.pending().cloned() {
            r.guard.applied(c.seq, t * 1000, t * 1000);
        }
        let back: GuardedRollout =
            serde_json::from_str(&serde_json::to_string(&r).expect("to json")).expect("from json");
        assert_eq!(back.guard, r.guard);
    }
    assert_eq!(r.guard.phase(), Phase::Promoted, "{}", r.guard.note());
    assert_eq!(r.guard.served(), Some(Share::ALL));
    // Bad analysis sections say where.
    let bad: AnalysisConfig =
        serde_json::from_value(serde_json::json!({"alpha": 2})).expect("shape");
    let e = GuardedRollout::new(plan("1,100", 1), &bad, 0).expect_err("alpha");
    assert!(e.to_string().contains("analysis.alpha"), "{e}");
}
