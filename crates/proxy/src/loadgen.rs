//! A small open-loop load generator: a fixed request rate, results counted
//! per second and per version. Drives `backout demo`; benchmarks use wrk.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

/// Counts for one second (or a whole run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    pub sent: u64,
    /// Requests answered 2xx-4xx, by the version named in the response.
    pub ok: BTreeMap<String, u64>,
    /// 5xx answers, by version (`?` when no version header came back).
    pub errors: BTreeMap<String, u64>,
    /// No response at all (connection refused, reset).
    pub failed: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.sent += other.sent;
        self.failed += other.failed;
        for (k, v) in &other.ok {
            *self.ok.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    pub fn ok_total(&self) -> u64 {
        self.ok.values().sum()
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Sends `rate` requests per second to `url` for `seconds` seconds; calls
/// `each_second` with every second's tally as it completes. Requests still
/// in flight at a second's end count in the second they finish.
pub async fn run(
    url: &str,
    version_header: &str,
    rate: u32,
    seconds: u32,
    mut each_second: impl FnMut(u32, &Tally),
) -> Tally {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let Ok(uri) = url.parse::<http::Uri>() else {
        return Tally::default();
    };
    let current = Arc::new(Mutex::new(Tally::default()));
    let mut total = Tally::default();
    let gap = Duration::from_secs(1) / rate.max(1);
    let mut tick = tokio::time::interval(gap);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for second in 0..seconds {
        for _ in 0..rate {
            tick.tick().await;
            let (client, uri, current) = (client.clone(), uri.clone(), Arc::clone(&current));
            let header = version_header.to_string();
            tokio::spawn(async move {
                let result = client.get(uri).await;
                let (body, outcome) = match result {
                    Ok(resp) => {
                        let version = resp
                            .headers()
                            .get(header.as_str())
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("?")
                            .to_string();
                        let error = resp.status().is_server_error();
                        (Some(resp.into_body()), Some((version, error)))
                    }
                    Err(_) => (None, None),
                };
                if let Some(body) = body {
                    let _ = body.collect().await;
                }
                let mut t = current.lock().unwrap_or_else(|p| p.into_inner());
                t.sent += 1;
                match outcome {
                    Some((version, true)) => *t.errors.entry(version).or_default() += 1,
                    Some((version, false)) => *t.ok.entry(version).or_default() += 1,
                    None => t.failed += 1,
                }
            });
        }
        let done = std::mem::take(&mut *current.lock().unwrap_or_else(|p| p.into_inner()));
        each_second(second, &done);
        total.add(&done);
    }
    // Let the last requests land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rest = std::mem::take(&mut *current.lock().unwrap_or_else(|p| p.into_inner()));
    total.add(&rest);
    total
}
