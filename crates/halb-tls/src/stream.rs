//! A TLS client session over a tokio `TcpStream`, in the readiness style
//! of halb's data path: rustls' sans-I/O `ClientConnection` is fed from and
//! drained to the socket with non-blocking reads and writes, so the HTTP
//! client reads "what is there now" and waits for readiness exactly as it
//! does on plain TCP. The handshake is finished by [`TlsClientStream::connect`]
//! before the first request goes out.

use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use rustls::ClientConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes of plaintext read per call when the buffer has no spare room.
const READ_ROOM: usize = 16 * 1024;
/// Segments per vectored write.
const MAX_SEGMENTS: usize = 16;

/// A TLS session to a backend.
pub struct TlsClientStream {
    tcp: TcpStream,
    session: RefCell<ClientConnection>,
}

impl std::fmt::Debug for TlsClientStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClientStream").finish_non_exhaustive()
    }
}

struct Socket<'a>(&'a TcpStream);

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsClientStream {
    /// Make the handshake over `tcp`; a certificate that does not verify
    /// is an `InvalidData` error saying why.
    pub async fn connect(tcp: TcpStream, session: ClientConnection) -> io::Result<Self> {
        let mut stream = TlsClientStream {
            tcp,
            session: RefCell::new(session),
        };
        // By `&mut`: the future stays `Send` (a shared borrow of the
        // `RefCell` would not be).
        std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
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

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Read the plaintext that has arrived into `buf`'s spare room, without
    /// waiting: `Ok(0)` at the end of the stream, `WouldBlock` when nothing
    /// is there.
    pub fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        self.try_read_with(|session| {
            let len = buf.len();
            let room = match buf.capacity() - len {
                0 => READ_ROOM,
                spare => spare,
            };
            buf.resize(len + room, 0);
            let read = session.reader().read(&mut buf[len..]);
            buf.truncate(len + *read.as_ref().unwrap_or(&0));
            read
        })
    }

    /// As [`TlsClientStream::try_read_buf`], into a slice.
    pub fn try_read(&self, dst: &mut [u8]) -> io::Result<usize> {
        self.try_read_with(|session| session.reader().read(dst))
    }

    fn try_read_with(
        &self,
        mut read: impl FnMut(&mut ClientConnection) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut session = self.session.borrow_mut();
        loop {
            match read(&mut session) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                other => return other,
            }
            if session.read_tls(&mut Socket(&self.tcp))? == 0 {
                return Ok(0);
            }
            if let Err(error) = session.process_new_packets() {
                let _ = flush(&mut session, &self.tcp);
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
            if session.wants_write() {
                match flush(&mut session, &self.tcp) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Ready when plaintext is buffered, the peer closed, or the socket
    /// has bytes; records still to send are pushed first.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let mut session = self.session.borrow_mut();
            if session.wants_write() {
                match flush(&mut session, &self.tcp) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
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
                Err(_) => return Poll::Ready(Ok(())),
            }
        }
        self.tcp.poll_read_ready(cx)
    }

    /// Whether nothing has come while the connection was idle (no
    /// plaintext, no close, no bytes on the socket).
    /// Reads what the socket holds (a session ticket, a close) to know.
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

    /// Ready when a write may make progress.
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_write_ready(cx)
    }

    /// Hand what rustls takes of `parts` to the session and write its
    /// records; written parts are emptied. `Ok(0)` once nothing is left,
    /// records and all.
    pub fn try_send_parts(&self, parts: &mut [Bytes]) -> io::Result<usize> {
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

fn flush(session: &mut ClientConnection, tcp: &TcpStream) -> io::Result<()> {
    while session.wants_write() {
        if session.write_tls(&mut Socket(tcp))? == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
    }
    Ok(())
}

impl AsyncRead for TlsClientStream {
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

impl AsyncWrite for TlsClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut parts = [Bytes::copy_from_slice(buf)];
            match self.try_send_parts(&mut parts) {
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
