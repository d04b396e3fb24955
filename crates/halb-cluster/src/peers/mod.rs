//! Peer links: active-active nodes share their sticky entries, operator
//! actions and health verdicts directly, node to node.
//!
//! Each node dials every peer and sends its own changes on that link; it
//! applies what its peers send on the links they dial to it. A link starts
//! with an authenticated handshake on the shared secret (a peer without it
//! is refused, and both sides log why), then a full resync of the dialer's
//! state, then incremental updates, each acknowledged so that the lag is
//! known. Updates wait in a bounded queue: a peer too slow to keep up is
//! sent a full resync rather than an ever longer queue.
//!
//! Conflicts: a sticky entry's later write wins (ties to the greater node
//! name), the same on every node. A peer's health verdict is a hint: this
//! node checks the backend at once with its own checks and decides by its
//! own rise and fall, so a backend one node cannot reach is not taken out
//! of service on the nodes that can.

pub mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use halb_state::{AdminState, Change, Event, Origin, State};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use wire::{AdminEntry, Message, WireError, PROTOCOL};

/// How long a handshake may take.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(3);
/// Between attempts to reach a peer.
const REDIAL: Duration = Duration::from_millis(500);
/// A link that has not had an ack for this long is dropped and redialled.
const SILENT_LIMIT: Duration = Duration::from_secs(3);
/// Between pings on an idle link.
const PING_EVERY: Duration = Duration::from_secs(1);
/// Connections to the peer port served at once.
const INBOUND_SLOTS: usize = 64;
/// Entries per message, in resyncs and batches.
const BATCH: usize = 1000;

/// One outgoing link's state, for the status API and metrics.
#[derive(Debug, Default)]
pub struct Link {
    /// The peer as configured, `host:port`.
    pub address: String,
    node: Mutex<Option<String>>,
    connected: AtomicBool,
    lag_ms: AtomicU64,
    bytes_sent: AtomicU64,
    updates_sent: AtomicU64,
    resyncs: AtomicU64,
    refused: AtomicU64,
    last_error: Mutex<String>,
    /// The last acknowledged updates' times from send to ack, µs.
    recent: Mutex<std::collections::VecDeque<u32>>,
}

/// Acknowledgement times kept for the percentiles.
const RECENT: usize = 4096;

impl Link {
    fn observe(&self, took: Duration) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(took.as_micros().min(u32::MAX as u128) as u32);
    }

    /// The p50 and p99 of the recent acknowledgement times, ms.
    fn percentiles(&self) -> (f64, f64) {
        let mut v: Vec<u32> = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        if v.is_empty() {
            return (0.0, 0.0);
        }
        v.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            f64::from(v[rank - 1]) / 1000.0
        };
        (at(0.50), at(0.99))
    }
}

/// One link as the status API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LinkStatus {
    pub address: String,
    /// The peer's node name, once it said it.
    pub node: Option<String>,
    /// Authenticated and sending.
    pub connected: bool,
    /// How long the oldest update not yet acknowledged has waited (or the
    /// last acknowledged one took).
    pub lag_ms: u64,
    /// Send to acknowledgement of the last few thousand updates: p50, p99.
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    /// The peer is connected to this node too (its updates arrive).
    pub inbound: bool,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub updates_sent: u64,
    pub updates_received: u64,
    pub resyncs: u64,
    /// Handshakes refused (either way).
    pub refused: u64,
    /// Why the link is down, when it is.
    pub last_error: String,
}

#[derive(Debug, Default, Clone)]
struct Inbound {
    connected: bool,
    bytes: u64,
    updates: u64,
}

/// The node's peer links.
#[derive(Debug)]
pub struct Peers {
    /// Each link, and the sender that stops it alone (a discovered peer
    /// that left the registry).
    links: Mutex<Vec<(Arc<Link>, watch::Sender<bool>)>>,
    /// The peers from the config, which discovery never removes.
    configured: Vec<String>,
    inbound: Arc<Mutex<BTreeMap<String, Inbound>>>,
    refused_inbound: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    secret: Arc<str>,
    node: Arc<str>,
    state: Arc<State>,
}

impl Peers {
    /// Listens on `config.bind` and dials every peer.
    pub async fn start(
        config: &halb_config::Peers,
        node: &str,
        state: Arc<State>,
    ) -> std::io::Result<Arc<Peers>> {
        let listener = TcpListener::bind(config.bind).await?;
        tracing::info!(address = %config.bind, peers = ?config.peers, "peer links listening");
        let (stop, stopped) = watch::channel(false);
        let secret: Arc<str> = config.secret.as_str().into();
        let node: Arc<str> = node.into();
        let peers = Arc::new(Peers {
            links: Mutex::new(Vec::new()),
            configured: config.peers.clone(),
            inbound: Arc::default(),
            refused_inbound: Arc::default(),
            stop,
            secret: secret.clone(),
            node: node.clone(),
            state: state.clone(),
        });
        tokio::spawn(accept(
            listener,
            secret,
            node,
            state,
            peers.clone(),
            stopped,
        ));
        for address in &config.peers {
            peers.add(address);
        }
        Ok(peers)
    }

    /// Dials `address` too, unless a link to it exists.
    pub fn add(&self, address: &str) {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        if links.iter().any(|(l, _)| l.address == address) {
            return;
        }
        let link = Arc::new(Link {
            address: address.to_owned(),
            ..Link::default()
        });
        let (stop_one, stopped_one) = watch::channel(false);
        tokio::spawn(dial(
            link.clone(),
            self.secret.clone(),
            self.node.clone(),
            self.state.clone(),
            self.stop.subscribe(),
            stopped_one,
        ));
        tracing::info!(peer = %address, "peer added");
        links.push((link, stop_one));
    }

    /// Makes the discovered peers exactly `addresses` (plus the configured
    /// ones, which stay): new ones are dialled, departed ones dropped.
    pub fn discovered(&self, addresses: &[String]) {
        for address in addresses {
            self.add(address);
        }
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|(link, stop)| {
            let keep = self.configured.contains(&link.address) || addresses.contains(&link.address);
            if !keep {
                tracing::info!(peer = %link.address, "peer left the registry; link dropped");
                let _ = stop.send(true);
            }
            keep
        });
    }

    /// Every link, for the status API.
    pub fn status(&self) -> Vec<LinkStatus> {
        let inbound = self.inbound.lock().unwrap_or_else(|e| e.into_inner());
        let links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links
            .iter()
            .map(|(link, _)| {
                let node = link.node.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let from = node
                    .as_ref()
                    .and_then(|n| inbound.get(n))
                    .cloned()
                    .unwrap_or_default();
                let (ack_p50_ms, ack_p99_ms) = link.percentiles();
                LinkStatus {
                    ack_p50_ms,
                    ack_p99_ms,
                    address: link.address.clone(),
                    connected: link.connected.load(Relaxed),
                    lag_ms: link.lag_ms.load(Relaxed),
                    inbound: from.connected,
                    bytes_sent: link.bytes_sent.load(Relaxed),
                    bytes_received: from.bytes,
                    updates_sent: link.updates_sent.load(Relaxed),
                    updates_received: from.updates,
                    resyncs: link.resyncs.load(Relaxed),
                    refused: link.refused.load(Relaxed),
                    last_error: link
                        .last_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone(),
                    node,
                }
            })
            .collect()
    }

    /// Connections from unknown or unauthenticated peers refused so far.
    pub fn refused_inbound(&self) -> u64 {
        self.refused_inbound.load(Relaxed)
    }

    /// Stops every link.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

fn set_error(link: &Link, error: impl std::fmt::Display) {
    *link.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error.to_string();
}

/// Tells the other side why it is refused (best effort: it may be gone).
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, reason: &str) {
    let message = Message::Refused {
        reason: reason.to_owned(),
    };
    let _ = wire::write(stream, &message).await;
}

/// The dialer's side of the handshake; the peer's node name.
async fn handshake_as_dialer<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &str,
    node: &str,
) -> Result<String, String> {
    let mine = wire::nonce();
    wire::write(
        stream,
        &Message::Hello {
            protocol: PROTOCOL,
            node: node.to_owned(),
            nonce: mine.clone(),
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let (peer, theirs) = match wire::read_handshake(stream)
        .await
        .map_err(|e| e.to_string())?
    {
        Message::Challenge {
            node: peer,
            nonce,
            proof,
        } => {
            let expected = wire::proof(secret, "listener", (&mine, &nonce), (node, &peer));
            if !wire::same_proof(&proof, &expected) {
                let reason = "the peer does not know the shared secret".to_owned();
                refuse(stream, &reason).await;
                return Err(reason);
            }
            (peer, nonce)
        }
        Message::Refused { reason } => return Err(format!("refused by the peer: {reason}")),
        other => return Err(format!("unexpected {other:?} in the handshake")),
    };
    let proof = wire::proof(secret, "dialer", (&theirs, &mine), (&peer, node));
    wire::write(stream, &Message::Proof { proof })
        .await
        .map_err(|e| e.to_string())?;
    match wire::read_handshake(stream)
        .await
        .map_err(|e| e.to_string())?
    {
        Message::Welcome => Ok(peer),
        Message::Refused { reason } => Err(format!("refused by the peer: {reason}")),
        other => Err(format!("unexpected {other:?} in the handshake")),
    }
}

/// The listener's side of the handshake; the dialer's node name.
async fn handshake_as_listener<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &str,
    node: &str,
) -> Result<String, String> {
    let (peer, theirs) = match wire::read_handshake(stream)
        .await
        .map_err(|e| e.to_string())?
    {
        Message::Hello {
            protocol,
            node: peer,
            nonce,
        } => {
            if protocol != PROTOCOL {
                let reason = format!(
                    "peer protocol version {protocol}; this node speaks version {PROTOCOL}"
                );
                refuse(stream, &reason).await;
                return Err(reason);
            }
            (peer, nonce)
        }
        other => return Err(format!("expected a hello, got {other:?}")),
    };
    if peer == node {
        let reason = format!("the peer calls itself {peer:?}, this node's own name");
        refuse(stream, &reason).await;
        return Err(reason);
    }
    let mine = wire::nonce();
    let proof = wire::proof(secret, "listener", (&theirs, &mine), (&peer, node));
    wire::write(
        stream,
        &Message::Challenge {
            node: node.to_owned(),
            nonce: mine.clone(),
            proof,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    match wire::read_handshake(stream)
        .await
        .map_err(|e| e.to_string())?
    {
        Message::Proof { proof } => {
            let expected = wire::proof(secret, "dialer", (&mine, &theirs), (node, &peer));
            if !wire::same_proof(&proof, &expected) {
                let reason = "wrong secret".to_owned();
                refuse(stream, &reason).await;
                return Err(format!("{peer}: {reason}"));
            }
        }
        Message::Refused { reason } => return Err(format!("{peer} refused this node: {reason}")),
        other => return Err(format!("expected a proof, got {other:?}")),
    }
    wire::write(stream, &Message::Welcome)
        .await
        .map_err(|e| e.to_string())?;
    Ok(peer)
}

/// Every backend an operator took out of rotation, for a peer's resync.
fn admin_entries(state: &State) -> Vec<AdminEntry> {
    let now = halb_state::unix_ms();
    state
        .admin_states()
        .into_iter()
        .filter(|(_, _, s)| *s != AdminState::Enabled)
        .map(|(pool, backend, s)| AdminEntry {
            pool: pool.to_string(),
            backend,
            state: s.as_str().to_owned(),
            at_ms: now,
        })
        .collect()
}

async fn dial(
    link: Arc<Link>,
    secret: Arc<str>,
    node: Arc<str>,
    state: Arc<State>,
    mut stopped: watch::Receiver<bool>,
    mut stopped_one: watch::Receiver<bool>,
) {
    loop {
        if *stopped.borrow() || *stopped_one.borrow() {
            return;
        }
        let outcome = tokio::select! {
            outcome = run_link(&link, &secret, &node, &state) => outcome,
            _ = stopped.changed() => return,
            _ = stopped_one.changed() => return,
        };
        link.connected.store(false, Relaxed);
        if let Err(error) = outcome {
            let first = {
                let last = link.last_error.lock().unwrap_or_else(|e| e.into_inner());
                *last != error
            };
            if first {
                tracing::warn!(peer = %link.address, %error, "peer link down");
            }
            set_error(&link, &error);
        }
        tokio::select! {
            _ = tokio::time::sleep(REDIAL) => {}
            _ = stopped.changed() => return,
            _ = stopped_one.changed() => return,
        }
    }
}

/// One connection's life: handshake, resync, then updates until it fails.
async fn run_link(link: &Link, secret: &str, node: &str, state: &State) -> Result<(), String> {
    let mut stream = TcpStream::connect(&link.address)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let peer = match tokio::time::timeout(
        HANDSHAKE_WITHIN,
        handshake_as_dialer(&mut stream, secret, node),
    )
    .await
    {
        Err(_) => return Err("no handshake within 3 s".to_owned()),
        Ok(Err(e)) => {
            link.refused.fetch_add(1, Relaxed);
            return Err(e);
        }
        Ok(Ok(peer)) => peer,
    };
    *link.node.lock().unwrap_or_else(|e| e.into_inner()) = Some(peer.clone());
    let (mut reader, writer) = stream.into_split();
    // Subscribed before the snapshot is read: nothing learned in between
    // is missed (an entry may arrive twice, which is harmless).
    let mut learned = state.subscribe_sticky();
    let mut events = state.subscribe();
    let mut out = Outbox {
        link,
        writer,
        seq: 0,
        pending: BTreeMap::new(),
    };
    out.resync(state).await?;
    link.connected.store(true, Relaxed);
    set_error(link, "");
    tracing::info!(peer = %link.address, node = %peer, "peer link up");
    let (acks_tx, mut acks) = tokio::sync::mpsc::channel::<Result<u64, WireError>>(64);
    let reading = tokio::spawn(async move {
        loop {
            let message = wire::read(&mut reader).await;
            let ack = match message {
                Ok(Message::Ack { seq }) => Ok(seq),
                Ok(other) => Err(WireError::Bad(format!(
                    "unexpected {other:?} from the listener"
                ))),
                Err(e) => Err(e),
            };
            let stop = ack.is_err();
            if acks_tx.send(ack).await.is_err() || stop {
                return;
            }
        }
    });
    let _reading = AbortOnDrop(reading);
    let mut last_ack = Instant::now();
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            entry = learned.recv() => match entry {
                Ok(first) => {
                    let mut entries = vec![first];
                    while entries.len() < BATCH {
                        match learned.try_recv() {
                            Ok(e) => entries.push(e),
                            Err(_) => break,
                        }
                    }
                    let seq = out.number(entries.len());
                    out.update(&Message::Sticky { seq, entries }).await?;
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(peer = %link.address, missed, "peer link fell behind; full resync");
                    out.resync(state).await?;
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            event = events.recv() => match event {
                Ok(Event::Admin { pool, backend, to, origin: Origin::Operator, at_ms, .. }) => {
                    let entry = AdminEntry {
                        pool: pool.to_string(),
                        backend,
                        state: to.as_str().to_owned(),
                        at_ms,
                    };
                    let seq = out.number(1);
                    out.update(&Message::Admin { seq, entry }).await?;
                }
                Ok(Event::Verdict { pool, backend, up, origin: Origin::Check, at_ms, .. }) => {
                    let seq = out.number(1);
                    let pool = pool.to_string();
                    out.update(&Message::Verdict { seq, pool, backend, up, at_ms }).await?;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => out.resync(state).await?,
                Err(RecvError::Closed) => return Ok(()),
            },
            ack = acks.recv() => match ack {
                Some(Ok(acked)) => {
                    last_ack = Instant::now();
                    out.acknowledged(acked);
                }
                Some(Err(e)) => return Err(format!("the peer's answer: {e}")),
                None => return Err("the peer closed the link".to_owned()),
            },
            _ = ping.tick() => {
                if let Some((_, &oldest)) = out.pending.first_key_value() {
                    link.lag_ms.fetch_max(oldest.elapsed().as_millis() as u64, Relaxed);
                }
                if last_ack.elapsed() > SILENT_LIMIT {
                    return Err(format!("no answer for {} s", SILENT_LIMIT.as_secs()));
                }
                out.write(&Message::Ping { seq: out.seq }).await?;
            }
        }
    }
}

/// The sending side of a link that is up: it numbers the updates and keeps
/// each one's send time until the peer acknowledges it (the lag).
struct Outbox<'a> {
    link: &'a Link,
    writer: tokio::net::tcp::OwnedWriteHalf,
    seq: u64,
    /// seq → when it was sent, until acknowledged.
    pending: BTreeMap<u64, Instant>,
}

impl Outbox<'_> {
    /// The seq of the next update, which carries `updates` changes.
    fn number(&mut self, updates: usize) -> u64 {
        self.link.updates_sent.fetch_add(updates as u64, Relaxed);
        self.seq += 1;
        self.seq
    }

    async fn write(&mut self, message: &Message) -> Result<(), String> {
        let bytes = wire::write(&mut self.writer, message)
            .await
            .map_err(|e| e.to_string())?;
        self.link.bytes_sent.fetch_add(bytes as u64, Relaxed);
        Ok(())
    }

    /// Sends an update numbered by [`Outbox::number`], awaiting its ack.
    async fn update(&mut self, message: &Message) -> Result<(), String> {
        self.pending.insert(self.seq, Instant::now());
        self.write(message).await
    }

    /// This node's whole state (every sticky entry, a table and a batch at
    /// a time, then the operator states), then a ping whose ack says it is
    /// applied.
    async fn resync(&mut self, state: &State) -> Result<(), String> {
        self.link.resyncs.fetch_add(1, Relaxed);
        self.seq += 1;
        self.pending.insert(self.seq, Instant::now());
        let now = halb_state::unix_ms();
        for table in state.sticky_tables() {
            let mut entries = table.entries(now);
            while !entries.is_empty() {
                let sticky = entries.split_off(entries.len().saturating_sub(BATCH));
                let part = Message::Resync {
                    sticky,
                    admin: Vec::new(),
                    done: false,
                };
                self.write(&part).await?;
            }
        }
        let last = Message::Resync {
            sticky: Vec::new(),
            admin: admin_entries(state),
            done: true,
        };
        self.write(&last).await?;
        self.write(&Message::Ping { seq: self.seq }).await
    }

    /// Everything up to `acked` has been applied by the peer.
    fn acknowledged(&mut self, acked: u64) {
        let mut took = None;
        while let Some((&seq, &at)) = self.pending.first_key_value() {
            if seq > acked {
                break;
            }
            took = Some(at.elapsed());
            self.link.observe(at.elapsed());
            self.pending.remove(&seq);
        }
        if let Some(took) = took {
            self.link.lag_ms.store(took.as_millis() as u64, Relaxed);
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn accept(
    listener: TcpListener,
    secret: Arc<str>,
    node: Arc<str>,
    state: Arc<State>,
    peers: Arc<Peers>,
    mut stopped: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(INBOUND_SLOTS));
    loop {
        let (stream, from) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "peer listener cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        // A bounded number of connections at once: a flood of strangers
        // cannot hold more than these slots, each for the handshake's 3 s.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            peers.refused_inbound.fetch_add(1, Relaxed);
            tracing::debug!(%from, "peer port busy: connection dropped");
            continue;
        };
        let (secret, node, state, peers) =
            (secret.clone(), node.clone(), state.clone(), peers.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(error) = serve_peer(stream, from, &secret, &node, &state, &peers).await {
                tracing::debug!(%from, %error, "peer connection ended");
            }
        });
    }
}

/// Applies what one peer sends until it goes.
async fn serve_peer(
    mut stream: TcpStream,
    from: SocketAddr,
    secret: &str,
    node: &str,
    state: &State,
    peers: &Peers,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let peer = match tokio::time::timeout(
        HANDSHAKE_WITHIN,
        handshake_as_listener(&mut stream, secret, node),
    )
    .await
    {
        Ok(Ok(peer)) => peer,
        Ok(Err(reason)) => {
            peers.refused_inbound.fetch_add(1, Relaxed);
            tracing::warn!(%from, %reason, "peer refused");
            return Err(reason);
        }
        Err(_) => {
            peers.refused_inbound.fetch_add(1, Relaxed);
            tracing::warn!(%from, "peer refused: no handshake within 3 s");
            return Err("no handshake".to_owned());
        }
    };
    tracing::info!(%from, node = %peer, "peer connected");
    let mark = |f: &dyn Fn(&mut Inbound)| {
        let mut inbound = peers.inbound.lock().unwrap_or_else(|e| e.into_inner());
        f(inbound.entry(peer.clone()).or_default());
    };
    mark(&|i| i.connected = true);
    let outcome = async {
        loop {
            let (message, size) = wire::read_counted(&mut stream)
                .await
                .map_err(|e| e.to_string())?;
            let (seq, updates) = apply(state, &peer, message)?;
            mark(&|i| {
                i.updates += updates;
                i.bytes += size as u64;
            });
            if let Some(seq) = seq {
                wire::write(&mut stream, &Message::Ack { seq })
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    .await;
    mark(&|i| i.connected = false);
    if let Err(error) = &outcome {
        tracing::warn!(node = %peer, %error, "peer link from it ended");
    }
    outcome
}

fn admin_state(word: &str) -> Result<AdminState, String> {
    match word {
        "enabled" => Ok(AdminState::Enabled),
        "draining" => Ok(AdminState::Draining),
        "disabled" => Ok(AdminState::Disabled),
        other => Err(format!("unknown operator state {other:?}")),
    }
}

/// Applies one message from `peer`: the seq to acknowledge, if any, and
/// how many updates it held.
fn apply(state: &State, peer: &str, message: Message) -> Result<(Option<u64>, u64), String> {
    Ok(match message {
        Message::Resync {
            sticky,
            admin,
            done,
        } => {
            let n = (sticky.len() + admin.len()) as u64;
            for entry in &sticky {
                state.apply_sticky(entry);
            }
            for entry in admin {
                apply_admin(state, peer, &entry)?;
            }
            if done {
                tracing::info!(node = %peer, "resync from peer applied");
            }
            (None, n)
        }
        Message::Sticky { seq, entries } => {
            for entry in &entries {
                state.apply_sticky(entry);
            }
            (Some(seq), entries.len() as u64)
        }
        Message::Admin { seq, entry } => {
            apply_admin(state, peer, &entry)?;
            (Some(seq), 1)
        }
        Message::Verdict {
            seq,
            pool,
            backend,
            up,
            ..
        } => {
            // A hint: check now, decide by this node's own checks.
            if let Ok(health) = state.health(&pool, backend) {
                tracing::debug!(node = %peer, %pool, %backend, up, "peer verdict: checking now");
                health.request_check();
            }
            (Some(seq), 1)
        }
        Message::Ping { seq } => (Some(seq), 0),
        other => return Err(format!("unexpected {other:?} on a peer link")),
    })
}

fn apply_admin(state: &State, peer: &str, entry: &AdminEntry) -> Result<(), String> {
    let to = admin_state(&entry.state)?;
    if let Err(unknown) = state.apply(&entry.pool, entry.backend, Origin::Peer, Change::Admin(to)) {
        tracing::debug!(node = %peer, %unknown, "peer's operator action is for a backend this node does not have");
    }
    Ok(())
}
