//! halb's data path: listeners, HTTP and TCP proxying, per-worker backend
//! connection pools, retries.
//!
//! Life of a request: a worker accepts a connection on its own
//! SO_REUSEPORT socket; hyper parses the request while the framing tracker
//! watches the bytes for ambiguous framing; the handler strips hop-by-hop
//! headers, adds forwarding headers, reads the first body frame, asks the
//! pool's balancer for a backend, sends the request over a pooled
//! keep-alive connection, retries on another backend when that is safe, and
//! streams the response back. Errors map to 400/502/503/504 in one place
//! ([`ProxyError::status`]).

mod error;
mod http;
mod listener;
mod state;
mod tcp;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use halb_config::Config;
use tokio::sync::watch;

pub use error::{ProxyError, Side};
pub use listener::ListenerContext;
pub use state::{BackendState, InFlight, PoolState, Tried};

/// What is running: listeners and pools, as the admin API shows them.
#[derive(Debug)]
pub struct Topology {
    pub listeners: Vec<Arc<ListenerContext>>,
    pub pools: Vec<Arc<PoolState>>,
}

/// Why the data path could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("listener {listener}: cannot bind {address}: {source}")]
    Bind {
        listener: String,
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start worker thread: {0}")]
    Thread(std::io::Error),
}

/// The running data path.
pub struct Proxy {
    topology: Arc<ArcSwap<Topology>>,
    shutdown: watch::Sender<bool>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Bind every listener, then start the workers. Must be called inside a
    /// tokio runtime (sockets are created through it). Nothing is left
    /// running on error.
    pub fn start(config: &Config) -> Result<Proxy, StartError> {
        let workers = match config.runtime.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let pools: Vec<Arc<PoolState>> = config
            .pools
            .iter()
            .map(|pool| Arc::new(PoolState::new(pool.clone())))
            .collect();
        let mut per_worker: Vec<worker::WorkerListeners> =
            (0..workers).map(|_| Vec::new()).collect();
        let mut listeners = Vec::new();
        for listener in &config.listeners {
            let (bound, sockets) =
                listener::bind_reuseport(listener.bind, workers).map_err(|source| {
                    StartError::Bind {
                        listener: listener.name.clone(),
                        address: listener.bind,
                        source,
                    }
                })?;
            let pool = pools
                .iter()
                .find(|p| p.config.name == listener.pool)
                .expect("validated config: listener pool exists")
                .clone();
            let context = Arc::new(ListenerContext {
                config: listener.clone(),
                bound,
                pool: ArcSwap::new(pool),
            });
            for (worker, socket) in per_worker.iter_mut().zip(sockets) {
                worker.push((context.clone(), socket));
            }
            tracing::info!(listener = %listener.name, address = %bound, protocol = ?listener.protocol, "listening");
            listeners.push(context);
        }
        let (shutdown, stop) = watch::channel(false);
        let mut handles = Vec::with_capacity(workers);
        for (index, listeners) in per_worker.into_iter().enumerate() {
            let stop = stop.clone();
            let handle = std::thread::Builder::new()
                .name(format!("halb-worker-{index}"))
                .spawn(move || worker::run(index, listeners, stop))
                .map_err(StartError::Thread)?;
            handles.push(handle);
        }
        Ok(Proxy {
            topology: Arc::new(ArcSwap::from_pointee(Topology { listeners, pools })),
            shutdown,
            workers: handles,
        })
    }

    /// The current listeners and pools.
    pub fn topology(&self) -> Arc<ArcSwap<Topology>> {
        self.topology.clone()
    }

    /// Stop accepting, let in-flight requests and connections finish for up
    /// to `drain`, then return.
    pub fn shutdown(self, drain: Duration) {
        let _ = self.shutdown.send(true);
        let deadline = Instant::now() + drain;
        while Instant::now() < deadline && self.workers.iter().any(|w| !w.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
