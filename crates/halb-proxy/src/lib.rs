//! halb's data path: listeners, HTTP and TCP proxying, per-worker backend
//! connection pools, retries, and reload.
//!
//! Life of a request: a worker accepts a connection on its own
//! SO_REUSEPORT socket; halb's HTTP/1.1 server codec (`http::server`)
//! parses and validates the request head once, refusing ambiguous framing
//! before any backend sees it; the handler strips hop-by-hop
//! headers, adds forwarding headers, reads the first body frame, asks the
//! pool's balancer for a backend, sends the request over a pooled
//! keep-alive connection, retries on another backend when that is safe, and
//! streams the response back. Errors map to 400/502/503/504 in one place
//! ([`ProxyError::status`]).
//!
//! Each request (HTTP) or connection (TCP) is counted into cells its
//! listener's [`Route`] holds, and offered to the access log, when it ends:
//! atomic adds and a non-blocking queue, no lock.

mod admission;
mod client_limits;
pub mod codec_check;
mod edge;
mod error;
mod fault;
mod fence;
mod handover;
mod http;
mod in_flight;
pub mod levels;
mod listener;
mod proxy_protocol;
mod relay;
mod reload;
mod route;
mod sock;
mod state;
mod sticky;
mod tcp;
mod tls;
mod transport;
mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use halb_access_log::AccessLogSink;
use halb_config::Config;
use halb_health::Checker;
use halb_state::State;
use tokio::sync::mpsc;

pub use admission::{out_of_descriptors, RateLimitedLog};
pub use error::{ProxyError, Side};
pub use halb_config::Change;
pub use http::{BackendError, Http2Metrics, GOAWAY_REASONS};
pub use listener::ListenerContext;
pub use reload::ReloadSummary;
pub use route::{
    ListenerMetrics, Route, RouteCounters, Routes, Rule, DEFAULT_ROUTE, STATUS_CLASSES,
};
pub use state::{BackendState, InFlight, PoolState, Tried};
pub use tls::{TlsFileError, TlsMetrics, TLS_FAILURES, TLS_VERSIONS};

use worker::WorkerCommand;

/// What is running: listeners and pools, as the admin API shows them.
#[derive(Debug)]
pub struct Topology {
    pub listeners: Vec<Arc<ListenerContext>>,
    pub pools: Vec<Arc<PoolState>>,
}

/// Why the data path could not start or take a new config.
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
    #[error("listener {listener}: [listener.tls]: {source}")]
    Tls {
        listener: String,
        source: TlsFileError,
    },
    #[error("pool {pool}: [pool.tls] {source}")]
    BackendTls {
        pool: String,
        source: halb_tls::BackendTlsError,
    },
}

/// Read every file the pools' `[pool.tls]` name (CA, client certificate),
/// as starting or reloading does (`halb check`): the first unusable file
/// is the error.
pub fn check_backend_tls(pools: &[halb_config::Pool]) -> Result<(), StartError> {
    for pool in pools {
        if let Some(tls) = &pool.tls {
            halb_tls::BackendTls::load(tls).map_err(|source| StartError::BackendTls {
                pool: pool.name.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Read every certificate and key file the listeners name, as starting or
/// reloading would (`halb check`): the first unusable file is the error.
pub fn check_tls(listeners: &[halb_config::Listener]) -> Result<(), StartError> {
    tls::load_all(listeners).map(|_| ())
}

/// The running data path. One owner (the binary's main loop) holds it and
/// applies every change: start, reload, shutdown.
pub struct Proxy {
    topology: Arc<ArcSwap<Topology>>,
    workers: Vec<Worker>,
    /// Every backend's health, and the writer of every change to it.
    state: Arc<State>,
    /// The config running now (listeners and pools as bound and built).
    running: Config,
    /// The active checks: one per backend, by pool.
    checkers: HashMap<String, HashMap<SocketAddr, Checker>>,
    /// Where every listener's access log records go; `None` = no access log.
    access_log: Option<AccessLogSink>,
    /// Injected faults, checked per request and connection.
    faults: Arc<halb_chaos::Faults>,
    /// Closes the connections of backends marked down (`on_down`).
    _fencer: fence::Fencer,
}

struct Worker {
    thread: std::thread::JoinHandle<()>,
    commands: mpsc::UnboundedSender<WorkerCommand>,
}

impl Proxy {
    /// Bind every listener, then start the workers and the health checks.
    /// Must be called inside a tokio runtime (sockets and health checks
    /// are created through it). Nothing is left running on error.
    /// `access_log` receives a record per HTTP request and TCP connection.
    pub fn start(
        config: &Config,
        state: Arc<State>,
        access_log: Option<AccessLogSink>,
    ) -> Result<Proxy, StartError> {
        let count = match config.runtime.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut tls = tls::load_all(&config.listeners)?;
        check_backend_tls(&config.pools)?;
        let bound = reload::bind_all(config.listeners.iter(), count, &virtual_ips(config))?;
        let budget = admission::budget();
        tracing::info!(
            fd_limit = budget.limit,
            max_clients = budget.client_cap(),
            "client connections capped by the file-descriptor limit"
        );
        let pools: Vec<Arc<PoolState>> = config
            .pools
            .iter()
            .map(|pool| {
                let zone = config.runtime.zone.as_deref();
                Arc::new(PoolState::new_in_zone(pool.clone(), zone, &state))
            })
            .collect();
        let mut workers = Vec::with_capacity(count);
        for index in 0..count {
            let (commands, receiver) = mpsc::unbounded_channel();
            let thread = std::thread::Builder::new()
                .name(format!("halb-worker-{index}"))
                .spawn(move || worker::run(index, receiver))
                .map_err(StartError::Thread)?;
            workers.push(Worker { thread, commands });
        }
        let topology = Arc::new(ArcSwap::from_pointee(Topology {
            listeners: Vec::new(),
            pools: pools.clone(),
        }));
        let mut proxy = Proxy {
            _fencer: fence::Fencer::start(&state, topology.clone()),
            topology,
            workers,
            state,
            running: config.clone(),
            checkers: HashMap::new(),
            access_log,
            faults: halb_chaos::Faults::new(),
        };
        proxy.faults.set_allowed(config.chaos.allow);
        for pool in &pools {
            proxy.start_checks(pool, pool.backends.iter().map(|b| b.address));
        }
        let listeners = bound
            .into_iter()
            .map(|b| proxy.open(b, &pools, &mut tls))
            .collect();
        proxy
            .topology
            .store(Arc::new(Topology { listeners, pools }));
        tls::watch_files(Arc::downgrade(&proxy.topology));
        Ok(proxy)
    }

    /// The current listeners and pools.
    pub fn topology(&self) -> Arc<ArcSwap<Topology>> {
        self.topology.clone()
    }

    /// The injected faults (`/api/v1/faults` adds them; `[chaos] allow`
    /// follows the running config).
    pub fn faults(&self) -> &Arc<halb_chaos::Faults> {
        &self.faults
    }

    /// Every backend's health and the stream of its changes.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Hand a bound listener to the workers.
    fn open(
        &self,
        bound: reload::BoundListener,
        pools: &[Arc<PoolState>],
        tls: &mut HashMap<String, tls::Certificates>,
    ) -> Arc<ListenerContext> {
        tracing::info!(listener = %bound.config.name, address = %bound.address, protocol = bound.config.protocol.as_str(), "listening");
        let context = Arc::new(
            ListenerContext::new(bound.config, bound.address, pools, self.access_log.clone())
                .with_faults(self.faults.clone()),
        );
        // Before any worker accepts: no connection on it goes unencrypted.
        let config = context.config.load_full();
        context.set_tls(config.tls.as_ref(), tls.remove(&config.name));
        for (worker, socket) in self.workers.iter().zip(bound.sockets) {
            match socket.try_clone() {
                Ok(copy) => context.keep_socket(copy),
                Err(error) => {
                    tracing::warn!(listener = %config.name, %error, "cannot keep a copy of a listener socket: a handover will not hold its new connections")
                }
            }
            let _ = worker.commands.send(WorkerCommand::Listen {
                context: context.clone(),
                socket,
            });
        }
        context
    }

    /// Send access log records to `access_log` from now on (`None`: stop
    /// logging). Requests already in flight log where they started.
    pub fn set_access_log(&mut self, access_log: Option<AccessLogSink>) {
        for listener in &self.topology.load().listeners {
            listener.set_access_log(access_log.clone());
        }
        self.access_log = access_log;
    }

    /// Stop accepting, let in-flight requests and connections finish for up
    /// to `drain`, then return.
    pub fn shutdown(self, drain: Duration) {
        for listener in &self.topology.load().listeners {
            listener.close();
        }
        let threads: Vec<_> = self
            .workers
            .into_iter()
            .map(|worker| {
                drop(worker.commands);
                worker.thread
            })
            .collect();
        let deadline = Instant::now() + drain;
        while Instant::now() < deadline && threads.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The `[vrrp]` virtual IPs: listeners on them bind with IP_FREEBIND, so
/// that a backup is ready the moment it takes them over.
pub(crate) fn virtual_ips(config: &halb_config::Config) -> Vec<std::net::IpAddr> {
    config
        .vrrp
        .iter()
        .flat_map(|vrrp| &vrrp.instances)
        .flat_map(|instance| &instance.virtual_ips)
        .map(|(ip, _)| std::net::IpAddr::V4(*ip))
        .collect()
}
