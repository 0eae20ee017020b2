//! The hooks driver: the user's scripts deploy, scale, restart and tear
//! down on whatever platform they like; backout runs them and reads the
//! endpoints they print.
//!
//! The contract with a script:
//!
//! - It runs from the spec's `workdir` (default: the service file's
//!   directory) with backout's environment plus `BACKOUT_HOOK` (`deploy`,
//!   `scale`, `teardown`, `restart`), `BACKOUT_SERVICE`,
//!   `BACKOUT_VERSION`, `BACKOUT_REPLICAS`, `BACKOUT_ARTIFACT` (empty
//!   when the release has none), `BACKOUT_CONFIG` (the release settings
//!   as a JSON object), `BACKOUT_<KEY>` per setting (the key upper-cased,
//!   other characters than letters and digits as `_`; the fixed names win
//!   over a setting of the same name), then the spec's `env`. A restart
//!   also gets `BACKOUT_INSTANCE` and `BACKOUT_ENDPOINT`.
//! - Release values in the command (`{artifact}`, `{config.KEY}`,
//!   `{version}`) arrive as arguments: one word each in a plain command,
//!   positional parameters after the script in one that needs a shell
//!   (see `backout_spec::driver::shell`). They are never shell text.
//! - It must be idempotent: backout runs it again after a failure or a
//!   crash of its own.
//! - `deploy`, `scale` and `restart` print the version's endpoints as the
//!   **last non-empty line** of stdout, as JSON:
//!   `{"endpoints": ["http://10.0.0.5:8080", "http://10.0.0.6:8080"]}`.
//!   Earlier lines (progress output) are ignored. `teardown`'s output is
//!   ignored.
//! - Exit status 0 is success. A non-zero status, running past `timeout`
//!   (the script's process group is then killed) or an unreadable answer
//!   is a failed attempt; it is retried `retries` times, waiting
//!   `retry_backoff` and then twice as long each time. The error after the
//!   last attempt carries the exit status and the end of stderr (or of
//!   stdout, for an unreadable answer).

mod run;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use backout_spec::driver::TemplateVars;
use backout_spec::{CommandSpec, EndpointUrl, HooksSpec};
use serde::Deserialize;
use tokio::sync::broadcast;

use super::{
    DeployRequest, Driver, DriverContext, DriverError, DriverEvent, ErrorKind, Instance,
    check_names, clock, event_channel, instance_id,
};
use run::Failure;

const KIND: &str = "hooks";
/// The longest wait between two attempts, however many retries.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(300);

/// Drives a platform through the user's scripts. See the module docs.
pub struct HooksDriver {
    spec: HooksSpec,
    workdir: PathBuf,
    state: Mutex<State>,
    events: broadcast::Sender<DriverEvent>,
}

type Key = (String, String);

#[derive(Default)]
struct State {
    versions: BTreeMap<Key, Recorded>,
    locks: BTreeMap<Key, Arc<tokio::sync::Mutex<()>>>,
}

/// What the driver knows of a version: the release it was asked for and
/// the endpoints the last script printed.
struct Recorded {
    req: DeployRequest,
    instances: Vec<Instance>,
}

/// Which script, for messages and `BACKOUT_HOOK`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    Deploy,
    Scale,
    Teardown,
    Restart,
}

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Hook::Deploy => "deploy",
            Hook::Scale => "scale",
            Hook::Teardown => "teardown",
            Hook::Restart => "restart",
        }
    }
}

/// The answer `deploy`, `scale` and `restart` print.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    endpoints: Vec<String>,
}

impl HooksDriver {
    pub fn new(spec: HooksSpec, ctx: DriverContext) -> Self {
        let workdir = match &spec.workdir {
            Some(dir) => ctx.base_dir.join(dir),
            None => ctx.base_dir,
        };
        HooksDriver {
            spec,
            workdir,
            state: Mutex::new(State::default()),
            events: event_channel(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn op_lock(&self, key: &Key) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(self.lock().locks.entry(key.clone()).or_default())
    }

    /// Refuses a request that would run another release under a version
    /// the driver already runs.
    fn check_same_release(&self, req: &DeployRequest) -> Result<(), DriverError> {
        let state = self.lock();
        match state.versions.get(&key(&req.service, &req.version)) {
            Some(r) if !r.req.same_release(req) => Err(DriverError::new(
                KIND,
                &req.service,
                &req.version,
                ErrorKind::Conflict,
                "the version already runs with another artifact or other settings",
                "a release is immutable: register a new version, or tear this one down first",
            )),
            _ => Ok(()),
        }
    }

    /// Deploy or scale: run the script, record what it printed.
    async fn ensure(&self, hook: Hook, req: &DeployRequest) -> Result<Vec<Instance>, DriverError> {
        check_names(KIND, &req.service, &req.version)?;
        let key = key(&req.service, &req.version);
        let lock = self.op_lock(&key);
        let _guard = lock.lock().await;
        self.check_same_release(req)?;
        let command = match hook {
            Hook::Scale => self.spec.scale.as_ref().unwrap_or(&self.spec.deploy),
            _ => &self.spec.deploy,
        };
        let stdout = self.run(hook, command, req, &[]).await?;
        let instances = self.instances_from(hook, command, req, &stdout)?;
        self.lock().versions.insert(
            key,
            Recorded {
                req: req.clone(),
                instances: instances.clone(),
            },
        );
        Ok(instances)
    }

    /// Runs a script with retries; returns its stdout.
    async fn run(
        &self,
        hook: Hook,
        command: &CommandSpec,
        req: &DeployRequest,
        extra_env: &[(String, String)],
    ) -> Result<String, DriverError> {
        let vars = TemplateVars {
            service: &req.service,
            version: &req.version,
            replica: None,
            port: None,
            artifact: req.artifact.as_deref(),
            config: &req.config,
        };
        let render_error = |field: String, e: backout_spec::driver::RenderError| {
            DriverError::new(
                KIND,
                &req.service,
                &req.version,
                ErrorKind::Release,
                format!("cannot build `driver.hooks.{field}`: {e}"),
                "or take the placeholder out of the spec",
            )
        };
        let argv = command
            .render(&vars)
            .map_err(|e| render_error(hook.name().into(), e))?;
        let mut env = self.base_env(hook, req);
        env.extend_from_slice(extra_env);
        for (name, template) in &self.spec.env {
            let value = template
                .render(&vars)
                .map_err(|e| render_error(format!("env.{name}"), e))?;
            env.push((name.clone(), value));
        }

        let attempts = self.spec.retries.saturating_add(1);
        let mut wait = self.spec.retry_backoff.get();
        let mut attempt = 1;
        loop {
            let failure =
                match run::run_once(&argv, &env, &self.workdir, self.spec.timeout.get()).await {
                    Ok(out) => match check_answer(hook, req, &out.stdout) {
                        Ok(()) => return Ok(out.stdout),
                        Err(f) => f,
                    },
                    Err(f) => f,
                };
            if attempt >= attempts {
                return Err(self.failed(hook, command, req, attempt, failure));
            }
            tracing::warn!(
                service = %req.service,
                version = %req.version,
                hook = hook.name(),
                attempt,
                "hook failed ({}); trying again in {wait:?}",
                failure.summary()
            );
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_RETRY_WAIT);
            attempt += 1;
        }
    }

    fn base_env(&self, hook: Hook, req: &DeployRequest) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = req
            .config
            .iter()
            .map(|(k, v)| (format!("BACKOUT_{}", env_name(k)), v.clone()))
            .collect();
        let config = serde_json::to_string(&req.config).unwrap_or_else(|_| "{}".into());
        env.extend([
            ("BACKOUT_HOOK".into(), hook.name().into()),
            ("BACKOUT_SERVICE".into(), req.service.clone()),
            ("BACKOUT_VERSION".into(), req.version.clone()),
            ("BACKOUT_REPLICAS".into(), req.replicas.to_string()),
            (
                "BACKOUT_ARTIFACT".into(),
                req.artifact.clone().unwrap_or_default(),
            ),
            ("BACKOUT_CONFIG".into(), config),
        ]);
        env
    }

    fn failed(
        &self,
        hook: Hook,
        command: &CommandSpec,
        req: &DeployRequest,
        attempts: u32,
        failure: Failure,
    ) -> DriverError {
        let kind = match failure {
            Failure::Timeout { .. } => ErrorKind::Timeout,
            Failure::Spawn(_) => ErrorKind::Start,
            _ => ErrorKind::Hook,
        };
        let tries = if attempts == 1 {
            "once".to_string()
        } else {
            format!("{attempts} times")
        };
        let hint = match &failure {
            Failure::Output { .. } => format!(
                "make `{}` print {} as the last line of its stdout",
                hook.name(),
                r#"{"endpoints": ["http://host:port", ...]}"#
            ),
            Failure::Timeout { .. } => format!(
                "make the script finish sooner or raise `driver.hooks.timeout`; run it by hand from {} with the BACKOUT_* variables to see where it hangs",
                self.workdir.display()
            ),
            _ => format!(
                "run it by hand from {} with the BACKOUT_* variables to see why",
                self.workdir.display()
            ),
        };
        DriverError::new(
            KIND,
            &req.service,
            &req.version,
            kind,
            format!(
                "the {} hook `{command}` failed {tries}; last: {}",
                hook.name(),
                failure.summary()
            ),
            hint,
        )
        .with_detail(failure.evidence())
    }

    /// Instances from a checked answer.
    fn instances_from(
        &self,
        hook: Hook,
        command: &CommandSpec,
        req: &DeployRequest,
        stdout: &str,
    ) -> Result<Vec<Instance>, DriverError> {
        let endpoints = parse_answer(stdout).map_err(|problem| {
            self.failed(
                hook,
                command,
                req,
                1,
                Failure::Output {
                    problem,
                    stdout: stdout.to_string(),
                },
            )
        })?;
        // An instance the script printed before keeps its start time:
        // deploying twice changes nothing.
        let known = self
            .lock()
            .versions
            .get(&key(&req.service, &req.version))
            .map(|r| r.instances.clone())
            .unwrap_or_default();
        let now = clock::unix_millis();
        Ok(endpoints
            .into_iter()
            .enumerate()
            .map(|(i, endpoint)| {
                let replica = i as u32;
                let started_at_ms = known
                    .iter()
                    .find(|k| k.replica == replica && k.endpoint == endpoint)
                    .map_or(now, |k| k.started_at_ms);
                Instance {
                    id: instance_id(&req.service, &req.version, replica),
                    service: req.service.clone(),
                    version: req.version.clone(),
                    replica,
                    endpoint,
                    pid: None,
                    started_at_ms,
                    cmdline: Vec::new(),
                }
            })
            .collect())
    }
}

/// An answer counts as a failed attempt (and is retried) when it cannot be
/// read, or names no endpoint for a version that should have some;
/// teardown's output is not an answer.
fn check_answer(hook: Hook, req: &DeployRequest, stdout: &str) -> Result<(), Failure> {
    if hook == Hook::Teardown {
        return Ok(());
    }
    let problem = match parse_answer(stdout) {
        Ok(endpoints) if endpoints.is_empty() && req.replicas > 0 => {
            format!("printed no endpoint for {} replica(s)", req.replicas)
        }
        Ok(_) => return Ok(()),
        Err(problem) => problem,
    };
    Err(Failure::Output {
        problem,
        stdout: stdout.to_string(),
    })
}

/// Reads the endpoints from the last non-empty line of stdout.
fn parse_answer(stdout: &str) -> Result<Vec<EndpointUrl>, String> {
    let Some(line) = stdout.lines().rev().map(str::trim).find(|l| !l.is_empty()) else {
        return Err("printed nothing on stdout instead of its endpoints".into());
    };
    let answer: Answer = serde_json::from_str(line).map_err(|e| {
        let shown: String = line.chars().take(120).collect();
        format!(r#"printed {shown:?} as its last line, which is not {{"endpoints": [...]}} ({e})"#)
    })?;
    let mut out: Vec<EndpointUrl> = Vec::with_capacity(answer.endpoints.len());
    for (i, text) in answer.endpoints.iter().enumerate() {
        let url = EndpointUrl::parse(text).map_err(|e| format!("endpoints[{i}]: {e}"))?;
        if out.contains(&url) {
            return Err(format!("endpoints[{i}]: {url} is listed twice"));
        }
        out.push(url);
    }
    Ok(out)
}

/// A release setting's name as an environment variable suffix.
fn env_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn key(service: &str, version: &str) -> Key {
    (service.to_string(), version.to_string())
}

#[async_trait]
impl Driver for HooksDriver {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn deploy(&self, req: &DeployRequest) -> Result<Vec<Instance>, DriverError> {
        self.ensure(Hook::Deploy, req).await
    }

    /// Runs `scale`, or `deploy` again when the spec has no `scale`.
    async fn scale(&self, req: &DeployRequest) -> Result<Vec<Instance>, DriverError> {
        self.ensure(Hook::Scale, req).await
    }

    /// Runs `teardown` with the release recorded by deploy, scale or
    /// adopt (bare service and version when none was: after a crash,
    /// adopt first so the script gets the release's settings).
    async fn teardown(&self, service: &str, version: &str) -> Result<(), DriverError> {
        check_names(KIND, service, version)?;
        let key = key(service, version);
        let lock = self.op_lock(&key);
        let _guard = lock.lock().await;
        let req = self
            .lock()
            .versions
            .get(&key)
            .map(|r| r.req.clone())
            .unwrap_or_else(|| DeployRequest::new(service, version, 0));
        let req = DeployRequest { replicas: 0, ..req };
        self.run(Hook::Teardown, &self.spec.teardown, &req, &[])
            .await?;
        self.lock().versions.remove(&key);
        Ok(())
    }

    /// Runs `restart` for the instance (or `deploy` again when the spec
    /// has none) and returns the instance with the same index from the
    /// endpoints it prints.
    async fn restart(
        &self,
        service: &str,
        version: &str,
        instance_id: &str,
    ) -> Result<Instance, DriverError> {
        let key = key(service, version);
        let lock = self.op_lock(&key);
        let _guard = lock.lock().await;
        let found = self.lock().versions.get(&key).and_then(|r| {
            r.instances
                .iter()
                .find(|i| i.id == instance_id)
                .map(|i| (r.req.clone(), i.clone()))
        });
        let Some((req, old)) = found else {
            return Err(DriverError::new(
                KIND,
                service,
                version,
                ErrorKind::NotFound,
                format!("no instance {instance_id:?} is recorded"),
                "deploy the version (or adopt it after a restart of backout) first",
            ));
        };
        let (hook, command) = match &self.spec.restart {
            Some(c) => (Hook::Restart, c),
            None => (Hook::Deploy, &self.spec.deploy),
        };
        let extra = [
            ("BACKOUT_INSTANCE".to_string(), old.id.clone()),
            ("BACKOUT_ENDPOINT".to_string(), old.endpoint.to_string()),
        ];
        let stdout = self.run(hook, command, &req, &extra).await?;
        let instances = self.instances_from(hook, command, &req, &stdout)?;
        let new = instances.iter().find(|i| i.replica == old.replica).cloned();
        self.lock().versions.insert(
            key,
            Recorded {
                req: req.clone(),
                instances: instances.clone(),
            },
        );
        new.ok_or_else(|| {
            DriverError::new(
                KIND,
                service,
                version,
                ErrorKind::Hook,
                format!(
                    "the {} hook printed {} endpoint(s), so instance {} is gone",
                    hook.name(),
                    instances.len(),
                    old.replica
                ),
                "print every endpoint of the version, the restarted one included",
            )
        })
    }

    async fn instances(&self, service: &str, version: &str) -> Result<Vec<Instance>, DriverError> {
        Ok(self
            .lock()
            .versions
            .get(&key(service, version))
            .map(|r| r.instances.clone())
            .unwrap_or_default())
    }

    /// Scripts leave nothing backout could check, so the record is taken
    /// as it is; the next deploy (idempotent) refreshes it.
    async fn adopt(
        &self,
        req: &DeployRequest,
        recorded: &[Instance],
    ) -> Result<Vec<Instance>, DriverError> {
        check_names(KIND, &req.service, &req.version)?;
        let key = key(&req.service, &req.version);
        let lock = self.op_lock(&key);
        let _guard = lock.lock().await;
        self.check_same_release(req)?;
        let instances: Vec<Instance> = recorded
            .iter()
            .filter(|i| i.service == req.service && i.version == req.version)
            .cloned()
            .collect();
        self.lock().versions.insert(
            key,
            Recorded {
                req: req.clone(),
                instances: instances.clone(),
            },
        );
        Ok(instances)
    }

    fn subscribe(&self) -> broadcast::Receiver<DriverEvent> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(stdout: &str, expected: Result<&[&str], &str>) {
        match (parse_answer(stdout), expected) {
            (Ok(got), Ok(want)) => {
                let got: Vec<String> = got.iter().map(ToString::to_string).collect();
                assert_eq!(got, want, "{stdout}");
            }
            (Err(e), Err(fragment)) => assert!(e.contains(fragment), "{stdout}: {e}"),
            (got, want) => panic!("{stdout}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn answers() {
        check(r#"{"endpoints": ["http://a:1"]}"#, Ok(&["http://a:1"]));
        check(
            "deploying...\ndone\n{\"endpoints\": [\"http://a:1\", \"http://b:2\"]}\n\n",
            Ok(&["http://a:1", "http://b:2"]),
        );
        check(r#"{"endpoints": []}"#, Ok(&[]));
        check("", Err("printed nothing"));
        check("ok\n", Err(r#"printed "ok" as its last line"#));
        // TLS upstreams are endpoints like any other.
        check(r#"{"endpoints": ["https://a:1"]}"#, Ok(&["https://a:1"]));
        check(r#"{"endpoints": ["ftp://a:1"]}"#, Err("endpoints[0]"));
        check(
            r#"{"endpoints": ["http://a:1", "http://a:1"]}"#,
            Err("twice"),
        );
        check(r#"{"endpoint": ["http://a:1"]}"#, Err("unknown field"));
    }

    #[test]
    fn env_names() {
        assert_eq!(env_name("db_url"), "DB_URL");
        assert_eq!(env_name("feature.x-y"), "FEATURE_X_Y");
    }
}
