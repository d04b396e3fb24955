//! `[cluster]` and `[cluster.etcd]`: who this node is in the fleet, where it
//! keeps the last shared config it applied, and the etcd cluster the shared
//! config, the dynamic backends and the node registry live in.

use std::path::PathBuf;

use crate::webhook::WebhookUrl;

/// The default of `cluster.state_dir`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/halb";
/// The default of `cluster.etcd.prefix`.
pub const DEFAULT_ETCD_PREFIX: &str = "/halb";
/// etcd's client port, when an endpoint names none.
pub const DEFAULT_ETCD_PORT: u16 = 2379;

/// `[cluster]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// `node`: this node's unique name; `None` = the host name (resolved
    /// when the node starts).
    pub node: Option<String>,
    /// `state_dir`: where the last-known-good shared config is kept across
    /// restarts.
    pub state_dir: PathBuf,
    /// `[cluster.etcd]`; `None` when absent: the config comes from the file.
    pub etcd: Option<Etcd>,
    /// `[cluster.peers]`; `None`: no state is shared with other nodes.
    pub peers: Option<Peers>,
}

/// The shortest `[cluster.peers] secret` accepted: it authenticates the
/// peer links and signs sticky cookies.
pub const MIN_PEER_SECRET: usize = 16;

/// `[cluster.peers]`: links to the other nodes of an active-active fleet,
/// which share sticky entries, operator actions and health verdicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers {
    /// `bind`: where this node listens for its peers.
    pub bind: std::net::SocketAddr,
    /// `peers`: the other nodes' `bind` addresses, `host:port`.
    pub peers: Vec<String>,
    /// `secret`: shared by every node; a peer without it is refused.
    pub secret: String,
}

/// `[cluster.etcd]`: listeners, pools and alerts come from
/// `<prefix>/config`, dynamic backends from `<prefix>/pools/…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Etcd {
    /// `endpoints`: members of one etcd cluster, tried in turn.
    pub endpoints: Vec<EtcdEndpoint>,
    /// `prefix`: starts with `/`, no trailing `/`.
    pub prefix: String,
}

/// One etcd member's client URL, `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EtcdEndpoint {
    /// As in a URL (IPv6 in brackets), so `"{host}:{port}"` resolves.
    pub host: String,
    pub port: u16,
}

impl EtcdEndpoint {
    /// Parse `http://host[:port]` (port 2379 when none). Only plain HTTP:
    /// an `https` URL gets an error saying TLS is not supported yet.
    pub fn parse(url: &str) -> Result<EtcdEndpoint, String> {
        let parsed = WebhookUrl::parse(url).map_err(|e| {
            e.replace(
                "http://host:port/path URL such as \"http://127.0.0.1:9000/alerts\"",
                "etcd client URL such as \"http://127.0.0.1:2379\"",
            )
        })?;
        if parsed.tls {
            return Err(format!(
                "TLS to etcd (https) is not supported yet, got {url:?}; use an http:// URL \
                 (etcd on loopback or a private network)"
            ));
        }
        if parsed.path != "/" {
            return Err(format!(
                "expected an etcd client URL such as \"http://127.0.0.1:2379\", got {url:?} \
                 (remove the path {:?})",
                parsed.path
            ));
        }
        let authority = url
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'))
            .unwrap_or_default();
        let has_port = match authority.rsplit_once(']') {
            Some((_, after)) => after.starts_with(':'),
            None => authority.contains(':'),
        };
        Ok(EtcdEndpoint {
            host: parsed.host,
            port: if has_port {
                parsed.port
            } else {
                DEFAULT_ETCD_PORT
            },
        })
    }

    /// `host:port`, for connecting and for the Host header.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// `http://host:port`
impl std::fmt::Display for EtcdEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}:{}", self.host, self.port)
    }
}

/// Check a key prefix: `/name[/name…]`, no trailing `/`, characters that
/// need no escaping in a key or a log line.
pub fn check_etcd_prefix(prefix: &str) -> Result<(), String> {
    let example = "such as \"/halb\" or \"/prod/halb\"";
    if !prefix.starts_with('/') {
        return Err(format!("must start with \"/\" ({example}), got {prefix:?}"));
    }
    if prefix.len() > 1 && prefix.ends_with('/') {
        return Err(format!(
            "must not end with \"/\" ({example}), got {prefix:?}"
        ));
    }
    let segments_ok = prefix[1..].split('/').all(|segment| {
        !segment.is_empty()
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    });
    if prefix == "/" || !segments_ok {
        return Err(format!(
            "expected /-separated names of letters, digits, '-', '_' and '.' ({example}), got {prefix:?}"
        ));
    }
    Ok(())
}

/// Check a node name: it is a key segment (`<prefix>/nodes/<node>`).
pub fn check_node_name(node: &str) -> Result<(), String> {
    let ok = !node.is_empty()
        && node.len() <= 253
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected a name of letters, digits, '-', '_' and '.' (such as \"lb1\"), got {node:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_default_to_the_client_port() {
        let parse = |s: &str| EtcdEndpoint::parse(s).map(|e| e.to_string());
        assert_eq!(parse("http://10.0.0.1"), Ok("http://10.0.0.1:2379".into()));
        assert_eq!(parse("http://etcd1:80/"), Ok("http://etcd1:80".into()));
        assert_eq!(parse("http://[::1]"), Ok("http://[::1]:2379".into()));
        assert_eq!(parse("http://[::1]:12379"), Ok("http://[::1]:12379".into()));
        assert!(parse("https://h").unwrap_err().contains("TLS"));
        assert!(parse("http://h:2379/v3")
            .unwrap_err()
            .contains("remove the path"));
        assert!(parse("h:2379").unwrap_err().contains("etcd client URL"));
    }

    #[test]
    fn prefixes_and_node_names() {
        assert!(check_etcd_prefix("/halb").is_ok());
        assert!(check_etcd_prefix("/prod/halb-1").is_ok());
        for bad in ["halb", "/", "/halb/", "//halb", "/ha lb"] {
            assert!(check_etcd_prefix(bad).is_err(), "{bad}");
        }
        assert!(check_node_name("lb-1.dc2").is_ok());
        assert!(check_node_name("lb/1").is_err());
        assert!(check_node_name("").is_err());
    }
}
