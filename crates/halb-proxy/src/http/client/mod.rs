//! halb's HTTP/1.1 client side: a backend connection is driven by the
//! request that holds it, with no task or channel of its own. The request
//! head goes out as bytes encoded once, the body is streamed (its framing
//! kept, or re-framed as chunked), and the response head is parsed from the
//! connection's read buffer; the body then streams from the same buffer
//! ([`BackendBody`]) and the connection goes back to the worker's pool when
//! the body has been read to its end.
//!
//! A backend may answer before it has read the whole request body. An
//! error (an early 413, say) or a close stops the sending: the response is
//! forwarded and the connection is not reused. A final head that accepts
//! the body (a streaming service's 200) is forwarded at once, and the rest
//! of the body goes on beside the response ([`Upload`]): both directions
//! stream together, as they would with no proxy between.

mod body;
pub(crate) mod head;
mod request_body;
mod upload;

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Method;
use tokio::net::TcpStream;

pub(crate) use body::BackendBody;
pub(crate) use head::ResponseHead;
pub(crate) use upload::Upload;

pub(crate) use crate::transport::BackendStream;
pub(crate) use request_body::RequestBody;

use super::arena::carve;
use crate::admission::BackendDescriptor;
use crate::error::ProxyError;
use upload::UploadError;

/// First read of a response: into the worker's arena, keeping only what came.
const HEAD_READ: usize = 4096;
/// Read size while a response body streams in.
const BODY_READ: usize = 64 * 1024;
/// Keep reading into the buffer while at least this much of it is free.
const MIN_SPARE: usize = 1024;

/// How a backend failed to give a response.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the backend closed the connection before its response was complete")]
    Closed,
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error("the response head is too large")]
    HeadTooLarge,
    #[error("the backend sent nothing more of its response within the pool's timeout")]
    BodyTimeout,
}

/// An HTTP/1.1 connection to a backend.
#[derive(Debug)]
pub(crate) struct BackendConnection {
    stream: BackendStream,
    pub(crate) address: SocketAddr,
    /// The [`halb_tls::BackendTls::id`] it was made with; 0: plain.
    pub(crate) tls_id: u64,
    /// Bytes read and not used yet; unallocated between requests.
    buf: BytesMut,
    /// The last read emptied the socket.
    drained: bool,
    /// Counted in the process's descriptor budget while open.
    descriptor: BackendDescriptor,
}

/// What a backend's early bytes say while the request body is being sent.
enum Answer {
    /// Nothing final yet (nothing, interim heads, or part of a head).
    NotYet,
    /// A final head that leaves the connection open and is not an error:
    /// the body is still wanted, and goes on beside the response.
    Acceptance,
    /// `101 Switching Protocols`: the body is sent before the tunnel opens.
    Switching,
    /// An error status, a close, or bytes that are no response: stop.
    Refusal,
}

/// How much of a request went out before its response head came.
#[derive(Debug)]
pub(crate) enum Sent {
    /// All of it.
    Whole,
    /// Sending stopped early (the backend refused the body, or a write
    /// failed): the connection is not reused.
    Cut,
    /// The backend accepted the body before it had all come: the rest goes
    /// out beside the response.
    Ongoing(Box<Upload>),
}

/// Why an exchange on a connection failed.
#[derive(Debug)]
pub(crate) struct ExchangeFailure {
    pub(crate) error: ProxyError,
    /// Nothing of a response came before the connection ended: on a reused
    /// connection, the backend had closed it while it was idle.
    pub(crate) nothing_received: bool,
    /// Some of the request was handed to the socket.
    pub(crate) written: bool,
}

impl BackendConnection {
    pub(crate) fn new(stream: BackendStream, address: SocketAddr, tls_id: u64) -> Self {
        BackendConnection {
            stream,
            address,
            tls_id,
            buf: BytesMut::new(),
            drained: true,
            descriptor: BackendDescriptor::count(),
        }
    }

    /// Whether an idle connection can take a request: nothing arrived
    /// while it was idle (a close, or bytes no request asked for). Reads
    /// the readiness the worker's event loop already has; no system call.
    pub(crate) fn is_quiet(&self) -> bool {
        self.buf.is_empty() && self.stream.is_quiet()
    }

    /// Ready the connection for the idle pool: `false` if it cannot be
    /// reused (bytes beyond the response, or a close already seen).
    pub(crate) fn settle(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        self.buf = BytesMut::new();
        if self.drained {
            // The last read was short, so the socket was empty then and the
            // event loop has not run since: forget the readiness it left,
            // so that [`Self::is_quiet`] sees only what comes from now on.
            self.stream.note_drained();
            return true;
        }
        // The last read filled the buffer: look once more.
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Read what the socket has into the buffer, without waiting.
    fn try_fill(&mut self, grow: usize) -> io::Result<usize> {
        let (n, offered) = if self.buf.capacity() == 0 && grow <= HEAD_READ {
            // As on the client side: a small response is read into the
            // worker's arena, and only what came is kept.
            let mut read = Ok(0);
            let fresh = carve(HEAD_READ, |arena| read = self.stream.try_read_buf(arena));
            let n = read?;
            if n > 0 {
                self.buf = fresh;
            }
            (n, HEAD_READ)
        } else {
            if self.buf.capacity() - self.buf.len() < MIN_SPARE {
                self.buf.reserve(grow);
            }
            let offered = self.buf.capacity() - self.buf.len();
            (self.stream.try_read_buf(&mut self.buf)?, offered)
        };
        self.drained = n < offered;
        Ok(n)
    }

    /// Read into the buffer; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>, grow: usize) -> Poll<io::Result<usize>> {
        loop {
            std::task::ready!(self.stream.poll_read_ready(cx))?;
            match self.try_fill(grow) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    async fn fill(&mut self, grow: usize) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx, grow)).await
    }

    /// Send one request and wait for its final response head (1xx heads
    /// other than `101` are dropped). `head` is the encoded request head;
    /// `chunked`: the body is sent with chunked framing, else as is. The
    /// backend has `stall_limit` to answer once the request is sent (an
    /// upload itself may take longer, as long as it moves). On success,
    /// also how much of the request went out.
    pub(crate) async fn exchange(
        &mut self,
        head: &Bytes,
        body: &mut RequestBody,
        chunked: bool,
        method: &Method,
        stall_limit: Duration,
    ) -> Result<(ResponseHead, Sent), ExchangeFailure> {
        let mut written = false;
        let sent = if matches!(body, RequestBody::Empty) {
            self.stream
                .write_all(&mut [head.clone()], stall_limit, &mut written)
                .await
                .map(|()| Sent::Whole)
                .map_err(|e| ProxyError::Upstream(BackendError::Io(e)))
        } else {
            // Boxed: the body's path is large, and a request's future that
            // holds it inline is moved whole at every request.
            Box::pin(self.send_with_body(head, body, chunked, method, stall_limit, &mut written))
                .await
        };
        let fail = |error, nothing_received| ExchangeFailure {
            error,
            nothing_received,
            written,
        };
        let sent = match sent {
            Ok(sent) => sent,
            Err(error) => return Err(fail(error, self.buf.is_empty())),
        };
        match tokio::time::timeout(stall_limit, self.read_head(method)).await {
            Ok(Ok(head)) => Ok((head, sent)),
            Ok(Err(error)) => {
                let closed = matches!(error, BackendError::Closed) && self.buf.is_empty();
                Err(fail(ProxyError::Upstream(error), closed))
            }
            Err(_) => Err(fail(ProxyError::ResponseTimeout, false)),
        }
    }

    /// Write the head and the body, watching for an early answer. The body
    /// is taken from `body` and put back unless the upload goes on beside
    /// the response ([`Sent::Ongoing`]).
    async fn send_with_body(
        &mut self,
        head: &Bytes,
        body: &mut RequestBody,
        chunked: bool,
        method: &Method,
        stall_limit: Duration,
        written: &mut bool,
    ) -> Result<Sent, ProxyError> {
        let taken = std::mem::replace(body, RequestBody::Empty);
        let mut upload = Upload::new(head.clone(), taken, chunked, stall_limit);
        // Once a `101` head has come, the socket is not watched (its bytes
        // wait in the kernel) until the body is sent.
        let mut watching = true;
        let outcome = loop {
            let progress = tokio::select! {
                biased;
                sent = std::future::poll_fn(|cx| upload.poll_send(&self.stream, cx)) => Some(sent),
                _ = self.stream.readable(), if watching => None,
            };
            match progress {
                Some(Ok(())) => break Ok(Sent::Whole),
                Some(Err(UploadError::Body(error))) => break Err(error.into()),
                Some(Err(UploadError::Stalled)) => break Err(ProxyError::ResponseTimeout),
                // The backend may have refused the body, answered and
                // closed: what it sent is read next, and only if nothing
                // came does the attempt fail.
                Some(Err(UploadError::Io(e))) => {
                    tracing::debug!(error = %e, "sending a request body failed");
                    break Ok(Sent::Cut);
                }
                None => match self.answer_begun(method) {
                    Answer::Refusal => break Ok(Sent::Cut),
                    Answer::Acceptance => {
                        *written |= upload.sent() > 0;
                        return Ok(Sent::Ongoing(Box::new(upload)));
                    }
                    Answer::Switching => watching = false,
                    Answer::NotYet => {}
                },
            }
        };
        *written |= upload.sent() > 0;
        *body = upload.into_body();
        outcome
    }

    /// The socket turned readable while the request body was being sent:
    /// read what came. Interim heads (`100 Continue`) are dropped.
    fn answer_begun(&mut self, method: &Method) -> Answer {
        match self.try_fill(HEAD_READ) {
            Ok(0) => return Answer::Refusal,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Answer::Refusal,
        }
        loop {
            if self.buf.is_empty() {
                return Answer::NotYet;
            }
            // Parse a copy: a final head stays in the buffer for read_head.
            let mut rest = self.buf.clone();
            return match head::parse_response(&mut rest, method) {
                Ok(Some(head))
                    if head.status.is_informational()
                        && head.status != http::StatusCode::SWITCHING_PROTOCOLS =>
                {
                    self.buf = rest;
                    continue;
                }
                // A head still coming: the body goes on until it is whole.
                Ok(None) => Answer::NotYet,
                // A backend may answer 2xx before it has read the body and
                // read it all the same: it gets the rest (RFC 9112 §9.3
                // asks a client to stop only when the server closes).
                Ok(Some(head)) if head.status == http::StatusCode::SWITCHING_PROTOCOLS => {
                    Answer::Switching
                }
                Ok(Some(head)) if head.keep_alive && head.status.as_u16() < 400 => {
                    Answer::Acceptance
                }
                _ => Answer::Refusal,
            };
        }
    }

    /// Read the final response head.
    async fn read_head(&mut self, method: &Method) -> Result<ResponseHead, BackendError> {
        loop {
            if !self.buf.is_empty() {
                if let Some(head) = head::parse_response(&mut self.buf, method)? {
                    let status = head.status;
                    if status.is_informational() && status != http::StatusCode::SWITCHING_PROTOCOLS
                    {
                        continue;
                    }
                    return Ok(head);
                }
            }
            let grow = if self.buf.is_empty() {
                HEAD_READ
            } else {
                head::MAX_HEAD_BYTES.min(self.buf.len() * 2)
            };
            if self.fill(grow).await? == 0 {
                return Err(BackendError::Closed);
            }
        }
    }

    /// The stream and any bytes read past the `101` head, for a tunnel,
    /// and the stream's place in the descriptor budget.
    pub(crate) fn into_tunnel(self) -> (BackendStream, BytesMut, BackendDescriptor) {
        (self.stream, self.buf, self.descriptor)
    }

    /// The backend's socket when a body can be spliced from it.
    pub(crate) fn plain(&self) -> Option<&TcpStream> {
        self.stream.plain()
    }
}
