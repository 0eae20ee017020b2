//! Several real processes on one store.
//!
//! * Concurrent appenders (both backends): separate processes appending
//!   batches at once keep seqs contiguous and batches whole.
//! * A paused leader (PostgreSQL, the backend several machines share): a
//!   child process leads and appends as fast as it can; the test stops it
//!   with SIGSTOP (possibly in the middle of a transaction), takes the lease
//!   over once it has expired, appends as the new leader, and wakes the
//!   child with SIGCONT. The child's next write must be refused as fenced,
//!   and nothing it did lands after the new leader's first event.
//!
//! The children are this test binary again, selected by an environment
//! variable.
#![allow(clippy::unwrap_used)]
#![cfg(unix)]

mod support;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use backout_store::{
    Candidate, Leadership, NewEvent, PgOptions, PgStore, SqliteStore, Store, StoreError,
};
use serde_json::json;
use support::{Fresh, pg_options};

const CHILD: &str = "BACKOUT_STORE_PROC_CHILD";
const LOCATION: &str = "BACKOUT_STORE_PROC_LOCATION";
const SCHEMA: &str = "BACKOUT_STORE_PROC_SCHEMA";

/// How long the paused child's lease lasts, and how long the server lets
/// its paused transaction sit (so that a takeover need not wait longer).
const CHILD_TTL: Duration = Duration::from_secs(1);

fn open(location: &str, schema: &str) -> Box<dyn Store> {
    if schema.is_empty() {
        Box::new(SqliteStore::open(location).unwrap())
    } else {
        let options = PgOptions {
            idle_in_transaction_timeout: Duration::from_secs(1),
            ..pg_options(schema)
        };
        Box::new(PgStore::open_with(location, &options).unwrap())
    }
}

/// The children: `append:ID` appends 40 keyed batches and prints each;
/// `leader` leads and appends until it is fenced.
#[test]
fn process_child() {
    let Ok(role) = std::env::var(CHILD) else {
        return; // Only meaningful when run by the tests below.
    };
    let store = open(
        &std::env::var(LOCATION).unwrap(),
        &std::env::var(SCHEMA).unwrap_or_default(),
    );
    let mut out = std::io::stdout().lock();
    if let Some(id) = role.strip_prefix("append:") {
        let mut rng = fastrand::Rng::with_seed(id.parse().unwrap());
        for b in 0..40 {
            let size = rng.usize(1..=5);
            let events = (0..size)
                .map(|i| {
                    NewEvent::new(
                        "web",
                        "test.event",
                        id,
                        0,
                        json!({"batch": format!("{id}/{b}"), "size": size, "index": i}),
                    )
                    .with_key(format!("{id}/{b}/{i}"))
                })
                .collect();
            let appended = store.append(events).unwrap();
            writeln!(out, "\nACK {id}/{b} {}", appended[0].event.seq).unwrap();
        }
        return;
    }
    assert_eq!(role, "leader");
    let me = Candidate::new("old", "http://old");
    let mut n = 0;
    loop {
        match store.campaign(&me, CHILD_TTL) {
            Ok(Leadership::Leader { term }) => writeln!(out, "\nLEADER {term}").unwrap(),
            Ok(Leadership::Follower { .. }) => writeln!(out, "\nFOLLOWER").unwrap(),
            Err(e) => writeln!(out, "\nERR {e}").unwrap(),
        }
        for _ in 0..5 {
            n += 1;
            let ev = NewEvent::new("web", "by.old", "old", n, json!({"n": n}));
            match store.append(vec![ev]) {
                Ok(a) => writeln!(out, "\nACK {}", a[0].event.seq).unwrap(),
                Err(StoreError::Fenced { term, leader }) => {
                    let by = leader.map(|l| l.holder).unwrap_or_default();
                    writeln!(out, "\nFENCED {term} {by}").unwrap();
                    return;
                }
                // The server ended its session while it was stopped: the
                // next call connects again.
                Err(e) => writeln!(out, "\nERR {e}").unwrap(),
            }
        }
    }
}

fn spawn(role: &str, place: &Fresh) -> (Child, mpsc::Receiver<String>) {
    let (location, schema) = place.location();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "process_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, role)
        .env(LOCATION, location)
        .env(SCHEMA, schema)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (child, received)
}

#[test]
fn concurrent_processes_keep_seqs_contiguous() {
    for place in Fresh::each() {
        // The store exists before the children race to append.
        drop(place.open());
        let children: Vec<_> = (1..=3)
            .map(|id| spawn(&format!("append:{id}"), &place))
            .collect();
        let mut acked = 0;
        for (mut child, lines) in children {
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "{}: a child failed: {status}",
                place.name()
            );
            acked += lines.iter().filter(|l| l.starts_with("ACK ")).count();
        }
        assert_eq!(acked, 120);
        let all = place.open().read(0, usize::MAX).unwrap();
        let mut runs: BTreeMap<i64, Vec<&backout_store::StoredEvent>> = BTreeMap::new();
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.seq, i as i64 + 1, "{}: gap or reuse", place.name());
            runs.entry(e.batch).or_default().push(e);
        }
        let mut seen = HashSet::new();
        for events in runs.values() {
            let id = events[0].body["batch"].as_str().unwrap();
            assert_eq!(
                events.len() as u64,
                events[0].body["size"].as_u64().unwrap()
            );
            for (i, e) in events.iter().enumerate() {
                assert_eq!(e.body["batch"].as_str(), Some(id), "batches interleave");
                assert_eq!(e.body["index"].as_u64(), Some(i as u64));
            }
            assert!(seen.insert(id.to_owned()), "batch {id} stored twice");
        }
        assert_eq!(seen.len(), 120);
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig}");
}

/// Waits for a line that `pred` accepts; all lines seen are kept.
fn wait_for(
    lines: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    mut pred: impl FnMut(&str) -> bool,
) {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the child went quiet; it said:\n{}", seen.join("\n")));
        let done = pred(&line);
        seen.push(line);
        if done {
            return;
        }
    }
}

#[test]
fn sigstop_the_leader_take_over_sigcont_it_and_its_writes_are_refused() {
    let Some(place) = Fresh::postgres() else {
        return;
    };
    let store = place.open();
    let (mut child, lines) = spawn("leader", &place);
    let mut said = Vec::new();
    wait_for(&lines, &mut said, |l| l == "LEADER 1");
    let mut acks = 0;
    wait_for(&lines, &mut said, |l| {
        acks += usize::from(l.starts_with("ACK "));
        acks >= 20
    });
    signal(&child, "-STOP");

    // Take over once the stopped leader's lease has expired. A campaign may
    // wait for (and give up on) the stopped child's open transaction until
    // the server ends its session.
    let me = Candidate::new("new", "http://new");
    let mut attempts = 0;
    let term = loop {
        attempts += 1;
        assert!(attempts < 600, "no takeover within a minute");
        match store.campaign(&me, Duration::from_secs(60)) {
            Ok(Leadership::Leader { term }) => break term,
            Ok(Leadership::Follower { .. }) | Err(StoreError::Busy { .. }) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("campaign: {e}"),
        }
    };
    assert_eq!(term, 2);
    let mut ours = Vec::new();
    for n in 0..3 {
        let a = store
            .append(vec![NewEvent::new("web", "by.new", "new", n, json!(n))])
            .unwrap();
        ours.push(a[0].event.seq);
    }

    signal(&child, "-CONT");
    wait_for(&lines, &mut said, |l| l.starts_with("FENCED"));
    assert!(child.wait().unwrap().success());
    assert_eq!(said.last().unwrap(), "FENCED 1 new", "{}", said.join("\n"));

    // Nothing of the old leader's landed after the new leader's first
    // event, and every acknowledgement it printed is in the log.
    let all = store.read(0, usize::MAX).unwrap();
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
    }
    let first_new = ours[0];
    for e in &all {
        match e.kind.as_str() {
            "by.old" => assert!(e.seq < first_new, "the fenced leader wrote seq {}", e.seq),
            "by.new" => assert!(ours.contains(&e.seq)),
            other => panic!("unexpected event {other}"),
        }
    }
    for line in &said {
        if let Some(seq) = line.strip_prefix("ACK ") {
            let seq: i64 = seq.parse().unwrap();
            assert!(seq < first_new, "acknowledged after the takeover: {seq}");
            assert_eq!(all[usize::try_from(seq - 1).unwrap()].kind, "by.old");
        }
    }
    assert_eq!(
        all.len(),
        ours.len() + all.iter().filter(|e| e.kind == "by.old").count()
    );
    println!(
        "old leader: {} events before the stop; said {} lines",
        all.len() - ours.len(),
        said.len()
    );
}
