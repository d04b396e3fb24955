//! What a connection is carried over: plain TCP, or TLS over TCP (a
//! client's, terminated by a listener; or a backend's, originated by halb
//! for `[pool.tls]`). The HTTP server and client are written against
//! [`Stream`]'s readiness-style operations (read what is there without
//! waiting, wait until readable or writable, write vectored), the ones the
//! plain path is tuned for. An enum rather than a trait object: the plain
//! case costs one predictable branch per call, no indirect call, and the
//! HTTP code is not made generic over the transport in every type that
//! holds a body.

pub(crate) mod async_io;
pub(crate) mod tls;

use std::future::poll_fn;
use std::io;
use std::ops::DerefMut;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use halb_tls::Handshakes;
use rustls::{ConnectionCommon, SideData};
use tokio::io::Interest;
use tokio::net::TcpStream;

pub(crate) use tls::{Counted, TlsStream};

/// A connection's byte stream: `C` and `H` are its TLS side's rustls
/// connection and handshake observer.
#[derive(Debug)]
pub(crate) enum Stream<C, H> {
    Plain(TcpStream),
    Tls(Box<halb_tls::TlsStream<C, H>>),
}

/// A client connection's byte stream (TLS terminated by the listener).
pub(crate) type Transport = Stream<rustls::ServerConnection, Counted>;

/// A backend connection's byte stream (TLS originated by halb).
pub(crate) type BackendStream = Stream<rustls::ClientConnection, halb_tls::Unobserved>;

impl<C, D, H> Stream<C, H>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
    D: SideData,
    H: Handshakes<C>,
{
    /// The TCP socket underneath (socket options, resets, shutdown).
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(stream) => stream,
            Stream::Tls(tls) => tls.tcp(),
        }
    }

    /// The socket when the bytes on it are the HTTP bytes themselves, so
    /// that a body can be spliced to or from it (and a tunnel joined).
    #[inline]
    pub(crate) fn plain(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(stream) => Some(stream),
            Stream::Tls(_) => None,
        }
    }

    /// Read what has arrived into `buf`, without waiting: `Ok(0)` at the
    /// end of the stream, `WouldBlock` when nothing is there.
    #[inline]
    pub(crate) fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.try_read_buf(buf),
            Stream::Tls(tls) => tls.try_read_buf(buf),
        }
    }

    /// As [`Stream::try_read_buf`], into a slice.
    #[inline]
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.try_read(buf),
            Stream::Tls(tls) => tls.try_read(buf),
        }
    }

    /// A short read emptied the socket: tell the reactor now rather than
    /// learn it from one more read that fails. Only for the plain socket
    /// (TLS reads records, whose sizes say nothing of what is left, and
    /// its readiness also looks at what rustls holds).
    #[inline]
    pub(crate) fn note_drained(&self) {
        if let Stream::Plain(stream) = self {
            let _ = stream.try_io(Interest::READABLE, || {
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            });
        }
    }

    /// Nothing has arrived (no bytes, no close): an idle connection can
    /// take a request. No system call on the plain path.
    pub(crate) fn is_quiet(&self) -> bool {
        match self {
            Stream::Plain(stream) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                stream.poll_read_ready(&mut cx).is_pending()
            }
            Stream::Tls(tls) => tls.is_quiet(),
        }
    }

    /// Ready when a read may make progress.
    #[inline]
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Plain(stream) => stream.poll_read_ready(cx),
            Stream::Tls(tls) => tls.poll_read_ready(cx),
        }
    }

    /// Wait until a read may make progress. A poll of the readiness (one
    /// task reads a connection), not tokio's `readable()` with its waiter
    /// list: a smaller future for an idle connection to hold, and no list
    /// to join and leave at each wait.
    pub(crate) fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + '_ {
        poll_fn(move |cx| self.poll_read_ready(cx))
    }

    /// Ready when a write may make progress.
    pub(crate) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp().poll_write_ready(cx)
    }

    /// Write what the socket takes now of `parts` (see
    /// [`crate::sock::try_send_parts`]). `Ok(0)`: nothing left to send,
    /// and for TLS every record is on the socket.
    #[inline]
    pub(crate) fn try_send_parts(&self, parts: &mut [Bytes]) -> io::Result<usize> {
        match self {
            Stream::Plain(stream) => crate::sock::try_send_parts(stream, parts),
            Stream::Tls(tls) => tls.try_send_parts(parts),
        }
    }

    /// Write `parts` in full; written parts are emptied, so a write cut
    /// short by the caller resumes where it was.
    pub(crate) async fn write_all(
        &self,
        parts: &mut [Bytes],
        stall_limit: Duration,
        written: &mut bool,
    ) -> io::Result<()> {
        match self {
            Stream::Plain(stream) => {
                crate::sock::write_all(stream, parts, stall_limit, written).await
            }
            Stream::Tls(tls) => loop {
                match tls.try_send_parts(parts) {
                    Ok(0) => return Ok(()),
                    Ok(_) => *written = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        tokio::time::timeout(stall_limit, tls.tcp().writable())
                            .await
                            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
                    }
                    Err(e) => return Err(e),
                }
            },
        }
    }

    /// Say goodbye before closing: TLS sends its `close_notify`.
    pub(crate) fn close(&self) {
        if let Stream::Tls(tls) = self {
            tls.close();
        }
    }

    /// End this direction of the stream, the other still open: TLS sends
    /// its `close_notify` (written by the caller's next `write_all`),
    /// plain TCP shuts its writing half down.
    fn end_writes(&self) {
        match self {
            Stream::Plain(stream) => {
                let _ = rustix::net::shutdown(stream, rustix::net::Shutdown::Write);
            }
            Stream::Tls(tls) => tls.close(),
        }
    }
}

/// Bytes read per copy when relaying through user space.
const RELAY_BUFFER: usize = 16 * 1024;

/// Relay between two streams, one of them at least over TLS, until both
/// directions have ended, copying through user space (the bytes are
/// decrypted and encrypted on the way). A direction that ends is passed
/// on: `close_notify` over TLS, `shutdown(SHUT_WR)` over plain TCP.
/// `stall_limit`: how long a write may make no progress.
pub(crate) async fn relay_copy<A, AD, AH, B, BD, BH>(
    client: &Stream<A, AH>,
    backend: &Stream<B, BH>,
    stall_limit: Duration,
) -> io::Result<()>
where
    A: DerefMut<Target = ConnectionCommon<AD>>,
    AD: SideData,
    AH: Handshakes<A>,
    B: DerefMut<Target = ConnectionCommon<BD>>,
    BD: SideData,
    BH: Handshakes<B>,
{
    tokio::try_join!(
        copy_one_way(client, backend, stall_limit),
        copy_one_way(backend, client, stall_limit)
    )?;
    Ok(())
}

/// Copy what `from` sends to `to` until `from` ends, then end `to`'s
/// writes.
async fn copy_one_way<A, AD, AH, B, BD, BH>(
    from: &Stream<A, AH>,
    to: &Stream<B, BH>,
    stall_limit: Duration,
) -> io::Result<()>
where
    A: DerefMut<Target = ConnectionCommon<AD>>,
    AD: SideData,
    AH: Handshakes<A>,
    B: DerefMut<Target = ConnectionCommon<BD>>,
    BD: SideData,
    BH: Handshakes<B>,
{
    let mut buf = BytesMut::with_capacity(RELAY_BUFFER);
    let mut written = false;
    loop {
        from.readable().await?;
        buf.reserve(RELAY_BUFFER);
        match from.try_read_buf(&mut buf) {
            Ok(0) => break,
            Ok(_) => {
                let mut parts = [buf.split().freeze()];
                to.write_all(&mut parts, stall_limit, &mut written).await?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    to.end_writes();
    // What end_writes could not write now goes before this direction ends.
    to.write_all(&mut [], stall_limit, &mut written).await
}
