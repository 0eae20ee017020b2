//! The process driver with real processes: the built-in demo app (`backout
//! demo-app`) as the replicas, real signals, real ports on loopback.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backout_driver::{
    DeployRequest, Driver, DriverContext, DriverEvent, ErrorKind, Instance, ProcessDriver,
};
use backout_spec::{DriverFile, DriverSpec, Source, parse_yaml};
use serde::Deserialize;
use tokio::sync::broadcast;

const BIN: &str = env!("CARGO_BIN_EXE_backout");

/// The demo app as a replica: `{port}` and `{version}` filled in per
/// replica. The list form runs without a shell.
const DEMO: &str = r#"["BIN", demo-app, --port, "{port}", --version, "{version}"]"#;

#[derive(Deserialize)]
struct Doc {
    driver: DriverFile,
}

/// A process driver from the `process:` section as a user writes it (with
/// `BIN` standing for the backout binary), logging under `data`.
fn driver(data: &Path, process: &str) -> ProcessDriver {
    let yaml = format!("driver:\n  process:\n{}", process.replace("BIN", BIN));
    let src = Source::new("svc.yaml", yaml);
    let doc: Doc = parse_yaml(&src).unwrap_or_else(|e| panic!("{e}"));
    let DriverSpec::Process(spec) = doc.driver.validate(&src, "driver").unwrap() else {
        panic!("not a process driver")
    };
    ProcessDriver::new(
        spec,
        DriverContext {
            data_dir: data.to_path_buf(),
            base_dir: data.to_path_buf(),
            gate: backout_driver::Gate::open(),
        },
    )
}

fn demo(extra: &str) -> String {
    format!("    command: {DEMO}\n    stop_timeout: 5s\n{extra}")
}

/// Kills whatever a test started if it fails half-way, so a failing test
/// leaves no processes behind.
struct Cleanup(Vec<u32>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn pids(instances: &[Instance]) -> Vec<u32> {
    instances.iter().map(|i| i.pid.unwrap()).collect()
}

async fn get(instance: &Instance) -> Result<String, reqwest::Error> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    client
        .get(format!("{}/", instance.endpoint))
        .send()
        .await?
        .text()
        .await
}

/// Whether any live (non-zombie) process belongs to process group `pgid`.
fn group_alive(pgid: u32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        let Some(close) = stat.rfind(')') else {
            return false;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn next_event(
    events: &mut broadcast::Receiver<DriverEvent>,
    want: impl Fn(&DriverEvent) -> bool,
) -> DriverEvent {
    let deadline = Duration::from_secs(20);
    tokio::time::timeout(deadline, async {
        loop {
            let e = events.recv().await.unwrap();
            if want(&e) {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no such event within {deadline:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_starts_replicas_each_reachable_and_deploying_again_changes_nothing() {
    let data = tempfile::tempdir().unwrap();
    let d = driver(data.path(), &demo("    replicas: 3\n"));
    let req = DeployRequest::new("web", "v1", 3);
    let first = d.deploy(&req).await.unwrap();
    let _cleanup = Cleanup(pids(&first));
    assert_eq!(first.len(), 3);
    let ids: Vec<&str> = first.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["web-v1-0", "web-v1-1", "web-v1-2"]);
    let ports: BTreeSet<_> = first
        .iter()
        .map(|i| i.endpoint.authority().port_u16())
        .collect();
    assert_eq!(ports.len(), 3, "one port per replica");
    for i in &first {
        assert_eq!(get(i).await.unwrap(), "v1\n");
        assert!(i.cmdline.iter().any(|a| a == "demo-app"), "{:?}", i.cmdline);
    }

    let again = d.deploy(&req).await.unwrap();
    assert_eq!(again, first, "a second deploy starts nothing new");
    assert_eq!(d.instances("web", "v1").await.unwrap(), first);

    // The log holds the app's own output, after backout's header.
    let log = std::fs::read_to_string(d.log_path("web", "v1", 1)).unwrap();
    assert!(
        log.starts_with("--- backout: starting replica 1 of web v1"),
        "{log}"
    );
    assert!(
        log.contains("demo-app v1 listening on http://127.0.0.1:"),
        "{log}"
    );

    d.teardown("web", "v1").await.unwrap();
    for pid in pids(&first) {
        assert!(!group_alive(pid), "group {pid} is gone after teardown");
    }
    for i in &first {
        assert!(get(i).await.is_err(), "{} no longer answers", i.endpoint);
    }
    assert!(d.instances("web", "v1").await.unwrap().is_empty());
    d.teardown("web", "v1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_then_down_keeps_the_low_replicas() {
    let data = tempfile::tempdir().unwrap();
    let d = driver(data.path(), &demo(""));
    let one = d.deploy(&DeployRequest::new("web", "v2", 1)).await.unwrap();
    let mut cleanup = Cleanup(pids(&one));
    let three = d.scale(&DeployRequest::new("web", "v2", 3)).await.unwrap();
    cleanup.0 = pids(&three);
    assert_eq!(three.len(), 3);
    assert_eq!(three[0], one[0], "replica 0 is kept");
    for i in &three {
        assert_eq!(get(i).await.unwrap(), "v2\n");
    }
    let down = d.scale(&DeployRequest::new("web", "v2", 1)).await.unwrap();
    assert_eq!(down, one);
    for gone in &three[1..] {
        assert!(!group_alive(gone.pid.unwrap()));
        assert!(get(gone).await.is_err());
    }
    let zero = d.scale(&DeployRequest::new("web", "v2", 0)).await.unwrap();
    assert!(zero.is_empty());
    assert!(!group_alive(one[0].pid.unwrap()));
    d.teardown("web", "v2").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_with_sigkill_is_started_again_on_its_port() {
    let data = tempfile::tempdir().unwrap();
    let d = driver(
        data.path(),
        &demo("    replicas: 2\n    restart: {backoff: 100ms, max_backoff: 1s}\n"),
    );
    let mut events = d.subscribe();
    let before = d.deploy(&DeployRequest::new("web", "v3", 2)).await.unwrap();
    let mut cleanup = Cleanup(pids(&before));
    let victim = &before[1];
    let status = std::process::Command::new("kill")
        .args(["-KILL", &victim.pid.unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let exited = next_event(&mut events, |e| matches!(e, DriverEvent::Exited { .. })).await;
    let DriverEvent::Exited {
        instance,
        status,
        restart_in_ms,
        ..
    } = exited
    else {
        unreachable!()
    };
    assert_eq!(instance.id, victim.id);
    assert!(status.contains("signal: 9"), "{status}");
    assert_eq!(restart_in_ms, 100);

    let restarted = next_event(&mut events, |e| matches!(e, DriverEvent::Restarted { .. })).await;
    let DriverEvent::Restarted {
        instance, restarts, ..
    } = restarted
    else {
        unreachable!()
    };
    cleanup.0.push(instance.pid.unwrap());
    assert_eq!(restarts, 1);
    assert_eq!(instance.id, victim.id);
    assert_eq!(
        instance.endpoint, victim.endpoint,
        "same port, same endpoint"
    );
    assert_ne!(instance.pid, victim.pid);
    assert_eq!(get(&instance).await.unwrap(), "v3\n");
    let now = d.instances("web", "v3").await.unwrap();
    assert_eq!(now[1], instance, "the table follows the restart");
    assert_eq!(now[0], before[0], "the other replica is untouched");
    d.teardown("web", "v3").await.unwrap();
    assert!(!group_alive(instance.pid.unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_replaces_one_instance_at_once() {
    let data = tempfile::tempdir().unwrap();
    let d = driver(data.path(), &demo("    replicas: 2\n"));
    let before = d.deploy(&DeployRequest::new("web", "v4", 2)).await.unwrap();
    let mut cleanup = Cleanup(pids(&before));
    let new = d.restart("web", "v4", "web-v4-0").await.unwrap();
    cleanup.0.push(new.pid.unwrap());
    assert_eq!(new.id, "web-v4-0");
    assert_ne!(new.pid, before[0].pid);
    assert!(
        !group_alive(before[0].pid.unwrap()),
        "the old process is gone"
    );
    assert_eq!(get(&new).await.unwrap(), "v4\n");
    let e = d.restart("web", "v4", "web-v4-9").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.to_string().contains("no instance \"web-v4-9\""), "{e}");
    d.teardown("web", "v4").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_command_is_stopped_with_its_whole_group() {
    let data = tempfile::tempdir().unwrap();
    // A shell that stays the parent of the app (two commands, so it cannot
    // exec the last one): stopping must reach the app too.
    let d = driver(
        data.path(),
        "    command: \"echo starting; BIN demo-app --port {port} --version {version}; echo done\"\n    replicas: 2\n    stop_timeout: 5s\n",
    );
    let up = d.deploy(&DeployRequest::new("web", "v5", 2)).await.unwrap();
    let _cleanup = Cleanup(pids(&up));
    for i in &up {
        assert_eq!(get(i).await.unwrap(), "v5\n");
        assert_eq!(i.cmdline[..2], ["sh", "-c"]);
    }
    d.teardown("web", "v5").await.unwrap();
    for i in &up {
        assert!(
            !group_alive(i.pid.unwrap()),
            "nothing of group {:?} is left",
            i.pid
        );
        assert!(get(i).await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_a_new_driver_adopts_the_running_replicas() {
    let data = tempfile::tempdir().unwrap();
    let spec = demo("    replicas: 2\n    restart: {backoff: 100ms}\n");
    let req = DeployRequest::new("web", "v6", 2);
    let recorded = {
        let crashed = driver(data.path(), &spec);
        crashed.deploy(&req).await.unwrap()
        // Dropped without teardown, as a crash of backout would leave it.
    };
    let mut cleanup = Cleanup(pids(&recorded));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in &recorded {
        assert_eq!(get(i).await.unwrap(), "v6\n", "replicas outlive the driver");
    }

    let d = driver(data.path(), &spec);
    let mut events = d.subscribe();
    // A record of a replica whose pid now runs something else (here: the
    // test itself) is not adopted.
    let mut impostor = recorded[0].clone();
    impostor.replica = 5;
    impostor.id = "web-v6-5".into();
    impostor.pid = Some(std::process::id());
    let mut records = recorded.clone();
    records.push(impostor);
    let adopted = d.adopt(&req, &records).await.unwrap();
    assert_eq!(adopted, recorded, "same pids, nothing restarted");
    let again = d.deploy(&req).await.unwrap();
    assert_eq!(again, recorded, "deploy after adopt starts nothing");

    // The new driver supervises what it adopted.
    std::process::Command::new("kill")
        .args(["-KILL", &recorded[0].pid.unwrap().to_string()])
        .status()
        .unwrap();
    let restarted = next_event(&mut events, |e| matches!(e, DriverEvent::Restarted { .. })).await;
    let DriverEvent::Restarted { instance, .. } = restarted else {
        unreachable!()
    };
    cleanup.0.push(instance.pid.unwrap());
    assert_eq!(instance.id, recorded[0].id);
    assert_eq!(get(&instance).await.unwrap(), "v6\n");

    d.teardown("web", "v6").await.unwrap();
    for pid in [recorded[1].pid.unwrap(), instance.pid.unwrap()] {
        assert!(!group_alive(pid), "group {pid} is gone");
    }
    // Adopting a record whose processes are gone adopts nothing.
    assert!(d.adopt(&req, &recorded).await.unwrap().is_empty());
    d.teardown("web", "v6").await.unwrap();
}

/// A command string without shell syntax runs without a shell, and a
/// release's artifact is one argument however many words it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_command_string_runs_without_a_shell() {
    let data = tempfile::tempdir().unwrap();
    let d = driver(
        data.path(),
        "    command: \"'BIN' demo-app --port {port} --version {version} --behaviour {artifact}\"\n    stop_timeout: 5s\n",
    );
    let mut req = DeployRequest::new("web", "v8", 1);
    req.artifact = Some("--latency 1ms --tail 0.1".into());
    let instances = d.deploy(&req).await.unwrap();
    let cleanup = Cleanup(instances.iter().filter_map(|i| i.pid).collect());
    let cmdline = &instances[0].cmdline;
    assert_eq!(cmdline[0], BIN, "no shell in between: {cmdline:?}");
    assert_eq!(
        cmdline.last().map(String::as_str),
        Some("--latency 1ms --tail 0.1"),
        "{cmdline:?}"
    );
    d.teardown("web", "v8").await.unwrap();
    drop(cleanup);
}

/// One failing start per row: the command, what the error must say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_cannot_start_fails_the_deploy_with_the_reason() {
    let cases: &[(&str, ErrorKind, &[&str])] = &[
        (
            "    command: [./no-such-program, --port, '{port}']\n",
            ErrorKind::Start,
            &[
                "cannot start `./no-such-program` for replica 0",
                "No such file",
            ],
        ),
        (
            "    command: no-such-program-xyz --port {port}\n",
            ErrorKind::Start,
            &[
                "cannot start `no-such-program-xyz` for replica 0",
                "No such file",
            ],
        ),
        (
            "    command: no-such-program-xyz --port {port} && true\n",
            ErrorKind::Start,
            &[
                "exited with exit status: 127 before it listened",
                "not found",
            ],
        ),
        (
            "    command: \"echo 'cannot open config' >&2; exit 3\"\n",
            ErrorKind::Start,
            &["exit status: 3", "cannot open config"],
        ),
        (
            "    command: sleep 30\n    start_timeout: 300ms\n    stop_timeout: 1s\n",
            ErrorKind::Timeout,
            &["did not listen on port", "within 300ms", "start_timeout"],
        ),
        (
            "    command: [BIN, demo-app, --port, '{port}', --version, '{config.flavour}']\n",
            ErrorKind::Release,
            &[
                "driver.process.command",
                "release sets no `flavour`",
                "--set flavour=VALUE",
            ],
        ),
    ];
    for (process, kind, fragments) in cases {
        let data = tempfile::tempdir().unwrap();
        let d = driver(data.path(), process);
        let e = d
            .deploy(&DeployRequest::new("web", "v7", 1))
            .await
            .unwrap_err();
        let text = e.to_string();
        assert_eq!(e.kind, *kind, "{text}");
        assert!(text.starts_with("process driver, web v7: "), "{text}");
        for f in *fragments {
            assert!(text.contains(f), "{process}: missing {f:?} in:\n{text}");
        }
        assert!(
            d.instances("web", "v7").await.unwrap().is_empty(),
            "a failed replica is not kept"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_keeps_its_release_and_names_stay_plain() {
    let data = tempfile::tempdir().unwrap();
    let d = driver(data.path(), &demo(""));
    let mut req = DeployRequest::new("web", "v8", 1);
    req.config.insert("colour".into(), "blue".into());
    let up = d.deploy(&req).await.unwrap();
    let _cleanup = Cleanup(pids(&up));
    let mut other = req.clone();
    other.config.insert("colour".into(), "green".into());
    let e = d.deploy(&other).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(e.to_string().contains("release is immutable"), "{e}");
    d.teardown("web", "v8").await.unwrap();

    let e = d
        .deploy(&DeployRequest::new("web", "../../etc", 1))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Release);
    assert!(
        e.to_string()
            .contains("version name \"../../etc\" cannot be used"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatty_replica_log_is_capped() {
    let data = tempfile::tempdir().unwrap();
    let d = Arc::new(driver(
        data.path(),
        "    command: \"while true; do echo 0123456789012345678901234567890123456789012345678901234567890123456789; sleep 0.01; done & BIN demo-app --port {port} --version {version}\"\n    log_max_size: 2KiB\n    stop_timeout: 2s\n",
    ));
    let up = d.deploy(&DeployRequest::new("web", "v9", 1)).await.unwrap();
    let _cleanup = Cleanup(pids(&up));
    let log = d.log_path("web", "v9", 0);
    let old = log.with_extension("log.1");
    eventually("the log to be cut", || old.exists()).await;
    // Cut at least once more after that, so it stays bounded while the
    // replica keeps writing.
    let first = std::fs::metadata(&old).unwrap().modified().unwrap();
    eventually("a second cut", || {
        std::fs::metadata(&old).unwrap().modified().unwrap() != first
    })
    .await;
    d.teardown("web", "v9").await.unwrap();
    assert!(!group_alive(up[0].pid.unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_versions_run_side_by_side_and_concurrent_deploys_start_each_replica_once() {
    let data = tempfile::tempdir().unwrap();
    let d = Arc::new(driver(data.path(), &demo("")));
    let stable = DeployRequest::new("web", "v1", 2);
    let canary = DeployRequest::new("web", "v2", 1);
    let (a, b, c) = tokio::join!(d.deploy(&stable), d.deploy(&stable), d.deploy(&canary));
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    let _cleanup = Cleanup([pids(&a), pids(&c)].concat());
    assert_eq!(
        a, b,
        "the second deploy waited for the first and found it done"
    );
    let ports: BTreeSet<_> = a
        .iter()
        .chain(&c)
        .map(|i| i.endpoint.authority().port_u16())
        .collect();
    assert_eq!(ports.len(), 3);
    assert_eq!(get(&a[1]).await.unwrap(), "v1\n");
    assert_eq!(get(&c[0]).await.unwrap(), "v2\n");

    d.teardown("web", "v2").await.unwrap();
    assert!(get(&c[0]).await.is_err());
    assert_eq!(
        get(&a[0]).await.unwrap(),
        "v1\n",
        "the stable version is untouched"
    );
    d.teardown("web", "v1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_from_the_workdir_with_port_and_version_in_the_environment() {
    let data = tempfile::tempdir().unwrap();
    let bin = data.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let app = bin.join("app.sh");
    std::fs::write(
        &app,
        format!(
            "#!/bin/sh\necho \"greeting=$GREETING\"\nexec {BIN} demo-app --port \"$PORT\" --version \"$BACKOUT_VERSION-$BACKOUT_REPLICA\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = driver(
        data.path(),
        "    command: [./app.sh]\n    workdir: bin\n    env: {GREETING: 'hello {config.name} from {service}'}\n    replicas: 2\n",
    );
    let mut req = DeployRequest::new("web", "v10", 2);
    req.config.insert("name".into(), "ada".into());
    let up = d.deploy(&req).await.unwrap();
    let _cleanup = Cleanup(pids(&up));
    assert_eq!(get(&up[0]).await.unwrap(), "v10-0\n");
    assert_eq!(get(&up[1]).await.unwrap(), "v10-1\n");
    let log = std::fs::read_to_string(d.log_path("web", "v10", 1)).unwrap();
    assert!(log.contains("greeting=hello ada from web"), "{log}");
    d.teardown("web", "v10").await.unwrap();
}

/// A crash can come after a replica started and before the caller recorded
/// it: the driver's own run records still lead a new driver to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_nobody_recorded_are_adopted_from_the_run_records() {
    let data = tempfile::tempdir().unwrap();
    let spec = demo("    replicas: 2\n");
    let req = DeployRequest::new("web", "v7", 2);
    let started = {
        let crashed = driver(data.path(), &spec);
        crashed.deploy(&req).await.unwrap()
    };
    let _cleanup = Cleanup(pids(&started));

    let d = driver(data.path(), &spec);
    // Another version's adoption takes none of them.
    let other = DeployRequest::new("web", "v8", 1);
    assert!(d.adopt(&other, &[]).await.unwrap().is_empty());
    let adopted = d.adopt(&req, &[]).await.unwrap();
    assert_eq!(pids(&adopted), pids(&started), "nothing restarted");
    assert_eq!(d.deploy(&req).await.unwrap(), adopted, "nothing started");

    // Stopped replicas leave no records behind.
    d.teardown("web", "v7").await.unwrap();
    for pid in pids(&started) {
        assert!(!group_alive(pid), "group {pid} is gone");
    }
    let d = driver(data.path(), &spec);
    assert!(d.adopt(&req, &[]).await.unwrap().is_empty());
    let left: Vec<_> = std::fs::read_dir(data.path().join("run/web"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
