//! The `driver:` section of a service file: how backout starts and stops a
//! version's instances.
//!
//! Three kinds, one per platform shape:
//!
//! ```yaml
//! driver:
//!   process:                      # backout runs the replicas itself
//!     command: "./app --port {port} --version {version}"   # or a list: [./app, --port, "{port}"]
//!     replicas: 2
//!     env: {RUST_LOG: info, DB: "{config.db_url}"}
//!     workdir: .                  # relative to the service file
//!     ports: 20000-20999          # default: any free port
//!     stop_timeout: 10s           # SIGTERM, then SIGKILL after this
//!     start_timeout: 30s          # a replica must listen on its port by then
//!     restart: {backoff: 1s, max_backoff: 30s}
//!     log_max_size: 10MiB
//! driver: {static: {}}            # endpoints come with the release: --set endpoints=http://a:1,http://b:2
//! driver:
//!   hooks:                        # user scripts drive any platform
//!     deploy: ./deploy.sh         # prints {"endpoints": [...]} as its last stdout line
//!     scale: ./scale.sh           # optional: deploy is run again
//!     teardown: ./teardown.sh
//!     restart: ./restart.sh       # optional
//!     replicas: 3                 # BACKOUT_REPLICAS; default 1
//!     timeout: 60s
//!     retries: 2
//!     retry_backoff: 1s
//! ```
//!
//! The raw types in `driver/file.rs` keep locations; [`DriverFile::validate`]
//! turns them into the clean types here, which carry every default.

mod file;
pub mod shell;
mod template;

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::ops::RangeInclusive;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::duration::Duration;

pub use file::{CommandFile, DriverFile, HooksFile, ProcessFile, RestartFile, StaticFile};
pub use shell::ShellScript;
pub use template::{RenderError, Template, TemplateScope, TemplateVars, Var};

/// How a service's versions are run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverSpec {
    /// backout spawns and supervises the replicas as local processes.
    Process(ProcessSpec),
    /// Something else runs the versions; the release names their endpoints.
    Static(StaticSpec),
    /// User scripts deploy, scale and tear down on any platform.
    Hooks(HooksSpec),
}

impl DriverSpec {
    /// Replicas a version gets unless a rollout asks for another count;
    /// `None` for static endpoints, whose count is what the release lists.
    pub fn replicas(&self) -> Option<u32> {
        match self {
            DriverSpec::Process(p) => Some(p.replicas.get()),
            DriverSpec::Static(_) => None,
            DriverSpec::Hooks(h) => Some(h.replicas.get()),
        }
    }

    /// The kind as written in the spec (`process`, `static`, `hooks`).
    pub fn kind(&self) -> &'static str {
        match self {
            DriverSpec::Process(_) => "process",
            DriverSpec::Static(_) => "static",
            DriverSpec::Hooks(_) => "hooks",
        }
    }
}

/// A command to run, in the form it is run in.
///
/// Release values (`{artifact}`, `{config.KEY}`, `{version}`) are data
/// from whoever holds an operator token, so no form lets them become shell
/// syntax or change the number of arguments. See [`shell`] for how a
/// string is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandSpec {
    /// A string without shell syntax, split into words when the spec is
    /// read and run without a shell; each placeholder fills in part of one
    /// word.
    Words { source: String, argv: Vec<Template> },
    /// A string that needs a shell, run by `sh -c` with the values as
    /// positional parameters after the script.
    /// (Boxed: it is the largest form and the rarest.)
    Shell(Box<ShellScript>),
    /// A list of arguments, run as it is.
    Argv(Vec<Template>),
}

impl CommandSpec {
    /// Reads a command written as one string: words when it needs no
    /// shell, otherwise a shell script. The error says what is wrong.
    pub fn parse(text: &str, scope: TemplateScope) -> Result<CommandSpec, String> {
        Ok(match shell::parse(text, scope)? {
            shell::Parsed::Words(argv) => CommandSpec::Words {
                source: text.to_string(),
                argv,
            },
            shell::Parsed::Shell(script) => CommandSpec::Shell(Box::new(script)),
        })
    }

    /// The argument vector with the placeholders filled in. Its length
    /// and every argument without a placeholder are fixed by the spec; a
    /// value only ever fills in (part of) one argument.
    pub fn render(&self, vars: &TemplateVars<'_>) -> Result<Vec<String>, RenderError> {
        match self {
            CommandSpec::Shell(s) => s.render(vars),
            CommandSpec::Words { argv, .. } | CommandSpec::Argv(argv) => {
                argv.iter().map(|t| t.render(vars)).collect()
            }
        }
    }
}

impl fmt::Display for CommandSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandSpec::Words { source, .. } => f.write_str(source),
            CommandSpec::Shell(s) => f.write_str(s.template().as_str()),
            CommandSpec::Argv(v) => {
                for (i, t) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    f.write_str(t.as_str())?;
                }
                Ok(())
            }
        }
    }
}

impl Serialize for CommandSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CommandSpec::Words { source, .. } => s.serialize_str(source),
            CommandSpec::Shell(script) => script.template().serialize(s),
            CommandSpec::Argv(v) => v.serialize(s),
        }
    }
}

/// Replicas run as child processes of backout, each in its own process
/// group, on ports backout picks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessSpec {
    pub command: CommandSpec,
    /// Replicas per version unless a rollout asks for another count.
    pub replicas: NonZeroU32,
    /// Extra environment, on top of backout's own and of `PORT`,
    /// `BACKOUT_SERVICE`, `BACKOUT_VERSION`, `BACKOUT_REPLICA` (and
    /// `BACKOUT_ARTIFACT` when the release has one), which are always set.
    pub env: BTreeMap<String, Template>,
    /// Working directory, relative to the service file's directory.
    pub workdir: Option<String>,
    /// Ports to pick from; `None` lets the system choose any free port.
    pub ports: Option<PortRange>,
    /// How long a replica may take to exit after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
    /// How long a new replica may take to accept connections on its port.
    pub start_timeout: Duration,
    pub restart: RestartSpec,
    /// A replica's log is cut (the old part kept as `.log.1`) past this size.
    pub log_max_size: ByteSize,
}

impl ProcessSpec {
    pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_LOG_MAX_SIZE: ByteSize = ByteSize(10 * 1024 * 1024);

    /// A spec with every default around `command`, for tests and embedding.
    pub fn new(command: CommandSpec) -> Self {
        ProcessSpec {
            command,
            replicas: NonZeroU32::MIN,
            env: BTreeMap::new(),
            workdir: None,
            ports: None,
            stop_timeout: Self::DEFAULT_STOP_TIMEOUT,
            start_timeout: Self::DEFAULT_START_TIMEOUT,
            restart: RestartSpec::default(),
            log_max_size: Self::DEFAULT_LOG_MAX_SIZE,
        }
    }
}

/// Back-off between restarts of a replica that exited: it starts at
/// `backoff`, doubles with each exit up to `max_backoff`, and starts over
/// once a replica has stayed up for `max_backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RestartSpec {
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RestartSpec {
    fn default() -> Self {
        RestartSpec {
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Endpoints are given per release (`--set endpoints=URL,URL`); backout
/// only moves traffic between them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StaticSpec {}

impl StaticSpec {
    /// The release setting that lists a version's endpoints.
    pub const ENDPOINTS_KEY: &'static str = "endpoints";
}

/// User scripts that drive a platform backout does not know.
///
/// Each runs with `BACKOUT_SERVICE`, `BACKOUT_VERSION`, `BACKOUT_REPLICAS`,
/// `BACKOUT_ARTIFACT`, `BACKOUT_CONFIG` (the release settings as a JSON
/// object) and `BACKOUT_<KEY>` per setting. `deploy`, `scale` and
/// `restart` print the version's endpoints as the last line of stdout:
/// `{"endpoints": ["http://10.0.0.5:8080"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HooksSpec {
    pub deploy: CommandSpec,
    /// `None` runs `deploy` again with the new replica count.
    pub scale: Option<CommandSpec>,
    pub teardown: CommandSpec,
    /// Replaces one instance (`BACKOUT_INSTANCE` names it); `None` runs
    /// `deploy` again, which is expected to replace what is unhealthy.
    pub restart: Option<CommandSpec>,
    /// Replicas per version unless a rollout asks for another count
    /// (`BACKOUT_REPLICAS`).
    pub replicas: NonZeroU32,
    /// A run that takes longer is killed (with its process group) and
    /// counts as a failed attempt.
    pub timeout: Duration,
    /// Attempts after the first failed one.
    pub retries: u32,
    /// Wait before the first retry; doubles with each further one.
    pub retry_backoff: Duration,
    pub env: BTreeMap<String, Template>,
    /// Working directory, relative to the service file's directory.
    pub workdir: Option<String>,
}

impl HooksSpec {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_RETRIES: u32 = 2;
    pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(1);

    /// A spec with every default around the required scripts.
    pub fn new(deploy: CommandSpec, teardown: CommandSpec) -> Self {
        HooksSpec {
            deploy,
            scale: None,
            teardown,
            restart: None,
            replicas: NonZeroU32::MIN,
            timeout: Self::DEFAULT_TIMEOUT,
            retries: Self::DEFAULT_RETRIES,
            retry_backoff: Self::DEFAULT_RETRY_BACKOFF,
            env: BTreeMap::new(),
            workdir: None,
        }
    }
}

/// An inclusive range of TCP ports, written `20000-20999` or as one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRange(RangeInclusive<u16>);

impl PortRange {
    pub fn new(first: u16, last: u16) -> Result<Self, String> {
        if first == 0 || first > last {
            return Err(format!(
                "port range {first}-{last} must run from 1 to 65535, low to high"
            ));
        }
        Ok(PortRange(first..=last))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let hint = "write a port or a range, e.g. `20000-20999`";
        let port = |s: &str| {
            s.trim()
                .parse::<u16>()
                .map_err(|_| format!("{text:?} is not a port range; {hint}"))
        };
        match text.split_once('-') {
            Some((a, b)) => PortRange::new(port(a)?, port(b)?),
            None => {
                let p = port(text)?;
                PortRange::new(p, p)
            }
        }
    }

    pub fn first(&self) -> u16 {
        *self.0.start()
    }
    pub fn last(&self) -> u16 {
        *self.0.end()
    }
    /// How many ports the range holds.
    pub fn len(&self) -> u32 {
        u32::from(self.last()) - u32::from(self.first()) + 1
    }
    /// Never true: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn iter(&self) -> RangeInclusive<u16> {
        self.0.clone()
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first(), self.last())
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PortRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port or a port range such as `20000-20999`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PortRange, E> {
                PortRange::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PortRange, E> {
                let p = u16::try_from(v).map_err(|_| E::custom(format!("{v} is not a port")))?;
                PortRange::new(p, p).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PortRange, E> {
                Err(E::custom(format!("{v} is not a port")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A size in bytes, written with a unit: `512KiB`, `10MiB`, `1GB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let hint = "write a number with a unit, e.g. `512KiB`, `10MiB`, `1GB`";
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a size; {hint}"))?;
        let factor: u64 = match unit.trim() {
            "B" => 1,
            "KB" | "kB" => 1000,
            "KiB" => 1 << 10,
            "MB" => 1000 * 1000,
            "MiB" => 1 << 20,
            "GB" => 1000 * 1000 * 1000,
            "GiB" => 1 << 30,
            "" => return Err(format!("a bare number ({n}) has no unit; {hint}")),
            other => return Err(format!("unknown size unit {other:?}; {hint}")),
        };
        n.checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size with a unit, e.g. `10MiB`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Err(E::custom(format!(
                    "a bare number ({v}) has no unit; write e.g. `{v}B` or `10MiB`"
                )))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                Err(E::custom(format!("{v} is not a size")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests;
