//! The response body on its way to the client, frame by frame (nothing is
//! buffered whole): a backend's, or halb's own; counted and logged as it
//! goes.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::exchange::Exchange;
use crate::http::client::{BackendBody, BackendError};
use crate::http::server::ReplyBody;

/// A response body sent to the client.
#[derive(Debug)]
pub(crate) struct ResponseBody {
    kind: ResponseKind,
    /// Counts the bytes sent; records the request when the body is dropped
    /// (done, or abandoned by the client).
    exchange: Exchange,
    /// A bandwidth fault's pace; `None` (always, without faults): full speed.
    throttle: Option<Box<Throttle>>,
}

/// Sends a body at most `rate` bytes per second: a tenth of a second's
/// worth at a time, then a pause.
#[derive(Debug)]
struct Throttle {
    rate: u64,
    pending: Bytes,
    pause: Pin<Box<tokio::time::Sleep>>,
}

#[derive(Debug)]
enum ResponseKind {
    /// A response halb made itself (errors).
    Full(Option<Bytes>),
    /// A backend's response, streamed.
    Upstream(BackendBody),
}

impl ResponseBody {
    pub(crate) fn full(bytes: Bytes, exchange: Exchange) -> Self {
        ResponseBody {
            kind: ResponseKind::Full(Some(bytes)),
            exchange,
            throttle: None,
        }
    }

    pub(crate) fn upstream(body: BackendBody, exchange: Exchange) -> Self {
        ResponseBody {
            kind: ResponseKind::Upstream(body),
            exchange,
            throttle: None,
        }
    }

    /// Send at most `rate` bytes per second (a bandwidth fault).
    pub(crate) fn throttled(mut self, rate: Option<u64>) -> Self {
        self.throttle = rate.map(|rate| {
            Box::new(Throttle {
                rate,
                pending: Bytes::new(),
                pause: Box::pin(tokio::time::sleep(std::time::Duration::ZERO)),
            })
        });
        self
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BackendError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BackendError>>> {
        let this = self.get_mut();
        if let Some(throttle) = &mut this.throttle {
            std::task::ready!(throttle.pause.as_mut().poll(cx));
            if throttle.pending.is_empty() {
                let frame = match &mut this.kind {
                    ResponseKind::Full(bytes) => bytes.take().map(|b| Ok(Frame::data(b))),
                    ResponseKind::Upstream(upstream) => {
                        std::task::ready!(Pin::new(upstream).poll_frame(cx))
                    }
                };
                match frame {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => throttle.pending = data,
                        Err(frame) => return Poll::Ready(Some(Ok(frame))),
                    },
                    other => return Poll::Ready(other),
                }
            }
            let step = (throttle.rate / 10).clamp(1, 64 * 1024) as usize;
            let data = throttle.pending.split_to(step.min(throttle.pending.len()));
            let pause =
                std::time::Duration::from_secs_f64(data.len() as f64 / throttle.rate as f64);
            throttle
                .pause
                .as_mut()
                .reset(tokio::time::Instant::now() + pause);
            this.exchange.bytes += data.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let polled = match &mut this.kind {
            ResponseKind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseKind::Upstream(upstream) => Pin::new(upstream).poll_frame(cx),
        };
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.exchange.bytes += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        if self
            .throttle
            .as_ref()
            .is_some_and(|t| !t.pending.is_empty())
        {
            return false;
        }
        match &self.kind {
            ResponseKind::Full(bytes) => bytes.is_none(),
            ResponseKind::Upstream(upstream) => upstream.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            ResponseKind::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ResponseKind::Upstream(upstream) => upstream.size_hint(),
        }
    }
}

impl ReplyBody for ResponseBody {
    /// See [`BackendBody::splice_source`].
    fn splice_source(
        &self,
        min: u64,
    ) -> Option<(&tokio::net::TcpStream, u64, std::time::Duration)> {
        if self.throttle.is_some() {
            return None;
        }
        match &self.kind {
            ResponseKind::Upstream(upstream) => upstream.splice_source(min),
            ResponseKind::Full(_) => None,
        }
    }

    /// See [`BackendBody::spliced`].
    fn spliced(&mut self, n: u64, complete: bool) {
        self.exchange.bytes += n;
        if let ResponseKind::Upstream(upstream) = &mut self.kind {
            upstream.spliced(n, complete);
        }
    }
}
