//! Options every command with a control listener shares: the API of
//! `backout up`, the admin API of `backout proxy` and `backout flags serve`.

use backout_listen::{ErrorStyle, Limits, Settings};
use clap::Args as ClapArgs;

#[derive(Debug, Clone, ClapArgs)]
#[command(next_help_heading = "API listener")]
pub struct ListenArgs {
    /// Connections the API serves at once; one more is answered 503.
    /// Long-lived ones (change streams, proxies following the control
    /// plane) count, so leave room for the whole fleet.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_MAX_CONNECTIONS)]
    pub api_max_connections: usize,
    /// How long a client may take to send a request's head; a keep-alive
    /// connection idle this long is closed too.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub api_header_timeout: backout_spec::Duration,
}

fn duration(text: &str) -> Result<backout_spec::Duration, String> {
    backout_spec::Duration::parse(text).and_then(|d| {
        if d.get().is_zero() {
            Err("must be above zero".into())
        } else {
            Ok(d)
        }
    })
}

impl ListenArgs {
    /// The listener's settings, with errors in `errors`' shape.
    pub fn settings(&self, errors: ErrorStyle) -> Settings {
        Settings {
            limits: Limits {
                max_connections: self.api_max_connections.max(1),
                header_timeout: self.api_header_timeout.get(),
                ..Limits::default()
            },
            errors,
            ..Settings::default()
        }
    }
}
