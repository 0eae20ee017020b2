//! The proxy's own windows as a metric provider: the default source of the
//! judge's numbers, read over the admin API so the proxy may run anywhere.

use std::collections::BTreeMap;
use std::time::Duration;

use backout_proxy::breaker::BreakerState;
use backout_proxy::window::WindowView;
use backout_proxy::{Role, VersionWindows, WindowsReport};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{
    GroupSeries, MetricProvider, ProviderError, ProviderWindow, WindowQuery, request_error, snippet,
};

/// Which causes count as a version's errors. Default: the application's
/// 5xx, upstream failures (connect, reset, timeout) and requests the proxy
/// refused for the version; 4xx are the client's and do not count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct ErrorClasses {
    pub http_5xx: bool,
    pub upstream: bool,
    pub rejected: bool,
    pub http_4xx: bool,
}

impl Default for ErrorClasses {
    fn default() -> Self {
        ErrorClasses {
            http_5xx: true,
            upstream: true,
            rejected: true,
            http_4xx: false,
        }
    }
}

impl TryFrom<Vec<String>> for ErrorClasses {
    type Error = String;
    fn try_from(names: Vec<String>) -> Result<Self, String> {
        let mut c = ErrorClasses {
            http_5xx: false,
            upstream: false,
            rejected: false,
            http_4xx: false,
        };
        for n in &names {
            match n.as_str() {
                "5xx" => c.http_5xx = true,
                "upstream" => c.upstream = true,
                "rejected" => c.rejected = true,
                "4xx" => c.http_4xx = true,
                other => {
                    return Err(format!(
                        "unknown error class {other:?}; choose from 5xx, upstream, rejected, 4xx"
                    ));
                }
            }
        }
        if names.is_empty() {
            return Err("list at least one error class: 5xx, upstream, rejected, 4xx".into());
        }
        Ok(c)
    }
}

impl From<ErrorClasses> for Vec<String> {
    fn from(c: ErrorClasses) -> Self {
        [
            (c.http_5xx, "5xx"),
            (c.upstream, "upstream"),
            (c.rejected, "rejected"),
            (c.http_4xx, "4xx"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| n.to_string())
        .collect()
    }
}

impl ErrorClasses {
    fn count(&self, w: &WindowView) -> u64 {
        let c = &w.error_causes;
        [
            (self.http_5xx, c.http_5xx),
            (self.upstream, c.upstream),
            (self.rejected, c.rejected),
            (self.http_4xx, c.http_4xx),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| n)
        .sum()
    }
}

/// Reads `GET {admin}/admin/v1/services/{service}/windows?since=…`.
#[derive(Clone, Debug)]
pub struct ProxyProvider {
    name: String,
    admin: String,
    timeout: Duration,
    classes: ErrorClasses,
    client: reqwest::Client,
}

impl ProxyProvider {
    /// `admin` is the proxy's admin API base URL, e.g. `http://127.0.0.1:9900`.
    pub fn new(
        admin: &str,
        classes: ErrorClasses,
        timeout: Duration,
    ) -> Result<Self, ProviderError> {
        let name = "proxy";
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| request_error(name, admin, timeout, &e))?;
        Ok(ProxyProvider {
            name: name.to_owned(),
            admin: admin.trim_end_matches('/').to_owned(),
            timeout,
            classes,
            client,
        })
    }

    async fn call(&self, query: &WindowQuery) -> Result<GroupSeries, ProviderError> {
        let url = format!(
            "{}/admin/v1/services/{}/windows?since={}",
            self.admin,
            query.service,
            query.since_ms.max(0)
        );
        let fail = |e: reqwest::Error| request_error(&self.name, &url, self.timeout, &e);
        let response = self.client.get(&url).send().await.map_err(fail)?;
        let status = response.status();
        let body = response.bytes().await.map_err(fail)?;
        if !status.is_success() {
            return Err(ProviderError::Status {
                provider: self.name.clone(),
                url,
                status: status.as_u16(),
                body: snippet(&body),
            });
        }
        let mut de = serde_json::Deserializer::from_slice(&body);
        let report: WindowsReport =
            serde_path_to_error::deserialize(&mut de).map_err(|e| ProviderError::Decode {
                provider: self.name.clone(),
                url: url.clone(),
                detail: format!(
                    "at `{}`: {}; is this a backout proxy of the same version?",
                    e.path(),
                    e.inner()
                ),
            })?;
        Ok(series(&report, query, self.classes))
    }
}

impl MetricProvider for ProxyProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn fetch<'a>(
        &'a self,
        query: &'a WindowQuery,
    ) -> BoxFuture<'a, Result<GroupSeries, ProviderError>> {
        Box::pin(self.call(query))
    }
}

/// The judge's view of a proxy report: complete windows in the query's
/// span, stable as baseline and canary as canary, errors by `classes`. The
/// latest window of each group also carries the pool's state now:
/// `ready` (share of endpoints that can take traffic) and `breaker_open`.
pub fn series(report: &WindowsReport, query: &WindowQuery, classes: ErrorClasses) -> GroupSeries {
    let group = |role: Role| -> Vec<ProviderWindow> {
        let Some(v) = report.versions.iter().find(|v| v.role == role) else {
            return Vec::new();
        };
        let mut out: Vec<ProviderWindow> = v
            .windows
            .iter()
            .filter(|w| w.complete)
            .filter(|w| {
                let start = i64::try_from(w.start_ms).unwrap_or(i64::MAX);
                start >= query.since_ms && start < query.until_ms
            })
            .map(|w| ProviderWindow {
                start_ms: i64::try_from(w.start_ms).unwrap_or(i64::MAX),
                requests: w.requests,
                errors: classes.count(w),
                latency_ms: w.latency_ms.clone(),
                metrics: BTreeMap::new(),
            })
            .collect();
        if let Some(last) = out.last_mut() {
            last.metrics = state_metrics(v);
        }
        out
    };
    GroupSeries {
        baseline: group(Role::Stable),
        canary: group(Role::Canary),
    }
}

fn state_metrics(v: &VersionWindows) -> BTreeMap<String, f64> {
    let ready = if v.endpoints == 0 {
        0.0
    } else {
        v.available_endpoints as f64 / v.endpoints as f64
    };
    let open = if v.breaker == BreakerState::Open {
        1.0
    } else {
        0.0
    };
    BTreeMap::from([
        ("ready".to_string(), ready),
        ("breaker_open".to_string(), open),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_classes(yaml_list: &str, expected: Result<ErrorClasses, &str>) {
        let got: Result<ErrorClasses, String> =
            serde_json::from_str(yaml_list).map_err(|e| e.to_string());
        match (got, expected) {
            (Ok(g), Ok(w)) => assert_eq!(g, w),
            (Err(e), Err(fragment)) => assert!(e.contains(fragment), "{e}"),
            (g, w) => panic!("{yaml_list}: got {g:?}, want {w:?}"),
        }
    }

    #[test]
    fn error_classes() {
        let d = ErrorClasses::default();
        check_classes(r#"["5xx","upstream","rejected"]"#, Ok(d));
        check_classes(
            r#"["5xx"]"#,
            Ok(ErrorClasses {
                upstream: false,
                rejected: false,
                ..d
            }),
        );
        check_classes(
            r#"["5xx","4xx","upstream","rejected"]"#,
            Ok(ErrorClasses {
                http_4xx: true,
                ..d
            }),
        );
        check_classes(r#"["429"]"#, Err("unknown error class \"429\""));
        check_classes("[]", Err("at least one"));
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"["5xx","upstream","rejected"]"#
        );
    }
}
