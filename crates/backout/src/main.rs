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
// Parsed once per process: boxing the large variants would save nothing.
#[allow(clippy::large_enum_variant)]
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
    /// Run the control plane (API, controller, judge, event log) with the proxy embedded.
    Up(cmd::up::Args),
    /// Register a release and roll it out (`--no-rollout` to only register).
    Release(cmd::client::ReleaseArgs),
    /// Roll out a release registered earlier.
    Rollout(cmd::client::ReleaseArgs),
    /// Where a service's rollout stands: step, weights, verdict, instances.
    Status(cmd::client::StatusArgs),
    /// Pass a manual gate (an `approve` step, an open pause, an inconclusive analysis).
    Approve(cmd::client::ServiceArgs),
    /// Hold the rollout where it is.
    Pause(cmd::client::ServiceArgs),
    /// Lift a pause.
    Resume(cmd::client::ServiceArgs),
    /// Stop the rollout and send everything back to stable (not an incident).
    Abort(cmd::client::ServiceArgs),
    /// Break-glass: canary to 0% now; `--to VERSION` restores a pinned known-good release.
    Rollback(cmd::client::RollbackArgs),
    /// Skip the current step; `--full` goes straight to 100% (audited).
    Promote(cmd::client::PromoteArgs),
    /// Hold the canary at a share of the traffic by hand (pauses there until `resume`).
    Weight(cmd::client::WeightArgs),
    /// Releases, outcomes, rollbacks and MTTR.
    History(cmd::client::ServiceArgs),
    /// The event log: who did what, when and why.
    Events(cmd::client::EventsArgs),
    /// Turn automatic rollback off for a while (audited) or back on.
    AutoRollback(cmd::client::AutoRollbackArgs),
    /// API tokens: create, list, revoke.
    #[command(subcommand)]
    Token(cmd::client::TokenCommand),
    /// Release gates: what migrations and API contracts do to a rollback.
    #[command(subcommand)]
    Check(cmd::check::Command),
    /// A release's gate findings: accept them with a reason.
    #[command(subcommand)]
    Gates(cmd::client::GatesCommand),
}

fn main() -> std::process::ExitCode {
    quiet_broken_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `backout check`'s exit statuses are verdicts, and clap's 2 for a
        // usage mistake would read as `unsafe`; 3 is check's "could not run".
        Err(e) if e.use_stderr() && std::env::args().nth(1).as_deref() == Some("check") => {
            let _ = e.print();
            return std::process::ExitCode::from(3);
        }
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Version => cmd::version::run(),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Proxy(a) => cmd::proxy::run(a),
        Command::DemoApp(a) => cmd::demo_app::run(a),
        Command::Analysis(c) => cmd::analysis::run(c),
        Command::Simulate(a) => cmd::simulate::run(a),
        Command::Flags(c) => cmd::flags::serve(c),
        Command::Flag(c) => cmd::flags::run(c),
        Command::Up(a) => cmd::up::run(a),
        Command::Release(a) => cmd::client::release(a),
        Command::Rollout(a) => cmd::client::rollout(a),
        Command::Status(a) => cmd::client::status(a),
        Command::Approve(a) => cmd::client::approve(a),
        Command::Pause(a) => cmd::client::pause(a),
        Command::Resume(a) => cmd::client::resume(a),
        Command::Abort(a) => cmd::client::abort(a),
        Command::Rollback(a) => cmd::client::rollback(a),
        Command::Promote(a) => cmd::client::promote(a),
        Command::Weight(a) => cmd::client::weight(a),
        Command::History(a) => cmd::client::history(a),
        Command::Events(a) => cmd::client::events(a),
        Command::AutoRollback(a) => cmd::client::auto_rollback(a),
        Command::Token(c) => cmd::client::token(c),
        Command::Check(c) => cmd::check::run(c),
        Command::Gates(c) => cmd::client::gates(c),
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            std::process::ExitCode::from(2)
        }
    }
}

/// `backout events | head` closes the pipe early. Rust ignores SIGPIPE, so
/// `println!` panics instead of the process ending quietly the way Unix
/// tools do; this ends it quietly, with the status a shell reports for a
/// process stopped by SIGPIPE. Every other panic is reported as usual.
fn quiet_broken_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        report(info);
    }));
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every option that can carry a secret through the environment hides
    /// the value in `--help` (which shows `[env: NAME=value]` otherwise).
    #[test]
    fn help_never_shows_a_secret_from_the_environment() {
        fn walk(cmd: &clap::Command, path: &str, found: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let Some(env) = arg.get_env() else { continue };
                let name = env.to_string_lossy().to_ascii_uppercase();
                let secret = ["TOKEN", "SECRET", "PASSWORD", "KEY"]
                    .iter()
                    .any(|w| name.contains(w));
                if secret {
                    assert!(
                        arg.is_hide_env_values_set(),
                        "{path} --{}: the value of {name} shows in --help",
                        arg.get_id()
                    );
                    found.push(format!("{path} {name}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), found);
            }
        }
        let mut found = Vec::new();
        walk(&super::Cli::command(), "backout", &mut found);
        // The walk sees the options it guards.
        assert!(
            found.iter().any(|f| f.contains("BACKOUT_FLAGS_TOKEN")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|f| f.contains("BACKOUT_TOKEN")),
            "{found:?}"
        );
    }
}
