//! `backout demo`: a one-minute tour of the traffic switch on this machine,
//! with nothing else installed — two versions of a demo app, the proxy in
//! front, real load, a bad canary and a rollback through the admin API.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use backout_proxy::demo_app::{Control, DemoApp};
use backout_proxy::loadgen::{self, Tally};
use backout_proxy::{ProxyConfig, RunningProxy};
use backout_spec::{ServiceSpec, Source};
use bytes::Bytes;
use clap::Args as ClapArgs;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use miette::{IntoDiagnostic, miette};

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Requests per second the built-in load generator sends.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Seconds of traffic before and after the rollback.
    #[arg(long, default_value_t = 6)]
    seconds: u32,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    if args.rate == 0 || args.seconds == 0 {
        return Err(miette!("--rate and --seconds must be above zero"));
    }
    let runtime = tokio::runtime::Runtime::new().into_diagnostic()?;
    runtime.block_on(demo(args))
}

const SERVICE: &str = "name: shop
version_header: x-backout-version
probes:
  readiness: {path: /ready, period: 1s, timeout: 500ms}
pools:
  v1: {endpoints: [STABLE]}
  v2: {endpoints: [CANARY]}
route: {stable: v1, canary: v2, canary_weight: 10}
";

async fn demo(args: Args) -> miette::Result<ExitCode> {
    let local: SocketAddr = "127.0.0.1:0".parse().into_diagnostic()?;
    let v1 = Arc::new(Control::new("v1"));
    v1.set_latency(Duration::from_millis(4));
    let v2 = Arc::new(Control::new("v2"));
    v2.set_latency(Duration::from_millis(4));
    v2.set_error_rate(0.05);
    v2.set_tail(0.05);
    let app1 = DemoApp::start(local, Arc::clone(&v1))
        .await
        .into_diagnostic()?;
    let app2 = DemoApp::start(local, Arc::clone(&v2))
        .await
        .into_diagnostic()?;

    let yaml = SERVICE
        .replace("STABLE", &format!("http://{}", app1.addr))
        .replace("CANARY", &format!("http://{}", app2.addr));
    let spec = ServiceSpec::parse(&Source::new("demo.yaml", yaml)).map_err(miette::Report::new)?;
    let proxy = RunningProxy::start(ProxyConfig {
        services: vec![spec],
        default_listen: Some(local),
        admin: Some(local),
        drain_timeout: Duration::from_secs(5),
        workers: 0,
    })
    .await
    .into_diagnostic()?;
    let addr = proxy
        .bound(local)
        .ok_or_else(|| miette!("the proxy did not bind its listener"))?;
    let admin = proxy
        .admin
        .ok_or_else(|| miette!("the proxy did not bind its admin API"))?;

    println!("backout demo: the traffic switch\n");
    println!("  v1 (stable)  http://{}   healthy", app1.addr);
    println!(
        "  v2 (canary)  http://{}   5% of requests fail, slow tail",
        app2.addr
    );
    println!("  proxy        http://{addr}   service `shop`, canary weight 10%");
    println!("  admin API    http://{admin}   try: curl http://{admin}/admin/v1/services/shop\n");

    // Let the readiness probes see both versions before traffic starts.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    println!(
        "phase 1: {} req/s for {} s with 10% on the canary",
        args.rate, args.seconds
    );
    let url = format!("http://{addr}/");
    let before = loadgen::run(
        &url,
        "x-backout-version",
        args.rate,
        args.seconds,
        print_second,
    )
    .await;

    let windows = get_json(&format!("http://{admin}/admin/v1/services/shop/windows")).await?;
    let (canary_req, canary_err) = totals(&windows, "v2");
    let (stable_req, stable_err) = totals(&windows, "v1");
    println!(
        "\n  canary v2: {canary_err} errors in {canary_req} requests ({:.1}%)   stable v1: {stable_err} in {stable_req} ({:.1}%)",
        pct(canary_err, canary_req),
        pct(stable_err, stable_req)
    );

    println!("\nrolling back: POST /admin/v1/services/shop/rollback");
    let applied = post_json(&format!("http://{admin}/admin/v1/services/shop/rollback")).await?;
    println!(
        "  route generation {} in force; the pointer swap took {:.1} µs",
        applied["generation"],
        applied["swap_ns"].as_f64().unwrap_or(0.0) / 1000.0
    );

    println!(
        "\nphase 2: {} req/s for {} s after the rollback",
        args.rate, args.seconds
    );
    let after = loadgen::run(
        &url,
        "x-backout-version",
        args.rate,
        args.seconds,
        print_second,
    )
    .await;

    let events = get_json(&format!("http://{admin}/admin/v1/events")).await?;
    println!("\ntimeline (from the proxy's event log):");
    for e in events.as_array().into_iter().flatten() {
        println!(
            "  #{} {} {}",
            e["seq"],
            e["type"].as_str().unwrap_or("?"),
            describe(e)
        );
    }

    let canary_after =
        after.ok.get("v2").copied().unwrap_or(0) + after.errors.get("v2").copied().unwrap_or(0);
    println!("\nsummary");
    println!(
        "  before rollback: {} requests, {} served by the canary, {} errors",
        before.sent,
        before.ok.get("v2").copied().unwrap_or(0) + before.errors.get("v2").copied().unwrap_or(0),
        before.errors_total()
    );
    println!(
        "  after rollback:  {} requests, {} served by the canary, {} errors",
        after.sent,
        canary_after,
        after.errors_total()
    );
    println!(
        "  requests without any response: {}",
        before.failed + after.failed
    );
    println!(
        "\nnext: run the switch yourself with `backout proxy --stable URL --canary URL --canary-weight 10`"
    );

    proxy.shutdown().await;
    app1.stop().await;
    app2.stop().await;
    let healthy = canary_after == 0 && before.failed + after.failed == 0;
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_second(second: u32, t: &Tally) {
    let fmt = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "  {:>2}s  sent {:>4}   ok [{}]   5xx [{}]   no response {}",
        second + 1,
        t.sent,
        fmt(&t.ok),
        fmt(&t.errors),
        t.failed
    );
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn totals(windows: &serde_json::Value, version: &str) -> (u64, u64) {
    let mut req = 0;
    let mut err = 0;
    for v in windows["versions"].as_array().into_iter().flatten() {
        if v["version"] != version {
            continue;
        }
        for w in v["windows"].as_array().into_iter().flatten() {
            req += w["requests"].as_u64().unwrap_or(0);
            err += w["errors"].as_u64().unwrap_or(0);
        }
    }
    (req, err)
}

fn describe(e: &serde_json::Value) -> String {
    let s = |k: &str| e[k].as_str().unwrap_or("?").to_string();
    match e["type"].as_str() {
        Some("route_changed") => format!(
            "generation {}: stable {} canary {} at {}% ({})",
            e["generation"],
            s("stable"),
            s("canary"),
            e["canary_weight"],
            s("source")
        ),
        Some("probe_changed") => format!(
            "{} {} {} probe {}",
            s("version"),
            s("endpoint"),
            s("probe"),
            if e["passing"] == true {
                "passing"
            } else {
                "failing"
            }
        ),
        Some("pool_availability") => format!("{}: {}", s("version"), s("effect")),
        Some("breaker_transition") => format!(
            "{}: {} -> {} ({})",
            s("version"),
            s("from"),
            s("to"),
            s("reason")
        ),
        Some("endpoint_ejected") => format!(
            "{} {} ejected for {} ms",
            s("version"),
            s("endpoint"),
            e["for_ms"]
        ),
        _ => e.to_string(),
    }
}

async fn get_json(url: &str) -> miette::Result<serde_json::Value> {
    request(http::Method::GET, url).await
}

async fn post_json(url: &str) -> miette::Result<serde_json::Value> {
    request(http::Method::POST, url).await
}

async fn request(method: http::Method, url: &str) -> miette::Result<serde_json::Value> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .body(Empty::new())
        .into_diagnostic()?;
    let resp = client.request(req).await.into_diagnostic()?;
    let body = resp
        .into_body()
        .collect()
        .await
        .into_diagnostic()?
        .to_bytes();
    serde_json::from_slice(&body).into_diagnostic()
}
