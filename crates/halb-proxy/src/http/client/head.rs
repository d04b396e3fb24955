//! Heads on backend connections: the request head encoded once into bytes
//! (so a retry resends the same bytes, no header map copied), and the
//! response head parsed with httparse into `http::response::Parts` whose
//! header values are slices of the head as read.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use super::BackendError;
use crate::http::framing::{merge_content_length, BadLength, BodyFraming};
use crate::http::server::carve;
use crate::http::span::Span;

/// Headers a response head may carry; more is a malformed response.
const MAX_HEADERS: usize = 128;
/// Largest response head accepted.
pub(super) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseFraming {
    /// Content-Length or chunked, read with [`crate::http::framing::Decoder`].
    Framed(BodyFraming),
    /// Neither: the body ends when the backend closes the connection.
    UntilClose,
}

/// A backend's response head with what the connection needs to know.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) parts: http::response::Parts,
    pub(crate) framing: ResponseFraming,
    /// Whether the connection may carry another request after this body.
    pub(crate) keep_alive: bool,
}

/// The request head as sent to a backend: always HTTP/1.1, the origin-form
/// target, the headers as given, and `Transfer-Encoding: chunked` when the
/// body is re-framed that way.
pub(crate) fn encode_request(parts: &http::request::Parts, chunked: bool) -> Bytes {
    let target = match parts.uri.path_and_query() {
        Some(path) => path.as_str(),
        None => parts.uri.authority().map_or("/", |a| a.as_str()),
    };
    let room = parts.method.as_str().len()
        + target.len()
        + 64
        + parts
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    carve(room, |dst| {
        dst.put_slice(parts.method.as_str().as_bytes());
        dst.put_u8(b' ');
        dst.put_slice(target.as_bytes());
        dst.put_slice(b" HTTP/1.1\r\n");
        for (name, value) in &parts.headers {
            dst.put_slice(name.as_str().as_bytes());
            dst.put_slice(b": ");
            dst.put_slice(value.as_bytes());
            dst.put_slice(b"\r\n");
        }
        if chunked {
            dst.put_slice(b"transfer-encoding: chunked\r\n");
        }
        dst.put_slice(b"\r\n");
    })
    .freeze()
}

/// Parse the response head at the start of `buf`. `Ok(None)`: not complete
/// yet. On success its bytes are split off `buf`; the body stays there.
/// Informational heads (1xx) are returned too: the caller skips them,
/// except `101 Switching Protocols`.
pub(crate) fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, BackendError> {
    // Left uninitialised, as for requests.
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut headers,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(BackendError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(BackendError::HeadTooLarge),
        Err(_) => return Err(BackendError::Malformed("malformed response head")),
    };
    if len > MAX_HEAD_BYTES {
        return Err(BackendError::HeadTooLarge);
    }
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let status = StatusCode::from_u16(response.code.unwrap_or(0))
        .map_err(|_| BackendError::Malformed("invalid status code"))?;
    let base: &[u8] = buf;
    let mut spans = [(Span::default(), Span::default()); MAX_HEADERS];
    let count = response.headers.len();
    for (span, header) in spans.iter_mut().zip(response.headers.iter()) {
        *span = (
            Span::of(base, header.name.as_bytes()),
            Span::of(base, header.value),
        );
    }
    let head = buf.split_to(len).freeze();

    let mut map = HeaderMap::with_capacity(count);
    let mut framing = Framing::default();
    for &(name, value) in &spans[..count] {
        let name = HeaderName::from_bytes(name.bytes(&head))
            .map_err(|_| BackendError::Malformed("malformed header name"))?;
        let value = HeaderValue::from_maybe_shared(value.slice(&head))
            .map_err(|_| BackendError::Malformed("malformed header value"))?;
        framing.observe(&name, &value)?;
        map.append(name, value);
    }
    let bodiless = *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut keep_alive = match version {
        Version::HTTP_10 => framing.keep_alive_token && !framing.close_token,
        _ => !framing.close_token,
    };
    let body = if bodiless {
        ResponseFraming::Framed(BodyFraming::None)
    } else if framing.transfer_encoding {
        if !framing.chunked_last {
            // Legal (the body ends at the close), but halb re-frames what
            // it forwards and could not say how the body is coded.
            return Err(BackendError::Malformed(
                "a transfer coding other than a final chunked",
            ));
        }
        // With both, Transfer-Encoding wins, the Content-Length is not
        // forwarded, and the connection is not reused (RFC 9112 §6.3: the
        // message may be a smuggling attempt).
        if framing.content_length.is_some() {
            map.remove(header::CONTENT_LENGTH);
            keep_alive = false;
        }
        ResponseFraming::Framed(BodyFraming::Chunked)
    } else {
        match framing.content_length {
            Some(0) => ResponseFraming::Framed(BodyFraming::None),
            Some(n) => ResponseFraming::Framed(BodyFraming::Length(n)),
            None => ResponseFraming::UntilClose,
        }
    };
    if body == ResponseFraming::UntilClose || status == StatusCode::SWITCHING_PROTOCOLS {
        keep_alive = false;
    }
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.version = Version::HTTP_11;
    parts.headers = map;
    Ok(Some(ResponseHead {
        parts,
        framing: body,
        keep_alive,
    }))
}

/// What the response headers say about framing and the connection.
#[derive(Debug, Default)]
struct Framing {
    content_length: Option<u64>,
    transfer_encoding: bool,
    /// The last transfer coding seen is `chunked`.
    chunked_last: bool,
    close_token: bool,
    keep_alive_token: bool,
}

impl Framing {
    fn observe(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<(), BackendError> {
        let tokens = || {
            value
                .as_bytes()
                .split(|b| *b == b',')
                .map(<[u8]>::trim_ascii)
        };
        if name == header::CONTENT_LENGTH {
            merge_content_length(value.as_bytes(), &mut self.content_length).map_err(|why| {
                match why {
                    BadLength::Invalid => BackendError::Malformed("invalid Content-Length"),
                    BadLength::Conflicting => {
                        BackendError::Malformed("conflicting Content-Length values")
                    }
                }
            })?;
        } else if name == header::TRANSFER_ENCODING {
            for coding in tokens().filter(|c| !c.is_empty()) {
                self.transfer_encoding = true;
                self.chunked_last = coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name == header::CONNECTION {
            for token in tokens() {
                self.close_token |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], method: Method) -> Result<Option<(ResponseHead, Vec<u8>)>, BackendError> {
        let mut buf = BytesMut::from(raw);
        Ok(parse_response(&mut buf, &method)?.map(|head| (head, buf.to_vec())))
    }

    fn framing_of(raw: &str) -> (ResponseFraming, bool) {
        let (head, _) = parse(raw.as_bytes(), Method::GET).unwrap().unwrap();
        (head.framing, head.keep_alive)
    }

    #[test]
    fn a_head_is_split_off_and_the_body_stays() {
        let (head, rest) = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.parts.status, StatusCode::OK);
        assert_eq!(head.parts.headers["x-a"], "1");
        assert_eq!(
            head.framing,
            ResponseFraming::Framed(BodyFraming::Length(5))
        );
        assert!(head.keep_alive);
        assert_eq!(rest, b"hello");
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Le", Method::GET)
            .unwrap()
            .is_none());
    }

    #[test]
    fn framing_follows_rfc_9112() {
        use BodyFraming::*;
        use ResponseFraming::*;
        let cases = [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                Framed(None),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
                Framed(Length(3)),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Framed(Chunked),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                Framed(Chunked),
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", UntilClose, false),
            ("HTTP/1.1 204 No Content\r\n\r\n", Framed(None), true),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                Framed(None),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                Framed(Length(1)),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
                Framed(Length(1)),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
                Framed(Length(1)),
                true,
            ),
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
                Framed(None),
                false,
            ),
        ];
        for (raw, framing, keep_alive) in cases {
            assert_eq!(framing_of(raw), (framing, keep_alive), "{raw:?}");
        }
        let (head, _) = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            Method::HEAD,
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.framing, Framed(None), "a HEAD response has no body");
        let (head, _) = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(
            !head.parts.headers.contains_key(header::CONTENT_LENGTH),
            "with Transfer-Encoding, a Content-Length is not forwarded"
        );
    }

    #[test]
    fn bad_heads_are_errors() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTQ/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: v\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        ] {
            assert!(
                parse(raw, Method::GET).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(
            parse(&many, Method::GET),
            Err(BackendError::HeadTooLarge)
        ));
        let huge = vec![b'a'; MAX_HEAD_BYTES + 1];
        let mut huge_head = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        huge_head.extend_from_slice(&huge);
        assert!(matches!(
            parse(&huge_head, Method::GET),
            Err(BackendError::HeadTooLarge)
        ));
    }

    #[test]
    fn request_heads_are_http_1_1_in_origin_form() {
        let mut request = http::Request::new(());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = "/a/b?c=d".parse().unwrap();
        request
            .headers_mut()
            .insert(header::HOST, HeaderValue::from_static("example"));
        let (parts, ()) = request.into_parts();
        assert_eq!(
            &encode_request(&parts, false)[..],
            b"POST /a/b?c=d HTTP/1.1\r\nhost: example\r\n\r\n"
        );
        assert_eq!(
            &encode_request(&parts, true)[..],
            b"POST /a/b?c=d HTTP/1.1\r\nhost: example\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }
}
