//! Header rules at the proxy boundary: hop-by-hop headers stop here (RFC
//! 9110 §7.6.1), and the backend learns who the client was.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers a `Connection` header may not remove: they carry the message's
/// framing or identity, or what halb itself adds.
fn is_protected(name: &HeaderName) -> bool {
    name == header::HOST
        || name == header::CONTENT_LENGTH
        || name == X_FORWARDED_FOR
        || name == X_FORWARDED_PROTO
        || name == FORWARDED
}

/// The headers [`strip_hop_by_hop`] always removes (`Upgrade` but for a
/// real upgrade), and `Expect`, which halb answers itself.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::EXPECT
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

/// Whether the request asks to switch protocols (e.g. WebSocket).
pub(crate) fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has_token(headers, "upgrade")
}

fn connection_has_token(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|value| {
        value
            .to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

/// Remove hop-by-hop headers: `Connection` and the headers it names,
/// Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding (halb
/// frames each message itself), Upgrade, and Expect (halb answered it).
/// For a real upgrade, `Upgrade` is kept and `Connection: upgrade`
/// restated.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none of them: one pass over the names finds out,
    // cheaper than a hashed removal of each.
    if !headers.keys().any(is_hop_by_hop) {
        if upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|value| value.to_str().unwrap_or("").split(','))
            .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
            .filter(|name| !is_protected(name) && (!upgrade || name != header::UPGRADE))
            .collect();
        for name in named {
            headers.remove(name);
        }
        headers.remove(header::CONNECTION);
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TE);
    headers.remove(header::TRAILER);
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::EXPECT);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// The forwarding header values for one client, made once per connection
/// so a request that brings no `X-Forwarded-For` of its own costs no
/// formatting or allocation.
#[derive(Debug, Clone)]
pub(crate) struct ClientAddress {
    ip: IpAddr,
    /// `X-Forwarded-For` when the client sent none: its address.
    xff: HeaderValue,
    /// The `Forwarded` element halb appends (RFC 7239).
    forwarded: HeaderValue,
}

impl ClientAddress {
    pub(crate) fn new(ip: IpAddr) -> Self {
        let forwarded = match ip {
            IpAddr::V4(ip) => format!("for={ip};proto=http"),
            IpAddr::V6(ip) => format!("for=\"[{ip}]\";proto=http"),
        };
        ClientAddress {
            ip,
            xff: HeaderValue::try_from(ip.to_string()).expect("an IP address is a header value"),
            forwarded: HeaderValue::try_from(forwarded).expect("ASCII is a header value"),
        }
    }
}

/// Tell the backend who the client is: `X-Forwarded-For` (appended to what
/// the client sent), `X-Forwarded-Proto` and `Forwarded` (RFC 7239).
pub(crate) fn add_forwarding(headers: &mut HeaderMap, client: &ClientAddress) {
    if headers.contains_key(&X_FORWARDED_FOR) {
        let mut xff = String::with_capacity(48);
        for value in headers.get_all(&X_FORWARDED_FOR) {
            if let Ok(value) = value.to_str() {
                xff.push_str(value);
                xff.push_str(", ");
            }
        }
        let _ = write!(xff, "{}", client.ip);
        if let Ok(value) = HeaderValue::try_from(xff) {
            headers.insert(X_FORWARDED_FOR.clone(), value);
        }
    } else {
        headers.insert(X_FORWARDED_FOR.clone(), client.xff.clone());
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    headers.append(FORWARDED.clone(), client.forwarded.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn strips_hop_by_hop_and_the_headers_connection_names() {
        let mut headers = map(&[
            ("connection", "keep-alive, x-secret"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("upgrade", "websocket"),
            ("x-kept", "3"),
        ]);
        strip_hop_by_hop(&mut headers, false);
        let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed_and_others_kept() {
        for name in [
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "expect",
            "keep-alive",
            "proxy-connection",
        ] {
            let mut headers = map(&[(name, "x"), ("x-kept", "1")]);
            strip_hop_by_hop(&mut headers, false);
            let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
            assert_eq!(names, ["x-kept"], "{name}");
        }
        let mut plain = map(&[("host", "a"), ("x-kept", "1")]);
        strip_hop_by_hop(&mut plain, false);
        assert_eq!(plain.len(), 2);
        strip_hop_by_hop(&mut plain, true);
        assert_eq!(plain["connection"], "upgrade");
    }

    #[test]
    fn connection_cannot_remove_host_or_forwarding_headers() {
        let mut headers = map(&[
            ("connection", "host, x-forwarded-for, content-length"),
            ("host", "a"),
            ("x-forwarded-for", "1.2.3.4"),
            ("content-length", "0"),
        ]);
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(headers.len(), 3);
    }

    #[test]
    fn upgrade_is_kept_for_a_real_upgrade() {
        let mut headers = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade_request(&headers));
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(headers["upgrade"], "websocket");
        assert_eq!(headers["connection"], "upgrade");
    }

    #[test]
    fn forwarding_headers_append_to_what_the_client_sent() {
        let mut headers = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1"),
        ]);
        add_forwarding(
            &mut headers,
            &ClientAddress::new("127.0.0.1".parse().unwrap()),
        );
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
        let forwarded: Vec<_> = headers.get_all("forwarded").iter().collect();
        assert_eq!(forwarded, ["for=10.0.0.1", "for=127.0.0.1;proto=http"]);
        let mut v6 = HeaderMap::new();
        add_forwarding(&mut v6, &ClientAddress::new("::1".parse().unwrap()));
        assert_eq!(v6["forwarded"], "for=\"[::1]\";proto=http");
    }
}
