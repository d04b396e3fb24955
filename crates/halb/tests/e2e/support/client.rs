//! Clients of halb: a hyper HTTP/1.1 client for well-formed requests (with
//! keep-alive), and a raw TCP client that writes exactly the given bytes and
//! parses whatever comes back, for malformed requests.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::within;

const REQUEST_LIMIT: Duration = Duration::from_secs(30);

/// The body type of every request the kit sends.
pub type RequestBody = BoxBody<Bytes, std::io::Error>;

pub fn empty_body() -> RequestBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn full_body(data: impl Into<Bytes>) -> RequestBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A whole response, body collected.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 client connection to halb; requests on it reuse it.
pub struct HttpClient {
    sender: SendRequest<RequestBody>,
    host: String,
}

impl HttpClient {
    pub async fn connect(addr: SocketAddr) -> HttpClient {
        let stream = within(REQUEST_LIMIT, "connect to halb", TcpStream::connect(addr))
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 client handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        HttpClient {
            sender,
            host: addr.to_string(),
        }
    }

    /// A client on an already connected `stream` to `addr`; an error
    /// instead of a panic, for callers that count failures.
    pub async fn handshake(
        stream: TcpStream,
        addr: SocketAddr,
    ) -> Result<HttpClient, hyper::Error> {
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(HttpClient {
            sender,
            host: addr.to_string(),
        })
    }

    /// A request builder with this connection's `Host`.
    pub fn request(&self, method: &str, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
    }

    /// Sends a request and returns the response head; the body streams.
    pub async fn send(&mut self, request: Request<RequestBody>) -> Response<Incoming> {
        self.try_send(request)
            .await
            .unwrap_or_else(|e| panic!("request through halb failed: {e:?}"))
    }

    pub async fn try_send(
        &mut self,
        request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        within(REQUEST_LIMIT, "halb's response head", async {
            self.sender.ready().await?;
            self.sender.send_request(request).await
        })
        .await
    }

    /// Sends a request and collects the whole response.
    pub async fn exchange(&mut self, request: Request<RequestBody>) -> Reply {
        let response = self.send(request).await;
        collect(response).await
    }

    /// `GET path` with extra headers.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut builder = self.request("GET", path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.exchange(builder.body(empty_body()).expect("request"))
            .await
    }
}

/// Collects a response's body.
pub async fn collect(response: Response<Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = within(REQUEST_LIMIT, "halb's response body", body.collect())
        .await
        .expect("read response body")
        .to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

/// `GET path` on a new connection.
pub async fn get_once(addr: SocketAddr, path: &str) -> Reply {
    HttpClient::connect(addr).await.get(path, &[]).await
}

/// `GET path` on a new connection, with a failure (refused, reset, no
/// answer within 10 s) as an error rather than a panic.
pub async fn try_get_once(addr: SocketAddr, path: &str) -> Result<Reply, String> {
    let attempt = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut client = HttpClient::handshake(stream, addr)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let request = client
            .request("GET", path)
            .body(empty_body())
            .expect("request");
        let response = client
            .sender
            .send_request(request)
            .await
            .map_err(|e| format!("no response: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| Err("no answer within 10s".to_owned()))
}

/// Whether a TCP connection to `addr` is refused (nothing listens there).
pub async fn connection_refused(addr: SocketAddr) -> bool {
    match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    }
}

/// Polls until connections to `addr` are refused; how long that took.
/// Fails the test after `limit`.
pub async fn wait_until_refused(addr: SocketAddr, limit: Duration) -> Duration {
    let started = std::time::Instant::now();
    loop {
        if connection_refused(addr).await {
            return started.elapsed();
        }
        if started.elapsed() > limit {
            panic!("{addr} still accepts connections after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The bodies of `n` sequential `GET /`, each on a new connection (so the
/// kernel spreads them over all of halb's workers). Each must answer 200.
pub async fn answers_on_new_connections(addr: SocketAddr, n: usize) -> Vec<String> {
    let mut answers = Vec::with_capacity(n);
    for i in 0..n {
        let reply = get_once(addr, "/").await;
        assert_eq!(reply.status, 200, "request {i}: {}", reply.text());
        answers.push(reply.text());
    }
    answers
}

/// A response as read off the wire by [`read_response`].
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Names lower-cased, in wire order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Connects, writes `request` exactly as given (while already reading, in
/// case halb answers before it has read everything) and reads one response.
/// The write side stays open until the response is read: a half-closed
/// client could make halb abandon the request.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> std::io::Result<RawResponse> {
    let stream = TcpStream::connect(addr).await?;
    let (read_half, mut write_half) = stream.into_split();
    let (done, until_done) = tokio::sync::oneshot::channel::<()>();
    let request = request.to_vec();
    let writer = tokio::spawn(async move {
        // halb may answer and close before reading it all; that is allowed.
        let _ = write_half.write_all(&request).await;
        let _ = until_done.await;
    });
    let response = within(REQUEST_LIMIT, "halb's answer to a raw request", async {
        read_response(&mut BufReader::new(read_half)).await
    })
    .await;
    let _ = done.send(());
    let _ = writer.await;
    response
}

/// Reads one HTTP/1.1 response: the head, then a body delimited by
/// Content-Length, chunked encoding, or the connection's end.
pub async fn read_response(
    reader: &mut (impl AsyncBufRead + Unpin),
) -> std::io::Result<RawResponse> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let status_line = read_line(reader).await?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader).await?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut response = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(response);
    }
    if let Some(length) = response.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| invalid(format!("bad content-length {length:?}")))?;
        response.body.resize(length, 0);
        reader.read_exact(&mut response.body).await?;
    } else if response
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let size_line = read_line(reader).await?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| invalid(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                while !read_line(reader).await?.is_empty() {}
                break;
            }
            let start = response.body.len();
            response.body.resize(start + size, 0);
            reader.read_exact(&mut response.body[start..]).await?;
            read_line(reader).await?;
        }
    } else {
        reader.read_to_end(&mut response.body).await?;
    }
    Ok(response)
}

/// One CRLF-terminated line without its terminator; EOF is an error.
async fn read_line(reader: &mut (impl AsyncBufRead + Unpin)) -> std::io::Result<String> {
    let mut line = Vec::new();
    let n = reader.read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed before a full response",
        ));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}
