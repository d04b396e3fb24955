//! A TLS session over a tokio `TcpStream`, in the readiness style of
//! halb's data path, for both sides: rustls' sans-I/O connection (a
//! `ServerConnection` for clients of a listener, a `ClientConnection` to a
//! backend) is fed from and drained to the socket with non-blocking reads
//! and writes, so the HTTP code reads "what is there now" and waits for
//! readiness exactly as it does on plain TCP (tokio-rustls would put an
//! `AsyncRead`/`AsyncWrite` poll layer between, which the data path does
//! not use). The stream is also `AsyncRead`/`AsyncWrite`, for h2 and hyper.

use std::cell::{Cell, RefCell};
use std::io::{self, BufRead, IoSlice, Read, Write};
use std::ops::DerefMut;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use rustls::{ClientConnection, ConnectionCommon, SideData};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes of plaintext read per call when the buffer has no spare room.
const READ_ROOM: usize = 16 * 1024;
/// Segments per vectored write.
const MAX_SEGMENTS: usize = 16;

/// What a side is told of its sessions' handshakes (a listener counts
/// them by version, resumption and failure); nothing by default.
pub trait Handshakes<C> {
    /// The handshake completed.
    fn established(&self, _session: &C) {}
    /// The peer closed before the handshake completed.
    fn closed_in_handshake(&self) {}
    /// The handshake failed.
    fn failed(&self, _error: &rustls::Error) {}
}

/// Tells nothing (a backend connection's handshake is awaited whole by
/// [`TlsStream::connect`], whose error says what failed).
#[derive(Debug, Default, Clone, Copy)]
pub struct Unobserved;

impl<C> Handshakes<C> for Unobserved {}

/// A TLS session over a socket: `C` is rustls' connection of either side,
/// `H` what is told of its handshake.
pub struct TlsStream<C, H = Unobserved> {
    tcp: TcpStream,
    session: RefCell<C>,
    handshakes: H,
    /// The handshake completed (and was told).
    established: Cell<bool>,
}

/// A TLS session to a backend, its handshake made by
/// [`TlsStream::connect`].
pub type TlsClientStream = TlsStream<ClientConnection>;

impl<C, H> std::fmt::Debug for TlsStream<C, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("established", &self.established.get())
            .finish_non_exhaustive()
    }
}

/// The socket as rustls' reader and writer: non-blocking, so `WouldBlock`
/// comes back through rustls to the caller.
struct Socket<'a>(&'a TcpStream);

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        crate::sock::try_send_vectored(self.0, &[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        crate::sock::try_send_vectored(self.0, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsClientStream {
    /// Make the handshake over `tcp`; a certificate that does not verify
    /// is an `InvalidData` error saying why.
    pub async fn connect(tcp: TcpStream, session: ClientConnection) -> io::Result<Self> {
        let mut stream = TlsStream::new(tcp, session, Unobserved);
        // By `&mut`: the future stays `Send` (a shared borrow of the
        // `RefCell` would not be).
        std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
        stream.established.set(true);
        Ok(stream)
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let session = self.session.get_mut();
        loop {
            match flush(session, &self.tcp) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_write_ready(cx))?;
                    continue;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            if !session.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            match session.read_tls(&mut Socket(&self.tcp)) {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the backend closed the connection during the TLS handshake",
                    )))
                }
                Ok(_) => {
                    if let Err(error) = session.process_new_packets() {
                        let _ = flush(session, &self.tcp);
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<C, D, H> TlsStream<C, H>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
    D: SideData,
    H: Handshakes<C>,
{
    /// A session over `tcp` whose handshake happens on the first reads
    /// (its replies are written as records are processed).
    pub fn new(tcp: TcpStream, session: C, handshakes: H) -> Self {
        TlsStream {
            tcp,
            session: RefCell::new(session),
            handshakes,
            established: Cell::new(false),
        }
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The two ends agreed on `protocol` by ALPN.
    pub fn agreed(&self, protocol: &[u8]) -> bool {
        self.session.borrow().alpn_protocol() == Some(protocol)
    }

    /// Read the plaintext that has arrived into `buf`'s spare room,
    /// reading and decrypting records from the socket as needed, without
    /// waiting: `Ok(0)` at the end of the stream, `WouldBlock` when nothing
    /// is there.
    pub fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        self.try_read_with(|session| read_plaintext(session, buf))
    }

    /// As [`TlsStream::try_read_buf`], into a slice.
    pub fn try_read(&self, dst: &mut [u8]) -> io::Result<usize> {
        self.try_read_with(|session| session.reader().read(dst))
    }

    /// Go on with the handshake as far as the bytes that came allow;
    /// `Ok(true)` once it is complete (plaintext that came with it stays
    /// buffered for the next read).
    pub fn try_handshake(&self) -> io::Result<bool> {
        if self.established.get() {
            return Ok(true);
        }
        match self.try_read_with(|_| Ok(0)) {
            Ok(0) if self.established.get() => Ok(true),
            Ok(_) => Err(io::ErrorKind::UnexpectedEof.into()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.established.get() => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The handshake completed: tell it, once.
    fn note_established(&self, session: &C) {
        if !self.established.get() && !session.is_handshaking() {
            self.established.set(true);
            self.handshakes.established(session);
        }
    }

    /// Read plaintext with `read`, which says `WouldBlock` when rustls has
    /// none buffered: records are then read from the socket and processed.
    fn try_read_with(
        &self,
        mut read: impl FnMut(&mut ConnectionCommon<D>) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut session = self.session.borrow_mut();
        loop {
            self.note_established(&session);
            let attempt = if self.established.get() {
                read(&mut session)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
            match attempt {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                other => return other,
            }
            if session.read_tls(&mut Socket(&self.tcp))? == 0 {
                if !self.established.get() {
                    self.handshakes.closed_in_handshake();
                }
                return Ok(0);
            }
            if let Err(error) = session.process_new_packets() {
                if !self.established.get() {
                    self.handshakes.failed(&error);
                }
                tracing::debug!(%error, "TLS session failed");
                // The alert rustls queued for the peer, if the socket takes it.
                let _ = flush(&mut session, &self.tcp);
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
            self.note_established(&session);
            if session.wants_write() {
                // Handshake replies, tickets: what the socket does not take
                // now goes at the next readiness poll or write.
                match flush(&mut session, &self.tcp) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Ready when plaintext is buffered, the peer closed, or the socket
    /// has bytes. Records rustls still has to send are pushed first (a
    /// handshake reply the socket refused must go before the peer answers
    /// it).
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut session = self.session.borrow_mut();
            if session.wants_write() {
                match flush(&mut session, &self.tcp) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Woken by room to write as well as by bytes to read.
                        let _ = self.tcp.poll_write_ready(cx);
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                    Ok(()) => {}
                }
            }
            match session.process_new_packets() {
                Ok(state) if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() => {
                    return Poll::Ready(Ok(()))
                }
                Ok(_) => {}
                // The next read reports it.
                Err(_) => return Poll::Ready(Ok(())),
            }
        }
        self.tcp.poll_read_ready(cx)
    }

    /// Ready when a write may make progress.
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_write_ready(cx)
    }

    /// Whether nothing has come while the connection was idle (no
    /// plaintext, no close, no bytes on the socket). Reads what the socket
    /// holds (a session ticket, a close) to know.
    pub fn is_quiet(&self) -> bool {
        let mut session = self.session.borrow_mut();
        loop {
            match session.read_tls(&mut Socket(&self.tcp)) {
                Ok(0) => return false,
                Ok(_) => match session.process_new_packets() {
                    Ok(state)
                        if state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed() => {}
                    _ => return false,
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
    }

    /// Hand what rustls takes of `parts` to the session and write its
    /// records; written parts are emptied and a part written in part is
    /// advanced. `Ok(0)` once nothing is left, records and all.
    pub fn try_send_parts(&self, parts: &mut [Bytes]) -> io::Result<usize> {
        let Some(first) = parts.iter().position(|part| !part.is_empty()) else {
            self.try_flush()?;
            return Ok(0);
        };
        let mut slices = [IoSlice::new(&[]); MAX_SEGMENTS];
        let live = &parts[first..(first + MAX_SEGMENTS).min(parts.len())];
        for (slice, part) in slices.iter_mut().zip(live) {
            *slice = IoSlice::new(part);
        }
        let taken = self.try_write_vectored(&slices[..live.len()])?;
        let mut n = taken;
        let mut at = first;
        while at < parts.len() && n >= parts[at].len() {
            n -= parts[at].len();
            parts[at] = Bytes::new();
            at += 1;
        }
        if n > 0 {
            parts[at].advance(n);
        }
        Ok(taken)
    }

    /// Hand what rustls takes of `buf` to the session and write its records.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            self.try_flush()?;
            return Ok(0);
        }
        self.try_write_vectored(&[IoSlice::new(buf)])
    }

    /// Hand what rustls takes of `slices` (not all empty) to the session
    /// and write its records as far as the socket takes them.
    fn try_write_vectored(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut session = self.session.borrow_mut();
        let taken = session.writer().write_vectored(slices)?;
        match flush(&mut session, &self.tcp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && taken > 0 => {}
            Err(e) => return Err(e),
        }
        if taken == 0 {
            // rustls' buffer is full and the socket took it all: unlikely,
            // but never report progress that was not made.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    /// Write every record rustls holds; `WouldBlock` while the socket is full.
    pub fn try_flush(&self) -> io::Result<()> {
        flush(&mut self.session.borrow_mut(), &self.tcp)
    }

    /// Queue `close_notify` and write it if the socket takes it now.
    pub fn close(&self) {
        let mut session = self.session.borrow_mut();
        session.send_close_notify();
        let _ = flush(&mut session, &self.tcp);
    }
}

/// Plaintext rustls holds, copied into `buf`'s spare room (or
/// [`READ_ROOM`] bytes when it has none) without zeroing it first.
fn read_plaintext<D>(session: &mut ConnectionCommon<D>, buf: &mut BytesMut) -> io::Result<usize> {
    let room = match buf.capacity() - buf.len() {
        0 => READ_ROOM,
        spare => spare,
    };
    let mut reader = session.reader();
    let mut n = 0;
    while n < room {
        match reader.fill_buf() {
            Ok([]) => break,
            Ok(chunk) => {
                let take = chunk.len().min(room - n);
                buf.extend_from_slice(&chunk[..take]);
                reader.consume(take);
                n += take;
            }
            Err(_) if n > 0 => break,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Write the records rustls has queued, as far as the socket takes them.
fn flush<D>(session: &mut ConnectionCommon<D>, tcp: &TcpStream) -> io::Result<()> {
    while session.wants_write() {
        if session.write_tls(&mut Socket(tcp))? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

impl<C, D, H> AsyncRead for TlsStream<C, H>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
    D: SideData,
    H: Handshakes<C>,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_read_ready(cx))?;
            match self.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<C, D, H> AsyncWrite for TlsStream<C, H>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
    D: SideData,
    H: Handshakes<C>,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_write_ready(cx))?;
                }
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.try_flush() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_write_ready(cx))?;
                }
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.close();
        self.poll_flush(cx)
    }
}
