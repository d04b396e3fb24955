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
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode, Version};
use http_body::Body;
use tokio::net::TcpStream;

use crate::http::body::ResponseBody;
use crate::http::framing::chunk_size_line;

/// Flush once this much is queued, even if the body has more ready.
const FLUSH_BYTES: usize = 64 * 1024;
/// Segments per vectored write.
const MAX_SEGMENTS: usize = 16;

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
    async fn flush(&mut self, stream: &TcpStream, stall_limit: Duration) -> io::Result<()> {
        let mut written = false;
        crate::sock::write_all(
            stream,
            &mut self.segments[..self.len],
            stall_limit,
            &mut written,
        )
        .await?;
        self.len = 0;
        self.queued = 0;
        Ok(())
    }
}

/// Write `response` to the client, body and all.
pub(super) async fn write_response(
    stream: &TcpStream,
    out: &mut Outgoing,
    response: Response<ResponseBody>,
    answering: Answering,
    stall_limit: Duration,
) -> Written {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    let mut headers = parts.headers;
    let (framing, close) = prepare(status, &mut headers, body.size_hint().exact(), answering);
    let room = 128
        + headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    out.push(super::carve(room, |dst| encode_head(dst, status, &headers)).freeze());
    drop(headers);

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

/// Decide the framing of a response and set the headers that announce it
/// and the connection's fate. Returns the framing and whether to close.
fn prepare(
    status: StatusCode,
    headers: &mut HeaderMap,
    exact_length: Option<u64>,
    answering: Answering,
) -> (Framing, bool) {
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return (Framing::Empty, answering.close);
    }
    let mut close = answering.close || says_close(headers);
    headers.remove(header::CONNECTION);
    let bodiless = answering.head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        Framing::Empty
    } else if let Some(length) = content_length(headers) {
        Framing::Length(length)
    } else if let Some(length) = exact_length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        Framing::Length(length)
    } else if answering.version == Version::HTTP_11 {
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        Framing::Chunked
    } else {
        close = true;
        Framing::UntilClose
    };
    if close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    } else if answering.version == Version::HTTP_10 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    (framing, close)
}

/// Stream the body out. `Ok(false)`: it ended short of its framing.
async fn write_body(
    stream: &TcpStream,
    out: &mut Outgoing,
    body: &mut ResponseBody,
    framing: Framing,
    stall_limit: Duration,
) -> io::Result<bool> {
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => u64::MAX,
    };
    loop {
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

fn says_close(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The status line and headers, with a `Date` if the response has none.
fn encode_head(dst: &mut BytesMut, status: StatusCode, headers: &HeaderMap) {
    let reason = status.canonical_reason().unwrap_or("");
    dst.put_slice(b"HTTP/1.1 ");
    dst.put_slice(status.as_str().as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(reason.as_bytes());
    dst.put_slice(b"\r\n");
    for (name, value) in headers {
        dst.put_slice(name.as_str().as_bytes());
        dst.put_slice(b": ");
        dst.put_slice(value.as_bytes());
        dst.put_slice(b"\r\n");
    }
    if !headers.contains_key(header::DATE) {
        dst.put_slice(b"date: ");
        with_date(|date| dst.put_slice(date));
        dst.put_slice(b"\r\n");
    }
    dst.put_slice(b"\r\n");
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

    fn framed(
        status: u16,
        headers: &[(&str, &str)],
        exact: Option<u64>,
        version: Version,
        head_request: bool,
    ) -> (Framing, bool, HeaderMap) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let answering = Answering {
            version,
            head_request,
            close: false,
        };
        let status = StatusCode::from_u16(status).unwrap();
        let (framing, close) = prepare(status, &mut map, exact, answering);
        (framing, close, map)
    }

    #[test]
    fn response_framing() {
        use Version as V;
        // The backend's Content-Length is kept.
        let (f, close, h) = framed(200, &[("content-length", "5")], None, V::HTTP_11, false);
        assert_eq!((f, close), (Framing::Length(5), false));
        assert!(!h.contains_key("connection") && !h.contains_key("transfer-encoding"));
        // A body of known size gets one.
        let (f, _, h) = framed(200, &[], Some(3), V::HTTP_11, false);
        assert_eq!(
            (f, h["content-length"].to_str().unwrap()),
            (Framing::Length(3), "3")
        );
        // Otherwise chunked for HTTP/1.1 ...
        let (f, close, h) = framed(200, &[], None, V::HTTP_11, false);
        assert_eq!(
            (f, close, h["transfer-encoding"].to_str().unwrap()),
            (Framing::Chunked, false, "chunked")
        );
        // ... and the connection's end for HTTP/1.0.
        let (f, close, h) = framed(200, &[], None, V::HTTP_10, false);
        assert_eq!(
            (f, close, h["connection"].to_str().unwrap()),
            (Framing::UntilClose, true, "close")
        );
        // HTTP/1.0 keep-alive is said.
        let (f, close, h) = framed(200, &[("content-length", "0")], None, V::HTTP_10, false);
        assert_eq!(
            (f, close, h["connection"].to_str().unwrap()),
            (Framing::Length(0), false, "keep-alive")
        );
        // No body for HEAD, 1xx, 204, 304; a HEAD keeps its Content-Length.
        let (f, _, h) = framed(200, &[("content-length", "9")], Some(0), V::HTTP_11, true);
        assert_eq!(
            (f, h["content-length"].to_str().unwrap()),
            (Framing::Empty, "9")
        );
        for status in [100, 204, 304] {
            let (f, _, h) = framed(status, &[], None, V::HTTP_11, false);
            assert_eq!(f, Framing::Empty, "{status}");
            assert!(!h.contains_key("transfer-encoding") && !h.contains_key("content-length"));
        }
        // A response that says close closes.
        let (f, close, h) = framed(400, &[("connection", "close")], Some(4), V::HTTP_11, false);
        assert_eq!(
            (f, close, h["connection"].to_str().unwrap()),
            (Framing::Length(4), true, "close")
        );
        // A 101 keeps its upgrade headers.
        let (f, close, h) = framed(
            101,
            &[("connection", "upgrade"), ("upgrade", "websocket")],
            None,
            V::HTTP_11,
            false,
        );
        assert_eq!(
            (f, close, h["connection"].to_str().unwrap()),
            (Framing::Empty, false, "upgrade")
        );
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
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        let mut dst = BytesMut::new();
        encode_head(&mut dst, StatusCode::NOT_FOUND, &headers);
        let text = String::from_utf8(dst.to_vec()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\nx-a: 1\r\ndate: "),
            "{text}"
        );
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
    }
}
