//! A user's HTTP endpoint as a metric provider.

use super::{GroupSeries, MetricProvider, ProviderError, WindowQuery, request_error, snippet};
use futures_util::future::BoxFuture;
use std::time::Duration;

/// POSTs the [`WindowQuery`] as JSON to a URL and reads a [`GroupSeries`]
/// back (`{"baseline": [windows], "canary": [windows]}`).
///
/// For metrics no built-in provider knows: a business KPI, a synthetic
/// check, a log query. Decode errors give the JSON path of the bad field
/// (`canary[2].requests`) so the webhook's author can fix it.
#[derive(Clone, Debug)]
pub struct WebhookProvider {
    name: String,
    url: String,
    timeout: Duration,
    client: reqwest::Client,
}

impl WebhookProvider {
    /// A provider posting to `url`, giving up after `timeout`.
    pub fn new(name: &str, url: &str, timeout: Duration) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| request_error(name, url, timeout, &e))?;
        Ok(WebhookProvider {
            name: name.to_owned(),
            url: url.to_owned(),
            timeout,
            client,
        })
    }

    async fn call(&self, query: &WindowQuery) -> Result<GroupSeries, ProviderError> {
        let fail = |e: reqwest::Error| request_error(&self.name, &self.url, self.timeout, &e);
        let response = self
            .client
            .post(&self.url)
            .json(query)
            .send()
            .await
            .map_err(fail)?;
        let status = response.status();
        let body = response.bytes().await.map_err(fail)?;
        if !status.is_success() {
            return Err(ProviderError::Status {
                provider: self.name.clone(),
                url: self.url.clone(),
                status: status.as_u16(),
                body: snippet(&body),
            });
        }
        let mut de = serde_json::Deserializer::from_slice(&body);
        serde_path_to_error::deserialize(&mut de).map_err(|e| ProviderError::Decode {
            provider: self.name.clone(),
            url: self.url.clone(),
            detail: format!(
                "at `{}`: {}; expected {{\"baseline\": [{{\"start_ms\": ..., \"requests\": ..., \"errors\": ..., \"latency_ms\": [...], \"metrics\": {{...}}}}], \"canary\": [...]}}",
                e.path(),
                e.inner()
            ),
        })
    }
}

impl MetricProvider for WebhookProvider {
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
