//! The client side of an HTTP connection: the socket wrapped so that every
//! byte read passes through the [`FramingTracker`], and the per-connection
//! state that the request handler and the timeout watcher share.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::framing::{FramingEvent, FramingTracker};

/// "None" for the atomic fields below.
const NONE: u64 = u64::MAX;

/// State of one client connection, shared between the socket wrapper, the
/// request handler and the timeout watcher. All on one worker thread, so
/// the atomics are never contended; they are atomics because hyper needs
/// an upgraded connection's I/O to be `Send`.
#[derive(Debug)]
pub(crate) struct ConnectionState {
    /// Times below are nanoseconds since this instant.
    opened: Instant,
    /// Request heads completed so far.
    heads: AtomicU64,
    /// Index of the first head that carried both Content-Length and
    /// Transfer-Encoding, or NONE.
    ambiguous_head: AtomicU64,
    /// Requests the handler has taken so far.
    requests: AtomicU64,
    /// When the head now being read started, or NONE.
    head_started: AtomicU64,
    /// Last time bytes came from the client or a response finished.
    last_activity: AtomicU64,
    /// Requests whose response is not finished yet.
    active: AtomicU32,
}

impl ConnectionState {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ConnectionState {
            opened: Instant::now(),
            heads: AtomicU64::new(0),
            ambiguous_head: AtomicU64::new(NONE),
            requests: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
            last_activity: AtomicU64::new(0),
            active: AtomicU32::new(0),
        })
    }

    fn now(&self) -> u64 {
        self.opened.elapsed().as_nanos() as u64
    }

    fn at(&self, nanos: u64) -> Instant {
        self.opened + Duration::from_nanos(nanos)
    }

    fn on_event(&self, event: FramingEvent) {
        match event {
            FramingEvent::HeadStarted => self.head_started.store(self.now(), Relaxed),
            FramingEvent::HeadComplete { ambiguous } => {
                self.head_started.store(NONE, Relaxed);
                let index = self.heads.fetch_add(1, Relaxed);
                if ambiguous && self.ambiguous_head.load(Relaxed) == NONE {
                    self.ambiguous_head.store(index, Relaxed);
                }
            }
        }
    }

    /// Called once per request the handler takes, in order. Returns true
    /// when this request's head was ambiguous and must be refused.
    pub(crate) fn next_request_is_ambiguous(&self) -> bool {
        let index = self.requests.fetch_add(1, Relaxed);
        self.ambiguous_head.load(Relaxed) == index
    }

    /// Mark a request active until the returned guard drops (when its
    /// response has been sent or abandoned).
    pub(crate) fn activate(self: &Arc<Self>) -> ActiveRequest {
        self.active.fetch_add(1, Relaxed);
        ActiveRequest(self.clone())
    }

    /// Resolves when the client has been too slow: a head not complete
    /// within `head_timeout`, or no request and no bytes for `idle_timeout`.
    pub(crate) async fn expired(&self, head_timeout: Duration, idle_timeout: Duration) {
        loop {
            let now = Instant::now();
            let head_started = self.head_started.load(Relaxed);
            let deadline = if head_started != NONE {
                self.at(head_started) + head_timeout
            } else if self.active.load(Relaxed) == 0 {
                self.at(self.last_activity.load(Relaxed)) + idle_timeout
            } else {
                now + idle_timeout
            };
            if deadline <= now {
                return;
            }
            // A head may start while we sleep: look again within half the
            // head timeout, so a slow head is cut within 1.5 × the timeout.
            tokio::time::sleep_until(deadline.min(now + head_timeout / 2)).await;
        }
    }
}

/// A request whose response is still being produced or sent.
#[derive(Debug)]
pub(crate) struct ActiveRequest(Arc<ConnectionState>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
        self.0.last_activity.store(self.0.now(), Relaxed);
    }
}

/// The client socket, reporting every byte read to the connection state.
pub(crate) struct ClientIo {
    stream: TcpStream,
    tracker: FramingTracker,
    state: Arc<ConnectionState>,
}

impl ClientIo {
    pub(crate) fn new(stream: TcpStream, max_head: usize, state: Arc<ConnectionState>) -> Self {
        ClientIo {
            stream,
            tracker: FramingTracker::new(max_head),
            state,
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let fresh = &buf.filled()[before..];
            if !fresh.is_empty() {
                let state = &this.state;
                state.last_activity.store(state.now(), Relaxed);
                this.tracker.feed(fresh, |event| state.on_event(event));
            }
        }
        result
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
