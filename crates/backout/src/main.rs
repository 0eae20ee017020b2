//! The `backout` binary: parses the command line and hands each subcommand to
//! the crate that owns the work. It holds no logic of its own.

use clap::{Parser, Subcommand};

mod cmd;

#[derive(Debug, Parser)]
#[command(
    name = "backout",
    version,
    about = "Progressive delivery with a back button that works"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Each variant lives in its own module under `cmd/`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Print version information.
    Version,
    /// Canary analysis on recorded data (`replay`).
    #[command(subcommand)]
    Analysis(cmd::analysis::Command),
    /// Run the judge and peers' rules over seeded synthetic rollouts.
    Simulate(cmd::simulate::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Version => cmd::version::run(),
        Command::Analysis(c) => cmd::analysis::run(c),
        Command::Simulate(a) => cmd::simulate::run(a),
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            std::process::ExitCode::from(2)
        }
    }
}
