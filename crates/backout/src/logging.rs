//! Logs go to stderr, filtered by `RUST_LOG` (default: info for backout,
//! warnings for everything else), so stdout stays for results.

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,backout=info,backout_proxy=info")
    });
    // Colours only for a person at a terminal: escape codes in a redirected
    // log file or a journal are noise. NO_COLOR (no-color.org) turns them
    // off on a terminal too.
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_ansi(ansi)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
