//! Validation of a listener's connection keys (`proxy_protocol`,
//! `trusted_proxies`, `max_connections`, `body_timeout`,
//! `[listener.limits]`) and of `[pool] send_proxy`.

use super::checker::{duration, int_in, one_of, Checker};
use crate::raw::{Header, RawConnection, Slot};
use crate::{Cidr, ClientLimits, ConnectionPolicy, SendProxy};

/// The most connections one listener may be given (descriptors are the
/// real bound: see `max_connections` in docs/config.md).
const MAX_CONNECTIONS: i64 = 10_000_000;
const MAX_PER_IP: i64 = 1_000_000;

pub(super) fn policy(c: &mut Checker, at: &Header, raw: RawConnection) -> Option<ConnectionPolicy> {
    let proxy_protocol = c.optional(at, "proxy_protocol", raw.proxy_protocol, false, Ok);
    let trusted_proxies = match raw.trusted_proxies {
        Slot::Missing => Some(Vec::new()),
        Slot::Invalid => None,
        Slot::Set(list) => {
            let path = at.path_of("trusted_proxies");
            let mut valid = Some(Vec::new());
            for (i, slot) in list.value.into_iter().enumerate() {
                let Slot::Set(field) = slot else {
                    valid = None;
                    continue;
                };
                match c.check(format!("{path}[{i}]"), field, |s| Cidr::parse(&s)) {
                    Some(field) => {
                        if let Some(valid) = &mut valid {
                            valid.push(field.value);
                        }
                    }
                    None => valid = None,
                }
            }
            valid
        }
    };
    let max_connections = c.if_set(
        at,
        "max_connections",
        raw.max_connections,
        int_in(1, MAX_CONNECTIONS),
    );
    let body_timeout = match raw.body_timeout {
        Slot::Missing => Some(None),
        Slot::Invalid => None,
        Slot::Set(field) => c
            .check(at.path_of("body_timeout"), field, duration)
            .map(|f| Some(f.value)),
    };
    let limits = match raw.limits {
        Slot::Missing => Some(ClientLimits::default()),
        Slot::Invalid => None,
        Slot::Set(field) => {
            let raw = field.value;
            let at = &raw.at;
            let per_ip_connections = c.if_set(
                at,
                "per_ip_connections",
                raw.per_ip_connections,
                int_in(1, MAX_PER_IP),
            );
            let per_ip_rate = c.if_set(at, "per_ip_rate", raw.per_ip_rate, int_in(1, MAX_PER_IP));
            Some(ClientLimits {
                per_ip_connections: per_ip_connections?,
                per_ip_rate: per_ip_rate?,
            })
        }
    };
    Some(ConnectionPolicy {
        proxy_protocol: proxy_protocol?.value,
        trusted_proxies: trusted_proxies?,
        max_connections: max_connections?,
        body_timeout: body_timeout?,
        limits: limits?,
    })
}

/// `[pool] send_proxy`: `"v1"` or `"v2"`; absent: none.
pub(super) fn send_proxy(
    c: &mut Checker,
    at: &Header,
    raw: Slot<String>,
) -> Option<Option<SendProxy>> {
    c.if_set(
        at,
        "send_proxy",
        raw,
        one_of("send_proxy", &SendProxy::ALL, SendProxy::as_str),
    )
}

/// `send_proxy` on a pool an HTTP listener (or one of its routes) uses is
/// an error: HTTP backend connections are pooled and shared by clients, so
/// a header per connection could not name one.
pub(super) fn send_proxy_only_for_tcp(
    c: &mut Checker,
    listeners: &[crate::Listener],
    pools: &[crate::Pool],
) {
    for (i, pool) in pools.iter().enumerate() {
        if pool.send_proxy.is_none() {
            continue;
        }
        let user = listeners.iter().find(|listener| {
            listener.protocol == crate::Protocol::Http
                && (listener.pool == pool.name
                    || listener.routes.iter().any(|r| r.pool == pool.name))
        });
        if let Some(listener) = user {
            c.error(
                format!("pool[{i}].send_proxy"),
                None,
                format!(
                    "applies to pools of TCP listeners only, and HTTP listener {:?} uses pool {:?}; \
                     HTTP backends learn the client from X-Forwarded-For",
                    listener.name, pool.name
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{parse, SendProxy};

    const BASE: &str = "[[pool]]\nname = \"app\"\n[[pool.backend]]\naddress = \"127.0.0.1:1\"\n\
                        [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n";

    #[test]
    fn connection_keys_are_read() {
        let config = parse(&format!(
            "{BASE}proxy_protocol = true\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n\
             max_connections = 500\nbody_timeout = \"30s\"\n\
             [listener.limits]\nper_ip_connections = 10\nper_ip_rate = 50\n"
        ))
        .unwrap();
        let policy = &config.listeners[0].connection;
        assert!(policy.proxy_protocol);
        assert_eq!(policy.trusted_proxies.len(), 2);
        assert_eq!(policy.max_connections, Some(500));
        assert_eq!(
            policy.body_timeout,
            Some(std::time::Duration::from_secs(30))
        );
        assert_eq!(policy.limits.per_ip_connections, Some(10));
        assert_eq!(policy.limits.per_ip_rate, Some(50));

        let config = parse(BASE).unwrap();
        assert_eq!(config.listeners[0].connection, Default::default());
        assert_eq!(config.pools[0].send_proxy, None);
        let tcp = BASE.replace("pool = \"app\"\n", "pool = \"app\"\nprotocol = \"tcp\"\n");
        let config =
            parse(&tcp.replace("[[pool.backend]]", "send_proxy = \"v2\"\n[[pool.backend]]"))
                .unwrap();
        assert_eq!(config.pools[0].send_proxy, Some(SendProxy::V2));
    }

    #[test]
    fn bad_connection_keys_name_their_path() {
        let errors = parse(&format!(
            "{BASE}proxy_protocol = \"yes\"\ntrusted_proxies = [\"10.0.0.1/8\", \"x\"]\n\
             max_connections = 0\n[listener.limits]\nper_ip_rate = -1\nburst = 3\n"
        ))
        .unwrap_err()
        .0;
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for path in [
            "listener[0].proxy_protocol",
            "listener[0].trusted_proxies[0]",
            "listener[0].trusted_proxies[1]",
            "listener[0].max_connections",
            "listener[0].limits.per_ip_rate",
            "listener[0].limits.burst",
        ] {
            assert!(paths.contains(&path), "{path} not in {errors:?}");
        }
        let errors =
            parse(&BASE.replace("[[pool.backend]]", "send_proxy = \"v3\"\n[[pool.backend]]"))
                .unwrap_err()
                .0;
        assert_eq!(errors[0].path, "pool[0].send_proxy", "{errors:?}");
        let errors =
            parse(&BASE.replace("[[pool.backend]]", "send_proxy = \"v1\"\n[[pool.backend]]"))
                .unwrap_err()
                .0;
        assert_eq!(errors[0].path, "pool[0].send_proxy", "{errors:?}");
        assert!(
            errors[0].message.contains("TCP listeners only"),
            "{errors:?}"
        );
    }
}
