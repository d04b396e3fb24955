//! Data-path workers: each is a thread running a single-threaded tokio
//! runtime with its own listener sockets and backend connection pool, so
//! the hot path shares no lock with other workers. Workers take commands
//! (a new listener socket) from the proxy's owner over a channel.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use halb_config::Protocol;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::LocalSet;

use crate::http::UpstreamPool;
use crate::listener::{ListenerContext, OpenClient};
use crate::transport::{TlsStream, Transport};

/// What the owner asks a worker to do.
#[derive(Debug)]
pub(crate) enum WorkerCommand {
    /// Accept connections for this listener on this socket.
    Listen {
        context: Arc<ListenerContext>,
        socket: std::net::TcpListener,
    },
    /// These backends left every pool: close the idle connections to them.
    Forget(Arc<[std::net::SocketAddr]>),
}

/// Run a worker until its command channel closes and its connections end.
pub(crate) fn run(index: usize, mut commands: mpsc::UnboundedReceiver<WorkerCommand>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(worker = index, error = %e, "cannot start worker runtime");
            return;
        }
    };
    let local = LocalSet::new();
    local.block_on(&runtime, async move {
        let upstream = Rc::new(UpstreamPool::default());
        let open = Rc::new(Cell::new(0usize));
        while let Some(command) = commands.recv().await {
            match command {
                WorkerCommand::Listen { context, socket } => match TcpListener::from_std(socket) {
                    Ok(listener) => {
                        tokio::task::spawn_local(accept_loop(
                            listener,
                            context,
                            upstream.clone(),
                            open.clone(),
                        ));
                    }
                    Err(e) => {
                        tracing::error!(worker = index, error = %e, "cannot use listener socket")
                    }
                },
                WorkerCommand::Forget(backends) => upstream.forget(&backends),
            }
        }
        while open.get() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

async fn accept_loop(
    listener: TcpListener,
    context: Arc<ListenerContext>,
    upstream: Rc<UpstreamPool>,
    open: Rc<Cell<usize>>,
) {
    let mut closing = context.closing();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = closing.wait_for(|closed| *closed) => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors or similar: back off, keep serving.
                tracing::warn!(listener = %context.name(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let guard = (
            OpenConnection::new(&open),
            OpenClient::new(&context.metrics),
        );
        let context = context.clone();
        match context.protocol {
            Protocol::Http => {
                let transport = match context.tls.load_full() {
                    None => Transport::Plain(stream),
                    Some(tls) => match tls.session() {
                        Ok(session) => Transport::Tls(Box::new(TlsStream::new(
                            stream,
                            session,
                            context.metrics.clone(),
                        ))),
                        Err(error) => {
                            tracing::error!(listener = %context.name(), %error, "no TLS session");
                            continue;
                        }
                    },
                };
                let upstream = upstream.clone();
                tokio::task::spawn_local(async move {
                    crate::http::serve(transport, peer, context, upstream).await;
                    drop(guard);
                });
            }
            Protocol::Tcp => {
                tokio::task::spawn_local(async move {
                    crate::tcp::serve(stream, peer, context).await;
                    drop(guard);
                });
            }
        }
    }
}

/// Counts a client connection as open until dropped.
struct OpenConnection(Rc<Cell<usize>>);

impl OpenConnection {
    fn new(open: &Rc<Cell<usize>>) -> Self {
        open.set(open.get() + 1);
        OpenConnection(open.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}
