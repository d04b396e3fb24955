//! Webhook targets, made once when the [`crate::Alerter`] is built from
//! the URLs `[alerts] webhooks` validation parsed
//! ([`halb_config::WebhookUrl`]).

use halb_config::WebhookUrl;
use http::uri::PathAndQuery;
use http::HeaderValue;

/// One webhook target, ready for each delivery attempt.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    /// The URL without its query, for logs: a query often carries a token.
    name: String,
    /// `host:port` (IPv6 in brackets), as `tokio::net::lookup_host` takes it.
    authority: String,
    /// `host`, with `:port` unless it is 80.
    host_header: HeaderValue,
    path: PathAndQuery,
    /// `https://`: the host name (or address) the certificate must name.
    tls: Option<String>,
}

impl Webhook {
    /// Parses `http://host[:port][/path][?query]` as the config does: the
    /// port defaults to 80, the path to `/`.
    pub(crate) fn parse(url: &str) -> Result<Webhook, String> {
        let WebhookUrl {
            host,
            port,
            path,
            tls,
        } = WebhookUrl::parse(url)?;
        let bad = |why: &str| format!("webhook URL {url:?}: {why}");
        let authority = format!("{host}:{port}");
        let default_port = if tls { 443 } else { 80 };
        let server_name = tls.then(|| {
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned()
        });
        let host_header = if port == default_port {
            host
        } else {
            authority.clone()
        };
        let without_query = path.split('?').next().unwrap_or_default();
        let scheme = if tls { "https" } else { "http" };
        Ok(Webhook {
            tls: server_name,
            name: format!("{scheme}://{host_header}{without_query}"),
            host_header: HeaderValue::try_from(&host_header).map_err(|_| bad("bad host"))?,
            authority,
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

    /// The `Host` header.
    pub(crate) fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }

    /// For `https://`: the name the server's certificate must have.
    pub(crate) fn tls_name(&self) -> Option<&str> {
        self.tls.as_deref()
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
            parts("HTTP://127.0.0.1:9000/hooks/halb?team=ops"),
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
            Webhook::parse("http://h/x?token=1").unwrap().to_string(),
            "http://h/x"
        );
        assert_eq!(parts("http://h:80"), strings("h:80", "h", "/"));
        let secure = Webhook::parse("https://alerts.internal/x").unwrap();
        assert_eq!(secure.authority(), "alerts.internal:443");
        assert_eq!(secure.tls_name(), Some("alerts.internal"));
        assert_eq!(secure.to_string(), "https://alerts.internal/x");
    }

    #[test]
    fn refuses_what_the_config_refuses() {
        for url in [
            "ftp://alerts.internal/",
            "http://:80/",
            "http://u:p@host/",
            "http://host:0/",
            "http://[nope]:80/",
            "http://host/a b",
            "http://host/#frag",
        ] {
            assert_eq!(
                Webhook::parse(url).unwrap_err(),
                WebhookUrl::parse(url).unwrap_err(),
                "{url}"
            );
        }
    }
}
