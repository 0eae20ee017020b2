//! Appends from several threads, through one store and through two stores
//! on the same data (separate connections, as two processes would have),
//! on both backends: batches never interleave and seqs are never reused or
//! skipped.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use backout_store::NewEvent;
use serde_json::json;

use crate::{TestStore, backends};

#[test]
fn threads_never_interleave_batches_or_reuse_seqs() {
    for t in backends() {
        threads_never_interleave_batches_or_reuse_seqs_in(&t);
    }
}

fn threads_never_interleave_batches_or_reuse_seqs_in(t: &TestStore) {
    let first = Arc::clone(&t.store);
    let second = t.reopen();
    let threads = 6;
    let batches = 40;

    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(if t % 2 == 0 { &first } else { &second });
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                let mut acked = Vec::new();
                for b in 0..batches {
                    let size = rng.usize(1..=5);
                    let events = (0..size)
                        .map(|i| {
                            NewEvent::new(
                                format!("svc{t}"),
                                "test.event",
                                "test",
                                0,
                                json!({"t": t, "b": b, "i": i, "size": size}),
                            )
                            .with_key(format!("{t}/{b}/{i}"))
                        })
                        .collect();
                    let appended = store.append(events).unwrap();
                    // Seqs within a batch are consecutive as returned.
                    for (i, a) in appended.iter().enumerate() {
                        assert!(!a.duplicate);
                        assert_eq!(a.event.seq, appended[0].event.seq + i as i64);
                        assert_eq!(a.event.batch, appended[0].event.seq);
                    }
                    acked.extend(appended.into_iter().map(|a| a.event));
                }
                acked
            })
        })
        .collect();
    let acked: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();

    let all = first.read(0, usize::MAX).unwrap();
    assert_eq!(all.len(), acked.len());
    // Every seq 1..=N exactly once, and each acknowledged event as returned.
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1);
    }
    for a in &acked {
        assert_eq!(&all[usize::try_from(a.seq - 1).unwrap()], a);
    }
    // Each batch is one contiguous run with its own `batch` id.
    let mut runs: BTreeMap<i64, Vec<&serde_json::Value>> = BTreeMap::new();
    for e in &all {
        runs.entry(e.batch).or_default().push(&e.body);
    }
    let mut seen = HashSet::new();
    for (batch, bodies) in &runs {
        let (t, b, size) = (&bodies[0]["t"], &bodies[0]["b"], &bodies[0]["size"]);
        assert_eq!(bodies.len() as u64, size.as_u64().unwrap(), "batch {batch}");
        for (i, body) in bodies.iter().enumerate() {
            assert_eq!(
                (&body["t"], &body["b"], body["i"].as_u64()),
                (t, b, Some(i as u64)),
                "batch {batch}"
            );
        }
        assert!(
            seen.insert((t.to_string(), b.to_string())),
            "batch {t}/{b} appended twice"
        );
    }
    assert_eq!(runs.len(), (threads * batches) as usize);
}

#[test]
fn racing_retries_apply_once() {
    for t in backends() {
        racing_retries_apply_once_in(&t);
    }
}

fn racing_retries_apply_once_in(t: &TestStore) {
    let stores = [Arc::clone(&t.store), t.reopen()];
    let store = &t.store;
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            std::thread::spawn(move || {
                (0..50)
                    .map(|k| {
                        let ev = NewEvent::new("web", "input.command", "test", 0, json!(k))
                            .with_key(format!("cmd-{k}"));
                        let a = store.append(vec![ev]).unwrap().remove(0);
                        (a.event.seq, a.duplicate)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let results: Vec<Vec<(i64, bool)>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(store.last_seq().unwrap(), 50);
    for k in 0..50 {
        let seqs: HashSet<i64> = results.iter().map(|r| r[k].0).collect();
        assert_eq!(seqs.len(), 1, "command {k} got several seqs: {seqs:?}");
        let fresh = results.iter().filter(|r| !r[k].1).count();
        assert_eq!(fresh, 1, "command {k} was applied {fresh} times");
    }
}
