//! Drivers: what starts and stops a version's instances.
//!
//! The controller decides *that* a version should run with N replicas; a
//! driver makes it so on one kind of platform and says where the instances
//! listen. Three kinds exist, chosen by the service spec's `driver:`
//! section ([`backout_spec::DriverSpec`]):
//!
//! - [`ProcessDriver`]: backout runs the replicas itself as supervised
//!   child processes on loopback ports (the demo, a single host, tests);
//! - [`StaticDriver`]: something else runs them; the release lists the
//!   endpoints and backout only moves traffic;
//! - [`HooksDriver`]: user scripts deploy, scale and tear down on any
//!   platform and print the endpoints.
//!
//! Every operation is idempotent, so the controller can repeat an action
//! after a crash without knowing whether it took effect: `deploy` twice
//! starts nothing new, `teardown` of a version that is gone succeeds.
//!
//! A driver never decides anything about a rollout: it reports (errors,
//! [`DriverEvent`]s) and the controller records and acts.

mod clock;
mod group;
mod hooks;
mod process;
mod r#static;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use backout_spec::{DriverSpec, EndpointUrl};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub use hooks::HooksDriver;
pub use process::ProcessDriver;
pub use r#static::StaticDriver;

/// What the controller asks for: one version of a service (its release)
/// with a number of replicas.
///
/// A release is immutable, so `artifact` and `config` must not change for
/// a version that runs; a driver refuses a request that changes them
/// ([`ErrorKind::Conflict`]) rather than silently running two releases
/// under one name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRequest {
    pub service: String,
    pub version: String,
    /// Wanted replicas. The static driver runs what the release lists and
    /// ignores it; hooks get it as `BACKOUT_REPLICAS`.
    pub replicas: u32,
    /// The release's artifact reference or digest (`--artifact`).
    pub artifact: Option<String>,
    /// The release's settings (`--set KEY=VALUE`).
    pub config: BTreeMap<String, String>,
}

impl DeployRequest {
    /// A request without artifact or settings.
    pub fn new(service: impl Into<String>, version: impl Into<String>, replicas: u32) -> Self {
        DeployRequest {
            service: service.into(),
            version: version.into(),
            replicas,
            artifact: None,
            config: BTreeMap::new(),
        }
    }

    /// Whether `other` is the same release (replica count aside).
    fn same_release(&self, other: &DeployRequest) -> bool {
        self.service == other.service
            && self.version == other.version
            && self.artifact == other.artifact
            && self.config == other.config
    }
}

/// One running instance of a version, as the controller records it in the
/// event log and hands it back to [`Driver::adopt`] after a crash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Stable per replica across restarts: `{service}-{version}-{replica}`.
    pub id: String,
    pub service: String,
    pub version: String,
    /// Index from 0.
    pub replica: u32,
    /// Where the proxy sends this instance's share of the traffic.
    pub endpoint: EndpointUrl,
    /// The process (group leader) for the process driver; `None` for
    /// instances backout does not run itself.
    pub pid: Option<u32>,
    /// When this incarnation started, Unix milliseconds.
    pub started_at_ms: i64,
    /// The process's command line as the system reported it once it
    /// listened; [`Driver::adopt`] takes over a pid only if it still
    /// matches, so a recycled pid is never mistaken for a replica.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmdline: Vec<String>,
}

/// Something that happened to an instance without the controller asking:
/// the controller records these in the event log (and may notify).
///
/// Delivered through a broadcast channel ([`Driver::subscribe`]); a
/// receiver that falls more than a thousand events behind loses the oldest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DriverEvent {
    /// A replica's process exited on its own; the supervisor starts it
    /// again after `restart_in_ms`.
    Exited {
        instance: Instance,
        /// How it ended, e.g. `exit status: 1` or `signal: 9 (SIGKILL)`.
        status: String,
        restart_in_ms: u64,
        at_ms: i64,
    },
    /// A replica runs again (new pid, same id; usually the same port).
    Restarted {
        instance: Instance,
        /// Restarts of this replica since its version was deployed.
        restarts: u32,
        at_ms: i64,
    },
    /// Starting a replica again failed; the supervisor tries again after
    /// `retry_in_ms`.
    RestartFailed {
        service: String,
        version: String,
        replica: u32,
        error: String,
        retry_in_ms: u64,
        at_ms: i64,
    },
}

/// What kind of failure, for the controller's decisions (retry, abort the
/// rollout, ignore).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The release lacks a value the driver needs or has a bad one (a
    /// `--set` key, the artifact, a name); retrying will not help.
    Release,
    /// A process could not be started or exited before it listened.
    Start,
    /// A hook script failed every attempt.
    Hook,
    /// Something did not finish in time (start, stop, a hook).
    Timeout,
    /// The version or instance is not known to this driver.
    NotFound,
    /// This driver cannot do that (e.g. restart a static endpoint).
    Unsupported,
    /// The version already runs with another release's settings.
    Conflict,
    /// Local I/O: the log directory, free ports.
    Io,
}

/// A driver failure: which driver, which version, what failed, what to do,
/// and the evidence (a log or stderr tail) when there is some.
///
/// Boxed so that `Result<_, DriverError>` stays small on the happy path;
/// the fields are read through `Deref` (`err.kind`, `err.message`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct DriverError(Box<DriverErrorInfo>);

/// The parts of a [`DriverError`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverErrorInfo {
    pub driver: &'static str,
    pub service: String,
    pub version: String,
    pub kind: ErrorKind,
    /// What failed, e.g. "replica 1 exited with exit status: 127 before it
    /// listened on port 20001".
    pub message: String,
    /// What to do about it.
    pub hint: String,
    /// Evidence: the last lines of a replica's log or a script's stderr.
    pub detail: Option<String>,
}

impl std::ops::Deref for DriverError {
    type Target = DriverErrorInfo;
    fn deref(&self) -> &DriverErrorInfo {
        &self.0
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} driver, {} {}: {}; {}",
            self.driver, self.service, self.version, self.message, self.hint
        )?;
        if let Some(detail) = &self.detail {
            write!(f, "\n{detail}")?;
        }
        Ok(())
    }
}

impl DriverError {
    fn new(
        driver: &'static str,
        service: &str,
        version: &str,
        kind: ErrorKind,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        DriverError(Box::new(DriverErrorInfo {
            driver,
            service: service.to_string(),
            version: version.to_string(),
            kind,
            message: message.into(),
            hint: hint.into(),
            detail: None,
        }))
    }

    fn with_detail(mut self, detail: Option<String>) -> Self {
        self.0.detail = detail.filter(|d| !d.trim().is_empty());
        self
    }
}

/// Where a driver keeps things and resolves relative paths.
#[derive(Clone, Debug)]
pub struct DriverContext {
    /// backout's data directory; the process driver writes replica logs
    /// under `{data_dir}/logs/{service}/{version}-{replica}.log`.
    pub data_dir: PathBuf,
    /// The directory of the service file: relative `workdir`s and commands
    /// run from here.
    pub base_dir: PathBuf,
    /// Whether this process may act on instances now. A supervisor asks
    /// before it starts an exited replica again: a control plane that
    /// lost the leadership (paused, then woken) must not start what the
    /// new leader stopped.
    pub gate: Gate,
}

/// See [`DriverContext::gate`].
#[derive(Clone, Default)]
pub struct Gate(Option<Arc<dyn Fn() -> bool + Send + Sync>>);

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.acting() {
            "Gate(open)"
        } else {
            "Gate(shut)"
        })
    }
}

impl Gate {
    /// Always open: a control plane that leads alone, or a one-off run.
    pub fn open() -> Gate {
        Gate(None)
    }

    /// Open while `acting` says this process may act.
    pub fn new(acting: impl Fn() -> bool + Send + Sync + 'static) -> Gate {
        Gate(Some(Arc::new(acting)))
    }

    pub fn acting(&self) -> bool {
        self.0.as_ref().is_none_or(|f| f())
    }
}

/// Starts and stops a version's instances on one kind of platform.
///
/// Every method is idempotent and safe to call concurrently; calls for the
/// same version are serialised inside the driver. Dropping a driver stops
/// nothing (so that a control plane that restarts can [`adopt`] what it
/// left running): call [`teardown`] to stop a version.
///
/// [`adopt`]: Driver::adopt
/// [`teardown`]: Driver::teardown
#[async_trait]
pub trait Driver: Send + Sync {
    /// `process`, `static` or `hooks`, as in the spec.
    fn kind(&self) -> &'static str;

    /// Makes exactly `req.replicas` instances of the version run and
    /// returns them all, ordered by replica. Instances that already run are
    /// kept, so calling it twice changes nothing. Returns once the new
    /// instances are up (the process driver: each accepts connections on
    /// its port, within `start_timeout`), so run it off the controller's
    /// tick.
    async fn deploy(&self, req: &DeployRequest) -> Result<Vec<Instance>, DriverError>;

    /// The same request with another replica count: starts the missing
    /// replicas and stops those above the count; replicas below it are not
    /// touched.
    async fn scale(&self, req: &DeployRequest) -> Result<Vec<Instance>, DriverError>;

    /// Stops every instance of the version and forgets it. A version that
    /// does not run is not an error.
    async fn teardown(&self, service: &str, version: &str) -> Result<(), DriverError>;

    /// Replaces one instance, e.g. after its liveness probe failed, and
    /// returns the new incarnation (same id; usually the same endpoint).
    async fn restart(
        &self,
        service: &str,
        version: &str,
        instance_id: &str,
    ) -> Result<Instance, DriverError>;

    /// The version's instances as the driver knows them now (empty when
    /// it does not run).
    async fn instances(&self, service: &str, version: &str) -> Result<Vec<Instance>, DriverError>;

    /// After a restart of backout itself: takes over the version's
    /// instances recorded before, as far as they still run, without
    /// restarting them, and returns those it took over. Follow with
    /// [`deploy`](Driver::deploy) to start what is missing.
    async fn adopt(
        &self,
        req: &DeployRequest,
        recorded: &[Instance],
    ) -> Result<Vec<Instance>, DriverError>;

    /// Events about instances that nobody asked for (exits, restarts).
    fn subscribe(&self) -> broadcast::Receiver<DriverEvent>;

    /// This process no longer leads: stop supervising and forget the
    /// instances, but leave them running for the new leader to adopt.
    /// Drivers that keep no watch over their instances have nothing to do.
    fn release(&self) {}
}

impl fmt::Debug for dyn Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Driver({})", self.kind())
    }
}

/// The driver a service spec asks for.
pub fn build(spec: &DriverSpec, ctx: DriverContext) -> Arc<dyn Driver> {
    match spec {
        DriverSpec::Process(p) => Arc::new(ProcessDriver::new(p.clone(), ctx)),
        DriverSpec::Static(s) => Arc::new(StaticDriver::new(s.clone())),
        DriverSpec::Hooks(h) => Arc::new(HooksDriver::new(h.clone(), ctx)),
    }
}

/// `{service}-{version}-{replica}`: stable per replica, unique per service.
fn instance_id(service: &str, version: &str, replica: u32) -> String {
    format!("{service}-{version}-{replica}")
}

/// Service and version names end up in file names (logs) and environment
/// variables, so they must be plain: a version called `../x` must not
/// write outside the log directory.
fn check_names(driver: &'static str, req_service: &str, version: &str) -> Result<(), DriverError> {
    for (what, name) in [("service", req_service), ("version", version)] {
        let plain = !name.is_empty()
            && name.len() <= 128
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b));
        if !plain {
            return Err(DriverError::new(
                driver,
                req_service,
                version,
                ErrorKind::Release,
                format!("the {what} name {name:?} cannot be used"),
                "use letters, digits, `-`, `_`, `.` and `+`, not starting with `.`",
            ));
        }
    }
    Ok(())
}

/// The events sender every driver owns; static and hooks drivers never
/// send on theirs.
fn event_channel() -> broadcast::Sender<DriverEvent> {
    broadcast::channel(1024).0
}

/// The last `lines` lines of `text`, each indented, for error details.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = all.len().saturating_sub(lines);
    all[start..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
