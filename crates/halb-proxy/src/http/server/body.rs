//! The client's request body: Content-Length or chunked framing decoded
//! straight out of the connection's read buffer (each frame a slice of it,
//! not a copy), reading more from the socket only when the backend side
//! asks for more (backpressure).

use std::future::Future as _;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::head::BodyFraming;
use super::ClientConnection;

/// Read size while a body streams in.
const BODY_READ: usize = 64 * 1024;
/// Longest chunk extension accepted, and all trailers together.
const MAX_CHUNK_EXTENSION: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("malformed chunked body: {0}")]
    Malformed(&'static str),
    #[error("the client closed the connection before the end of the body")]
    Incomplete,
    #[error("the client sent no body bytes within the idle timeout")]
    Timeout,
    #[error("reading the request body: {0}")]
    Io(#[from] std::io::Error),
    #[error("the client connection was closed before the end of the body")]
    Abandoned,
}

/// What one step of decoding gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    Data(Bytes),
    /// The buffer holds no more of the body; read more.
    NeedMore,
    End,
}

/// Where the decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoder {
    /// Bytes left of a Content-Length body.
    Length(u64),
    Chunked(Chunk),
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Reading the chunk-size digits.
    Size {
        size: u64,
        digits: u8,
    },
    /// Skipping a chunk extension (`;name=value`) up to the CR.
    Extension {
        size: u64,
        len: usize,
    },
    /// Expecting the LF ending the size line.
    SizeLf {
        size: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines, read and dropped.
    Trailer {
        line: usize,
        total: usize,
    },
    TrailerLf {
        empty: bool,
        total: usize,
    },
}

impl Decoder {
    pub(crate) fn new(framing: BodyFraming) -> Decoder {
        match framing {
            BodyFraming::None | BodyFraming::Length(0) => Decoder::Done,
            BodyFraming::Length(n) => Decoder::Length(n),
            BodyFraming::Chunked => Decoder::Chunked(Chunk::Size { size: 0, digits: 0 }),
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        *self == Decoder::Done
    }

    /// Take the next piece of the body out of `buf`.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, BodyError> {
        loop {
            match *self {
                Decoder::Done => return Ok(Decoded::End),
                Decoder::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = left.min(buf.len() as u64);
                    *self = if n == left {
                        Decoder::Done
                    } else {
                        Decoder::Length(left - n)
                    };
                    return Ok(Decoded::Data(buf.split_to(n as usize).freeze()));
                }
                Decoder::Chunked(Chunk::Data(left)) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = left.min(buf.len() as u64);
                    *self = Decoder::Chunked(if n == left {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left - n)
                    });
                    return Ok(Decoded::Data(buf.split_to(n as usize).freeze()));
                }
                Decoder::Chunked(chunk) => {
                    let Some(&byte) = buf.first() else {
                        return Ok(Decoded::NeedMore);
                    };
                    buf.advance(1);
                    *self = match step(chunk, byte)? {
                        Some(next) => Decoder::Chunked(next),
                        None => Decoder::Done,
                    };
                }
            }
        }
    }
}

/// One byte of chunked framing (everything but chunk data). `None`: the
/// body ended.
fn step(chunk: Chunk, byte: u8) -> Result<Option<Chunk>, BodyError> {
    let malformed = |why| Err(BodyError::Malformed(why));
    let next = match chunk {
        Chunk::Size { size, digits } => match byte {
            b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                if digits == 16 {
                    return malformed("chunk size too large");
                }
                let digit = (byte as char).to_digit(16).unwrap_or(0);
                Chunk::Size {
                    size: size << 4 | u64::from(digit),
                    digits: digits + 1,
                }
            }
            b';' | b' ' | b'\t' if digits > 0 => Chunk::Extension { size, len: 0 },
            b'\r' if digits > 0 => Chunk::SizeLf { size },
            _ => return malformed("invalid chunk size"),
        },
        Chunk::Extension { size, len } => match byte {
            b'\r' => Chunk::SizeLf { size },
            b'\t' | b' '..=b'~' | 0x80..=0xff if len < MAX_CHUNK_EXTENSION => {
                Chunk::Extension { size, len: len + 1 }
            }
            _ => return malformed("invalid chunk extension"),
        },
        Chunk::SizeLf { size } => match byte {
            b'\n' if size == 0 => Chunk::Trailer { line: 0, total: 0 },
            b'\n' => Chunk::Data(size),
            _ => return malformed("chunk size line not ended by CRLF"),
        },
        Chunk::Data(_) => unreachable!("chunk data is split, not stepped"),
        Chunk::DataCr => match byte {
            b'\r' => Chunk::DataLf,
            _ => return malformed("chunk data not followed by CRLF"),
        },
        Chunk::DataLf => match byte {
            b'\n' => Chunk::Size { size: 0, digits: 0 },
            _ => return malformed("chunk data not followed by CRLF"),
        },
        Chunk::Trailer { line, total } => match byte {
            b'\r' => Chunk::TrailerLf {
                empty: line == 0,
                total,
            },
            b'\t' | b' '..=b'~' | 0x80..=0xff if total < MAX_TRAILERS => Chunk::Trailer {
                line: line + 1,
                total: total + 1,
            },
            _ => return malformed("invalid trailer"),
        },
        Chunk::TrailerLf { empty, total } => match byte {
            b'\n' if empty => return Ok(None),
            b'\n' => Chunk::Trailer { line: 0, total },
            _ => return malformed("trailer line not ended by CRLF"),
        },
    };
    Ok(Some(next))
}

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
    idle_timeout: Duration,
    /// Fires when no body bytes came for `idle_timeout`.
    timer: Option<Pin<Box<Sleep>>>,
    /// Bytes arrived since the timer was last armed.
    progressed: bool,
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
            idle_timeout: Duration::ZERO,
            timer: None,
            progressed: false,
        }
    }

    pub(super) fn new(
        connection: &Rc<ClientConnection>,
        framing: BodyFraming,
        expect_continue: bool,
        idle_timeout: Duration,
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
            idle_timeout,
            timer: None,
            progressed: false,
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
            match connection
                .stream
                .try_write(&CONTINUE[self.continue_written..])
            {
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
        let Some(connection) = this.connection.clone() else {
            return Poll::Ready(None);
        };
        loop {
            if connection.body_abandoned.get() {
                return this.fail(BodyError::Abandoned);
            }
            let decoded = this.decoder.decode(&mut connection.buf.borrow_mut());
            match decoded {
                Err(error) => return this.fail(error),
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
                Poll::Ready(Ok(_)) => this.progressed = true,
                Poll::Ready(Err(e)) => return this.fail(BodyError::Io(e)),
                Poll::Pending => {
                    let deadline = Instant::now() + this.idle_timeout;
                    let timer = match &mut this.timer {
                        Some(timer) => {
                            if std::mem::take(&mut this.progressed) {
                                timer.as_mut().reset(deadline);
                            }
                            timer
                        }
                        None => this
                            .timer
                            .insert(Box::pin(tokio::time::sleep_until(deadline))),
                    };
                    if timer.as_mut().poll(cx).is_ready() {
                        return this.fail(BodyError::Timeout);
                    }
                    connection.body_waker.set(Some(cx.waker().clone()));
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
            Decoder::Done => SizeHint::with_exact(0),
            Decoder::Length(left) => SizeHint::with_exact(left),
            Decoder::Chunked(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode `stream` fed in the given pieces; the data and what followed.
    fn decode_in_pieces(
        framing: BodyFraming,
        pieces: &[&[u8]],
    ) -> Result<(Vec<u8>, Vec<u8>), BodyError> {
        let mut decoder = Decoder::new(framing);
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf)? {
                    Decoded::Data(bytes) => data.extend_from_slice(&bytes),
                    Decoded::NeedMore => break,
                    Decoded::End => {
                        // What follows the body: the buffer and pieces not fed.
                        let mut rest = buf.to_vec();
                        rest.extend(pieces[i + 1..].iter().flat_map(|p| p.iter()));
                        return Ok((data, rest));
                    }
                }
            }
        }
        Err(BodyError::Incomplete)
    }

    const CHUNKED: &[u8] =
        b"5;name=value\r\nhello\r\n1A\r\n abcdefghijklmnopqrstuvwxy\r\n0\r\nX-Trailer: v\r\n\r\nNEXT";

    #[test]
    fn chunked_split_at_every_byte_boundary() {
        let expected = b"hello abcdefghijklmnopqrstuvwxy".to_vec();
        for split in 0..=CHUNKED.len() {
            let (a, b) = CHUNKED.split_at(split);
            let (data, rest) = decode_in_pieces(BodyFraming::Chunked, &[a, b])
                .unwrap_or_else(|e| panic!("split at {split}: {e}"));
            assert_eq!(data, expected, "split at {split}");
            assert_eq!(rest, b"NEXT", "split at {split}");
        }
        let bytes: Vec<&[u8]> = CHUNKED.chunks(1).collect();
        let (data, rest) = decode_in_pieces(BodyFraming::Chunked, &bytes).unwrap();
        assert_eq!((data, rest), (expected, b"NEXT".to_vec()));
    }

    #[test]
    fn chunked_without_trailers() {
        let (data, rest) =
            decode_in_pieces(BodyFraming::Chunked, &[b"3\r\nabc\r\n0\r\n\r\n"]).unwrap();
        assert_eq!((data.as_slice(), rest.as_slice()), (&b"abc"[..], &b""[..]));
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        for bad in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\rX0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"0\r\nX: \x01\r\n\r\n",
            b"0\r\nX: v\n\r\n",
            b"5;a\x00\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(
                matches!(
                    decode_in_pieces(BodyFraming::Chunked, &[bad]),
                    Err(BodyError::Malformed(_))
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn content_length_bodies_stop_at_their_length() {
        let stream = b"helloGET / HTTP/1.1\r\n";
        for split in 0..=stream.len() {
            let (a, b) = stream.split_at(split);
            let (data, rest) = decode_in_pieces(BodyFraming::Length(5), &[a, b]).unwrap();
            assert_eq!(data, b"hello", "split at {split}");
            assert_eq!(rest, b"GET / HTTP/1.1\r\n", "split at {split}");
        }
    }

    #[test]
    fn data_frames_share_the_read_buffer() {
        let mut buf = BytesMut::from(&b"0123456789"[..]);
        let start = buf.as_ptr();
        let mut decoder = Decoder::Length(10);
        let Decoded::Data(data) = decoder.decode(&mut buf).unwrap() else {
            panic!("data expected");
        };
        assert_eq!(data.as_ptr(), start, "a slice, not a copy");
        assert!(decoder.is_done());
    }
}
