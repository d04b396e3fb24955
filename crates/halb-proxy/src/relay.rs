//! Relaying a TCP connection's bytes both ways. On Linux the bytes go
//! socket → pipe → socket with `splice(2)` and never enter user space (as
//! HAProxy does in TCP mode); a half-close on one side is passed on as a
//! `shutdown(SHUT_WR)` to the other, and the other direction goes on.
//!
//! A direction's pipe is made only when its first bytes arrive, so idle
//! connections hold no pipe; if no pipe can be made (out of file
//! descriptors), that direction copies through a small buffer instead.

use std::cell::{Cell, RefCell};
use std::io;
use std::time::Duration;

use rustix::net::Shutdown;
use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes moved per `splice` call, and the size asked of each pipe.
const PIPE_SIZE: usize = 512 * 1024;
/// The fallback copy buffer.
const COPY_BUFFER: usize = 16 * 1024;

/// Bytes relayed so far, each way.
#[derive(Debug, Default)]
pub(crate) struct Relayed {
    pub to_backend: Cell<u64>,
    pub to_client: Cell<u64>,
}

/// Relay between `client` and `backend` until both directions have ended
/// (or one fails). Counts go to `relayed` as they happen.
pub(crate) async fn relay(
    client: &TcpStream,
    backend: &TcpStream,
    relayed: &Relayed,
) -> io::Result<()> {
    tokio::try_join!(
        one_way(client, backend, &relayed.to_backend),
        one_way(backend, client, &relayed.to_client),
    )?;
    Ok(())
}

/// Move bytes from `from` to `to` until `from` ends, then half-close `to`.
async fn one_way(from: &TcpStream, to: &TcpStream, moved: &Cell<u64>) -> io::Result<()> {
    from.readable().await?;
    match Pipe::new() {
        Ok(pipe) => splice_loop(from, to, &pipe, moved).await?,
        Err(e) => {
            tracing::debug!(error = %e, "no pipe for splice; copying instead");
            copy_loop(from, to, moved).await?;
        }
    }
    // The other side may already be gone; the relay is over either way.
    let _ = rustix::net::shutdown(to, Shutdown::Write);
    Ok(())
}

pub(crate) struct Pipe {
    read: rustix::fd::OwnedFd,
    write: rustix::fd::OwnedFd,
    /// Its two descriptors, counted against the process's budget.
    _budget: crate::admission::PipeTicket,
}

/// Empty pipes a worker keeps for its next spliced bodies.
const SPARE_PIPES: usize = 16;

thread_local! {
    static SPARES: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        // Near the descriptor limit, clients come first: copy instead.
        let budget = crate::admission::PipeTicket::take()
            .ok_or_else(|| io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error()))?;
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        // A larger pipe moves more per call; the default (64 KiB) still works.
        let _ = rustix::pipe::fcntl_setpipe_size(&write, PIPE_SIZE);
        Ok(Pipe {
            read,
            write,
            _budget: budget,
        })
    }

    /// One of this worker's spare pipes, or a new one.
    pub(crate) fn take() -> io::Result<Pipe> {
        match SPARES.with(|spares| spares.borrow_mut().pop()) {
            Some(pipe) => Ok(pipe),
            None => Pipe::new(),
        }
    }

    /// Keep an empty pipe for a next splice (an empty pipe holds no pages).
    pub(crate) fn keep(self) {
        SPARES.with(|spares| {
            let mut spares = spares.borrow_mut();
            if spares.len() < SPARE_PIPES {
                spares.push(self);
            }
        });
    }
}

/// Move exactly `len` bytes from `from` to `to` through `pipe` (which must
/// be empty, and is empty again on success), never reading past them.
/// `moved` counts what reached `to`. Fails if `from` ends first, or if
/// either side makes no progress for its stall limit.
pub(crate) async fn splice_exact(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &Pipe,
    len: u64,
    stalls: (Duration, Duration),
    moved: &mut u64,
) -> io::Result<()> {
    let (read_stall, write_stall) = stalls;
    let stalled = || io::Error::new(io::ErrorKind::TimedOut, "splice stalled");
    let mut left = len;
    while left > 0 {
        let want = left.min(PIPE_SIZE as u64) as usize;
        let mut in_pipe = loop {
            let spliced = fill_pipe(from, pipe, want);
            match spliced {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::time::timeout(read_stall, from.readable())
                        .await
                        .map_err(|_| stalled())??;
                }
                Err(e) => return Err(e),
            }
        };
        if in_pipe == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        left -= in_pipe as u64;
        while in_pipe > 0 {
            let spliced = empty_pipe(pipe, to, in_pipe);
            match spliced {
                Ok(n) => {
                    in_pipe -= n;
                    *moved += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::time::timeout(write_stall, to.writable())
                        .await
                        .map_err(|_| stalled())??;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

const FLAGS: SpliceFlags = SpliceFlags::MOVE.union(SpliceFlags::NONBLOCK);

/// Up to `want` bytes from the socket into the pipe, without waiting.
fn fill_pipe(from: &TcpStream, pipe: &Pipe, want: usize) -> io::Result<usize> {
    from.try_io(Interest::READABLE, || {
        Ok(rustix::pipe::splice(
            from,
            None,
            &pipe.write,
            None,
            want,
            FLAGS,
        )?)
    })
}

/// Up to `len` bytes from the pipe into the socket, without waiting.
fn empty_pipe(pipe: &Pipe, to: &TcpStream, len: usize) -> io::Result<usize> {
    to.try_io(Interest::WRITABLE, || {
        Ok(rustix::pipe::splice(
            &pipe.read, None, to, None, len, FLAGS,
        )?)
    })
}

async fn splice_loop(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &Pipe,
    moved: &Cell<u64>,
) -> io::Result<()> {
    loop {
        // Fill the pipe from the socket.
        let mut in_pipe = loop {
            from.readable().await?;
            let spliced = fill_pipe(from, pipe, PIPE_SIZE);
            match spliced {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if in_pipe == 0 {
            return Ok(());
        }
        // Empty it into the other socket.
        while in_pipe > 0 {
            to.writable().await?;
            let spliced = empty_pipe(pipe, to, in_pipe);
            match spliced {
                Ok(n) => {
                    in_pipe -= n;
                    moved.set(moved.get() + n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

async fn copy_loop(from: &TcpStream, to: &TcpStream, moved: &Cell<u64>) -> io::Result<()> {
    let mut buffer = vec![0u8; COPY_BUFFER];
    loop {
        let n = loop {
            from.readable().await?;
            match from.try_read(&mut buffer) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(());
        }
        let mut sent = 0;
        while sent < n {
            to.writable().await?;
            match to.try_write(&buffer[sent..n]) {
                Ok(written) => {
                    sent += written;
                    moved.set(moved.get() + written as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A connected pair of sockets: (the end we relay, the far end).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let far = TcpStream::connect(listener.local_addr().unwrap());
        let (near, far) = tokio::join!(listener.accept(), far);
        (near.unwrap().0, far.unwrap())
    }

    #[tokio::test]
    async fn relays_both_ways_and_passes_half_closes_on() {
        let (client_side, mut client) = pair().await;
        let (backend_side, mut backend) = pair().await;
        let relayed = Relayed::default();
        let relaying = relay(&client_side, &backend_side, &relayed);
        let talking = async {
            let upload: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
            client.write_all(&upload).await.unwrap();
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            backend.read_to_end(&mut got).await.unwrap();
            assert!(got == upload, "the upload arrived whole and in order");
            // The client's half-close reached the backend; it still answers.
            backend.write_all(b"thanks").await.unwrap();
            backend.shutdown().await.unwrap();
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await.unwrap();
            assert_eq!(answer, b"thanks");
        };
        let (relayed_result, ()) = tokio::join!(relaying, talking);
        relayed_result.unwrap();
        assert_eq!(relayed.to_backend.get(), 3_000_000);
        assert_eq!(relayed.to_client.get(), 6);
    }
}
