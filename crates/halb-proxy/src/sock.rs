//! Socket writes on the data path. `send`/`sendmsg` are made directly
//! (rustix's raw system calls): a socket write then skips the VFS layer
//! that `write`/`writev` go through and libc's cancellation-point wrapper,
//! a measurable share of a small request's cost.

use std::io::{self, IoSlice};
use std::time::Duration;

use bytes::{Buf, Bytes};
use rustix::net::{SendAncillaryBuffer, SendFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Send what the socket takes of `slices` now, without waiting; like
/// `TcpStream::try_write_vectored` (a `WouldBlock` clears the readiness, so
/// `writable()` then waits for room).
pub(crate) fn try_send_vectored(stream: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
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

/// Write `parts` in full, with vectored writes.
pub(crate) async fn write_all(
    stream: &TcpStream,
    parts: &mut [Bytes],
    stall_limit: Duration,
    written: &mut bool,
) -> io::Result<()> {
    const MAX_SEGMENTS: usize = 16;
    let mut first = 0;
    loop {
        while first < parts.len() && parts[first].is_empty() {
            first += 1;
        }
        if first == parts.len() {
            return Ok(());
        }
        let result = {
            let mut slices = [IoSlice::new(&[]); MAX_SEGMENTS];
            let live = &parts[first..(first + MAX_SEGMENTS).min(parts.len())];
            for (slice, part) in slices.iter_mut().zip(live) {
                *slice = IoSlice::new(part);
            }
            try_send_vectored(stream, &slices[..live.len()])
        };
        match result {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(mut n) => {
                *written = true;
                // Written parts are emptied, so a write cut short by the
                // caller resumes where it was.
                while first < parts.len() && n >= parts[first].len() {
                    n -= parts[first].len();
                    parts[first] = Bytes::new();
                    first += 1;
                }
                if n > 0 {
                    parts[first].advance(n);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::timeout(stall_limit, stream.writable())
                    .await
                    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
            }
            Err(e) => return Err(e),
        }
    }
}
