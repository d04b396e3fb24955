//! TLS over a client's TCP socket: halb's readiness-style TLS stream
//! ([`halb_tls::TlsStream`]) over rustls' `ServerConnection`, its
//! handshakes counted in the listener's metrics. The handshake happens on
//! the first reads ([`TlsStream::try_handshake`]).

use std::sync::Arc;

use rustls::ServerConnection;

use crate::route::ListenerMetrics;

/// A TLS session over a client's socket.
pub(crate) type TlsStream = halb_tls::TlsStream<ServerConnection, Counted>;

/// A listener's TLS counters, told of each handshake.
#[derive(Debug)]
pub(crate) struct Counted(pub(crate) Arc<ListenerMetrics>);

impl halb_tls::Handshakes<ServerConnection> for Counted {
    fn established(&self, session: &ServerConnection) {
        self.0.tls.established(session);
    }

    fn closed_in_handshake(&self) {
        self.0.tls.closed_in_handshake();
    }

    fn failed(&self, error: &rustls::Error) {
        self.0.tls.failed(error);
    }
}
