//! A request on its way to a backend: the encoded head, then the body's
//! frames as the client sends them (kept as they are, or re-framed as
//! chunked). It is driven by polling, so that it can go on beside the
//! response once the backend has answered (full duplex).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};

use super::RequestBody;
use crate::http::codec::framing::{chunk_size_line, StallTimer};
use crate::http::codec::BodyError;

/// Frames are taken from the client while fewer parts than this wait.
const MAX_QUEUED: usize = 4;
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Why an upload stopped before its end.
#[derive(Debug)]
pub(crate) enum UploadError {
    /// The client's body failed.
    Body(BodyError),
    /// The socket refused the bytes.
    Io(io::Error),
    /// The backend took none of the bytes for the pool's timeout.
    Stalled,
}

/// The bytes of a request not yet handed to the backend's socket.
#[derive(Debug)]
pub(crate) struct Upload {
    /// Encoded bytes waiting for the socket; the written ones are emptied.
    pending: Vec<Bytes>,
    body: RequestBody,
    /// Re-frame the body as chunked.
    chunked: bool,
    /// The body's last frame was taken (and the last chunk queued).
    body_done: bool,
    /// Bytes handed to the socket so far.
    sent: u64,
    stall: StallTimer,
}

impl Upload {
    pub(crate) fn new(
        head: Bytes,
        body: RequestBody,
        chunked: bool,
        stall_limit: Duration,
    ) -> Self {
        Upload {
            pending: vec![head],
            body,
            chunked,
            body_done: false,
            sent: 0,
            stall: StallTimer::new(stall_limit),
        }
    }

    /// Bytes handed to the socket so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }

    /// The client's body, with what is left of it.
    pub(crate) fn into_body(self) -> RequestBody {
        self.body
    }

    /// Send as much as the client and the socket allow. `Ready(Ok(()))`
    /// once the request has been handed to the socket whole.
    pub(crate) fn poll_send(
        &mut self,
        stream: &super::BackendStream,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UploadError>> {
        loop {
            while !self.body_done && self.pending.len() < MAX_QUEUED {
                match Pin::new(&mut self.body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => self.queue(frame),
                    Poll::Ready(Some(Err(error))) => {
                        return Poll::Ready(Err(UploadError::Body(error)))
                    }
                    Poll::Ready(None) => {
                        self.body_done = true;
                        if self.chunked {
                            self.pending.push(Bytes::from_static(LAST_CHUNK));
                        }
                    }
                    Poll::Pending => break,
                }
            }
            if self.pending.is_empty() {
                return if self.body_done {
                    Poll::Ready(Ok(()))
                } else {
                    // The client's body wakes the task when more comes.
                    Poll::Pending
                };
            }
            match stream.try_send_parts(&mut self.pending) {
                Ok(n) => {
                    self.sent += n as u64;
                    self.stall.progressed();
                    self.pending.retain(|part| !part.is_empty());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match stream.poll_write_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(UploadError::Io(e))),
                        Poll::Pending if self.stall.expired(cx) => {
                            return Poll::Ready(Err(UploadError::Stalled))
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Err(e) => return Poll::Ready(Err(UploadError::Io(e))),
            }
        }
    }

    fn queue(&mut self, frame: Frame<Bytes>) {
        // Trailers are not forwarded.
        let Ok(data) = frame.into_data() else {
            return;
        };
        if data.is_empty() {
            return;
        }
        if self.chunked {
            self.pending.push(chunk_size_line(data.len()));
            self.pending.push(data);
            self.pending.push(Bytes::from_static(b"\r\n"));
        } else {
            self.pending.push(data);
        }
    }
}
