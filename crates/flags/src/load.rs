//! Loading a flagd flag-definition document (JSON, or YAML of the same
//! shape) into a [`FlagSet`].
//!
//! A broken flag never takes the others down: each flag is checked on its
//! own, and a flag that fails becomes a [`Problem`] (flag key, JSON pointer
//! to the offending spot, what is wrong and what to do) while every good flag
//! still loads. Only a document that cannot be read at all fails as a whole.

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use crate::context::type_name;
use crate::flag::{Entry, Flag, FlagSet, State};
use crate::rule::{self, escape_pointer};

/// The two spellings of a flag document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    /// Picks the format from a file name: `.yaml`/`.yml` is YAML, anything
    /// else JSON.
    pub fn from_path(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Format::Yaml,
            _ => Format::Json,
        }
    }
}

/// A document that cannot be loaded at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("{line}:{column}: not valid JSON: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("not valid YAML: {0}")]
    Yaml(String),
    #[error("{path}: {message}")]
    Shape { path: String, message: String },
}

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The flag did not load; evaluating it reports this problem.
    Error,
    /// The flag loaded, but something about it will misbehave.
    Warning,
}

/// Something wrong with one flag (or the set's metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// The flag's key, or `None` for the document level.
    pub flag: Option<String>,
    /// A JSON pointer (RFC 6901) to the offending value.
    pub path: String,
    pub message: String,
    /// Where the offending value starts in the text (1-based line and
    /// column), when the document was loaded from JSON text.
    pub position: Option<(usize, usize)>,
    /// backout refuses this although flagd's reference evaluator would
    /// evaluate it (variants of mixed types, a negative or fractional
    /// weight in a `fractional` split): there it quietly serves something
    /// nobody meant. A deliberate difference; the agreement test with the
    /// reference leaves such flags out.
    pub stricter_than_flagd: bool,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if let Some((line, column)) = self.position {
            write!(f, "{line}:{column}: ")?;
        }
        match &self.flag {
            Some(flag) => write!(
                f,
                "{level}: flag `{flag}` at {}: {}",
                self.path, self.message
            ),
            None => write!(f, "{level}: at {}: {}", self.path, self.message),
        }
    }
}

/// A loaded set and what was wrong with it.
#[derive(Debug)]
pub struct Loaded {
    pub flags: FlagSet,
    pub problems: Vec<Problem>,
}

impl Loaded {
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }
}

/// Parses document text into JSON.
pub fn parse(text: &str, format: Format) -> Result<Json, DocumentError> {
    match format {
        Format::Json => serde_json::from_str(text).map_err(|e| DocumentError::Json {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }),
        Format::Yaml => {
            serde_saphyr::from_str(text).map_err(|e| DocumentError::Yaml(e.to_string()))
        }
    }
}

/// Parses and loads document text; problems in JSON text carry their
/// line and column.
pub fn load_str(text: &str, format: Format) -> Result<Loaded, DocumentError> {
    let mut loaded = load(&parse(text, format)?)?;
    locate_problems(text, format, &mut loaded.problems);
    Ok(loaded)
}

/// Fills in where each problem is in the document text (JSON only).
pub fn locate_problems(text: &str, format: Format, problems: &mut [Problem]) {
    if format == Format::Json {
        for problem in problems {
            problem.position = crate::locate::locate(text, &problem.path);
        }
    }
}

/// The flag fields flagd defines.
const FLAG_FIELDS: &[&str] = &[
    "state",
    "variants",
    "defaultVariant",
    "targeting",
    "metadata",
];

/// Loads a parsed document.
pub fn load(doc: &Json) -> Result<Loaded, DocumentError> {
    let Json::Object(root) = doc else {
        return Err(DocumentError::Shape {
            path: "/".into(),
            message: format!(
                "a flag document is an object with a `flags` member, not {}",
                type_name(doc)
            ),
        });
    };
    let flags = match root.get("flags") {
        // An empty set would answer every flag with FLAG_NOT_FOUND; a file
        // that lost its flags (a bad merge, a truncated write by hand) must
        // not replace the last good set.
        None | Some(Json::Null) => {
            return Err(DocumentError::Shape {
                path: "/flags".into(),
                message: "the document has no `flags`; a flag document is `{\"flags\": {KEY: FLAG, ...}}` (an empty set is written `{\"flags\": {}}`)".into(),
            });
        }
        Some(Json::Object(flags)) => flags,
        Some(other) => {
            return Err(DocumentError::Shape {
                path: "/flags".into(),
                message: format!(
                    "`flags` must be an object of flag key to flag, not {}",
                    type_name(other)
                ),
            });
        }
    };
    let mut problems = Vec::new();
    let set_metadata = match root.get("metadata") {
        None | Some(Json::Null) => Map::new(),
        Some(m) => check_metadata(m, "/metadata", None, &mut problems),
    };
    let evaluators = match root.get("$evaluators") {
        None | Some(Json::Null) => Map::new(),
        Some(Json::Object(e)) => e.clone(),
        Some(other) => {
            problems.push(Problem {
                severity: Severity::Error,
                position: None,
                flag: None,
                path: "/$evaluators".into(),
                message: format!(
                    "`$evaluators` must be an object of name to rule, not {}",
                    type_name(other)
                ),
                stricter_than_flagd: false,
            });
            Map::new()
        }
    };

    let mut entries = HashMap::with_capacity(flags.len());
    for (key, raw) in flags {
        let path = format!("/flags/{}", escape_pointer(key));
        let entry = match load_flag(key, raw, &path, &evaluators, &set_metadata, &mut problems) {
            Ok(flag) => Entry::Ready(flag),
            Err(problem) => {
                let message = format!("{} (at {})", problem.message, problem.path);
                problems.push(problem);
                Entry::Broken {
                    message,
                    metadata: set_metadata.clone(),
                }
            }
        };
        entries.insert(key.clone(), entry);
    }
    Ok(Loaded {
        flags: FlagSet::new(entries, set_metadata),
        problems,
    })
}

fn load_flag(
    key: &str,
    raw: &Json,
    path: &str,
    evaluators: &Map<String, Json>,
    set_metadata: &Map<String, Json>,
    problems: &mut Vec<Problem>,
) -> Result<Flag, Problem> {
    let fail = |at: String, message: String| Problem {
        severity: Severity::Error,
        position: None,
        flag: Some(key.to_owned()),
        path: at,
        message,
        stricter_than_flagd: false,
    };
    let Json::Object(fields) = raw else {
        return Err(fail(
            path.to_owned(),
            format!(
                "a flag is an object with `state`, `variants` and `defaultVariant`, not {}",
                type_name(raw)
            ),
        ));
    };
    for name in fields.keys() {
        if !FLAG_FIELDS.contains(&name.as_str()) {
            return Err(fail(
                format!("{path}/{}", escape_pointer(name)),
                format!(
                    "unknown field `{name}`; a flag has only {}",
                    FLAG_FIELDS.join(", ")
                ),
            ));
        }
    }
    let state = match fields.get("state") {
        Some(Json::String(s)) if s == "ENABLED" => State::Enabled,
        Some(Json::String(s)) if s == "DISABLED" => State::Disabled,
        Some(other) => {
            return Err(fail(
                format!("{path}/state"),
                format!("`state` must be \"ENABLED\" or \"DISABLED\", not {other}"),
            ));
        }
        None => {
            return Err(fail(
                path.to_owned(),
                "missing `state`; add \"state\": \"ENABLED\" or \"DISABLED\"".into(),
            ));
        }
    };
    let variants: Vec<(String, Json)> = match fields.get("variants") {
        Some(Json::Object(v)) if !v.is_empty() => v
            .iter()
            .map(|(name, value)| (name.clone(), resolve_refs(value, evaluators, 0)))
            .collect(),
        Some(Json::Object(_)) => {
            return Err(fail(
                format!("{path}/variants"),
                "`variants` is empty; name at least one variant and its value".into(),
            ));
        }
        Some(other) => {
            return Err(fail(
                format!("{path}/variants"),
                format!(
                    "`variants` must be an object of variant name to value, not {}",
                    type_name(other)
                ),
            ));
        }
        None => {
            return Err(fail(
                path.to_owned(),
                "missing `variants`; add e.g. \"variants\": {\"on\": true, \"off\": false}".into(),
            ));
        }
    };
    check_variant_types(&variants, path).map_err(|(at, message)| Problem {
        stricter_than_flagd: true,
        ..fail(at, message)
    })?;
    let default_variant = match fields.get("defaultVariant") {
        None => None,
        Some(Json::String(s)) if s.is_empty() => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(Json::Bool(b)) => Some(b.to_string()),
        // The reference treats every other "falsy" value as "no default".
        Some(v) if !truthy_json(v) => None,
        Some(other) => {
            return Err(fail(
                format!("{path}/defaultVariant"),
                format!("`defaultVariant` must name a variant (a string) or be null, not {other}"),
            ));
        }
    };
    if let Some(name) = &default_variant
        && !variants.iter().any(|(k, _)| k == name)
    {
        let names: Vec<String> = variants.iter().map(|(k, _)| format!("`{k}`")).collect();
        problems.push(Problem {
            severity: Severity::Warning,
            position: None,
            flag: Some(key.to_owned()),
            path: format!("{path}/defaultVariant"),
            message: format!(
                "default variant `{name}` is not one of the variants ({}); \
                 evaluations that fall back to it will fail",
                names.join(", ")
            ),
            stricter_than_flagd: false,
        });
    }
    let targeting = match fields.get("targeting") {
        Some(t) if !truthy_json(t) => None,
        Some(t @ Json::Object(_)) => {
            let resolved = resolve_refs(t, evaluators, 0);
            let compiled =
                rule::compile(&resolved, &format!("{path}/targeting")).map_err(|e| Problem {
                    stricter_than_flagd: e.stricter_than_flagd,
                    ..fail(e.path, e.message)
                })?;
            Some(compiled)
        }
        Some(other) => {
            return Err(fail(
                format!("{path}/targeting"),
                format!(
                    "`targeting` must be a JsonLogic rule (an object), not {}",
                    type_name(other)
                ),
            ));
        }
        None => None,
    };
    let mut metadata = set_metadata.clone();
    if let Some(m) = fields.get("metadata").filter(|m| !m.is_null()) {
        let mut own = Vec::new();
        let checked = check_metadata(m, &format!("{path}/metadata"), Some(key), &mut own);
        if let Some(first) = own.into_iter().next() {
            return Err(first);
        }
        metadata.extend(checked);
    }
    Ok(Flag {
        key: key.to_owned(),
        state,
        variants,
        default_variant,
        targeting,
        metadata,
    })
}

/// A flag's variants all have one type, as in flagd's schema (boolean,
/// string, number or object flags); the reference evaluator does not
/// check, and a flag whose `on` is `true` and `off` is `"false"` answers
/// each caller with a type mismatch half the time. Integers and floats
/// are both numbers; arrays count as objects (OpenFeature structures).
fn check_variant_types(variants: &[(String, Json)], path: &str) -> Result<(), (String, String)> {
    let kind = |v: &Json| match v {
        Json::Bool(_) => "a boolean",
        Json::String(_) => "a string",
        Json::Number(_) => "a number",
        Json::Array(_) | Json::Object(_) => "an object",
        Json::Null => "null",
    };
    let Some((first, first_value)) = variants.first() else {
        return Ok(());
    };
    for (name, value) in &variants[1..] {
        if kind(value) != kind(first_value) {
            return Err((
                format!("{path}/variants/{}", escape_pointer(name)),
                format!(
                    "variant `{name}` is {} but `{first}` is {}; all variants of a flag have one type (boolean, string, number or object)",
                    kind(value),
                    kind(first_value)
                ),
            ));
        }
    }
    Ok(())
}

/// Python's truthiness of a JSON value, which decides whether a
/// `targeting` or `defaultVariant` counts as present in the reference.
fn truthy_json(v: &Json) -> bool {
    match v {
        Json::Null => false,
        Json::Bool(b) => *b,
        Json::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Json::String(s) => !s.is_empty(),
        Json::Array(a) => !a.is_empty(),
        Json::Object(o) => !o.is_empty(),
    }
}

/// Metadata values are strings, numbers or booleans, under non-empty keys.
fn check_metadata(
    m: &Json,
    path: &str,
    flag: Option<&str>,
    problems: &mut Vec<Problem>,
) -> Map<String, Json> {
    let problem = |at: String, message: String| Problem {
        severity: Severity::Error,
        position: None,
        flag: flag.map(str::to_owned),
        path: at,
        message,
        stricter_than_flagd: false,
    };
    let Json::Object(map) = m else {
        problems.push(problem(
            path.to_owned(),
            format!("`metadata` must be an object, not {}", type_name(m)),
        ));
        return Map::new();
    };
    let mut out = Map::new();
    for (k, v) in map {
        if k.is_empty() {
            problems.push(problem(
                format!("{path}/"),
                "metadata keys must not be empty".into(),
            ));
        } else if matches!(v, Json::String(_) | Json::Number(_) | Json::Bool(_)) {
            out.insert(k.clone(), v.clone());
        } else {
            problems.push(problem(
                format!("{path}/{}", escape_pointer(k)),
                format!(
                    "metadata `{k}` must be a string, number or boolean, not {}",
                    type_name(v)
                ),
            ));
        }
    }
    out
}

/// Replaces every `{"$ref": "name"}` naming a shared evaluator with that
/// evaluator's rule (which may itself use `$ref`). Unknown names are left in
/// place, for the rule compiler to report where they are.
fn resolve_refs(json: &Json, evaluators: &Map<String, Json>, depth: usize) -> Json {
    if evaluators.is_empty() || depth > 32 {
        return json.clone();
    }
    match json {
        Json::Object(map) => {
            if map.len() == 1
                && let Some(Json::String(name)) = map.get("$ref")
                && let Some(rule) = evaluators.get(name)
            {
                return resolve_refs(rule, evaluators, depth + 1);
            }
            Json::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), resolve_refs(v, evaluators, depth)))
                    .collect(),
            )
        }
        Json::Array(items) => Json::Array(
            items
                .iter()
                .map(|v| resolve_refs(v, evaluators, depth))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests;
