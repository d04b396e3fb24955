//! The proxy logic behind the HTTP server side: pick a route and a
//! backend for each request, forward it over a pooled backend connection,
//! retry when that is safe, and stream the answer back, counting and
//! logging it. The server side calls it through [`Service`]; it reaches
//! backends through the client side.
//!
//! [`Service`]: crate::http::server::Service

mod exchange;
mod forward;
pub(crate) mod hash_key;
mod headers;
mod response_body;
mod select;

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use super::server;
use super::upstream::UpstreamPool;
use crate::listener::ListenerContext;
use crate::transport::Transport;
use forward::Handler;

/// Serve one client connection: the server side's loop, answering with
/// the proxy logic, for the listener's settings when it opened; `hold` is
/// kept while it lives. Not an `async fn`: the connection's future is the
/// server loop's alone (an idle connection's cost is mostly that future's
/// size).
pub(crate) fn serve(
    transport: Transport,
    peer: SocketAddr,
    listener: Arc<ListenerContext>,
    upstream: Rc<UpstreamPool>,
    hold: impl Sized + 'static,
) -> impl Future<Output = ()> {
    let config = listener.config.load_full();
    let closing = listener.closing();
    let handler = Handler {
        https: matches!(transport, Transport::Tls(_)),
        listener,
        config,
        upstream,
        peer,
        client: std::cell::OnceCell::new(),
        reset: std::cell::Cell::new(false),
    };
    server::serve(transport, handler, closing, hold)
}
