//! Alert webhook URLs: `http[s]://host[:port][/path]`, checked at load time;
//! halb-alerts delivers to the same parse of each URL.

use std::net::{Ipv4Addr, Ipv6Addr};

const EXAMPLE: &str = "http://127.0.0.1:9000/alerts";
const MAX_HOST_NAME: usize = 253;
const MAX_LABEL: usize = 63;

/// Where a webhook POST goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WebhookUrl {
    /// As in a URL: a host name, an IPv4 address, or an IPv6 address in
    /// brackets, so that `format!("{host}:{port}")` is both a Host header
    /// and something `ToSocketAddrs` resolves.
    pub host: String,
    /// 80 when the URL has none.
    pub port: u16,
    /// The request target, starting with `/` (with the query, if any); `/`
    /// when the URL has none.
    pub path: String,
    /// `https://`: the POST goes over TLS, the server's certificate checked
    /// against the system CA bundle (`SSL_CERT_FILE` to name another).
    pub tls: bool,
}

impl WebhookUrl {
    /// Parse an `http://host[:port][/path]` URL for a client that speaks
    /// plain HTTP only (drill load and admin URLs, `halb register
    /// --check`): `https` is refused, saying so.
    pub fn parse_plain(url: &str) -> Result<WebhookUrl, String> {
        let parsed = WebhookUrl::parse(url)?;
        if parsed.tls {
            return Err(format!(
                "only http:// is supported here, got {url:?} (this client does not speak TLS)"
            ));
        }
        Ok(parsed)
    }

    /// Parse an `http://` or `https://host[:port][/path]` URL.
    pub fn parse(url: &str) -> Result<WebhookUrl, String> {
        let bad = |hint: &str| {
            format!(
                "expected an http://host:port/path URL such as {EXAMPLE:?}, got {url:?} ({hint})"
            )
        };

        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad("it must start with http:// or https://"));
        };
        let tls = scheme.eq_ignore_ascii_case("https");
        if !tls && !scheme.eq_ignore_ascii_case("http") {
            return Err(bad("only http:// and https:// are supported"));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it must not contain spaces or control characters"));
        }
        if !url.is_ascii() {
            return Err(bad("percent-encode non-ASCII characters"));
        }
        if url.contains('#') {
            return Err(bad("a #fragment is never sent to the server; remove it"));
        }

        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(bad("user names and passwords in the URL are not supported"));
        }
        let (host, port) = split_host_port(authority).map_err(bad)?;
        let port = match port {
            None if tls => 443,
            None => 80,
            Some("") => return Err(bad("the port after \":\" is missing")),
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port != 0 && text.bytes().all(|b| b.is_ascii_digit()) => port,
                _ => return Err(bad("the port must be a number from 1 to 65535")),
            },
        };
        if !target.bytes().all(is_target_byte) {
            return Err(bad(
                "percent-encode characters other than letters, digits and -._~!$&'()*+,;=:@/?%",
            ));
        }
        let path = if target.starts_with('/') {
            target.to_owned()
        } else {
            // Empty, or a query right after the host: `http://h?x=1`.
            format!("/{target}")
        };
        Ok(WebhookUrl {
            host,
            port,
            path,
            tls,
        })
    }
}

/// The normal form: `http[s]://host:port/path`, port and path always written.
impl std::fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.path)
    }
}

/// RFC 3986's characters for a path and query, which every HTTP stack accepts.
fn is_target_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` → the host as written in a URL
/// and the port text, if any. The error is a hint for the message.
fn split_host_port(authority: &str) -> Result<(String, Option<&str>), &'static str> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (ip, after) = bracketed
            .split_once(']')
            .ok_or("an IPv6 address must end with \"]\"")?;
        ip.parse::<Ipv6Addr>()
            .map_err(|_| "the address in brackets is not a valid IPv6 address")?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or("expected \":port\" after the IPv6 address")?,
            ),
        };
        return Ok((format!("[{ip}]"), port));
    }
    if authority.matches(':').count() > 1 {
        return Err("put an IPv6 address in brackets: http://[::1]:9000/");
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    check_host(host)?;
    Ok((host.to_owned(), port))
}

/// An IPv4 address or a DNS host name (letters, digits, `-` and `_` in
/// dot-separated labels).
fn check_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("the host is missing");
    }
    let numeric = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if numeric {
        return match host.parse::<Ipv4Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err("the host is not a valid IPv4 address"),
        };
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= MAX_LABEL
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if host.len() <= MAX_HOST_NAME && host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err("the host must be an IP address or a host name such as \"alerts.internal\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(host: &str, port: u16, path: &str) -> WebhookUrl {
        WebhookUrl {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            tls: false,
        }
    }

    #[test]
    fn accepts_names_and_addresses_with_defaults() {
        let parse = |s: &str| WebhookUrl::parse(s).unwrap();
        assert_eq!(parse("http://hooks"), url("hooks", 80, "/"));
        assert_eq!(
            parse("http://alerts.internal:8080/halb?team=sre"),
            url("alerts.internal", 8080, "/halb?team=sre")
        );
        assert_eq!(parse("HTTP://10.0.0.1/"), url("10.0.0.1", 80, "/"));
        assert_eq!(parse("http://[::1]:9000"), url("[::1]", 9000, "/"));
        assert_eq!(parse("http://h?x=1"), url("h", 80, "/?x=1"));
        assert_eq!(
            parse("http://my_hook:1/a").to_string(),
            "http://my_hook:1/a"
        );
        assert_eq!(parse("http://h").to_string(), "http://h:80/");
        let secure = parse("HTTPS://hooks.example/x");
        assert!(secure.tls);
        assert_eq!(secure.port, 443);
        assert_eq!(secure.to_string(), "https://hooks.example:443/x");
    }

    #[test]
    fn explains_what_is_wrong() {
        let hint = |s: &str| WebhookUrl::parse(s).unwrap_err();
        assert!(hint("hooks.internal/alerts").contains("must start with http://"));
        assert!(hint("ftp://h/").contains("only http:// and https://"));
        assert!(hint("http:///alerts").contains("host is missing"));
        assert!(hint("http://:80/").contains("host is missing"));
        assert!(hint("http://h:/").contains("port after \":\" is missing"));
        assert!(hint("http://h:0/").contains("from 1 to 65535"));
        assert!(hint("http://h:70000/").contains("from 1 to 65535"));
        assert!(hint("http://h:+80/").contains("from 1 to 65535"));
        assert!(hint("http://::1:80/").contains("brackets"));
        assert!(hint("http://[::1/").contains("must end with"));
        assert!(hint("http://[zz]:1/").contains("not a valid IPv6"));
        assert!(hint("http://[::1]x/").contains("\":port\""));
        assert!(hint("http://300.1.1.1/").contains("not a valid IPv4"));
        assert!(hint("http://-bad-.example/").contains("host name"));
        assert!(hint("http://a..b/").contains("host name"));
        assert!(hint("http://u:p@h/").contains("passwords"));
        assert!(hint("http://h/a b").contains("spaces"));
        assert!(hint("http://h/é").contains("non-ASCII"));
        assert!(hint("http://h/#x").contains("fragment"));
        assert!(hint("http://h/a<b>").contains("percent-encode"));
        assert!(hint("http://h/?q={x}").contains("percent-encode"));
    }
}
