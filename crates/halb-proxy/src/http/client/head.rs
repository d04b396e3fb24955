//! Response heads on backend connections, parsed with httparse into
//! [`Fields`]: offsets into the head as read, not copies. (The request head
//! is encoded once, by [`crate::http::headers::encode_request`].)

use bytes::BytesMut;
use http::{Method, StatusCode, Version};

use super::BackendError;
use crate::http::codec::fields::{has_token, Fields, FieldsBuilder, Known};
use crate::http::codec::framing::{merge_content_length, BadLength, BodyFraming};

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
    pub(crate) status: StatusCode,
    pub(crate) fields: Fields,
    pub(crate) framing: ResponseFraming,
    /// Whether the connection may carry another request after this body.
    pub(crate) keep_alive: bool,
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
    let mut fields = FieldsBuilder::with_capacity(response.headers.len());
    let mut framing = Framing::default();
    for header in response.headers.iter() {
        let known = fields.push(base, header.name.as_bytes(), header.value);
        framing.observe(known, header.value)?;
    }
    let fields = fields.finish(buf.split_to(len).freeze());
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
        // RFC 9112 §6.3 lets Transfer-Encoding win, but a response with
        // both is a smuggling attempt or a broken backend: the client gets
        // 502, never the message.
        if framing.content_length.is_some() {
            return Err(BackendError::Malformed(
                "both Content-Length and Transfer-Encoding",
            ));
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
    Ok(Some(ResponseHead {
        status,
        fields,
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
    fn observe(&mut self, known: Known, value: &[u8]) -> Result<(), BackendError> {
        match known {
            Known::ContentLength => {
                merge_content_length(value, &mut self.content_length).map_err(|why| match why {
                    BadLength::Invalid => BackendError::Malformed("invalid Content-Length"),
                    BadLength::Conflicting => {
                        BackendError::Malformed("conflicting Content-Length values")
                    }
                })?;
            }
            Known::TransferEncoding => {
                for coding in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                    if coding.is_empty() {
                        return Err(BackendError::Malformed(
                            "empty element in Transfer-Encoding",
                        ));
                    }
                    self.transfer_encoding = true;
                    self.chunked_last = coding.eq_ignore_ascii_case(b"chunked");
                }
            }
            Known::Connection => {
                self.close_token |= has_token(value, b"close");
                self.keep_alive_token |= has_token(value, b"keep-alive");
            }
            _ => {}
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
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.fields.get_named("x-a"), Some(&b"1"[..]));
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
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3 4\r\n\r\n",
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
}
