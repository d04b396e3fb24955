//! The client's request body: Content-Length or chunked framing decoded
//! straight out of the connection's read buffer (each frame a slice of it,
//! not a copy), reading more from the socket only when the backend side
//! asks for more (backpressure).

use std::future::Future as _;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::ClientConnection;
use crate::http::codec::framing::{BodyFraming, Decoded, Decoder, StallTimer};
use crate::http::codec::BodyError;

/// Read size while a body streams in.
const BODY_READ: usize = 64 * 1024;

/// A client's request body, read from the connection it came on. The
/// connection loop does not read while a body is pending; the body tells
/// it when it has reached its end.
pub(crate) struct ClientBody {
    /// `None` for a request without a body, or once the body failed.
    connection: Option<Rc<ClientConnection>>,
    decoder: Decoder,
    /// Say `100 Continue` before the first read from the socket.
    expect_continue: bool,
    /// Bytes of `100 Continue` already written.
    continue_written: usize,
    /// Fails the body when no bytes of it come for the idle timeout.
    stall: StallTimer,
    /// Fails the body when it is not whole by the listener's
    /// `body_timeout` (slow-body clients); `None`: no such bound.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// An HTTP/2 stream's body: its DATA frames, rather than the bytes of
    /// an HTTP/1.1 connection.
    stream: Option<Box<h2::RecvStream>>,
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl std::fmt::Debug for ClientBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBody")
            .field("decoder", &self.decoder)
            .finish()
    }
}

impl ClientBody {
    pub(crate) fn empty() -> Self {
        ClientBody {
            connection: None,
            decoder: Decoder::Done,
            expect_continue: false,
            continue_written: 0,
            stall: StallTimer::new(Duration::ZERO),
            deadline: None,
            stream: None,
        }
    }

    /// The body of an HTTP/2 request stream.
    pub(crate) fn stream(
        stream: h2::RecvStream,
        idle_timeout: Duration,
        body_timeout: Option<Duration>,
    ) -> Self {
        if stream.is_end_stream() {
            return ClientBody::empty();
        }
        ClientBody {
            stream: Some(Box::new(stream)),
            stall: StallTimer::new(idle_timeout),
            deadline: body_timeout.map(|limit| Box::pin(tokio::time::sleep(limit))),
            ..ClientBody::empty()
        }
    }

    /// The body is not whole by the listener's `body_timeout`.
    fn past_deadline(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline
            .as_mut()
            .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready())
    }

    fn poll_stream(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(stream) = self.stream.as_mut() else {
            return Poll::Ready(None);
        };
        match stream.poll_data(cx) {
            Poll::Ready(Some(Ok(data))) => {
                // Taken: the client may send as much again (flow control).
                let _ = stream.flow_control().release_capacity(data.len());
                self.stall.progressed();
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Err(error))) => {
                self.stream = None;
                let error = std::io::Error::other(error);
                Poll::Ready(Some(Err(BodyError::Io(error))))
            }
            Poll::Ready(None) => {
                self.stream = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if self.stall.expired(cx) || self.past_deadline(cx) {
                    self.stream = None;
                    return Poll::Ready(Some(Err(BodyError::Timeout)));
                }
                Poll::Pending
            }
        }
    }

    pub(super) fn new(
        connection: &Rc<ClientConnection>,
        framing: BodyFraming,
        expect_continue: bool,
        idle_timeout: Duration,
        body_timeout: Option<Duration>,
    ) -> Self {
        let decoder = Decoder::new(framing);
        if decoder.is_done() {
            return ClientBody::empty();
        }
        connection.body_pending.set(true);
        ClientBody {
            connection: Some(connection.clone()),
            decoder,
            expect_continue,
            continue_written: 0,
            stall: StallTimer::new(idle_timeout),
            deadline: body_timeout.map(|limit| Box::pin(tokio::time::sleep(limit))),
            stream: None,
        }
    }

    fn fail(&mut self, error: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.connection = None;
        self.decoder = Decoder::Done;
        Poll::Ready(Some(Err(error)))
    }

    /// Write `100 Continue`; Ready once it is all out.
    fn poll_continue(
        &mut self,
        connection: &ClientConnection,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.continue_written < CONTINUE.len() {
            let mut rest = [Bytes::from_static(&CONTINUE[self.continue_written..])];
            match connection.stream.try_send_parts(&mut rest) {
                Ok(n) => self.continue_written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::task::ready!(connection.stream.poll_write_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.expect_continue = false;
        Poll::Ready(Ok(()))
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.stream.is_some() {
            return this.poll_stream(cx);
        }
        let Some(connection) = this.connection.clone() else {
            return Poll::Ready(None);
        };
        loop {
            if connection.body_abandoned.get() {
                return this.fail(BodyError::Abandoned);
            }
            let decoded = this.decoder.decode(&mut connection.buf.borrow_mut());
            match decoded {
                Err(why) => return this.fail(BodyError::Malformed(why)),
                Ok(Decoded::End) => {
                    connection.body_pending.set(false);
                    this.connection = None;
                    return Poll::Ready(None);
                }
                Ok(Decoded::Data(data)) => {
                    if this.decoder.is_done() {
                        // The connection may read the next request now.
                        connection.body_pending.set(false);
                        this.connection = None;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::NeedMore) => {}
            }
            if this.expect_continue {
                match this.poll_continue(&connection, cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return this.fail(BodyError::Io(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            match connection.poll_fill(cx, BODY_READ) {
                Poll::Ready(Ok(0)) => return this.fail(BodyError::Incomplete),
                Poll::Ready(Ok(_)) => this.stall.progressed(),
                Poll::Ready(Err(e)) => return this.fail(BodyError::Io(e)),
                Poll::Pending => {
                    if this.stall.expired(cx) || this.past_deadline(cx) {
                        return this.fail(BodyError::Timeout);
                    }
                    connection.body_waker.set(Some(cx.waker().clone()));
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.stream {
            Some(stream) => stream.is_end_stream(),
            None => self.connection.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.stream.is_some() {
            return SizeHint::default();
        }
        match self.decoder {
            Decoder::Done => SizeHint::with_exact(0),
            Decoder::Length(left) => SizeHint::with_exact(left),
            Decoder::Chunked(_) => SizeHint::default(),
        }
    }
}
