//! `backout simulate`: the judge and peer rules over seeded synthetic rollouts.

use backout_judge::{AnalysisConfig, Judge};
use backout_sim::report::{goals, goals_table, simulate, table};
use backout_sim::run::Tolerances;
use clap::{Args as ClapArgs, ValueEnum};
use miette::{IntoDiagnostic, miette};
use std::path::PathBuf;
use std::process::ExitCode;

/// Output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    /// A table per family and rule, then the goals.
    Text,
    /// One JSON document: reports and goals.
    Json,
}

/// Arguments of `backout simulate`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Runs per scenario family.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// Seed of the whole simulation; the same seed gives the same output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Only these families (repeat or comma-separate); all by default.
    #[arg(long, value_delimiter = ',')]
    pub family: Vec<String>,
    /// Window sizes to feed the rules, side by side (comma-separated, whole
    /// seconds: `1s,10s,60s`): the proxy reports 1-second windows,
    /// Prometheus queries 10–60 s ones.
    #[arg(long, value_delimiter = ',', default_value = "1s", value_parser = parse_window)]
    pub window: Vec<u32>,
    /// The analysis section of a service spec (YAML) to judge with.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Also write the JSON document to this file (one run, both formats).
    #[arg(long, value_name = "FILE")]
    pub json_file: Option<PathBuf>,
}

/// Runs the simulation and prints it.
pub fn run(args: Args) -> miette::Result<ExitCode> {
    let (config, judge) = match &args.config {
        Some(path) => super::analysis::load_config(path)?,
        None => (AnalysisConfig::default(), Judge::with_defaults()),
    };
    if args.runs == 0 {
        return Err(miette!("--runs must be at least 1"));
    }
    let all = backout_sim::families();
    for name in &args.family {
        if !all.iter().any(|f| f.name == name.as_str()) {
            let names: Vec<&str> = all.iter().map(|f| f.name).collect();
            return Err(miette!(
                "--family {name}: no such scenario family; choose from {}",
                names.join(", ")
            ));
        }
    }
    let chosen: Vec<_> = all
        .into_iter()
        .enumerate()
        .filter(|(_, f)| args.family.is_empty() || args.family.iter().any(|n| n == f.name))
        .collect();
    let reports = simulate(
        &chosen,
        &judge,
        Tolerances::from_config(&config),
        args.runs,
        args.seed,
        &args.window,
    );
    let goals = goals(&reports);
    let doc = || {
        let doc = serde_json::json!({
            "seed": args.seed,
            "runs": args.runs,
            "windows_s": args.window,
            "families": reports,
            "goals": goals,
        });
        serde_json::to_string_pretty(&doc).into_diagnostic()
    };
    if let Some(path) = &args.json_file {
        std::fs::write(path, doc()? + "\n")
            .map_err(|e| miette!("--json-file {}: cannot write: {e}", path.display()))?;
    }
    match args.output {
        Output::Text => {
            print!("{}", table(&reports));
            println!();
            print!("{}", goals_table(&goals));
        }
        Output::Json => println!("{}", doc()?),
    }
    Ok(ExitCode::SUCCESS)
}

/// A window size: whole seconds, written `10s`, `1m` or `10`.
fn parse_window(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let (number, unit) = match t.strip_suffix('m') {
        Some(n) => (n, 60),
        None => (t.strip_suffix('s').unwrap_or(t), 1),
    };
    let seconds = number
        .trim()
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| {
            format!("`{text}` is not a window size; write whole seconds such as 1s, 10s or 1m")
        })?;
    if !(1..=600).contains(&seconds) {
        return Err(format!("`{text}`: a window must be from 1s to 10m"));
    }
    Ok(seconds)
}
