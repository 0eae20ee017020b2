//! Keeping a provider's flag set in sync with a running `backout flags
//! serve`: fetch the flag document, then listen to the server's change
//! stream (`/ofrep/v1/events`) and fetch again on every `refetchEvaluation`.
//!
//! When the server becomes unreachable the provider keeps evaluating the
//! last good set, marked stale, and the task reconnects; on reconnection it
//! fetches at once, since changes may have been missed.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value as Json;

use crate::provider::{BackoutProvider, FlagSetHandle};

/// Why a sync failed.
#[derive(Debug)]
pub enum SyncError {
    Http(String),
    Document(String),
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncError::Http(e) => write!(f, "cannot fetch flags: {e}"),
            SyncError::Document(e) => write!(f, "the server's flag document does not load: {e}"),
        }
    }
}

impl std::error::Error for SyncError {}

/// The background task keeping a provider in sync; stops when dropped.
pub struct SyncTask {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SyncTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct Server {
    /// e.g. `http://127.0.0.1:8016`
    pub url: String,
    pub token: Option<String>,
    /// Wait before reconnecting after a failure.
    pub retry: Duration,
}

impl Server {
    pub fn new(url: impl Into<String>) -> Server {
        Server {
            url: url.into().trim_end_matches('/').to_owned(),
            token: None,
            retry: Duration::from_millis(500),
        }
    }

    pub fn token(mut self, token: impl Into<String>) -> Server {
        self.token = Some(token.into());
        self
    }

    fn get(&self, client: &reqwest::Client, path: &str) -> reqwest::RequestBuilder {
        let req = client.get(format!("{}{path}", self.url));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }
}

/// Fetches the flag set once, then keeps it in sync in the background.
pub async fn connect(server: Server) -> Result<(BackoutProvider, SyncTask), SyncError> {
    let client = reqwest::Client::new();
    let provider = BackoutProvider::empty();
    let handle = provider.handle();
    let mut etag = None;
    fetch(&client, &server, &handle, &mut etag).await?;
    let task = tokio::spawn(follow(client, server, handle, etag));
    Ok((provider, SyncTask { task }))
}

/// Fetches the document (unless unchanged) and swaps it in.
async fn fetch(
    client: &reqwest::Client,
    server: &Server,
    handle: &FlagSetHandle,
    etag: &mut Option<String>,
) -> Result<(), SyncError> {
    let mut req = server.get(client, "/api/v1/flag-document");
    if let Some(tag) = etag.as_deref() {
        req = req.header("if-none-match", tag);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| SyncError::Http(e.to_string()))?;
    if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
        handle.confirm_current();
        return Ok(());
    }
    if !resp.status().is_success() {
        return Err(SyncError::Http(format!(
            "{} answered {}",
            server.url,
            resp.status()
        )));
    }
    let new_tag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let doc: Json = resp
        .json()
        .await
        .map_err(|e| SyncError::Http(e.to_string()))?;
    let loaded = backout_flags::load(&doc).map_err(|e| SyncError::Document(e.to_string()))?;
    handle.replace(loaded.flags);
    *etag = new_tag;
    Ok(())
}

/// Follows the change stream for ever, reconnecting after failures.
async fn follow(
    client: reqwest::Client,
    server: Server,
    handle: FlagSetHandle,
    mut etag: Option<String>,
) {
    loop {
        match server.get(&client, "/ofrep/v1/events").send().await {
            Ok(resp) if resp.status().is_success() => {
                // Anything may have changed while we were not listening.
                if let Err(e) = fetch(&client, &server, &handle, &mut etag).await {
                    tracing::warn!("{e}; serving the last good flag set");
                    handle.mark_stale();
                }
                let mut stream = resp.bytes_stream();
                let mut buffer = String::new();
                while let Some(chunk) = stream.next().await {
                    let Ok(chunk) = chunk else { break };
                    buffer.push_str(&String::from_utf8_lossy(&chunk));
                    while let Some(end) = buffer.find("\n\n") {
                        let event: String = buffer.drain(..end + 2).collect();
                        let refetch = event
                            .lines()
                            .any(|l| l.starts_with("data:") && l.contains("refetchEvaluation"));
                        if refetch && let Err(e) = fetch(&client, &server, &handle, &mut etag).await
                        {
                            tracing::warn!("{e}; serving the last good flag set");
                            handle.mark_stale();
                        }
                    }
                }
                tracing::warn!(
                    "lost the change stream from {}; serving the last good flag set",
                    server.url
                );
            }
            Ok(resp) => tracing::warn!(
                "{} refused the change stream: {}",
                server.url,
                resp.status()
            ),
            Err(e) => tracing::warn!("cannot reach {}: {e}", server.url),
        }
        handle.mark_stale();
        tokio::time::sleep(server.retry).await;
    }
}
