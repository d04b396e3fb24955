//! What the server side hands over and gets back: the [`Service`] a
//! connection serves (the proxy logic, or anything else that answers
//! requests), the request as parsed, and the reply to write.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode, Uri, Version};
use http_body::Body;
use tokio::net::TcpStream;

use super::ClientBody;
use crate::error::ProxyError;
use crate::http::codec::fields::Fields;

/// Answers the requests of one client connection.
pub(crate) trait Service {
    /// The body of the replies.
    type Body: ReplyBody;

    /// The listener's settings for this connection.
    fn limits(&self) -> &halb_config::Listener;

    /// The client's address.
    fn peer(&self) -> SocketAddr;

    /// Which listener's idle connections this one counts among, when
    /// descriptors run short (see `crate::admission`).
    fn idle_group(&self) -> usize;

    /// Answer one request; and, when the answer switched protocols, the
    /// other end of the tunnel.
    fn handle(
        &self,
        request: ClientRequest,
    ) -> impl Future<Output = (Reply<Self::Body>, Option<BackendUpgrade>)>;

    /// The answer to a request whose head could not be read.
    fn refuse(&self, error: &ProxyError) -> Reply<Self::Body>;

    /// The client's connection must be reset rather than answered.
    fn wants_reset(&self) -> bool;

    /// The listener's HTTP/2 counters.
    fn http2_metrics(&self) -> &super::h2::Http2Metrics;
}

/// A reply's body: a stream of frames, which can also say where the rest
/// of its bytes may be spliced from.
pub(crate) trait ReplyBody: Body<Data = Bytes, Error: std::fmt::Display> + Unpin {
    /// The socket the rest of the body is read from, the length left, and
    /// how long that side may stall, when at least `min` bytes are left
    /// and none is buffered (so the rest can be spliced).
    fn splice_source(&self, min: u64) -> Option<(&TcpStream, u64, Duration)>;

    /// `n` bytes were spliced; `complete`: the body is all sent.
    fn spliced(&mut self, n: u64, complete: bool);
}

/// A request as the server side hands it over.
pub(crate) struct ClientRequest {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) fields: Fields,
    /// `Connection: upgrade` with an `Upgrade` header.
    pub(crate) upgrade: bool,
    pub(crate) body: ClientBody,
}

/// A response as the server side gets it: from a backend, or halb's own.
pub(crate) struct Reply<B> {
    pub(crate) status: StatusCode,
    /// Hop-by-hop headers left in are not written.
    pub(crate) fields: Fields,
    /// The answer wants the connection closed after it.
    pub(crate) close: bool,
    pub(crate) body: B,
}

/// A backend that answered `101 Switching Protocols`: its connection (and
/// any bytes it sent past the head), and its in-flight slot, held while the
/// tunnel lives.
pub(crate) struct BackendUpgrade {
    pub(crate) stream: crate::transport::BackendStream,
    pub(crate) early: bytes::BytesMut,
    pub(crate) in_flight: crate::state::InFlight,
    pub(crate) descriptor: crate::admission::BackendDescriptor,
}
