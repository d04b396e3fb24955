//! halb's HTTP/1.1 server side: one loop per client connection that reads
//! request heads, hands each request to the [`Handler`], and writes the
//! response, in order.
//!
//! An idle connection holds no buffer: it waits for readability, and a read
//! buffer is allocated when bytes arrive and dropped when the connection
//! goes idle again. The request body reads from the same socket through a
//! shared reference (the loop does not read while a body is pending).

mod body;
mod h2;
mod service;
mod tunnel;
mod write;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use http::{Method, StatusCode};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

pub(crate) use body::ClientBody;
pub use h2::{Http2Metrics, GOAWAY_REASONS};
pub(crate) use service::{BackendUpgrade, ClientRequest, Reply, ReplyBody, Service};

use super::arena::carve;
use super::codec::request::{self as head, RequestHead};
use crate::admission::IdleEnd;
use crate::error::ProxyError;
use crate::transport::Transport;
use write::{Answering, Outgoing, Written};

/// First read buffer of a connection that wakes up.
const HEAD_READ: usize = 8 * 1024;
/// The first read of a connection waking up goes to the stack (see
/// [`ClientConnection::try_fill`]).
const FIRST_READ: usize = 4096;
/// How long a connection stays busy (its busy future allocated, its idle
/// timer running for this, not for `idle_timeout`) after a response,
/// waiting for the next request.
const BUSY_GRACE: Duration = Duration::from_millis(20);
/// Keep reading into the buffer while at least this much is free.
const MIN_SPARE: usize = 1024;
/// Closing after an error: how long, and how much, to read and drop while
/// the client may still be sending (so it gets the answer, not a reset).
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// A client connection: its transport and its read buffer, shared by the
/// connection loop and the request body.
pub(crate) struct ClientConnection {
    stream: Transport,
    /// Empty and unallocated while the connection is idle.
    buf: RefCell<BytesMut>,
    /// The current request has a body not yet read to its end.
    body_pending: Cell<bool>,
    /// The loop gave up on the body (the connection closes): it errors.
    body_abandoned: Cell<bool>,
    /// Wakes the body's reader when the loop gives up on it.
    body_waker: Cell<Option<Waker>>,
    /// Its place among the worker's idle connections while it is idle.
    idle: crate::admission::IdleEntry,
    /// No request head has been read yet (an h2c preface may come).
    first_head: Cell<bool>,
    /// Turns true when open connections are to finish and close.
    closing: watch::Receiver<bool>,
    /// Why the idle wait was ended from outside (see `admission`).
    idle_ended: Cell<Option<IdleEnd>>,
}

impl crate::admission::Evict for ClientConnection {
    /// Descriptors run short: an idle connection closes. Its task sees the
    /// end of the stream and finishes.
    fn evict(&self) {
        tracing::debug!("idle client connection closed to free a descriptor");
        let _ = rustix::net::shutdown(self.stream.tcp(), rustix::net::Shutdown::Both);
    }

    /// The idle timeout passed or the listener closes: the task waits for
    /// readiness, which shutting the reading half down brings (nothing is
    /// sent); it then closes the connection as it closes any idle one (TLS
    /// with its `close_notify`).
    fn end_idle(&self, why: IdleEnd) {
        self.idle_ended.set(Some(why));
        let _ = rustix::net::shutdown(self.stream.tcp(), rustix::net::Shutdown::Read);
    }
}

impl ClientConnection {
    fn new(stream: Transport, closing: watch::Receiver<bool>) -> Self {
        ClientConnection {
            stream,
            buf: RefCell::new(BytesMut::new()),
            body_pending: Cell::new(false),
            body_abandoned: Cell::new(false),
            body_waker: Cell::new(None),
            idle: Default::default(),
            first_head: Cell::new(true),
            closing,
            idle_ended: Cell::new(None),
        }
    }

    /// Read what the socket has into the buffer, without waiting.
    fn try_fill(&self, grow: usize) -> io::Result<usize> {
        let mut buf = self.buf.borrow_mut();
        let (n, offered) = if buf.capacity() == 0 && grow <= HEAD_READ {
            // A connection waking up reads into the worker's arena and
            // keeps only what came: header values are slices of the
            // buffer, so a small request pins little while in flight, and
            // nothing is allocated if nothing came.
            let mut read = Ok(0);
            let fresh = carve(FIRST_READ, |arena| read = self.stream.try_read_buf(arena));
            let n = read?;
            if n > 0 {
                *buf = fresh;
            }
            (n, FIRST_READ)
        } else {
            if buf.capacity() - buf.len() < MIN_SPARE {
                buf.reserve(grow);
            }
            let offered = buf.capacity() - buf.len();
            (self.stream.try_read_buf(&mut buf)?, offered)
        };
        if n > 0 && n < offered {
            // A short read emptied the socket: tell tokio so now, rather
            // than learn it from one more read that fails. Safe here: the
            // driver has not run since the read, so any readiness it holds
            // is for bytes already read, and new bytes bring a new event.
            self.stream.note_drained();
        }
        Ok(n)
    }

    /// Read into the buffer; `Ok(0)` at the end of the stream.
    fn poll_fill(&self, cx: &mut Context<'_>, grow: usize) -> Poll<io::Result<usize>> {
        loop {
            std::task::ready!(self.stream.poll_read_ready(cx))?;
            match self.try_fill(grow) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    /// Make a pending body fail, so that nothing reads this socket after
    /// the loop stops.
    fn abandon_body(&self) {
        if self.body_pending.get() {
            self.body_abandoned.set(true);
            if let Some(waker) = self.body_waker.take() {
                waker.wake();
            }
        }
    }
}

/// What the connection does after a busy spell.
enum Next {
    /// Nothing buffered, nothing in flight, since `since`: wait for the
    /// client. `None`: no request came (a wake-up with nothing to read),
    /// so the idle spell that was under way goes on, its timer untouched.
    Idle { since: Option<Instant> },
    Close {
        /// The client may still be sending: read and drop for a while so
        /// that it sees the answer rather than a reset.
        linger: bool,
    },
    /// The backend switched protocols: join the two connections.
    Tunnel(BackendUpgrade),
    /// The client opened with the HTTP/2 preface (h2c).
    Http2,
}

/// Serve one client connection until it closes, times out, or its
/// listener closes (`closing` turns true: reload, shutdown): then an idle
/// connection closes at once and a busy one finishes its response, saying
/// `Connection: close`. `hold` is kept as long as the connection.
///
/// Not an `async fn`, and the connection lives in an `Rc`: the future an
/// idle connection's task holds is a pointer, the handler, `hold` and a
/// readiness poll. Its idle timeout and its listener's close come through
/// the worker's table of idle connections (`admission`), not a timer and a
/// channel wait of its own.
pub(crate) fn serve<S: Service + 'static, H: 'static>(
    stream: Transport,
    handler: S,
    closing: watch::Receiver<bool>,
    hold: H,
) -> impl Future<Output = ()> {
    let tls = matches!(stream, Transport::Tls(_));
    let connection = Rc::new(ClientConnection::new(stream, closing));
    async move {
        if tls {
            // Boxed: a plain connection's future does not carry the TLS one.
            match Box::pin(handshake(&connection, &handler)).await {
                Handshake::Failed => return,
                Handshake::Http2 => return Box::pin(serve_h2(connection, handler)).await,
                Handshake::Http1 => {}
            }
        }
        if let Some(connection) = serve_http1(connection, &handler).await {
            Box::pin(serve_h2(connection, handler)).await;
        }
        drop(hold);
    }
}

enum Handshake {
    Failed,
    Http1,
    Http2,
}

/// A TLS connection's handshake (within `request_head_timeout`), and what
/// ALPN chose.
async fn handshake<S: Service>(connection: &ClientConnection, handler: &S) -> Handshake {
    let Transport::Tls(tls) = &connection.stream else {
        return Handshake::Http1;
    };
    let handshake = async {
        loop {
            match tls.try_handshake() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            connection.stream.readable().await?;
        }
    };
    let limit = handler.limits().request_head_timeout;
    match tokio::time::timeout(limit, handshake).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::debug!(peer = %handler.peer(), %error, "TLS handshake failed");
            return Handshake::Failed;
        }
        Err(_) => {
            tracing::debug!(peer = %handler.peer(), "TLS handshake not done in time");
            return Handshake::Failed;
        }
    }
    if tls.agreed(b"h2") {
        Handshake::Http2
    } else {
        Handshake::Http1
    }
}

/// HTTP/2 on the connection (ALPN, or h2c with prior knowledge): the
/// buffered bytes go first.
async fn serve_h2<S: Service + 'static>(connection: Rc<ClientConnection>, handler: S) {
    let Ok(connection) = Rc::try_unwrap(connection) else {
        return;
    };
    let closing = connection.closing.clone();
    let early = connection.buf.into_inner();
    let io = crate::transport::async_io::TransportIo::new(connection.stream, early);
    h2::serve(io, Rc::new(handler), closing).await
}

/// The HTTP/1.1 connection loop; the connection back when the client
/// opened with the HTTP/2 preface (h2c with prior knowledge, the preface
/// in the buffer).
async fn serve_http1<S: Service>(
    connection: Rc<ClientConnection>,
    handler: &S,
) -> Option<Rc<ClientConnection>> {
    let idle_timeout = handler.limits().idle_timeout;
    // The first idle spell: from the connection's start to its first byte.
    let mut deadline = Instant::now() + idle_timeout;
    let next = loop {
        if *connection.closing.borrow() {
            break Next::Close { linger: false };
        }
        // Idle: among the first to close when descriptors run short, and
        // told when its time is up or its listener closes.
        connection.idle.start(
            handler.idle_group(),
            Rc::downgrade(&connection) as _,
            deadline,
        );
        let readable = connection.stream.readable().await;
        connection.idle.end();
        if readable.is_err() {
            break Next::Close { linger: false };
        }
        if let Some(why) = connection.idle_ended.get() {
            if why == IdleEnd::TimedOut {
                tracing::debug!(peer = %handler.peer(), "client connection idle too long");
            }
            break Next::Close { linger: false };
        }
        // The busy part is boxed: an idle connection's task stays small.
        match Box::pin(serve_busy(&connection, handler)).await {
            Next::Idle { since: Some(since) } => deadline = since + idle_timeout,
            Next::Idle { since: None } => {}
            next => break next,
        }
    };
    match next {
        Next::Tunnel(upgrade) => {
            Box::pin(tunnel::tunnel(connection, upgrade, idle_timeout)).await;
            return None;
        }
        Next::Http2 => return Some(connection),
        Next::Close { linger: true } => Box::pin(linger(&connection)).await,
        _ => connection.stream.close(),
    }
    connection.abandon_body();
    None
}

/// Serve requests while the client keeps sending them; return when the
/// connection has been idle for [`BUSY_GRACE`] or must close. A listener
/// closing during the grace is seen when it ends (or at the next
/// response, which says `Connection: close`).
async fn serve_busy<S: Service>(connection: &Rc<ClientConnection>, handler: &S) -> Next {
    let limits = handler.limits();
    let closing = &connection.closing;
    let mut out = Outgoing::default();
    // When the last response was done; `None` until one is.
    let mut done_at = None;
    // The grace's timer, made at the first grace of this busy spell.
    let mut grace = std::pin::pin!(None::<Sleep>);
    loop {
        let head = match read_head(connection, limits).await {
            Ok(Some(head)) => head,
            Ok(None) => return Next::Idle { since: done_at },
            Err(HeadFailure::Closed) => return Next::Close { linger: false },
            Err(HeadFailure::Http2) => return Next::Http2,
            Err(failure @ (HeadFailure::Invalid(_) | HeadFailure::TimedOut)) => {
                let (error, linger) = match failure {
                    HeadFailure::Invalid(error) => (error, true),
                    _ => (ProxyError::ClientTimeout, false),
                };
                tracing::debug!(peer = %handler.peer(), %error, "bad request head");
                let response = handler.refuse(&error);
                let answering = Answering {
                    version: http::Version::HTTP_11,
                    head_request: false,
                    close: true,
                };
                let stream = &connection.stream;
                write::write_response(stream, &mut out, response, answering, limits.idle_timeout)
                    .await;
                return Next::Close { linger };
            }
        };
        let RequestHead {
            method,
            uri,
            fields,
            body,
            version,
            keep_alive,
            expect_continue,
            upgrade,
        } = head;
        let head_request = method == Method::HEAD;
        let body = ClientBody::new(
            connection,
            body,
            expect_continue,
            limits.idle_timeout,
            limits.connection.body_timeout,
        );
        let request = ClientRequest {
            method,
            uri,
            version,
            fields,
            upgrade,
            body,
        };
        let (response, backend_upgrade) = handler.handle(request).await;
        if handler.wants_reset() {
            // A fault: the client sees its connection reset, no answer.
            crate::fault::reset_on_close(connection.stream.tcp());
            drop(response);
            return Next::Close { linger: false };
        }

        let switching = response.status == StatusCode::SWITCHING_PROTOCOLS;
        let answering = Answering {
            version,
            head_request,
            close: !keep_alive || *closing.borrow() || (switching && !upgrade),
        };
        let written = write::write_response(
            &connection.stream,
            &mut out,
            response,
            answering,
            limits.idle_timeout,
        )
        .await;
        if let Some(backend_upgrade) = backend_upgrade {
            if written != Written::Broken && switching {
                return Next::Tunnel(backend_upgrade);
            }
            return Next::Close { linger: false };
        }
        match written {
            Written::KeepAlive => {}
            Written::Close => {
                return Next::Close {
                    linger: connection.body_pending.get(),
                }
            }
            Written::Broken => return Next::Close { linger: false },
        }
        if connection.body_pending.get() {
            // The backend answered before the whole body came: what is left
            // of it could be anything, and reading it all is unbounded.
            return Next::Close { linger: true };
        }
        if *closing.borrow() {
            return Next::Close { linger: false };
        }
        if connection.buf.borrow().is_empty() {
            // Go idle without a buffer, after one non-blocking look for a
            // next request (which allocates nothing if there is none).
            *connection.buf.borrow_mut() = BytesMut::new();
            match connection.try_fill(HEAD_READ) {
                Ok(0) => return Next::Close { linger: false },
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Next::Close { linger: false },
            }
            // Stay busy a while: a keep-alive client that sends its next
            // request soon (most, under load) costs no new busy future.
            let since = Instant::now();
            done_at = Some(since);
            let until = since + BUSY_GRACE.min(limits.idle_timeout);
            match grace.as_mut().as_pin_mut() {
                Some(timer) => timer.reset(until),
                None => grace.set(Some(tokio::time::sleep_until(until))),
            }
            let Some(timer) = grace.as_mut().as_pin_mut() else {
                return Next::Idle { since: done_at };
            };
            tokio::select! {
                biased;
                readable = connection.stream.readable() => {
                    if readable.is_err() {
                        return Next::Close { linger: false };
                    }
                }
                _ = timer => return Next::Idle { since: done_at },
            }
        }
    }
}

enum HeadFailure {
    /// The client closed, broke the connection or was too slow.
    Closed,
    /// The head is invalid: answer with the error's status and close.
    Invalid(ProxyError),
    /// The head did not come within `request_head_timeout`: answer 408 and
    /// close, without waiting for more.
    TimedOut,
    /// The connection opened with the HTTP/2 preface.
    Http2,
}

/// Read one request head. `Ok(None)`: nothing has arrived (the buffer is
/// dropped); the connection is idle.
async fn read_head(
    connection: &ClientConnection,
    limits: &halb_config::Listener,
) -> Result<Option<RequestHead>, HeadFailure> {
    let mut deadline = None;
    let mut reparse = head::Reparse::default();
    loop {
        let first = connection.first_head.get();
        let awaiting_preface = first && {
            let buf = connection.buf.borrow();
            let seen = buf.len().min(h2::PREFACE.len());
            !buf.is_empty() && buf[..seen] == h2::PREFACE[..seen]
        };
        if awaiting_preface && connection.buf.borrow().len() >= h2::PREFACE.len() {
            return Err(HeadFailure::Http2);
        }
        if !awaiting_preface && reparse.due(&connection.buf.borrow(), limits.max_header_bytes) {
            let parsed = head::parse(&mut connection.buf.borrow_mut(), limits.max_header_bytes);
            match parsed {
                Ok(Some(head)) => {
                    connection.first_head.set(false);
                    return Ok(Some(head));
                }
                Ok(None) => {}
                Err(error) => return Err(HeadFailure::Invalid(error)),
            }
        }
        match connection.try_fill(HEAD_READ) {
            Ok(0) => return Err(HeadFailure::Closed),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Err(HeadFailure::Closed),
        }
        if connection.buf.borrow().is_empty() {
            *connection.buf.borrow_mut() = BytesMut::new();
            return Ok(None);
        }
        // Counted from the first wait for more of a head, not from its
        // first byte: a head that comes whole costs no clock read.
        let deadline =
            *deadline.get_or_insert_with(|| Instant::now() + limits.request_head_timeout);
        tokio::select! {
            readable = connection.stream.readable() => {
                if readable.is_err() {
                    return Err(HeadFailure::Closed);
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                tracing::debug!("client did not send its request head in time");
                return Err(HeadFailure::TimedOut);
            }
        }
    }
}

/// Closing after an error while the client may still be sending: stop
/// writing, then read and drop what comes for a little while.
async fn linger(connection: &ClientConnection) {
    connection.abandon_body();
    connection.stream.close();
    let _ = rustix::net::shutdown(connection.stream.tcp(), rustix::net::Shutdown::Write);
    let deadline = Instant::now() + LINGER_TIME;
    let mut dropped = 0;
    let mut buf = BytesMut::with_capacity(4096);
    while dropped < LINGER_BYTES {
        buf.clear();
        match connection.stream.try_read_buf(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                dropped += n;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
        tokio::select! {
            readable = connection.stream.readable() => {
                if readable.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::sync::Arc;

    /// An idle connection costs its task, whose size is mostly this future:
    /// the busy part must stay boxed out of it.
    #[tokio::test]
    async fn an_idle_connection_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let config = halb_config::parse(
            "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
             [[pool]]\nname = \"app\"\n[[pool.backend]]\naddress = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let pool = Arc::new(crate::state::PoolState::new(
            config.pools[0].clone(),
            &halb_state::State::new(),
        ));
        let context = Arc::new(crate::ListenerContext::new(
            config.listeners[0].clone(),
            addr,
            &[pool],
            None,
        ));
        let stream = crate::transport::Transport::Plain(stream);
        let serving = crate::http::serve(stream, peer, context, Rc::new(Default::default()), ());
        let size = std::mem::size_of_val(&serving);
        println!("the connection future takes {size} bytes");
        assert!(size <= 320, "the connection future takes {size} bytes");
    }
}
