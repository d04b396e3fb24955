//! Webhook targets: `http://host[:port][/path][?query]`, parsed once when
//! the [`crate::Alerter`] is built, so a bad URL is reported up front
//! rather than on every delivery. Anything `[alerts] webhooks` validation
//! accepts parses here too.

use http::uri::PathAndQuery;
use http::HeaderValue;

/// One webhook target, ready for each delivery attempt.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    /// The URL without its query, for logs: a query often carries a token.
    name: String,
    /// `host:port` (IPv6 in brackets), as `tokio::net::lookup_host` takes it.
    authority: String,
    /// The URL's authority as written.
    host_header: HeaderValue,
    path: PathAndQuery,
}

impl Webhook {
    /// Parses `http://host[:port][/path][?query]`: the port defaults to 80,
    /// the path to `/`, and a `#fragment` (never sent) is ignored.
    pub(crate) fn parse(url: &str) -> Result<Webhook, String> {
        let bad = |why: &str| format!("webhook URL {url:?}: {why}");
        let rest = strip_prefix_ignore_case(url, "http://")
            .ok_or_else(|| bad("must start with http:// (https is not supported)"))?;
        let rest = rest.split('#').next().unwrap_or_default();
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(bad("user names and passwords are not supported"));
        }
        let (host, port) = split_host_port(authority).map_err(bad)?;
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        let without_query = path.split('?').next().unwrap_or_default();
        Ok(Webhook {
            name: format!("http://{authority}{without_query}"),
            authority: format!("{host}:{port}"),
            host_header: HeaderValue::try_from(authority).map_err(|_| bad("bad host"))?,
            path: PathAndQuery::try_from(path).map_err(|_| bad("bad path"))?,
        })
    }

    /// The URL without its query, for logs.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// `host:port`, as `tokio::net::lookup_host` takes it.
    pub(crate) fn authority(&self) -> &str {
        &self.authority
    }

    /// The `Host` header: the URL's authority as written.
    pub(crate) fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }

    /// The request target: path and query.
    pub(crate) fn path(&self) -> &str {
        self.path.as_str()
    }
}

impl std::fmt::Display for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` → (host, with brackets for
/// IPv6, and port).
fn split_host_port(authority: &str) -> Result<(&str, u16), &'static str> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or("an IPv6 address must end with ']'")?;
        let (host, after) = authority.split_at(end + 1);
        if host[1..end].parse::<std::net::Ipv6Addr>().is_err() {
            return Err("the address in brackets is not IPv6");
        }
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or("expected ':port' after ']'")?,
                ),
            ),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing");
    }
    let port = match port {
        None => 80,
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => return Err("the port must be a number from 1 to 65535"),
        },
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (String, String, String) {
        let hook = Webhook::parse(url).unwrap();
        (
            hook.authority().to_owned(),
            hook.host_header().to_str().unwrap().to_owned(),
            hook.path().to_owned(),
        )
    }

    fn strings(authority: &str, host_header: &str, path: &str) -> (String, String, String) {
        (authority.into(), host_header.into(), path.into())
    }

    #[test]
    fn parses_hosts_ports_and_paths() {
        assert_eq!(
            parts("http://alerts.internal"),
            strings("alerts.internal:80", "alerts.internal", "/")
        );
        assert_eq!(
            parts("HTTP://127.0.0.1:9000/hooks/halb?team=ops#frag"),
            strings("127.0.0.1:9000", "127.0.0.1:9000", "/hooks/halb?team=ops")
        );
        assert_eq!(
            parts("http://[::1]:8080/a"),
            strings("[::1]:8080", "[::1]:8080", "/a")
        );
        assert_eq!(parts("http://[::1]"), strings("[::1]:80", "[::1]", "/"));
        assert_eq!(
            parts("http://my_hook?x=1"),
            strings("my_hook:80", "my_hook", "/?x=1")
        );
        assert_eq!(
            Webhook::parse("http://h/x").unwrap().to_string(),
            "http://h/x"
        );
    }

    #[test]
    fn refuses_what_it_cannot_deliver_to() {
        let refused = |url: &str| Webhook::parse(url).unwrap_err();
        assert!(refused("https://alerts.internal/").contains("https is not supported"));
        assert!(refused("alerts.internal/").contains("must start with http://"));
        assert!(refused("http:///path").contains("host is missing"));
        assert!(refused("http://:80/").contains("host is missing"));
        assert!(refused("http://u:p@host/").contains("passwords"));
        for port in ["0", "99999", "x", ""] {
            assert!(refused(&format!("http://host:{port}/")).contains("1 to 65535"));
        }
        assert!(refused("http://[::1/").contains("must end with"));
        assert!(refused("http://[nope]:80/").contains("not IPv6"));
        assert!(refused("http://[::1]x/").contains("expected ':port'"));
        assert!(refused("http://host/a b").contains("bad path"));
    }
}
