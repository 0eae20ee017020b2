//! Parsing YAML into spec types with file:line:col and field paths on error.

use serde::de::DeserializeOwned;
use serde_saphyr::Location;

use crate::error::SpecError;

/// A spec document and the name it is reported under (usually its path).
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }

    /// An error about a value that parsed but makes no sense, at the place
    /// the value was written (from a `Spanned` field).
    pub fn error_at(
        &self,
        at: Location,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> SpecError {
        let (line, column) = if at.line() == 0 {
            (1, 1)
        } else {
            (at.line() as usize, at.column() as usize)
        };
        SpecError::new(
            &self.name,
            &self.text,
            (line, column),
            field.into(),
            message.into(),
            hint,
        )
    }
}

/// Deserialises `source` into `T`. Errors carry the location and the path of
/// the field being read, so "invalid u64" becomes
/// `web.yaml:5:14: pools.v1.bulkhead.max_concurrent: invalid u64`.
pub fn parse_yaml<T: DeserializeOwned>(source: &Source) -> Result<T, SpecError> {
    let mut path = String::new();
    let result = serde_saphyr::with_deserializer_from_str(&source.text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let (line, column) = e
            .location()
            .filter(|l| l.line() > 0)
            .map_or((1, 1), |l| (l.line() as usize, l.column() as usize));
        let message = own_words(&strip_location_suffix(&e.without_snippet().to_string()));
        SpecError::new(
            &source.name,
            &source.text,
            (line, column),
            clean_path(&path),
            message,
            None,
        )
    })
}

/// serde-saphyr appends " at line X, column Y" to messages; we report the
/// location ourselves.
fn strip_location_suffix(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(", column ") => message[..i].to_string(),
        _ => message.to_string(),
    }
}

/// The YAML library's advice is about its own options, which a user
/// cannot set; say what to do in the file instead.
fn own_words(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        return format!("`{key}` is written twice in the same mapping; keep one of them");
    }
    message.to_string()
}

/// `.` (or `?`) means the document root; `Spanned` values add `.value`
/// segments that are an implementation detail, not fields the user wrote
/// (no spec field is called `value`).
fn clean_path(path: &str) -> String {
    let path = path.replace(".value.", ".").replace(".value[", "[");
    let path = path.strip_suffix(".value").unwrap_or(&path);
    // `?` stands for a map key that was not read yet (a duplicate one).
    let path = path.strip_suffix(".?").unwrap_or(path);
    if path == "." || path == "?" {
        String::new()
    } else {
        path.to_string()
    }
}
