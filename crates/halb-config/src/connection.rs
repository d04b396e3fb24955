//! A listener's connection-level policy: the PROXY protocol, whose
//! `X-Forwarded-For` to trust, connection caps and per-client limits; and
//! the PROXY header a pool sends to its backends.

use std::net::IpAddr;
use std::time::Duration;

/// The settings of `[[listener]]` that govern its client connections.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionPolicy {
    /// `proxy_protocol`: every connection starts with a PROXY v1 or v2
    /// header (from a front balancer); one without it is refused. The
    /// header must come within the listener's `request_head_timeout`.
    pub proxy_protocol: bool,
    /// `trusted_proxies`: peers whose `X-Forwarded-For` halb appends to;
    /// from any other peer the header is replaced by the peer's address.
    pub trusted_proxies: Vec<Cidr>,
    /// `max_connections`: open client connections at most; at the limit
    /// the listener stops accepting (new connections wait in the kernel's
    /// backlog). `None`: derived from the process's file-descriptor limit.
    pub max_connections: Option<usize>,
    /// `body_timeout`: a request body must arrive within it, from its
    /// first byte to its last (slow-body clients are cut off); `None`: no
    /// bound beyond `idle_timeout` between two reads.
    pub body_timeout: Option<Duration>,
    /// `[listener.limits]`: per-client-address limits.
    pub limits: ClientLimits,
}

/// `[listener.limits]`: per client address (after the PROXY header, if
/// any). Off by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientLimits {
    /// `per_ip_connections`: open connections from one address at most; the
    /// next is answered 429 (HTTP) or closed (TCP).
    pub per_ip_connections: Option<u32>,
    /// `per_ip_rate`: requests (HTTP) or connections (TCP) per second from
    /// one address, with a burst of the same size; beyond it 429 or close.
    pub per_ip_rate: Option<u32>,
}

/// An address block such as `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Parse `ip/len` or a bare address (a block of one address).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let expected = || format!("expected an address block such as \"10.0.0.0/8\", got {text:?}");
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = ip.trim().parse().map_err(|_| expected())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{} (the prefix length is 0 to {max})", expected()))?,
        };
        let cidr = Cidr { network, prefix };
        if cidr.masked(network) != network {
            return Err(format!(
                "{text:?} has bits set past its /{prefix} prefix (write {}/{prefix})",
                cidr.masked(network)
            ));
        }
        Ok(cidr)
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }

    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.network.is_ipv4() && self.masked(ip) == self.network
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// `[pool] send_proxy`: the PROXY header halb writes first on each
/// backend connection, naming the client (TCP pools).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendProxy {
    V1,
    V2,
}

impl SendProxy {
    /// Every version, as the docs list them.
    pub const ALL: [SendProxy; 2] = [SendProxy::V1, SendProxy::V2];

    /// The name used in the config file.
    pub const fn as_str(self) -> &'static str {
        match self {
            SendProxy::V1 => "v1",
            SendProxy::V2 => "v2",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_parse_and_match() {
        let block = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(block.contains("10.200.1.2".parse().unwrap()));
        assert!(block.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!block.contains("11.0.0.1".parse().unwrap()));
        assert!(!block.contains("::1".parse().unwrap()));
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert_eq!(one.prefix, 32);
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        for bad in [
            "10.0.0.0/33",
            "10.0.0.1/8",
            "ten/8",
            "",
            "::/129",
            "1.2.3.4/x",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert!(Cidr::parse("10.0.0.1/8")
            .unwrap_err()
            .contains("10.0.0.0/8"));
    }
}
