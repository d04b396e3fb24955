//! Data-path workers: each is a thread running a single-threaded tokio
//! runtime with its own listener sockets and backend connection pool, so
//! the hot path shares no lock with other workers. Workers take commands
//! (a new listener socket) from the proxy's owner over a channel.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use halb_config::Protocol;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::LocalSet;

use crate::http::UpstreamPool;
use crate::listener::{ListenerContext, OpenClient};
use crate::transport::{Counted, TlsStream, Transport};

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
        // Idle client connections end through this, not timers of their own.
        tokio::task::spawn_local(crate::admission::expire_idle());
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
    let mut closing = context.stopped();
    let mut backoff = MIN_BACKOFF;
    // The listener's idle HTTP clients on this worker close when it says
    // open connections are to finish (busy ones see it when done).
    let mut finishing = context.closing();
    let key = context.admission.key();
    tokio::task::spawn_local(async move {
        if finishing.wait_for(|finish| *finish).await.is_ok() {
            crate::admission::end_idle_of(key);
        }
    });
    loop {
        let max_connections = context.config.load().connection.max_connections;
        let full = context.admission.full(max_connections);
        if full.is_some_and(|only| !crate::admission::has_idle(only)) {
            // At the cap with no idle client to close: stop accepting until
            // a connection closes (new ones wait in the kernel's backlog).
            tokio::select! {
                biased;
                _ = closing.wait_for(|closed| *closed) => return,
                _ = context.admission.wait_for_room(ROOM_PATIENCE) => {}
            }
            continue;
        }
        let accepted = tokio::select! {
            biased;
            _ = closing.wait_for(|closed| *closed) => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                let out_of_fds = crate::admission::out_of_descriptors(&e);
                if out_of_fds {
                    // Give descriptors back: the oldest idle clients go.
                    let evicted = crate::admission::evict_oldest_idle(EVICT_ON_EMFILE, None);
                    context
                        .admission
                        .evicted
                        .fetch_add(evicted as u64, Ordering::Relaxed);
                }
                if let Some(count) = ACCEPT_FAILED.hit() {
                    tracing::warn!(
                        listener = %context.name(),
                        error = %e,
                        count,
                        open = context.admission.open(),
                        "accept failed (count: times in the last second); backing off"
                    );
                }
                // No spinning on an error that persists: wait, longer each
                // time it repeats, up to MAX_BACKOFF.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = MIN_BACKOFF;
        // At the cap: a new client takes the place of the oldest idle one
        // (closed only now that a client is waiting for its place). Another
        // worker may have filled the cap since the look above: then this
        // client waits, accepted but not served, until there is room.
        let mut over_cap = false;
        while let Some(only) = context.admission.full(max_connections) {
            if crate::admission::evict_oldest_idle(1, only) > 0 {
                context.admission.evicted.fetch_add(1, Ordering::Relaxed);
                over_cap = true;
                break;
            }
            tokio::select! {
                biased;
                _ = closing.wait_for(|closed| *closed) => return,
                _ = context.admission.wait_for_room(ROOM_PATIENCE) => {}
            }
        }
        let _ = stream.set_nodelay(true);
        let guard = (
            OpenConnection::new(&open),
            OpenClient::new(&context.metrics),
            context.admission.admit(),
        );
        spawn_connection(stream, peer, context.clone(), &upstream, guard);
        if over_cap {
            // One over the cap until the evicted connection has closed.
            tokio::select! {
                biased;
                _ = closing.wait_for(|closed| *closed) => return,
                _ = context.admission.wait_for_room(ROOM_PATIENCE) => {}
            }
        }
    }
}

/// Serve an accepted connection on this worker: its PROXY header and
/// client limits first, then HTTP or TCP; `guard` counts it while it lives.
fn spawn_connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    context: Arc<ListenerContext>,
    upstream: &Rc<UpstreamPool>,
    guard: impl Sized + 'static,
) {
    match context.protocol {
        Protocol::Http => {
            let upstream = upstream.clone();
            // Boxed, and gone once the connection is open: what it holds
            // (the socket before its transport, the PROXY header's work) is
            // no part of the connection's task for its life.
            let opening = Box::pin(async move {
                // A PROXY header comes before the TLS handshake.
                let (peer, slot) = crate::edge::open(&stream, peer, &context).await?;
                let transport = client_transport(stream, &context)?;
                Some((transport, peer, context, slot))
            });
            tokio::task::spawn_local(async move {
                if let Some((transport, peer, context, slot)) = opening.await {
                    crate::http::serve(transport, peer, context, upstream, (slot, guard)).await;
                }
            });
        }
        Protocol::Tcp => {
            tokio::task::spawn_local(async move {
                if let Some((peer, slot)) = crate::edge::open(&stream, peer, &context).await {
                    crate::tcp::serve(stream, peer, context).await;
                    drop(slot);
                }
                drop(guard);
            });
        }
    }
}

/// The client connection's byte stream: the socket itself, or a TLS
/// session over it when the listener terminates TLS. Not in the
/// connection's task: its future would keep room for a TLS session
/// (about a kilobyte) for the connection's whole life.
fn client_transport(stream: tokio::net::TcpStream, context: &ListenerContext) -> Option<Transport> {
    let Some(tls) = context.tls.load_full() else {
        return Some(Transport::Plain(stream));
    };
    match tls.session() {
        Ok(session) => Some(Transport::Tls(Box::new(TlsStream::new(
            stream,
            session,
            Counted(context.metrics.clone()),
        )))),
        Err(error) => {
            tracing::error!(listener = %context.name(), %error, "no TLS session");
            None
        }
    }
}

/// Backoff after a failed accept: the first wait, and the longest.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(100);
/// Idle clients closed when accept finds no descriptor left.
const EVICT_ON_EMFILE: usize = 16;
/// At the cap, how long to wait for a close before looking again (a close
/// on another listener frees room in the process's cap too).
const ROOM_PATIENCE: Duration = Duration::from_millis(100);

/// Failed accepts, logged at most once a second for the whole process.
static ACCEPT_FAILED: crate::admission::RateLimitedLog = crate::admission::RateLimitedLog::new();

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use rustix::process::{getrlimit, setrlimit, Resource};

    /// CPU (user + system) this process has used, in clock ticks, read
    /// from a `/proc/self/stat` opened beforehand (no descriptor is free
    /// while the test measures).
    fn cpu_ticks(file: &mut std::fs::File) -> u64 {
        use std::io::{Read, Seek};
        let mut stat = String::new();
        file.rewind().expect("rewind stat");
        file.read_to_string(&mut stat).expect("stat");
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
    }

    /// Out of descriptors, `accept` fails as long as the shortage lasts:
    /// the loop must wait between tries instead of spinning, and take the
    /// waiting connections once descriptors are back. (This test lowers
    /// its own process's limit: nextest runs each test in a process.)
    #[test]
    fn accept_out_of_descriptors_backs_off_and_recovers() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let config = halb_config::parse(
                "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
                 protocol = \"tcp\"\n[[pool]]\nname = \"app\"\n\
                 [[pool.backend]]\naddress = \"127.0.0.1:1\"\n",
            )
            .unwrap();
            let pool = Arc::new(crate::state::PoolState::new(
                config.pools[0].clone(),
                &halb_state::State::new(),
            ));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let context = Arc::new(crate::ListenerContext::new(
                config.listeners[0].clone(),
                addr,
                &[pool],
                None,
            ));
            // Waiting in the backlog before the shortage starts.
            let clients: Vec<std::net::TcpStream> = (0..3)
                .map(|_| std::net::TcpStream::connect(addr).unwrap())
                .collect();
            // Read at start, as Proxy::start does.
            crate::admission::budget();
            let mut stat = std::fs::File::open("/proc/self/stat").expect("open stat");
            // No descriptor left: the limit just above the highest one in
            // use, and every free number below it taken.
            let before = getrlimit(Resource::Nofile);
            let highest = std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u64>().ok())
                .max()
                .expect("descriptors");
            let mut short = before;
            short.current = Some(highest + 1);
            setrlimit(Resource::Nofile, short).unwrap();
            let mut fillers = Vec::new();
            while let Ok(file) = std::fs::File::open("/dev/null") {
                fillers.push(file);
            }

            tokio::task::spawn_local(super::accept_loop(
                listener,
                context.clone(),
                Default::default(),
                Default::default(),
            ));
            let cpu = cpu_ticks(&mut stat);
            let started = Instant::now();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let used = cpu_ticks(&mut stat) - cpu;
            assert_eq!(context.admission.open(), 0, "accepted with no descriptor");
            assert!(super::ACCEPT_FAILED.has_fired(), "accept never failed");
            setrlimit(Resource::Nofile, before).unwrap();
            println!("accept out of descriptors for 1 s: {used} CPU ticks");
            assert!(
                used < 20,
                "{used} ticks of CPU in {:?} while accept failed (100 = one core)",
                started.elapsed()
            );

            let deadline = Instant::now() + Duration::from_secs(2);
            while context.metrics.connections.get() < 3 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(
                context.metrics.connections.get(),
                3,
                "accepted once descriptors are back"
            );
            drop(clients);
            drop(fillers);
        });
    }
}
