//! Message body framing, decoded straight out of a connection's read
//! buffer: Content-Length and chunked (RFC 9112 §6 and §7.1). Each data
//! piece is a slice of the buffer, not a copy. Used for client request
//! bodies and backend response bodies alike.

use std::future::Future as _;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::time::{Instant, Sleep};

/// The largest Content-Length or chunk size accepted, plus one: 2^62.
/// Far above any real body, and below what a backend that reads lengths
/// into a signed 64-bit integer (Java, Go, nginx's `off_t`) would wrap, so
/// halb and the backend never read a length two ways; a length at or above
/// it gets 400 (a backend's, 502).
pub(crate) const LENGTH_LIMIT: u64 = 1 << 62;

/// Longest chunk extension accepted, and all trailers together.
const MAX_CHUNK_EXTENSION: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// How a message body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// No body (no Content-Length and no Transfer-Encoding, or length 0).
    None,
    Length(u64),
    Chunked,
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
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, &'static str> {
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
fn step(chunk: Chunk, byte: u8) -> Result<Option<Chunk>, &'static str> {
    let malformed = |why| Err(why);
    let next = match chunk {
        Chunk::Size { size, digits } => match byte {
            b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                if digits == 16 {
                    return malformed("chunk size too large");
                }
                let digit = (byte as char).to_digit(16).unwrap_or(0);
                let size = size << 4 | u64::from(digit);
                if size >= LENGTH_LIMIT {
                    return malformed("chunk size too large");
                }
                Chunk::Size {
                    size,
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

/// `{len:x}\r\n`, the line before a chunk of `len` bytes, carved from
/// the worker's arena.
pub(crate) fn chunk_size_line(len: usize) -> Bytes {
    crate::http::arena::carve(20, |dst| {
        let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1);
        for shift in (0..digits).rev() {
            dst.put_u8(b"0123456789abcdef"[(len >> (shift * 4)) & 0xf]);
        }
        dst.put_slice(b"\r\n");
    })
    .freeze()
}

/// What is wrong with a message's Content-Length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadLength {
    Invalid,
    /// Two values that differ: the message could be read two ways.
    Conflicting,
}

/// Fold one Content-Length header `value` into the length `seen` so far.
/// A list of equal values ("5, 5") is one length (RFC 9110 §8.6).
pub(crate) fn merge_content_length(value: &[u8], seen: &mut Option<u64>) -> Result<(), BadLength> {
    for item in value.split(|b| *b == b',') {
        let length = parse_length(item.trim_ascii()).ok_or(BadLength::Invalid)?;
        match *seen {
            Some(earlier) if earlier != length => return Err(BadLength::Conflicting),
            _ => *seen = Some(length),
        }
    }
    Ok(())
}

/// 1*DIGIT, without sign, below [`LENGTH_LIMIT`]: a Content-Length value.
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let length = digits.iter().try_fold(0u64, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })?;
    (length < LENGTH_LIMIT).then_some(length)
}

/// Ends a body that makes no progress for `limit`: one timer for the
/// body's life, made at its first wait and pushed back only after bytes
/// came (cheaper than a timer per read).
#[derive(Debug)]
pub(crate) struct StallTimer {
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    progressed: bool,
}

impl StallTimer {
    pub(crate) fn new(limit: Duration) -> Self {
        StallTimer {
            limit,
            timer: None,
            progressed: false,
        }
    }

    /// How long a stall may last.
    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// Bytes came.
    pub(crate) fn progressed(&mut self) {
        self.progressed = true;
    }

    /// The body must wait: whether it has waited too long already (if not,
    /// `cx` is woken when it has).
    pub(crate) fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = Instant::now() + self.limit;
        let timer = match &mut self.timer {
            Some(timer) => {
                if std::mem::take(&mut self.progressed) {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => self
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        timer.as_mut().poll(cx).is_ready()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines_are_hex() {
        for (n, line) in [
            (0, "0\r\n"),
            (5, "5\r\n"),
            (26, "1a\r\n"),
            (65536, "10000\r\n"),
        ] {
            assert_eq!(&chunk_size_line(n)[..], line.as_bytes());
        }
    }

    /// Decode `stream` fed in the given pieces; the data and what followed.
    fn decode_in_pieces(
        framing: BodyFraming,
        pieces: &[&[u8]],
    ) -> Result<(Vec<u8>, Vec<u8>), &'static str> {
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
        Err("incomplete")
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
            b"ffffffffffffffff\r\n",
            b"4000000000000000\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"0\r\nX: \x01\r\n\r\n",
            b"0\r\nX: v\n\r\n",
            b"5;a\x00\r\nhello\r\n0\r\n\r\n",
        ] {
            assert!(
                decode_in_pieces(BodyFraming::Chunked, &[bad])
                    .is_err_and(|why| why != "incomplete"),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn lengths_stop_below_two_to_the_62() {
        let mut seen = None;
        assert_eq!(
            merge_content_length(b"4611686018427387903", &mut seen),
            Ok(())
        );
        assert_eq!(seen, Some(LENGTH_LIMIT - 1));
        for huge in [
            &b"4611686018427387904"[..],
            b"9223372036854775808",
            b"18446744073709551615",
        ] {
            assert_eq!(
                merge_content_length(huge, &mut None),
                Err(BadLength::Invalid),
                "{:?}",
                String::from_utf8_lossy(huge)
            );
        }
        let mut decoder = Decoder::new(BodyFraming::Chunked);
        let mut buf = BytesMut::from(&b"3fffffffffffffff\r\nab"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"ab")))
        );
        let mut decoder = Decoder::new(BodyFraming::Chunked);
        let mut buf = BytesMut::from(&b"000000000000005\r\nhello\r\n0\r\n\r\n"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"hello"))),
            "leading zeros are digits like any other"
        );
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
