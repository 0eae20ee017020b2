//! Bodies that stream through the proxy without being buffered, and notice
//! how the stream ended so the request can be attributed to the right side.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::completion::Completion;

/// The client's request body on its way upstream. Remembers whether the
/// client broke it, so a failed upstream request can be blamed on the
/// downstream side instead of the version.
#[derive(Debug)]
pub struct RequestBody {
    inner: Incoming,
    broken: Arc<AtomicBool>,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming) -> (Self, Arc<AtomicBool>) {
        let broken = Arc::new(AtomicBool::new(false));
        (
            RequestBody {
                inner,
                broken: Arc::clone(&broken),
            },
            broken,
        )
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Err(_)) = &frame {
            self.broken.store(true, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the proxy sends back: the upstream's body, streamed, or a short
/// body of its own (errors, rejections).
#[derive(Debug)]
pub enum ResponseBody {
    Upstream {
        inner: Incoming,
        /// Present until the stream ends one way or another.
        completion: Option<Completion>,
    },
    Local(Full<Bytes>),
}

impl ResponseBody {
    pub fn local(text: impl Into<Bytes>) -> Self {
        ResponseBody::Local(Full::new(text.into()))
    }

    pub fn empty() -> Self {
        ResponseBody::Local(Full::new(Bytes::new()))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ResponseBody::Local(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            ResponseBody::Upstream { inner, completion } => {
                let frame = ready!(Pin::new(&mut *inner).poll_frame(cx));
                match &frame {
                    None => {
                        if let Some(c) = completion.take() {
                            c.succeeded();
                        }
                    }
                    Some(Ok(_)) if inner.is_end_stream() => {
                        if let Some(c) = completion.take() {
                            c.succeeded();
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) => {
                        // The upstream broke the response midway: the client
                        // gets a truncated body, and the version the blame.
                        if let Some(c) = completion.take() {
                            c.upstream_broke();
                        }
                    }
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Local(full) => full.is_end_stream(),
            ResponseBody::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Local(full) => full.size_hint(),
            ResponseBody::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let ResponseBody::Upstream { inner, completion } = self
            && let Some(c) = completion.take()
        {
            // Bodies that were already complete (HEAD, 204, empty) are
            // dropped unpolled; anything else means the client left.
            if inner.is_end_stream() {
                c.succeeded();
            } else {
                c.client_left();
            }
        }
    }
}
