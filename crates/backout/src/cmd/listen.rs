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
    /// Serve the API over HTTPS with this certificate chain (PEM); it is
    /// loaded again when the file changes, so renewals need no restart.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
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
    /// The listener's settings, with errors in `errors`' shape; fails
    /// when the TLS files cannot be used.
    pub fn settings(&self, errors: ErrorStyle) -> miette::Result<Settings> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(
                backout_listen::Tls::new(backout_listen::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                })
                .map_err(|e| miette::miette!("--tls-cert/--tls-key: {e}"))?,
            ),
            _ => None,
        };
        Ok(Settings {
            limits: Limits {
                max_connections: self.api_max_connections.max(1),
                header_timeout: self.api_header_timeout.get(),
                ..Limits::default()
            },
            errors,
            tls,
            ..Settings::default()
        })
    }

    /// `https` or `http`, for the addresses the commands print.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
    }
}
