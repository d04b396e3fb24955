//! Validation of `[pool] tls` and `[pool.tls]`.

use super::checker::{file_path, is_dns_name, Checker};
use crate::raw::{RawPoolTls, Slot};
use crate::PoolTls;

/// The pool's backend TLS: `Some(None)` when plain, `None` when an error
/// was reported.
pub(super) fn pool_tls(c: &mut Checker, slot: Slot<RawPoolTls>) -> Option<Option<PoolTls>> {
    let raw = match slot {
        Slot::Missing => return Some(None),
        Slot::Invalid => return None,
        Slot::Set(field) => field.value,
    };
    match raw.switch {
        Some(false) => return Some(None),
        Some(true) => {
            return Some(Some(PoolTls {
                ca: None,
                sni: None,
                verify: true,
                client_cert: None,
            }))
        }
        None => {}
    }
    let at = &raw.at;
    let ca = c.optional(at, "ca", raw.ca.map(|s| Some(s.clone())), None, |s| {
        s.map(file_path).transpose()
    });
    let sni = c.optional(at, "sni", raw.sni.map(|s| Some(s.clone())), None, |s| {
        s.map(server_name).transpose()
    });
    let verify = c.optional(at, "verify", raw.verify, true, Ok);
    let cert = c.optional(at, "cert", raw.cert.map(|s| Some(s.clone())), None, |s| {
        s.map(file_path).transpose()
    });
    let key = c.optional(at, "key", raw.key.map(|s| Some(s.clone())), None, |s| {
        s.map(file_path).transpose()
    });
    let (cert, key) = (cert?, key?);
    let client_cert = match (cert.value, key.value) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (cert, _) => {
            let (missing, present) = if cert.is_some() {
                ("key", "cert")
            } else {
                ("cert", "key")
            };
            c.error(
                at.path_of(missing),
                at.line,
                format!("`{present}` (a client certificate) needs `{missing}` too"),
            );
            return None;
        }
    };
    Some(Some(PoolTls {
        ca: ca?.value,
        sni: sni?.value,
        verify: verify?.value,
        client_cert,
    }))
}

/// With no `sni`, a pool whose backends are all given by one host name
/// (`address = "app.internal:8443"`) sends and verifies that name: what
/// the certificate of a service reached by name carries. Otherwise none
/// (the certificate must name the backend's IP address).
pub(super) fn default_sni(
    tls: Option<PoolTls>,
    (by_address, by_name): &(Vec<crate::Backend>, Vec<crate::NamedBackend>),
) -> Option<PoolTls> {
    let mut tls = tls?;
    if tls.sni.is_none() && by_address.is_empty() {
        if let Some(first) = by_name.first() {
            if by_name.iter().all(|named| named.host == first.host) {
                tls.sni = Some(first.host.clone());
            }
        }
    }
    Some(tls)
}

/// `tls` on a pool that a TCP listener uses: refused (TCP listeners relay
/// bytes with `splice(2)`; TLS origination there is not supported).
pub(super) fn tls_only_for_http(
    c: &mut Checker,
    listeners: &[crate::Listener],
    pools: &[crate::Pool],
) {
    for (i, pool) in pools.iter().enumerate() {
        if pool.tls.is_none() {
            continue;
        }
        let user = listeners.iter().find(|listener| {
            listener.protocol == crate::Protocol::Tcp && listener.pool == pool.name
        });
        if let Some(listener) = user {
            c.error(
                format!("pool[{i}].tls"),
                None,
                format!(
                    "applies to pools of HTTP listeners only, and TCP listener {:?} uses pool {:?}; \
                     a TCP listener passes bytes through (let the client speak TLS to the backend)",
                    listener.name, pool.name
                ),
            );
        }
    }
}

/// A DNS name (stored lower-case) or an IP address, as rustls takes it.
fn server_name(name: String) -> Result<String, String> {
    let name = name.to_ascii_lowercase();
    if name.parse::<std::net::IpAddr>().is_ok() || is_dns_name(&name) {
        Ok(name)
    } else {
        Err(format!(
            "{name:?} is not a host name (like \"app.internal\") or an IP address"
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::PoolTls;

    const BASE: &str = "[[listener]]\nname = \"w\"\nbind = \"127.0.0.1:1\"\npool = \"p\"\n\
                        [[pool]]\nname = \"p\"\n[[pool.backend]]\naddress = \"127.0.0.1:2\"\n";

    fn pool_with(extra: &str) -> String {
        BASE.replace(
            "name = \"p\"\n[[pool.backend]]",
            &format!("name = \"p\"\n{extra}\n[[pool.backend]]"),
        )
    }

    #[test]
    fn tls_true_takes_the_defaults_and_a_table_its_keys() {
        let config = crate::parse(&pool_with("tls = true")).unwrap();
        assert_eq!(
            config.pools[0].tls,
            Some(PoolTls {
                ca: None,
                sni: None,
                verify: true,
                client_cert: None
            })
        );
        let config = crate::parse(&pool_with("tls = false")).unwrap();
        assert_eq!(config.pools[0].tls, None);
        let config = crate::parse(&pool_with(
            "[pool.tls]\nca = \"/ca.pem\"\nsni = \"App.Internal\"\nverify = false\n\
             cert = \"/c.pem\"\nkey = \"/c.key\"",
        ))
        .unwrap();
        let tls = config.pools[0].tls.clone().unwrap();
        assert_eq!(tls.ca, Some("/ca.pem".into()));
        assert_eq!(tls.sni.as_deref(), Some("app.internal"));
        assert!(!tls.verify);
        assert!(tls.client_cert.is_some());
    }

    #[test]
    fn backends_given_by_one_host_name_default_the_sni_to_it() {
        let named = pool_with("tls = true").replace("127.0.0.1:2", "App.Internal:8443");
        let config = crate::parse(&named).unwrap();
        let tls = config.pools[0].tls.clone().unwrap();
        assert_eq!(tls.sni.as_deref(), Some("app.internal"));
        let config = crate::parse(&pool_with("tls = true")).unwrap();
        assert_eq!(config.pools[0].tls.clone().unwrap().sni, None);
    }

    #[test]
    fn bad_keys_are_named() {
        let errors = crate::parse(&pool_with(
            "[pool.tls]\nsni = \"a b\"\ncert = \"/c.pem\"\ncolour = 1",
        ))
        .unwrap_err()
        .to_string();
        assert!(errors.contains("pool[0].tls.sni"), "{errors}");
        assert!(errors.contains("pool[0].tls.key"), "{errors}");
        assert!(errors.contains("pool[0].tls.colour"), "{errors}");
        let tcp =
            pool_with("tls = true").replace("pool = \"p\"\n", "pool = \"p\"\nprotocol = \"tcp\"\n");
        let errors = crate::parse(&tcp).unwrap_err().to_string();
        assert!(errors.contains("pool[0].tls"), "{errors}");
        assert!(errors.contains("HTTP listeners only"), "{errors}");
    }
}
