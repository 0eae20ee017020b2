//! Table and scenario tests of the state machine, and properties that must
//! hold after any sequence of inputs.

use backout_judge::Verdict;
use backout_routing::Permille;
use backout_spec::{CapacityMode, Duration, Step, UnsafeGate};
use proptest::prelude::*;

use crate::*;

/// A service and a clock; inputs are applied at the current time.
#[derive(Clone)]
struct World {
    state: ServiceState,
    policy: Policy,
    now: i64,
}

fn steps(yaml: &str) -> Vec<Step> {
    serde_saphyr::from_str(yaml).unwrap()
}

fn policy(steps_yaml: &str) -> Policy {
    Policy {
        strategy: backout_spec::Strategy {
            steps: steps(steps_yaml),
            progress_deadline: Duration::from_secs(600),
            soak: Duration::from_secs(300),
            drain: Duration::from_secs(5),
            replicas: 2,
        },
        ..Policy::default()
    }
}

impl World {
    fn new(steps_yaml: &str) -> World {
        World {
            state: ServiceState::new("shop"),
            policy: policy(steps_yaml),
            now: 1_000_000,
        }
    }

    fn send(&mut self, input: Input) -> Vec<Action> {
        self.send_as("alice", input)
    }

    fn send_as(&mut self, actor: &str, input: Input) -> Vec<Action> {
        let env = Envelope {
            at_ms: self.now,
            actor,
            reason: None,
        };
        self.state.apply(&env, &input, &self.policy)
    }

    fn after(&mut self, secs: i64) -> Vec<Action> {
        self.now += secs * 1000;
        self.send(Input::Tick)
    }

    fn cmd(&mut self, c: Command) -> Vec<Action> {
        assert_eq!(
            self.state.check(&Input::Command(c.clone()), &self.policy),
            Ok(()),
            "{c:?}"
        );
        self.send(Input::Command(c))
    }

    fn refused(&self, c: Command) -> String {
        self.state
            .check(&Input::Command(c.clone()), &self.policy)
            .expect_err("refused")
            .message
    }

    fn ready(&mut self, version: &str, ready: u32) -> Vec<Action> {
        self.send(Input::Readiness {
            version: version.into(),
            ready,
            total: 2,
        })
    }

    fn verdict(&mut self, v: Verdict) -> Vec<Action> {
        self.send(Input::Verdict {
            verdict: v,
            reason: "because".into(),
            onset_ms: Some(self.now - 5_000),
        })
    }

    fn release(&mut self, version: &str) {
        self.send(Input::RegisterRelease {
            version: version.into(),
            artifact: None,
            config: Default::default(),
            gates: None,
        });
    }

    fn release_gated(&mut self, version: &str, report: GateReport) {
        let input = Input::RegisterRelease {
            version: version.into(),
            artifact: None,
            config: Default::default(),
            gates: Some(Box::new(ReleaseGates {
                contracts: Some(contracts()),
                report: Some(report),
            })),
        };
        assert_eq!(self.state.check(&input, &self.policy), Ok(()));
        self.send(input);
    }

    /// v1 stable and v2 registered with an unsafe migration against it,
    /// rolled out and taking traffic at the strategy's first weight.
    fn with_unsafe_canary(steps_yaml: &str, gate: UnsafeGate) -> World {
        let mut w = World::with_stable_only(steps_yaml);
        w.policy.gates.on_unsafe = gate;
        w.release_gated("v2", unsafe_report(Some("v1")));
        if gate != UnsafeGate::Refuse {
            w.send(Input::StartRollout {
                version: "v2".into(),
            });
            w.ready("v2", 2);
        }
        w
    }

    /// v1 registered, deployed and stable; v2 registered.
    fn with_stable(steps_yaml: &str) -> World {
        let mut w = World::with_stable_only(steps_yaml);
        w.release("v2");
        w
    }

    /// v1 registered, deployed and stable.
    fn with_stable_only(steps_yaml: &str) -> World {
        let mut w = World::new(steps_yaml);
        w.release("v1");
        w.send(Input::StartRollout {
            version: "v1".into(),
        });
        w.ready("v1", 2);
        w.now += 300_000;
        w.send(Input::Tick); // v1 soaked: known good
        w
    }

    fn route(&self) -> (String, Option<String>, f64, usize) {
        let r = self.state.desired_route().expect("a route");
        (
            r.stable.clone(),
            r.canary.clone(),
            r.weight.as_percent(),
            r.rules.len(),
        )
    }
}

fn contracts() -> Contracts {
    Contracts {
        dialect: Some("postgres".into()),
        migrations: vec![ContractFile {
            name: "db/0002_drop_note.sql".into(),
            text: "ALTER TABLE orders DROP COLUMN note;".into(),
        }],
        api: None,
    }
}

/// A report as the API would compute it for `db/0002_drop_note.sql`.
fn unsafe_report(against: Option<&str>) -> GateReport {
    GateReport {
        against: against.map(str::to_string),
        verdict: GateClass::Unsafe,
        findings: vec![GateFinding {
            check: "migrations".into(),
            at: "db/0002_drop_note.sql:1:1".into(),
            rule: "drop_column".into(),
            class: GateClass::Unsafe,
            message: "dropping column orders.note breaks the previous release".into(),
        }],
        accepted: None,
    }
}

/// Kinds of the actions, for compact assertions.
fn kinds(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Deploy { version, replicas } => format!("deploy {version} x{replicas}"),
            Action::Scale { version, replicas } => format!("scale {version} x{replicas}"),
            Action::Teardown { version } => format!("teardown {version}"),
            Action::SetRoute(r) => format!(
                "route {}{}",
                r.stable,
                r.canary
                    .as_ref()
                    .map_or(String::new(), |c| format!(" {c}@{}", r.weight.as_percent()))
            ),
            Action::Notify(n) => format!("notify {}", n.kind),
        })
        .collect()
}

#[test]
fn the_first_release_goes_straight_to_all_traffic() {
    let mut w = World::new("[{set_weight: 10}]");
    w.release("v1");
    assert_eq!(
        kinds(&w.send(Input::StartRollout {
            version: "v1".into()
        })),
        ["deploy v1 x2", "notify rollout_started"]
    );
    assert_eq!(w.state.rollout.as_ref().unwrap().kind, RolloutKind::Initial);
    assert!(w.ready("v1", 1).is_empty(), "waits for every replica");
    assert_eq!(kinds(&w.ready("v1", 2)), ["route v1", "notify promoted"]);
    assert_eq!(w.state.stable.as_deref(), Some("v1"));
    assert!(w.state.rollout.is_none());
    assert_eq!(
        w.state.release("v1").unwrap().outcome,
        Some(ReleaseOutcome::Promoted)
    );
    // Known good after the soak, not before.
    assert!(w.after(299).is_empty());
    assert_eq!(kinds(&w.after(1)), ["notify known_good"]);
    assert!(w.state.release("v1").unwrap().known_good_ms.is_some());
}

#[test]
fn a_canary_moves_through_every_step_kind() {
    let mut w = World::with_stable(
        "[{set_weight: 10}, {match: {header: x-employee, equals: 'true'}}, {pause: 30s}, approve, {analysis: {duration: 1m}}, {set_weight: 50}, {pause: {}}]",
    );
    assert_eq!(
        kinds(&w.send(Input::StartRollout {
            version: "v2".into()
        })),
        ["deploy v2 x2", "notify rollout_started"]
    );
    assert_eq!(
        w.refused(Command::Promote { full: false }),
        "v2 is still starting; promote once it is ready"
    );
    // Ready: weight and match run back to back, then the timed pause waits.
    assert_eq!(
        kinds(&w.ready("v2", 2)),
        [
            "notify canary_ready",
            "route v1 v2@10",
            "notify step",
            "route v1 v2@10",
            "notify step"
        ]
    );
    assert_eq!(w.route(), ("v1".into(), Some("v2".into()), 10.0, 1));
    assert!(w.after(29).is_empty());
    assert_eq!(kinds(&w.after(1)), ["notify step"]);
    // The approval gate.
    assert_eq!(w.state.rollout.as_ref().unwrap().step, 3);
    assert!(
        w.after(600).is_empty(),
        "waiting for a human does not hit the deadline"
    );
    assert_eq!(kinds(&w.cmd(Command::Approve)), ["notify approved"]);
    // Analysis: insufficient and continue do not pass it; promote does.
    w.verdict(Verdict::Insufficient);
    w.verdict(Verdict::Continue);
    assert_eq!(w.route().2, 10.0);
    assert_eq!(
        kinds(&w.verdict(Verdict::Promote)),
        ["notify step", "route v1 v2@50", "notify step"]
    );
    // The open pause: resume passes it, and the end promotes.
    assert_eq!(
        w.state.check(&Input::Command(Command::Approve), &w.policy),
        Ok(()),
        "an open pause is a gate"
    );
    let done = w.cmd(Command::Resume);
    assert_eq!(
        kinds(&done),
        ["notify resumed", "route v2", "notify promoted"]
    );
    assert_eq!(w.state.stable.as_deref(), Some("v2"));
    assert_eq!(
        w.state.history.last().unwrap().outcome,
        RolloutOutcome::Promoted
    );
    // The old stable is torn down after the drain.
    assert!(w.after(4).is_empty());
    assert_eq!(kinds(&w.after(1)), ["teardown v1"]);
    assert_eq!(
        w.state.desired_instances().keys().collect::<Vec<_>>(),
        ["v2"]
    );
}

#[test]
fn an_analysis_without_proof_pauses_or_continues() {
    let mut w =
        World::with_stable("[{set_weight: 10}, {analysis: {duration: 1m}}, {set_weight: 20}]");
    w.send(Input::StartRollout {
        version: "v2".into(),
    });
    w.ready("v2", 2);
    assert_eq!(kinds(&w.after(60)), ["notify paused"]);
    assert_eq!(
        w.state
            .rollout
            .as_ref()
            .unwrap()
            .paused
            .as_ref()
            .unwrap()
            .kind,
        PauseKind::Analysis
    );
    assert_eq!(
        kinds(&w.cmd(Command::Approve)),
        [
            "notify approved",
            "route v1 v2@20",
            "notify step",
            "route v2",
            "notify promoted"
        ]
    );

    let mut w =
        World::with_stable("[{analysis: {duration: 1m, on_timeout: continue}}, {set_weight: 20}]");
    w.send(Input::StartRollout {
        version: "v2".into(),
    });
    w.ready("v2", 2);
    assert_eq!(
        kinds(&w.after(60)),
        [
            "notify step",
            "route v1 v2@20",
            "notify step",
            "route v2",
            "notify promoted"
        ]
    );
}

#[test]
fn a_rollback_verdict_rolls_back_at_once_and_starts_the_mttr_clock() {
    let mut w = World::with_stable("[{set_weight: 10}, {pause: 10m}]");
    w.send(Input::StartRollout {
        version: "v2".into(),
    });
    w.ready("v2", 2);
    w.after(20);
    let verdict_at = w.now;
    assert_eq!(
        kinds(&w.verdict(Verdict::Rollback)),
        [
            "notify rollback",
            "route v1 v2@0",
            "route v1",
            "notify rolled_back"
        ]
    );
    assert_eq!(w.route(), ("v1".into(), None, 0.0, 0));
    assert!(w.state.rollout.is_none());
    assert_eq!(
        w.state.release("v2").unwrap().outcome,
        Some(ReleaseOutcome::RolledBack)
    );
    // The proxy confirms the switch; the canary goes; errors recover.
    w.now += 3;
    w.send(Input::RouteApplied {
        stable: "v1".into(),
        canary: Some("v2".into()),
        weight_permille: 0,
        generation: 7,
        applied_at_ms: w.now,
    });
    assert_eq!(kinds(&w.after(5)), ["teardown v2"]);
    w.now += 500;
    w.send(Input::TornDown {
        version: "v2".into(),
    });
    w.now += 1_000;
    w.send(Input::Recovered);
    let rec = w.state.rollbacks.last().unwrap();
    assert_eq!(rec.kind, RollbackKind::Automatic);
    let b = rec.breakdown();
    assert_eq!(b.detect_ms, Some(5_000));
    assert_eq!(b.decide_ms, Some(0));
    assert_eq!(b.act_ms, Some(3));
    assert_eq!(b.verify_ms, Some(5_000 + 500 + 1_000));
    assert_eq!(b.total_ms, Some(w.now - (verdict_at - 5_000)));
    assert_eq!(MttrSummary::of(&w.state.rollbacks).rollbacks, 1);
}

#[test]
fn with_automatic_rollback_off_a_rollback_verdict_pauses() {
    let mut w = World::with_stable("[{set_weight: 10}, {pause: 10m}]");
    w.send_as(
        "bob",
        Input::SetAutoRollback {
            enabled: false,
            until_ms: Some(w.now + 60_000),
        },
    );
    w.send(Input::StartRollout {
        version: "v2".into(),
    });
    w.ready("v2", 2);
    assert_eq!(kinds(&w.verdict(Verdict::Rollback)), ["notify paused"]);
    assert_eq!(w.route().2, 10.0, "nothing moved");
    assert!(w.verdict(Verdict::Rollback).is_empty(), "said once");
    // The holiday ends: the verdict that stood meanwhile is carried out at
    // once, without waiting for the judge to say it again.
    let back = kinds(&w.after(61));
    assert_eq!(
        back[..2],
        ["notify auto_rollback", "notify rollback"],
        "{back:?}"
    );
    assert_eq!(w.route().2, 0.0, "the canary lost its share");
}

#[test]
fn switching_automatic_rollback_back_on_acts_on_a_standing_verdict() {
    let mut w = World::with_stable("[{set_weight: 10}, {pause: 10m}]");
    w.send(Input::SetAutoRollback {
        enabled: false,
        until_ms: None,
    });
    w.send(Input::StartRollout {
        version: "v2".into(),
    });
    w.ready("v2", 2);
    assert_eq!(kinds(&w.verdict(Verdict::Rollback)), ["notify paused"]);
    let back = kinds(&w.send(Input::SetAutoRollback {
        enabled: true,
        until_ms: None,
    }));
    assert_eq!(
        back[..2],
        ["notify auto_rollback", "notify rollback"],
        "{back:?}"
    );
    assert_eq!(w.route().2, 0.0);
    // A verdict that no longer says roll back is left alone.
    let mut w = World::with_stable("[{set_weight: 10}, {pause: 10m}]");
    w.send(Input::SetAutoRollback {
        enabled: false,
        until_ms: None,
    });
    w.send(Input::StartRollout {
        version: "v2".into(),
    });
    w.ready("v2", 2);
    w.verdict(Verdict::Rollback);
    w.verdict(Verdict::Continue);
    let back = kinds(&w.send(Input::SetAutoRollback {
        enabled: true,
        until_ms: None,
    }));
    assert_eq!(back, ["notify auto_rollback"]);
    assert_eq!(w.route().2, 10.0);
}

#[test]
fn a_pause_verdict_waits_for_a_human() {
    let mut w = World::with_stable("[{set_weight: 10}, {pause: 1m}, {set_weight: 20}]");
    w.send(Input::StartRollout {
        version: "v2".into(),
    });
    w.ready("v2", 2);
    assert_eq!(kinds(&w.verdict(Verdict::Pause)), ["notify paused"]);
    assert!(w.after(120).is_empty(), "a paused rollout does not advance");
    assert!(
        w.verdict(Verdict::Continue).is_empty(),
        "and does not unpause by itself"
    );
    w.cmd(Command::Resume);
    assert!(w.after(59).is_empty(), "the timed pause starts over");
    assert_eq!(
        kinds(&w.after(1)),
        [
            "notify step",
            "route v1 v2@20",
            "notify step",
            "route v2",
            "notify promoted"
        ]
    );
}

#[test]
fn capacity_aware_rollbacks() {
    // Scale first: stable has 1 of 2 ready; traffic moves when it has 2.
    let mut w = World::with_stable("[{set_weight: 40}, {pause: 10m}]");
    w.send(Input::StartRollout {
        version: "v2".into(),
    });
    w.ready("v2", 2);
    w.ready("v1", 1);
    assert_eq!(
        kinds(&w.verdict(Verdict::Rollback)),
        ["notify rollback", "scale v1 x2"]
    );
    assert_eq!(w.route().2, 40.0);
    assert!(w.state.rollbacks[0].capacity.contains("scaled it first"));
    assert_eq!(
        kinds(&w.ready("v1", 2)),
        ["route v1 v2@0", "route v1", "notify rolled_back"]
    );

    // Scale first gives up waiting after the timeout.
    let mut w = World::with_stable("[{set_weight: 40}, {pause: 10m}]");
    w.send(Input::StartRollout {
        version: "v2".into(),
    });
    w.ready("v2", 2);
    w.ready("v1", 0);
    w.verdict(Verdict::Rollback);
    assert!(w.after(29).is_empty());
    assert_eq!(
        kinds(&w.after(1)),
        [
            "route v1 v2@0",
            "notify capacity_timeout",
            "route v1",
            "notify rolled_back"
        ]
    );

    // Gradual: the canary gives up what stable can take.
    let mut w = World::with_stable("[{set_weight: 80}, {pause: 10m}]");
    w.policy.rollback.capacity = CapacityMode::Gradual;
    w.send(Input::StartRollout {
        version: "v2".into(),
    });
    w.ready("v2", 2);
    w.ready("v1", 1);
    assert_eq!(
        kinds(&w.verdict(Verdict::Rollback)),
        ["notify rollback", "scale v1 x2", "route v1 v2@50"]
    );
    assert!(w.state.rollbacks[0].capacity.contains("gradually"));
    assert_eq!(
        kinds(&w.ready("v1", 2)),
        ["route v1 v2@0", "route v1", "notify rolled_back"]
    );

    // Break-glass does not wait.
    let mut w = World::with_stable("[{set_weight: 40}, {pause: 10m}]");
    w.send(Input::StartRollout {
        version: "v2".into(),
    });
    w.ready("v2", 2);
    w.ready("v1", 0);
    assert_eq!(
        kinds(&w.cmd(Command::Rollback { to: None })),
        [
            "notify rollback",
            "scale v1 x2",
            "route v1 v2@0",
            "route v1",
            "notify rolled_back"
        ]
    );
    assert_eq!(w.state.rollbacks[0].kind, RollbackKind::Manual);
    assert!(w.state.rollbacks[0].capacity.contains("break-glass"));
}

#[test]
fn the_progress_deadline_ends_a_rollout_that_never_gets_ready() {
    let mut w = World::with_stable("[{set_weight: 10}]");
    w.send(Input::StartRollout {
        version: "v2".into(),
    });
    w.ready("v2", 1);
    assert!(w.after(599).is_empty());
    let out = w.after(1);
    assert_eq!(kinds(&out), ["notify deadline", "notify aborted"]);
    let Action::Notify(n) = &out[0] else {
        unreachable!()
    };
    assert_eq!(
        n.message,
        "progress deadline: v2 had 1/2 ready instances after 10m"
    );
    assert!(w.state.rollout.is_none());
    assert_eq!(
        w.state.history.last().unwrap().outcome,
        RolloutOutcome::Aborted
    );
    assert_eq!(w.route(), ("v1".into(), None, 0.0, 0));
    assert_eq!(kinds(&w.after(5)), ["teardown v2"]);

    // Losing readiness mid-rollout for the deadline also ends it.
    let mut w = World::with_stable("[{set_weight: 10}, {pause: 20m}]");
    w.policy.strategy.progress_deadline = Duration::from_secs(60);
    w.send(Input::StartRollout {
        version: "v2".into(),
    });
    w.ready("v2", 2);
    w.after(30);
    w.ready("v2", 1);
    assert!(w.after(59).is_empty());
    assert_eq!(
        kinds(&w.after(1)),
        ["notify deadline", "route v1", "notify aborted"]
    );
}

#[test]
fn humans_pause_promote_abort() {
    let mut w =
        World::with_stable("[{set_weight: 10}, {pause: 1h}, {set_weight: 50}, {pause: 1h}]");
    w.send(Input::StartRollout {
        version: "v2".into(),
    });
    w.ready("v2", 2);
    assert_eq!(
        w.refused(Command::Approve),
        "the rollout of v2 is not waiting for approval (step 2: pause 1h)"
    );
    w.cmd(Command::Pause);
    assert_eq!(w.refused(Command::Pause), "the rollout is already paused");
    assert_eq!(
        w.refused(Command::Approve),
        "the rollout is paused (paused by alice): use `backout resume`"
    );
    // Promote skips the current step (and lifts the pause).
    assert_eq!(
        kinds(&w.cmd(Command::Promote { full: false })),
        ["notify promote", "route v1 v2@50", "notify step"]
    );
    // Full promotion is break-glass forward.
    assert_eq!(
        kinds(&w.cmd(Command::Promote { full: true })),
        ["notify promote_full", "route v2", "notify promoted"]
    );
    assert_eq!(w.state.stable.as_deref(), Some("v2"));

    let mut w = World::with_stable("[{set_weight: 10}, {pause: 1h}]");
    w.send(Input::StartRollout {
        version: "v2".into(),
    });
    w.ready("v2", 2);
    assert_eq!(
        kinds(&w.cmd(Command::Abort)),
        ["route v1", "notify aborted"]
    );
    assert!(w.state.rollbacks.is_empty(), "an abort is not an incident");
    assert_eq!(
        w.refused(Command::Abort),
        "no rollout in progress for service shop"
    );
}

#[test]
fn rollback_to_a_pinned_known_good_release() {
    let mut w = World::with_stable("[{set_weight: 10}]");
    assert_eq!(
        w.refused(Command::Rollback {
            to: Some("v0".into())
        }),
        "v0 is not a pinned known-good release of shop; pinned: v1"
    );
    w.send(Input::StartRollout {
        version: "v2".into(),
    });
    w.ready("v2", 2);
    assert_eq!(w.state.stable.as_deref(), Some("v2"));
    w.after(10);
    // v2 turns out bad after promotion: back to v1 without analysis.
    assert_eq!(
        kinds(&w.cmd(Command::Rollback {
            to: Some("v1".into())
        })),
        [
            "notify soak_interrupted",
            "deploy v1 x2",
            "notify rollout_started"
        ]
    );
    assert_eq!(w.state.rollout.as_ref().unwrap().kind, RolloutKind::Restore);
    assert_eq!(kinds(&w.ready("v1", 2)), ["route v1", "notify promoted"]);
    assert_eq!(w.state.stable.as_deref(), Some("v1"));
    let rec = w.state.rollbacks.last().unwrap();
    assert_eq!(
        (rec.kind, rec.from_version.as_str(), rec.to_version.as_str()),
        (RollbackKind::ToVersion, "v2", "v1")
    );
    assert_eq!(
        w.state.release("v2").unwrap().outcome,
        Some(ReleaseOutcome::RolledBack)
    );
    // A plain rollback with nothing in progress goes to the previous known
    // good, and there is none before the first.
    let mut w = World::new("[]");
    w.release("v1");
    w.send(Input::StartRollout {
        version: "v1".into(),
    });
    w.ready("v1", 2);
    assert!(
        w.refused(Command::Rollback { to: None })
            .contains("no earlier known-good release")
    );
}

#[test]
fn releases_are_immutable() {
    let mut w = World::new("[]");
    w.release("v1");
    let same = Input::RegisterRelease {
        version: "v1".into(),
        artifact: None,
        config: Default::default(),
        gates: None,
    };
    assert_eq!(w.state.check(&same, &w.policy), Ok(()), "a retry is fine");
    let different = Input::RegisterRelease {
        version: "v1".into(),
        artifact: Some("registry/app@sha256:abc".into()),
        config: Default::default(),
        gates: None,
    };
    assert_eq!(
        w.state.check(&different, &w.policy).unwrap_err().code,
        "conflict"
    );
    w.send(different);
    assert_eq!(w.state.releases.len(), 1);
    assert_eq!(w.state.releases[0].artifact, None);
}

#[test]
fn an_unsafe_release_is_paused_and_paged_instead_of_rolled_back_automatically() {
    let mut w = World::with_unsafe_canary(
        "[{set_weight: 10}, {pause: 5m}]",
        UnsafeGate::ManualRollback,
    );
    assert_eq!(w.route(), ("v1".into(), Some("v2".into()), 10.0, 0));
    let actions = w.verdict(Verdict::Rollback);
    assert_eq!(kinds(&actions), ["notify page", "notify paused"]);
    let Action::Notify(page) = &actions[0] else {
        panic!()
    };
    assert!(page.message.contains("drop_column"), "{}", page.message);
    let r = w.state.rollout.as_ref().unwrap();
    assert_eq!(r.paused.as_ref().unwrap().kind, PauseKind::Gate);
    assert_eq!(
        w.route(),
        ("v1".into(), Some("v2".into()), 10.0, 0),
        "the canary keeps its share"
    );
    assert!(w.state.rollbacks.is_empty());
    // The judge saying it again pages once, not every second.
    assert!(w.verdict(Verdict::Rollback).is_empty());
    // A person decides: the big red button still works.
    let actions = w.cmd(Command::Rollback { to: None });
    assert!(
        kinds(&actions).contains(&"route v1 v2@0".to_string()),
        "{actions:?}"
    );
    assert_eq!(w.state.rollbacks[0].kind, RollbackKind::Manual);
}

#[test]
fn allow_and_an_accepted_report_roll_back_as_usual() {
    let mut w = World::with_unsafe_canary("[{set_weight: 10}, {pause: 5m}]", UnsafeGate::Allow);
    w.verdict(Verdict::Rollback);
    assert_eq!(w.state.rollbacks[0].kind, RollbackKind::Automatic);

    let mut w = World::with_unsafe_canary(
        "[{set_weight: 10}, {pause: 5m}]",
        UnsafeGate::ManualRollback,
    );
    let accept = Input::AcceptGates {
        version: "v2".into(),
        reason: "v1 never reads orders.note".into(),
    };
    assert_eq!(w.state.check(&accept, &w.policy), Ok(()));
    assert_eq!(
        kinds(&w.send_as("bob", accept.clone())),
        ["notify gates_accepted"]
    );
    let acceptance = w
        .state
        .release("v2")
        .unwrap()
        .gates
        .as_ref()
        .unwrap()
        .accepted
        .clone()
        .unwrap();
    assert_eq!(
        (acceptance.by.as_str(), acceptance.reason.as_str()),
        ("bob", "v1 never reads orders.note")
    );
    assert_eq!(
        w.state.check(&accept, &w.policy).unwrap_err().code,
        "conflict",
        "once"
    );
    w.verdict(Verdict::Rollback);
    assert_eq!(w.state.rollbacks[0].kind, RollbackKind::Automatic);
}

#[test]
fn refuse_holds_an_unsafe_release_back_until_it_is_accepted_with_a_reason() {
    let mut w = World::with_unsafe_canary("[{set_weight: 10}]", UnsafeGate::Refuse);
    let start = Input::StartRollout {
        version: "v2".into(),
    };
    let refusal = w.state.check(&start, &w.policy).unwrap_err();
    assert_eq!(refusal.code, "conflict");
    assert!(
        refusal.message.contains("backout gates accept shop v2"),
        "{}",
        refusal.message
    );
    let no_reason = Input::AcceptGates {
        version: "v2".into(),
        reason: " ".into(),
    };
    assert_eq!(
        w.state.check(&no_reason, &w.policy).unwrap_err().code,
        "invalid"
    );
    w.send(Input::AcceptGates {
        version: "v2".into(),
        reason: "checked by hand".into(),
    });
    assert_eq!(w.state.check(&start, &w.policy), Ok(()));
}

#[test]
fn a_report_against_a_release_no_longer_stable_is_checked_again_before_the_rollout() {
    // v2 registered against v1, then v3 became stable.
    let mut w = World::with_stable_only("[]");
    w.policy.gates.on_unsafe = UnsafeGate::ManualRollback;
    w.release_gated("v2", unsafe_report(Some("v1")));
    w.send(Input::AcceptGates {
        version: "v2".into(),
        reason: "fine against v1".into(),
    });
    w.release("v3");
    w.send(Input::StartRollout {
        version: "v3".into(),
    });
    w.ready("v3", 2);
    assert_eq!(w.state.stable.as_deref(), Some("v3"));
    let start = Input::StartRollout {
        version: "v2".into(),
    };
    let r = w.state.check(&start, &w.policy).unwrap_err();
    assert!(r.message.contains("checked again"), "{}", r.message);
    // A report against the wrong release is refused; one against v3 taken,
    // and the acceptance of the old one lapses.
    let stale = Input::RecheckGates {
        version: "v2".into(),
        report: unsafe_report(Some("v1")),
    };
    assert_eq!(
        w.state.check(&stale, &w.policy).unwrap_err().code,
        "conflict"
    );
    let fresh = Input::RecheckGates {
        version: "v2".into(),
        report: unsafe_report(Some("v3")),
    };
    assert_eq!(w.state.check(&fresh, &w.policy), Ok(()));
    let actions = w.send(fresh);
    let Action::Notify(n) = &actions[0] else {
        panic!()
    };
    assert!(n.message.contains("lapses"), "{}", n.message);
    let g = w.state.release("v2").unwrap().gates.clone().unwrap();
    assert_eq!((g.against.as_deref(), g.accepted), (Some("v3"), None));
    assert_eq!(w.state.check(&start, &w.policy), Ok(()));
}

#[test]
fn a_report_is_taken_only_against_the_release_stable_now() {
    let mut w = World::with_stable_only("[]");
    for stale in [None, Some("v0")] {
        let input = Input::RegisterRelease {
            version: "v2".into(),
            artifact: None,
            config: Default::default(),
            gates: Some(Box::new(ReleaseGates {
                contracts: None,
                report: Some(unsafe_report(stale)),
            })),
        };
        let r = w.state.check(&input, &w.policy).unwrap_err();
        assert!(
            r.message.contains("stable release of shop is now v1"),
            "{}",
            r.message
        );
    }
    // Registering notes the verdict and what the gate will do, in the log.
    w.release_gated("v2", unsafe_report(Some("v1")));
    let released = w.state.release("v2").unwrap();
    assert_eq!(released.contracts.as_ref().unwrap().migrations.len(), 1);
    // The same release with other contracts is another release.
    let other = Input::RegisterRelease {
        version: "v2".into(),
        artifact: None,
        config: Default::default(),
        gates: None,
    };
    assert_eq!(
        w.state.check(&other, &w.policy).unwrap_err().code,
        "conflict"
    );
}

// ---------------------------------------------------------------------------
// Every step kind × every input: whatever arrives, the state stays sound.

fn any_input() -> impl Strategy<Value = Input> {
    let version = prop_oneof![
        Just("v1".to_string()),
        Just("v2".to_string()),
        Just("v3".to_string())
    ];
    let verdict = prop_oneof![
        Just(Verdict::Insufficient),
        Just(Verdict::Continue),
        Just(Verdict::Pause),
        Just(Verdict::Rollback),
        Just(Verdict::Promote)
    ];
    let command = prop_oneof![
        Just(Command::Approve),
        Just(Command::Pause),
        Just(Command::Resume),
        Just(Command::Abort),
        Just(Command::Rollback { to: None }),
        version
            .clone()
            .prop_map(|v| Command::Rollback { to: Some(v) }),
        any::<bool>().prop_map(|full| Command::Promote { full }),
    ];
    let gated = (
        version.clone(),
        prop_oneof![Just(None), Just(Some("v1")), Just(Some("v2"))],
        any::<bool>(),
    )
        .prop_map(|(v, against, unsafe_)| {
            let mut report = unsafe_report(against);
            if !unsafe_ {
                report.verdict = GateClass::Risky;
                report.findings[0].class = GateClass::Risky;
            }
            Input::RegisterRelease {
                version: v,
                artifact: None,
                config: Default::default(),
                gates: Some(Box::new(ReleaseGates {
                    contracts: Some(contracts()),
                    report: Some(report),
                })),
            }
        });
    prop_oneof![
        gated,
        version.clone().prop_map(|v| Input::AcceptGates {
            version: v,
            reason: "checked".into()
        }),
        (
            version.clone(),
            prop_oneof![Just(None), Just(Some("v1")), Just(Some("v2"))]
        )
            .prop_map(|(v, against)| Input::RecheckGates {
                version: v,
                report: unsafe_report(against)
            }),
        version.clone().prop_map(|v| Input::RegisterRelease {
            version: v,
            artifact: None,
            config: Default::default(),
            gates: None
        }),
        version
            .clone()
            .prop_map(|v| Input::StartRollout { version: v }),
        command.prop_map(Input::Command),
        (any::<bool>(), proptest::option::of(0i64..10_000_000))
            .prop_map(|(enabled, until_ms)| Input::SetAutoRollback { enabled, until_ms }),
        Just(Input::Tick),
        verdict.prop_map(|v| Input::Verdict {
            verdict: v,
            reason: "r".into(),
            onset_ms: None
        }),
        (version.clone(), 0u32..3, 0u32..3).prop_map(|(v, r, t)| Input::Readiness {
            version: v,
            ready: r,
            total: t.max(r)
        }),
        version.clone().prop_map(|v| Input::DeployFailed {
            version: v,
            error: "boom".into()
        }),
        (
            version.clone(),
            proptest::option::of(version.clone()),
            0u16..=1000
        )
            .prop_map(|(s, c, w)| Input::RouteApplied {
                stable: s,
                canary: c,
                weight_permille: w,
                generation: 1,
                applied_at_ms: 0
            }),
        version.prop_map(|v| Input::TornDown { version: v }),
        Just(Input::Recovered),
        any::<bool>().prop_map(|ok| Input::SoakHealth {
            ok,
            reason: "r".into()
        }),
    ]
}

fn step_kinds() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{set_weight: 10}".to_string()),
        Just("{set_weight: 50}".to_string()),
        Just("{pause: 30s}".to_string()),
        Just("{pause: {}}".to_string()),
        Just("approve".to_string()),
        Just("{analysis: {duration: 1m}}".to_string()),
        Just("{analysis: {duration: 1m, on_timeout: continue}}".to_string()),
        Just("{match: {header: x-employee, equals: 'true'}}".to_string()),
    ]
}

fn sound(s: &ServiceState) -> Result<(), String> {
    if let Some(route) = s.desired_route() {
        if route.weight > Permille::FULL {
            return Err("weight above 100%".into());
        }
        if let Some(c) = &route.canary {
            let r = s
                .rollout
                .as_ref()
                .ok_or("a canary in the route without a rollout")?;
            if &r.version != c {
                return Err(format!(
                    "route canary {c} is not the rollout's {}",
                    r.version
                ));
            }
        }
        let owner = s
            .rollout
            .as_ref()
            .and_then(|r| r.baseline.clone())
            .or(s.stable.clone());
        if Some(&route.stable) != s.stable.as_ref() && Some(&route.stable) != owner.as_ref() {
            return Err(format!(
                "route stable {} is neither stable nor the rollout's baseline",
                route.stable
            ));
        }
        if !s.instances.contains_key(&route.stable) {
            return Err(format!(
                "route sends traffic to {} which should not be running",
                route.stable
            ));
        }
    }
    if let Some(r) = &s.rollout
        && !s.instances.contains_key(&r.version)
    {
        return Err(format!(
            "rollout of {} whose instances are not wanted",
            r.version
        ));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_inputs_leave_the_state_sound(
        step_list in proptest::collection::vec(step_kinds(), 0..6),
        inputs in proptest::collection::vec((any_input(), 0i64..120_000), 0..60),
        gate in prop_oneof![Just(UnsafeGate::Refuse), Just(UnsafeGate::ManualRollback), Just(UnsafeGate::Allow)],
    ) {
        let mut w = World::new(&format!("[{}]", step_list.join(", ")));
        let mut replay = World::new(&format!("[{}]", step_list.join(", ")));
        w.policy.gates.on_unsafe = gate;
        replay.policy.gates.on_unsafe = gate;
        for (input, dt) in inputs {
            w.now += dt;
            replay.now += dt;
            let a = w.send(input.clone());
            let b = replay.send(input);
            prop_assert_eq!(a, b, "the same inputs give the same actions");
            if let Err(e) = sound(&w.state) {
                prop_assert!(false, "{}: {:#?}", e, w.state);
            }
        }
        prop_assert_eq!(&w.state, &replay.state);
        // The state survives serialisation exactly (it may be snapshotted).
        let json = serde_json::to_string(&w.state).unwrap();
        let back: ServiceState = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &w.state);
    }
}

/// Where a rollout can stand, each built from a stable v1 and a canary v2
/// with the strategy `[{set_weight: 10}, STEP, {set_weight: 50}]`.
fn situations() -> Vec<(&'static str, World)> {
    let at = |step: &str| {
        let mut w =
            World::with_stable(&format!("[{{set_weight: 10}}, {step}, {{set_weight: 50}}]"));
        w.send(Input::StartRollout {
            version: "v2".into(),
        });
        w.ready("v2", 2);
        w
    };
    let starting = {
        let mut w = World::with_stable("[{set_weight: 10}, {pause: 30s}, {set_weight: 50}]");
        w.send(Input::StartRollout {
            version: "v2".into(),
        });
        w
    };
    let paused_by_judge = {
        let mut w = at("{analysis: {duration: 1m}}");
        w.verdict(Verdict::Pause);
        w
    };
    let paused_by_human = {
        let mut w = at("{pause: 30s}");
        w.cmd(Command::Pause);
        w
    };
    let canary_unready = {
        let mut w = at("{pause: 30s}");
        w.ready("v2", 0);
        w
    };
    let rolling_back = {
        // Stable short of a replica: the rollback waits for capacity.
        let mut w = at("{pause: 30s}");
        w.policy.rollback.capacity = CapacityMode::ScaleFirst;
        w.ready("v1", 1);
        w.verdict(Verdict::Rollback);
        w
    };
    let gated = World::with_unsafe_canary(
        "[{set_weight: 10}, {pause: 30s}, {set_weight: 50}]",
        UnsafeGate::ManualRollback,
    );
    let paged = {
        let mut w = gated.clone();
        w.verdict(Verdict::Rollback);
        w
    };
    vec![
        ("canary starting", starting),
        ("at {pause: 30s}", at("{pause: 30s}")),
        ("at {pause: {}}", at("{pause: {}}")),
        ("at approve", at("approve")),
        ("at {analysis: 1m}", at("{analysis: {duration: 1m}}")),
        (
            "at {match: header}",
            // A match step passes at once; the rollout waits at the pause
            // after it, with the rule in force.
            at("{match: {header: x-employee, equals: 'true'}}, {pause: 30s}"),
        ),
        ("at {pause: 30s}, canary unready", canary_unready),
        ("paused by the judge", paused_by_judge),
        ("paused by a human", paused_by_human),
        ("rolling back, short of capacity", rolling_back),
        ("at {pause: 30s}, unsafe gate", gated),
        ("paused by the gate, paged", paged),
    ]
}

/// Every input the controller or a human can send.
fn inputs(now: i64) -> Vec<(&'static str, i64, Input)> {
    let verdict = |v| Input::Verdict {
        verdict: v,
        reason: "because".into(),
        onset_ms: Some(now - 5_000),
    };
    let cmd = Input::Command;
    vec![
        ("tick +1s", 1, Input::Tick),
        ("tick +61s", 61, Input::Tick),
        (
            "canary unready",
            0,
            Input::Readiness {
                version: "v2".into(),
                ready: 0,
                total: 2,
            },
        ),
        (
            "stable whole",
            0,
            Input::Readiness {
                version: "v1".into(),
                ready: 2,
                total: 2,
            },
        ),
        (
            "deploy failed",
            0,
            Input::DeployFailed {
                version: "v2".into(),
                error: "exit 1".into(),
            },
        ),
        (
            "set weight 30",
            0,
            cmd(Command::SetWeight {
                weight: Permille::from_percent(30.0).unwrap(),
            }),
        ),
        ("insufficient", 0, verdict(Verdict::Insufficient)),
        ("continue", 0, verdict(Verdict::Continue)),
        ("pause verdict", 0, verdict(Verdict::Pause)),
        ("rollback verdict", 0, verdict(Verdict::Rollback)),
        ("promote verdict", 0, verdict(Verdict::Promote)),
        ("approve", 0, cmd(Command::Approve)),
        ("pause", 0, cmd(Command::Pause)),
        ("resume", 0, cmd(Command::Resume)),
        ("abort", 0, cmd(Command::Abort)),
        ("rollback", 0, cmd(Command::Rollback { to: None })),
        ("promote", 0, cmd(Command::Promote { full: false })),
        ("promote --full", 0, cmd(Command::Promote { full: true })),
        (
            "accept gates",
            0,
            Input::AcceptGates {
                version: "v2".into(),
                reason: "checked".into(),
            },
        ),
    ]
}

/// One line: where the rollout stands and the route it wants.
fn where_it_stands(w: &World) -> String {
    let route = match w.state.desired_route() {
        Some(r) => format!(
            "{}{}{}",
            r.stable,
            r.canary.as_ref().map_or(String::new(), |c| format!(
                "+{c}@{}%",
                r.weight.as_percent()
            )),
            if r.rules.is_empty() { "" } else { " (rule)" }
        ),
        None => "-".into(),
    };
    match &w.state.rollout {
        None => format!(
            "done, stable {}, route {route}",
            w.state.stable.as_deref().unwrap_or("-")
        ),
        Some(r) => format!(
            "{:?} step {}{}, route {route}",
            r.phase,
            r.step,
            r.paused
                .as_ref()
                .map_or(String::new(), |p| format!(" paused ({:?})", p.kind)),
        ),
    }
}

/// The table: every situation × every input, with what comes of it
/// (refused with its code, or the new standing and the actions). Read it
/// as the state machine's specification; the snapshot makes every change
/// to it visible in review.
#[test]
fn every_situation_times_every_input() {
    let mut table = String::new();
    for (situation, world) in situations() {
        table.push_str(&format!("## {situation}: {}\n", where_it_stands(&world)));
        for (name, secs, input) in inputs(world.now) {
            let mut w = World {
                state: world.state.clone(),
                policy: world.policy.clone(),
                now: world.now + secs * 1000,
            };
            let line = match w.state.check(&input, &w.policy) {
                Err(r) => format!("refused ({})", r.code),
                Ok(()) => {
                    let actions = kinds(&w.send(input));
                    // Whatever happened, the state stays sound.
                    if let Err(e) = sound(&w.state) {
                        panic!("{situation} / {name}: {e}");
                    }
                    format!("{} {:?}", where_it_stands(&w), actions)
                }
            };
            table.push_str(&format!("{name:>16}: {line}\n"));
        }
    }
    insta::assert_snapshot!(table);
}

#[test]
fn a_step_gets_its_full_time_after_the_canary_could_not_take_traffic() {
    let mut w = World::with_stable("[{set_weight: 10}, {pause: 30s}, {set_weight: 50}]");
    w.send(Input::StartRollout {
        version: "v2".into(),
    });
    w.ready("v2", 2);
    // Ten seconds into the pause the canary stops taking traffic (no
    // ready endpoint, or its breaker open) for twenty seconds.
    w.after(10);
    w.ready("v2", 0);
    assert!(w.after(20).is_empty());
    w.ready("v2", 2);
    // The 30 s the pause had left when it began do not count.
    assert!(w.after(29).is_empty(), "the pause starts over");
    assert_eq!(w.state.rollout.as_ref().unwrap().step, 1);
    assert_eq!(
        kinds(&w.after(1)),
        [
            "notify step",
            "route v1 v2@50",
            "notify step",
            "route v2",
            "notify promoted"
        ]
    );
}
