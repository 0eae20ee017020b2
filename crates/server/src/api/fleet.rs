//! `GET /api/v1/fleet/subscribe`: a proxy's subscription, as a WebSocket
//! of JSON text frames (see `backout_fleet::message`), for tokens with the
//! `proxy` role.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Response};
use backout_fleet::{FromProxy, ToProxy};
use backout_proxy::admin::ApiError;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::ApiState;
use crate::fleet::{self, Fleet};

/// Larger messages end the subscription: a report is a few kilobytes.
const MAX_MESSAGE: usize = 8 << 20;
/// Pings keep idle middleboxes from dropping the connection and let a
/// dead proxy's connection fail.
const PING_EVERY: Duration = Duration::from_secs(10);

pub(super) async fn subscribe(
    State(state): State<Arc<ApiState>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    extensions: Extensions,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return ApiError::new(
                StatusCode::UPGRADE_REQUIRED,
                "websocket_required",
                None,
                format!("{e}: this endpoint is a WebSocket for `backout proxy --control-plane`"),
            )
            .into_response();
        }
    };
    let address =
        backout_listen::peer(&extensions).map_or_else(|| "unknown".to_string(), |a| a.to_string());
    let fleet = Arc::clone(&state.fleet);
    ws.max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| bridge(fleet, socket, address))
}

/// Frames to messages and back, around [`fleet::drive`].
async fn bridge(fleet: Arc<Fleet>, socket: WebSocket, address: String) {
    let (mut sink, mut stream) = socket.split();
    let (to_cp, from_proxy) = mpsc::channel::<FromProxy>(64);
    let (to_proxy, mut outgoing) = mpsc::channel::<ToProxy>(64);
    let session = tokio::spawn(fleet::drive(fleet, from_proxy, to_proxy, address.clone()));
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = outgoing.recv() => {
                let Some(msg) = msg else { break };
                let Ok(text) = serde_json::to_string(&msg) else { continue };
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<FromProxy>(&text) {
                    Ok(msg) => {
                        if to_cp.send(msg).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%address, error = %e, "a proxy sent a message this control plane cannot read; is it another version of backout?");
                    }
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
    drop(to_cp);
    let _ = sink.close().await;
    let _ = session.await;
}
