//! Listeners: one socket per worker bound with SO_REUSEPORT, so the kernel
//! spreads new connections over workers and no accept lock is shared.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use halb_access_log::AccessLogSink;
use halb_config::{Listener, Protocol};
use tokio::net::TcpSocket;
use tokio::sync::watch;

use crate::route::{ListenerMetrics, Routes};
use crate::state::PoolState;

/// A listener: its settings and its routes (pools, counters, access log),
/// both swappable at reload, its metrics, and the signal that closes it.
#[derive(Debug)]
pub struct ListenerContext {
    pub protocol: Protocol,
    /// The address actually bound (differs from the config when its port is 0).
    pub bound: SocketAddr,
    /// Read once per connection.
    pub config: ArcSwap<Listener>,
    /// Read once per request (HTTP) or connection (TCP).
    pub routes: ArcSwap<Routes>,
    pub metrics: Arc<ListenerMetrics>,
    /// Injected faults: asked once per request (HTTP) or connection (TCP).
    pub(crate) faults: Arc<halb_chaos::Faults>,
    /// Open connections, refusals and evictions; per-client-address state.
    pub(crate) admission: Arc<crate::admission::ListenerAdmission>,
    /// `[listener.tls]`: new connections are TLS while this is set.
    pub(crate) tls: arc_swap::ArcSwapOption<crate::tls::TlsTerminator>,
    closing: watch::Sender<bool>,
}

impl ListenerContext {
    pub(crate) fn new(
        config: Listener,
        bound: SocketAddr,
        pools: &[Arc<PoolState>],
        access_log: Option<AccessLogSink>,
    ) -> Self {
        let metrics = Arc::new(ListenerMetrics::default());
        let routes = Routes::build(&config, &metrics, pools, access_log, None);
        ListenerContext {
            protocol: config.protocol,
            bound,
            config: ArcSwap::from_pointee(config),
            routes: ArcSwap::from_pointee(routes),
            metrics,
            faults: halb_chaos::Faults::new(),
            admission: Default::default(),
            tls: arc_swap::ArcSwapOption::empty(),
            closing: watch::Sender::new(false),
        }
    }

    /// Apply the node's faults (a listener starts with none).
    pub(crate) fn with_faults(mut self, faults: Arc<halb_chaos::Faults>) -> Self {
        self.faults = faults;
        self
    }

    /// Route by the listener's current settings over `pools` from now on
    /// (a reload, or a pool's next snapshot), under its current name (a
    /// reload may have renamed it: counters and log lines follow).
    pub(crate) fn set_routes(&self, pools: &[Arc<PoolState>]) {
        let routes = self.routes.load();
        let access_log = routes.default.access_log.clone();
        self.rebuild_routes(pools, access_log);
    }

    fn rebuild_routes(&self, pools: &[Arc<PoolState>], access_log: Option<AccessLogSink>) {
        let config = self.config.load();
        let routes = self.routes.load();
        let rebuilt = Routes::build(&config, &self.metrics, pools, access_log, Some(&routes));
        self.routes.store(Arc::new(rebuilt));
    }

    /// Send access log records to `access_log` from now on (reload).
    pub(crate) fn set_access_log(&self, access_log: Option<AccessLogSink>) {
        let pools: Vec<Arc<PoolState>> =
            (self.routes.load().all()).map(|r| r.pool.clone()).collect();
        self.rebuild_routes(&pools, access_log);
    }

    /// Terminate TLS with `certificates` (read by `settings`) from now on,
    /// or stop (`None`). A listener that already terminates TLS keeps its
    /// ticket keys and session cache: sessions resume across reloads.
    pub(crate) fn set_tls(
        &self,
        settings: Option<&halb_config::ListenerTls>,
        certificates: Option<crate::tls::Certificates>,
    ) {
        let (Some(settings), Some(certificates)) = (settings, certificates) else {
            self.tls.store(None);
            return;
        };
        if let Some(running) = self.tls.load_full() {
            running.replace(settings, certificates);
            return;
        }
        match crate::tls::TlsTerminator::new(settings, certificates) {
            Ok(terminator) => self.tls.store(Some(Arc::new(terminator))),
            Err(error) => tracing::error!(listener = %self.name(), %error, "cannot set up TLS"),
        }
    }

    /// The listener's name (a reload may rename a listener in place).
    pub fn name(&self) -> String {
        self.config.load().name.clone()
    }

    /// Connections refused before any proxying: without the PROXY header
    /// the listener expects (or a bad one), or over `[listener.limits]`.
    pub fn refused_connections(&self) -> u64 {
        self.admission
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Idle client connections closed to make room (a connection cap, or
    /// no descriptor left).
    pub fn evicted_connections(&self) -> u64 {
        self.admission
            .evicted
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stop accepting; open connections finish their work and close.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Turns true when the listener closes.
    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }
}

/// Counts a client connection as open while it lives.
pub(crate) struct OpenClient(Arc<ListenerMetrics>);

impl OpenClient {
    pub(crate) fn new(metrics: &Arc<ListenerMetrics>) -> Self {
        metrics.connections.inc();
        metrics.active_connections.inc();
        OpenClient(metrics.clone())
    }
}

impl Drop for OpenClient {
    fn drop(&mut self) {
        self.0.active_connections.dec();
    }
}

/// Bind `count` sockets to `address` with SO_REUSEPORT. When the port is 0,
/// the first socket picks one and the others share it.
pub(crate) fn bind_reuseport(
    address: SocketAddr,
    count: usize,
    freebind: bool,
) -> io::Result<(SocketAddr, Vec<std::net::TcpListener>)> {
    let mut sockets = Vec::with_capacity(count);
    let mut bound = address;
    for _ in 0..count.max(1) {
        let socket = if bound.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.set_nodelay(true)?;
        if freebind {
            // A virtual IP this node does not hold yet.
            rustix::net::sockopt::set_ip_freebind(&socket, true)?;
        }
        socket.bind(bound)?;
        let listener = socket.listen(4096)?;
        bound = listener.local_addr()?;
        sockets.push(listener.into_std()?);
    }
    Ok((bound, sockets))
}
