//! Tokens in requests: `Authorization: Bearer …` (the scheme in any case,
//! as RFC 9110 says it is case-insensitive) or `X-API-Key: …`, and a record
//! of failed attempts: logged without the secret and counted per reason,
//! so a brute-force attempt shows on a dashboard.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;
use http::header::AUTHORIZATION;

/// What a request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// No `Authorization` or `X-API-Key` header.
    Nothing,
    /// A header that holds no usable token (another scheme, no token, not
    /// text).
    Malformed,
    /// The token, trimmed.
    Token(&'a str),
}

/// Reads the token from `Authorization: Bearer TOKEN` (any case of
/// `Bearer`) or, when that header is absent, `X-API-Key: TOKEN`.
pub fn presented(headers: &HeaderMap) -> Presented<'_> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let Ok(text) = value.to_str() else {
            return Presented::Malformed;
        };
        let text = text.trim();
        let (scheme, token) = text.split_once([' ', '\t']).unwrap_or((text, ""));
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Presented::Malformed;
        }
        return Presented::Token(token);
    }
    match headers.get("x-api-key").map(|v| v.to_str()) {
        None => Presented::Nothing,
        Some(Ok(t)) if !t.trim().is_empty() => Presented::Token(t.trim()),
        Some(_) => Presented::Malformed,
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No credentials on an endpoint that needs them.
    Missing,
    /// A header that holds no usable token.
    Malformed,
    /// A token that is not known (or was revoked).
    Unknown,
    /// A known token without the role the endpoint needs.
    Forbidden,
}

impl Failure {
    const ALL: [Failure; 4] = [
        Failure::Missing,
        Failure::Malformed,
        Failure::Unknown,
        Failure::Forbidden,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Malformed => "malformed",
            Failure::Unknown => "unknown",
            Failure::Forbidden => "forbidden",
        }
    }
}

/// Failed attempts on one listener, counted per reason.
#[derive(Debug)]
pub struct Failures {
    listener: &'static str,
    counts: [AtomicU64; 4],
}

impl Failures {
    /// `listener` names it in logs and metrics (`api`, `admin`, `flags`).
    pub fn new(listener: &'static str) -> Failures {
        Failures {
            listener,
            counts: Default::default(),
        }
    }

    /// Logs a failed attempt (never the secret: at most the name of the
    /// token that lacked the role) and counts it.
    pub fn record(
        &self,
        failure: Failure,
        peer: Option<SocketAddr>,
        method: &str,
        path: &str,
        who: Option<&str>,
    ) {
        self.counts[failure as usize].fetch_add(1, Ordering::Relaxed);
        let peer = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
        tracing::warn!(
            listener = %self.listener,
            reason = %failure.as_str(),
            peer = %peer,
            token = %who.unwrap_or("-"),
            "authentication failed: {method} {path}"
        );
    }

    /// How many attempts failed for `failure`.
    pub fn count(&self, failure: Failure) -> u64 {
        self.counts[failure as usize].load(Ordering::Relaxed)
    }

    /// The counters in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP backout_auth_failures_total Requests refused for missing, malformed, unknown or insufficient credentials.\n\
             # TYPE backout_auth_failures_total counter\n",
        );
        for f in Failure::ALL {
            let _ = writeln!(
                out,
                "backout_auth_failures_total{{listener=\"{}\",reason=\"{}\"}} {}",
                self.listener,
                f.as_str(),
                self.count(f)
            );
        }
        out
    }
}

/// A fixed set of accepted tokens (the flag server's `--token`, the admin
/// API's `--admin-token-file`), with the failed attempts to present one.
#[derive(Debug, Clone)]
pub struct Tokens {
    accepted: std::sync::Arc<Vec<String>>,
    failures: std::sync::Arc<Failures>,
}

impl Tokens {
    /// `listener` names the listener in logs and metrics. Empty tokens are
    /// dropped; with none left, [`Tokens::is_open`] is true.
    pub fn new(listener: &'static str, tokens: Vec<String>) -> Tokens {
        Tokens {
            accepted: std::sync::Arc::new(tokens.into_iter().filter(|t| !t.is_empty()).collect()),
            failures: std::sync::Arc::new(Failures::new(listener)),
        }
    }

    /// No token is configured: everyone may call.
    pub fn is_open(&self) -> bool {
        self.accepted.is_empty()
    }

    /// The failed attempts so far, for `/metrics`.
    pub fn failures(&self) -> &std::sync::Arc<Failures> {
        &self.failures
    }

    /// Checks the request headers: `Ok` when allowed, otherwise why not.
    /// Does not record the failure (see [`Failures::record`]).
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Failure> {
        if self.is_open() {
            return Ok(());
        }
        match presented(headers) {
            Presented::Nothing => Err(Failure::Missing),
            Presented::Malformed => Err(Failure::Malformed),
            Presented::Token(p) => {
                let accepted = self
                    .accepted
                    .iter()
                    .any(|t| constant_time_eq(p.as_bytes(), t.as_bytes()));
                if accepted {
                    Ok(())
                } else {
                    Err(Failure::Unknown)
                }
            }
        }
    }
}

/// Compares without stopping at the first difference, so the time taken
/// says nothing about how much of a token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads a token file: one token per line; blank lines and lines starting
/// with `#` are skipped. A token shorter than 16 characters is refused, as
/// it could be guessed.
pub fn read_token_file(path: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.len() < 16 {
            return Err(format!(
                "{}:{}: a token of {} characters is too easy to guess; use at least 16 random characters (e.g. `openssl rand -hex 32`)",
                path.display(),
                i + 1,
                line.len()
            ));
        }
        tokens.push(line.to_string());
    }
    if tokens.is_empty() {
        return Err(format!(
            "the token file {} holds no token; write one per line",
            path.display()
        ));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn check(headers: &[(&'static str, &str)], expected: Presented<'_>) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        assert_eq!(presented(&map), expected, "{headers:?}");
    }

    #[test]
    fn schemes() {
        check(&[], Presented::Nothing);
        check(&[("authorization", "Bearer s3")], Presented::Token("s3"));
        check(&[("authorization", "bearer s3")], Presented::Token("s3"));
        check(&[("authorization", "BEARER s3")], Presented::Token("s3"));
        check(&[("authorization", "BeArEr   s3 ")], Presented::Token("s3"));
        check(&[("authorization", "Basic czM=")], Presented::Malformed);
        check(&[("authorization", "Bearer")], Presented::Malformed);
        check(&[("authorization", "Bearers3")], Presented::Malformed);
        check(&[("x-api-key", "s3")], Presented::Token("s3"));
        check(&[("x-api-key", " ")], Presented::Malformed);
        // The Authorization header decides when both are sent.
        check(
            &[("authorization", "Basic x"), ("x-api-key", "s3")],
            Presented::Malformed,
        );
    }

    #[test]
    fn failures_are_counted_per_reason() {
        let f = Failures::new("api");
        f.record(Failure::Unknown, None, "GET", "/x", None);
        f.record(Failure::Unknown, None, "GET", "/x", None);
        f.record(Failure::Forbidden, None, "POST", "/y", Some("ci"));
        let text = f.render();
        assert!(
            text.contains("backout_auth_failures_total{listener=\"api\",reason=\"unknown\"} 2"),
            "{text}"
        );
        assert!(text.contains("reason=\"forbidden\"} 1"), "{text}");
        assert!(text.contains("reason=\"missing\"} 0"), "{text}");
    }
}
