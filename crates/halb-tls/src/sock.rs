//! The data path's socket write, for plain and TLS connections alike:
//! `send`/`sendmsg` made directly (rustix's raw system calls), so a write
//! skips the VFS layer that `write`/`writev` go through and libc's
//! cancellation-point wrapper, a measurable share of a small request's cost.

use std::io::{self, IoSlice};

use rustix::net::{SendAncillaryBuffer, SendFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Send what the socket takes of `slices` now, without waiting; like
/// `TcpStream::try_write_vectored` (a `WouldBlock` clears the readiness, so
/// `writable()` then waits for room).
pub fn try_send_vectored(stream: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    stream.try_io(Interest::WRITABLE, || {
        let sent = match slices {
            [one] => rustix::net::send(stream, one, SendFlags::NOSIGNAL),
            _ => rustix::net::sendmsg(
                stream,
                slices,
                &mut SendAncillaryBuffer::default(),
                SendFlags::NOSIGNAL,
            ),
        };
        sent.map_err(io::Error::from)
    })
}
