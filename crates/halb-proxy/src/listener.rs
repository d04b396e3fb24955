//! Listeners: one socket per worker bound with SO_REUSEPORT, so the kernel
//! spreads new connections over workers and no accept lock is shared.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

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
    /// Open connections finish their request and close (reload, shutdown,
    /// handover).
    closing: watch::Sender<bool>,
    /// The workers stop accepting (reload, shutdown).
    stopped: watch::Sender<bool>,
    /// A copy of each worker's socket descriptor, so that new connections
    /// can be held at a handover ([`ListenerContext::hold_new_connections`]).
    /// Emptied at close: the socket must not outlive its accept loop.
    sockets: Mutex<Vec<std::net::TcpListener>>,
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
            stopped: watch::Sender::new(false),
            sockets: Mutex::new(Vec::new()),
        }
    }

    /// Keep a copy of a worker's socket (see `sockets`).
    pub(crate) fn keep_socket(&self, socket: std::net::TcpListener) {
        self.sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(socket);
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
        self.stopped.send_replace(true);
        self.closing.send_replace(true);
        self.sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// New clients' connections are neither accepted nor refused from now
    /// on: the kernel drops their SYN, so they send it again (after 1 s,
    /// then 3 s). At a VRRP handover the resent SYN reaches the next
    /// master, where a connection opened here would have been reset when
    /// the client's ARP entry moved. Handshakes already under way complete
    /// and connections already open keep working: the filter drops only a
    /// segment with SYN set and ACK clear. (A connection accepted later
    /// inherits the filter, as a child socket clones its listener's:
    /// every segment of an open connection carries ACK, so none is dropped.)
    pub fn hold_new_connections(&self) -> io::Result<()> {
        let sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        for socket in sockets.iter() {
            socket2::SockRef::from(socket).attach_filter(&DROP_NEW_SYN)?;
        }
        Ok(())
    }

    /// Open connections finish the request they are on and close; idle
    /// ones close at once. The listener still accepts.
    pub fn finish_connections(&self) {
        self.closing.send_replace(true);
    }

    /// Client connections open now.
    pub fn open_connections(&self) -> u64 {
        self.metrics.active_connections.get().max(0) as u64
    }

    /// Turns true when open connections are to finish and close.
    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Turns true when the workers stop accepting.
    pub(crate) fn stopped(&self) -> watch::Receiver<bool> {
        self.stopped.subscribe()
    }
}

/// A classic BPF socket filter: drop a TCP segment with SYN set and ACK
/// clear (a new client's first packet), keep every other. A TCP socket's
/// filter sees the TCP header at offset 0; byte 13 holds the flags.
const DROP_NEW_SYN: [socket2::SockFilter; 5] = {
    use socket2::SockFilter;
    const LOAD_BYTE: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const JUMP_IF_SET: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
    const RETURN: u16 = 0x06; // BPF_RET | BPF_K
    const SYN: u32 = 0x02;
    const ACK: u32 = 0x10;
    [
        SockFilter::new(LOAD_BYTE, 0, 0, 13),
        // ACK set: part of a handshake under way or of a connection: keep.
        SockFilter::new(JUMP_IF_SET, 2, 0, ACK),
        SockFilter::new(JUMP_IF_SET, 0, 1, SYN),
        SockFilter::new(RETURN, 0, 0, 0),
        SockFilter::new(RETURN, 0, 0, u32::MAX),
    ]
};

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
