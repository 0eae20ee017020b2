//! `backout check migrations|api|schema`: release gates from the command
//! line. The rules are in `backout-gates`; this file reads the files and
//! prints.
//!
//! Exit status: 0 safe, 1 risky or hygiene, 2 unsafe, 3 when the check could
//! not run (a path that cannot be read, a document that is not one, a
//! mistake on the command line: `main.rs` keeps clap's 2, which would read
//! as unsafe, away from `check`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use backout_gates::api::{self, ApiReport, Document};
use backout_gates::migrations::{self, Dialect, Finding, MigrationFile, MigrationReport};
use backout_gates::{Class, Verdict};
use clap::{Subcommand, ValueEnum};

mod schema;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check SQL migrations for what they do to a rollback of the code.
    ///
    /// Each PATH is a `.sql` file or a directory of them; a directory's
    /// files are applied in name order. Exit status: 0 safe, 1 risky or
    /// hygiene findings, 2 unsafe findings, 3 when a path cannot be read
    /// or the command line is wrong.
    Migrations {
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        #[arg(long, default_value = "postgres", value_parser = parse_dialect)]
        dialect: Dialect,
        /// Only files whose names sort at or after NAME are new in this
        /// release; earlier ones have run already and are not checked (a
        /// directory holding every migration since the first).
        #[arg(long, value_name = "NAME")]
        since: Option<String>,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Compare two OpenAPI documents (3.0 or 3.1) or JSON Schemas in both
    /// directions: N's clients against N-1's server and N-1's clients
    /// against N's server. Same exit statuses as `check migrations`.
    Api {
        /// The contract of the release running now (N-1).
        old: PathBuf,
        /// The contract of the release to roll out (N).
        new: PathBuf,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Run release VERSION (N-1) against a scratch PostgreSQL database with
    /// the migrations applied: readiness probes and smoke requests.
    Schema(schema::Args),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

fn parse_dialect(s: &str) -> Result<Dialect, String> {
    s.parse()
}

pub fn run(command: Command) -> miette::Result<ExitCode> {
    match command {
        Command::Migrations {
            paths,
            dialect,
            since,
            output,
        } => Ok(match read_migration_set(&paths) {
            Ok((mut files, mut unreadable)) => {
                if let Some(since) = &since {
                    let new = |name: &str| {
                        Path::new(name)
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().as_ref() >= since.as_str())
                    };
                    files.retain(|f| new(&f.name));
                    unreadable.retain(|f| new(&f.file));
                }
                let report = migrations::check_with(&files, dialect, unreadable);
                print_migrations(&report, output);
                exit(report.verdict)
            }
            Err(e) => could_not(&e),
        }),
        Command::Api { old, new, output } => {
            let load = |p: &Path| -> Result<Document, String> {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("{}: cannot read the file: {e}", p.display()))?;
                Document::parse(&p.display().to_string(), &text).map_err(|e| e.to_string())
            };
            Ok(match (load(&old), load(&new)) {
                (Ok(o), Ok(n)) => {
                    let report = api::check(&o, &n);
                    print_api(&report, output);
                    exit(report.verdict)
                }
                (Err(e), _) | (_, Err(e)) => could_not(&e),
            })
        }
        Command::Schema(args) => schema::run(args),
    }
}

fn exit(verdict: Verdict) -> ExitCode {
    ExitCode::from(verdict.exit_code())
}

fn could_not(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(3)
}

/// Reads every path: a file as it is, a directory's `.sql` files in name
/// order. Every file must be UTF-8 text.
pub(crate) fn read_migrations(paths: &[PathBuf]) -> Result<Vec<MigrationFile>, String> {
    let (files, unreadable) = read_migration_set(paths)?;
    match unreadable.first() {
        Some(f) => Err(format!("{}:{}:{}: {}", f.file, f.line, f.column, f.message)),
        None => Ok(files),
    }
}

/// [`read_migrations`] for `check migrations`: a file that is not UTF-8
/// text stays in the set with no text and comes back as a finding, so the
/// other files are still checked.
fn read_migration_set(paths: &[PathBuf]) -> Result<(Vec<MigrationFile>, Vec<Finding>), String> {
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    for p in paths {
        let meta =
            std::fs::metadata(p).map_err(|e| format!("{}: cannot read it: {e}", p.display()))?;
        let mut list = if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("{}: cannot list the directory: {e}", p.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|x| x == "sql") && f.is_file())
                .collect();
            entries.sort();
            if entries.is_empty() {
                return Err(format!(
                    "{}: the directory has no .sql files; pass the directory that holds the migrations",
                    p.display()
                ));
            }
            entries
        } else {
            vec![p.clone()]
        };
        for f in list.drain(..) {
            let bytes =
                std::fs::read(&f).map_err(|e| format!("{}: cannot read it: {e}", f.display()))?;
            let name = f.display().to_string();
            let sql = String::from_utf8(bytes).unwrap_or_else(|e| {
                unreadable.push(migrations::not_text(&name, e.as_bytes()));
                String::new()
            });
            files.push(MigrationFile { name, sql });
        }
    }
    Ok((files, unreadable))
}

fn counts(classes: impl Iterator<Item = Class>) -> String {
    let (mut u, mut r, mut h) = (0, 0, 0);
    for c in classes {
        match c {
            Class::Unsafe => u += 1,
            Class::Risky => r += 1,
            Class::Hygiene => h += 1,
        }
    }
    format!("{u} unsafe, {r} risky, {h} hygiene")
}

fn print_migrations(report: &MigrationReport, output: Output) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        ),
        Output::Text => {
            for f in &report.findings {
                println!(
                    "{}:{}:{}: {} [{}] {}",
                    f.file, f.line, f.column, f.class, f.rule, f.message
                );
                if !f.statement.is_empty() {
                    println!("    {}", f.statement);
                }
            }
            println!(
                "verdict: {} ({})",
                report.verdict,
                counts(report.findings.iter().map(|f| f.class))
            );
        }
    }
}

fn print_api(report: &ApiReport, output: Output) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        ),
        Output::Text => {
            for c in &report.changes {
                let pointer = if c.pointer.is_empty() {
                    "/"
                } else {
                    &c.pointer
                };
                println!("{} {} {pointer}", c.class, c.direction);
                println!("    {}", c.message);
            }
            println!(
                "verdict: {} ({})",
                report.verdict,
                counts(report.changes.iter().map(|c| c.class))
            );
        }
    }
}
