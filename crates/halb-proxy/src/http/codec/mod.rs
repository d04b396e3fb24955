//! HTTP/1.1 codec: request and response heads, header fields, message
//! framing (Content-Length and chunked) and their encoding. It knows
//! nothing of listeners, routes or pools, so that any front end (plain or
//! TLS connections, later HTTP/2 streams) and the fuzz targets can use it.

pub(crate) mod fields;
pub(crate) mod framing;
pub(crate) mod request;
pub(crate) mod span;

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
