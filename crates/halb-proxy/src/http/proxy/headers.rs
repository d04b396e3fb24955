//! Header rules at the proxy boundary: hop-by-hop headers stop here (RFC
//! 9110 §7.6.1), and the backend learns who the client was.

use std::net::IpAddr;

use bytes::{BufMut, Bytes};
use http::Method;

use crate::http::codec::fields::{put_field, Fields, Known};

/// The forwarding header values for one client, made once per connection
/// (and only when it sends a request) so a request costs no formatting:
/// the `Forwarded` element halb appends (RFC 7239), whose `for=` holds the
/// address as `X-Forwarded-For` gives it.
/// `https`: the client came over TLS, and `proto=` says so.
#[derive(Debug, Clone)]
pub(crate) struct ClientAddress(Box<str>, Trust, bool);

/// Whether the client's own forwarding headers are passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trust {
    /// A trusted proxy (`trusted_proxies`): its `X-Forwarded-For` and
    /// `Forwarded` are kept, and halb's element appended.
    Proxy,
    /// Anyone else: what it claims is dropped; the headers name it alone.
    Client,
}

impl ClientAddress {
    /// The forwarding values for `ip`, which `trusted_proxies` trusts or
    /// not; `https`: it came over TLS.
    pub(crate) fn of(ip: IpAddr, trusted: &[halb_config::Cidr], https: bool) -> Self {
        let trust = if trusted.iter().any(|block| block.contains(ip)) {
            Trust::Proxy
        } else {
            Trust::Client
        };
        ClientAddress::new(ip, trust, https)
    }

    pub(crate) fn new(ip: IpAddr, trust: Trust, https: bool) -> Self {
        let proto = if https { ";proto=https" } else { ";proto=http" };
        let text = match ip {
            IpAddr::V4(ip) => {
                // By hand: the formatting machinery costs more than the
                // rest of a connection's setup.
                let mut text = String::with_capacity(36);
                text.push_str("for=");
                for (i, octet) in ip.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push('.');
                    }
                    if octet >= 100 {
                        text.push(char::from(b'0' + octet / 100));
                    }
                    if octet >= 10 {
                        text.push(char::from(b'0' + octet / 10 % 10));
                    }
                    text.push(char::from(b'0' + octet % 10));
                }
                text.push_str(proto);
                text
            }
            IpAddr::V6(ip) => format!("for=\"[{ip}]\"{proto}"),
        };
        ClientAddress(text.into_boxed_str(), trust, https)
    }

    /// `X-Forwarded-For`'s element: the address alone.
    fn ip(&self) -> &str {
        let v4_tail = ";proto=http".len() + usize::from(self.2);
        let v6_tail = v4_tail + "]\"".len();
        match self.0.as_bytes().get(4) {
            Some(b'"') => &self.0[6..self.0.len() - v6_tail],
            _ => &self.0[4..self.0.len() - v4_tail],
        }
    }

    /// `Forwarded`'s element.
    fn forwarded(&self) -> &str {
        &self.0
    }

    /// `X-Forwarded-Proto`'s value.
    fn proto(&self) -> &'static [u8] {
        if self.2 {
            b"https"
        } else {
            b"http"
        }
    }
}

/// The request head as sent to a backend, encoded once (a retry resends
/// the same bytes): always HTTP/1.1 with the origin-form `target`; the
/// client's headers in order but for the hop-by-hop ones (`Upgrade` is
/// kept and `Connection: upgrade` restated for a real upgrade); then what
/// tells the backend who the client is: `X-Forwarded-For` (appended to what
/// a trusted proxy sent, else the client's address alone),
/// `X-Forwarded-Proto` (replacing the client's) and `Forwarded` (after a
/// trusted proxy's, RFC 7239; an untrusted client's is dropped); and
/// `Transfer-Encoding: chunked` when the body is re-framed that way.
pub(crate) fn encode_request(
    method: &Method,
    target: &[u8],
    host: Option<&[u8]>,
    fields: &Fields,
    client: &ClientAddress,
    upgrade: bool,
    chunked: bool,
) -> Bytes {
    let room = method.as_str().len()
        + target.len()
        + host.map_or(0, <[u8]>::len)
        + fields.encoded_len()
        + 168;
    crate::http::arena::carve(room, |dst| {
        dst.put_slice(method.as_str().as_bytes());
        dst.put_u8(b' ');
        dst.put_slice(target);
        dst.put_slice(b" HTTP/1.1\r\n");
        if let Some(host) = host {
            // An absolute-form target's host replaces the Host header.
            put_field(dst, b"host", host);
        }
        let mut prior_xff = false;
        let trusted = client.1 == Trust::Proxy;
        for (name, value, known) in fields.iter() {
            match known {
                Known::Host if host.is_some() => {}
                Known::XForwardedFor => prior_xff = trusted,
                Known::Forwarded if !trusted => {}
                Known::XForwardedProto => {}
                Known::Upgrade if upgrade => put_field(dst, name, value),
                known if known.is_hop_by_hop() => {}
                _ => put_field(dst, name, value),
            }
        }
        dst.put_slice(b"x-forwarded-for: ");
        if prior_xff {
            for value in fields.values(Known::XForwardedFor) {
                dst.put_slice(value);
                dst.put_slice(b", ");
            }
        }
        dst.put_slice(client.ip().as_bytes());
        dst.put_slice(b"\r\nx-forwarded-proto: ");
        dst.put_slice(client.proto());
        dst.put_slice(b"\r\nforwarded: ");
        dst.put_slice(client.forwarded().as_bytes());
        dst.put_slice(b"\r\n");
        if upgrade {
            dst.put_slice(b"connection: upgrade\r\n");
        }
        if chunked {
            dst.put_slice(b"transfer-encoding: chunked\r\n");
        }
        dst.put_slice(b"\r\n");
    })
    .freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::codec::fields::has_token;

    /// What the server side finds when it parses a request head.
    fn is_upgrade_request(fields: &Fields) -> bool {
        fields.contains(Known::Upgrade)
            && fields
                .values(Known::Connection)
                .any(|value| has_token(value, b"upgrade"))
    }

    /// The head a backend gets for a GET with these headers, from
    /// 127.0.0.1 as a trusted proxy.
    fn forwarded(pairs: &[(&str, &str)]) -> String {
        forwarded_from(pairs, Trust::Proxy)
    }

    fn forwarded_from(pairs: &[(&str, &str)], trust: Trust) -> String {
        let mut fields = Fields::from_pairs(pairs);
        let upgrade = is_upgrade_request(&fields);
        fields.drop_connection_named();
        let client = ClientAddress::new("127.0.0.1".parse().unwrap(), trust, false);
        let head = encode_request(&Method::GET, b"/x", None, &fields, &client, upgrade, false);
        String::from_utf8(head.to_vec()).unwrap()
    }

    const ADDED: &str =
        "x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\nforwarded: for=127.0.0.1;proto=http\r\n";

    #[test]
    fn strips_hop_by_hop_and_the_headers_connection_names() {
        let head = forwarded(&[
            ("Connection", "keep-alive, x-secret"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("X-Other", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("upgrade", "websocket"),
            ("Host", "a"),
            ("x-kept", "3"),
        ]);
        assert_eq!(
            head,
            format!("GET /x HTTP/1.1\r\nHost: a\r\nx-kept: 3\r\n{ADDED}\r\n")
        );
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
            "connection",
        ] {
            let head = forwarded(&[(name, "x"), ("x-kept", "1")]);
            assert_eq!(
                head,
                format!("GET /x HTTP/1.1\r\nx-kept: 1\r\n{ADDED}\r\n"),
                "{name}"
            );
        }
    }

    #[test]
    fn connection_cannot_remove_host_or_forwarding_headers() {
        let head = forwarded(&[
            ("connection", "host, x-forwarded-for, content-length"),
            ("host", "a"),
            ("x-forwarded-for", "1.2.3.4"),
            ("content-length", "0"),
        ]);
        assert_eq!(
            head,
            "GET /x HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\
             x-forwarded-for: 1.2.3.4, 127.0.0.1\r\nx-forwarded-proto: http\r\n\
             forwarded: for=127.0.0.1;proto=http\r\n\r\n"
        );
    }

    #[test]
    fn upgrade_is_kept_for_a_real_upgrade() {
        let head = forwarded(&[("Connection", "Upgrade"), ("Upgrade", "websocket")]);
        assert_eq!(
            head,
            format!("GET /x HTTP/1.1\r\nUpgrade: websocket\r\n{ADDED}connection: upgrade\r\n\r\n")
        );
        assert!(!is_upgrade_request(&Fields::from_pairs(&[(
            "upgrade",
            "websocket"
        )])));
    }

    #[test]
    fn forwarding_headers_append_to_what_the_client_sent() {
        let head = forwarded(&[
            ("X-Forwarded-For", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
            ("forwarded", "for=10.0.0.1"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            head,
            "GET /x HTTP/1.1\r\nforwarded: for=10.0.0.1\r\n\
             x-forwarded-for: 10.0.0.1, 10.0.0.2, 127.0.0.1\r\nx-forwarded-proto: http\r\n\
             forwarded: for=127.0.0.1;proto=http\r\n\r\n"
        );
        for ip in ["0.0.0.0", "10.20.3.255", "192.168.100.9", "255.255.255.255"] {
            let client = ClientAddress::new(ip.parse().unwrap(), Trust::Client, false);
            assert_eq!(client.ip(), ip);
            assert_eq!(client.forwarded(), format!("for={ip};proto=http"));
        }
        let client = ClientAddress::new("::1".parse().unwrap(), Trust::Client, false);
        assert_eq!(client.ip(), "::1");
        let head = encode_request(
            &Method::PUT,
            b"/",
            None,
            &Fields::default(),
            &client,
            false,
            true,
        );
        assert_eq!(
            head,
            &b"PUT / HTTP/1.1\r\nx-forwarded-for: ::1\r\nx-forwarded-proto: http\r\n\
               forwarded: for=\"[::1]\";proto=http\r\ntransfer-encoding: chunked\r\n\r\n"[..]
        );
    }

    #[test]
    fn an_untrusted_client_cannot_forge_its_forwarding_headers() {
        let pairs = [
            ("X-Forwarded-For", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-kept", "1"),
        ];
        assert_eq!(
            forwarded_from(&pairs, Trust::Client),
            format!("GET /x HTTP/1.1\r\nx-kept: 1\r\n{ADDED}\r\n")
        );
        let trusted = ["10.0.0.0/8".parse_cidr(), "::1".parse_cidr()];
        let of = |ip: &str| ClientAddress::of(ip.parse().unwrap(), &trusted, false).1;
        assert_eq!(of("10.1.2.3"), Trust::Proxy);
        assert_eq!(of("::1"), Trust::Proxy);
        assert_eq!(of("192.0.2.1"), Trust::Client);
        assert_eq!(
            ClientAddress::of("10.1.2.3".parse().unwrap(), &[], false).1,
            Trust::Client
        );
    }

    trait ParseCidr {
        fn parse_cidr(self) -> halb_config::Cidr;
    }

    impl ParseCidr for &str {
        fn parse_cidr(self) -> halb_config::Cidr {
            halb_config::Cidr::parse(self).unwrap()
        }
    }

    #[test]
    fn a_client_over_tls_is_said_to_come_over_https() {
        for ip in ["10.1.2.3", "::1"] {
            let client = ClientAddress::new(ip.parse().unwrap(), Trust::Client, true);
            assert_eq!(client.ip(), ip);
            assert!(client.forwarded().ends_with(";proto=https"), "{ip}");
            let head = encode_request(
                &Method::GET,
                b"/",
                None,
                &Fields::from_pairs(&[("x-forwarded-proto", "http")]),
                &client,
                false,
                false,
            );
            let head = std::str::from_utf8(&head).unwrap().to_owned();
            assert!(head.contains("\r\nx-forwarded-proto: https\r\n"), "{head}");
            assert!(!head.contains("x-forwarded-proto: http\r\n"), "{head}");
        }
    }
}
