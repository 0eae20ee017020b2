//! Appends per second on a real file, every commit fsync'd: single events,
//! batches, retried (duplicate) commands, several threads, and reads.
//! Run by `bench/store.sh`; `store_bench DIR [N]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backout_store::{EventLog, NewEvent, SqliteStore, StoreError};
use serde_json::json;

/// The benchmark measures wall time, so it reads the clock here and only
/// here.
#[expect(clippy::disallowed_methods, reason = "a benchmark measures wall time")]
fn now() -> Instant {
    Instant::now()
}

fn event(n: usize) -> NewEvent {
    // About the size of a rollout input: a command or a verdict with reasons.
    NewEvent::new(
        "web",
        "input.verdict",
        "controller",
        1_700_000_000_000,
        json!({"verdict": "continue", "n": n, "reasons": ["error ratio 0.98 (≤ 1.2)", "p99 211 ms vs 204 ms"]}),
    )
}

fn report(what: &str, events: usize, calls: usize, took: Duration, latencies: &mut [Duration]) {
    let secs = took.as_secs_f64();
    let mut line = format!(
        "{what:<34} {:>9.0} events/s {:>8.0} appends/s",
        events as f64 / secs,
        calls as f64 / secs
    );
    if !latencies.is_empty() {
        latencies.sort();
        let pct =
            |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
        line += &format!("   p50 {:.2} ms  p99 {:.2} ms", pct(0.5), pct(0.99));
    }
    println!("{line}");
}

fn appends(store: &SqliteStore, what: &str, calls: usize, batch: usize) -> Result<(), StoreError> {
    let mut latencies = Vec::with_capacity(calls);
    let start = now();
    for c in 0..calls {
        let events = (0..batch).map(|i| event(c * batch + i)).collect();
        let t = now();
        store.append(events)?;
        latencies.push(t.elapsed());
    }
    report(what, calls * batch, calls, start.elapsed(), &mut latencies);
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().ok_or("usage: store_bench DIR [N]")?);
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let path = dir.join("bench.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = Arc::new(SqliteStore::open(&path)?);

    appends(&store, "single event, fsync'd", n, 1)?;
    appends(&store, "batches of 10", n / 4, 10)?;
    appends(&store, "batches of 100", n / 20, 100)?;

    // Keyed commands, then the same commands retried.
    let keyed = |k: usize| event(k).with_key(format!("cmd-{k}"));
    let start = now();
    for k in 0..n {
        store.append(vec![keyed(k)])?;
    }
    report("keyed single event", n, n, start.elapsed(), &mut []);
    let start = now();
    for k in 0..n {
        store.append(vec![keyed(k)])?;
    }
    report(
        "retried (duplicate) single event",
        n,
        n,
        start.elapsed(),
        &mut [],
    );

    let threads = 4;
    let start = now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || -> Result<(), StoreError> {
                for i in 0..n / threads {
                    store.append(vec![event(i)])?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "a bench thread panicked")??;
    }
    let total = n / threads * threads;
    report(
        "single event, 4 threads",
        total,
        total,
        start.elapsed(),
        &mut [],
    );

    let last = store.last_seq()?;
    let start = now();
    let mut after = 0;
    let mut read = 0;
    loop {
        let page = store.read(after, 1000)?;
        let Some(e) = page.last() else { break };
        after = e.seq;
        read += page.len();
    }
    let took = start.elapsed();
    assert_eq!(i64::try_from(read)?, last);
    println!(
        "{:<34} {:>9.0} events/s",
        "read all, pages of 1000",
        read as f64 / took.as_secs_f64()
    );
    println!(
        "{} events, file {:.1} MiB",
        last,
        std::fs::metadata(&path)?.len() as f64 / (1 << 20) as f64
    );
    Ok(())
}
