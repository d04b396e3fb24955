//! HTTP/1.1 proxying: one hyper server connection per client, requests
//! forwarded over the worker's pooled backend connections.

mod body;
mod client_io;
mod exchange;
mod forward;
mod framing;
mod hash_key;
mod headers;
mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::listener::ListenerContext;
pub(crate) use hash_key::ip_key;
pub(crate) use upstream::UpstreamPool;

/// Serve one client connection until it closes, times out, or its
/// listener closes (reload, shutdown), in which case it finishes the request
/// in flight and closes.
///
/// Until the client sends its first byte, the connection costs only this
/// small future: the HTTP machinery (buffers, parser state) is allocated
/// when there is something to read, so thousands of idle connections stay
/// cheap.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerContext>,
    upstream: Rc<UpstreamPool>,
) {
    let idle_timeout = listener.config.load().idle_timeout;
    let mut closing = listener.closing();
    tokio::select! {
        readable = stream.readable() => {
            if readable.is_err() {
                return;
            }
        }
        _ = closing.wait_for(|closed| *closed) => return,
        _ = tokio::time::sleep(idle_timeout) => {
            tracing::debug!(%peer, "client sent nothing within the idle timeout");
            return;
        }
    }
    Box::pin(serve_connection(stream, peer, listener, upstream)).await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerContext>,
    upstream: Rc<UpstreamPool>,
) {
    let mut closing = listener.closing();
    let config = listener.config.load_full();
    let (head_timeout, idle_timeout) = (config.request_head_timeout, config.idle_timeout);
    let state = client_io::ConnectionState::new();
    let io = TokioIo::new(client_io::ClientIo::new(
        stream,
        config.max_header_bytes,
        state.clone(),
    ));
    let builder = {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .max_header_size(config.max_header_bytes)
            .max_buf_size(config.max_header_bytes.max(64 * 1024))
            .header_read_timeout(None);
        builder
    };
    let handler = Rc::new(forward::Handler {
        listener,
        config,
        upstream,
        connection: state.clone(),
        peer,
    });
    let service = service_fn(move |request| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler.handle(request).await) }
    });
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let mut stopping = *closing.borrow();
    if stopping {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "client connection ended with an error");
                }
                return;
            }
            _ = state.expired(head_timeout, idle_timeout) => {
                tracing::debug!(%peer, "client connection timed out");
                return;
            }
            changed = closing.changed(), if !stopping => {
                if changed.is_err() || *closing.borrow() {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
