//! TLS over a client's TCP socket, kept in the readiness style of the
//! plain path: rustls' sans-I/O `ServerConnection` is fed from and drained
//! to the socket with non-blocking reads and writes, so the HTTP server
//! reads "what is there now" and waits for readiness exactly as it does on
//! plain TCP (tokio-rustls would put an `AsyncRead`/`AsyncWrite` poll layer
//! between, which this server does not use). The handshake happens on the
//! first reads: its replies are written as records are processed.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use rustls::ServerConnection;
use tokio::net::TcpStream;

use crate::route::ListenerMetrics;

/// Bytes of plaintext read per call when the buffer has no spare room.
const READ_ROOM: usize = 16 * 1024;
/// Segments per vectored write.
const MAX_SEGMENTS: usize = 16;

/// A TLS session over a client's socket.
pub(crate) struct TlsStream {
    tcp: TcpStream,
    session: RefCell<ServerConnection>,
    metrics: Arc<ListenerMetrics>,
    /// The handshake completed (and was counted).
    established: Cell<bool>,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("established", &self.established.get())
            .finish()
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

impl TlsStream {
    pub(crate) fn new(
        tcp: TcpStream,
        session: ServerConnection,
        metrics: Arc<ListenerMetrics>,
    ) -> Self {
        TlsStream {
            tcp,
            session: RefCell::new(session),
            metrics,
            established: Cell::new(false),
        }
    }

    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Read the plaintext that has arrived into `buf`, reading and
    /// decrypting records from the socket as needed, without waiting.
    pub(crate) fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        self.try_read_with(|session| read_plaintext(session, buf))
    }

    /// As [`TlsStream::try_read_buf`], into a slice.
    pub(crate) fn try_read(&self, dst: &mut [u8]) -> io::Result<usize> {
        self.try_read_with(|session| session.reader().read(dst))
    }

    /// Go on with the handshake as far as the bytes that came allow;
    /// `Ok(true)` once it is complete (plaintext that came with it stays
    /// buffered for the next read).
    pub(crate) fn try_handshake(&self) -> io::Result<bool> {
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

    /// The client and halb agreed on HTTP/2 (ALPN `h2`).
    pub(crate) fn is_h2(&self) -> bool {
        self.session.borrow().alpn_protocol() == Some(b"h2")
    }

    /// Read plaintext with `read`, which says `WouldBlock` when rustls has
    /// none buffered: records are then read from the socket and processed.
    fn try_read_with(
        &self,
        mut read: impl FnMut(&mut ServerConnection) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut session = self.session.borrow_mut();
        loop {
            if !self.established.get() && !session.is_handshaking() {
                self.established.set(true);
                self.metrics.tls.established(&session);
            }
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
            match session.read_tls(&mut Socket(&self.tcp)) {
                Ok(0) => {
                    if !self.established.get() {
                        self.metrics.tls.closed_in_handshake();
                    }
                    return Ok(0);
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Err(error) = session.process_new_packets() {
                if !self.established.get() {
                    self.metrics.tls.failed(&error);
                }
                tracing::debug!(%error, "TLS session failed");
                // The alert rustls queued for the peer, if the socket takes it.
                let _ = flush(&mut session, &self.tcp);
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
            if !self.established.get() && !session.is_handshaking() {
                self.established.set(true);
                self.metrics.tls.established(&session);
            }
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
    /// handshake reply the socket refused must go before the client
    /// answers it).
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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

    /// Hand what rustls takes of `parts` to the session and write its
    /// records; `Ok(0)` once nothing is left, records and all.
    pub(crate) fn try_send_parts(&self, parts: &mut [Bytes]) -> io::Result<usize> {
        let mut session = self.session.borrow_mut();
        let Some(first) = parts.iter().position(|part| !part.is_empty()) else {
            flush(&mut session, &self.tcp)?;
            return Ok(0);
        };
        let taken = {
            let mut slices = [IoSlice::new(&[]); MAX_SEGMENTS];
            let live = &parts[first..(first + MAX_SEGMENTS).min(parts.len())];
            for (slice, part) in slices.iter_mut().zip(live) {
                *slice = IoSlice::new(part);
            }
            session.writer().write_vectored(&slices[..live.len()])?
        };
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

    /// Hand what rustls takes of `buf` to the session and write its records.
    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut parts = [Bytes::copy_from_slice(buf)];
        self.try_send_parts(&mut parts)
    }

    /// Write every record rustls holds; `WouldBlock` while the socket is full.
    pub(crate) fn try_flush(&self) -> io::Result<()> {
        flush(&mut self.session.borrow_mut(), &self.tcp)
    }

    /// Queue `close_notify` and write it if the socket takes it now.
    pub(crate) fn close(&self) {
        let mut session = self.session.borrow_mut();
        session.send_close_notify();
        let _ = flush(&mut session, &self.tcp);
    }
}

/// Plaintext rustls holds, read into `buf`'s spare room.
fn read_plaintext(session: &mut ServerConnection, buf: &mut BytesMut) -> io::Result<usize> {
    let len = buf.len();
    let room = match buf.capacity() - len {
        0 => READ_ROOM,
        spare => spare,
    };
    buf.resize(len + room, 0);
    let read = session.reader().read(&mut buf[len..]);
    buf.truncate(len + *read.as_ref().unwrap_or(&0));
    read
}

/// Write the records rustls has queued, as far as the socket takes them.
fn flush(session: &mut ServerConnection, tcp: &TcpStream) -> io::Result<()> {
    while session.wants_write() {
        if session.write_tls(&mut Socket(tcp))? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}
