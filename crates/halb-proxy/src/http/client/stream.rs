//! What a backend connection is carried over: plain TCP, or TLS
//! originated by halb (`[pool.tls]`). Same readiness-style operations as
//! the client side's [`crate::transport::Transport`]; splicing and
//! upgrades only where the bytes on the socket are the HTTP bytes.

use std::io;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use halb_backend_tls::TlsClientStream;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// A backend connection's byte stream.
#[derive(Debug)]
pub(crate) enum BackendStream {
    Plain(TcpStream),
    Tls(Box<TlsClientStream>),
}

impl BackendStream {
    /// The socket when its bytes are the HTTP bytes (splice, tunnels).
    #[inline]
    pub(crate) fn plain(&self) -> Option<&TcpStream> {
        match self {
            BackendStream::Plain(stream) => Some(stream),
            BackendStream::Tls(_) => None,
        }
    }

    /// Nothing has arrived (no bytes, no close): the idle connection can
    /// take a request. No system call on the plain path.
    pub(crate) fn is_quiet(&self) -> bool {
        match self {
            BackendStream::Plain(stream) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                stream.poll_read_ready(&mut cx).is_pending()
            }
            BackendStream::Tls(tls) => tls.is_quiet(),
        }
    }

    /// Forget the read readiness a short read left (plain only: TLS reads
    /// records, and its readiness also looks at what rustls holds).
    pub(crate) fn clear_read_ready(&self) {
        if let BackendStream::Plain(stream) = self {
            let _ = stream.try_io(Interest::READABLE, || {
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            });
        }
    }

    #[inline]
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BackendStream::Plain(stream) => stream.try_read(buf),
            BackendStream::Tls(tls) => tls.try_read(buf),
        }
    }

    #[inline]
    pub(crate) fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            BackendStream::Plain(stream) => stream.try_read_buf(buf),
            BackendStream::Tls(tls) => tls.try_read_buf(buf),
        }
    }

    #[inline]
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            BackendStream::Plain(stream) => stream.poll_read_ready(cx),
            BackendStream::Tls(tls) => tls.poll_read_ready(cx),
        }
    }

    pub(crate) async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_read_ready(cx)).await
    }

    pub(crate) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            BackendStream::Plain(stream) => stream.poll_write_ready(cx),
            BackendStream::Tls(tls) => tls.poll_write_ready(cx),
        }
    }

    /// Write what the socket takes now of `parts`; written parts are emptied.
    #[inline]
    pub(crate) fn try_send_parts(&self, parts: &mut [Bytes]) -> io::Result<usize> {
        match self {
            BackendStream::Plain(stream) => crate::sock::try_send_parts(stream, parts),
            BackendStream::Tls(tls) => tls.try_send_parts(parts),
        }
    }

    /// Write `parts` in full (for TLS: records and all).
    pub(crate) async fn write_all(
        &self,
        parts: &mut [Bytes],
        stall_limit: Duration,
        written: &mut bool,
    ) -> io::Result<()> {
        match self {
            BackendStream::Plain(stream) => {
                crate::sock::write_all(stream, parts, stall_limit, written).await
            }
            BackendStream::Tls(tls) => loop {
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
}
