//! Responses to the client: the head encoded by hand, the body framed by
//! Content-Length, chunked encoding or the connection's end, and written
//! with vectored writes so that a small response is one system call.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use http::{StatusCode, Version};
use http_body::Body;

use super::service::{Reply, ReplyBody};
use crate::http::arena::carve;
use crate::http::codec::fields::{put_field, Fields, Known};
use crate::http::codec::framing::chunk_size_line;
use crate::relay::{splice_exact, Pipe};
use crate::transport::Transport;

/// Flush once this much is queued, even if the body has more ready.
const FLUSH_BYTES: usize = 64 * 1024;
/// Segments per vectored write.
const MAX_SEGMENTS: usize = 16;
/// A Content-Length body with at least this much left in the backend's
/// socket is spliced; smaller ones cost less copied than two more system
/// calls.
const SPLICE_MIN: u64 = 64 * 1024;

/// What the writer needs to know of the request it answers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Answering {
    pub(super) version: Version,
    pub(super) head_request: bool,
    /// Close the connection after this response (say so in the head).
    pub(super) close: bool,
}

/// How a response went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    /// Complete; the connection may serve another request.
    KeepAlive,
    /// Complete, but the connection must close (it said so, or its body
    /// was delimited by the close).
    Close,
    /// The body failed or the client went away: close at once.
    Broken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// HTTP/1.0 without a length: the body ends when the connection does.
    UntilClose,
}

/// The bytes queued for the next vectored write.
#[derive(Debug, Default)]
pub(super) struct Outgoing {
    segments: [Bytes; MAX_SEGMENTS],
    len: usize,
    queued: usize,
}

impl Outgoing {
    /// Queue `bytes`; the caller flushes before the queue is full.
    fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.queued += bytes.len();
            self.segments[self.len] = bytes;
            self.len += 1;
        }
    }

    fn room(&self) -> usize {
        MAX_SEGMENTS - self.len
    }

    fn clear(&mut self) {
        for segment in &mut self.segments[..self.len] {
            *segment = Bytes::new();
        }
        self.len = 0;
        self.queued = 0;
    }

    /// Write everything queued.
    async fn flush(&mut self, stream: &Transport, stall_limit: Duration) -> io::Result<()> {
        let mut written = false;
        stream
            .write_all(&mut self.segments[..self.len], stall_limit, &mut written)
            .await?;
        self.len = 0;
        self.queued = 0;
        Ok(())
    }
}

/// What a response head says beyond its fields, decided by [`prepare`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Said {
    content_length: Option<u64>,
    chunked: bool,
    connection: Option<&'static str>,
}

/// Write `reply` to the client, body and all.
pub(super) async fn write_response<B: ReplyBody>(
    stream: &Transport,
    out: &mut Outgoing,
    reply: Reply<B>,
    answering: Answering,
    stall_limit: Duration,
) -> Written {
    let Reply {
        status,
        fields,
        close,
        mut body,
    } = reply;
    let (framing, close, said) =
        prepare(status, &fields, close, body.size_hint().exact(), answering);
    let room = 160 + fields.encoded_len();
    out.push(carve(room, |dst| encode_head(dst, status, &fields, said)).freeze());
    drop(fields);

    let outcome = match framing {
        Framing::Empty => Ok(true),
        _ => write_body(stream, out, &mut body, framing, stall_limit).await,
    };
    let flushed = out.flush(stream, stall_limit).await;
    match (outcome, flushed) {
        (Ok(true), Ok(())) if close => Written::Close,
        (Ok(true), Ok(())) => Written::KeepAlive,
        _ => {
            out.clear();
            Written::Broken
        }
    }
}

/// Decide the framing of a response and what its head says of it and of
/// the connection's fate (`asks_close`: the response itself wants the
/// connection closed). Returns the framing and whether to close.
fn prepare(
    status: StatusCode,
    fields: &Fields,
    asks_close: bool,
    exact_length: Option<u64>,
    answering: Answering,
) -> (Framing, bool, Said) {
    let mut said = Said::default();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return (Framing::Empty, answering.close, said);
    }
    let mut close = answering.close || asks_close;
    let bodiless = answering.head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        Framing::Empty
    } else if let Some(length) = exact_length {
        // A backend's body knows the length its head gave (the parser
        // framed it by that header): only say it when the head does not.
        if fields.get(Known::ContentLength).is_none() {
            said.content_length = Some(length);
        }
        Framing::Length(length)
    } else if let Some(length) = content_length(fields) {
        Framing::Length(length)
    } else if answering.version == Version::HTTP_11 {
        said.chunked = true;
        Framing::Chunked
    } else {
        close = true;
        Framing::UntilClose
    };
    if close {
        said.connection = Some("close");
    } else if answering.version == Version::HTTP_10 {
        said.connection = Some("keep-alive");
    }
    (framing, close, said)
}

/// Stream the body out. `Ok(false)`: it ended short of its framing.
async fn write_body<B: ReplyBody>(
    stream: &Transport,
    out: &mut Outgoing,
    body: &mut B,
    framing: Framing,
    stall_limit: Duration,
) -> io::Result<bool> {
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => u64::MAX,
    };
    loop {
        if let Framing::Length(_) = framing {
            if let Some(spliced) = splice_rest(stream, out, body, left, stall_limit).await? {
                return Ok(spliced);
            }
        }
        // What the body has at hand joins the queue; when it must wait,
        // the queue goes out first.
        let polled = poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await;
        let frame = match polled {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                out.flush(stream, stall_limit).await?;
                poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed");
                return Ok(false);
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_trailers) => continue,
            },
        };
        if data.is_empty() {
            continue;
        }
        match framing {
            Framing::Chunked => {
                out.push(chunk_size_line(data.len()));
                out.push(data);
                out.push(Bytes::from_static(b"\r\n"));
            }
            _ => {
                let n = data.len() as u64;
                if n > left {
                    // More than the backend announced: never let it spill
                    // into the next response.
                    out.push(data.slice(..left as usize));
                    return Ok(false);
                }
                left -= n;
                out.push(data);
            }
        }
        if body.is_end_stream() {
            break;
        }
        if out.queued >= FLUSH_BYTES || out.room() < 4 {
            out.flush(stream, stall_limit).await?;
        }
    }
    match framing {
        Framing::Chunked => {
            out.push(Bytes::from_static(b"0\r\n\r\n"));
            Ok(true)
        }
        Framing::Length(_) => Ok(left == 0),
        _ => Ok(true),
    }
}

/// Send the rest of a large Content-Length body from the backend's socket
/// to the client's with `splice(2)`: the bytes never enter user space (as
/// in TCP mode). `None`: not spliceable (a small or chunked body, bytes
/// already buffered, no pipe to be had); the body goes on as frames.
/// `Some(complete)` otherwise.
async fn splice_rest<B: ReplyBody>(
    stream: &Transport,
    out: &mut Outgoing,
    body: &mut B,
    left: u64,
    stall_limit: Duration,
) -> io::Result<Option<bool>> {
    // Only between two plain sockets: TLS bytes go through user space.
    let Some(to) = stream.plain() else {
        return Ok(None);
    };
    let Some((from, length, backend_stall)) = body.splice_source(SPLICE_MIN) else {
        return Ok(None);
    };
    if length != left {
        return Ok(None);
    }
    let Ok(pipe) = Pipe::take() else {
        return Ok(None);
    };
    out.flush(stream, stall_limit).await?;
    let mut moved = 0;
    let stalls = (backend_stall, stall_limit);
    let result = splice_exact(from, to, &pipe, length, stalls, &mut moved).await;
    let complete = result.is_ok();
    body.spliced(moved, complete);
    match result {
        Ok(()) => {
            pipe.keep();
            Ok(Some(true))
        }
        Err(error) => {
            tracing::debug!(%error, "spliced response body failed");
            Ok(Some(false))
        }
    }
}

fn content_length(fields: &Fields) -> Option<u64> {
    std::str::from_utf8(fields.get(Known::ContentLength)?)
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The status line and headers, with a `Date` if the response has none.
/// A `101 Switching Protocols` goes as the backend sent it; other
/// responses lose their hop-by-hop headers and say what `said` holds.
fn encode_head(dst: &mut BytesMut, status: StatusCode, fields: &Fields, said: Said) {
    let reason = status.canonical_reason().unwrap_or("");
    dst.put_slice(b"HTTP/1.1 ");
    dst.put_slice(status.as_str().as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(reason.as_bytes());
    dst.put_slice(b"\r\n");
    let verbatim = status == StatusCode::SWITCHING_PROTOCOLS;
    let mut dated = false;
    for (name, value, known) in fields.iter() {
        if verbatim || !known.is_hop_by_hop() {
            dated |= known == Known::Date;
            put_field(dst, name, value);
        }
    }
    if let Some(length) = said.content_length {
        dst.put_slice(b"content-length: ");
        dst.put_slice(itoa_u64(length, &mut [0; 20]));
        dst.put_slice(b"\r\n");
    }
    if said.chunked {
        dst.put_slice(b"transfer-encoding: chunked\r\n");
    }
    if let Some(connection) = said.connection {
        put_field(dst, b"connection", connection.as_bytes());
    }
    if !dated {
        dst.put_slice(b"date: ");
        with_date(|date| dst.put_slice(date));
        dst.put_slice(b"\r\n");
    }
    dst.put_slice(b"\r\n");
}

/// `n` in decimal, written at the end of `buf`.
fn itoa_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

thread_local! {
    /// This worker's `Date` value and the second it is for.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

fn with_date(f: impl FnOnce(&[u8])) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != now {
            *cached = (now, http_date(now));
        }
        f(&cached.1);
    });
}

/// IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(unix_seconds: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix_seconds / 86_400;
    let secs = unix_seconds % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);

    let mut out = [0u8; 29];
    let two = |n: u64| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    out[3..5].copy_from_slice(b", ");
    out[5..7].copy_from_slice(&two(day as u64));
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    out[11] = b' ';
    let year = year as u64;
    out[12..14].copy_from_slice(&two(year / 100 % 100));
    out[14..16].copy_from_slice(&two(year % 100));
    out[16] = b' ';
    out[17..19].copy_from_slice(&two(secs / 3600));
    out[19] = b':';
    out[20..22].copy_from_slice(&two(secs / 60 % 60));
    out[22] = b':';
    out[23..25].copy_from_slice(&two(secs % 60));
    out[25..29].copy_from_slice(b" GMT");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The framing, whether the connection closes, and the head's text.
    fn framed(
        status: u16,
        headers: &[(&str, &str)],
        exact: Option<u64>,
        version: Version,
        head_request: bool,
    ) -> (Framing, bool, String) {
        let fields = Fields::from_pairs(headers);
        let answering = Answering {
            version,
            head_request,
            close: false,
        };
        let status = StatusCode::from_u16(status).unwrap();
        let (framing, close, said) = prepare(status, &fields, false, exact, answering);
        let mut dst = BytesMut::new();
        encode_head(&mut dst, status, &fields, said);
        let text = String::from_utf8(dst.to_vec()).unwrap();
        // Without the status line and the date.
        let fields = text
            .lines()
            .skip(1)
            .filter(|line| !line.is_empty() && !line.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("|");
        (framing, close, fields)
    }

    #[test]
    fn response_framing() {
        use Version as V;
        // The backend's Content-Length is kept.
        let f = framed(200, &[("content-length", "5")], None, V::HTTP_11, false);
        assert_eq!(f, (Framing::Length(5), false, "content-length: 5".into()));
        // ... once, when the body also knows its length (as a backend's
        // does), even in a repeated form only the parser reads.
        let f = framed(
            200,
            &[("content-length", "3, 3")],
            Some(3),
            V::HTTP_11,
            false,
        );
        assert_eq!(
            f,
            (Framing::Length(3), false, "content-length: 3, 3".into())
        );
        // A body of known size gets one.
        let f = framed(200, &[], Some(3), V::HTTP_11, false);
        assert_eq!(f, (Framing::Length(3), false, "content-length: 3".into()));
        // Otherwise chunked for HTTP/1.1 ...
        let f = framed(200, &[], None, V::HTTP_11, false);
        let chunked = "transfer-encoding: chunked".to_string();
        assert_eq!(f, (Framing::Chunked, false, chunked));
        // ... and the connection's end for HTTP/1.0.
        let f = framed(200, &[], None, V::HTTP_10, false);
        assert_eq!(f, (Framing::UntilClose, true, "connection: close".into()));
        // HTTP/1.0 keep-alive is said.
        let f = framed(200, &[("content-length", "0")], None, V::HTTP_10, false);
        let said = "content-length: 0|connection: keep-alive".to_string();
        assert_eq!(f, (Framing::Length(0), false, said));
        // No body for HEAD, 1xx, 204, 304; a HEAD keeps its Content-Length.
        let f = framed(200, &[("content-length", "9")], Some(0), V::HTTP_11, true);
        assert_eq!(f, (Framing::Empty, false, "content-length: 9".into()));
        for status in [100, 204, 304] {
            let f = framed(status, &[], None, V::HTTP_11, false);
            assert_eq!(f, (Framing::Empty, false, String::new()), "{status}");
        }
        // Hop-by-hop headers (left by the forwarding path) never go out.
        let f = framed(
            200,
            &[("Connection", "x"), ("TE", "y"), ("x-a", "1")],
            Some(12_345_678_901),
            V::HTTP_11,
            false,
        );
        let said = "x-a: 1|content-length: 12345678901".to_string();
        assert_eq!(f, (Framing::Length(12_345_678_901), false, said));
        // A 101 keeps its upgrade headers.
        let f = framed(
            101,
            &[("connection", "upgrade"), ("upgrade", "websocket")],
            None,
            V::HTTP_11,
            false,
        );
        let said = "connection: upgrade|upgrade: websocket".to_string();
        assert_eq!(f, (Framing::Empty, false, said));
    }

    #[test]
    fn a_response_that_asks_to_close_closes() {
        let answering = Answering {
            version: Version::HTTP_11,
            head_request: false,
            close: false,
        };
        let fields = Fields::default();
        let (framing, close, said) =
            prepare(StatusCode::BAD_REQUEST, &fields, true, Some(4), answering);
        assert_eq!((framing, close), (Framing::Length(4), true));
        assert_eq!(said.connection, Some("close"));
    }

    #[test]
    fn dates_are_imf_fixdate() {
        assert_eq!(&http_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&http_date(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&http_date(4_102_444_799), b"Thu, 31 Dec 2099 23:59:59 GMT");
    }

    #[test]
    fn heads_carry_status_headers_and_a_date() {
        let fields = Fields::from_pairs(&[("x-a", "1")]);
        let mut dst = BytesMut::new();
        encode_head(&mut dst, StatusCode::NOT_FOUND, &fields, Said::default());
        let text = String::from_utf8(dst.to_vec()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\nx-a: 1\r\ndate: "),
            "{text}"
        );
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
        let dated = Fields::from_pairs(&[("Date", "x")]);
        let mut dst = BytesMut::new();
        encode_head(&mut dst, StatusCode::OK, &dated, Said::default());
        assert_eq!(&dst[..], b"HTTP/1.1 200 OK\r\nDate: x\r\n\r\n");
    }
}
