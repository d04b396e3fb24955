//! Request heads: parsed once with httparse, validated for what a load
//! balancer must refuse (ambiguous framing, a missing Host), and turned into
//! `http::request::Parts` whose header values are slices of the head's
//! bytes, not copies.

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};

use crate::error::ProxyError;
use crate::http::framing::{merge_content_length, BadLength, BodyFraming};
use crate::http::span::Span;

/// Headers a request head may carry; more gets 431.
pub(crate) const MAX_HEADERS: usize = 100;

/// A request head, validated, with what the connection needs to know.
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) parts: http::request::Parts,
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
    let base: &[u8] = buf;
    let target = Span::of(base, request.path.unwrap_or("").as_bytes());
    let mut spans = [(Span::default(), Span::default()); MAX_HEADERS];
    let count = request.headers.len();
    for (span, header) in spans.iter_mut().zip(request.headers.iter()) {
        *span = (
            Span::of(base, header.name.as_bytes()),
            Span::of(base, header.value),
        );
    }
    let head = buf.split_to(len).freeze();

    let uri = Uri::from_maybe_shared(target.slice(&head))
        .map_err(|_| bad("malformed request target\n"))?;
    // Room for the forwarding headers halb adds.
    let mut map = HeaderMap::with_capacity(count + 3);
    let mut framing = Framing::default();
    for &(name, value) in &spans[..count] {
        let name = HeaderName::from_bytes(name.bytes(&head))
            .map_err(|_| bad("malformed header name\n"))?;
        let value = HeaderValue::from_maybe_shared(value.slice(&head))
            .map_err(|_| bad("malformed header value\n"))?;
        framing.observe(&name, &value)?;
        map.append(name, value);
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
    let upgrade = framing.upgrade_token && map.contains_key(header::UPGRADE);
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = map;
    Ok(Some(RequestHead {
        parts,
        body,
        version,
        keep_alive,
        expect_continue: framing.expect_continue && version == Version::HTTP_11,
        upgrade,
    }))
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
    fn observe(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<(), ProxyError> {
        if name == header::CONTENT_LENGTH {
            merge_content_length(value.as_bytes(), &mut self.content_length).map_err(|why| {
                match why {
                    BadLength::Invalid => bad("invalid Content-Length\n"),
                    BadLength::Conflicting => bad("conflicting Content-Length values\n"),
                }
            })?;
        } else if name == header::TRANSFER_ENCODING {
            for coding in value.as_bytes().split(|b| *b == b',') {
                let coding = trim(coding);
                if coding.is_empty() {
                    continue;
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
        } else if name == header::HOST {
            self.hosts += 1;
        } else if name == header::CONNECTION {
            for token in value.as_bytes().split(|b| *b == b',') {
                let token = trim(token);
                if token.eq_ignore_ascii_case(b"close") {
                    self.close_token = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive_token = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    self.upgrade_token = true;
                }
            }
        } else if name == header::EXPECT {
            self.expect_continue |= trim(value.as_bytes()).eq_ignore_ascii_case(b"100-continue");
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

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |e| e + 1);
    &bytes[start..end]
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
    fn a_good_head_gives_parts_and_leaves_the_body_in_the_buffer() {
        let mut buf = BytesMut::from(
            &b"\r\nPOST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhelloGET"[..],
        );
        let head = parse(&mut buf, 8192).unwrap().unwrap();
        assert_eq!(&buf[..], b"helloGET");
        assert_eq!(head.parts.method, Method::POST);
        assert_eq!(head.parts.uri, "/a?b=1");
        assert_eq!(head.body, BodyFraming::Length(5));
        assert!(head.keep_alive && !head.upgrade && !head.expect_continue);
        let values: Vec<_> = head.parts.headers.get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
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
}
