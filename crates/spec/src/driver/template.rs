//! Command templates: `./app --port {port} --version {version}`.
//!
//! Placeholders are checked when the spec is read, so a typo such as
//! `{prot}` is a spec error with a location rather than a process that
//! starts with a literal `{prot}` in its arguments. Only what is known per
//! release (`{config.KEY}`, `{artifact}`) can still be missing at deploy
//! time, and rendering says which.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

/// A value that can stand in a template.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Var {
    /// The port the driver picked for this replica.
    Port,
    /// The version being deployed.
    Version,
    /// The replica index, from 0.
    Replica,
    /// The service name.
    Service,
    /// The release's artifact reference (`backout release --artifact`).
    Artifact,
    /// A release setting (`backout release --set KEY=VALUE`).
    Config(String),
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::Port => f.write_str("{port}"),
            Var::Version => f.write_str("{version}"),
            Var::Replica => f.write_str("{replica}"),
            Var::Service => f.write_str("{service}"),
            Var::Artifact => f.write_str("{artifact}"),
            Var::Config(key) => write!(f, "{{config.{key}}}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Part {
    Text(String),
    Var(Var),
}

/// A parsed template. Rendering cannot fail on the placeholders themselves,
/// only on release values that are missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

/// Where a template is used decides which placeholders make sense: hooks
/// have no port or replica of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateScope {
    /// A process replica: every placeholder.
    Replica,
    /// A hook script run once per version: no `{port}` or `{replica}`.
    Version,
}

/// The values a template is rendered with.
#[derive(Clone, Copy, Debug)]
pub struct TemplateVars<'a> {
    pub service: &'a str,
    pub version: &'a str,
    /// `None` where the scope has no replica (hooks).
    pub replica: Option<u32>,
    pub port: Option<u16>,
    pub artifact: Option<&'a str>,
    pub config: &'a BTreeMap<String, String>,
}

/// A release value a template needs but the release does not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(
        "`{{config.{0}}}` is used but the release sets no `{0}`; register the release with `--set {0}=VALUE`"
    )]
    MissingConfig(String),
    #[error(
        "`{{artifact}}` is used but the release has no artifact; register the release with `--artifact REF`"
    )]
    MissingArtifact,
    #[error("`{0}` has no value here")]
    Unavailable(Var),
}

impl Template {
    /// Parses `text`. `{name}` is a placeholder; `{{` and `}}` are literal
    /// braces. So that shell commands need no escaping, `${NAME}` (a shell
    /// variable) and braces around anything that is not a plain name (as in
    /// `awk '{print $1}'`) are left as written.
    pub fn parse(text: &str, scope: TemplateScope) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                literal.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') || literal.ends_with('$') {
                literal.push_str(&tail[..1]);
                rest = &tail[1..];
                continue;
            }
            let close = tail.find('}');
            let name = close.map(|c| &tail[1..c]);
            match name {
                Some(name) if is_name(name) => {
                    let var = var(name, scope)?;
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Var(var));
                    rest = &tail[name.len() + 2..];
                }
                _ => {
                    literal.push('{');
                    rest = &tail[1..];
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template {
            source: text.to_string(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The literal text and placeholders in order (literal braces already
    /// unescaped).
    pub(super) fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The placeholders the template uses, in order.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v),
            Part::Text(_) => None,
        })
    }

    /// Whether the template uses `var`.
    pub fn uses(&self, var: &Var) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Var(v) if v == var))
    }

    /// Fills in the placeholders. Values are inserted as they are: the
    /// result is one argument or one environment value, never shell text
    /// (a command string that needs a shell goes through
    /// [`ShellScript`](super::shell::ShellScript), which passes values as
    /// positional parameters instead).
    pub fn render(&self, vars: &TemplateVars<'_>) -> Result<String, RenderError> {
        let mut out = String::with_capacity(self.source.len());
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => out.push_str(&v.value(vars)?),
            }
        }
        Ok(out)
    }
}

impl Var {
    /// Whether a release chooses this value (`backout release --version`,
    /// `--artifact`, `--set`), as opposed to the spec or the driver. Such
    /// values are data from whoever holds an operator token.
    pub fn release_controlled(&self) -> bool {
        matches!(self, Var::Version | Var::Artifact | Var::Config(_))
    }

    /// The value this placeholder stands for.
    pub(super) fn value<'a>(
        &self,
        vars: &TemplateVars<'a>,
    ) -> Result<std::borrow::Cow<'a, str>, RenderError> {
        use std::borrow::Cow;
        Ok(match self {
            Var::Port => match vars.port {
                Some(p) => Cow::Owned(p.to_string()),
                None => return Err(RenderError::Unavailable(self.clone())),
            },
            Var::Replica => match vars.replica {
                Some(r) => Cow::Owned(r.to_string()),
                None => return Err(RenderError::Unavailable(self.clone())),
            },
            Var::Version => Cow::Borrowed(vars.version),
            Var::Service => Cow::Borrowed(vars.service),
            Var::Artifact => match vars.artifact {
                Some(a) => Cow::Borrowed(a),
                None => return Err(RenderError::MissingArtifact),
            },
            Var::Config(key) => match vars.config.get(key) {
                Some(value) => Cow::Borrowed(value.as_str()),
                None => return Err(RenderError::MissingConfig(key.clone())),
            },
        })
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// A plain name: what a placeholder can be, as opposed to code in braces.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn var(name: &str, scope: TemplateScope) -> Result<Var, String> {
    let known = match scope {
        TemplateScope::Replica => {
            "{port}, {version}, {replica}, {service}, {artifact}, {config.KEY}"
        }
        TemplateScope::Version => "{version}, {service}, {artifact}, {config.KEY}",
    };
    let v = match name {
        "port" => Var::Port,
        "version" => Var::Version,
        "replica" => Var::Replica,
        "service" => Var::Service,
        "artifact" => Var::Artifact,
        _ => match name.strip_prefix("config.") {
            Some(key) if !key.is_empty() => Var::Config(key.to_string()),
            _ => {
                return Err(format!(
                    "unknown placeholder `{{{name}}}`; known: {known} (write `{{{{` and `}}}}` for literal braces)"
                ));
            }
        },
    };
    if scope == TemplateScope::Version && matches!(v, Var::Port | Var::Replica) {
        return Err(format!(
            "`{v}` is not available to hooks, which run once per version and choose their own ports; known: {known}"
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<&str, &str>) {
        let mut config = BTreeMap::new();
        config.insert("db".to_string(), "postgres://db".to_string());
        let vars = TemplateVars {
            service: "web",
            version: "v2",
            replica: Some(1),
            port: Some(20001),
            artifact: None,
            config: &config,
        };
        let got = Template::parse(text, TemplateScope::Replica)
            .and_then(|t| t.render(&vars).map_err(|e| e.to_string()));
        match (got, expected) {
            (Ok(out), Ok(want)) => assert_eq!(out, want, "{text}"),
            (Err(e), Err(fragment)) => assert!(e.contains(fragment), "{text}: {e}"),
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn templates() {
        check("./app", Ok("./app"));
        check("--port {port}", Ok("--port 20001"));
        check("{service}-{version}-{replica}:{port}", Ok("web-v2-1:20001"));
        check("--db={config.db}", Ok("--db=postgres://db"));
        check("{{port}}", Ok("{port}"));
        check("a}b{", Ok("a}b{"));
        check("echo ${HOME} $PORT", Ok("echo ${HOME} $PORT"));
        check("awk '{print $1}'", Ok("awk '{print $1}'"));
        check("{}", Ok("{}"));
        check("{prot}", Err("unknown placeholder `{prot}`"));
        check("{config.}", Err("unknown placeholder"));
        check("{config.nope}", Err("release sets no `nope`"));
        check("{artifact}", Err("has no artifact"));
    }

    #[test]
    fn hooks_have_no_port() {
        let e = Template::parse("x {port}", TemplateScope::Version).unwrap_err();
        assert!(e.contains("not available to hooks"), "{e}");
        assert!(Template::parse("x {version}", TemplateScope::Version).is_ok());
    }

    #[test]
    fn uses() {
        let t = Template::parse("--port {port}", TemplateScope::Replica).unwrap();
        assert!(t.uses(&Var::Port));
        assert!(!t.uses(&Var::Version));
    }
}
