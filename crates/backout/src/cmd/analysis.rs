//! `backout analysis`: run the judge on recorded data.

mod config_file;
mod trace;

pub use config_file::load as load_config;

use backout_judge::Judge;
use clap::Subcommand;
use miette::IntoDiagnostic;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// What `backout analysis` can do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Feed a recorded trace through the judge tick by tick; print one JSON
    /// verdict per line.
    ///
    /// The trace has one JSON object per line, one line per tick:
    /// {"t": 10, "baseline": {"requests": 9012, "errors": 9, "latency_ms": [41.2, ...]},
    /// "canary": {"requests": 1003, "errors": 2, "latency_ms": [...]}}
    /// where t is seconds since the canary started and counts are for that
    /// tick only. Use - to read standard input.
    Replay {
        /// The trace file (JSON lines).
        trace: PathBuf,
        /// The analysis section of a service spec (YAML); defaults apply without it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Runs an `analysis` subcommand.
pub fn run(command: Command) -> miette::Result<ExitCode> {
    match command {
        Command::Replay { trace, config } => replay(&trace, config.as_deref()),
    }
}

fn replay(trace: &std::path::Path, config: Option<&std::path::Path>) -> miette::Result<ExitCode> {
    let mut judge = match config {
        Some(path) => load_config(path)?.1,
        None => Judge::with_defaults(),
    };
    let windows = trace::read(trace)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for window in &windows {
        let decision = judge.observe(window);
        serde_json::to_writer(&mut out, &decision).into_diagnostic()?;
        out.write_all(b"\n").into_diagnostic()?;
    }
    out.flush().into_diagnostic()?;
    Ok(ExitCode::SUCCESS)
}
