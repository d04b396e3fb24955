//! Socket writes on the data path, by `send`/`sendmsg` (see
//! [`halb_tls::sock`], whose write both plain and TLS connections use).

use std::io::{self, IoSlice};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::net::TcpStream;

pub(crate) use halb_tls::sock::try_send_vectored;

/// Send what the socket takes now of `parts`, from the first that is not
/// empty; the parts written are emptied and a part written in part is
/// advanced, so the next call resumes where this one stopped. `Ok(0)`:
/// nothing was left to send.
pub(crate) fn try_send_parts(stream: &TcpStream, parts: &mut [Bytes]) -> io::Result<usize> {
    const MAX_SEGMENTS: usize = 16;
    let Some(mut first) = parts.iter().position(|part| !part.is_empty()) else {
        return Ok(0);
    };
    let sent = {
        let mut slices = [IoSlice::new(&[]); MAX_SEGMENTS];
        let live = &parts[first..(first + MAX_SEGMENTS).min(parts.len())];
        for (slice, part) in slices.iter_mut().zip(live) {
            *slice = IoSlice::new(part);
        }
        try_send_vectored(stream, &slices[..live.len()])?
    };
    if sent == 0 {
        return Err(io::ErrorKind::WriteZero.into());
    }
    let mut n = sent;
    while first < parts.len() && n >= parts[first].len() {
        n -= parts[first].len();
        parts[first] = Bytes::new();
        first += 1;
    }
    if n > 0 {
        parts[first].advance(n);
    }
    Ok(sent)
}

/// Write `parts` in full, with vectored writes. Written parts are emptied,
/// so a write cut short by the caller resumes where it was.
pub(crate) async fn write_all(
    stream: &TcpStream,
    parts: &mut [Bytes],
    stall_limit: Duration,
    written: &mut bool,
) -> io::Result<()> {
    loop {
        match try_send_parts(stream, parts) {
            Ok(0) => return Ok(()),
            Ok(_) => *written = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::time::timeout(stall_limit, stream.writable())
                    .await
                    .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
            }
            Err(e) => return Err(e),
        }
    }
}
