//! How much a client may take from a control listener: time to send a
//! request head, connections held at once, body size and time to send it.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// The limits of one control listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a request's head, counted from
    /// the moment the connection is ready for one (accepted, or done with
    /// the previous response). A keep-alive connection that stays idle
    /// this long is closed too. An upgraded connection (a WebSocket) is no
    /// longer reading heads and is not affected.
    pub header_timeout: Duration,
    /// Connections served at once. One more is answered 503 and closed at
    /// once, so a flood of slow clients cannot queue normal ones forever.
    /// Long-lived connections (change streams, WebSockets of a fleet of
    /// proxies) count, so this is generous.
    pub max_connections: usize,
    /// The largest request body, in bytes.
    pub max_body: usize,
    /// How long a client may take to send a request's body once its head
    /// arrived.
    pub body_timeout: Duration,
    /// How long shutdown waits for requests in flight before it closes
    /// what is still open (a change stream never ends by itself).
    pub drain: Duration,
}

impl Limits {
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
    pub const DEFAULT_MAX_BODY: usize = 1 << 20;
    pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_body: Self::DEFAULT_MAX_BODY,
            body_timeout: Self::DEFAULT_BODY_TIMEOUT,
            drain: Self::DEFAULT_DRAIN,
        }
    }
}

/// A request body that fails when it takes too long to arrive, instead of
/// holding the connection. (Its size is bounded by
/// `http_body_util::Limited` on top, whose error the handlers' extractors
/// answer with 413.)
pub struct Deadline {
    inner: hyper::body::Incoming,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

/// The body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}; send it at once")]
pub struct TooSlow(Duration);

impl Deadline {
    pub(crate) fn new(inner: hyper::body::Incoming, timeout: Duration) -> Deadline {
        Deadline {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl Body for Deadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(TooSlow(this.timeout))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
