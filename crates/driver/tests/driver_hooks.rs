//! The hooks driver with real shell scripts in a temporary directory: one
//! deploys a real HTTP server (`python3 -m http.server`) and tears it down;
//! others fail in each way a script can.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use backout_driver::{DeployRequest, Driver, DriverContext, DriverError, ErrorKind, HooksDriver};
use backout_spec::{DriverFile, DriverSpec, Source, parse_yaml};
use serde::Deserialize;
use tokio::time::Instant;

#[derive(Deserialize)]
struct Doc {
    driver: DriverFile,
}

/// A hooks driver from the `hooks:` section as a user writes it, running
/// scripts from `dir`.
fn driver(dir: &Path, hooks: &str) -> HooksDriver {
    let yaml = format!("driver:\n  hooks:\n{hooks}");
    let src = Source::new("svc.yaml", yaml);
    let doc: Doc = parse_yaml(&src).unwrap_or_else(|e| panic!("{e}"));
    let DriverSpec::Hooks(spec) = doc.driver.validate(&src, "driver").unwrap() else {
        panic!("not a hooks driver")
    };
    HooksDriver::new(
        spec,
        DriverContext {
            data_dir: dir.join("data"),
            base_dir: dir.to_path_buf(),
            gate: backout_driver::Gate::open(),
        },
    )
}

fn script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).is_ok_and(|s| {
        s.rfind(')')
            .is_some_and(|i| !s[i + 1..].trim_start().starts_with('Z'))
    })
}

/// Stops the server a failed test left running.
struct KillServer(std::path::PathBuf);

impl Drop for KillServer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        }
    }
}

/// Deploys a real HTTP server through a script, reaches it, tears it down.
#[tokio::test]
async fn deploy_and_teardown_a_real_server_through_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    script(
        d,
        "deploy.sh",
        r#"set -e
env | grep '^BACKOUT_' | sort > "env-$BACKOUT_HOOK.txt"
if [ ! -f server.pid ] || ! kill -0 "$(cat server.pid)" 2>/dev/null; then
  echo "starting a server on port $BACKOUT_PORT"
  python3 -m http.server "$BACKOUT_PORT" --bind 127.0.0.1 > server.log 2>&1 &
  echo $! > server.pid
fi
for i in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $BACKOUT_PORT), 1)" 2>/dev/null && break
  sleep 0.1
done
echo "ready"
echo "{\"endpoints\": [\"http://127.0.0.1:$BACKOUT_PORT\"]}"
"#,
    );
    script(
        d,
        "teardown.sh",
        "env | grep '^BACKOUT_' | sort > env-teardown.txt\n[ -f server.pid ] && kill \"$(cat server.pid)\" && rm server.pid\nexit 0\n",
    );
    let hooks = driver(
        d,
        "    deploy: ./deploy.sh\n    teardown: ./teardown.sh\n    timeout: 20s\n    retries: 0\n",
    );
    let _cleanup = KillServer(d.join("server.pid"));
    let port = free_port();
    let mut req = DeployRequest::new("web", "v2", 2);
    req.artifact = Some("registry/web@sha256:abc".into());
    req.config.insert("port".into(), port.to_string());
    req.config
        .insert("db.url".into(), "postgres://db/web".into());

    let instances = hooks.deploy(&req).await.unwrap();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].id, "web-v2-0");
    assert_eq!(instances[0].pid, None);
    assert_eq!(
        instances[0].endpoint.to_string(),
        format!("http://127.0.0.1:{port}")
    );
    let body = reqwest::get(format!("{}/deploy.sh", instances[0].endpoint))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("BACKOUT_PORT"),
        "the server serves the directory"
    );

    let env = std::fs::read_to_string(d.join("env-deploy.txt")).unwrap();
    for line in [
        "BACKOUT_ARTIFACT=registry/web@sha256:abc".to_string(),
        r#"BACKOUT_CONFIG={"db.url":"postgres://db/web","port":"PORT"}"#
            .replace("PORT", &port.to_string()),
        "BACKOUT_DB_URL=postgres://db/web".to_string(),
        "BACKOUT_HOOK=deploy".to_string(),
        format!("BACKOUT_PORT={port}"),
        "BACKOUT_REPLICAS=2".to_string(),
        "BACKOUT_SERVICE=web".to_string(),
        "BACKOUT_VERSION=v2".to_string(),
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing in:\n{env}");
    }

    // Idempotent: the script sees its server and starts no second one.
    let pid = std::fs::read_to_string(d.join("server.pid")).unwrap();
    assert_eq!(hooks.deploy(&req).await.unwrap(), instances);
    assert_eq!(std::fs::read_to_string(d.join("server.pid")).unwrap(), pid);

    // Without a scale script, scale runs deploy with the new count.
    let scaled = hooks
        .scale(&DeployRequest {
            replicas: 3,
            ..req.clone()
        })
        .await
        .unwrap();
    assert_eq!(scaled.len(), 1);
    let env = std::fs::read_to_string(d.join("env-scale.txt")).unwrap();
    assert!(env.contains("BACKOUT_REPLICAS=3"), "{env}");

    hooks.teardown("web", "v2").await.unwrap();
    let env = std::fs::read_to_string(d.join("env-teardown.txt")).unwrap();
    assert!(env.contains("BACKOUT_HOOK=teardown"), "{env}");
    assert!(
        env.contains("BACKOUT_DB_URL=postgres://db/web"),
        "teardown gets the recorded release:\n{env}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(&pid) {
        assert!(Instant::now() < deadline, "the server is stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(hooks.instances("web", "v2").await.unwrap().is_empty());
}

/// A deploy that fails, with what the error must say and the attempts the
/// script saw.
async fn check_failure(
    body: &str,
    settings: &str,
    kind: ErrorKind,
    fragments: &[&str],
    attempts: u32,
) -> DriverError {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    script(d, "deploy.sh", &format!("echo x >> attempts\n{body}"));
    script(d, "teardown.sh", "exit 0\n");
    let hooks = driver(
        d,
        &format!(
            "    deploy: ./deploy.sh\n    teardown: ./teardown.sh\n    retry_backoff: 10ms\n{settings}"
        ),
    );
    let e = hooks
        .deploy(&DeployRequest::new("web", "v3", 1))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert_eq!(e.kind, kind, "{text}");
    assert!(
        text.starts_with("hooks driver, web v3: the deploy hook `./deploy.sh` failed"),
        "{text}"
    );
    for f in fragments {
        assert!(text.contains(f), "missing {f:?} in:\n{text}");
    }
    let seen = std::fs::read_to_string(d.join("attempts"))
        .unwrap_or_default()
        .lines()
        .count() as u32;
    assert_eq!(seen, attempts, "{text}");
    assert!(hooks.instances("web", "v3").await.unwrap().is_empty());
    e
}

#[tokio::test]
async fn a_failing_script_reports_its_status_and_stderr_after_its_retries() {
    check_failure(
        "echo 'progress on stdout'\necho 'cannot reach the cluster: connection refused' >&2\nexit 3\n",
        "    retries: 2\n",
        ErrorKind::Hook,
        &[
            "failed 3 times; last: exited with exit status: 3",
            "last lines of its stderr:\n  cannot reach the cluster: connection refused",
            "run it by hand",
        ],
        3,
    )
    .await;
}

#[tokio::test]
async fn a_script_that_hangs_is_killed_with_its_group() {
    let started = Instant::now();
    let dir_pid_file = tempfile::tempdir().unwrap();
    let pid_file = dir_pid_file.path().join("sleeper.pid");
    let body = format!(
        "echo 'waiting for the load balancer' >&2\nsleep 30 &\necho $! > {}\nwait\n",
        pid_file.display()
    );
    check_failure(
        &body,
        "    timeout: 300ms\n    retries: 0\n",
        ErrorKind::Timeout,
        &[
            "failed once; last: ran longer than 300ms and was killed",
            "waiting for the load balancer",
            "driver.hooks.timeout",
        ],
        1,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let sleeper = std::fs::read_to_string(&pid_file).unwrap();
    assert!(!alive(&sleeper), "the script's child is killed too");
}

#[tokio::test]
async fn garbage_output_is_an_error_that_shows_it() {
    check_failure(
        "echo 'deployed!'\n",
        "    retries: 1\n",
        ErrorKind::Hook,
        &[
            "failed 2 times; last: printed \"deployed!\" as its last line, which is not {\"endpoints\": [...]}",
            "last lines of its stdout:\n  deployed!",
            "as the last line of its stdout",
        ],
        2,
    )
    .await;
    check_failure(
        "echo '{\"endpoints\": [\"ftp://10.0.0.5:21\"]}'\n",
        "    retries: 0\n",
        ErrorKind::Hook,
        &["endpoints[0]: endpoint \"ftp://10.0.0.5:21\" uses scheme `ftp`"],
        1,
    )
    .await;
    check_failure(
        "echo '{\"endpoints\": []}'\n",
        "    retries: 0\n",
        ErrorKind::Hook,
        &["failed once; last: printed no endpoint for 1 replica(s)"],
        1,
    )
    .await;
}

#[tokio::test]
async fn a_script_that_cannot_run_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = driver(
        dir.path(),
        "    deploy: [./missing.sh]\n    teardown: ./t.sh\n    retries: 0\n",
    );
    let e = hooks
        .deploy(&DeployRequest::new("web", "v4", 1))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Start);
    assert!(
        e.to_string()
            .contains("could not be started: `./missing.sh`: No such file"),
        "{e}"
    );

    let hooks = driver(
        dir.path(),
        "    deploy: ./deploy.sh --region {config.region}\n    teardown: ./t.sh\n",
    );
    let e = hooks
        .deploy(&DeployRequest::new("web", "v4", 1))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Release);
    assert!(
        e.to_string().contains(
            "cannot build `driver.hooks.deploy`: `{config.region}` is used but the release sets no `region`"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_script_that_fails_then_succeeds_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    script(
        d,
        "deploy.sh",
        r#"echo x >> attempts
if [ "$(wc -l < attempts)" -lt 3 ]; then echo 'not yet' >&2; exit 1; fi
echo '{"endpoints": ["http://10.0.0.5:8080", "http://10.0.0.6:8080"]}'
"#,
    );
    script(d, "teardown.sh", "exit 0\n");
    let hooks = driver(
        d,
        "    deploy: ./deploy.sh\n    teardown: ./teardown.sh\n    retries: 2\n    retry_backoff: 10ms\n",
    );
    let started = Instant::now();
    let instances = hooks
        .deploy(&DeployRequest::new("web", "v5", 2))
        .await
        .unwrap();
    let endpoints: Vec<String> = instances.iter().map(|i| i.endpoint.to_string()).collect();
    assert_eq!(endpoints, ["http://10.0.0.5:8080", "http://10.0.0.6:8080"]);
    let attempts = std::fs::read_to_string(d.join("attempts")).unwrap();
    assert_eq!(attempts.lines().count(), 3);
    // Waits of 10ms, then 20ms.
    assert!(started.elapsed() >= Duration::from_millis(30));
}

#[tokio::test]
async fn a_background_job_holding_stdout_does_not_hold_up_the_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    script(
        d,
        "deploy.sh",
        "sleep 30 &\necho $! > sleeper.pid\necho '{\"endpoints\": [\"http://10.0.0.5:8080\"]}'\n",
    );
    script(d, "teardown.sh", "kill \"$(cat sleeper.pid)\"\n");
    let hooks = driver(d, "    deploy: ./deploy.sh\n    teardown: ./teardown.sh\n");
    let started = Instant::now();
    let instances = hooks
        .deploy(&DeployRequest::new("web", "v6", 1))
        .await
        .unwrap();
    assert_eq!(instances.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
    let sleeper = std::fs::read_to_string(d.join("sleeper.pid")).unwrap();
    assert!(
        alive(&sleeper),
        "after a success, background jobs are left alone"
    );
    hooks.teardown("web", "v6").await.unwrap();
}

#[tokio::test]
async fn restart_runs_the_restart_script_for_one_instance() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    script(
        d,
        "deploy.sh",
        "echo '{\"endpoints\": [\"http://10.0.0.5:8080\", \"http://10.0.0.6:8080\"]}'\n",
    );
    script(
        d,
        "restart.sh",
        "echo \"$BACKOUT_INSTANCE $BACKOUT_ENDPOINT\" > restarted\necho '{\"endpoints\": [\"http://10.0.0.5:8080\", \"http://10.0.0.7:8080\"]}'\n",
    );
    script(d, "teardown.sh", "exit 0\n");
    let hooks = driver(
        d,
        "    deploy: ./deploy.sh\n    restart: ./restart.sh\n    teardown: ./teardown.sh\n",
    );
    let req = DeployRequest::new("web", "v7", 2);
    hooks.deploy(&req).await.unwrap();
    let new = hooks.restart("web", "v7", "web-v7-1").await.unwrap();
    assert_eq!(new.id, "web-v7-1");
    assert_eq!(new.endpoint.to_string(), "http://10.0.0.7:8080");
    assert_eq!(
        std::fs::read_to_string(d.join("restarted")).unwrap(),
        "web-v7-1 http://10.0.0.6:8080\n"
    );
    assert_eq!(hooks.instances("web", "v7").await.unwrap()[1], new);
    let e = hooks.restart("web", "v7", "web-v7-5").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);

    // After a crash: adopt takes the record as it is.
    let fresh = driver(
        d,
        "    deploy: ./deploy.sh\n    restart: ./restart.sh\n    teardown: ./teardown.sh\n",
    );
    let recorded = hooks.instances("web", "v7").await.unwrap();
    assert_eq!(fresh.adopt(&req, &recorded).await.unwrap(), recorded);
    assert_eq!(fresh.instances("web", "v7").await.unwrap(), recorded);
}

/// A release's artifact and settings reach hook scripts as arguments and
/// environment, never as shell text: the issue's attack, in a hook written
/// as a plain command and in one that needs a shell, runs nothing.
#[tokio::test]
async fn release_values_reach_hooks_as_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    script(
        d,
        "deploy.sh",
        "printf '%s\\n' \"$1\" \"$2\" \"$#\" > args.txt\necho '{\"endpoints\": [\"http://127.0.0.1:1\"]}'\n",
    );
    script(d, "teardown.sh", "exit 0\n");
    let attack = "x; id > pwned; true";
    let shell_attack = "$(id > pwned2)`id > pwned3`";
    let mut req = DeployRequest::new("web", "v2", 1);
    req.artifact = Some(attack.into());
    req.config.insert("note".into(), shell_attack.into());

    // Words: the artifact is one argument.
    let words = driver(
        d,
        "    deploy: ./deploy.sh {artifact} '{config.note}'\n    teardown: ./teardown.sh {artifact}\n    retries: 0\n",
    );
    words.deploy(&req).await.unwrap();
    let args = std::fs::read_to_string(d.join("args.txt")).unwrap();
    assert_eq!(args, format!("{attack}\n{shell_attack}\n2\n"));
    words.teardown("web", "v2").await.unwrap();

    // A shell script: the values are its positional parameters.
    let shell = driver(
        d,
        "    deploy: \"echo {artifact} > seen.txt && ./deploy.sh {artifact} \\\"{config.note}\\\"\"\n    teardown: ./teardown.sh\n    retries: 0\n",
    );
    shell.deploy(&req).await.unwrap();
    let args = std::fs::read_to_string(d.join("args.txt")).unwrap();
    assert_eq!(args, format!("{attack}\n{shell_attack}\n2\n"));
    let seen = std::fs::read_to_string(d.join("seen.txt")).unwrap();
    assert_eq!(seen, format!("{attack}\n"));
    for f in ["pwned", "pwned2", "pwned3"] {
        assert!(!d.join(f).exists(), "{f} was written");
    }
}
