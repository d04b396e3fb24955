//! Request heads: parsed once with httparse, validated for what a load
//! balancer must refuse (ambiguous framing, a missing Host), and kept as
//! [`Fields`]: offsets into the head's bytes, not copies.

use bytes::BytesMut;
use http::{Method, Uri, Version};

use super::fields::{has_token, Fields, FieldsBuilder, Known};
use super::framing::{merge_content_length, BadLength, BodyFraming};
use super::span::Span;
use crate::error::ProxyError;

/// Headers a request head may carry; more gets 431.
pub(crate) const MAX_HEADERS: usize = 100;

/// A request head, validated, with what the connection needs to know.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) fields: Fields,
    pub(crate) body: BodyFraming,
    /// The client's version (the request forwarded is always HTTP/1.1).
    pub(crate) version: Version,
    /// Whether the client lets the connection live after this exchange.
    pub(crate) keep_alive: bool,
    /// `Expect: 100-continue`: say 100 Continue before reading the body.
    pub(crate) expect_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` header.
    pub(crate) upgrade: bool,
}

/// Parse the request head at the start of `buf`. `Ok(None)`: not complete
/// yet (read more). On success the head's bytes are split off `buf`; what
/// follows (body, pipelined requests) stays in it.
pub(crate) fn parse(
    buf: &mut BytesMut,
    max_bytes: usize,
) -> Result<Option<RequestHead>, ProxyError> {
    // Left uninitialised: clearing 100 headers per request costs more than
    // parsing a typical head.
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > max_bytes => {
            return Err(ProxyError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ProxyError::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(bad("unsupported HTTP version\n")),
        Err(_) => return Err(bad("malformed request head\n")),
    };
    if len > max_bytes {
        return Err(ProxyError::HeadTooLarge);
    }
    let version = match request.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let method = request.method.unwrap_or("");
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| bad("malformed method\n"))?;
    if method == Method::CONNECT {
        // A reverse proxy has no tunnel to offer; forwarding it would
        // hand the backend an authority-form target it never expects.
        return Err(ProxyError::MethodNotAllowed);
    }
    let base: &[u8] = buf;
    let target = Span::of(base, request.path.unwrap_or("").as_bytes());
    let mut fields = FieldsBuilder::with_capacity(request.headers.len());
    for header in request.headers.iter() {
        fields.push(base, header.name.as_bytes(), header.value);
    }
    let head = buf.split_to(len).freeze();

    let uri = Uri::from_maybe_shared(target.slice(&head))
        .map_err(|_| bad("malformed request target\n"))?;
    let fields = fields.finish(head);
    let mut framing = Framing::default();
    for (_, value, known) in fields.iter() {
        framing.observe(known, value)?;
    }
    let body = framing.body(version)?;
    if version == Version::HTTP_11 && framing.hosts != 1 {
        return Err(bad(if framing.hosts == 0 {
            "a Host header is required\n"
        } else {
            "a request must carry one Host header\n"
        }));
    }
    let keep_alive = match version {
        Version::HTTP_10 => framing.keep_alive_token && !framing.close_token,
        _ => !framing.close_token,
    };
    let upgrade = framing.upgrade_token && fields.contains(Known::Upgrade);
    Ok(Some(RequestHead {
        method,
        uri,
        fields,
        body,
        version,
        keep_alive,
        expect_continue: framing.expect_continue && version == Version::HTTP_11,
        upgrade,
    }))
}

/// When a partial head is worth parsing again. httparse starts over on
/// each call, so parsing after every read of a head that trickles in a few
/// bytes at a time costs O(n²) (a 200 KB head sent a byte at a time cost
/// 2.4 s of CPU). A head is parsed again only when its end may have come
/// (an LF followed by CR or LF in the new bytes), when the buffer has
/// doubled since the last parse (so a malformed or over-full head is still
/// refused early), or when it is over the limit: O(n) in all.
#[derive(Debug, Default)]
pub(crate) struct Reparse {
    parsed_at: usize,
    scanned: usize,
}

impl Reparse {
    pub(crate) fn due(&mut self, buf: &[u8], max_bytes: usize) -> bool {
        if buf.is_empty() {
            return false;
        }
        // Two bytes back: the LF CR before the final LF may have come last time.
        let from = self.scanned.saturating_sub(2).min(buf.len());
        self.scanned = buf.len();
        let may_end = buf[from..]
            .windows(2)
            .any(|pair| pair == b"\n\n" || pair == b"\n\r");
        let due = self.parsed_at == 0
            || may_end
            || buf.len() >= 2 * self.parsed_at
            || buf.len() > max_bytes;
        if due {
            self.parsed_at = buf.len();
        }
        due
    }
}

fn bad(why: &'static str) -> ProxyError {
    ProxyError::BadRequest(why)
}

/// What the headers say about framing and the connection, gathered in the
/// one pass that builds the header map.
#[derive(Debug, Default)]
struct Framing {
    content_length: Option<u64>,
    /// Transfer-Encoding seen; `chunked_last` when its last coding is chunked.
    transfer_encoding: bool,
    chunked_last: bool,
    /// A coding other than a final `chunked` (gzip, or chunked applied twice).
    other_coding: bool,
    hosts: u32,
    close_token: bool,
    keep_alive_token: bool,
    upgrade_token: bool,
    expect_continue: bool,
}

impl Framing {
    fn observe(&mut self, known: Known, value: &[u8]) -> Result<(), ProxyError> {
        match known {
            Known::ContentLength => {
                merge_content_length(value, &mut self.content_length).map_err(|why| match why {
                    BadLength::Invalid => bad("invalid Content-Length\n"),
                    BadLength::Conflicting => bad("conflicting Content-Length values\n"),
                })?;
            }
            Known::TransferEncoding => {
                for coding in value.split(|b| *b == b',') {
                    let coding = coding.trim_ascii();
                    if coding.is_empty() {
                        // `chunked,`: RFC 9110 §5.6.1 lets a recipient skip
                        // it, but a backend that reads it differently would
                        // frame the body its own way (HAProxy refuses it too).
                        return Err(bad("empty element in Transfer-Encoding\n"));
                    }
                    if self.chunked_last {
                        // Anything after chunked, including chunked again.
                        self.other_coding = true;
                    }
                    self.chunked_last = coding.eq_ignore_ascii_case(b"chunked");
                    if !self.chunked_last {
                        self.other_coding = true;
                    }
                    self.transfer_encoding = true;
                }
            }
            Known::Host => self.hosts += 1,
            Known::Connection => {
                self.close_token |= has_token(value, b"close");
                self.keep_alive_token |= has_token(value, b"keep-alive");
                self.upgrade_token |= has_token(value, b"upgrade");
            }
            Known::Expect => {
                self.expect_continue |= value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            }
            _ => {}
        }
        Ok(())
    }

    /// The body's framing (RFC 9112 §6.3), refusing what could be read two
    /// ways: a request smuggler's favourite tools.
    fn body(&self, version: Version) -> Result<BodyFraming, ProxyError> {
        if self.transfer_encoding {
            if self.content_length.is_some() {
                return Err(bad(
                    "a request must not carry both Content-Length and Transfer-Encoding\n",
                ));
            }
            if version == Version::HTTP_10 {
                return Err(bad("Transfer-Encoding is not allowed in HTTP/1.0\n"));
            }
            if !self.chunked_last {
                return Err(bad("the last transfer coding must be chunked\n"));
            }
            if self.other_coding {
                return Err(ProxyError::NotImplemented(
                    "only the chunked transfer coding is supported\n",
                ));
            }
            return Ok(BodyFraming::Chunked);
        }
        Ok(match self.content_length {
            None | Some(0) => BodyFraming::None,
            Some(n) => BodyFraming::Length(n),
        })
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    fn parse_all(raw: &[u8]) -> Result<Option<RequestHead>, ProxyError> {
        parse(&mut BytesMut::from(raw), 8192)
    }

    fn status(raw: &[u8]) -> StatusCode {
        match parse_all(raw) {
            Err(e) => e.status(),
            Ok(Some(_)) => StatusCode::OK,
            Ok(None) => StatusCode::CONTINUE,
        }
    }

    #[test]
    fn a_good_head_gives_its_fields_and_leaves_the_body_in_the_buffer() {
        let mut buf = BytesMut::from(
            &b"\r\nPOST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhelloGET"[..],
        );
        let head = parse(&mut buf, 8192).unwrap().unwrap();
        assert_eq!(&buf[..], b"helloGET");
        assert_eq!(head.method, Method::POST);
        assert_eq!(head.uri, "/a?b=1");
        assert_eq!(head.body, BodyFraming::Length(5));
        assert!(head.keep_alive && !head.upgrade && !head.expect_continue);
        let names: Vec<&[u8]> = head.fields.iter().map(|(name, _, _)| name).collect();
        assert_eq!(names, [&b"Host"[..], b"Content-Length", b"X-A", b"x-a"]);
        let values: Vec<&[u8]> = head.fields.iter().map(|(_, value, _)| value).collect();
        assert_eq!(values, [&b"x"[..], b"5", b"1", b"2"]);
    }

    #[test]
    fn a_partial_head_asks_for_more() {
        assert!(parse_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .unwrap()
            .is_none());
        assert!(parse_all(b"GE").unwrap().is_none());
    }

    #[test]
    fn connection_and_framing_tokens() {
        let head = parse_all(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(head.keep_alive);
        assert_eq!(head.version, Version::HTTP_10);
        let head = parse_all(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!head.keep_alive);
        let head = parse_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!head.keep_alive);
        let head = parse_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(head.upgrade);
        let head = parse_all(
            b"PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert!(head.expect_continue);
        assert_eq!(head.body, BodyFraming::Chunked);
        let head = parse_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 7, 7\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.body, BodyFraming::Length(7));
    }

    #[test]
    fn each_bad_head_gets_its_status() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET / HTTP/1.1 junk\r\nHost: x\r\n\r\n", 400),
            (b"HELLO\r\n\r\n", 400),
            (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"GET http://[::1 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
                400,
            ),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 5\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4x\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -4\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
                400,
            ),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                501,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                501,
            ),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked,\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ,chunked\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9223372036854775808\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4611686018427387904\r\n\r\n",
                400,
            ),
            (b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", 405),
            (b"CONNECT /  HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ];
        for (raw, expected) in cases {
            assert_eq!(
                status(raw).as_u16(),
                *expected,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn too_many_or_too_large_headers_get_431() {
        let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(status(&many), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

        let mut large = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        large.extend_from_slice(&[b'a'; 9000]);
        assert_eq!(status(&large), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        large.extend_from_slice(b"\r\n\r\n");
        assert_eq!(status(&large), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn ten_thousand_headers_are_refused_at_the_first_one_too_many() {
        let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..10_000 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        // Even with a limit that would let the whole head in, and even
        // unfinished: the count is checked as the headers are parsed.
        for raw in [&many[..], &many[..many.len() / 2]] {
            let started = std::time::Instant::now();
            let parsed = parse(&mut BytesMut::from(raw), 1 << 20);
            assert!(matches!(parsed, Err(ProxyError::HeadTooLarge)));
            assert!(started.elapsed() < std::time::Duration::from_secs(1));
        }
    }

    #[test]
    fn a_trickled_head_is_parsed_a_logarithmic_number_of_times() {
        let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: ".to_vec();
        head.resize(200_000, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        let mut reparse = Reparse::default();
        let mut parses = 0;
        let mut completed_at = None;
        for end in 1..=head.len() {
            if reparse.due(&head[..end], 1 << 20) {
                parses += 1;
                if parse(&mut BytesMut::from(&head[..end]), 1 << 20)
                    .unwrap()
                    .is_some()
                {
                    completed_at = Some(end);
                    break;
                }
            }
        }
        assert_eq!(completed_at, Some(head.len()), "parsed as soon as it ended");
        assert!(parses < 40, "{parses} parses");

        // A head that goes wrong early is still refused early.
        let mut reparse = Reparse::default();
        let bad = b"GET / HTTP/1.1\r\nHo st: x\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let refused_at = (1..=bad.len()).find(|&end| {
            reparse.due(&bad[..end], 8192) && parse(&mut BytesMut::from(&bad[..end]), 8192).is_err()
        });
        assert!(refused_at.is_some_and(|at| at <= 2 * 24), "{refused_at:?}");
    }

    #[test]
    fn connect_is_refused_with_405() {
        let error = parse_all(b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n").unwrap_err();
        assert_eq!(error.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
