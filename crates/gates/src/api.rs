//! API contracts: OpenAPI 3.0/3.1 documents and JSON Schemas (messages),
//! compared in both directions a rollback window needs.
//!
//! While a release is rolled out, and after it is rolled back, both
//! versions talk to each other: N's clients reach N-1's server (after a
//! rollback of the server) and N-1's clients reach N's server (while the
//! clients lag). A change is safe only if it works both ways. For message
//! schemas the two directions are N's consumers reading N-1's messages and
//! N-1's consumers reading N's (a schema registry's `FULL`).
//!
//! Documents are parsed as JSON or YAML into `serde_json` values, which
//! keep every JSON pointer; `$ref`s inside a document are followed. The
//! rules are in `schema.rs` (can a reader read what a writer writes?) and
//! `openapi.rs` (operations, parameters, bodies, responses).

mod openapi;
mod schema;
#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Class, Verdict};

/// Who breaks whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// N's clients against N-1's server: after the server is rolled back.
    NewClientsOldServer,
    /// N-1's clients against N's server: clients that have not moved yet.
    OldClientsNewServer,
    /// N's consumers reading messages N-1 wrote (backward compatibility).
    NewConsumersOldMessages,
    /// N-1's consumers reading messages N writes (forward compatibility).
    OldConsumersNewMessages,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::NewClientsOldServer => "new_clients_old_server",
            Direction::OldClientsNewServer => "old_clients_new_server",
            Direction::NewConsumersOldMessages => "new_consumers_old_messages",
            Direction::OldConsumersNewMessages => "old_consumers_new_messages",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One breaking (or tolerable) change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Change {
    /// Where, as a JSON pointer into the new document (into the old one for
    /// what the new one removed; the message says so).
    pub pointer: String,
    pub direction: Direction,
    pub class: Class,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiReport {
    pub verdict: Verdict,
    pub changes: Vec<Change>,
}

/// What a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    OpenApi30,
    OpenApi31,
    JsonSchema,
}

/// A parsed contract.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub name: String,
    pub kind: DocumentKind,
    pub root: Value,
}

/// A document that could not be read, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}:{line}:{column}: {message}")]
pub struct DocumentError {
    pub name: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl Document {
    /// Parses JSON or YAML text and says what kind of contract it is.
    pub fn parse(name: &str, text: &str) -> Result<Document, DocumentError> {
        let err = |line: u64, column: u64, message: String| DocumentError {
            name: name.to_string(),
            line,
            column,
            message,
        };
        let root: Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| {
                err(
                    e.line() as u64,
                    e.column() as u64,
                    format!("this is not valid JSON ({e}); fix it and run the check again"),
                )
            })?
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                let (line, column) = e
                    .location()
                    .filter(|l| l.line() > 0)
                    .map_or((1, 1), |l| (l.line(), l.column()));
                let message = e.without_snippet().to_string();
                let message = match message.rfind(" at line ") {
                    Some(i) => message[..i].to_string(),
                    None => message,
                };
                err(
                    line,
                    column,
                    format!("this is not valid YAML ({message}); fix it and run the check again"),
                )
            })?
        };
        let Some(obj) = root.as_object() else {
            return Err(err(
                1,
                1,
                "the document is not an object: expected an OpenAPI document or a JSON Schema"
                    .into(),
            ));
        };
        let kind = match obj.get("openapi").and_then(Value::as_str) {
            Some(v) if v.starts_with("3.0") => DocumentKind::OpenApi30,
            Some(v) if v.starts_with("3.1") => DocumentKind::OpenApi31,
            Some(v) => {
                return Err(err(
                    1,
                    1,
                    format!(
                        "OpenAPI {v} is not supported: convert the document to OpenAPI 3.0 or 3.1"
                    ),
                ));
            }
            None if obj.contains_key("swagger") => {
                return Err(err(
                    1,
                    1,
                    "Swagger 2.0 is not supported: convert the document to OpenAPI 3.0 or 3.1"
                        .into(),
                ));
            }
            None if obj.contains_key("paths") => {
                return Err(err(
                    1,
                    1,
                    "the document has `paths` but no `openapi` version: add `openapi: 3.1.0` (or 3.0.x)".into(),
                ));
            }
            None => DocumentKind::JsonSchema,
        };
        Ok(Document {
            name: name.to_string(),
            kind,
            root,
        })
    }
}

/// Compares the contract of release N-1 (`old`) with release N's (`new`).
pub fn check(old: &Document, new: &Document) -> ApiReport {
    let mut changes = Vec::new();
    let is_api = |d: &Document| d.kind != DocumentKind::JsonSchema;
    if is_api(old) != is_api(new) {
        changes.push(Change {
            pointer: String::new(),
            direction: Direction::OldClientsNewServer,
            class: Class::Unsafe,
            message: format!(
                "{} is {} but {} is {}: compare an OpenAPI document with an OpenAPI document, or a JSON Schema with a JSON Schema",
                old.name,
                describe(old.kind),
                new.name,
                describe(new.kind)
            ),
        });
    } else if is_api(new) {
        openapi::check(old, new, &mut changes);
    } else {
        schema::check_message(old, new, &mut changes);
    }
    changes.sort();
    changes.dedup();
    ApiReport {
        verdict: Verdict::of(changes.iter().map(|c| c.class)),
        changes,
    }
}

fn describe(kind: DocumentKind) -> &'static str {
    match kind {
        DocumentKind::OpenApi30 => "an OpenAPI 3.0 document",
        DocumentKind::OpenApi31 => "an OpenAPI 3.1 document",
        DocumentKind::JsonSchema => "a JSON Schema",
    }
}

/// Appends one reference token to a JSON pointer.
pub(crate) fn push_pointer(pointer: &str, token: &str) -> String {
    format!("{pointer}/{}", token.replace('~', "~0").replace('/', "~1"))
}
