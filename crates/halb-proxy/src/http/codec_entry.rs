//! The codec calls behind [`crate::codec_check`], kept beside the codec so
//! that the public entry points do not depend on where its files live.

use bytes::BytesMut;
use http::{Method, StatusCode};

use super::client::head::{parse_response, ResponseFraming};
use super::codec::framing::{BodyFraming, Decoded, Decoder};
use super::codec::request::parse;
use crate::codec_check::Framing;
use crate::error::ProxyError;

fn framing(body: BodyFraming) -> Framing {
    match body {
        BodyFraming::None => Framing::None,
        BodyFraming::Length(n) => Framing::Length(n),
        BodyFraming::Chunked => Framing::Chunked,
    }
}

/// A request head's method, body framing and keep-alive.
pub(crate) fn request_head(
    buf: &mut BytesMut,
    max_bytes: usize,
) -> Result<Option<(Method, Framing, bool)>, ProxyError> {
    Ok(parse(buf, max_bytes)?.map(|head| (head.method, framing(head.body), head.keep_alive)))
}

/// A chunked body fed in `reads`: its data, and the bytes it took if it
/// ended.
pub(crate) fn chunked(reads: &[&[u8]]) -> Result<(Vec<u8>, Option<usize>), &'static str> {
    let mut decoder = Decoder::new(BodyFraming::Chunked);
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut fed = 0;
    for read in reads {
        buf.extend_from_slice(read);
        fed += read.len();
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(bytes) => data.extend_from_slice(&bytes),
                Decoded::NeedMore => break,
                Decoded::End => return Ok((data, Some(fed - buf.len()))),
            }
        }
    }
    Ok((data, None))
}

/// A response head's status, body framing and keep-alive.
pub(crate) fn response_head(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<(StatusCode, Framing, bool)>, super::BackendError> {
    Ok(parse_response(buf, method)?.map(|head| {
        let body = match head.framing {
            ResponseFraming::Framed(body) => framing(body),
            ResponseFraming::UntilClose => Framing::UntilClose,
        };
        (head.status, body, head.keep_alive)
    }))
}
