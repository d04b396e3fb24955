//! Relaying a TCP connection's bytes both ways. On Linux the bytes go
//! socket → pipe → socket with `splice(2)` and never enter user space (as
//! HAProxy does in TCP mode); a half-close on one side is passed on as a
//! `shutdown(SHUT_WR)` to the other, and the other direction goes on.
//!
//! A direction's pipe is made only when its first bytes arrive, so idle
//! connections hold no pipe; if no pipe can be made (out of file
//! descriptors), that direction copies through a small buffer instead.

use std::cell::Cell;
use std::io;

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

struct Pipe {
    read: rustix::fd::OwnedFd,
    write: rustix::fd::OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        // A larger pipe moves more per call; the default (64 KiB) still works.
        let _ = rustix::pipe::fcntl_setpipe_size(&write, PIPE_SIZE);
        Ok(Pipe { read, write })
    }
}

const FLAGS: SpliceFlags = SpliceFlags::MOVE.union(SpliceFlags::NONBLOCK);

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
            let spliced = from.try_io(Interest::READABLE, || {
                Ok(rustix::pipe::splice(
                    from,
                    None,
                    &pipe.write,
                    None,
                    PIPE_SIZE,
                    FLAGS,
                )?)
            });
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
            let spliced = to.try_io(Interest::WRITABLE, || {
                Ok(rustix::pipe::splice(
                    &pipe.read, None, to, None, in_pipe, FLAGS,
                )?)
            });
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
