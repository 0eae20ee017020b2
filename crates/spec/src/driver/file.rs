//! The `driver:` section as written: optional fields where a default
//! exists, and values that need checking kept with their location.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;

use serde::Deserialize;
use serde::de::{Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use super::{
    ByteSize, CommandSpec, DriverSpec, HooksSpec, PortRange, ProcessSpec, RestartSpec, StaticSpec,
    Template, TemplateScope,
};
use crate::duration::Duration;
use crate::error::SpecError;
use crate::yaml::Source;

/// The `driver:` section: exactly one of `process`, `static`, `hooks`, as
/// a one-key mapping (`static` may also be written alone: `driver: static`).
#[derive(Debug)]
pub enum DriverFile {
    Process(ProcessFile),
    Static(StaticFile),
    Hooks(HooksFile),
}

const KINDS: &[&str] = &["process", "static", "hooks"];

impl<'de> Deserialize<'de> for DriverFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DriverFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("one driver: `process: {...}`, `static: {}` or `hooks: {...}`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DriverFile, E> {
                match v {
                    "static" => Ok(DriverFile::Static(StaticFile::default())),
                    "process" | "hooks" => Err(E::custom(format!(
                        "the `{v}` driver needs settings; write `{v}: {{...}}`"
                    ))),
                    other => Err(E::unknown_variant(other, KINDS)),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DriverFile, A::Error> {
                let Some(kind) = map.next_key::<String>()? else {
                    return Err(A::Error::custom(
                        "no driver chosen; write one of `process: {...}`, `static: {}`, `hooks: {...}`",
                    ));
                };
                let driver = match kind.as_str() {
                    "process" => DriverFile::Process(map.next_value()?),
                    "static" => DriverFile::Static(
                        map.next_value::<Option<StaticFile>>()?.unwrap_or_default(),
                    ),
                    "hooks" => DriverFile::Hooks(map.next_value()?),
                    other => return Err(A::Error::unknown_variant(other, KINDS)),
                };
                if let Some(second) = map.next_key::<String>()? {
                    return Err(A::Error::custom(format!(
                        "a service has one driver; found both `{kind}` and `{second}`"
                    )));
                }
                Ok(driver)
            }
        }
        d.deserialize_any(V)
    }
}

/// `driver.process` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessFile {
    command: Spanned<CommandFile>,
    #[serde(default)]
    replicas: Option<Spanned<NonZeroU32>>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    workdir: Option<Spanned<String>>,
    #[serde(default)]
    ports: Option<Spanned<PortRange>>,
    #[serde(default)]
    stop_timeout: Option<Duration>,
    #[serde(default)]
    start_timeout: Option<Spanned<Duration>>,
    #[serde(default)]
    restart: Option<RestartFile>,
    #[serde(default)]
    log_max_size: Option<Spanned<ByteSize>>,
}

/// `driver.process.restart` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartFile {
    #[serde(default)]
    backoff: Option<Spanned<Duration>>,
    #[serde(default)]
    max_backoff: Option<Spanned<Duration>>,
}

/// `driver.static`: nothing to set; written `static: {}`. `endpoints` is
/// read only to say where endpoints go instead.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticFile {
    #[serde(default)]
    endpoints: Option<Spanned<IgnoredAny>>,
}

/// `driver.hooks` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksFile {
    deploy: Spanned<CommandFile>,
    #[serde(default)]
    scale: Option<Spanned<CommandFile>>,
    teardown: Spanned<CommandFile>,
    #[serde(default)]
    restart: Option<Spanned<CommandFile>>,
    #[serde(default)]
    replicas: Option<NonZeroU32>,
    #[serde(default)]
    timeout: Option<Spanned<Duration>>,
    #[serde(default)]
    retries: Option<Spanned<u32>>,
    #[serde(default)]
    retry_backoff: Option<Duration>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    workdir: Option<Spanned<String>>,
}

/// A command as written: a string (split into words, or run by `sh -c`
/// when it needs a shell) or a list of arguments.
#[derive(Debug, Clone)]
pub enum CommandFile {
    Shell(String),
    Argv(Vec<String>),
}

impl<'de> Deserialize<'de> for CommandFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CommandFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a command: a string, or a list of arguments")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CommandFile, E> {
                Ok(CommandFile::Shell(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<CommandFile, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = seq.next_element::<String>()? {
                    argv.push(arg);
                }
                Ok(CommandFile::Argv(argv))
            }
        }
        d.deserialize_any(V)
    }
}

const MAX_RETRIES: u32 = 100;

impl DriverFile {
    /// Checks what parsed and fills in defaults. `field` is the path of the
    /// section in its document (usually `driver`), for error messages.
    pub fn validate(self, src: &Source, field: &str) -> Result<DriverSpec, SpecError> {
        match self {
            DriverFile::Process(p) => p
                .validate(src, &format!("{field}.process"))
                .map(DriverSpec::Process),
            DriverFile::Static(StaticFile {
                endpoints: Some(e),
            }) => Err(src.error_at(
                e.referenced,
                format!("{field}.static.endpoints"),
                "the static driver takes a version's endpoints from its release, not from the spec",
                Some(format!(
                    "register them with the release: `backout release SERVICE --version V --set {}=http://10.0.0.5:8080,http://10.0.0.6:8080`",
                    StaticSpec::ENDPOINTS_KEY
                )),
            )),
            DriverFile::Static(StaticFile { endpoints: None }) => {
                Ok(DriverSpec::Static(StaticSpec {}))
            }
            DriverFile::Hooks(h) => h
                .validate(src, &format!("{field}.hooks"))
                .map(DriverSpec::Hooks),
        }
    }
}

impl ProcessFile {
    fn validate(self, src: &Source, field: &str) -> Result<ProcessSpec, SpecError> {
        let at = |name: &str| format!("{field}.{name}");
        let command = command(src, self.command, &at("command"), TemplateScope::Replica)?;
        let env = env(src, self.env, &at("env"), TemplateScope::Replica)?;
        let workdir = workdir(src, self.workdir, &at("workdir"))?;
        let replicas = self.replicas.as_ref().map_or(NonZeroU32::MIN, |r| r.value);
        if let Some(ports) = &self.ports
            && ports.value.len() < replicas.get()
        {
            return Err(src.error_at(
                ports.referenced,
                at("ports"),
                format!(
                    "port range {} holds {} port(s) but {replicas} replicas need one each",
                    ports.value,
                    ports.value.len()
                ),
                Some("widen the range; scaling up needs room too".into()),
            ));
        }
        let start_timeout = match self.start_timeout {
            Some(t) if t.value.get().is_zero() => {
                return Err(src.error_at(
                    t.referenced,
                    at("start_timeout"),
                    "must be above zero",
                    Some(
                        "a replica gets this long to accept connections on its port, e.g. `30s`"
                            .into(),
                    ),
                ));
            }
            Some(t) => t.value,
            None => ProcessSpec::DEFAULT_START_TIMEOUT,
        };
        let restart = match self.restart {
            Some(r) => r.validate(src, &at("restart"))?,
            None => RestartSpec::default(),
        };
        let log_max_size = match self.log_max_size {
            Some(s) if s.value.0 < 1024 => {
                return Err(src.error_at(
                    s.referenced,
                    at("log_max_size"),
                    format!("{} is too small to hold a useful log", s.value),
                    Some("use at least `1KiB`; the default is `10MiB`".into()),
                ));
            }
            Some(s) => s.value,
            None => ProcessSpec::DEFAULT_LOG_MAX_SIZE,
        };
        Ok(ProcessSpec {
            command,
            replicas,
            env,
            workdir,
            ports: self.ports.map(|p| p.value),
            stop_timeout: self
                .stop_timeout
                .unwrap_or(ProcessSpec::DEFAULT_STOP_TIMEOUT),
            start_timeout,
            restart,
            log_max_size,
        })
    }
}

impl RestartFile {
    fn validate(self, src: &Source, field: &str) -> Result<RestartSpec, SpecError> {
        let d = RestartSpec::default();
        let backoff = self.backoff.as_ref().map_or(d.backoff, |b| b.value);
        let max_backoff = self.max_backoff.as_ref().map_or(d.max_backoff, |m| m.value);
        if backoff.get().is_zero() {
            let at = self.backoff.map_or(Location::UNKNOWN, |b| b.referenced);
            return Err(src.error_at(
                at,
                format!("{field}.backoff"),
                "must be above zero",
                Some("without a pause, a replica that crashes at start would be restarted in a tight loop".into()),
            ));
        }
        if max_backoff < backoff {
            let at = self
                .max_backoff
                .or(self.backoff)
                .map_or(Location::UNKNOWN, |m| m.referenced);
            return Err(src.error_at(
                at,
                format!("{field}.max_backoff"),
                format!("max_backoff ({max_backoff}) is below backoff ({backoff})"),
                None,
            ));
        }
        Ok(RestartSpec {
            backoff,
            max_backoff,
        })
    }
}

impl HooksFile {
    fn validate(self, src: &Source, field: &str) -> Result<HooksSpec, SpecError> {
        let at = |name: &str| format!("{field}.{name}");
        let scope = TemplateScope::Version;
        let optional = |c: Option<Spanned<CommandFile>>, name: &str| {
            c.map(|c| command(src, c, &at(name), scope)).transpose()
        };
        let timeout = match self.timeout {
            Some(t) if t.value.get().is_zero() => {
                return Err(src.error_at(
                    t.referenced,
                    at("timeout"),
                    "must be above zero",
                    Some("a script that runs longer is killed, e.g. `60s`".into()),
                ));
            }
            Some(t) => t.value,
            None => HooksSpec::DEFAULT_TIMEOUT,
        };
        let retries = match self.retries {
            Some(r) if r.value > MAX_RETRIES => {
                return Err(src.error_at(
                    r.referenced,
                    at("retries"),
                    format!("{} retries is more than the {MAX_RETRIES} allowed", r.value),
                    Some("a script that fails this often needs fixing, not retrying".into()),
                ));
            }
            Some(r) => r.value,
            None => HooksSpec::DEFAULT_RETRIES,
        };
        Ok(HooksSpec {
            deploy: command(src, self.deploy, &at("deploy"), scope)?,
            scale: optional(self.scale, "scale")?,
            teardown: command(src, self.teardown, &at("teardown"), scope)?,
            restart: optional(self.restart, "restart")?,
            replicas: self.replicas.unwrap_or(NonZeroU32::MIN),
            timeout,
            retries,
            retry_backoff: self
                .retry_backoff
                .unwrap_or(HooksSpec::DEFAULT_RETRY_BACKOFF),
            env: env(src, self.env, &at("env"), scope)?,
            workdir: workdir(src, self.workdir, &at("workdir"))?,
        })
    }
}

fn command(
    src: &Source,
    c: Spanned<CommandFile>,
    field: &str,
    scope: TemplateScope,
) -> Result<CommandSpec, SpecError> {
    let hint = "e.g. `./app --port {port}` or `[./app, --port, \"{port}\"]`";
    let error = |f: String, message: String| src.error_at(c.referenced, f, message, None);
    match c.value {
        CommandFile::Shell(text) => {
            if text.trim().is_empty() {
                return Err(src.error_at(
                    c.referenced,
                    field,
                    "the command is empty",
                    Some(hint.into()),
                ));
            }
            CommandSpec::parse(&text, scope).map_err(|e| error(field.to_string(), e))
        }
        CommandFile::Argv(argv) => {
            if argv.first().is_none_or(|a| a.trim().is_empty()) {
                return Err(src.error_at(
                    c.referenced,
                    field,
                    "the command list is empty or starts with an empty program name",
                    Some(hint.into()),
                ));
            }
            argv.iter()
                .enumerate()
                .map(|(i, a)| {
                    Template::parse(a, scope).map_err(|e| error(format!("{field}[{i}]"), e))
                })
                .collect::<Result<_, _>>()
                .map(CommandSpec::Argv)
        }
    }
}

fn env(
    src: &Source,
    env: BTreeMap<String, Spanned<String>>,
    field: &str,
    scope: TemplateScope,
) -> Result<BTreeMap<String, Template>, SpecError> {
    let mut out = BTreeMap::new();
    for (key, value) in env {
        let valid = key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(src.error_at(
                value.referenced,
                format!("{field}.{key}"),
                format!("{key:?} is not an environment variable name"),
                Some(
                    "use letters, digits and `_`, not starting with a digit, e.g. `RUST_LOG`"
                        .into(),
                ),
            ));
        }
        let template = Template::parse(&value.value, scope)
            .map_err(|e| src.error_at(value.referenced, format!("{field}.{key}"), e, None))?;
        out.insert(key, template);
    }
    Ok(out)
}

fn workdir(
    src: &Source,
    dir: Option<Spanned<String>>,
    field: &str,
) -> Result<Option<String>, SpecError> {
    match dir {
        Some(d) if d.value.trim().is_empty() => Err(src.error_at(
            d.referenced,
            field,
            "the working directory is empty",
            Some("leave `workdir` out to use the service file's directory".into()),
        )),
        Some(d) => Ok(Some(d.value)),
        None => Ok(None),
    }
}
