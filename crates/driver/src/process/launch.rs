//! Starting one replica: render the command, spawn it in its own process
//! group with its log as stdout and stderr, and wait until it accepts
//! connections on its port, so that a replica the driver reports as
//! started really listens, and one that cannot start fails the deploy
//! with its exit status and the end of its log.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use backout_spec::EndpointUrl;
use backout_spec::driver::TemplateVars;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::{DeployRequest, DriverError, ErrorKind, Instance, Shared, log};
use crate::{clock, group, instance_id};

/// How often an adopted process (not our child, so not waitable) is
/// checked for life.
const ADOPTED_POLL: Duration = Duration::from_millis(250);
/// How often a starting replica's port is tried.
const LISTEN_POLL: Duration = Duration::from_millis(25);

/// A replica's running process: our own child, or one adopted after a
/// crash of backout.
pub(super) struct Running {
    pub(super) instance: Instance,
    pub(super) pid: u32,
    child: Option<Child>,
    pub(super) started: Instant,
}

impl Running {
    pub(super) fn adopted(instance: Instance) -> Running {
        Running {
            pid: instance.pid.unwrap_or_default(),
            instance,
            child: None,
            started: Instant::now(),
        }
    }

    /// Waits until the process exits on its own and says how it ended.
    /// Cancel-safe: used inside `select!`.
    pub(super) async fn wait(&mut self) -> String {
        match &mut self.child {
            Some(child) => match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => format!("an unknown status ({e})"),
            },
            None => loop {
                tokio::time::sleep(ADOPTED_POLL).await;
                if !group::alive(self.pid) {
                    return "an unknown status (adopted after a restart of backout)".into();
                }
            },
        }
    }

    /// SIGTERM to the group, SIGKILL after `grace`.
    pub(super) async fn stop(&mut self, grace: Duration) -> Result<(), String> {
        group::terminate(self.pid, self.child.as_mut(), grace).await
    }
}

/// Starts replica `replica` of `req` on `port` and waits until it listens.
pub(super) async fn launch(
    shared: &Shared,
    req: &DeployRequest,
    replica: u32,
    port: u16,
) -> Result<Running, DriverError> {
    let spec = &shared.spec;
    let error = |kind, message: String, hint: String| {
        shared.error(&req.service, &req.version, kind, message, hint)
    };
    let vars = TemplateVars {
        service: &req.service,
        version: &req.version,
        replica: Some(replica),
        port: Some(port),
        artifact: req.artifact.as_deref(),
        config: &req.config,
    };
    let render_error = |field: &str, e: backout_spec::driver::RenderError| {
        error(
            ErrorKind::Release,
            format!("cannot build `driver.process.{field}`: {e}"),
            "or take the placeholder out of the spec".into(),
        )
    };
    let argv = spec
        .command
        .render(&vars)
        .map_err(|e| render_error("command", e))?;
    let mut env = Vec::with_capacity(spec.env.len());
    for (name, template) in &spec.env {
        let value = template
            .render(&vars)
            .map_err(|e| render_error(&format!("env.{name}"), e))?;
        env.push((name.clone(), value));
    }
    let Some((program, args)) = argv.split_first() else {
        return Err(error(
            ErrorKind::Release,
            "the command is empty".into(),
            "set `driver.process.command`".into(),
        ));
    };

    let log_path = shared.log_path(&req.service, &req.version, replica);
    let header = format!(
        "starting replica {replica} of {} {} on port {port} at {} (unix ms): {}",
        req.service,
        req.version,
        clock::unix_millis(),
        argv.join(" ")
    );
    let log_error = |e: std::io::Error| {
        error(
            ErrorKind::Io,
            format!("cannot open the log {}: {e}", log_path.display()),
            "check that backout's data directory is writable".into(),
        )
    };
    let stdout = log::open(&log_path, &header).map_err(log_error)?;
    let stderr = stdout.try_clone().map_err(log_error)?;

    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(&shared.workdir)
        .env("PORT", port.to_string())
        .env("BACKOUT_SERVICE", &req.service)
        .env("BACKOUT_VERSION", &req.version)
        .env("BACKOUT_REPLICA", replica.to_string());
    if let Some(artifact) = &req.artifact {
        command.env("BACKOUT_ARTIFACT", artifact);
    }
    command
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(false);
    let started_at_ms = clock::unix_millis();
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| {
        error(
            ErrorKind::Start,
            format!("cannot start `{program}` for replica {replica}: {e}"),
            format!(
                "check `driver.process.command`; relative paths start from {}",
                shared.workdir.display()
            ),
        )
    })?;
    let Some(pid) = child.id() else {
        return Err(error(
            ErrorKind::Start,
            format!("replica {replica} exited as soon as it started"),
            format!("see its log at {}", log_path.display()),
        )
        .with_detail(log::tail(&log_path)));
    };

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let endpoint = EndpointUrl::parse(&format!("http://{addr}")).map_err(|e| {
        error(
            ErrorKind::Io,
            e,
            "this is a bug in backout; please report it".into(),
        )
    })?;
    let mut instance = Instance {
        id: instance_id(&req.service, &req.version, replica),
        service: req.service.clone(),
        version: req.version.clone(),
        replica,
        endpoint,
        pid: Some(pid),
        started_at_ms,
        cmdline: argv.clone(),
    };
    // Before anything else can happen to backout: from here on a crash
    // leaves a replica that must be found again.
    shared.write_record(&instance);

    let deadline = started + spec.start_timeout.get();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            group::kill_remains(pid).await;
            shared.remove_record(&instance);
            return Err(error(
                ErrorKind::Start,
                format!("replica {replica} exited with {status} before it listened on port {port}"),
                format!(
                    "check `driver.process.command` and the log at {}",
                    log_path.display()
                ),
            )
            .with_detail(log::tail(&log_path)));
        }
        let connect = tokio::time::timeout(LISTEN_POLL * 8, TcpStream::connect(addr)).await;
        if matches!(connect, Ok(Ok(_))) {
            break;
        }
        if Instant::now() >= deadline {
            // Best effort: the replica is abandoned either way, and the
            // error below is what the caller needs to see.
            if group::terminate(pid, Some(&mut child), spec.stop_timeout.get())
                .await
                .is_ok()
            {
                shared.remove_record(&instance);
            }
            return Err(error(
                ErrorKind::Timeout,
                format!(
                    "replica {replica} did not listen on port {port} within {}",
                    spec.start_timeout
                ),
                "make the app listen on `{port}` (or $PORT) on 127.0.0.1, or raise `driver.process.start_timeout`".into(),
            )
            .with_detail(log::tail(&log_path)));
        }
        tokio::time::sleep(LISTEN_POLL).await;
    }

    // Read once the replica listens: a `sh -c` wrapper may have exec'd
    // the app by then, and adoption compares this.
    instance.cmdline = group::cmdline(pid).unwrap_or(argv);
    shared.write_record(&instance);
    Ok(Running {
        instance,
        pid,
        child: Some(child),
        started,
    })
}
