//! Can a reader read what a writer writes? One question asked of two
//! schemas, whichever side is the client, the server, the producer or the
//! consumer: every rule in this file is about data written under one schema
//! and read under the other.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{Change, Direction, Document, DocumentKind, push_pointer};
use crate::Class;

/// How deep schemas are followed; deeper (or cyclic) ones stop there.
const MAX_DEPTH: usize = 32;

/// One side of a flow of data: a schema node in a document.
#[derive(Clone)]
pub(crate) struct Side<'a> {
    pub doc: &'a Document,
    pub node: &'a Value,
    pub pointer: String,
}

impl<'a> Side<'a> {
    pub fn new(doc: &'a Document, node: &'a Value, pointer: String) -> Self {
        Side { doc, node, pointer }.resolved()
    }

    /// Follows local `$ref`s (`#/components/schemas/X`, `#/$defs/X`).
    pub fn resolved(self) -> Self {
        let mut side = self;
        for _ in 0..MAX_DEPTH {
            let Some(r) = side.node.get("$ref").and_then(Value::as_str) else {
                break;
            };
            let Some(target) = r.strip_prefix('#').and_then(|p| side.doc.root.pointer(p)) else {
                break;
            };
            side = Side {
                doc: side.doc,
                node: target,
                pointer: r.trim_start_matches('#').to_string(),
            };
        }
        side
    }

    fn child(&self, node: &'a Value, token: &str) -> Side<'a> {
        Side::new(self.doc, node, push_pointer(&self.pointer, token))
    }

    /// A `$ref` that could not be followed (another file, or a dangling
    /// one).
    fn unresolved_ref(&self) -> Option<&'a str> {
        self.node.get("$ref").and_then(Value::as_str)
    }

    fn types(&self) -> Option<BTreeSet<String>> {
        let mut set: BTreeSet<String> = match self.node.get("type") {
            Some(Value::String(t)) => [t.clone()].into(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => {
                if self.node.get("properties").is_some() {
                    ["object".to_string()].into()
                } else if self.node.get("items").is_some() {
                    ["array".to_string()].into()
                } else {
                    return None;
                }
            }
        };
        if self.doc.kind == DocumentKind::OpenApi30
            && self.node.get("nullable").and_then(Value::as_bool) == Some(true)
        {
            set.insert("null".into());
        }
        Some(set)
    }

    fn enum_values(&self) -> Option<Vec<&'a Value>> {
        if let Some(Value::Array(vs)) = self.node.get("enum") {
            return Some(vs.iter().collect());
        }
        self.node.get("const").map(|c| vec![c])
    }

    fn number(&self, key: &str) -> Option<f64> {
        self.node.get(key).and_then(Value::as_f64)
    }

    /// Properties, required names and whether others are refused, with
    /// `allOf` members merged in.
    fn object(&self) -> ObjectView<'a> {
        let mut view = ObjectView::default();
        self.collect_object(&mut view, 0);
        view
    }

    fn collect_object(&self, view: &mut ObjectView<'a>, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        if let Some(Value::Object(props)) = self.node.get("properties") {
            let at = push_pointer(&self.pointer, "properties");
            for (name, schema) in props {
                view.properties
                    .entry(name.clone())
                    .or_insert_with(|| Side::new(self.doc, schema, push_pointer(&at, name)));
            }
        }
        if let Some(Value::Array(req)) = self.node.get("required") {
            view.required
                .extend(req.iter().filter_map(Value::as_str).map(str::to_string));
        }
        if self.node.get("additionalProperties") == Some(&Value::Bool(false))
            || self.node.get("unevaluatedProperties") == Some(&Value::Bool(false))
        {
            view.closed = true;
        }
        if let Some(Value::Array(members)) = self.node.get("allOf") {
            let at = push_pointer(&self.pointer, "allOf");
            for (i, m) in members.iter().enumerate() {
                Side::new(self.doc, m, push_pointer(&at, &i.to_string()))
                    .collect_object(view, depth + 1);
            }
        }
    }
}

#[derive(Default)]
struct ObjectView<'a> {
    properties: BTreeMap<String, Side<'a>>,
    required: BTreeSet<String>,
    closed: bool,
}

/// A flow of data from a writer to a reader, and how to talk about it.
pub(crate) struct Flow {
    pub direction: Direction,
    /// Who writes and who reads, for messages: "N-1's clients".
    pub writer: &'static str,
    pub reader: &'static str,
    /// Servers (and registries) validate and refuse what they do not
    /// accept; clients and consumers can be tolerant readers.
    pub strict: bool,
    /// Where the data flows: "in the request body of POST /orders".
    pub place: String,
    /// Whether the reader's schema is the new document's.
    pub reader_is_new: bool,
}

/// The verb for `who`: "N-1's server refuses", "N's clients refuse".
fn agree<'s>(who: &str, singular: &'s str, plural: &'s str) -> &'s str {
    if who.ends_with('s') { plural } else { singular }
}

impl Flow {
    /// The pointer into the new document.
    fn at(&self, writer: &Side<'_>, reader: &Side<'_>) -> String {
        if self.reader_is_new {
            reader.pointer.clone()
        } else {
            writer.pointer.clone()
        }
    }

    fn push(&self, out: &mut Vec<Change>, pointer: String, class: Class, message: String) {
        out.push(Change {
            pointer,
            direction: self.direction,
            class,
            message,
        });
    }
}

/// Reports what the reader cannot read of what the writer may write.
pub(crate) fn reads(flow: &Flow, writer: &Side<'_>, reader: &Side<'_>, out: &mut Vec<Change>) {
    let mut seen = BTreeSet::new();
    walk(flow, writer, reader, "", out, &mut seen, 0);
}

fn walk(
    flow: &Flow,
    writer: &Side<'_>,
    reader: &Side<'_>,
    field: &str,
    out: &mut Vec<Change>,
    seen: &mut BTreeSet<(String, String)>,
    depth: usize,
) {
    if depth > MAX_DEPTH || !seen.insert((writer.pointer.clone(), reader.pointer.clone())) {
        return;
    }
    let at = flow.at(writer, reader);
    let what = if field.is_empty() {
        "the value".to_string()
    } else {
        format!("`{field}`")
    };
    let place = &flow.place;
    for side in [writer, reader] {
        if let Some(r) = side.unresolved_ref() {
            flow.push(
                out,
                at.clone(),
                Class::Unsafe,
                format!("not understood: the reference {r} {place} points outside the document or nowhere; check by hand"),
            );
            return;
        }
    }
    // Alternatives: too many ways to be compatible to decide here.
    for key in ["oneOf", "anyOf", "not", "if"] {
        let (w, r) = (writer.node.get(key), reader.node.get(key));
        if (w.is_some() || r.is_some()) && w != r {
            flow.push(
                out,
                at.clone(),
                Class::Unsafe,
                format!(
                    "not understood: {what} {place} uses `{key}`, which changed; check by hand that what {} {} is still read by {}",
                    flow.writer,
                    agree(flow.writer, "writes", "write"),
                    flow.reader
                ),
            );
            return;
        }
    }
    let wt = writer.types();
    let rt = reader.types();
    if let Some(rt) = &rt {
        let accepted = |t: &str| rt.contains(t) || (t == "integer" && rt.contains("number"));
        let refused: Vec<String> = match &wt {
            Some(wt) => wt.iter().filter(|t| !accepted(t)).cloned().collect(),
            None => vec!["any type".to_string()],
        };
        if !refused.is_empty() {
            let message = if refused == ["null"] {
                format!(
                    "{what} {place} may now be null, which {} {} not allow; keep it non-null, or ship readers that accept null a release before writers send it",
                    flow.reader,
                    agree(flow.reader, "does", "do")
                )
            } else {
                format!(
                    "{what} {place} changed type: written as {} by {}, read as {} only by {}; keep the type and add a new field for the new one (additive only)",
                    join(wt.iter().flatten()),
                    flow.writer,
                    join(rt.iter()),
                    flow.reader
                )
            };
            flow.push(out, at.clone(), Class::Unsafe, message);
            if refused.iter().any(|t| t != "null") {
                return;
            }
        }
    }
    if let Some(allowed) = reader.enum_values() {
        let extra: Vec<String> = match writer.enum_values() {
            Some(written) => written
                .into_iter()
                .filter(|v| !allowed.contains(v))
                .map(Value::to_string)
                .collect(),
            None => vec!["values outside the list".to_string()],
        };
        if !extra.is_empty() {
            let (class, advice) = if flow.strict {
                (
                    Class::Unsafe,
                    format!(
                        "{} {} unknown values; add the value to readers a release before writers use it",
                        flow.reader,
                        agree(flow.reader, "refuses", "refuse")
                    ),
                )
            } else {
                (
                    Class::Risky,
                    "only tolerant readers survive it (treat an unknown value as `other`); add the value to readers a release before it is sent".to_string(),
                )
            };
            flow.push(
                out,
                at.clone(),
                class,
                format!(
                    "{what} {place} can be {}, unknown to {}: {advice}",
                    extra.join(", "),
                    flow.reader
                ),
            );
        }
    }
    if flow.strict {
        limits(flow, writer, reader, &what, &at, out);
    }
    let is =
        |t: &Option<BTreeSet<String>>, name: &str| t.as_ref().is_some_and(|s| s.contains(name));
    if is(&wt, "object") || is(&rt, "object") || writer.node.get("allOf").is_some() {
        objects(flow, writer, reader, field, out, seen, depth);
    }
    if let (Some(wi), Some(ri)) = (writer.node.get("items"), reader.node.get("items")) {
        let w = writer.child(wi, "items");
        let r = reader.child(ri, "items");
        let name = if field.is_empty() {
            "[]".to_string()
        } else {
            format!("{field}[]")
        };
        walk(flow, &w, &r, &name, out, seen, depth + 1);
    }
}

/// Bounds a validating reader enforces.
fn limits(
    flow: &Flow,
    writer: &Side<'_>,
    reader: &Side<'_>,
    what: &str,
    at: &str,
    out: &mut Vec<Change>,
) {
    let place = &flow.place;
    // (key, whether a larger reader bound is the looser one)
    for (key, upper) in [
        ("maxLength", true),
        ("maximum", true),
        ("exclusiveMaximum", true),
        ("maxItems", true),
        ("minLength", false),
        ("minimum", false),
        ("exclusiveMinimum", false),
        ("minItems", false),
    ] {
        let Some(r) = reader.number(key) else {
            continue;
        };
        let tighter = match writer.number(key) {
            Some(w) => {
                if upper {
                    r < w
                } else {
                    r > w
                }
            }
            None => true,
        };
        if tighter {
            flow.push(
                out,
                at.to_string(),
                Class::Unsafe,
                format!(
                    "{what} {place} has {key} {r} for {}, tighter than what {} may write; loosen limits first and tighten them only once no writer beyond them can come back",
                    flow.reader, flow.writer
                ),
            );
        }
    }
    let (wp, rp) = (writer.node.get("pattern"), reader.node.get("pattern"));
    if rp.is_some() && wp != rp {
        flow.push(
            out,
            at.to_string(),
            Class::Unsafe,
            format!(
                "{what} {place} must match another pattern for {} than for {}; check by hand that every value written still matches",
                flow.reader, flow.writer
            ),
        );
    }
}

fn objects(
    flow: &Flow,
    writer: &Side<'_>,
    reader: &Side<'_>,
    field: &str,
    out: &mut Vec<Change>,
    seen: &mut BTreeSet<(String, String)>,
    depth: usize,
) {
    let w = writer.object();
    let r = reader.object();
    let place = &flow.place;
    let at = flow.at(writer, reader);
    let full = |name: &str| {
        if field.is_empty() {
            name.to_string()
        } else {
            format!("{field}.{name}")
        }
    };
    for name in r.required.difference(&w.required) {
        let how = if w.properties.contains_key(name) {
            "optional for"
        } else {
            "unknown to"
        };
        flow.push(
            out,
            at.clone(),
            Class::Unsafe,
            format!(
                "`{}` {place} is required by {} but {how} {}; keep it optional (readers use a default when it is missing) until no writer that omits it can come back",
                full(name),
                flow.reader,
                flow.writer
            ),
        );
    }
    if r.closed {
        for name in w
            .properties
            .keys()
            .filter(|n| !r.properties.contains_key(*n))
        {
            flow.push(
                out,
                at.clone(),
                Class::Unsafe,
                format!(
                    "unknown properties {place} are refused by {} (additionalProperties: false), and {} may send `{}`; allow additional properties so that readers tolerate what they do not know",
                    flow.reader,
                    flow.writer,
                    full(name)
                ),
            );
        }
    }
    for (name, ws) in &w.properties {
        if let Some(rs) = r.properties.get(name) {
            walk(flow, ws, rs, &full(name), out, seen, depth + 1);
        }
    }
}

fn join<'a>(types: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = types.map(String::as_str).collect();
    if v.is_empty() {
        "any type".into()
    } else {
        v.join(" or ")
    }
}

/// A JSON Schema for messages: `FULL` compatibility, both directions.
pub(crate) fn check_message(old: &Document, new: &Document, out: &mut Vec<Change>) {
    let o = Side::new(old, &old.root, String::new());
    let n = Side::new(new, &new.root, String::new());
    let backward = Flow {
        direction: Direction::NewConsumersOldMessages,
        writer: "N-1's producers",
        reader: "N's consumers",
        strict: true,
        place: "in the message".into(),
        reader_is_new: true,
    };
    reads(&backward, &o, &n, out);
    let forward = Flow {
        direction: Direction::OldConsumersNewMessages,
        writer: "N's producers",
        reader: "N-1's consumers",
        strict: true,
        place: "in the message".into(),
        reader_is_new: false,
    };
    reads(&forward, &n, &o, out);
}
