//! Crash safety, end to end: a real `backout up` is killed with SIGKILL at
//! random moments while 50 rollouts go through it, and started again on
//! the same data directory and ports each time.
//!
//! A client drives the rollouts through the HTTP API the way a deploy
//! pipeline would: every request carries a fixed `Idempotency-Key` and is
//! sent again until it gets an answer, across crashes, so a request whose
//! answer was lost is sent twice and must be applied once. Every rollout
//! stops at an `approve` gate; most are approved, every fifth is rolled
//! back or aborted instead, so each one's outcome is known in advance.
//!
//! At the end, after a final restart, the log and the world must agree
//! with what the client did: each release registered and rolled out once,
//! each command applied once, every rollout finished with its outcome, a
//! gap-free log whose fold is the state the live controller had, the
//! proxy's route equal to the desired one, and only the stable version's
//! processes left running (none at all after a clean stop).
//!
//! The kill times come from a seeded generator: the seed is printed, and
//! `BACKOUT_CRASH_SEED=N` replays a schedule (the interleaving with the
//! processes is still up to the machine).

// Tests wait for real processes, so they read the real clock.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use harness::{Up, free_port, spec};
use serde_json::{Value as Json, json};

/// Rollouts after the first release.
const ROLLOUTS: u32 = 50;
/// The schedule unless `BACKOUT_CRASH_SEED` says otherwise.
const DEFAULT_SEED: u64 = 0x5eed_bac0;
/// How long any one thing may take, crashes included, before the test
/// gives up on it.
const PATIENCE: Duration = Duration::from_secs(90);

/// What the client does with a rollout at its approve gate, and the
/// outcome that must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Approve,
    Rollback,
    Abort,
}

impl Plan {
    fn of(n: u32) -> Plan {
        match (n % 5, n % 10) {
            (0, 0) => Plan::Abort,
            (0, _) => Plan::Rollback,
            _ => Plan::Approve,
        }
    }

    fn command(self) -> &'static str {
        match self {
            Plan::Approve => "approve",
            Plan::Rollback => "rollback",
            Plan::Abort => "abort",
        }
    }

    fn outcome(self) -> &'static str {
        match self {
            Plan::Approve => "promoted",
            Plan::Rollback => "rolled_back",
            Plan::Abort => "aborted",
        }
    }
}

/// Milliseconds drawn uniformly from `lo..hi`.
fn millis(rng: &mut fastrand::Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(rng.u64(lo..hi))
}

fn seed() -> u64 {
    std::env::var("BACKOUT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

/// The demo-app replicas started for this test, by process group (a
/// replica leads its own group: `sh -c` and the app under it), with their
/// command lines. They run in the test's directory (the service file's),
/// which no other test shares.
fn demo_groups(dir: &str) -> BTreeMap<u32, String> {
    let mut groups = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for e in entries.flatten() {
        if e.file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
            .is_none()
        {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cwd = std::fs::read_link(e.path().join("cwd")).unwrap_or_default();
        // A deleted directory reads back as "DIR (deleted)".
        if !cmdline.contains("demo-app") || !cwd.to_string_lossy().starts_with(dir) {
            continue;
        }
        // `pid (comm) state ppid pgrp ...`; comm may hold anything.
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let pgrp = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .and_then(|g| g.parse().ok());
        if let Some(g) = pgrp {
            groups.insert(g, cmdline.trim().to_string());
        }
    }
    groups
}

/// Copies a directory tree (best effort), to keep a failed run's evidence.
fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::create_dir_all(to);
    for e in std::fs::read_dir(from).into_iter().flatten().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            copy_tree(&e.path(), &target);
        } else {
            let _ = std::fs::copy(e.path(), target);
        }
    }
}

/// Leaves no process of the test behind, whatever happened, and says how
/// to replay a failed run.
struct Reaper {
    dir: String,
    seed: u64,
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The event log, `up`'s log and the replicas' logs, for the
            // post-mortem: the test's own directory goes with it.
            let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("crash-{}", self.seed));
            let _ = std::fs::remove_dir_all(&keep);
            copy_tree(Path::new(&self.dir), &keep);
            eprintln!(
                "crash test: the failed run's files are in {}",
                keep.display()
            );
        }
        for group in demo_groups(&self.dir).keys() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .stderr(std::process::Stdio::null())
                .status();
        }
        if std::thread::panicking() {
            eprintln!(
                "crash test failed with seed {}: replay with BACKOUT_CRASH_SEED={}",
                self.seed, self.seed
            );
        }
    }
}

/// The client side: the API over HTTP, retried across crashes.
struct Client {
    api: String,
    token: String,
    http: reqwest::Client,
    /// Requests that had to be sent again because no answer came.
    resent: Arc<AtomicU64>,
    /// Answers that said the key had been applied by an earlier attempt.
    duplicates: Arc<AtomicU64>,
    /// Decides which answers are "lost" on purpose: the request is sent
    /// again however the crashes fall.
    losses: std::sync::Mutex<fastrand::Rng>,
}

impl Client {
    /// The service's view; `None` while `backout up` is down.
    async fn status(&self) -> Option<Json> {
        let resp = self
            .http
            .get(format!("{}/api/v1/services/shop", self.api))
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    /// Polls until `done` holds.
    async fn wait(&self, what: &str, done: impl Fn(&Json) -> bool) -> Json {
        let deadline = Instant::now() + PATIENCE;
        let mut last = Json::Null;
        loop {
            if let Some(s) = self.status().await {
                if done(&s) {
                    return s;
                }
                last = s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last status:\n{last:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// POSTs until an answer comes. Only "down" (no connection, no answer,
    /// 503) is retried: anything else is the answer, and must be a success.
    async fn post(&self, path: &str, key: &str, body: Json) -> Json {
        let first = self.send(path, key, &body).await;
        let lose = self.losses.lock().unwrap().u8(0..3) == 0;
        if !lose {
            return first;
        }
        // As if the answer had been lost: the same request again must be
        // answered from the log, and apply nothing.
        let again = self.send(path, key, &body).await;
        assert_eq!(
            again["duplicate"], true,
            "POST {path} {body} (key {key}) sent again was applied again: {again}"
        );
        again
    }

    async fn send(&self, path: &str, key: &str, body: &Json) -> Json {
        let deadline = Instant::now() + PATIENCE;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let sent = self
                .http
                .post(format!("{}/api/v1/services/shop/{path}", self.api))
                .bearer_auth(&self.token)
                .header("idempotency-key", key)
                .json(body)
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => {
                    if let Ok(answer) = resp.json::<Json>().await {
                        if attempts > 1 {
                            self.resent.fetch_add(1, Ordering::Relaxed);
                        }
                        if answer["duplicate"] == true {
                            self.duplicates.fetch_add(1, Ordering::Relaxed);
                        }
                        return answer;
                    }
                }
                Ok(resp) if resp.status().as_u16() != 503 => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    panic!("POST {path} {body} (key {key}, attempt {attempts}): {status} {text}");
                }
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "POST {path} {body} (key {key}) got no answer in {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn rollout(s: &Json) -> &Json {
    &s["state"]["rollout"]
}

/// The pipeline: v1, then v2..=v51 each to its approve gate and on by
/// its plan. Returns the plan of each version.
async fn pipeline(client: &Client) -> BTreeMap<String, Plan> {
    let mut plans = BTreeMap::new();
    for n in 1..=ROLLOUTS + 1 {
        let version = format!("v{n}");
        let body = json!({"version": version, "artifact": "--latency 1ms"});
        client
            .post("releases", &format!("crash-release-{version}"), body)
            .await;
        if n == 1 {
            client
                .wait("v1 stable", |s| {
                    s["state"]["stable"] == "v1" && rollout(s).is_null()
                })
                .await;
            plans.insert(version, Plan::Approve);
            continue;
        }
        let s = client
            .wait(&format!("{version} at its approve gate"), |s| {
                let r = rollout(s);
                // A rollout that ended on its own would never get there.
                r.is_null() || (r["phase"] == "stepping" && r["step"] == 1)
            })
            .await;
        assert_eq!(
            rollout(&s)["version"],
            version.as_str(),
            "{version} ended before it reached its gate:\n{s:#}"
        );
        let plan = Plan::of(n);
        let body = json!({
            "command": plan.command(),
            "reason": format!("crash test: {} {version}", plan.command()),
        });
        client
            .post(
                "actions",
                &format!("crash-{}-{version}", plan.command()),
                body,
            )
            .await;
        client
            .wait(&format!("{version} finished"), |s| rollout(s).is_null())
            .await;
        plans.insert(version, plan);
    }
    plans
}

/// The proxy's route, in the desired route's terms.
fn proxy_route(s: &Json) -> Json {
    let r = &s["proxy"]["route"];
    if r.is_null() {
        return Json::Null;
    }
    json!({
        "stable": r["stable"],
        "canary": r["canary"],
        "weight": r["canary_weight"],
        "rules": r["rules"].as_array().cloned().unwrap_or_default(),
    })
}

fn desired_route(s: &Json) -> Json {
    let r = &s["state"]["route"];
    if r.is_null() {
        return Json::Null;
    }
    json!({
        "stable": r["stable"],
        "canary": r["canary"],
        "weight": r["weight"],
        "rules": r["rules"].as_array().cloned().unwrap_or_default(),
    })
}

/// Nothing left to do: no rollout, no pending teardown or soak, every
/// rollback verified, only stable running and ready, and the proxy on the
/// desired route.
fn settled(s: &Json) -> bool {
    let state = &s["state"];
    let Some(stable) = state["stable"].as_str() else {
        return false;
    };
    let only_stable = |m: &Json| {
        m.as_object()
            .is_some_and(|m| m.len() == 1 && m.contains_key(stable))
    };
    state["rollout"].is_null()
        && state["soak"].is_null()
        && state["teardowns"].as_object().is_some_and(|t| t.is_empty())
        && only_stable(&state["instances"])
        && only_stable(&s["instances"])
        && state["readiness"][stable] == json!([1, 1])
        && state["rollbacks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| !r["switched_ms"].is_null() && !r["recovered_ms"].is_null())
        && proxy_route(s) == desired_route(s)
}

/// Every event in the log, read through the API page by page.
fn all_events(up: &Up) -> Vec<Json> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let mut out: Vec<Json> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e["seq"].as_i64().unwrap());
        let page: Vec<Json> = rt.block_on(async {
            http.get(format!("{}/api/v1/events?after={after}&limit=1000", up.api))
                .bearer_auth(&up.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        });
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Restarts `up` as a crash would and waits until the world settles.
fn crash_and_settle(up: &mut Up) -> Json {
    up.kill();
    up.launch();
    up.wait_for("the service to settle after a restart", 90, settled)
}

#[test]
fn fifty_rollouts_survive_sigkill_at_random_moments() {
    fifty_rollouts(&[]);
}

/// The same with the event log in PostgreSQL: one `backout up` on a
/// shared database campaigns for the lease, fences every write, and after
/// each SIGKILL its next incarnation (same name) takes the lease over at
/// once.
#[test]
fn fifty_rollouts_survive_sigkill_at_random_moments_on_postgresql() {
    let Some(url) = harness::fresh_postgres("crash") else {
        return;
    };
    fifty_rollouts(&["--store", &url, "--name", "crash-cp"]);
}

fn fifty_rollouts(store_args: &[&str]) {
    let seed = seed();
    eprintln!("crash test seed: {seed} (replay with BACKOUT_CRASH_SEED={seed})");
    let mut rng = fastrand::Rng::with_seed(seed);
    let port = free_port();
    let text = spec(port, "[{set_weight: 50}, approve, {set_weight: 100}]", "")
        .replace(
            "period: 500ms, timeout: 400ms",
            "period: 200ms, timeout: 200ms",
        )
        .replace("soak: 2s", "soak: 1s")
        .replace("progress_deadline: 20s", "progress_deadline: 120s");
    let mut up = Up::start_with(&text, port, &[], store_args);
    let dir: PathBuf = up.dir.canonicalize().unwrap();
    let _reaper = Reaper {
        dir: dir.to_string_lossy().into_owned(),
        seed,
    };
    let started = Instant::now();

    let resent = Arc::new(AtomicU64::new(0));
    let duplicates = Arc::new(AtomicU64::new(0));
    let client = Client {
        api: up.api.clone(),
        token: up.token.clone(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        resent: Arc::clone(&resent),
        duplicates: Arc::clone(&duplicates),
        losses: std::sync::Mutex::new(fastrand::Rng::with_seed(seed ^ 0x1057)),
    };
    let pipeline = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(pipeline(&client))
    });

    // The killer: SIGKILL at a random moment, sometimes again soon after
    // the restart (while it recovers and reconciles), then start again on
    // the same directory and ports.
    let mut kills = 0u32;
    while !pipeline.is_finished() {
        let wait = if rng.u8(0..4) == 0 {
            millis(&mut rng, 50, 500)
        } else {
            millis(&mut rng, 300, 2000)
        };
        let until = Instant::now() + wait;
        while Instant::now() < until && !pipeline.is_finished() {
            std::thread::sleep(Duration::from_millis(10));
        }
        if pipeline.is_finished() {
            break;
        }
        up.kill();
        kills += 1;
        std::thread::sleep(millis(&mut rng, 0, 300));
        up.launch();
    }
    let plans = match pipeline.join() {
        Ok(plans) => plans,
        Err(e) => std::panic::resume_unwind(e),
    };
    let driven = started.elapsed();

    // A last crash and restart with nothing else going on: the world must
    // settle to the log's state.
    let before = crash_and_settle(&mut up);
    // And the fold of the log is exactly the state the live controller
    // had: one more restart changes nothing.
    let after = crash_and_settle(&mut up);
    assert_eq!(
        before["state"], after["state"],
        "the state folded from the log differs from the live one"
    );
    let s = after;
    let stable = s["state"]["stable"].as_str().unwrap().to_string();

    // Every rollout finished, once, with the outcome its command asked for.
    let history = s["state"]["history"].as_array().unwrap();
    let finished: Vec<(&str, &str)> = history
        .iter()
        .map(|h| {
            (
                h["version"].as_str().unwrap(),
                h["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, &str)> = (1..=ROLLOUTS + 1)
        .map(|n| {
            let v = format!("v{n}");
            let outcome = plans[&v].outcome();
            (v, outcome)
        })
        .collect();
    let expected: Vec<(&str, &str)> = expected.iter().map(|(v, o)| (v.as_str(), *o)).collect();
    assert_eq!(finished, expected, "rollout outcomes:\n{s:#}");
    let ids: Vec<i64> = history.iter().map(|h| h["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (1..=i64::from(ROLLOUTS) + 1).collect::<Vec<_>>());
    assert_eq!(stable, format!("v{}", ROLLOUTS + 1));
    for rb in s["state"]["rollbacks"].as_array().unwrap() {
        assert_eq!(rb["kind"], "manual", "{rb:#}");
        assert!(
            !rb["torn_down_ms"].is_null(),
            "canary not torn down: {rb:#}"
        );
    }
    let rollbacks = s["state"]["rollbacks"].as_array().unwrap().len();
    let planned = plans.values().filter(|p| **p == Plan::Rollback).count();
    assert_eq!(rollbacks, planned, "{s:#}");

    // The log: gap-free, every release registered and rolled out once,
    // every command applied once.
    let events = all_events(&up);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as i64 + 1, "the log has a gap or a repeat");
    }
    let count = |kind: &str, version: &str| {
        events
            .iter()
            .filter(|e| e["kind"] == kind && e["body"]["version"] == version)
            .count()
    };
    for n in 1..=ROLLOUTS + 1 {
        let v = format!("v{n}");
        assert_eq!(count("input.register_release", &v), 1, "{v} registered");
        assert_eq!(count("input.start_rollout", &v), 1, "{v} rolled out");
    }
    let commands: Vec<&Json> = events
        .iter()
        .filter(|e| e["kind"] == "input.command")
        .collect();
    assert_eq!(commands.len(), ROLLOUTS as usize, "commands applied");
    let keys: BTreeSet<&str> = commands
        .iter()
        .map(|e| e["idempotency_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), commands.len(), "a command key applied twice");
    for n in 2..=ROLLOUTS + 1 {
        let v = format!("v{n}");
        let key = format!("shop:crash-{}-{v}", Plan::of(n).command());
        assert!(keys.contains(key.as_str()), "{key} never applied");
    }

    // The world: the proxy on the desired route, and only stable's
    // processes running, each the one the controller knows.
    assert_eq!(proxy_route(&s), desired_route(&s), "{s:#}");
    assert_eq!(
        s["proxy"]["route"],
        json!({"stable": stable, "canary_weight": 0.0, "rules": []}),
        "{s:#}"
    );
    let known: BTreeSet<u32> = s["instances"][&stable]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["pid"].as_u64().unwrap() as u32)
        .collect();
    let running = demo_groups(&dir.to_string_lossy());
    assert_eq!(
        running.keys().copied().collect::<BTreeSet<u32>>(),
        known,
        "demo-app processes other than stable's are running (orphans): {running:#?}"
    );

    // The log's last word on each version's instances is the world: the
    // stable replica by its pid, nothing for every other version.
    let mut last_instances: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["kind"] == "driver.instances") {
        let pids = e["body"]["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["pid"].as_u64().unwrap() as u32)
            .collect();
        last_instances.insert(e["body"]["version"].as_str().unwrap(), pids);
    }
    for (version, pids) in &last_instances {
        let world = if *version == stable {
            known.clone()
        } else {
            BTreeSet::new()
        };
        assert_eq!(*pids, world, "the log's instances of {version}");
    }

    // A clean stop stops them all.
    up.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !demo_groups(&dir.to_string_lossy()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = demo_groups(&dir.to_string_lossy());
    assert!(
        left.is_empty(),
        "processes left after a clean stop: {left:?}"
    );

    eprintln!(
        "crash test: {} rollouts, {kills} SIGKILLs in {driven:.1?} ({:.1?} in all); {} requests retried across a crash, {} answered from the log as duplicates; {} events",
        ROLLOUTS + 1,
        started.elapsed(),
        resent.load(Ordering::Relaxed),
        duplicates.load(Ordering::Relaxed),
        events.len(),
    );
}
