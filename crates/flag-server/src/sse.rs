//! The change stream: Server-Sent Events announcing that evaluations should
//! be fetched again (OFREP's `refetchEvaluation`, notification only).
//!
//! Each event carries the flag-set revision as its SSE `id`. A client that
//! reconnects with `Last-Event-ID` older than the current revision is told
//! to refetch at once; bursts of changes coalesce into one event for a
//! client that is behind.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use futures_util::stream;

use super::store::FlagStore;

fn refetch(store: &FlagStore, revision: u64) -> Event {
    let last_modified = store.snapshot().map_or(0, |s| s.loaded_at);
    let data = serde_json::json!({
        "type": "refetchEvaluation",
        "etag": format!("\"r{revision}\""),
        "lastModified": last_modified,
    });
    Event::default()
        .id(revision.to_string())
        .event("message")
        .data(data.to_string())
}

/// `GET /ofrep/v1/events`
pub async fn events(
    State(store): State<FlagStore>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut rx = store.subscribe();
    let current = *rx.borrow_and_update();
    let last_seen: Option<u64> = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    // A reconnecting client that missed changes refetches straight away.
    let missed = last_seen.is_some_and(|seen| seen < current);
    let initial = missed.then(|| refetch(&store, current));
    let changes = stream::unfold((rx, store.clone()), |(mut rx, store)| async move {
        rx.changed().await.ok()?;
        let revision = *rx.borrow_and_update();
        let event = refetch(&store, revision);
        Some((Ok(event), (rx, store)))
    });
    let head = stream::iter(initial.map(Ok));
    Sse::new(futures_util::StreamExt::chain(head, changes))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
