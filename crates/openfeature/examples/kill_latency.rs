//! Benchmark: how fast `backout flag kill` reaches evaluators.
//!
//! Starts the standalone flag server on loopback, connects `CLIENTS` change
//! stream (SSE) clients that refetch the flag when told to (as an OFREP
//! client does), and one in-process provider synced from the same stream.
//! Then kills and revives a flag `ROUNDS` times through the management API
//! and records, per round, when each evaluator first sees the change.
//!
//! `cargo run --release -p backout-openfeature --example kill_latency [CLIENTS] [ROUNDS]`
//! (bench/flags.sh runs it). Timing is the point here, so this file reads
//! the clock.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use backout_flag_server::{self as ofrep, FileSource, FlagStore, Tokens, manage::Manager};
use backout_openfeature::sync::{self, Server};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::{Barrier, mpsc};

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let clients = args.first().copied().unwrap_or(50);
    let rounds = args.get(1).copied().unwrap_or(20);

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("flags.json");
    let flags = json!({"flags": {"checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}}});
    std::fs::write(&file, flags.to_string()).expect("write flags");
    let store = FlagStore::new();
    let source = FileSource::new(&file);
    source.reload_into(&store).expect("load");
    let manager = Manager::new(source.clone(), store.clone());
    let app = ofrep::standalone_router(store.clone(), Tokens::new("flags", vec![]), manager);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    tokio::spawn(source.watch(store, ofrep::WATCH_INTERVAL));

    // SSE clients: on each refetchEvaluation, evaluate the flag again and
    // report (round, time) when the evaluation shows the new state.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(usize, Instant, bool)>();
    let ready = Arc::new(Barrier::new(clients + 1));
    for _ in 0..clients {
        let url = url.clone();
        let tx = seen_tx.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let resp = http
                .get(format!("{url}/ofrep/v1/events"))
                .send()
                .await
                .expect("connect SSE");
            ready.wait().await;
            let mut stream = resp.bytes_stream();
            let mut buf = String::new();
            while let Some(Ok(chunk)) = stream.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let event: String = buf.drain(..end + 2).collect();
                    if !event.contains("refetchEvaluation") {
                        continue;
                    }
                    let got_event = Instant::now();
                    let body: serde_json::Value = http
                        .post(format!("{url}/ofrep/v1/evaluate/flags/checkout"))
                        .body("{}")
                        .send()
                        .await
                        .expect("evaluate")
                        .json()
                        .await
                        .expect("json");
                    let disabled = body["reason"] == "DISABLED";
                    let _ = tx.send((0, got_event, disabled));
                    let _ = tx.send((1, Instant::now(), disabled));
                }
            }
        });
    }
    ready.wait().await;
    let (provider, _sync) = sync::connect(Server::new(&url))
        .await
        .expect("provider sync");
    let handle = provider.handle();
    let http = reqwest::Client::new();
    let ctx = backout_flags::Context::new();

    let mut event_ms = Vec::new();
    let mut refetch_ms = Vec::new();
    let mut provider_ms = Vec::new();
    for round in 0..rounds * 2 {
        let kill = round % 2 == 0;
        let path = if kill { "kill" } else { "revive" };
        tokio::time::sleep(Duration::from_millis(100)).await;
        while seen_rx.try_recv().is_ok() {}
        let start = Instant::now();
        let resp = http
            .post(format!("{url}/api/v1/flags/checkout/{path}"))
            .body("{}")
            .send()
            .await
            .expect("kill");
        assert!(
            resp.status().is_success(),
            "{path} failed: {}",
            resp.status()
        );
        // The in-process provider: poll its flag set until it flips.
        let target = if kill {
            backout_flags::Reason::Disabled
        } else {
            backout_flags::Reason::Static
        };
        while handle.current().evaluate("checkout", &ctx, 0).reason != target {
            if start.elapsed() > Duration::from_secs(10) {
                panic!("the provider never saw round {round}");
            }
            tokio::task::yield_now().await;
        }
        if kill {
            provider_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        let mut events = 0;
        let mut refetched = 0;
        while events < clients || refetched < clients {
            let (kind, at, disabled) =
                tokio::time::timeout(Duration::from_secs(10), seen_rx.recv())
                    .await
                    .expect("every client hears within 10 s")
                    .expect("channel open");
            let ms = at.duration_since(start).as_secs_f64() * 1000.0;
            if kind == 0 {
                events += 1;
                if kill {
                    event_ms.push(ms);
                }
            } else {
                refetched += 1;
                if kill {
                    assert!(
                        disabled,
                        "a client refetched and still saw the flag enabled"
                    );
                    refetch_ms.push(ms);
                }
            }
        }
    }
    println!(
        "kill → evaluators over loopback: {clients} SSE clients + 1 in-process provider, {rounds} kills"
    );
    report("SSE event received", &mut event_ms);
    report("SSE client re-evaluated (DISABLED)", &mut refetch_ms);
    report("in-process provider flipped", &mut provider_ms);
}

fn report(what: &str, ms: &mut [f64]) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "  {what:<38} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  (n={})",
        at(0.5),
        at(0.99),
        ms[ms.len() - 1],
        ms.len()
    );
}
