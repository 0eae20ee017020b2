//! End to end: a real `backout up` with the demo app as the releases, real
//! traffic through the embedded proxy, the CLI as users type it.

#![allow(clippy::unwrap_used)]

mod harness;

use harness::{Load, Up, free_port, no_rollout, paused, spec, stable};
use serde_json::{Value as Json, json};

fn rollbacks(s: &Json) -> Vec<Json> {
    s["state"]["rollbacks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn release<'a>(h: &'a Json, version: &str) -> &'a Json {
    h["releases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == version)
        .unwrap()
}

#[test]
fn a_good_release_is_promoted_and_a_bad_one_rolled_back_by_itself() {
    let port = free_port();
    let up = Up::start(
        &spec(
            port,
            "[{set_weight: 50}, {analysis: {duration: 8s, on_timeout: continue}}]",
            "",
        ),
        port,
    );
    up.first_release("v1");
    // Known good once it has soaked; a rollout started earlier would cut
    // the soak short and leave it unproven.
    up.wait_for("v1 known good", 20, |_| {
        !release(&up.history(), "v1")["known_good_ms"].is_null()
    });
    let load = Load::start(port);

    // A healthy canary goes all the way.
    up.release("v2", "--latency 1ms");
    let s = up.wait_for("v2 promoted", 60, |s| {
        stable(s) == Some("v2") && no_rollout(s)
    });
    assert!(rollbacks(&s).is_empty(), "{s:#}");
    up.wait_for("v2 known good after its soak", 20, |_| {
        !release(&up.history(), "v2")["known_good_ms"].is_null()
    });
    // The old version's instances go away after the drain.
    up.wait_for("v1 torn down", 20, |s| s["instances"].get("v1").is_none());

    // A canary that fails 30% of its requests is rolled back by the judge.
    up.release("v3", "--error-rate 0.3 --latency 1ms");
    let s = up.wait_for("v3 rolled back", 60, |s| {
        no_rollout(s) && !rollbacks(s).is_empty()
    });
    assert_eq!(stable(&s), Some("v2"));
    let rb = &rollbacks(&s)[0];
    assert_eq!(rb["kind"], "automatic", "{rb:#}");
    assert_eq!(rb["from_version"], "v3");
    assert!(
        rb["reason"].as_str().unwrap().contains("error_rate"),
        "{rb:#}"
    );
    assert!(
        rb["onset_ms"].is_i64() && rb["verdict_ms"].is_i64(),
        "{rb:#}"
    );
    assert_eq!(s["proxy"]["route"]["stable"], "v2");
    assert!(s["proxy"]["route"]["canary"].is_null(), "{s:#}");
    // Verified: canary gone and stable serving at its old error rate.
    let h = up.wait_for("the rollback verified", 30, |_| {
        let h = up.history();
        !h["rollbacks"][0]["mttr"]["verify_ms"].is_null()
    });
    let _ = h;
    let h = up.history();
    let m = &h["rollbacks"][0]["mttr"];
    for phase in ["detect_ms", "decide_ms", "act_ms", "verify_ms", "total_ms"] {
        assert!(m[phase].is_i64(), "{phase} missing: {h:#}");
    }
    assert_eq!(release(&h, "v3")["outcome"], "rolled_back");
    assert_eq!(h["mttr"]["rollbacks"], 1);
    let text = up.ok(&["history", "shop"]);
    assert!(text.contains("v3 → v2 automatic"), "{text}");

    // Back to a pinned known-good release, without analysis.
    up.ok(&[
        "rollback",
        "shop",
        "--to",
        "v1",
        "--reason",
        "v2 leaks memory",
    ]);
    let s = up.wait_for("v1 restored", 30, |s| {
        stable(s) == Some("v1") && no_rollout(s)
    });
    assert_eq!(rollbacks(&s).last().unwrap()["kind"], "to_version");
    drop(load);

    // The audit trail: the rollback command with who and why.
    let events = up.events();
    assert!(
        events.iter().any(|e| e["kind"] == "input.command"
            && e["actor"] == "admin"
            && e["reason"] == "v2 leaks memory"),
        "no audited rollback command in the log"
    );
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "judge.decision" && e["body"]["verdict"] == "rollback")
    );
    // The log has no gaps.
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as i64 + 1);
    }
}

#[test]
fn humans_approve_pause_resume_roll_back_abort_and_promote() {
    let port = free_port();
    let up = Up::start(
        &spec(
            port,
            "[{set_weight: 10}, approve, {set_weight: 50}, {pause: {}}, {set_weight: 100}]",
            "",
        ),
        port,
    );
    // Nothing to approve yet: refused with the reason, nothing recorded.
    let out = up.cli(&["approve", "shop"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("409"), "{err}");
    assert!(up.events().is_empty());

    up.first_release("v1");

    up.release("v2", "--latency 1ms");
    let s = up.wait_for("v2 at the approve gate", 30, |s| {
        s["state"]["rollout"]["step"] == 1
    });
    assert_eq!(s["proxy"]["route"]["canary_weight"], 10.0, "{s:#}");
    up.ok(&["approve", "shop", "--reason", "dashboards look fine"]);
    up.wait_for("v2 waiting at the open pause", 30, |s| {
        s["state"]["rollout"]["step"] == 3 && s["proxy"]["route"]["canary_weight"] == 50.0
    });
    // Break-glass: canary to 0 at once, before the command returns.
    up.ok(&["rollback", "shop", "--reason", "customer reports"]);
    let s = up.status();
    let route = &s["proxy"]["route"];
    assert!(
        route["canary"].is_null() || route["canary_weight"] == 0.0,
        "{s:#}"
    );
    let rb = &rollbacks(&s)[0];
    assert_eq!(rb["kind"], "manual");
    assert_eq!(rb["actor"], "admin");
    assert!(rb["reason"].as_str().unwrap().contains("customer reports"));
    up.wait_for("v1 alone", 20, |s| no_rollout(s) && stable(s) == Some("v1"));

    // Pause and resume hold and release a rollout; promote --full ends it.
    up.release("v3", "--latency 1ms");
    up.wait_for("v3 at the gate", 30, |s| s["state"]["rollout"]["step"] == 1);
    up.ok(&["pause", "shop", "--reason", "lunch"]);
    let s = up.status();
    assert!(paused(&s), "{s:#}");
    assert_eq!(s["state"]["rollout"]["paused"]["kind"], "manual");
    up.ok(&["resume", "shop"]);
    assert!(!paused(&up.status()));
    up.ok(&[
        "promote",
        "shop",
        "--full",
        "--reason",
        "hotfix, skip the wait",
    ]);
    up.wait_for("v3 promoted", 30, |s| {
        stable(s) == Some("v3") && no_rollout(s)
    });

    // Abort: back to stable, not an incident.
    up.release("v4", "--latency 1ms");
    up.wait_for("v4 at the gate", 30, |s| s["state"]["rollout"]["step"] == 1);
    up.ok(&["abort", "shop", "--reason", "wrong branch"]);
    let s = up.wait_for("v4 aborted", 20, no_rollout);
    assert_eq!(stable(&s), Some("v3"));
    assert_eq!(rollbacks(&s).len(), 1, "an abort is not a rollback");
    let h = up.history();
    assert_eq!(release(&h, "v4")["outcome"], "aborted");

    // Releases are immutable: the same version with other content is refused.
    let out = up.cli(&["release", "shop", "--version", "v4", "--artifact", "other"]);
    assert!(!out.status.success());
}

#[test]
fn the_progress_deadline_ends_a_release_that_never_gets_ready() {
    let port = free_port();
    let text = spec(port, "[{set_weight: 50}]", "")
        .replace("progress_deadline: 20s", "progress_deadline: 3s");
    let up = Up::start(&text, port);
    up.first_release("v1");
    up.ok(&["release", "shop", "--version", "v2", "--artifact=--unready"]);
    let s = up.wait_for("v2 given up on", 30, |s| {
        no_rollout(s)
            && !s["state"]["history"].as_array().unwrap().is_empty()
            && s["state"]["history"].as_array().unwrap().len() == 2
    });
    assert_eq!(stable(&s), Some("v1"));
    let last = s["state"]["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["outcome"], "aborted");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("progress deadline"),
        "{last:#}"
    );
    assert!(s["proxy"]["route"]["canary"].is_null() || s["proxy"]["route"]["canary_weight"] == 0.0);
}

#[test]
fn every_endpoint_checks_the_role_of_the_token() {
    let port = free_port();
    let up = Up::start(&spec(port, "[{set_weight: 50}]", ""), port);
    // Without a flag file the flag endpoints exist too, behind the same
    // roles, and say that flags are off.
    let tokens = harness::check_roles(&up, |_| true);
    // The operator's changes are recorded under its name.
    let (_, operator) = &tokens[2];
    let out = up.cli_as(
        operator,
        &[
            "release",
            "shop",
            "--version",
            "v1",
            "--artifact=x",
            "--no-rollout",
            "--reason",
            "first",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = up.events();
    let reg = events
        .iter()
        .find(|e| e["kind"] == "input.register_release")
        .unwrap();
    assert_eq!(reg["actor"], "t-operator");
    assert_eq!(reg["reason"], "first");
    // A viewer cannot roll back; a revoked token cannot do anything.
    let (_, viewer) = &tokens[1];
    let out = up.cli_as(viewer, &["rollback", "shop"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));
    up.ok(&["token", "revoke", "t-operator"]);
    let out = up.cli_as(operator, &["status", "shop"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "token.created" && e["body"]["name"] == "t-viewer")
    );
}

#[test]
fn an_automatic_rollback_scales_a_short_stable_first() {
    let port = free_port();
    // Two replicas per version; a replica that dies stays down for a
    // minute (its restart back-off), longer than the rollback waits.
    let text = spec(
        port,
        "[{set_weight: 50}, {analysis: {duration: 20s, on_timeout: pause}}]",
        "rollback: {capacity: scale_first, capacity_timeout: 10s}\n",
    )
    .replace(
        "    stop_timeout: 2s\n",
        "    stop_timeout: 2s\n    replicas: 2\n    restart: {backoff: 60s, max_backoff: 60s}\n",
    );
    let up = Up::start(&text, port);
    up.release("v1", "--latency 1ms");
    let s = up.wait_for("v1 stable on two replicas", 30, |s| {
        stable(s) == Some("v1") && no_rollout(s) && s["state"]["readiness"]["v1"] == json!([2, 2])
    });

    // One of stable's replicas dies (its whole process group).
    let pid = s["instances"]["v1"][0]["pid"].as_u64().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .status()
        .unwrap();
    assert!(killed.success());
    up.wait_for("stable short of a replica", 30, |s| {
        s["state"]["readiness"]["v1"] == json!([1, 2])
    });

    // A bad canary under load: the judge rolls it back while stable has
    // half its capacity.
    let load = Load::start(port);
    up.release("v2", "--error-rate 0.3 --latency 1ms");
    let s = up.wait_for("v2 rolled back", 90, |s| {
        no_rollout(s) && !rollbacks(s).is_empty()
    });
    drop(load);
    let rb = &rollbacks(&s)[0];
    assert_eq!(rb["kind"], "automatic", "{rb:#}");
    assert_eq!(rb["from_version"], "v2");
    assert_eq!(rb["to_version"], "v1");
    let capacity = rb["capacity"].as_str().unwrap();
    assert!(
        capacity.contains("1/2 ready") && capacity.contains("scaled it first"),
        "{rb:#}"
    );
    // Stable takes everything again.
    assert_eq!(stable(&s), Some("v1"));
    assert_eq!(s["proxy"]["route"]["stable"], "v1");
    assert!(
        s["proxy"]["route"]["canary"].is_null() || s["proxy"]["route"]["canary_weight"] == 0.0,
        "{s:#}"
    );
    let h = up.history();
    assert_eq!(release(&h, "v2")["outcome"], "rolled_back");
    // The log has the scale-up of stable the rollback asked for.
    let events = up.events();
    assert!(
        events.iter().any(|e| e["kind"] == "action.scale"
            && e["body"]["version"] == "v1"
            && e["body"]["replicas"] == 2),
        "no scale-up of stable in the log"
    );
    // Traffic moved once stable was whole again, or, with the replica
    // still in its back-off, when the capacity timeout ran out: the state
    // machine says which.
    let timed_out = events
        .iter()
        .find(|e| e["kind"] == "action.notify" && e["body"]["kind"] == "capacity_timeout");
    match timed_out {
        Some(e) => assert!(
            e["body"]["message"].as_str().unwrap().contains("1/2"),
            "{e:#}"
        ),
        None => assert!(
            events.iter().any(|e| e["kind"] == "input.readiness"
                && e["body"]["version"] == "v1"
                && e["body"]["ready"] == 2
                && e["seq"].as_i64() > rb_seq(&events)),
            "the rollback neither waited for stable nor timed out"
        ),
    }
}

/// The seq of the first rollback notice.
fn rb_seq(events: &[Json]) -> Option<i64> {
    events
        .iter()
        .find(|e| e["kind"] == "action.notify" && e["body"]["kind"] == "rollback")
        .and_then(|e| e["seq"].as_i64())
}

#[test]
fn a_wedged_replica_is_restarted_when_its_liveness_probe_fails() {
    let port = free_port();
    // The replica stops answering its liveness probe 3 s after each start
    // without exiting, as a deadlocked process would.
    // Restarts after the first wait 5 s, 10 s, ...
    let text = spec(port, "[{set_weight: 50}, approve]", "")
        .replace(
            "probes:\n",
            "probes:\n  liveness: {path: /live, period: 200ms, timeout: 200ms, failure_threshold: 2}\n",
        )
        .replace(
            "    stop_timeout: 2s\n",
            "    stop_timeout: 2s\n    restart: {backoff: 5s, max_backoff: 60s}\n",
        );
    let up = Up::start(&text, port);
    up.release("v1", "--wedge-after 3s");
    let s = up.wait_for("v1 stable", 30, |s| {
        stable(s) == Some("v1") && no_rollout(s)
    });
    let first = s["instances"]["v1"][0]["pid"].as_u64().unwrap();

    let s = up.wait_for("v1 restarted", 30, |s| {
        s["instances"]["v1"][0]["pid"]
            .as_u64()
            .is_some_and(|p| p != first)
    });
    let second = s["instances"]["v1"][0]["pid"].as_u64().unwrap();
    // The new incarnation is taken for traffic again.
    up.wait_for("the restarted replica ready", 10, |s| {
        s["instances"]["v1"][0]["pid"].as_u64() == Some(second)
            && s["state"]["readiness"]["v1"] == json!([1, 1])
    });
    assert!(
        !std::path::Path::new(&format!("/proc/{first}")).exists(),
        "the wedged process {first} still runs"
    );

    let events = up.events();
    let asked = events
        .iter()
        .find(|e| e["kind"] == "action.restart")
        .expect("the restart is in the log");
    assert_eq!(asked["body"]["version"], "v1");
    assert_eq!(asked["body"]["pid"], first);
    assert!(
        asked["reason"]
            .as_str()
            .unwrap()
            .contains("liveness probe failed"),
        "{asked:#}"
    );
    // Logged before it was done: the new incarnation's instances come
    // after the decision.
    let seq = |e: &Json| e["seq"].as_i64().unwrap();
    let recorded = events
        .iter()
        .find(|e| {
            e["kind"] == "driver.instances"
                && e["body"]["instances"][0]["pid"].as_u64() == Some(second)
        })
        .expect("the new pid is in the log");
    assert!(seq(recorded) > seq(asked));

    // It wedges again, and is restarted again only after the back-off.
    let s = up.wait_for("v1 restarted twice", 30, |s| {
        s["instances"]["v1"][0]["pid"]
            .as_u64()
            .is_some_and(|p| p != first && p != second)
    });
    let restarts: Vec<i64> = up
        .events()
        .iter()
        .filter(|e| e["kind"] == "action.restart")
        .map(|e| e["at_ms"].as_i64().unwrap())
        .collect();
    assert!(restarts.len() >= 2, "{s:#}");
    // The second incarnation wedged 3.4 s after it started, but the
    // back-off held its restart to 5 s after the first one.
    assert!(restarts[1] - restarts[0] >= 5_000, "{restarts:?}");
}

#[test]
fn the_judge_takes_up_its_evidence_again_after_a_crash() {
    let port = free_port();
    let mut up = Up::start(
        &spec(
            port,
            "[{set_weight: 50}, {pause: {}}, {set_weight: 100}]",
            "",
        ),
        port,
    );
    up.first_release("v1");
    let load = Load::start(port);
    up.release("v2", "--latency 1ms");
    let samples = |s: &Json| {
        s["decision"]["checks"][0]["canary_samples"]
            .as_u64()
            .unwrap_or(0)
    };
    // Past a checkpoint (every 5 judged seconds) with evidence in it.
    let before = up.wait_for("evidence on v2", 60, |s| {
        samples(s) > 0 && s["decision"]["t"].as_f64().is_some_and(|t| t >= 12.0)
    });
    let seen = samples(&before);
    up.kill();
    up.launch();
    // The first decision after the restart already counts what the judge
    // had seen: it did not start from nothing.
    let after = up.wait_for("a decision after the restart", 60, |s| {
        !s["decision"].is_null()
    });
    drop(load);
    assert_eq!(after["state"]["rollout"]["version"], "v2", "{after:#}");
    assert!(
        samples(&after) * 2 >= seen,
        "the judge lost its evidence: {} canary samples before, {} after",
        seen,
        samples(&after)
    );
    assert!(
        up.log().contains("resuming the judge's evidence"),
        "{}",
        up.log()
    );
}

#[test]
fn an_unsafe_migration_turns_the_automatic_rollback_into_a_page() {
    let port = free_port();
    let up = Up::start(
        &spec(
            port,
            "[{set_weight: 50}, {analysis: {duration: 18s, on_timeout: continue}}]",
            // The default `unsafe: manual_rollback`, and where the
            // migrations are for `backout release -f`.
            "gates: {migrations: db}\n",
        ),
        port,
    );
    let db = up.dir.join("db");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::write(
        db.join("0001_orders.sql"),
        "CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY, note text NOT NULL DEFAULT '');\n",
    )
    .unwrap();
    up.ok(&[
        "release",
        "shop",
        "--version",
        "v1",
        "--artifact=--latency 1ms",
        "--migrations",
        "db",
    ]);
    up.wait_for("v1 stable", 30, |s| {
        stable(s) == Some("v1") && no_rollout(s)
    });
    let load = Load::start(port);

    // v2 drops a column v1 reads, and its canary fails 30% of requests.
    std::fs::write(
        db.join("0002_drop_note.sql"),
        "SET lock_timeout = '2s';\nALTER TABLE orders DROP COLUMN IF EXISTS note;\n",
    )
    .unwrap();
    let out = up.ok(&[
        "release",
        "shop",
        "--version",
        "v2",
        "--artifact=--error-rate 0.3 --latency 1ms",
        "-f",
        "shop.yaml",
    ]);
    assert!(out.contains("unsafe"), "{out}");
    let h = up.history();
    let report = &release(&h, "v2")["gates"];
    assert_eq!(report["against"], "v1", "{report:#}");
    assert_eq!(report["verdict"], "unsafe");
    assert_eq!(report["findings"][0]["rule"], "drop_column", "{report:#}");
    assert_eq!(report["findings"][0]["at"], "0002_drop_note.sql:2:1");

    // The judge says roll back; the gate pauses and pages instead.
    let s = up.wait_for("v2 paused by the gate", 60, |s| {
        s["state"]["rollout"]["paused"]["kind"] == "gate"
    });
    assert!(rollbacks(&s).is_empty(), "rolled back automatically: {s:#}");
    assert_eq!(s["proxy"]["route"]["canary"], "v2", "{s:#}");
    assert_eq!(s["proxy"]["route"]["canary_weight"], 50.0, "{s:#}");
    let events = up.events();
    let page = events
        .iter()
        .find(|e| {
            e["kind"].as_str().unwrap().starts_with("action.")
                && e["body"].to_string().contains("\"page\"")
        })
        .unwrap_or_else(|| panic!("no page in the log: {events:#?}"));
    assert!(page["body"].to_string().contains("drop_column"), "{page:#}");
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "judge.decision" && e["body"]["verdict"] == "rollback"),
        "the judge did say roll back"
    );
    let text = up.ok(&["status", "shop"]);
    assert!(text.contains("PAUSED (gate)"), "{text}");
    assert!(text.contains("gates  v2 against v1: unsafe"), "{text}");
    let text = up.ok(&["history", "shop"]);
    assert!(
        text.contains("unsafe drop_column at 0002_drop_note.sql:2:1"),
        "{text}"
    );

    // A person decides. Accepting is audited; the rollback is theirs.
    up.ok(&[
        "gates",
        "accept",
        "shop",
        "v2",
        "--reason",
        "v1 writes note but never needs it back",
    ]);
    let h = up.history();
    let accepted = &release(&h, "v2")["gates"]["accepted"];
    assert_eq!(accepted["by"], "admin", "{accepted:#}");
    up.ok(&[
        "rollback",
        "shop",
        "--reason",
        "canary errors; checked v1 against the schema",
    ]);
    let s = up.wait_for("v2 rolled back by hand", 30, |s| {
        no_rollout(s) && !rollbacks(s).is_empty()
    });
    assert_eq!(rollbacks(&s)[0]["kind"], "manual");
    assert_eq!(stable(&s), Some("v1"));
    drop(load);
    assert!(up.events().iter().any(|e| e["kind"] == "input.accept_gates"
        && e["reason"] == "v1 writes note but never needs it back"));

    // A release registered while v1 was stable is checked again against
    // what is stable when it is rolled out.
    up.ok(&[
        "release",
        "shop",
        "--version",
        "v3",
        "--artifact=--latency 1ms",
        "-f",
        "shop.yaml",
        "--no-rollout",
    ]);
    assert_eq!(release(&up.history(), "v3")["gates"]["against"], "v1");
    up.release("v4", "--latency 1ms");
    up.wait_for("v4 deployed", 30, |s| {
        s["state"]["rollout"]["phase"] == "stepping"
    });
    up.ok(&[
        "promote",
        "shop",
        "--full",
        "--reason",
        "v4 carries no migrations",
    ]);
    up.wait_for("v4 stable", 30, |s| {
        stable(s) == Some("v4") && no_rollout(s)
    });
    up.ok(&["rollout", "shop", "--version", "v3"]);
    let h = up.history();
    assert_eq!(release(&h, "v3")["gates"]["against"], "v4", "{h:#}");
    assert!(
        up.events()
            .iter()
            .any(|e| e["kind"] == "input.recheck_gates")
    );
}

/// `backout events` shows the newest events (like `tail`), in local time,
/// and `--follow` prints new ones as they are appended; an artifact may
/// start with a hyphen.
#[test]
fn events_show_the_newest_first_and_follow() {
    let port = free_port();
    let up = Up::start(&spec(port, "[{set_weight: 50}]", ""), port);
    // The artifact as a separate argument that starts with "--".
    up.ok(&[
        "release",
        "shop",
        "--version",
        "v1",
        "--artifact",
        "--latency 1ms",
    ]);
    up.wait_for("v1 stable", 30, |s| {
        stable(s) == Some("v1") && no_rollout(s)
    });

    let all = up.events();
    let newest: Json =
        serde_json::from_str(&up.ok(&["events", "--all", "--limit", "3", "-o", "json"])).unwrap();
    let newest = newest.as_array().unwrap();
    assert_eq!(newest.len(), 3);
    let seqs: Vec<i64> = newest.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in seq order: {seqs:?}"
    );
    // The newest three are at least as new as the last of the full read
    // taken before (the log only grows).
    let last_before = all.last().unwrap()["seq"].as_i64().unwrap();
    assert!(seqs[2] >= last_before, "{seqs:?} vs {last_before}");
    assert!(seqs[0] > 1, "not the oldest: {seqs:?}");

    // Text: local times, not raw milliseconds.
    let text = up.ok(&["events", "shop", "--limit", "2"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for line in &lines {
        // "#8 2026-12-02 21:39:01.531 controller …"
        let date = line.split_whitespace().nth(1).unwrap_or_default();
        assert!(
            date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
            "not a local date in {line:?}"
        );
    }

    // --follow prints an event appended after it started.
    let mut follow = std::process::Command::new(harness::BIN)
        .current_dir(&up.dir)
        .args(["events", "shop", "--follow", "--limit", "1"])
        .env("BACKOUT_SERVER", &up.api)
        .env("BACKOUT_TOKEN", &up.token)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    let first = rx.recv_timeout(std::time::Duration::from_secs(20)).unwrap();
    up.ok(&[
        "auto-rollback",
        "shop",
        "--off",
        "--for",
        "1m",
        "--reason",
        "events follow test",
    ]);
    let mut seen = Vec::new();
    // Up to 20 quiet seconds.
    for _ in 0..20 {
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(1)) {
            let done = line.contains("events follow test");
            seen.push(line);
            if done {
                break;
            }
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        seen.iter().any(|l| l.contains("events follow test")),
        "first: {first}\nthen: {seen:#?}"
    );
}
