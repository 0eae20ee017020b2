//! Snapshots, driven by small scripts.
//!
//! `check(script, transcript)` runs `;`-separated operations against a
//! fresh store of each backend; their outputs are joined by ` | `:
//!
//! * `+ SERVICE N` appends N events of SERVICE (one batch); prints the
//!   last seq.
//! * `save SERVICE UPTO JSON` saves a snapshot; prints `ok` or `!Variant`.
//! * `latest SERVICE` prints `UPTO JSON`, or `none`.
//! * `count SERVICE` prints how many snapshots of SERVICE are kept.

use backout_store::NewEvent;
use serde_json::Value;

use crate::{TestStore, backends, variant};

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
            ["+", service, n] => {
                let n: usize = n.parse().unwrap();
                let events = (0..n)
                    .map(|_| NewEvent::new(*service, "x", "test", 0, Value::Null))
                    .collect();
                let appended = store.append(events).unwrap();
                appended.last().unwrap().event.seq.to_string()
            }
            ["save", service, up_to, body] => {
                let body: Value = serde_json::from_str(body).unwrap();
                match store.save_snapshot(service, up_to.parse().unwrap(), &body) {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => variant(&e),
                }
            }
            ["latest", service] => match store.latest_snapshot(service).unwrap() {
                Some(s) => {
                    assert_eq!(s.service, *service);
                    format!("{} {}", s.up_to_seq, s.body)
                }
                None => "none".to_owned(),
            },
            ["count", service] => store
                .raw_i64(&format!(
                    "SELECT count(*) FROM snapshots WHERE service = '{service}'"
                ))
                .to_string(),
            _ => panic!("bad op {op:?}"),
        };
        out.push(printed);
    }
    out.join(" | ")
}

#[test]
fn save_and_load() {
    check("latest web", "none");
    check(
        "+ web 3; save web 3 {\"v\":1}; latest web",
        "3 | ok | 3 {\"v\":1}",
    );
    check(
        "+ web 3; save web 2 1; save web 3 2; latest web",
        "3 | ok | ok | 3 2",
    );
    // The highest seq wins, whatever the order of saving.
    check(
        "+ web 3; save web 3 2; save web 2 1; latest web",
        "3 | ok | ok | 3 2",
    );
    // Saving the same seq again replaces it.
    check(
        "+ web 3; save web 3 1; save web 3 2; latest web; count web",
        "3 | ok | ok | 3 2 | 1",
    );
    // Services are independent.
    check("+ web 2; save web 2 1; latest api", "2 | ok | none");
    check(
        "+ web 2; save web 1 1; save api 2 2; latest web; latest api",
        "2 | ok | ok | 1 1 | 2 2",
    );
    // A snapshot of nothing yet is fine (up to seq 0).
    check("save web 0 []; latest web", "ok | 0 []");
}

#[test]
fn refuses_snapshots_ahead_of_the_log() {
    check("save web 1 1", "!SnapshotAhead");
    check(
        "+ web 2; save web 3 1; latest web",
        "2 | !SnapshotAhead | none",
    );
    check("+ web 2; save web -1 1", "2 | !SnapshotAhead");
}

#[test]
fn keeps_the_newest_two() {
    check(
        "+ web 5; save web 1 1; save web 2 2; save web 3 3; save web 4 4; count web; latest web",
        "5 | ok | ok | ok | ok | 2 | 4 4",
    );
    check(
        "+ web 5; save web 1 1; save api 2 2; save web 3 3; save web 4 4; count web; count api",
        "5 | ok | ok | ok | ok | 2 | 1",
    );
}

#[test]
fn a_nul_in_a_service_name_is_refused() {
    for t in backends() {
        let err = t.save_snapshot("a\0b", 0, &Value::Null).unwrap_err();
        assert_eq!(variant(&err), "!InvalidValue", "{}", t.name());
        assert_eq!(t.latest_snapshot("a\0b").unwrap(), None);
    }
}
