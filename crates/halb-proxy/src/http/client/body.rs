//! A backend's response body, read from its connection as the client side
//! asks for it (backpressure), each frame a slice of the read buffer. Read
//! to its end, the connection goes back to the worker's idle pool. When the
//! backend answered before the request body had all come, the rest of the
//! upload is sent from here too, each time the body is polled.

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::head::ResponseFraming;
use super::upload::Upload;
use super::{BackendConnection, BackendError, BODY_READ};
use crate::http::codec::framing::{Decoded, Decoder, StallTimer};
use crate::http::upstream::UpstreamPool;
use crate::state::InFlight;
use halb_health::AdminState;

/// A response body streaming from a backend connection.
#[derive(Debug)]
pub(crate) struct BackendBody {
    /// `None` once the body has ended or failed.
    connection: Option<BackendConnection>,
    /// Where the connection goes when the body is done; `None` if it may
    /// not be reused.
    pool: Option<Rc<UpstreamPool>>,
    /// `None`: the body ends when the backend closes the connection.
    decoder: Option<Decoder>,
    /// The rest of the request, still going out.
    upload: Option<Box<Upload>>,
    /// Fails the body when nothing moves, either way, for the pool's timeout.
    stall: StallTimer,
    /// The backend's in-flight slot, held until the body is dropped.
    in_flight: InFlight,
}

impl BackendBody {
    /// The body after `framing`'s head on `connection`. `pool`: where the
    /// connection goes once the body is read, if it may carry another
    /// request; `upload`: the rest of the request, to send meanwhile.
    pub(crate) fn new(
        connection: BackendConnection,
        framing: ResponseFraming,
        pool: Option<Rc<UpstreamPool>>,
        upload: Option<Box<Upload>>,
        stall_limit: Duration,
        in_flight: InFlight,
    ) -> Self {
        let decoder = match framing {
            ResponseFraming::Framed(framing) => Some(Decoder::new(framing)),
            ResponseFraming::UntilClose => None,
        };
        let mut body = BackendBody {
            connection: Some(connection),
            pool,
            decoder,
            upload,
            stall: StallTimer::new(stall_limit),
            in_flight,
        };
        if body.decoder.as_ref().is_some_and(Decoder::is_done) {
            body.finish();
        }
        body
    }

    /// The body was read to its end: the connection goes back to the pool.
    fn finish(&mut self) {
        if self.upload.take().is_some() {
            // The response ended before the request did: the rest of the
            // upload is not sent, and the connection, left in the middle
            // of a request, is closed. (The client connection closes too,
            // its body unread.)
            self.connection = None;
            self.pool = None;
            return;
        }
        let (Some(mut connection), Some(pool)) = (self.connection.take(), self.pool.take()) else {
            return;
        };
        // A draining backend gets no new requests (and one removed from
        // its pool never will): its connection is closed, not kept idle.
        let draining = self.in_flight.backend().health.admin_state() != AdminState::Enabled;
        if connection.settle() && !draining {
            pool.release(connection);
        }
    }

    /// When the rest of a Content-Length body of at least `min` bytes is
    /// all still in the socket (none buffered): the socket, the bytes left
    /// and how long the backend may stall, so the body can be spliced.
    pub(crate) fn splice_source(
        &self,
        min: u64,
    ) -> Option<(&tokio::net::TcpStream, u64, Duration)> {
        let connection = self.connection.as_ref()?;
        if self.upload.is_some() {
            // The upload goes on only while the body is polled.
            return None;
        }
        match self.decoder {
            Some(Decoder::Length(left)) if left >= min && connection.buf.is_empty() => {
                Some((connection.plain()?, left, self.stall.limit()))
            }
            _ => None,
        }
    }

    /// `n` bytes of the body went past halb by splice; `complete`: all of
    /// it (else the splice failed and the connection is not reused).
    pub(crate) fn spliced(&mut self, n: u64, complete: bool) {
        if !complete {
            self.connection = None;
            self.pool = None;
            return;
        }
        if let Some(Decoder::Length(left)) = &mut self.decoder {
            *left -= n.min(*left);
            if *left == 0 {
                self.decoder = Some(Decoder::Done);
                self.finish();
            }
        }
    }

    /// Send what can be sent of the upload now; the task is woken when
    /// more can.
    fn drive_upload(&mut self, cx: &mut Context<'_>) {
        let (Some(upload), Some(connection)) = (&mut self.upload, &self.connection) else {
            return;
        };
        let before = upload.sent();
        let outcome = upload.poll_send(&connection.stream, cx);
        if upload.sent() > before {
            self.stall.progressed();
        }
        match outcome {
            Poll::Pending => {}
            Poll::Ready(Ok(())) => self.upload = None,
            Poll::Ready(Err(error)) => {
                // The response goes on; the connection, left in the middle
                // of a request, is not reused.
                tracing::debug!(?error, "the rest of an upload could not be sent");
                self.upload = None;
                self.pool = None;
            }
        }
    }

    fn fail(&mut self, error: BackendError) -> Poll<Option<Result<Frame<Bytes>, BackendError>>> {
        self.upload = None;
        self.connection = None;
        self.pool = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for BackendBody {
    type Data = Bytes;
    type Error = BackendError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BackendError>>> {
        let this = self.get_mut();
        this.drive_upload(cx);
        loop {
            let Some(connection) = &mut this.connection else {
                return Poll::Ready(None);
            };
            match &mut this.decoder {
                Some(decoder) => match decoder.decode(&mut connection.buf) {
                    Err(why) => return this.fail(BackendError::Malformed(why)),
                    Ok(Decoded::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::Data(data)) => {
                        if decoder.is_done() {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(Decoded::NeedMore) => {}
                },
                None if !connection.buf.is_empty() => {
                    let data = connection.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                None => {}
            }
            match connection.poll_fill(cx, BODY_READ) {
                Poll::Ready(Ok(0)) if this.decoder.is_none() => {
                    this.connection = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => return this.fail(BackendError::Closed),
                Poll::Ready(Ok(_)) => this.stall.progressed(),
                Poll::Ready(Err(e)) => return this.fail(BackendError::Io(e)),
                Poll::Pending => {
                    if this.stall.expired(cx) {
                        return this.fail(BackendError::BodyTimeout);
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.connection.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            _ if self.connection.is_none() => SizeHint::with_exact(0),
            // Buffered bytes not yet decoded are part of `left`.
            Some(Decoder::Length(left)) => SizeHint::with_exact(left),
            Some(Decoder::Done) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
