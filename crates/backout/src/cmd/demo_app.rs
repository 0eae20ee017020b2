//! `backout demo-app`: the demo application as its own process, for the
//! process driver, the demo and tests that need real upstream processes.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use backout_proxy::demo_app::{Control, DemoApp};
use clap::{Args as ClapArgs, Parser};
use miette::{IntoDiagnostic, miette};

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Port to listen on (127.0.0.1).
    #[arg(long)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Version name the app reports (body and `x-demo-version`).
    #[arg(long)]
    version: String,
    #[command(flatten)]
    behaviour: Behaviour,
    /// The behaviour options below in one string instead, e.g.
    /// `--error-rate 0.05 --latency 2ms`. The demo passes a release's
    /// artifact here as one argument, and the app reads its options out of
    /// it.
    #[arg(
        long = "behaviour",
        value_name = "OPTIONS",
        allow_hyphen_values = true,
        conflicts_with_all = ["error_rate", "latency", "tail", "degrade_after", "unready", "wedge_after", "database_url", "reads"]
    )]
    behaviour_text: Option<String>,
}

/// What makes one demo release differ from another.
#[derive(Debug, ClapArgs)]
struct Behaviour {
    /// Share of requests (0 to 1) answered with 500.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Mean added latency per request, e.g. `5ms`.
    #[arg(long, default_value = "0ms")]
    latency: String,
    /// Share of requests (0 to 1) that take ten times the mean.
    #[arg(long, default_value_t = 0.0)]
    tail: f64,
    /// Behave well for this long after start, then apply the error rate,
    /// latency and tail (a release that goes bad under load), e.g. `5s`.
    #[arg(long)]
    degrade_after: Option<String>,
    /// Never pass the readiness probe (`/ready` answers 503): a release
    /// that starts but cannot take traffic.
    #[arg(long)]
    unready: bool,
    /// Fail the liveness probe (`/live` and `/ready` answer 503) this long
    /// after start, without exiting: a process that wedges, which only a
    /// restart cures, e.g. `10s`.
    #[arg(long)]
    wedge_after: Option<String>,
    /// A PostgreSQL database the app reads (with `--reads`): an app whose
    /// readiness depends on its schema, for `backout check schema`.
    #[arg(long, value_name = "URL", requires = "reads")]
    database_url: Option<String>,
    /// `TABLE.COLUMN` the app reads; repeatable. `/ready` answers 503 while
    /// one of them is missing from the database (checked every 250 ms).
    #[arg(long, value_name = "TABLE.COLUMN", requires = "database_url")]
    reads: Vec<String>,
}

/// Watches the columns the app reads and sets its readiness: ready only
/// while every one of them exists. The query takes the names as
/// parameters, so they never become SQL.
fn watch_schema(url: String, reads: Vec<(String, String)>, control: Arc<Control>, unready: bool) {
    std::thread::spawn(move || {
        let mut client: Option<postgres::Client> = None;
        loop {
            if client.as_ref().is_none_or(postgres::Client::is_closed) {
                client = postgres::Client::connect(&url, postgres::NoTls).ok();
            }
            let ok = client.as_mut().is_some_and(|c| {
                reads.iter().all(|(table, column)| {
                    c.query_one(
                        "SELECT count(*) FROM information_schema.columns \
                         WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2",
                        &[table, column],
                    )
                    .is_ok_and(|row| row.get::<_, i64>(0) > 0)
                })
            });
            control.set_ready(ok && !unready);
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    });
}

/// `--behaviour`'s string, read as the options it holds.
#[derive(Debug, Parser)]
#[command(name = "--behaviour", no_binary_name = true)]
struct BehaviourText {
    #[command(flatten)]
    behaviour: Behaviour,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let version = args.version;
    let (port, host) = (args.port, args.host);
    let args = match &args.behaviour_text {
        Some(text) => {
            let words = shlex::split(text)
                .ok_or_else(|| miette!("--behaviour {text:?}: a quote is never closed"))?;
            BehaviourText::try_parse_from(words)
                .map_err(|e| miette!("--behaviour {text:?}: {e}"))?
                .behaviour
        }
        None => args.behaviour,
    };
    for (flag, v) in [("--error-rate", args.error_rate), ("--tail", args.tail)] {
        if !(0.0..=1.0).contains(&v) {
            return Err(miette!("{flag}: a share from 0 to 1; got {v}"));
        }
    }
    let latency =
        backout_spec::Duration::parse(&args.latency).map_err(|e| miette!("--latency: {e}"))?;
    let degrade_after = args
        .degrade_after
        .as_deref()
        .map(|d| backout_spec::Duration::parse(d).map_err(|e| miette!("--degrade-after: {e}")))
        .transpose()?;
    let wedge_after = args
        .wedge_after
        .as_deref()
        .map(|d| backout_spec::Duration::parse(d).map_err(|e| miette!("--wedge-after: {e}")))
        .transpose()?;
    let mut reads = Vec::new();
    for r in &args.reads {
        let (table, column) = r.split_once('.').ok_or_else(|| {
            miette!("--reads {r:?}: write TABLE.COLUMN, e.g. --reads orders.note")
        })?;
        reads.push((table.to_string(), column.to_string()));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    runtime.block_on(async move {
        let control = Arc::new(Control::new(&version));
        control.set_ready(!args.unready);
        if let Some(url) = args.database_url.clone() {
            // Not ready until the schema has been looked at.
            control.set_ready(false);
            watch_schema(url, reads, Arc::clone(&control), args.unready);
        }
        let (error_rate, tail) = (args.error_rate, args.tail);
        let apply = move |c: &Control| {
            c.set_error_rate(error_rate);
            c.set_latency(latency.get());
            c.set_tail(tail);
        };
        if degrade_after.is_none() {
            apply(&control);
        }
        let app = DemoApp::start(SocketAddr::new(host, port), Arc::clone(&control))
            .await
            .into_diagnostic()?;
        println!("demo-app {version} listening on http://{}", app.addr);
        if let Some(after) = degrade_after {
            let c = Arc::clone(&control);
            tokio::spawn(async move {
                tokio::time::sleep(after.get()).await;
                apply(&c);
            });
        }
        if let Some(after) = wedge_after {
            let c = Arc::clone(&control);
            tokio::spawn(async move {
                tokio::time::sleep(after.get()).await;
                c.set_live(false);
            });
        }
        crate::signal::wait_for_shutdown().await;
        app.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}
