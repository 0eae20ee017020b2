use std::process::ExitCode;

pub fn run() -> miette::Result<ExitCode> {
    println!("backout {}", env!("CARGO_PKG_VERSION"));
    Ok(ExitCode::SUCCESS)
}
