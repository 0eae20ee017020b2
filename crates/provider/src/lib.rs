//! Metric providers: where the judge's numbers come from.
//!
//! A provider answers one question: "for this service, what did baseline
//! and canary do between `since` and `until`?", as a list of windows per
//! group. The shape is the proxy's own (one window per second with
//! requests, errors and a latency sample), so the proxy's provider, the
//! Prometheus provider and a user's webhook all feed the judge the same
//! way; external providers usually fill only `metrics` (cpu, memory...).
//!
//! Providers do I/O and nothing else: no judging, no retries hidden from
//! the controller, and every error names the provider, the URL and what to
//! do about it.

mod prometheus;
mod proxy;
mod webhook;

pub use prometheus::{PrometheusProvider, PrometheusQuery};
pub use proxy::{ErrorClasses, ProxyProvider, series as proxy_series};
pub use webhook::WebhookProvider;

use backout_judge::{GroupWindow, Window};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// What to fetch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowQuery {
    /// The service, as named in its spec.
    pub service: String,
    /// Start of the span, Unix milliseconds, inclusive.
    pub since_ms: i64,
    /// End of the span, Unix milliseconds, exclusive.
    pub until_ms: i64,
}

/// One group's measurements over one window.
///
/// Unknown fields are ignored so a newer peer can add some; missing counts
/// are zero, because a metrics-only provider has none to give.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderWindow {
    /// Window start, Unix milliseconds.
    pub start_ms: i64,
    /// Requests completed in the window.
    #[serde(default)]
    pub requests: u64,
    /// Requests that count as errors.
    #[serde(default)]
    pub errors: u64,
    /// A uniform sample of latencies (ms).
    #[serde(default)]
    pub latency_ms: Vec<f64>,
    /// Named extra metrics (cpu, memory, ready, breaker_open...).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// Windows per group, as a provider returns them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupSeries {
    /// The stable version.
    pub baseline: Vec<ProviderWindow>,
    /// The version under test.
    pub canary: Vec<ProviderWindow>,
}

impl GroupSeries {
    /// Folds everything into one judge tick at `t` seconds since the canary
    /// started: counts and samples add up, metrics keep their latest value.
    /// Several providers' series can be folded into the same tick.
    pub fn fold_into(&self, window: &mut Window) {
        for (series, group) in [
            (&self.baseline, &mut window.baseline),
            (&self.canary, &mut window.canary),
        ] {
            let mut sorted: Vec<&ProviderWindow> = series.iter().collect();
            sorted.sort_by_key(|w| w.start_ms);
            for w in sorted {
                group.merge(&GroupWindow {
                    requests: w.requests,
                    errors: w.errors,
                    latency_ms: w.latency_ms.clone(),
                    metrics: w.metrics.clone(),
                });
            }
        }
    }
}

/// Why a provider could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Could not reach the provider at all.
    #[error(
        "{provider}: cannot connect to {url}: {detail}; check the address and that it is running"
    )]
    Connect {
        /// Provider name.
        provider: String,
        /// URL tried.
        url: String,
        /// Underlying error.
        detail: String,
    },
    /// No answer in time.
    #[error(
        "{provider}: {url} did not answer within {after:?}; raise the provider's timeout or check its load"
    )]
    Timeout {
        /// Provider name.
        provider: String,
        /// URL tried.
        url: String,
        /// The timeout.
        after: Duration,
    },
    /// An answer that is not a success.
    #[error("{provider}: {url} answered HTTP {status}: {body}")]
    Status {
        /// Provider name.
        provider: String,
        /// URL tried.
        url: String,
        /// HTTP status code.
        status: u16,
        /// Start of the body, for the reason.
        body: String,
    },
    /// A success whose body is not what was asked for.
    #[error("{provider}: {url} answered with an unreadable body: {detail}")]
    Decode {
        /// Provider name.
        provider: String,
        /// URL tried.
        url: String,
        /// What was wrong, where.
        detail: String,
    },
    /// The provider understood but the query is wrong for the judge.
    #[error("{provider}: query `{query}`: {detail}")]
    Query {
        /// Provider name.
        provider: String,
        /// The query.
        query: String,
        /// What was wrong and what to do.
        detail: String,
    },
}

/// Something that can report baseline and canary measurements.
///
/// Object-safe (boxed futures) so the controller can hold a list of
/// `Box<dyn MetricProvider>` from a spec.
pub trait MetricProvider: Send + Sync {
    /// Name for errors and logs.
    fn name(&self) -> &str;
    /// Windows for `query`'s span.
    fn fetch<'a>(
        &'a self,
        query: &'a WindowQuery,
    ) -> BoxFuture<'a, Result<GroupSeries, ProviderError>>;
}

/// Maps a reqwest failure to the error that says what to do.
fn request_error(
    provider: &str,
    url: &str,
    timeout: Duration,
    e: &reqwest::Error,
) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout {
            provider: provider.to_owned(),
            url: url.to_owned(),
            after: timeout,
        }
    } else {
        ProviderError::Connect {
            provider: provider.to_owned(),
            url: url.to_owned(),
            detail: std::error::Error::source(e).map_or_else(|| e.to_string(), |s| s.to_string()),
        }
    }
}

/// The first bytes of a body, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.chars().count() > 300 {
        format!("{}…", trimmed.chars().take(300).collect::<String>())
    } else {
        trimmed.to_owned()
    }
}
