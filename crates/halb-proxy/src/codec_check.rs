//! Thin, stable entry points into halb's HTTP/1.1 codec, for the fuzz
//! targets (`fuzz/`) and the tests that replay their corpus: parse a
//! request head, decode a chunked body, parse a response head, with what
//! the data path would decide. Nothing here is on the data path itself;
//! each function only calls the codec and reports.

use bytes::BytesMut;
use http::{Method, StatusCode};

use crate::http::codec_entry;

pub use crate::http::BackendError;

/// How a message's body is delimited, as the codec read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// A response body that ends when the backend closes.
    UntilClose,
}

/// A request head the codec accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestCheck {
    /// Bytes of the head (what follows is body or the next request).
    pub head_len: usize,
    pub method: Method,
    pub framing: Framing,
    pub keep_alive: bool,
}

/// Parse the request head at the start of `input` with a head limit of
/// `max_bytes`, as a listener does. `Ok(None)`: incomplete; `Err`: the
/// status the client would get.
pub fn parse_request_head(
    input: &[u8],
    max_bytes: usize,
) -> Result<Option<RequestCheck>, StatusCode> {
    let mut buf = BytesMut::from(input);
    match codec_entry::request_head(&mut buf, max_bytes) {
        Ok(Some((method, framing, keep_alive))) => Ok(Some(RequestCheck {
            head_len: input.len() - buf.len(),
            method,
            framing,
            keep_alive,
        })),
        Ok(None) => Ok(None),
        Err(error) => Err(error.status()),
    }
}

/// What a chunked body decoded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedCheck {
    /// The body's data, chunk framing removed.
    pub data: Vec<u8>,
    /// Bytes of `input` the body took (`None`: it did not end in `input`).
    pub consumed: Option<usize>,
}

/// Decode `input` as a chunked body, fed to the decoder in two reads split
/// at `split` (clamped to the input): the result must not depend on where
/// reads end. `Err`: why the body is malformed.
pub fn decode_chunked(input: &[u8], split: usize) -> Result<ChunkedCheck, &'static str> {
    let split = split.min(input.len());
    codec_entry::chunked(&[&input[..split], &input[split..]])
        .map(|(data, consumed)| ChunkedCheck { data, consumed })
}

/// A response head the codec accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseCheck {
    pub head_len: usize,
    pub status: StatusCode,
    pub framing: Framing,
    pub keep_alive: bool,
}

/// Parse a backend's response head at the start of `input`, for a request
/// of `method`. `Ok(None)`: incomplete; `Err`: why halb answers 502.
pub fn parse_response_head(
    input: &[u8],
    method: &Method,
) -> Result<Option<ResponseCheck>, BackendError> {
    let mut buf = BytesMut::from(input);
    Ok(
        codec_entry::response_head(&mut buf, method)?.map(|(status, framing, keep_alive)| {
            ResponseCheck {
                head_len: input.len() - buf.len(),
                status,
                framing,
                keep_alive,
            }
        }),
    )
}
