//! The PROXY protocol (HAProxy's spec, versions 1 and 2): a balancer in
//! front of halb says, in a header before any other byte, who the client
//! really is. halb reads it right after accept, before anything else, and
//! from then on logs, balances on and forwards that address. halb can also
//! send the header to backends ([`encode`]).
//!
//! The header is read without reading past it: the bytes after it belong
//! to the HTTP or TCP layer that takes the socket next.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use halb_config::SendProxy;
use tokio::net::TcpStream;

/// The version 2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 header, its CRLF included (the spec's bound).
const V1_MAX: usize = 107;
/// The longest version 2 address block halb takes (addresses and TLVs):
/// what front balancers send (addresses, SSL and VPC TLVs) is far less.
const V2_MAX_BLOCK: usize = 4096;

/// What a PROXY header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProxyHeader {
    /// The client's address and port; `None` for a v1 `UNKNOWN` or a v2
    /// `LOCAL` command (the front balancer's own connection, a health
    /// check) or an address family halb does not use (UNIX): the socket's
    /// peer address stands.
    pub source: Option<SocketAddr>,
}

/// Why a connection's PROXY header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeaderError {
    #[error("no PROXY protocol header (the connection starts with something else)")]
    Missing,
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
    #[error("the client closed before its PROXY header was complete")]
    Truncated,
    #[error("no complete PROXY header within {0:?}")]
    TimedOut(Duration),
    #[error("reading the PROXY header: {0}")]
    Io(std::io::ErrorKind),
}

/// What [`parse`] makes of the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A whole header of `len` bytes.
    Complete { header: ProxyHeader, len: usize },
    /// A header may be under way: more bytes are needed.
    Incomplete,
}

/// Parse a PROXY header (v1 or v2) at the start of `buf`.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let v1_prefix = b"PROXY ";
    if buf.len() >= 6 && buf[..6] == *v1_prefix {
        return parse_v1(buf);
    }
    if buf.len() >= 12 && buf[..12] == V2_SIGNATURE {
        return parse_v2(buf);
    }
    let seen = buf.len().min(12);
    if v1_prefix.starts_with(&buf[..seen.min(6)]) || V2_SIGNATURE.starts_with(&buf[..seen]) {
        return Ok(Parsed::Incomplete);
    }
    Err(HeaderError::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|pair| pair == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(HeaderError::Malformed("v1 header longer than 107 bytes"));
        }
        return Ok(Parsed::Incomplete);
    };
    let line = std::str::from_utf8(&buf[6..end])
        .map_err(|_| HeaderError::Malformed("v1 header is not text"))?;
    let len = end + 2;
    let mut words = line.split(' ');
    let family = words.next().unwrap_or("");
    if family == "UNKNOWN" {
        // The rest of the line, whatever it is, is to be ignored.
        return Ok(Parsed::Complete {
            header: ProxyHeader { source: None },
            len,
        });
    }
    let v6 = match family {
        "TCP4" => false,
        "TCP6" => true,
        _ => {
            return Err(HeaderError::Malformed(
                "v1 protocol is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let fields: Vec<&str> = words.collect();
    let [source, destination, source_port, destination_port] = fields[..] else {
        return Err(HeaderError::Malformed(
            "v1 header needs 2 addresses and 2 ports",
        ));
    };
    let ip = |text: &str| -> Result<IpAddr, HeaderError> {
        let ip: IpAddr = if v6 {
            IpAddr::V6(
                text.parse()
                    .map_err(|_| HeaderError::Malformed("bad TCP6 address"))?,
            )
        } else {
            IpAddr::V4(
                text.parse()
                    .map_err(|_| HeaderError::Malformed("bad TCP4 address"))?,
            )
        };
        Ok(ip)
    };
    let port = |text: &str| -> Result<u16, HeaderError> {
        // Digits only, no sign or leading zero (the spec's form).
        if text.is_empty() || (text.len() > 1 && text.starts_with('0')) {
            return Err(HeaderError::Malformed("bad v1 port"));
        }
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HeaderError::Malformed("bad v1 port"));
        }
        text.parse()
            .map_err(|_| HeaderError::Malformed("bad v1 port"))
    };
    let source = SocketAddr::new(ip(source)?, port(source_port)?);
    ip(destination)?;
    port(destination_port)?;
    Ok(Parsed::Complete {
        header: ProxyHeader {
            source: Some(source),
        },
        len,
    })
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, HeaderError> {
    if buf.len() < 16 {
        return Ok(Parsed::Incomplete);
    }
    let version_command = buf[12];
    if version_command >> 4 != 2 {
        return Err(HeaderError::Malformed("v2 version is not 2"));
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => {
            return Err(HeaderError::Malformed(
                "v2 command is neither LOCAL nor PROXY",
            ))
        }
    };
    let family = buf[13];
    let block = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if block > V2_MAX_BLOCK {
        return Err(HeaderError::Malformed("v2 header longer than 4096 bytes"));
    }
    let len = 16 + block;
    if buf.len() < len {
        return Ok(Parsed::Incomplete);
    }
    let addresses = &buf[16..len];
    // TLVs after the addresses carry nothing halb uses: skipped.
    let source = match family >> 4 {
        _ if local => None,
        0x1 => {
            if addresses.len() < 12 {
                return Err(HeaderError::Malformed("v2 IPv4 address block too short"));
            }
            let ip = Ipv4Addr::new(addresses[0], addresses[1], addresses[2], addresses[3]);
            let port = u16::from_be_bytes([addresses[8], addresses[9]]);
            Some(SocketAddr::new(IpAddr::V4(ip), port))
        }
        0x2 => {
            if addresses.len() < 36 {
                return Err(HeaderError::Malformed("v2 IPv6 address block too short"));
            }
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&addresses[..16]);
            let port = u16::from_be_bytes([addresses[32], addresses[33]]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        // UNSPEC or UNIX: no address halb could use.
        0x0 | 0x3 => None,
        _ => return Err(HeaderError::Malformed("v2 address family unknown")),
    };
    Ok(Parsed::Complete {
        header: ProxyHeader { source },
        len,
    })
}

/// Read a PROXY header from `stream` within `timeout`, consuming exactly
/// its bytes: it peeks, and reads only what belongs to the header.
pub(crate) async fn read(
    stream: &TcpStream,
    timeout: Duration,
) -> Result<ProxyHeader, HeaderError> {
    match tokio::time::timeout(timeout, read_header(stream)).await {
        Ok(result) => result,
        Err(_) => Err(HeaderError::TimedOut(timeout)),
    }
}

async fn read_header(stream: &TcpStream) -> Result<ProxyHeader, HeaderError> {
    // Bytes of a header that came in pieces, already taken off the socket.
    let mut taken: Vec<u8> = Vec::new();
    let mut peeked = vec![0u8; 16 + V2_MAX_BLOCK];
    let io = |e: std::io::Error| HeaderError::Io(e.kind());
    loop {
        let room = peeked.len() - taken.len();
        let n = stream.peek(&mut peeked[..room]).await.map_err(io)?;
        if n == 0 {
            return Err(if taken.is_empty() {
                HeaderError::Missing
            } else {
                HeaderError::Truncated
            });
        }
        let mut seen = taken.clone();
        seen.extend_from_slice(&peeked[..n]);
        match parse(&seen)? {
            Parsed::Complete { header, len } => {
                take(stream, len - taken.len(), &mut peeked)
                    .await
                    .map_err(io)?;
                return Ok(header);
            }
            Parsed::Incomplete => {
                // Take what came, so that the next peek waits for more
                // instead of seeing the same bytes again.
                take(stream, n, &mut peeked).await.map_err(io)?;
                taken.extend_from_slice(&peeked[..n]);
            }
        }
    }
}

/// Read exactly `n` bytes (already peeked) off `stream` into `buf`.
async fn take(stream: &TcpStream, n: usize, buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < n {
        stream.readable().await?;
        match stream.try_read(&mut buf[filled..n]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(read) => filled += read,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The PROXY header that tells a backend about a connection from `source`
/// to `destination` (halb's own address as the client reached it).
pub(crate) fn encode(version: SendProxy, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    // Mixed families (an IPv4 client on an IPv6 listener) map to IPv6.
    let (source, destination) = match (source, destination) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => {
            (source, destination)
        }
        _ => (to_v6(source), to_v6(destination)),
    };
    match version {
        SendProxy::V1 => {
            let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                source.ip(),
                destination.ip(),
                source.port(),
                destination.port()
            )
            .into_bytes()
        }
        SendProxy::V2 => {
            let mut out = Vec::with_capacity(52);
            out.extend_from_slice(&V2_SIGNATURE);
            out.push(0x21); // version 2, PROXY
            match (source, destination) {
                (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                    out.push(0x11); // INET, STREAM
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&s.ip().octets());
                    out.extend_from_slice(&d.ip().octets());
                }
                (s, d) => {
                    out.push(0x21); // INET6, STREAM
                    out.extend_from_slice(&36u16.to_be_bytes());
                    for ip in [s.ip(), d.ip()] {
                        if let IpAddr::V6(ip) = ip {
                            out.extend_from_slice(&ip.octets());
                        }
                    }
                }
            }
            out.extend_from_slice(&source.port().to_be_bytes());
            out.extend_from_slice(&destination.port().to_be_bytes());
            out
        }
    }
}

fn to_v6(address: SocketAddr) -> SocketAddr {
    match address {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        v6 => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> (Option<SocketAddr>, usize) {
        match parse(buf) {
            Ok(Parsed::Complete { header, len }) => (header.source, len),
            other => panic!("{other:?} for {buf:?}"),
        }
    }

    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(block.len() as u16).to_be_bytes());
        out.extend_from_slice(block);
        out
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
        let (source, len) = complete(line);
        assert_eq!(source, Some("192.0.2.7:56324".parse().unwrap()));
        assert_eq!(&line[len..], b"GET / HTTP/1.1\r\n");

        let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 80\r\n";
        let (source, len) = complete(line);
        assert_eq!(source, Some("[2001:db8::1]:4000".parse().unwrap()));
        assert_eq!(len, line.len());

        assert_eq!(complete(b"PROXY UNKNOWN\r\n"), (None, 15));
        assert_eq!(
            complete(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nx"),
            (None, 35)
        );
    }

    #[test]
    fn v1_malformed_lines_are_refused() {
        for line in [
            &b"PROXY TCP5 1.2.3.4 1.2.3.5 1 2\r\n"[..],
            b"PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2 3\r\n",
            b"PROXY TCP4 1.2.3.999 1.2.3.5 1 2\r\n",
            b"PROXY TCP4 2001:db8::1 1.2.3.5 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 1.2.3.5 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.5 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.5 -1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.5 01 2\r\n",
            b"PROXY TCP4  1.2.3.4 1.2.3.5 1 2\r\n",
        ] {
            assert!(
                matches!(parse(line), Err(HeaderError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 120]].concat();
        assert!(matches!(parse(&long), Err(HeaderError::Malformed(_))));
    }

    #[test]
    fn v2_proxy_and_local_with_tlvs_skipped() {
        let mut block = vec![192, 0, 2, 7, 198, 51, 100, 1];
        block.extend_from_slice(&56324u16.to_be_bytes());
        block.extend_from_slice(&443u16.to_be_bytes());
        // A TLV (PP2_TYPE_AUTHORITY) and a NOOP: skipped.
        block.extend_from_slice(&[0x02, 0x00, 0x03, b'a', b'.', b'b', 0x04, 0x00, 0x00]);
        let mut header = v2(1, 0x11, &block);
        let full = header.len();
        header.extend_from_slice(b"GET /");
        assert_eq!(
            complete(&header),
            (Some("192.0.2.7:56324".parse().unwrap()), full)
        );

        let mut block = Vec::new();
        block.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        block.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        block.extend_from_slice(&[0x0f, 0xa0, 0x00, 0x50]);
        let header = v2(1, 0x21, &block);
        assert_eq!(
            complete(&header),
            (Some("[2001:db8::1]:4000".parse().unwrap()), 52)
        );

        // LOCAL: the front balancer's own connection; addresses ignored.
        assert_eq!(complete(&v2(0, 0x00, &[])), (None, 16));
        assert_eq!(complete(&v2(0, 0x11, &[0; 12])), (None, 28));
        // UNIX sockets: no address halb can use.
        assert_eq!(complete(&v2(1, 0x31, &[0; 216])), (None, 232));
    }

    #[test]
    fn v2_malformed_headers_are_refused() {
        let mut bad_version = v2(1, 0x11, &[0; 12]);
        bad_version[12] = 0x11;
        let mut bad_command = v2(1, 0x11, &[0; 12]);
        bad_command[12] = 0x22;
        let mut too_long = v2(1, 0x11, &[0; 12]);
        too_long[14..16].copy_from_slice(&5000u16.to_be_bytes());
        for header in [
            bad_version,
            bad_command,
            too_long,
            v2(1, 0x11, &[0; 8]),
            v2(1, 0x21, &[0; 20]),
            v2(1, 0x41, &[0; 12]),
        ] {
            assert!(
                matches!(parse(&header), Err(HeaderError::Malformed(_))),
                "{header:?}"
            );
        }
    }

    #[test]
    fn truncated_headers_ask_for_more() {
        let v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n";
        let v2 = v2(1, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
        for whole in [&v1[..], &v2[..]] {
            for cut in 1..whole.len() {
                assert_eq!(parse(&whole[..cut]), Ok(Parsed::Incomplete), "cut at {cut}");
            }
            assert!(matches!(parse(whole), Ok(Parsed::Complete { .. })));
        }
    }

    #[test]
    fn anything_else_is_missing_a_header() {
        for start in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXX",
            b"\x16\x03\x01\x02\x00",
            b"\r\n\r\n\0\r\nQUIX",
            b"proxy TCP4",
        ] {
            assert_eq!(parse(start), Err(HeaderError::Missing), "{start:?}");
        }
    }

    #[test]
    fn encoded_headers_parse_back() {
        let cases: [(&str, &str); 3] = [
            ("192.0.2.7:56324", "198.51.100.1:443"),
            ("[2001:db8::1]:4000", "[2001:db8::2]:80"),
            ("192.0.2.7:56324", "[2001:db8::2]:80"),
        ];
        for (source, destination) in cases {
            let (source, destination) = (source.parse().unwrap(), destination.parse().unwrap());
            for version in [SendProxy::V1, SendProxy::V2] {
                let bytes = encode(version, source, destination);
                let (parsed, len) = complete(&bytes);
                assert_eq!(len, bytes.len());
                let expected = match (source, destination) {
                    (SocketAddr::V4(_), SocketAddr::V6(_)) => to_v6(source),
                    _ => source,
                };
                assert_eq!(parsed, Some(expected), "{version:?}");
            }
        }
    }

    #[tokio::test]
    async fn read_takes_the_header_and_leaves_the_rest() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        // In pieces, as a slow front balancer might send it.
        client.write_all(b"PROXY TCP4 10.1.2.3 ").await.unwrap();
        let reading = tokio::spawn(async move {
            let header = read(&server, Duration::from_secs(5)).await;
            let mut rest = [0u8; 4];
            take(&server, 4, &mut rest).await.unwrap();
            (header, rest)
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        client.write_all(b"10.0.0.1 4242 80\r\nGET ").await.unwrap();
        let (header, rest) = reading.await.unwrap();
        assert_eq!(
            header.unwrap().source,
            Some("10.1.2.3:4242".parse().unwrap())
        );
        assert_eq!(&rest, b"GET ");

        let mut silent = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        silent.write_all(b"PROXY TCP4").await.unwrap();
        let timed_out = read(&server, Duration::from_millis(50)).await;
        assert!(matches!(timed_out, Err(HeaderError::TimedOut(_))));
    }
}
