//! The request body as it goes to a backend: nothing, or the client's
//! body with its first frame read ahead.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::http::codec::BodyError;
use crate::http::server::ClientBody;

/// A request body sent to a backend.
#[derive(Debug)]
pub(crate) enum RequestBody {
    Empty,
    /// The client's body; its first frame was read before a backend was
    /// chosen, so a malformed body is refused before any backend sees it.
    Client {
        first: Option<Frame<Bytes>>,
        rest: ClientBody,
    },
}

impl RequestBody {
    /// Whether nothing of the body has been taken yet, so the request can
    /// still go to a backend whole.
    pub(crate) fn is_untouched(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Client { first, .. } => first.is_some(),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Client { first, rest } => match first.take() {
                Some(frame) => Poll::Ready(Some(Ok(frame))),
                None => Pin::new(rest).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Client { first, rest } => first.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Client { first, rest } => {
                let buffered = first
                    .as_ref()
                    .and_then(Frame::data_ref)
                    .map_or(0, |d| d.len() as u64);
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + buffered);
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper + buffered);
                }
                hint
            }
        }
    }
}
