//! Appends per second, every commit durable, on SQLite and PostgreSQL side
//! by side on the same machine: single events, batches, retried (duplicate)
//! commands, several threads, and reads; then the ratios.
//! Run by `bench/store.sh`; `store_bench DIR [N] [ROUNDS] [POSTGRES_URL]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backout_store::{NewEvent, PgOptions, PgStore, SqliteStore, Store, StoreError};
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

/// One case's figures.
#[derive(Clone, Debug)]
struct Figures {
    events_per_s: f64,
    calls_per_s: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

fn figures(events: usize, calls: usize, took: Duration, latencies: &mut [Duration]) -> Figures {
    let secs = took.as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        (!latencies.is_empty())
            .then(|| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3)
    };
    Figures {
        events_per_s: events as f64 / secs,
        calls_per_s: calls as f64 / secs,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    }
}

fn appends(store: &dyn Store, calls: usize, batch: usize) -> Result<Figures, StoreError> {
    let mut latencies = Vec::with_capacity(calls);
    let start = now();
    for c in 0..calls {
        let events = (0..batch).map(|i| event(c * batch + i)).collect();
        let t = now();
        store.append(events)?;
        latencies.push(t.elapsed());
    }
    Ok(figures(
        calls * batch,
        calls,
        start.elapsed(),
        &mut latencies,
    ))
}

/// The cases: a name and how to run one round of it.
type Case = (
    &'static str,
    fn(&Arc<dyn Store>, usize, usize) -> Result<Figures, BenchError>,
);

type BenchError = Box<dyn std::error::Error + Send + Sync>;

const CASES: [Case; 7] = [
    ("single event", |s, n, _| Ok(appends(&**s, n, 1)?)),
    ("batches of 10", |s, n, _| Ok(appends(&**s, n / 4, 10)?)),
    ("batches of 100", |s, n, _| Ok(appends(&**s, n / 20, 100)?)),
    ("keyed single event", |s, n, round| keyed(s, n, round)),
    ("retried (duplicate) single event", |s, n, round| {
        keyed(s, n, round)
    }),
    ("single event, 4 threads", |s, n, _| threads(s, n)),
    ("read all, pages of 1000", |s, _, _| read_all(s)),
];

/// Keyed commands; run twice with the same round, the second run retries
/// every one of them.
fn keyed(store: &Arc<dyn Store>, n: usize, round: usize) -> Result<Figures, BenchError> {
    let mut latencies = Vec::with_capacity(n);
    let start = now();
    for k in 0..n {
        let ev = event(k).with_key(format!("cmd-{round}-{k}"));
        let t = now();
        store.append(vec![ev])?;
        latencies.push(t.elapsed());
    }
    Ok(figures(n, n, start.elapsed(), &mut latencies))
}

fn threads(store: &Arc<dyn Store>, n: usize) -> Result<Figures, BenchError> {
    let threads = 4;
    let start = now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let store = Arc::clone(store);
            std::thread::spawn(move || -> Result<Vec<Duration>, StoreError> {
                let mut latencies = Vec::with_capacity(n / threads);
                for i in 0..n / threads {
                    let t = now();
                    store.append(vec![event(i)])?;
                    latencies.push(t.elapsed());
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.join().map_err(|_| "a bench thread panicked")??);
    }
    let total = n / threads * threads;
    Ok(figures(total, total, start.elapsed(), &mut latencies))
}

fn read_all(store: &Arc<dyn Store>) -> Result<Figures, BenchError> {
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
    if i64::try_from(read)? != last {
        return Err(format!("read {read} events of {last}").into());
    }
    Ok(figures(read, read / 1000 + 1, took, &mut []))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median of each figure over the rounds.
fn medians(rounds: &[Figures]) -> Figures {
    let opt = |f: fn(&Figures) -> Option<f64>| {
        let v: Vec<f64> = rounds.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(v))
    };
    Figures {
        events_per_s: median(rounds.iter().map(|f| f.events_per_s).collect()),
        calls_per_s: median(rounds.iter().map(|f| f.calls_per_s).collect()),
        p50_ms: opt(|f| f.p50_ms),
        p99_ms: opt(|f| f.p99_ms),
    }
}

fn show(name: &str, all: &[Figures]) {
    println!("{name}");
    for ((case, _), f) in CASES.iter().zip(all) {
        let mut line = format!(
            "  {case:<34} {:>9.0} events/s {:>8.0} calls/s",
            f.events_per_s, f.calls_per_s
        );
        if let (Some(p50), Some(p99)) = (f.p50_ms, f.p99_ms) {
            line += &format!("   p50 {p50:.2} ms  p99 {p99:.2} ms");
        }
        println!("{line}");
    }
}

fn main() -> Result<(), BenchError> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: store_bench DIR [N] [ROUNDS] [POSTGRES_URL]";
    let dir = std::path::PathBuf::from(args.next().ok_or(usage)?);
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let rounds: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let url = args.next();

    let path = dir.join("bench.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let mut backends: Vec<(&str, Arc<dyn Store>)> = vec![(
        "SQLite (WAL, synchronous=FULL)",
        Arc::new(SqliteStore::open(&path)?),
    )];
    if let Some(url) = &url {
        // A schema of its own, so that runs never mix.
        let options = PgOptions {
            schema: format!("bench_{}", std::process::id()),
            ..PgOptions::default()
        };
        backends.push((
            "PostgreSQL (synchronous_commit=on, fsync=on)",
            Arc::new(PgStore::open_with(url, &options)?),
        ));
    }

    // The disk's flush latency drifts from minute to minute on a shared
    // machine, so the backends take turns: each case runs on one, then the
    // other (the order alternating), round after round, and the medians are
    // compared.
    let mut results: Vec<Vec<Vec<Figures>>> = vec![vec![Vec::new(); CASES.len()]; backends.len()];
    for round in 0..rounds {
        for (c, (_, case)) in CASES.iter().enumerate() {
            for b in 0..backends.len() {
                let b = if round % 2 == 0 {
                    b
                } else {
                    backends.len() - 1 - b
                };
                results[b][c].push(case(&backends[b].1, n, round)?);
            }
        }
    }
    let summary: Vec<Vec<Figures>> = results
        .iter()
        .map(|cases| cases.iter().map(|r| medians(r)).collect())
        .collect();
    println!("medians of {rounds} alternating rounds, N = {n}");
    for ((name, store), figures) in backends.iter().zip(&summary) {
        show(name, figures);
        println!("  {} events stored", store.last_seq()?);
    }
    if let [sqlite, pg] = summary.as_slice() {
        println!("PostgreSQL / SQLite");
        for (((case, _), s), p) in CASES.iter().zip(sqlite).zip(pg) {
            let mut line = format!(
                "  {case:<34} events/s x{:.2}",
                p.events_per_s / s.events_per_s
            );
            if let (Some(sp), Some(pp)) = (s.p50_ms, p.p50_ms) {
                line += &format!("   p50 x{:.2}", pp / sp);
            }
            if let (Some(sp), Some(pp)) = (s.p99_ms, p.p99_ms) {
                line += &format!("   p99 x{:.2}", pp / sp);
            }
            println!("{line}");
        }
    }
    Ok(())
}
