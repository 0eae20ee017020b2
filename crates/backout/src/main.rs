//! The `backout` binary: parses the command line and hands each subcommand to
//! the crate that owns the work. It holds no logic of its own.

use clap::{Parser, Subcommand};

/// One allocator for the whole process; see the workspace Cargo.toml for why.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod cmd;
mod logging;
mod signal;

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
    /// A one-minute tour: two versions, the proxy, load, a bad canary, a rollback.
    Demo(cmd::demo::Args),
    /// Run the traffic switch: quick mode from flags, or service files.
    Proxy(cmd::proxy::Args),
    /// The demo application, as its own process (used by the demo and tests).
    #[command(hide = true)]
    DemoApp(cmd::demo_app::Args),
    /// Canary analysis on recorded data (`replay`).
    #[command(subcommand)]
    Analysis(cmd::analysis::Command),
    /// Run the judge and peers' rules over seeded synthetic rollouts.
    Simulate(cmd::simulate::Args),
    /// The standalone flag server (`serve`).
    #[command(subcommand)]
    Flags(cmd::flags::FlagsCommand),
    /// Manage feature flags: list, set, kill, stale, history.
    #[command(subcommand)]
    Flag(cmd::flags::FlagCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Version => cmd::version::run(),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Proxy(a) => cmd::proxy::run(a),
        Command::DemoApp(a) => cmd::demo_app::run(a),
        Command::Analysis(c) => cmd::analysis::run(c),
        Command::Simulate(a) => cmd::simulate::run(a),
        Command::Flags(c) => cmd::flags::serve(c),
        Command::Flag(c) => cmd::flags::run(c),
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            std::process::ExitCode::from(2)
        }
    }
}
