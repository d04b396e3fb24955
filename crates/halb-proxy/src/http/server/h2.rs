//! HTTP/2 to clients (the h2 crate): over TLS when ALPN chose `h2`, and in
//! the clear when a connection opens with the HTTP/2 preface (h2c with
//! prior knowledge). Each stream becomes a [`ClientRequest`] for the same
//! [`Service`] the HTTP/1.1 loop serves, so the backends see HTTP/1.1 and
//! retries, outlier detection and the rest apply unchanged.
//!
//! Limits in the spirit of hyper's and Envoy's defaults: at most
//! [`MAX_CONCURRENT_STREAMS`] streams at once, the listener's
//! `max_header_bytes` for a header list (CONTINUATION frames included, so
//! they are bounded too), and a budget of streams the client resets before
//! halb has served them (rapid reset, CVE-2023-44487): past it the
//! connection gets GOAWAY. Closing the listener (reload, drain) sends a
//! graceful GOAWAY: streams under way finish, no new ones start.

use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Version};
use tokio::sync::watch;

use halb_metrics::{Counter, Gauge};

use super::{ClientBody, ClientRequest, Reply, Service};
use crate::http::codec::fields::{Fields, FieldsBuilder};
use crate::transport::async_io::TransportIo;

/// Streams a client may have open at once.
pub(crate) const MAX_CONCURRENT_STREAMS: u32 = 100;
/// Streams a client may reset before halb accepts them, at any time.
const MAX_PENDING_RESETS: usize = 20;
/// Streams halb may reset because the client misbehaved, per connection.
const MAX_LOCAL_RESETS: usize = 1024;
/// Flow-control windows: what a client may send ahead on one stream, and
/// on all of them, before halb has passed the bytes on.
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// The first bytes of every HTTP/2 connection (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Why halb sent a GOAWAY, as the metrics label it (in
/// [`Http2Metrics::goaways`] order): the listener closing (drain, reload),
/// a client resetting streams faster than it lets them be served (rapid
/// reset) or making halb reset too many, a protocol error.
pub const GOAWAY_REASONS: [&str; 3] = ["no_error", "enhance_your_calm", "protocol_error"];

/// A listener's HTTP/2 counters, for its whole life.
#[derive(Debug, Default)]
pub struct Http2Metrics {
    /// Connections that completed the HTTP/2 handshake.
    pub connections: Counter,
    /// Streams accepted (requests).
    pub streams: Counter,
    /// Streams being served now.
    pub active_streams: Gauge,
    /// GOAWAY frames halb sent, by reason ([`GOAWAY_REASONS`]).
    pub goaways: [Counter; GOAWAY_REASONS.len()],
}

impl Http2Metrics {
    /// Count the GOAWAY behind a connection error that halb raised.
    fn count_goaway(&self, error: &h2::Error) {
        if !(error.is_go_away() && error.is_library()) {
            return;
        }
        let reason = match error.reason() {
            Some(h2::Reason::NO_ERROR) => 0,
            Some(h2::Reason::ENHANCE_YOUR_CALM) => 1,
            _ => 2,
        };
        self.goaways[reason].inc();
    }
}

/// Counts a stream as active until dropped.
struct ActiveStream<'a>(&'a Gauge);

impl<'a> ActiveStream<'a> {
    fn new(gauge: &'a Gauge) -> Self {
        gauge.inc();
        ActiveStream(gauge)
    }
}

impl Drop for ActiveStream<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Serve an HTTP/2 connection until the client or the listener closes it.
pub(crate) async fn serve<S: Service + 'static>(
    io: TransportIo,
    handler: Rc<S>,
    mut closing: watch::Receiver<bool>,
) {
    let limits = handler.limits();
    let idle_timeout = limits.idle_timeout;
    let header_list = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(header_list)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_RESETS))
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake::<_, Bytes>(io);
    let mut connection = match tokio::time::timeout(limits.request_head_timeout, handshake).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            tracing::debug!(%error, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => return,
    };
    let metrics = handler.http2_metrics();
    metrics.connections.inc();
    let mut draining = false;
    loop {
        let accepted = tokio::select! {
            accepted = connection.accept() => accepted,
            changed = closing.changed(), if !draining => {
                if changed.is_ok() && *closing.borrow() || changed.is_err() {
                    draining = true;
                    connection.graceful_shutdown();
                }
                continue;
            }
        };
        match accepted {
            Some(Ok((request, respond))) => {
                metrics.streams.inc();
                let handler = handler.clone();
                tokio::task::spawn_local(stream(request, respond, handler, idle_timeout));
            }
            Some(Err(error)) => {
                tracing::debug!(%error, "HTTP/2 connection failed");
                metrics.count_goaway(&error);
                break;
            }
            None => break,
        }
    }
    if draining {
        metrics.goaways[0].inc();
    }
    // Whatever the connection still has to send (GOAWAY, resets).
    let _ = std::future::poll_fn(|cx| connection.poll_closed(cx)).await;
}

/// One request stream: forward it, then send the answer back on it.
async fn stream<S: Service>(
    request: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    handler: Rc<S>,
    idle_timeout: Duration,
) {
    let _active = ActiveStream::new(&handler.http2_metrics().active_streams);
    let (parts, body) = request.into_parts();
    if parts.method == Method::CONNECT {
        let _ = respond.send_response(status_only(http::StatusCode::METHOD_NOT_ALLOWED), true);
        return;
    }
    let head_request = parts.method == Method::HEAD;
    let request = ClientRequest {
        method: parts.method,
        uri: parts.uri,
        version: Version::HTTP_2,
        fields: fields_of(&parts.headers),
        upgrade: false,
        body: ClientBody::stream(body, idle_timeout, handler.limits().connection.body_timeout),
    };
    let (reply, _upgrade) = handler.handle(request).await;
    if handler.wants_reset() {
        respond.send_reset(h2::Reason::CANCEL);
        return;
    }
    send_reply(respond, reply, head_request, idle_timeout).await;
}

fn status_only(status: http::StatusCode) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = status;
    response
}

/// The request's headers as the codec's fields (HTTP/2 has no
/// hop-by-hop headers: the h2 crate refuses a request that has them).
fn fields_of(headers: &HeaderMap) -> Fields {
    let size: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    let mut bytes = BytesMut::with_capacity(size);
    for (name, value) in headers {
        bytes.put_slice(name.as_str().as_bytes());
        bytes.put_slice(value.as_bytes());
    }
    let bytes = bytes.freeze();
    let mut builder = FieldsBuilder::with_capacity(headers.len());
    let mut at = 0;
    for (name, value) in headers {
        let name_end = at + name.as_str().len();
        let end = name_end + value.len();
        builder.push(&bytes, &bytes[at..name_end], &bytes[name_end..end]);
        at = end;
    }
    builder.finish(bytes)
}

/// The response head and body on the stream, as flow control allows.
async fn send_reply<B: super::ReplyBody>(
    mut respond: h2::server::SendResponse<Bytes>,
    reply: Reply<B>,
    head_request: bool,
    stall_limit: Duration,
) {
    let Reply {
        status,
        fields,
        mut body,
        ..
    } = reply;
    let mut response = status_only(status);
    let headers = response.headers_mut();
    for (name, value, known) in fields.iter() {
        if known.is_hop_by_hop() {
            continue;
        }
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    drop(fields);
    let bodiless = head_request
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
        || body.is_end_stream();
    let mut send = match respond.send_response(response, bodiless) {
        Ok(send) => send,
        Err(error) => {
            tracing::debug!(%error, "HTTP/2 response not sent");
            return;
        }
    };
    if bodiless {
        return;
    }
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        let mut data = match frame {
            None => break,
            Some(Err(error)) => {
                tracing::debug!(%error, "response body failed");
                send.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_trailers) => continue,
            },
        };
        while !data.is_empty() {
            send.reserve_capacity(data.len());
            let capacity = std::future::poll_fn(|cx| send.poll_capacity(cx));
            let granted = match tokio::time::timeout(stall_limit, capacity).await {
                Ok(Some(Ok(n))) => n,
                _ => {
                    send.send_reset(h2::Reason::CANCEL);
                    return;
                }
            };
            let chunk = data.split_to(granted.min(data.len()));
            if send.send_data(chunk, false).is_err() {
                return;
            }
        }
        if body.is_end_stream() {
            break;
        }
    }
    let _ = send.send_data(Bytes::new(), true);
}
