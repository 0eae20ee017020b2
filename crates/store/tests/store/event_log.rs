//! The event log, driven by small scripts.
//!
//! `check(script, transcript)` runs the `;`-separated operations of
//! `script` against a fresh store of each backend and compares what each printed, joined by
//! ` | `:
//!
//! * `+ EV…` appends one batch; `EV` is `service/kind`, `-` for the empty
//!   service, with `#key` for an idempotency key. Prints the seqs, a
//!   duplicate as `seq=`.
//! * `r AFTER LIMIT` reads; prints `seq:service/kind` per event.
//! * `s SERVICE AFTER LIMIT` reads one service the same way.
//! * `b` prints the batches: `[1 2] [3]`.
//! * `k KEY` prints the seq stored with a key, or `none`.
//! * `l` prints the last seq.
//!
//! An error prints `!Variant`.

use backout_store::{NewEvent, StoredEvent};
use serde_json::json;

use crate::{TestStore, backends, variant};

fn event(spec: &str) -> NewEvent {
    let (ev, key) = match spec.split_once('#') {
        Some((ev, key)) => (ev, Some(key)),
        None => (spec, None),
    };
    let (service, kind) = ev.split_once('/').unwrap();
    let service = if service == "-" { "" } else { service };
    let mut e = NewEvent::new(service, kind, "test", 1000, json!({"spec": spec}));
    e.idempotency_key = key.map(str::to_owned);
    e
}

fn list(events: &[StoredEvent]) -> String {
    let shown: Vec<String> = events
        .iter()
        .map(|e| {
            let service = if e.service.is_empty() {
                "-"
            } else {
                &e.service
            };
            format!("{}:{service}/{}", e.seq, e.kind)
        })
        .collect();
    shown.join(" ")
}

fn batches(events: &[StoredEvent]) -> String {
    let mut groups: Vec<Vec<i64>> = Vec::new();
    for e in events {
        match groups.last_mut() {
            Some(g) if events[usize::try_from(g[0] - 1).unwrap()].batch == e.batch => g.push(e.seq),
            _ => groups.push(vec![e.seq]),
        }
    }
    let shown: Vec<String> = groups
        .iter()
        .map(|g| {
            let seqs: Vec<String> = g.iter().map(i64::to_string).collect();
            format!("[{}]", seqs.join(" "))
        })
        .collect();
    shown.join(" ")
}

fn check(script: &str, expected: &str) {
    for store in backends() {
        assert_eq!(
            run(&store, script),
            expected,
            "{}: script: {script}",
            store.name()
        );
    }
}

fn run(store: &TestStore, script: &str) -> String {
    let mut out = Vec::new();
    for op in script.split(';').map(str::trim) {
        let words: Vec<&str> = op.split_whitespace().collect();
        let printed = match words.as_slice() {
            ["+", evs @ ..] => match store.append(evs.iter().map(|s| event(s)).collect()) {
                Ok(appended) => {
                    let shown: Vec<String> = appended
                        .iter()
                        .map(|a| format!("{}{}", a.event.seq, if a.duplicate { "=" } else { "" }))
                        .collect();
                    shown.join(" ")
                }
                Err(e) => variant(&e),
            },
            ["r", after, limit] => list(
                &store
                    .read(after.parse().unwrap(), limit.parse().unwrap())
                    .unwrap(),
            ),
            ["s", service, after, limit] => list(
                &store
                    .read_service(service, after.parse().unwrap(), limit.parse().unwrap())
                    .unwrap(),
            ),
            ["n", limit] => list(&store.read_newest(None, limit.parse().unwrap()).unwrap()),
            ["n", service, limit] => list(
                &store
                    .read_newest(Some(service), limit.parse().unwrap())
                    .unwrap(),
            ),
            ["b"] => batches(&store.read(0, usize::MAX).unwrap()),
            ["k", key] => store
                .find_key(key)
                .unwrap()
                .map_or("none".to_owned(), |e| e.seq.to_string()),
            ["l"] => store.last_seq().unwrap().to_string(),
            _ => panic!("bad op {op:?}"),
        };
        out.push(printed);
    }
    out.join(" | ")
}

#[test]
fn append_and_read() {
    check("l", "0");
    check("r 0 10", "");
    check("+ a/x", "1");
    check("+ a/x; + b/y; l", "1 | 2 | 2");
    check("+ a/x b/y c/z; r 0 10", "1 2 3 | 1:a/x 2:b/y 3:c/z");
    check("+ a/x b/y c/z; r 1 10", "1 2 3 | 2:b/y 3:c/z");
    check("+ a/x b/y c/z; r 0 2", "1 2 3 | 1:a/x 2:b/y");
    check("+ a/x b/y c/z; r 3 10", "1 2 3 | ");
    check("+ a/x b/y c/z; r 99 10", "1 2 3 | ");
    check("+ a/x b/y c/z; r -5 1", "1 2 3 | 1:a/x");
    check("+ a/x b/y; r 0 0", "1 2 | ");
    check("+ -/token.created; r 0 9", "1 | 1:-/token.created");
    check("+ a/x; +; l", "1 |  | 1");
}

#[test]
fn read_one_service() {
    check("+ a/x b/y a/z; s a 0 10", "1 2 3 | 1:a/x 3:a/z");
    check("+ a/x b/y a/z; s a 1 10", "1 2 3 | 3:a/z");
    check("+ a/x b/y a/z; s a 0 1", "1 2 3 | 1:a/x");
    check("+ a/x b/y a/z; s b 0 10", "1 2 3 | 2:b/y");
    check("+ a/x b/y a/z; s c 0 10", "1 2 3 | ");
    check("+ a/x -/y; s - 0 10", "1 2 | ");
}

#[test]
fn read_the_newest() {
    check("n 5", "");
    check("+ a/x b/y a/z; n 2", "1 2 3 | 2:b/y 3:a/z");
    check("+ a/x b/y a/z; n 9", "1 2 3 | 1:a/x 2:b/y 3:a/z");
    check("+ a/x b/y a/z; n 0", "1 2 3 | ");
    check("+ a/x b/y a/z b/w; n a 1", "1 2 3 4 | 3:a/z");
    check("+ a/x b/y a/z b/w; n b 9", "1 2 3 4 | 2:b/y 4:b/w");
    check("+ a/x; n c 9", "1 | ");
}

#[test]
fn batches_are_atomic_and_consecutive() {
    check("+ a/x b/y; + c/z; b", "1 2 | 3 | [1 2] [3]");
    check("+ a/x; + a/x a/x a/x; b", "1 | 2 3 4 | [1] [2 3 4]");
    // An invalid event anywhere refuses the whole batch.
    check("+ a/x b/; l", "!InvalidEvent | 0");
    check(
        "+ a/x; + b/y c/; + d/z; b",
        "1 | !InvalidEvent | 2 | [1] [2]",
    );
    check("+ a/x#; l", "!InvalidEvent | 0");
}

#[test]
fn idempotency_keys() {
    check("+ a/x#k; + a/x#k; l", "1 | 1= | 1");
    check("+ a/x#k; + a/x#j; l", "1 | 2 | 2");
    check("+ a/x#k; + a/x; + a/x#k", "1 | 2 | 1=");
    check("+ a/x#k; k k; k j", "1 | 1 | none");
    // A duplicate takes no seq: the new events of the batch stay consecutive.
    check("+ a/x#k; + b/y a/x#k c/z; b", "1 | 2 1= 3 | [1] [2 3]");
    // Retrying a whole keyed batch appends nothing.
    check("+ a/x#1 a/y#2; + a/x#1 a/y#2; l", "1 2 | 1= 2= | 2");
    // A key repeated within one batch is applied once.
    check("+ a/x#k a/x#k; l", "1 1= | 1");
    // The same key on another service or kind is a bug in the caller: the
    // batch is refused whole.
    check("+ a/x#k; + b/x#k; l", "1 | !KeyReused | 1");
    check("+ a/x#k; + a/y#k; l", "1 | !KeyReused | 1");
    check("+ a/x#k; + c/z a/y#k; l; b", "1 | !KeyReused | 1 | [1]");
    check("+ a/x#k; + -/x#k", "1 | !KeyReused");
}

#[test]
fn appended_events_read_back_as_returned() {
    for store in backends() {
        appended_events_read_back_as_returned_in(&store);
    }
}

fn appended_events_read_back_as_returned_in(store: &TestStore) {
    let ev = NewEvent::new(
        "web",
        "input.command",
        "cli:alice",
        1_700_000_000_123,
        json!({"cmd": "abort", "n": [1, 2.5, null]}),
    )
    .with_key("req-1")
    .with_reason("canary looks slow");
    let appended = store.append(vec![ev.clone()]).unwrap();
    let stored = &appended[0].event;
    assert_eq!(store.read(0, 10).unwrap(), vec![stored.clone()]);
    assert_eq!(store.find_key("req-1").unwrap().as_ref(), Some(stored));
    assert_eq!(
        (
            stored.seq,
            stored.batch,
            &stored.service,
            &stored.kind,
            &stored.actor,
            &stored.reason,
            &stored.idempotency_key,
            stored.at_ms,
            &stored.body
        ),
        (
            1,
            1,
            &ev.service,
            &ev.kind,
            &ev.actor,
            &ev.reason,
            &ev.idempotency_key,
            ev.at_ms,
            &ev.body
        )
    );
    // A duplicate returns the stored event, not the retried one.
    let retry = NewEvent {
        at_ms: 1_700_000_009_999,
        body: json!("changed"),
        ..ev
    };
    let again = store.append(vec![retry]).unwrap();
    assert!(again[0].duplicate);
    assert_eq!(&again[0].event, stored);
}

#[test]
fn reopening_keeps_everything() {
    for t in backends() {
        t.append(vec![event("a/x#k"), event("b/y")]).unwrap();
        let first = t.read(0, 10).unwrap();
        let store = t.reopen();
        assert_eq!(store.read(0, 10).unwrap(), first, "{}", t.name());
        let next = store.append(vec![event("a/x#k"), event("c/z")]).unwrap();
        assert_eq!((next[0].event.seq, next[0].duplicate), (1, true));
        assert_eq!((next[1].event.seq, next[1].duplicate), (3, false));
    }
}

#[test]
fn nul_characters_are_refused_whole() {
    check("+ a/x a/b\0c; l", "!InvalidEvent | 0");
    for t in backends() {
        let mut ev = event("a/x");
        ev.reason = Some("why\0".to_owned());
        let err = t.append(vec![ev]).unwrap_err();
        assert!(
            err.to_string()
                .contains("`reason` contains a NUL character"),
            "{err}"
        );
        // Reads with NUL find nothing rather than failing.
        assert_eq!(t.read_service("a\0", 0, 9).unwrap(), vec![]);
        assert_eq!(t.find_key("k\0").unwrap(), None);
        // A NUL in a body is data like any other.
        let mut ev = event("a/x");
        ev.body = json!({"s": "a\0b"});
        let a = t.append(vec![ev.clone()]).unwrap();
        assert_eq!(t.read(0, 9).unwrap()[0].body, ev.body, "{}", t.name());
        assert_eq!(a[0].event.seq, 1);
    }
}
