//! SIGKILL at random moments: no acknowledged event is lost, no batch is
//! half-stored, nothing is applied twice.
//!
//! The parent test re-runs this test binary as a child (selected by an
//! environment variable) that appends batches in a loop and prints each
//! acknowledged batch. The parent kills it with SIGKILL after a random delay
//! (from its start, or from its first acknowledgement), reopens the store,
//! and checks the whole log. Each child first replays the last batch the
//! previous child acknowledged and the one it may have been writing when it
//! died: each must come back whole, as duplicates or as new events, never
//! half of each, and an acknowledged one only as duplicates.
//!
//! It runs on both backends: a SQLite file, and a PostgreSQL schema on the
//! server `BACKOUT_TEST_POSTGRES` names (the server stays up; the client
//! process dies).
//!
//! `BACKOUT_STORE_CRASH_ROUNDS` (default 12) and `BACKOUT_STORE_CRASH_SEED`
//! (default 1) change the rounds and the kill moments.
#![allow(clippy::unwrap_used)]
#![cfg(unix)]

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use backout_store::{NewEvent, PgStore, SqliteStore, Store, StoredEvent};
use serde_json::json;
use support::{Fresh, pg_options};

const CHILD: &str = "BACKOUT_STORE_CRASH_CHILD";
const SCHEMA: &str = "BACKOUT_STORE_CRASH_SCHEMA";
const ROUND: &str = "BACKOUT_STORE_CRASH_ROUND";
const PREV_ACKED: &str = "BACKOUT_STORE_CRASH_PREV_ACKED";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Batch `n` of `round`: the same every time it is generated, so a later
/// child can replay it. Sizes vary, bodies are padded so some batches span
/// several pages, and every event has a key.
fn batch(round: u64, n: u64) -> (String, Vec<NewEvent>) {
    let mut rng = fastrand::Rng::with_seed(round << 32 | n);
    let id = format!("r{round}b{n}");
    let size = rng.usize(1..=6);
    let events = (0..size)
        .map(|i| {
            let service = ["web", "api", ""][rng.usize(0..3)];
            let pad = "x".repeat(rng.usize(0..3000));
            NewEvent::new(
                service,
                "test.event",
                "crash-child",
                i64::try_from(n).unwrap(),
                json!({"batch": id, "size": size, "index": i, "pad": pad}),
            )
            .with_key(format!("{id}/{i}"))
        })
        .collect();
    (id, events)
}

/// The child: appends until killed, one line per acknowledged batch.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD) else {
        return; // Only meaningful when run by `sigkill_at_random_moments`.
    };
    let round = env_u64(ROUND, 0);
    let store = open(&path, &std::env::var(SCHEMA).unwrap_or_default());
    let mut out = std::io::stdout().lock();
    // Replay the previous round's last acknowledged batch and the one after
    // it (in flight when the child died, or never started).
    if round > 0 {
        let acked = env_u64(PREV_ACKED, 0);
        for n in acked.saturating_sub(1)..=acked {
            let (id, events) = batch(round - 1, n);
            let appended = store.append(events).unwrap();
            let dups = appended.iter().filter(|a| a.duplicate).count();
            let outcome = match dups {
                0 => "new",
                d if d == appended.len() => "dup",
                _ => "mixed",
            };
            writeln!(out, "\nREPLAY {id} {outcome} {}", appended[0].event.seq).unwrap();
        }
    }
    for n in 0.. {
        let (id, events) = batch(round, n);
        let appended = store.append(events).unwrap();
        assert!(appended.iter().all(|a| !a.duplicate));
        let (first, last) = (
            appended[0].event.seq,
            appended[appended.len() - 1].event.seq,
        );
        writeln!(out, "\nACK {id} {first} {last}").unwrap();
    }
}

/// The store at `location`: a PostgreSQL schema when `schema` is given,
/// else a SQLite file.
fn open(location: &str, schema: &str) -> Box<dyn Store> {
    if schema.is_empty() {
        Box::new(SqliteStore::open(location).unwrap())
    } else {
        Box::new(PgStore::open_with(location, &pg_options(schema)).unwrap())
    }
}

/// What a child printed before it died: only whole lines count.
struct Report {
    acked: Vec<(String, i64, i64)>,
    replays: Vec<(String, String, i64)>,
}

/// When the parent kills the child.
#[derive(Debug)]
enum Kill {
    /// This long after spawning it: lands in start-up, opening, migrating
    /// or replaying.
    AfterSpawn(Duration),
    /// This long after its first acknowledged batch: lands mid-append,
    /// however slow the machine is to start the child.
    AfterFirstAck(Duration),
}

fn run_child(place: &(String, String), round: u64, prev_acked: u64, kill: &Kill) -> Report {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD, &place.0)
        .env(SCHEMA, &place.1)
        .env(ROUND, round.to_string())
        .env(PREV_ACKED, prev_acked.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (first_ack, first_ack_seen) = std::sync::mpsc::channel();
    let lines = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut lines = Vec::new();
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 {
            if line.ends_with('\n') {
                if line.starts_with("ACK ") {
                    let _ = first_ack.send(());
                }
                lines.push(line.trim().to_owned());
            }
            line.clear();
        }
        lines
    });
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    match kill {
        Kill::AfterSpawn(delay) => std::thread::sleep(*delay),
        Kill::AfterFirstAck(delay) => {
            // No acknowledgement within a minute means the child failed:
            // the status check below reports it with its output.
            let _ = first_ack_seen.recv_timeout(Duration::from_secs(60));
            std::thread::sleep(*delay);
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let lines = lines.join().unwrap();
    let errors = errors.join().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "round {round}: the child ended by itself ({status}) before it was killed:\n{}\n{errors}",
        lines.join("\n")
    );
    let mut report = Report {
        acked: Vec::new(),
        replays: Vec::new(),
    };
    for line in lines {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["ACK", id, first, last] => report.acked.push((
                (*id).to_owned(),
                first.parse().unwrap(),
                last.parse().unwrap(),
            )),
            ["REPLAY", id, outcome, seq] => report.replays.push((
                (*id).to_owned(),
                (*outcome).to_owned(),
                seq.parse().unwrap(),
            )),
            _ => {}
        }
    }
    report
}

/// Checks the whole log: contiguous seqs, whole batches, unique keys, and
/// every acknowledged batch where it was acknowledged.
fn verify(all: &[StoredEvent], acked: &HashMap<String, (i64, i64)>) {
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "gap or duplicate seq");
    }
    let mut keys = HashSet::new();
    for e in all {
        let key = e.idempotency_key.clone().unwrap();
        assert!(keys.insert(key.clone()), "key {key} stored twice");
    }
    let mut batches: BTreeMap<i64, Vec<&StoredEvent>> = BTreeMap::new();
    for e in all {
        batches.entry(e.batch).or_default().push(e);
    }
    let mut ids = HashMap::new();
    for (first, events) in &batches {
        let id = events[0].body["batch"].as_str().unwrap();
        let size = events[0].body["size"].as_u64().unwrap();
        assert_eq!(
            events.len() as u64,
            size,
            "batch {id} at seq {first} is partial"
        );
        for (i, e) in events.iter().enumerate() {
            assert_eq!(
                e.body["batch"].as_str(),
                Some(id),
                "batches interleave at seq {}",
                e.seq
            );
            assert_eq!(e.body["index"].as_u64(), Some(i as u64));
            assert_eq!(
                e.idempotency_key.as_deref(),
                Some(format!("{id}/{i}").as_str())
            );
        }
        assert!(
            ids.insert(id.to_owned(), (*first, events[events.len() - 1].seq))
                .is_none(),
            "batch {id} stored twice"
        );
    }
    for (id, span) in acked {
        assert_eq!(
            ids.get(id),
            Some(span),
            "acknowledged batch {id} is missing or moved"
        );
    }
}

#[test]
fn sigkill_at_random_moments() {
    for place in Fresh::each() {
        sigkill_at_random_moments_in(&place);
    }
}

fn sigkill_at_random_moments_in(t: &Fresh) {
    let rounds = env_u64("BACKOUT_STORE_CRASH_ROUNDS", 12);
    let seed = env_u64("BACKOUT_STORE_CRASH_SEED", 1);
    let mut rng = fastrand::Rng::with_seed(seed);
    let place = t.location();
    let mut acked: HashMap<String, (i64, i64)> = HashMap::new();
    let mut prev_acked = 0;
    let mut total = 0;
    for round in 0..rounds {
        // Early kills land in opening and migrating; later ones mid-append.
        // Every few rounds the kill lands early: in start-up, opening,
        // migrating or replaying. The others land mid-append.
        let kill = if round < 2 || round % 5 == 0 {
            Kill::AfterSpawn(Duration::from_millis(rng.u64(0..40)))
        } else {
            Kill::AfterFirstAck(Duration::from_millis(rng.u64(0..300)))
        };
        let report = run_child(&place, round, prev_acked, &kill);
        for (id, outcome, seq) in &report.replays {
            assert_ne!(outcome, "mixed", "replayed batch {id} was half stored");
            if let Some(span) = acked.get(id) {
                assert_eq!(outcome, "dup", "acknowledged batch {id} was appended again");
                assert_eq!(*seq, span.0);
            } else if outcome == "new" {
                acked.insert(id.clone(), (*seq, 0));
            }
        }
        for (id, first, last) in &report.acked {
            acked.insert(id.clone(), (*first, *last));
        }
        prev_acked = report.acked.len() as u64;
        total += report.acked.len();
        let store = t.open();
        let all = store.read(0, usize::MAX).unwrap();
        // Replayed batches acknowledged as new: fill in their last seq now.
        for span in acked.values_mut().filter(|s| s.1 == 0) {
            span.1 = all
                .iter()
                .filter(|e| e.batch == span.0)
                .map(|e| e.seq)
                .max()
                .unwrap();
        }
        verify(&all, &acked);
        println!(
            "{}: round {round}: killed {kill:?}, {} batches acknowledged, {} events stored",
            t.name(),
            report.acked.len(),
            all.len()
        );
    }
    assert!(
        total >= 20,
        "the children acknowledged only {total} batches: the test proved little"
    );
    // Appending continues right after the last stored event.
    let store = t.open();
    let last = store.last_seq().unwrap();
    let next = store
        .append(vec![NewEvent::new(
            "web",
            "after.crash",
            "test",
            0,
            json!(null),
        )])
        .unwrap();
    assert_eq!(next[0].event.seq, last + 1);
}
