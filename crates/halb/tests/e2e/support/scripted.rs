//! Scripted backends: raw TCP servers whose every connection is handed to a
//! test's script, which reads requests off the wire and writes back exact
//! bytes. For what a well-behaved HTTP server never does: interim heads,
//! odd framings, malformed heads, stalls, and closes at awkward moments.
//! Every request a script reads is recorded, so a test can check what
//! reached the backend byte for byte.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::backends::{serve_raw, Backend};

/// A request head larger than this is not read: the script gives up.
const MAX_HEAD: usize = 1 << 20;
const READ_SIZE: usize = 64 * 1024;

/// A request as a scripted backend read it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub target: String,
    /// Names lower-cased, in wire order.
    pub headers: Vec<(String, String)>,
    /// The body as the backend decoded it (chunked framing removed), or
    /// what was wrong with its framing. Empty for a script that read only
    /// the head.
    pub body: Result<Vec<u8>, String>,
}

impl Received {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The requests a scripted backend has read, on all its connections.
#[derive(Debug, Clone, Default)]
pub struct Seen(Arc<Mutex<Vec<Received>>>);

impl Seen {
    pub fn all(&self) -> Vec<Received> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn count(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn record(&self, request: Received) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(request);
    }
}

/// One accepted backend connection, as a script drives it.
pub struct Wire {
    stream: TcpStream,
    /// Bytes read and not used yet.
    buf: Vec<u8>,
    seen: Seen,
}

impl Wire {
    /// Reads one request head (through its empty line) and records it with
    /// an empty body; the body, if any, stays unread. `None` when the
    /// connection ends first.
    pub async fn read_head(&mut self) -> Option<Received> {
        let request = self.next_head().await?;
        self.seen.record(request.clone());
        Some(request)
    }

    /// As [`Wire::read_request`], but `None` also if no request begins to
    /// arrive within `idle`.
    pub async fn read_request_within(&mut self, idle: Duration) -> Option<Received> {
        if self.buf.is_empty() && !matches!(tokio::time::timeout(idle, self.fill()).await, Ok(true))
        {
            return None;
        }
        self.read_request().await
    }

    /// Reads one whole request: the head and the body its `Content-Length`
    /// or chunked framing delimits. `None` when the connection ends before
    /// the head does.
    pub async fn read_request(&mut self) -> Option<Received> {
        let mut request = self.next_head().await?;
        request.body = self.read_body(&request).await;
        self.seen.record(request.clone());
        Some(request)
    }

    /// Reads the body of `request` (whose head [`Wire::read_head`] read),
    /// as its `Content-Length` or chunked framing delimits it.
    pub async fn read_body(&mut self, request: &Received) -> Result<Vec<u8>, String> {
        let chunked = request
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        if chunked {
            return self.read_chunked().await;
        }
        match request.header("content-length").map(str::parse::<usize>) {
            None => Ok(Vec::new()),
            Some(Ok(length)) => self.read_exact(length).await,
            Some(Err(e)) => Err(format!("bad content-length: {e}")),
        }
    }

    /// Writes `bytes` in full; `false` if the connection broke.
    pub async fn write(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok() && self.stream.flush().await.is_ok()
    }

    /// Sends `length` body bytes back as chunks of a chunked response body
    /// as they arrive, each as soon as it is read, then the last chunk:
    /// an echo that reads and writes at once, as a streaming service does.
    pub async fn echo_body_chunked(&mut self, length: usize) -> Result<(), String> {
        let mut left = length;
        let mut chunk = vec![0u8; READ_SIZE];
        while left > 0 {
            let piece: Vec<u8> = if self.buf.is_empty() {
                match self.stream.read(&mut chunk[..READ_SIZE.min(left)]).await {
                    Ok(n) if n > 0 => chunk[..n].to_vec(),
                    _ => return Err(format!("the connection ended {left} bytes short")),
                }
            } else {
                let n = self.buf.len().min(left);
                self.buf.drain(..n).collect()
            };
            left -= piece.len();
            let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
            framed.extend_from_slice(&piece);
            framed.extend_from_slice(b"\r\n");
            if !self.write(&framed).await {
                return Err("the connection broke while echoing".to_owned());
            }
        }
        if self.write(b"0\r\n\r\n").await {
            Ok(())
        } else {
            Err("the connection broke at the last chunk".to_owned())
        }
    }

    /// Reads and drops whatever comes until the peer closes.
    pub async fn drain(&mut self) {
        self.buf.clear();
        let mut chunk = vec![0u8; READ_SIZE];
        while matches!(self.stream.read(&mut chunk).await, Ok(n) if n > 0) {}
    }

    /// Keeps the connection open, reading nothing, until the backend stops.
    pub async fn hold(self) {
        std::future::pending::<()>().await;
    }

    /// Reads more into the buffer; `false` at the end of the stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = vec![0u8; READ_SIZE];
        match self.stream.read(&mut chunk).await {
            Ok(n) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    async fn next_head(&mut self) -> Option<Received> {
        let end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at;
            }
            if self.buf.len() > MAX_HEAD || !self.fill().await {
                return None;
            }
        };
        let head: Vec<u8> = self.buf.drain(..end + 4).collect();
        let head = String::from_utf8_lossy(&head[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or("").split(' ');
        let method = request_line.next().unwrap_or("").to_owned();
        let target = request_line.next().unwrap_or("").to_owned();
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        Some(Received {
            method,
            target,
            headers,
            body: Ok(Vec::new()),
        })
    }

    async fn read_exact(&mut self, length: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < length {
            if !self.fill().await {
                return Err(format!(
                    "the connection ended after {} of {length} body bytes",
                    self.buf.len()
                ));
            }
        }
        Ok(self.buf.drain(..length).collect())
    }

    async fn read_line(&mut self) -> Result<String, String> {
        loop {
            if let Some(at) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..at + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..at]).into_owned());
            }
            if self.buf.len() > MAX_HEAD || !self.fill().await {
                return Err("the connection ended inside a chunked body".to_owned());
            }
        }
    }

    /// A chunked body, decoded strictly: every size line, chunk and CRLF
    /// must be where RFC 9112 §7.1 puts them.
    async fn read_chunked(&mut self) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| format!("bad chunk size line {line:?}"))?;
            if size == 0 {
                // Trailer fields, up to the empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.read_exact(size).await?);
            let end = self.read_line().await?;
            if !end.is_empty() {
                return Err(format!("chunk data not followed by CRLF: {end:?}"));
            }
        }
    }
}

/// A backend that runs `script` on each connection it accepts; the record
/// of what its scripts read.
pub async fn scripted<F, Fut>(script: F) -> (Backend, Seen)
where
    F: Fn(Wire) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let seen = Seen::default();
    let record = seen.clone();
    let backend = serve_raw(move |stream| {
        script(Wire {
            stream,
            buf: Vec::new(),
            seen: record.clone(),
        })
    })
    .await;
    (backend, seen)
}

/// A backend that keeps its connections alive and answers each request
/// with the bytes `respond` makes of it, until halb closes the connection.
pub async fn answering<F>(respond: F) -> (Backend, Seen)
where
    F: Fn(&Received) -> Vec<u8> + Send + Sync + 'static,
{
    let respond = Arc::new(respond);
    scripted(move |mut wire| {
        let respond = respond.clone();
        async move {
            while let Some(request) = wire.read_request().await {
                if !wire.write(&respond(&request)).await {
                    return;
                }
            }
        }
    })
    .await
}

/// `HTTP/1.1 200 OK` with `body`, framed by Content-Length.
pub fn ok(body: &[u8]) -> Vec<u8> {
    let mut response =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    response.extend_from_slice(body);
    response
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
