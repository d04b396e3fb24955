//! A [`Transport`] as tokio's `AsyncRead`/`AsyncWrite`, for the HTTP/2
//! front end (the h2 crate drives its connection through them), with the
//! bytes already read before the switch (an h2c preface) replayed first.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Transport;

/// A transport and the bytes read from it before it was handed over.
pub(crate) struct TransportIo {
    transport: Transport,
    early: BytesMut,
}

impl TransportIo {
    pub(crate) fn new(transport: Transport, early: BytesMut) -> Self {
        TransportIo { transport, early }
    }
}

impl AsyncRead for TransportIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.early.is_empty() {
            let n = this.early.len().min(buf.remaining());
            buf.put_slice(&this.early[..n]);
            this.early.advance(n);
            return Poll::Ready(Ok(()));
        }
        match &mut this.transport {
            Transport::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Transport::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for TransportIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().transport {
            Transport::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Transport::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().transport {
            Transport::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Transport::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Transport::Tls(tls) = &this.transport {
            tls.close();
        }
        ready!(Pin::new(&mut *this).poll_flush(cx))?;
        let _ = rustix::net::shutdown(this.transport.tcp(), rustix::net::Shutdown::Write);
        Poll::Ready(Ok(()))
    }
}
