//! How a proxy reaches a control plane: a WebSocket to its API (one
//! subscription per proxy, JSON text frames), or in-process channels for
//! the proxy embedded in `backout up`. Both give the follower the same
//! pair of channels, so the session logic is one.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backout_fleet::{FromProxy, ToProxy};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

/// Where the subscription lives on a control plane's API.
pub const SUBSCRIBE_PATH: &str = "/api/v1/fleet/subscribe";
/// Connecting and the WebSocket handshake must not take longer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Larger messages are refused: a snapshot is a few kilobytes.
const MAX_MESSAGE: usize = 8 << 20;

/// One open subscription: what the proxy sends and what it receives.
#[derive(Debug)]
pub struct Conn {
    pub tx: mpsc::Sender<FromProxy>,
    pub rx: mpsc::Receiver<ToProxy>,
    /// The control plane, for logs and `/readyz`.
    pub peer: String,
}

/// An in-process control plane's door.
pub trait Attach: Send + Sync {
    fn attach(&self) -> Result<Conn, String>;
}

/// One way to a control plane.
#[derive(Clone)]
pub enum Link {
    /// A control plane's API base URL (`http://host:port`) and a token
    /// with the `proxy` role.
    Remote {
        url: String,
        token: String,
    },
    Local(Arc<dyn Attach>),
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Link::Remote { url, .. } => write!(f, "Remote({url})"),
            Link::Local(_) => f.write_str("Local"),
        }
    }
}

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The control plane answered and said no: wrong token, wrong role,
    /// not a backout control plane. Retrying soon will not help.
    #[error("{url} refused the subscription ({status}): {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("cannot reach {url}: {detail}")]
    Unreachable { url: String, detail: String },
}

impl Link {
    pub fn describe(&self) -> String {
        match self {
            Link::Remote { url, .. } => url.clone(),
            Link::Local(_) => "the embedded control plane".to_string(),
        }
    }

    pub async fn connect(&self) -> Result<Conn, ConnectError> {
        match self {
            Link::Local(door) => door.attach().map_err(|detail| ConnectError::Unreachable {
                url: self.describe(),
                detail,
            }),
            Link::Remote { url, token } => websocket(url, token).await,
        }
    }
}

/// `http://h:p[/]` → `ws://h:p/api/v1/fleet/subscribe` (and https → wss).
pub fn subscribe_url(base: &str) -> Result<String, String> {
    let base = base.trim_end_matches('/');
    let (scheme, rest) = base
        .split_once("://")
        .ok_or_else(|| format!("{base:?} is not a URL; write it as http://host:port"))?;
    let ws = match scheme {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(format!(
                "{base:?} uses scheme `{other}`; write the control plane's API URL as http://host:port"
            ));
        }
    };
    if rest.is_empty() || rest.contains('/') {
        return Err(format!(
            "{base:?} has a path; give the API's base URL, e.g. http://127.0.0.1:9900"
        ));
    }
    Ok(format!("{ws}://{rest}{SUBSCRIBE_PATH}"))
}

async fn websocket(base: &str, token: &str) -> Result<Conn, ConnectError> {
    let unreachable = |detail: String| ConnectError::Unreachable {
        url: base.to_string(),
        detail,
    };
    let url = subscribe_url(base).map_err(unreachable)?;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| unreachable(e.to_string()))?;
    let auth = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| unreachable("the token holds characters a header cannot carry".into()))?;
    request.headers_mut().insert("authorization", auth);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let (ws, _) = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Err(_) => return Err(unreachable(format!("no answer within {CONNECT_TIMEOUT:?}"))),
        Ok(Err(tungstenite::Error::Http(resp))) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or(body);
            return Err(ConnectError::Refused {
                url: base.to_string(),
                status,
                message,
            });
        }
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Ok(Ok(ws)) => ws,
    };
    let (mut sink, mut stream) = ws.split();
    let (to_cp, mut outgoing) = mpsc::channel::<FromProxy>(64);
    let (incoming, from_cp) = mpsc::channel::<ToProxy>(64);
    let peer = base.to_string();
    tokio::spawn(async move {
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
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ToProxy>(&text) {
                        Ok(msg) => {
                            if incoming.send(msg).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the control plane sent a message this proxy cannot read; is it another version of backout?");
                        }
                    },
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    // Pings are answered by the library; binary frames are
                    // not part of the protocol.
                    Some(Ok(_)) => {}
                },
            }
        }
        let _ = sink.close().await;
    });
    Ok(Conn {
        tx: to_cp,
        rx: from_cp,
        peer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_urls() {
        let ok = |s: &str| subscribe_url(s).expect(s);
        assert_eq!(
            ok("http://127.0.0.1:9900"),
            "ws://127.0.0.1:9900/api/v1/fleet/subscribe"
        );
        assert_eq!(ok("http://cp:9900/"), "ws://cp:9900/api/v1/fleet/subscribe");
        assert_eq!(
            ok("https://cp.example"),
            "wss://cp.example/api/v1/fleet/subscribe"
        );
        for bad in ["cp:9900", "ftp://cp", "http://cp:9900/api", "http://"] {
            assert!(subscribe_url(bad).is_err(), "{bad}");
        }
    }
}
