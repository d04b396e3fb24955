//! halb-load: the benchmark's load generator for large bodies.
//!
//! wrk reads a response 8 KiB at a time, so each 1 MiB body costs it 128
//! reads. With the load generator and the backends sharing one core, that
//! core, not the proxy under test, then sets the ceiling. This client does
//! what the benchmark asks of wrk (N keep-alive connections, one path, a
//! fixed duration, latency percentiles) but reads 256 KiB at a time, and
//! prints its totals as the same one-line JSON report as `wrk_report.lua`.
//!
//! It also speaks TLS (`https://` URLs, rustls), for the benchmark's TLS
//! cases: with `--close` every request is a new handshake, resumed from a
//! session ticket unless `--no-resume` asks for full handshakes; the report
//! then counts the handshakes and how many resumed.
//!
//! usage: halb-load -c CONNECTIONS -d SECONDS [--timeout SECONDS] [--close] [--no-resume] URL

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod tls;

/// How much one read may take from the socket.
const READ_CHUNK: usize = 256 * 1024;
/// A response head longer than this is an error.
const HEAD_LIMIT: usize = 64 * 1024;

const USAGE: &str =
    "usage: halb-load -c CONNECTIONS -d SECONDS [--timeout SECONDS] [--close] [--no-resume] http[s]://HOST:PORT/PATH";

#[derive(Debug)]
struct Args {
    addr: SocketAddr,
    host: String,
    path: String,
    connections: usize,
    duration: Duration,
    timeout: Duration,
    close: bool,
    tls: bool,
    resume: bool,
}

fn seconds(flag: &str, value: Option<String>) -> Result<Duration, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a number of seconds"))?;
    let s: f64 = value
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{flag}: {value:?} is not a number of seconds"))?;
    if !(s > 0.0 && s.is_finite()) {
        return Err(format!("{flag}: {value:?} must be above zero"));
    }
    Ok(Duration::from_secs_f64(s))
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut connections = None;
    let mut duration = None;
    let mut timeout = Duration::from_secs(10);
    let mut close = false;
    let mut resume = true;
    let mut url = None;
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "-c" => {
                let value = argv.next().ok_or("-c needs a number of connections")?;
                let n: usize = value
                    .parse()
                    .map_err(|_| format!("-c: {value:?} is not a number of connections"))?;
                if n == 0 {
                    return Err("-c: at least one connection".into());
                }
                connections = Some(n);
            }
            "-d" => duration = Some(seconds("-d", argv.next())?),
            "--timeout" => timeout = seconds("--timeout", argv.next())?,
            "--close" => close = true,
            "--no-resume" => resume = false,
            "-h" | "--help" => return Err(USAGE.into()),
            other if other.starts_with('-') => return Err(format!("unknown option {other:?}")),
            other if url.is_none() => url = Some(other.to_string()),
            other => return Err(format!("one URL only; {other:?} is a second one")),
        }
    }
    let url = url.ok_or("no URL given")?;
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err(format!("{url:?}: only http:// and https:// URLs")),
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = host
        .parse()
        .map_err(|_| format!("{url:?}: the host must be an IP address and port"))?;
    Ok(Args {
        addr,
        host: host.to_string(),
        path: path.to_string(),
        connections: connections.ok_or("-c is required")?,
        duration: duration.ok_or("-d is required")?,
        timeout,
        close,
        tls,
        resume,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Connect,
    Read,
    Write,
    Status,
    Timeout,
}

#[derive(Default)]
struct Tally {
    requests: u64,
    bytes: u64,
    connect: u64,
    read: u64,
    write: u64,
    status: u64,
    timeouts: u64,
    handshakes: u64,
    resumed: u64,
    latencies_us: Vec<u32>,
}

impl Tally {
    fn failed(&mut self, failure: Failure) {
        *match failure {
            Failure::Connect => &mut self.connect,
            Failure::Read => &mut self.read,
            Failure::Write => &mut self.write,
            Failure::Status => &mut self.status,
            Failure::Timeout => &mut self.timeouts,
        } += 1;
    }

    fn add(&mut self, other: Tally) {
        self.requests += other.requests;
        self.bytes += other.bytes;
        self.connect += other.connect;
        self.read += other.read;
        self.write += other.write;
        self.status += other.status;
        self.timeouts += other.timeouts;
        self.handshakes += other.handshakes;
        self.resumed += other.resumed;
        self.latencies_us.extend(other.latencies_us);
    }
}

/// What a response head says that matters here.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    len: usize,
    status: u16,
    body: u64,
    keep_alive: bool,
}

/// Reads a response head at the start of `buf`: `Ok(None)` while it is
/// incomplete. Only Content-Length framing is understood (the backends
/// serve static files), so a chunked response is an error.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Failure> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| Failure::Read)?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(Failure::Read)?;
    let mut keep_alive = version == "HTTP/1.1";
    let mut body = None;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(Failure::Read)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            body = Some(value.parse().map_err(|_| Failure::Read)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Failure::Read);
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        }
    }
    let body = match body {
        Some(n) => n,
        None if status == 204 || status == 304 || status < 200 => 0,
        None => return Err(Failure::Read),
    };
    Ok(Some(Head {
        len: end + 4,
        status,
        body,
        keep_alive,
    }))
}

/// A connection to the server, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tls::TlsStream>),
}

impl Conn {
    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(data).await,
            Conn::Tls(s) => s.write_all(data).await,
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
        }
    }
}

/// One request and its whole response: the bytes read and whether the
/// connection may carry another request.
async fn exchange(
    stream: &mut Conn,
    request: &[u8],
    buf: &mut [u8],
) -> Result<(u64, u16, bool), Failure> {
    stream
        .write_all(request)
        .await
        .map_err(|_| Failure::Write)?;
    let mut filled = 0;
    let head = loop {
        let n = stream
            .read(&mut buf[filled..HEAD_LIMIT])
            .await
            .map_err(|_| Failure::Read)?;
        if n == 0 {
            return Err(Failure::Read);
        }
        filled += n;
        if let Some(head) = parse_head(&buf[..filled])? {
            break head;
        }
        if filled == HEAD_LIMIT {
            return Err(Failure::Read);
        }
    };
    let mut seen = (filled - head.len) as u64;
    while seen < head.body {
        let n = stream.read(buf).await.map_err(|_| Failure::Read)?;
        if n == 0 {
            return Err(Failure::Read);
        }
        seen += n as u64;
    }
    // Nothing is pipelined, so bytes past the body are a framing error.
    if seen != head.body {
        return Err(Failure::Read);
    }
    Ok((head.len as u64 + head.body, head.status, head.keep_alive))
}

async fn connect(
    addr: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Conn, Failure> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|_| Failure::Connect)?;
    stream.set_nodelay(true).map_err(|_| Failure::Connect)?;
    Ok(match tls {
        None => Conn::Plain(stream),
        Some(config) => Conn::Tls(Box::new(
            tls::TlsStream::connect(stream, addr, config.clone())
                .await
                .map_err(|_| Failure::Connect)?,
        )),
    })
}

/// One connection's loop until the deadline. A response that is still
/// coming at the deadline is neither counted nor an error, as in wrk.
async fn drive(
    args: Arc<Args>,
    request: Arc<[u8]>,
    tls: Option<Arc<rustls::ClientConfig>>,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut stream = None;
    while Instant::now() < deadline {
        let start = Instant::now();
        let limit = (start + args.timeout).min(deadline);
        let mut fresh = false;
        let attempt = async {
            if stream.is_none() {
                stream = Some(connect(args.addr, tls.as_ref()).await?);
                fresh = true;
            }
            let conn = stream.as_mut().expect("connected above");
            exchange(conn, &request, &mut buf).await
        };
        let outcome = tokio::time::timeout_at(limit.into(), attempt).await;
        let now = Instant::now();
        match outcome {
            Ok(Ok((bytes, status, keep_alive))) => {
                tally.requests += 1;
                tally.bytes += bytes;
                let us = now.duration_since(start).as_micros();
                tally.latencies_us.push(us.min(u32::MAX as u128) as u32);
                if let (true, Some(Conn::Tls(conn))) = (fresh, &stream) {
                    tally.handshakes += 1;
                    tally.resumed += u64::from(conn.resumed());
                }
                if !(200..400).contains(&status) {
                    tally.failed(Failure::Status);
                }
                if !keep_alive || args.close {
                    stream = None;
                }
            }
            Ok(Err(failure)) => {
                tally.failed(failure);
                stream = None;
                if failure == Failure::Connect {
                    // Do not spin on a refused connection.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Err(_) if now >= deadline => break,
            Err(_) => {
                tally.failed(Failure::Timeout);
                stream = None;
            }
        }
    }
    tally
}

/// The `p`th percentile of sorted latencies, nearest rank.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(total: &mut Tally, elapsed: Duration) -> String {
    total.latencies_us.sort_unstable();
    let l = &total.latencies_us;
    format!(
        "WRKJSON {{\"requests\":{},\"bytes\":{},\"duration_us\":{},\
         \"connect_errors\":{},\"read_errors\":{},\"write_errors\":{},\
         \"status_errors\":{},\"timeouts\":{},\
         \"handshakes\":{},\"resumed\":{},\
         \"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"max_us\":{}}}",
        total.requests,
        total.bytes,
        elapsed.as_micros(),
        total.connect,
        total.read,
        total.write,
        total.status,
        total.timeouts,
        total.handshakes,
        total.resumed,
        percentile(l, 50.0),
        percentile(l, 90.0),
        percentile(l, 99.0),
        l.last().copied().unwrap_or(0),
    )
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => Arc::new(args),
        Err(e) => {
            eprintln!("halb-load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let request: Arc<[u8]> = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n{}\r\n",
        args.path,
        args.host,
        if args.close {
            "Connection: close\r\n"
        } else {
            ""
        }
    )
    .into_bytes()
    .into();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("halb-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut total, elapsed) = runtime.block_on(async {
        let start = Instant::now();
        let deadline = start + args.duration;
        let tasks: Vec<_> = (0..args.connections)
            .map(|_| {
                // A session store per connection, as N real clients would
                // have: one shared store keeps 8 tickets per server, too few
                // for 64 connections that reconnect at once.
                let tls = args.tls.then(|| tls::client_config(args.resume));
                tokio::spawn(drive(args.clone(), request.clone(), tls, deadline))
            })
            .collect();
        let mut total = Tally::default();
        for task in tasks {
            if let Ok(tally) = task.await {
                total.add(tally);
            }
        }
        (total, start.elapsed())
    });
    println!("{}", report(&mut total, elapsed));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_gives_status_length_and_keep_alive() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello";
        assert_eq!(
            parse_head(head),
            Ok(Some(Head {
                len: head.len() - 5,
                status: 200,
                body: 5,
                keep_alive: true
            }))
        );
        let close = b"HTTP/1.1 503 x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let h = parse_head(close).unwrap().unwrap();
        assert_eq!((h.status, h.body, h.keep_alive), (503, 0, false));
    }

    #[test]
    fn an_incomplete_head_waits_and_a_bad_one_fails() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le"), Ok(None));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(chunked), Err(Failure::Read));
        let unframed = b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n";
        assert_eq!(parse_head(unframed), Err(Failure::Read));
        assert_eq!(parse_head(b"garbage\r\n\r\n"), Err(Failure::Read));
    }

    #[test]
    fn arguments_are_checked() {
        let args = |s: &str| parse_args(s.split(' ').map(String::from));
        let a = args("-c 64 -d 3 --close http://127.0.0.1:8080/1m").unwrap();
        assert_eq!((a.connections, a.path.as_str(), a.close), (64, "/1m", true));
        assert_eq!(a.duration, Duration::from_secs(3));
        assert!(args("-c 0 -d 3 http://127.0.0.1:1/")
            .unwrap_err()
            .contains("-c"));
        let t = args("-c 1 -d 3 --close --no-resume https://127.0.0.1:1/").unwrap();
        assert!(t.tls && !t.resume && t.close);
        assert!(args("-c 1 -d 3 ftp://127.0.0.1:1/")
            .unwrap_err()
            .contains("https://"));
        assert!(args("-c 1 http://127.0.0.1:1/").unwrap_err().contains("-d"));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), 50);
        assert_eq!(percentile(&sorted, 99.0), 99);
        assert_eq!(percentile(&[], 99.0), 0);
    }
}
