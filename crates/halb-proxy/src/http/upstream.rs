//! Connections to backends. Each worker keeps its own pool of idle
//! keep-alive connections per backend address, so checking one out takes no
//! lock shared with other workers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::body::RequestBody;
use crate::error::ProxyError;

/// Idle connections kept per backend per worker.
const MAX_IDLE_PER_BACKEND: usize = 256;
/// An idle backend connection is not reused after this long: many servers
/// close idle keep-alive connections after a few seconds (Node.js: 5 s), and
/// reusing one that the backend is closing would fail the request.
const IDLE_REUSE_LIMIT: Duration = Duration::from_secs(4);

type Sender = SendRequest<RequestBody>;

/// One worker's idle backend connections.
#[derive(Debug, Default)]
pub(crate) struct UpstreamPool {
    idle: RefCell<HashMap<SocketAddr, Vec<IdleConnection>>>,
}

#[derive(Debug)]
struct IdleConnection {
    sender: Sender,
    since: Instant,
}

/// A backend connection in use; [`PooledSender::release`] returns it.
#[derive(Debug)]
pub(crate) struct PooledSender {
    pool: Rc<UpstreamPool>,
    address: SocketAddr,
    pub(crate) sender: Sender,
    /// Whether it came from the idle pool (and so may have gone stale).
    pub(crate) reused: bool,
}

impl PooledSender {
    /// Return the connection to the idle pool once its response is complete.
    pub(crate) fn release(self) {
        if self.sender.is_closed() {
            return;
        }
        let mut idle = self.pool.idle.borrow_mut();
        let list = idle.entry(self.address).or_default();
        if list.len() >= MAX_IDLE_PER_BACKEND {
            list.remove(0);
        }
        list.push(IdleConnection {
            sender: self.sender,
            since: Instant::now(),
        });
    }
}

impl UpstreamPool {
    /// An idle connection to `address`, most recently used first, or a new one.
    pub(crate) async fn get(
        self: &Rc<Self>,
        address: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<PooledSender, ProxyError> {
        if let Some(sender) = self.checkout(address) {
            return Ok(PooledSender {
                pool: self.clone(),
                address,
                sender,
                reused: true,
            });
        }
        self.connect(address, connect_timeout).await
    }

    /// A new connection to `address`, never one from the pool.
    pub(crate) async fn connect(
        self: &Rc<Self>,
        address: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<PooledSender, ProxyError> {
        let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(address)).await
        {
            Err(_) => return Err(ProxyError::ConnectTimeout),
            Ok(Err(e)) => return Err(ProxyError::Connect(e)),
            Ok(Ok(stream)) => stream,
        };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(ProxyError::Upstream)?;
        tokio::task::spawn_local(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(backend = %address, error = %e, "backend connection ended");
            }
        });
        Ok(PooledSender {
            pool: self.clone(),
            address,
            sender,
            reused: false,
        })
    }

    fn checkout(&self, address: SocketAddr) -> Option<Sender> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&address)?;
        let now = Instant::now();
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            let entry = &list[i];
            if entry.sender.is_closed() || now.duration_since(entry.since) > IDLE_REUSE_LIMIT {
                list.swap_remove(i);
            } else if entry.sender.is_ready() {
                return Some(list.swap_remove(i).sender);
            }
        }
        None
    }
}
