//! Injected faults ([`halb_chaos`]) as the data path applies them: the one
//! place that turns a fault into a delay, an answer, a reset, a hold or a
//! throttle. Asked once per HTTP request and TCP connection, when its
//! first backend is picked; with no fault active the ask is one atomic load.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use halb_chaos::{Fault, FaultKind, Faults};
use tokio::net::TcpStream;

use crate::relay::Relayed;

/// What to do with a request or connection a fault hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Injected {
    /// Go on as usual (a latency fault has already waited).
    Proceed,
    /// Go on, with what goes to the client at this many bytes per second.
    Throttle(u64),
    /// Answer this status without reaching a backend (HTTP).
    Answer(u16),
    /// Close the client connection with a reset, answering nothing.
    Reset,
}

/// The fault on a request or connection to `backend` of `pool`, applied up
/// to the point of forwarding: waits out a latency, holds a timeout until
/// the fault ends.
#[inline]
pub(crate) async fn before_forward(faults: &Faults, pool: &str, backend: SocketAddr) -> Injected {
    match faults.pick(pool, Some(backend)) {
        None => Injected::Proceed,
        Some(fault) => Box::pin(apply(fault)).await,
    }
}

async fn apply(fault: std::sync::Arc<Fault>) -> Injected {
    tracing::trace!(id = %fault.id, kind = fault.kind.name(), "fault applied");
    match fault.kind {
        FaultKind::Latency(delay) => {
            tokio::time::sleep(delay).await;
            Injected::Proceed
        }
        FaultKind::Abort(Some(status)) => Injected::Answer(status),
        FaultKind::Abort(None) | FaultKind::Reset => Injected::Reset,
        FaultKind::Timeout => {
            // The client gives up first, or the fault ends: then the
            // connection goes as if reset.
            fault.ended().await;
            Injected::Reset
        }
        FaultKind::Bandwidth(rate) => Injected::Throttle(rate),
    }
}

/// Close `stream` with a TCP reset rather than a FIN once it is dropped.
pub(crate) fn reset_on_close(stream: &TcpStream) {
    let _ = rustix::net::sockopt::set_socket_linger(stream, Some(Duration::ZERO));
}

/// Relay like [`crate::relay::relay`], each direction at most `rate` bytes
/// per second (a bandwidth fault on a TCP pool).
pub(crate) async fn throttled_relay(
    client: &TcpStream,
    backend: &TcpStream,
    rate: u64,
    relayed: &Relayed,
) -> io::Result<()> {
    let up = pump(client, backend, rate, &relayed.to_backend);
    let down = pump(backend, client, rate, &relayed.to_client);
    tokio::try_join!(up, down).map(|_| ())
}

async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    rate: u64,
    count: &std::cell::Cell<u64>,
) -> io::Result<()> {
    // Tenths of a second of data at a time keep the pace smooth.
    let chunk = (rate / 10).clamp(1, 64 * 1024) as usize;
    let mut buf = vec![0; chunk];
    loop {
        from.readable().await?;
        let n = match from.try_read(&mut buf) {
            Ok(0) => {
                let _ = rustix::net::shutdown(to, rustix::net::Shutdown::Write);
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut written = 0;
        while written < n {
            to.writable().await?;
            match to.try_write(&buf[written..n]) {
                Ok(m) => written += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        count.set(count.get() + n as u64);
        tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
    }
}
