//! `backout demo`: the whole loop on this machine with nothing else
//! installed. The real control plane (controller, judge, event log, API)
//! and the embedded proxy run the demo app as real processes: v1 healthy,
//! v2 that starts failing 5% of its requests (and gets slow) a few seconds
//! after it starts, v3 healthy again. Under ~200 requests/s the judge
//! catches v2 and rolls it back by itself; the timeline and the MTTR
//! breakdown come from the event log; then v3 goes to 100%.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use backout_proxy::loadgen::{self, Tally};
use backout_rollout::{Input, RollbackRecord};
use backout_server::api::{self, ApiState};
use backout_server::controller::{Controller, ManagedService, ServiceHandle, Submission};
use backout_server::fleet::{Fleet, Standing};
use backout_spec::{ServiceSpec, Source};
use backout_store::Store;
use clap::Args as ClapArgs;
use miette::{IntoDiagnostic, miette};
use tokio::sync::mpsc;

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Requests per second the built-in load generator sends.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Keep the demo's data directory (event log, instance logs) afterwards.
    #[arg(long)]
    keep: bool,
}

/// How long v2 behaves before it goes bad.
const DEGRADE_AFTER_S: u64 = 3;

const SERVICE: &str = r#"name: shop
listen: 127.0.0.1:0
version_header: x-backout-version
probes:
  readiness: {path: /ready, period: 500ms, timeout: 400ms}
strategy:
  steps:
    - set_weight: 20
    - analysis: {duration: 12s, on_timeout: continue}
    - set_weight: 50
    - analysis: {duration: 8s, on_timeout: continue}
  soak: 4s
  drain: 1s
  progress_deadline: 30s
analysis:
  promote_after: 6s
  checks:
    - {kind: error_rate, warmup: 3s}
    - {kind: latency, warmup: 3s}
driver:
  process:
    command: "'BIN' demo-app --port {port} --version {version} --behaviour {artifact}"
    stop_timeout: 2s
"#;

pub fn run(args: Args) -> miette::Result<ExitCode> {
    if args.rate == 0 {
        return Err(miette!("--rate must be above zero"));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .into_diagnostic()?;
    let data = std::env::temp_dir().join(format!("backout-demo-{}", std::process::id()));
    let result = runtime.block_on(demo(&args, &data));
    if args.keep {
        println!("\nkept {} (event log: backout.db)", data.display());
    } else {
        let _ = std::fs::remove_dir_all(&data);
    }
    result
}

fn now_ms() -> i64 {
    super::client::now_ms()
}

/// Seconds since the demo started, for the printout.
fn since(t0: i64, at: i64) -> String {
    format!("+{:>5.1}s", (at - t0) as f64 / 1000.0)
}

async fn demo(args: &Args, data: &Path) -> miette::Result<ExitCode> {
    let t0 = now_ms();
    let bin = std::env::current_exe().into_diagnostic()?;
    let yaml = SERVICE.replace("BIN", &bin.display().to_string());
    let spec = ServiceSpec::parse(&Source::new("demo.yaml", yaml)).map_err(miette::Report::new)?;
    let (store, _) = super::up::open_store(data)?;
    let fleet = Fleet::new(
        ["shop".to_string()],
        Standing {
            name: super::up::holder_name(),
            leader: true,
            leader_url: None,
        },
    );
    let local: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let proxy =
        super::up::embedded_proxy(std::slice::from_ref(&spec), local, 1, data, &fleet).await?;
    let url = format!(
        "http://{}/",
        proxy
            .listeners
            .first()
            .map(|l| l.1)
            .ok_or_else(|| miette!("no listener"))?
    );
    let controller = Arc::new(
        Controller::start(
            Arc::clone(&store),
            Arc::clone(&fleet),
            vec![ManagedService {
                spec,
                base_dir: PathBuf::from("."),
            }],
            data.to_path_buf(),
            None,
        )
        .await
        .map_err(|e| miette!("{e}"))?,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .into_diagnostic()?;
    let api_addr = listener.local_addr().into_diagnostic()?;
    let app = api::router(Arc::new(ApiState {
        controller: Arc::clone(&controller),
        store: Arc::clone(&store),
        proxy: Some(Arc::clone(&proxy.state)),
        flags: None,
        fleet: Arc::clone(&fleet),
    }));
    let api_task = tokio::spawn(async move {
        let _ = backout_listen::serve(
            listener,
            app,
            backout_listen::Settings::default(),
            std::future::pending(),
        )
        .await;
    });
    let shop = controller
        .service("shop")
        .cloned()
        .ok_or_else(|| miette!("the demo service is missing"))?;

    println!("backout demo: a bad release caught and rolled back by itself\n");
    println!("  proxy      {url}  (service `shop`, versions run as `backout demo-app` processes)");
    println!("  API        http://{api_addr}/api/v1");
    println!(
        "  watch it   backout status shop --watch --server http://{api_addr} --data {}\n",
        data.display()
    );

    let outcome = story(args, &shop, &store, &url, t0).await;

    api_task.abort();
    controller.shutdown(true).await;
    proxy.shutdown().await;
    outcome
}

async fn story(
    args: &Args,
    shop: &ServiceHandle,
    store: &Arc<dyn Store>,
    url: &str,
    t0: i64,
) -> miette::Result<ExitCode> {
    // 1. v1 becomes stable and proves itself (known good after its soak).
    release(shop, "v1", "--latency 2ms").await?;
    wait(shop, 30, |v| {
        v.state
            .release("v1")
            .is_some_and(|r| r.known_good_ms.is_some())
    })
    .await
    .ok_or_else(|| miette!("v1 did not become known good; see the event log"))?;
    println!("{} v1 is stable and known good", since(t0, now_ms()));

    // 2. Load on, then the bad canary.
    let (tx, mut seconds) = mpsc::unbounded_channel::<Tally>();
    let (load_url, rate) = (url.to_string(), args.rate);
    let load = tokio::spawn(async move {
        loadgen::run(&load_url, "x-backout-version", rate, 600, move |_, t| {
            let _ = tx.send(t.clone());
        })
        .await
    });
    println!(
        "{} load on: {} requests/s; releasing v2 (it will fail 5% of requests and slow down {}s after it starts)",
        since(t0, now_ms()),
        args.rate,
        DEGRADE_AFTER_S
    );
    let v2_started = now_ms();
    release(
        shop,
        "v2",
        &format!("--error-rate 0.05 --latency 2ms --tail 0.05 --degrade-after {DEGRADE_AFTER_S}s"),
    )
    .await?;
    let mut total = Tally::default();
    let rolled_back = follow(shop, &mut seconds, &mut total, t0, 60, |v| {
        !v.state.rollbacks.is_empty() && v.state.rollout.is_none()
    })
    .await;
    if !rolled_back {
        load.abort();
        return Err(miette!(
            "v2 was not rolled back within a minute; the judge's view: {:?}",
            shop.view().decision.as_ref().map(|d| &d.reason)
        ));
    }
    // Verified: canary gone and errors back at stable's level.
    let _ = wait(shop, 20, |v| {
        v.state
            .rollbacks
            .first()
            .is_some_and(|r| r.verified_ms().is_some())
    })
    .await;
    let view = shop.view();
    let Some(record) = view.state.rollbacks.first().cloned() else {
        return Err(miette!("no rollback record"));
    };
    // When v2 started failing: its instance's start plus the degrade delay.
    let failing_from =
        started_ms(store, "v2").unwrap_or(v2_started) + (DEGRADE_AFTER_S * 1000) as i64;
    print_timeline(store, t0, v2_started)?;
    print_mttr(&record, failing_from);

    // 3. A healthy v3 all the way.
    println!("\n{} releasing v3 (healthy)", since(t0, now_ms()));
    release(shop, "v3", "--latency 2ms").await?;
    let promoted = follow(shop, &mut seconds, &mut total, t0, 90, |v| {
        v.state.stable.as_deref() == Some("v3") && v.state.rollout.is_none()
    })
    .await;
    load.abort();
    let view = shop.view();
    println!("\nsummary");
    println!(
        "  requests sent {}, answered {}, errors {} ({:.2}%), no answer {}",
        total.sent,
        total.ok_total() + total.errors_total(),
        total.errors_total(),
        pct(total.errors_total(), total.sent),
        total.failed
    );
    println!(
        "  v2: rolled back automatically; bad canary to 100% stable {:.1}s after it started failing (goal ≤ 15 s)",
        record
            .switched_ms
            .map_or(f64::NAN, |s| (s - failing_from) as f64 / 1000.0)
    );
    println!(
        "  v3: {}",
        if promoted {
            "promoted to 100%; stable is v3"
        } else {
            "did not finish in time"
        }
    );
    println!(
        "  stable now {}; releases: {}",
        view.state.stable.as_deref().unwrap_or("none"),
        view.state
            .releases
            .iter()
            .map(|r| format!(
                "{} ({})",
                r.version,
                r.outcome
                    .and_then(|o| serde_json::to_value(o).ok())
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "-".into())
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(if promoted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn release(shop: &ServiceHandle, version: &str, behaviour: &str) -> miette::Result<()> {
    for input in [
        Input::RegisterRelease {
            version: version.into(),
            artifact: Some(behaviour.into()),
            config: BTreeMap::new(),
            gates: None,
        },
        Input::StartRollout {
            version: version.into(),
        },
    ] {
        shop.submit(Submission {
            input,
            actor: "demo".into(),
            reason: None,
            key: None,
        })
        .await
        .map_err(|e| miette!("{e}"))?;
    }
    Ok(())
}

async fn wait(
    shop: &ServiceHandle,
    secs: u64,
    done: impl Fn(&backout_server::controller::ServiceView) -> bool,
) -> Option<()> {
    let mut rx = shop.watch();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if done(&rx.borrow_and_update()) {
            return Some(());
        }
        tokio::select! {
            r = rx.changed() => r.ok()?,
            () = tokio::time::sleep_until(deadline) => return None,
        }
    }
}

/// Prints one line per second of traffic until `done` holds.
async fn follow(
    shop: &ServiceHandle,
    seconds: &mut mpsc::UnboundedReceiver<Tally>,
    total: &mut Tally,
    t0: i64,
    secs: u64,
    done: impl Fn(&backout_server::controller::ServiceView) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let view = shop.view();
        if done(&view) {
            return true;
        }
        tokio::select! {
            Some(t) = seconds.recv() => {
                add(total, &t);
                print_second(&shop.view(), &t, t0);
            }
            () = tokio::time::sleep_until(deadline) => return false,
        }
    }
}

fn add(total: &mut Tally, t: &Tally) {
    total.sent += t.sent;
    total.failed += t.failed;
    for (k, v) in &t.ok {
        *total.ok.entry(k.clone()).or_default() += v;
    }
    for (k, v) in &t.errors {
        *total.errors.entry(k.clone()).or_default() += v;
    }
}

fn print_second(view: &backout_server::controller::ServiceView, t: &Tally, t0: i64) {
    let mut versions: Vec<&String> = t.ok.keys().chain(t.errors.keys()).collect();
    versions.sort();
    versions.dedup();
    let per: Vec<String> = versions
        .iter()
        .map(|v| {
            let ok = t.ok.get(*v).copied().unwrap_or(0);
            let err = t.errors.get(*v).copied().unwrap_or(0);
            format!("{v} {:>3} req {:>4.1}% err", ok + err, pct(err, ok + err))
        })
        .collect();
    let verdict = view
        .decision
        .as_ref()
        .map_or("warming up".to_string(), |d| {
            serde_json::to_value(d.verdict)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        });
    let weight = view
        .state
        .route
        .as_ref()
        .map_or(0.0, |r| r.weight.as_percent());
    println!(
        "{}   canary {:>5.1}%  {}  judge: {verdict}",
        since(t0, now_ms()),
        weight,
        per.join(" | ")
    );
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// When the driver reported v2's instance started.
fn started_ms(store: &Arc<dyn Store>, version: &str) -> Option<i64> {
    let events = store.read_service("shop", 0, 100_000).ok()?;
    events
        .iter()
        .filter(|e| e.kind == "driver.instances" && e.body["version"] == version)
        .filter_map(|e| e.body["instances"][0]["started_at_ms"].as_i64())
        .next()
}

/// The story of v2 as the event log tells it.
fn print_timeline(store: &Arc<dyn Store>, t0: i64, from: i64) -> miette::Result<()> {
    let events = store
        .read_service("shop", 0, 100_000)
        .map_err(|e| miette!("{e}"))?;
    println!("\ntimeline of v2 (from the event log):");
    for e in events.iter().filter(|e| e.at_ms >= from) {
        let line = match e.kind.as_str() {
            "action.notify" => e.body["message"].as_str().map(str::to_owned),
            "input.verdict" if e.body["verdict"] != "insufficient" => Some(format!(
                "judge: {} — {}",
                e.body["verdict"].as_str().unwrap_or_default(),
                e.body["reason"].as_str().unwrap_or_default()
            )),
            "input.route_applied" => Some(format!(
                "proxy switched (generation {}): canary {} at {}%",
                e.body["generation"],
                e.body["canary"].as_str().unwrap_or("none"),
                e.body["weight_permille"].as_f64().unwrap_or(0.0) / 10.0
            )),
            "input.torn_down" => Some(format!(
                "{} instances stopped",
                e.body["version"].as_str().unwrap_or_default()
            )),
            "input.recovered" => Some("errors back at stable's level: rollback verified".into()),
            _ => None,
        };
        if let Some(line) = line {
            println!("  {} #{:<4} {line}", since(t0, e.at_ms), e.seq);
        }
    }
    Ok(())
}

fn print_mttr(r: &RollbackRecord, failing_from: i64) {
    let b = r.breakdown();
    let s = |ms: Option<i64>| ms.map_or("-".to_string(), |m| format!("{:.3}s", m as f64 / 1000.0));
    println!(
        "\nMTTR of the rollback ({} → {}):",
        r.from_version, r.to_version
    );
    println!(
        "  detect  {:>8}  regression start (judge's estimate) → rollback verdict",
        s(b.detect_ms)
    );
    println!("  decide  {:>8}  verdict → rollback action", s(b.decide_ms));
    println!(
        "  act     {:>8}  action → proxy switched to 100% stable (goal ≤ 10 ms)",
        s(b.act_ms)
    );
    println!(
        "  verify  {:>8}  switch → canary stopped and errors back to normal",
        s(b.verify_ms)
    );
    println!("  total   {:>8}", s(b.total_ms));
    if let Some(onset) = r.onset_ms {
        println!(
            "  (the judge dated the start of the regression {:+.1}s from when v2 really began failing)",
            (onset - failing_from) as f64 / 1000.0
        );
    }
}
