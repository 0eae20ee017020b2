//! OpenAPI operations: what each version's clients send and expect, checked
//! against the other version's server.

use std::collections::BTreeMap;

use serde_json::Value;

use super::schema::{Flow, Side, reads};
use super::{Change, Direction, Document, push_pointer};
use crate::Class;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// An operation found in a document.
struct Operation<'a> {
    method: &'static str,
    /// The path as written (`/orders/{id}`).
    path: String,
    pointer: String,
    node: &'a Value,
    /// Path-level parameters, which apply to every operation of the path.
    shared: Option<(&'a Value, String)>,
}

/// Operations keyed by method and path with parameter names erased, so
/// `/orders/{id}` matches `/orders/{orderId}`.
fn operations(doc: &Document) -> BTreeMap<(String, &'static str), Operation<'_>> {
    let mut out = BTreeMap::new();
    let Some(Value::Object(paths)) = doc.root.get("paths") else {
        return out;
    };
    for (path, item) in paths {
        let item_ptr = push_pointer("/paths", path);
        let (item, item_ptr) = {
            let s = Side::new(doc, item, item_ptr);
            (s.node, s.pointer)
        };
        let shared = item
            .get("parameters")
            .map(|p| (p, push_pointer(&item_ptr, "parameters")));
        for &method in METHODS {
            if let Some(node) = item.get(method) {
                out.insert(
                    (template(path), method),
                    Operation {
                        method,
                        path: path.clone(),
                        pointer: push_pointer(&item_ptr, method),
                        node,
                        shared: shared.clone(),
                    },
                );
            }
        }
    }
    out
}

fn template(path: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in path.chars() {
        match c {
            '{' => {
                inside = true;
                out.push('{');
            }
            '}' => {
                inside = false;
                out.push('}');
            }
            _ if inside => {}
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn check(old: &Document, new: &Document, out: &mut Vec<Change>) {
    let old_ops = operations(old);
    let new_ops = operations(new);
    for (key, o) in &old_ops {
        let label = format!("{} {}", o.method.to_uppercase(), o.path);
        match new_ops.get(key) {
            None => out.push(Change {
                pointer: o.pointer.clone(),
                direction: Direction::OldClientsNewServer,
                class: Class::Unsafe,
                message: format!(
                    "{label} is gone from N (pointer into the old document): N-1's clients still call it and get an error from N's server; keep it, marked deprecated, until no client of N-1 is left"
                ),
            }),
            Some(n) => operation(old, new, o, n, &label, out),
        }
    }
    for (key, n) in &new_ops {
        if !old_ops.contains_key(key) {
            let label = format!("{} {}", n.method.to_uppercase(), n.path);
            out.push(Change {
                pointer: n.pointer.clone(),
                direction: Direction::NewClientsOldServer,
                class: Class::Risky,
                message: format!(
                    "{label} is new: N's clients that call it get an error from N-1's server after a rollback; make them tolerate its absence (behind a flag), or ship the server a release before the clients use it"
                ),
            });
        }
    }
}

/// The flows of one operation: requests go from clients to the server,
/// responses from the server to clients, in both version pairings.
fn request_flows(label: &str) -> [Flow; 2] {
    [
        Flow {
            direction: Direction::OldClientsNewServer,
            writer: "N-1's clients",
            reader: "N's server",
            strict: true,
            place: format!("in the request of {label}"),
            reader_is_new: true,
        },
        Flow {
            direction: Direction::NewClientsOldServer,
            writer: "N's clients",
            reader: "N-1's server",
            strict: true,
            place: format!("in the request of {label}"),
            reader_is_new: false,
        },
    ]
}

fn response_flows(label: &str, status: &str) -> [Flow; 2] {
    [
        Flow {
            direction: Direction::OldClientsNewServer,
            writer: "N's server",
            reader: "N-1's clients",
            strict: false,
            place: format!("in the {status} response of {label}"),
            reader_is_new: false,
        },
        Flow {
            direction: Direction::NewClientsOldServer,
            writer: "N-1's server",
            reader: "N's clients",
            strict: false,
            place: format!("in the {status} response of {label}"),
            reader_is_new: true,
        },
    ]
}

/// Parameters by (location, name), with path-level ones under the
/// operation's own.
fn parameters<'a>(doc: &'a Document, op: &Operation<'a>) -> BTreeMap<(String, String), Side<'a>> {
    let mut out = BTreeMap::new();
    let lists = [
        op.shared.clone(),
        op.node
            .get("parameters")
            .map(|p| (p, push_pointer(&op.pointer, "parameters"))),
    ];
    for (list, ptr) in lists.into_iter().flatten() {
        let Some(items) = list.as_array() else {
            continue;
        };
        for (i, p) in items.iter().enumerate() {
            let side = Side::new(doc, p, push_pointer(&ptr, &i.to_string()));
            let (Some(name), Some(loc)) = (
                side.node.get("name").and_then(Value::as_str),
                side.node.get("in").and_then(Value::as_str),
            ) else {
                continue;
            };
            // Header names are case-insensitive, and a path parameter is
            // known by its place in the path: clients never send its name.
            let name = match loc {
                "header" => name.to_lowercase(),
                "path" => {
                    let var = format!("{{{name}}}");
                    let place = op
                        .path
                        .split('/')
                        .filter(|seg| seg.starts_with('{'))
                        .position(|seg| seg == var);
                    place.map_or_else(|| name.to_string(), |i| format!("#{}", i + 1))
                }
                _ => name.to_string(),
            };
            out.insert((loc.to_string(), name), side);
        }
    }
    out
}

/// Whether clients must send the parameter. Path parameters are part of
/// the URL, so every client sends them; they are not counted here.
fn required(side: &Side<'_>) -> bool {
    side.node.get("required").and_then(Value::as_bool) == Some(true)
        && side.node.get("in").and_then(Value::as_str) != Some("path")
}

fn operation(
    old: &Document,
    new: &Document,
    o: &Operation<'_>,
    n: &Operation<'_>,
    label: &str,
    out: &mut Vec<Change>,
) {
    let [to_new, to_old] = request_flows(label);
    // Parameters.
    let op = parameters(old, o);
    let np = parameters(new, n);
    for ((loc, name), ns) in &np {
        let os = op.get(&(loc.clone(), name.clone()));
        if required(ns) && !os.is_some_and(required) {
            out.push(Change {
                pointer: ns.pointer.clone(),
                direction: Direction::OldClientsNewServer,
                class: Class::Unsafe,
                message: format!(
                    "N's server requires the {loc} parameter `{name}` of {label}, which N-1's clients {}; make it optional with a default",
                    if os.is_some() { "do not always send" } else { "do not send" }
                ),
            });
        }
    }
    for ((loc, name), os) in &op {
        let ns = np.get(&(loc.clone(), name.clone()));
        if required(os) && !ns.is_some_and(required) {
            out.push(Change {
                pointer: ns.map_or_else(|| o.pointer.clone(), |s| s.pointer.clone()),
                direction: Direction::NewClientsOldServer,
                class: Class::Unsafe,
                message: format!(
                    "N-1's server requires the {loc} parameter `{name}` of {label}, which N's clients {}{}; keep sending it until N-1 cannot come back",
                    if ns.is_some() { "may leave out" } else { "no longer send" },
                    if ns.is_some() { "" } else { " (pointer into the old document)" }
                ),
            });
        }
        if let Some(ns) = ns
            && let (Some(osch), Some(nsch)) = (os.node.get("schema"), ns.node.get("schema"))
        {
            let os = Side::new(old, osch, push_pointer(&os.pointer, "schema"));
            let ns = Side::new(new, nsch, push_pointer(&ns.pointer, "schema"));
            let field_flows = |f: &Flow| Flow {
                direction: f.direction,
                writer: f.writer,
                reader: f.reader,
                strict: f.strict,
                place: format!("in the {loc} parameter `{name}` of {label}"),
                reader_is_new: f.reader_is_new,
            };
            reads(&field_flows(&to_new), &os, &ns, out);
            reads(&field_flows(&to_old), &ns, &os, out);
        }
    }
    // Request bodies.
    let (ob, nb) = (body(old, o), body(new, n));
    let body_required = |b: &Option<Side<'_>>| {
        b.as_ref()
            .is_some_and(|b| b.node.get("required").and_then(Value::as_bool) == Some(true))
    };
    if body_required(&nb) && !body_required(&ob) {
        out.push(Change {
            pointer: nb.as_ref().map_or_else(String::new, |b| b.pointer.clone()),
            direction: Direction::OldClientsNewServer,
            class: Class::Unsafe,
            message: format!(
                "N's server requires a request body for {label}, which N-1's clients may not send; keep the body optional"
            ),
        });
    }
    if body_required(&ob) && !body_required(&nb) && nb.is_some() {
        out.push(Change {
            pointer: nb.as_ref().map_or_else(String::new, |b| b.pointer.clone()),
            direction: Direction::NewClientsOldServer,
            class: Class::Unsafe,
            message: format!(
                "N-1's server requires a request body for {label}, which N's clients may leave out; keep sending it until N-1 cannot come back"
            ),
        });
    }
    if let (Some(ob), Some(nb)) = (&ob, &nb) {
        contents(ob, nb, &to_new, &to_old, true, label, out);
    }
    // Responses.
    let (Some(Value::Object(or)), Some(Value::Object(nr))) =
        (o.node.get("responses"), n.node.get("responses"))
    else {
        return;
    };
    let success = |code: &str| code.starts_with('2');
    for (code, oresp) in or {
        let optr = push_pointer(&push_pointer(&o.pointer, "responses"), code);
        match nr.get(code) {
            None if success(code) => out.push(Change {
                pointer: optr,
                direction: Direction::OldClientsNewServer,
                class: Class::Unsafe,
                message: format!(
                    "{label} no longer answers {code} in N (pointer into the old document): N-1's clients that expect it get another status; keep answering {code}"
                ),
            }),
            None => {}
            Some(nresp) => {
                let os = Side::new(old, oresp, optr);
                let ns = Side::new(new, nresp, push_pointer(&push_pointer(&n.pointer, "responses"), code));
                let [to_old_clients, to_new_clients] = response_flows(label, code);
                // In a response the server writes: N's server to N-1's
                // clients, and N-1's server to N's clients.
                contents(&ns, &os, &to_old_clients, &to_new_clients, false, label, out);
            }
        }
    }
    for code in nr.keys().filter(|c| success(c) && !or.contains_key(*c)) {
        out.push(Change {
            pointer: push_pointer(&push_pointer(&n.pointer, "responses"), code),
            direction: Direction::OldClientsNewServer,
            class: Class::Risky,
            message: format!(
                "{label} may now answer {code}, which N-1's clients do not expect; only clients that accept any 2xx survive it"
            ),
        });
    }
}

fn body<'a>(doc: &'a Document, op: &Operation<'a>) -> Option<Side<'a>> {
    op.node
        .get("requestBody")
        .map(|b| Side::new(doc, b, push_pointer(&op.pointer, "requestBody")))
}

type Media<'a> = BTreeMap<String, Option<(String, Side<'a>)>>;

/// A body's or response's schemas by media type.
fn media<'a>(s: &Side<'a>) -> Media<'a> {
    let mut m = BTreeMap::new();
    if let Some(Value::Object(content)) = s.node.get("content") {
        let cptr = push_pointer(&s.pointer, "content");
        for (mt, v) in content {
            let mptr = push_pointer(&cptr, mt);
            let schema = v.get("schema").map(|sch| {
                (
                    mptr.clone(),
                    Side::new(s.doc, sch, push_pointer(&mptr, "schema")),
                )
            });
            m.insert(mt.clone(), schema);
        }
    }
    m
}

/// The media types of a body or a response. In requests `first` is the
/// old body and the flows are (old clients → new server, new clients → old
/// server); in responses `first` is the new response and the flows are
/// (new server → old clients, old server → new clients).
fn contents(
    first: &Side<'_>,
    second: &Side<'_>,
    forward: &Flow,
    backward: &Flow,
    request: bool,
    label: &str,
    out: &mut Vec<Change>,
) {
    let fm = media(first);
    let sm = media(second);
    for (mt, fs) in &fm {
        match sm.get(mt) {
            None if request => out.push(Change {
                // `first` is the old body: the media type is gone from N.
                pointer: first.pointer.clone(),
                direction: Direction::OldClientsNewServer,
                class: Class::Unsafe,
                message: format!(
                    "N's server no longer accepts {mt} request bodies for {label} (pointer into the old document), which N-1's clients send; keep accepting it"
                ),
            }),
            None => {}
            Some(ss) => {
                if let (Some((_, fs)), Some((_, ss))) = (fs, ss) {
                    reads(forward, fs, ss, out);
                    reads(backward, ss, fs, out);
                }
            }
        }
    }
    if !request {
        // `second` is the old response: a media type N no longer writes.
        for mt in sm.keys().filter(|m| !fm.contains_key(*m)) {
            out.push(Change {
                pointer: first.pointer.clone(),
                direction: Direction::OldClientsNewServer,
                class: Class::Unsafe,
                message: format!(
                    "N's server no longer answers {label} with {mt}, which N-1's clients read; keep writing it"
                ),
            });
        }
    }
}
