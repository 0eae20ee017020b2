//! Webhook notifications: rollout notices POSTed as JSON to the URLs a
//! service spec lists. Best effort and off the controller's path: a slow or
//! dead receiver never delays a rollback.

use std::sync::Arc;
use std::time::Duration;

use backout_rollout::Notice;
use backout_spec::Notification;
use serde::Serialize;

/// What a receiver gets.
#[derive(Debug, Clone, Serialize)]
pub struct Payload<'a> {
    pub service: &'a str,
    pub kind: &'a str,
    pub message: &'a str,
    pub at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Notifier {
    targets: Arc<Vec<Notification>>,
    client: reqwest::Client,
}

impl Notifier {
    pub fn new(targets: Vec<Notification>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Notifier {
            targets: Arc::new(targets),
            client,
        }
    }

    /// Sends `notice` to every target that wants its kind; three tries
    /// each, in the background.
    pub fn send(&self, service: &str, notice: &Notice, at_ms: i64) {
        for target in self.targets.iter() {
            if !target.events.is_empty() && !target.events.contains(&notice.kind) {
                continue;
            }
            let body = serde_json::to_vec(&Payload {
                service,
                kind: &notice.kind,
                message: &notice.message,
                at_ms,
            })
            .unwrap_or_default();
            let client = self.client.clone();
            let url = target.webhook.clone();
            tokio::spawn(async move {
                for attempt in 0..3u32 {
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => return,
                        Ok(r) => {
                            tracing::warn!(%url, status = %r.status(), "webhook refused a notice")
                        }
                        Err(e) => tracing::warn!(%url, error = %e, "webhook unreachable"),
                    }
                    tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                }
            });
        }
    }
}
