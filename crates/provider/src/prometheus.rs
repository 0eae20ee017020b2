//! Prometheus as a metric provider.

use super::{
    GroupSeries, MetricProvider, ProviderError, ProviderWindow, WindowQuery, request_error, snippet,
};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::time::Duration;

/// One metric, with a PromQL expression per group.
///
/// Each expression must return exactly one series (aggregate with `sum`,
/// `max`, `avg`...): the judge compares one number per group, and silently
/// picking one of several series would judge the wrong thing.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PrometheusQuery {
    /// Where the value goes: `requests` and `errors` fill the counts, any
    /// other name becomes a named metric (`cpu`, `memory`, `ready`...).
    pub metric: String,
    /// PromQL for the baseline.
    pub baseline: String,
    /// PromQL for the canary.
    pub canary: String,
}

/// Reads metrics from a Prometheus server's HTTP API.
///
/// With no `step` it runs instant queries at the end of the span (one
/// window per group, starting at `since`): right for rates already
/// computed over a range, `rate(x[1m])`. With a `step` it runs range
/// queries and returns one window per step.
#[derive(Clone, Debug)]
pub struct PrometheusProvider {
    name: String,
    address: String,
    queries: Vec<PrometheusQuery>,
    step: Option<Duration>,
    timeout: Duration,
    client: reqwest::Client,
}

/// The API's envelope: `{"status": "success", "data": ...}` or
/// `{"status": "error", "errorType": ..., "error": ...}`.
#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
    Scalar((f64, String)),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Sample {
    value: (f64, String),
}

#[derive(Deserialize)]
struct Series {
    values: Vec<(f64, String)>,
}

impl PrometheusProvider {
    /// A provider for the server at `address` (`http://host:9090`).
    pub fn new(
        name: &str,
        address: &str,
        queries: Vec<PrometheusQuery>,
        step: Option<Duration>,
        timeout: Duration,
    ) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| request_error(name, address, timeout, &e))?;
        Ok(PrometheusProvider {
            name: name.to_owned(),
            address: address.trim_end_matches('/').to_owned(),
            queries,
            step,
            timeout,
            client,
        })
    }

    /// Runs one PromQL expression; returns `(unix seconds, value)` points.
    async fn run(&self, promql: &str, q: &WindowQuery) -> Result<Vec<(f64, f64)>, ProviderError> {
        let secs = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
        let (path, params) = match self.step {
            None => (
                "query",
                vec![("query", promql.to_owned()), ("time", secs(q.until_ms))],
            ),
            Some(step) => (
                "query_range",
                vec![
                    ("query", promql.to_owned()),
                    ("start", secs(q.since_ms)),
                    ("end", secs(q.until_ms)),
                    ("step", format!("{:.3}", step.as_secs_f64())),
                ],
            ),
        };
        let base = format!("{}/api/v1/{path}", self.address);
        let url = reqwest::Url::parse_with_params(&base, &params).map_err(|e| {
            ProviderError::Connect {
                provider: self.name.clone(),
                url: base.clone(),
                detail: format!("not a valid URL ({e}); write the address as http://host:9090"),
            }
        })?;
        let fail = |e: reqwest::Error| request_error(&self.name, &base, self.timeout, &e);
        let response = self.client.get(url).send().await.map_err(fail)?;
        let status = response.status();
        let body = response.bytes().await.map_err(fail)?;
        let envelope: Envelope = match serde_json::from_slice(&body) {
            Ok(e) => e,
            Err(e) if status.is_success() => {
                return Err(ProviderError::Decode {
                    provider: self.name.clone(),
                    url: base,
                    detail: format!("{e}; is this a Prometheus server?"),
                });
            }
            Err(_) => {
                return Err(ProviderError::Status {
                    provider: self.name.clone(),
                    url: base,
                    status: status.as_u16(),
                    body: snippet(&body),
                });
            }
        };
        if envelope.status != "success" {
            return Err(ProviderError::Query {
                provider: self.name.clone(),
                query: promql.to_owned(),
                detail: format!(
                    "Prometheus says {}: {}",
                    envelope.error_type.as_deref().unwrap_or("error"),
                    envelope.error.as_deref().unwrap_or("(no message)")
                ),
            });
        }
        let query_error = |detail: String| ProviderError::Query {
            provider: self.name.clone(),
            query: promql.to_owned(),
            detail,
        };
        let one_series = |n: usize| {
            query_error(format!(
                "returned {n} series; the judge needs exactly one per group: aggregate it, e.g. sum(...) or max(...)"
            ))
        };
        let raw: Vec<(f64, String)> = match envelope.data {
            Some(Data::Vector(v)) if v.len() == 1 => v.into_iter().map(|s| s.value).collect(),
            Some(Data::Vector(v)) => return Err(one_series(v.len())),
            Some(Data::Matrix(m)) if m.len() == 1 => m.into_iter().flat_map(|s| s.values).collect(),
            Some(Data::Matrix(m)) => return Err(one_series(m.len())),
            Some(Data::Scalar(p)) => vec![p],
            Some(Data::String(_)) => {
                return Err(query_error(
                    "returned a string; the judge needs a number".to_owned(),
                ));
            }
            None => return Err(query_error("returned no data".to_owned())),
        };
        // Prometheus writes NaN and ±Inf as strings; a window with no value
        // is better than a number that poisons the judge.
        Ok(raw
            .into_iter()
            .filter_map(|(t, v)| {
                v.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .map(|v| (t, v))
            })
            .collect())
    }

    async fn collect(&self, q: &WindowQuery) -> Result<GroupSeries, ProviderError> {
        let mut series = GroupSeries::default();
        for query in &self.queries {
            for (promql, windows) in [
                (&query.baseline, &mut series.baseline),
                (&query.canary, &mut series.canary),
            ] {
                for (t, v) in self.run(promql, q).await? {
                    let start_ms = if self.step.is_some() {
                        (t * 1000.0).round() as i64
                    } else {
                        q.since_ms
                    };
                    let at = match windows.iter().position(|w| w.start_ms == start_ms) {
                        Some(i) => i,
                        None => {
                            windows.push(ProviderWindow {
                                start_ms,
                                ..ProviderWindow::default()
                            });
                            windows.len() - 1
                        }
                    };
                    let w = &mut windows[at];
                    match query.metric.as_str() {
                        // Counts are whole numbers; increase() may give 99.999.
                        "requests" => w.requests = v.max(0.0).round() as u64,
                        "errors" => w.errors = v.max(0.0).round() as u64,
                        name => {
                            w.metrics.insert(name.to_owned(), v);
                        }
                    }
                }
            }
        }
        Ok(series)
    }
}

impl MetricProvider for PrometheusProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn fetch<'a>(
        &'a self,
        query: &'a WindowQuery,
    ) -> BoxFuture<'a, Result<GroupSeries, ProviderError>> {
        Box::pin(self.collect(query))
    }
}
