//! Validation of `[[pool]]`: its own keys, the Maglev hash key, the retry
//! budget and the backends. Health checks and outlier detection are in
//! `health`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::checker::{at_line, duration, int_in, ip_socket_addr, non_empty, one_of, Checker};
use super::health::{health_check, outlier_detection};
use crate::raw::{RawBackend, RawPool, RawRetryBudget, Slot};
use crate::{
    Algorithm, Backend, HashKey, HealthCheck, NamedBackend, OutlierDetection, Pool, RetryBudget,
    DEFAULT_DRAIN_TIMEOUT, DEFAULT_PANIC_THRESHOLD,
};

const MAX_RETRIES: i64 = 10;
const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_RETRIES_PER_SECOND: i64 = 100_000;
const MAX_WEIGHT: i64 = crate::MAX_BACKEND_WEIGHT as i64;
const DEFAULT_WEIGHT: u32 = 1;

/// The names of the pools in the file, for reference checks. Taken from the
/// raw pools so that a mistake elsewhere in a pool does not also make every
/// listener naming it look dangling.
pub(super) fn defined_names(pools: &[RawPool]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for pool in pools {
        if let Slot::Set(name) = &pool.name {
            if !name.value.is_empty() && !names.contains(&name.value) {
                names.push(name.value.clone());
            }
        }
    }
    names
}

pub(super) fn pools(c: &mut Checker, raw: Vec<RawPool>) -> Option<Vec<Pool>> {
    let mut seen_names: HashMap<String, (String, Option<usize>)> = HashMap::new();
    let checked: Vec<Option<Pool>> = raw
        .into_iter()
        .map(|raw| pool(c, raw, &mut seen_names))
        .collect();
    checked.into_iter().collect()
}

fn pool(
    c: &mut Checker,
    raw: RawPool,
    seen_names: &mut HashMap<String, (String, Option<usize>)>,
) -> Option<Pool> {
    let at = &raw.at;

    let name = c.required(at, "name", raw.name, non_empty);
    if let Some(name) = &name {
        let path = at.path_of("name");
        if let Some((first_path, first_line)) = seen_names.get(&name.value) {
            let message = format!(
                "duplicate pool name {:?}; already used by {first_path}{}",
                name.value,
                at_line(*first_line)
            );
            c.error(path, name.line, message);
        } else {
            seen_names.insert(name.value.clone(), (path, name.line));
        }
    }

    let algorithm = c.optional(
        at,
        "algorithm",
        raw.algorithm,
        Algorithm::RoundRobin,
        one_of("algorithm", &Algorithm::ALL, Algorithm::as_str),
    );
    let hash_key = c.optional(at, "hash_key", raw.hash_key, HashKey::ClientIp, hash_key);
    // Spelling out the default (`client_ip`, as the DESIGN.md example does)
    // changes nothing, so only another key on a non-Maglev pool is a mistake.
    if let (Some(algorithm), Some(hash_key)) = (&algorithm, &hash_key) {
        if algorithm.value != Algorithm::Maglev && hash_key.value != HashKey::ClientIp {
            let message = format!(
                "hash_key is only used by algorithm = \"maglev\"; this pool uses \"{}\" \
                 (remove hash_key or set algorithm = \"maglev\")",
                algorithm.value.as_str()
            );
            c.error(at.path_of("hash_key"), hash_key.line, message);
        }
    }

    let retries = c.optional(
        at,
        "retries",
        raw.retries,
        DEFAULT_RETRIES,
        int_in(0, MAX_RETRIES),
    );
    let connect_timeout = c.optional(
        at,
        "connect_timeout",
        raw.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
        duration,
    );
    let timeout = c.optional(at, "timeout", raw.timeout, DEFAULT_TIMEOUT, duration);
    let drain_timeout = c.optional(
        at,
        "drain_timeout",
        raw.drain_timeout,
        DEFAULT_DRAIN_TIMEOUT,
        duration,
    );
    let slow_start = c.optional(at, "slow_start", raw.slow_start, None, |s| {
        duration(s).map(Some)
    });
    let panic_threshold = c.optional(
        at,
        "panic_threshold",
        raw.panic_threshold,
        DEFAULT_PANIC_THRESHOLD,
        int_in(0, 100),
    );

    let overflow = super::levels::overflow(c, at, raw.overflow);

    let health_check = match raw.health_check {
        Slot::Missing => Some(HealthCheck::default()),
        Slot::Invalid => None,
        Slot::Set(table) => health_check(c, table.value),
    };
    let on_down = super::db::on_down(c, at, raw.on_down, health_check.as_ref());
    let outlier_detection = match raw.outlier_detection {
        Slot::Missing => Some(OutlierDetection::default()),
        Slot::Invalid => None,
        Slot::Set(table) => outlier_detection(c, table.value),
    };
    let sticky = match raw.sticky {
        Slot::Missing => Some(None),
        Slot::Invalid => None,
        Slot::Set(table) => super::sticky::sticky(c, table.value).map(Some),
    };
    let retry_budget = match raw.retry_budget {
        Slot::Missing => Some(RetryBudget::default()),
        Slot::Invalid => None,
        Slot::Set(table) => retry_budget(c, table.value),
    };

    let no_backends = || {
        let pool = name
            .as_ref()
            .map(|name| format!("pool {:?}", name.value))
            .unwrap_or_else(|| "this pool".to_owned());
        format!("{pool} has no backends; add at least one [[pool.backend]] with an address")
    };
    let backends = match raw.backends {
        Slot::Invalid => None,
        Slot::Missing if c.backends_optional => Some((Vec::new(), Vec::new())),
        Slot::Set(field) if field.value.is_empty() && c.backends_optional => {
            Some((Vec::new(), Vec::new()))
        }
        Slot::Missing => {
            c.error(at.path_of("backend"), at.line, no_backends());
            None
        }
        Slot::Set(field) if field.value.is_empty() => {
            c.error(at.path_of("backend"), field.line, no_backends());
            None
        }
        Slot::Set(field) => backends(c, field.value),
    };

    let send_proxy = super::connection::send_proxy(c, at, raw.send_proxy);
    let tls = super::pool_tls::pool_tls(c, raw.tls);
    Some(Pool {
        name: name?.value,
        algorithm: algorithm?.value,
        hash_key: hash_key?.value,
        retries: retries?.value,
        connect_timeout: connect_timeout?.value,
        timeout: timeout?.value,
        health_check: health_check?,
        on_down: on_down?,
        outlier_detection: outlier_detection?,
        retry_budget: retry_budget?,
        drain_timeout: drain_timeout?.value,
        slow_start: slow_start?.value,
        panic_threshold: panic_threshold?.value,
        overflow: overflow?,
        sticky: sticky?,
        tls: super::pool_tls::default_sni(tls?, backends.as_ref()?),
        backends: backends.as_ref()?.0.clone(),
        named_backends: backends?.1,
        send_proxy: send_proxy?,
    })
}

/// `client_ip`, `path`, `header:NAME` or `cookie:NAME`.
pub(super) fn hash_key(s: String) -> Result<HashKey, String> {
    match s.as_str() {
        "client_ip" => return Ok(HashKey::ClientIp),
        "path" => return Ok(HashKey::Path),
        _ => {}
    }
    let (what, name) = if let Some(name) = s.strip_prefix("header:") {
        ("header", name)
    } else if let Some(name) = s.strip_prefix("cookie:") {
        ("cookie", name)
    } else {
        return Err(format!(
            "expected \"client_ip\", \"path\", \"header:NAME\" or \"cookie:NAME\", got {s:?}"
        ));
    };
    if name.is_empty() {
        return Err(format!(
            "expected a {what} name after \"{what}:\", such as \"{what}:x-user-id\", got {s:?}"
        ));
    }
    // Cookie names are HTTP tokens too (RFC 6265), so one rule fits both.
    if let Some(bad) = name.chars().find(|&ch| !is_token_char(ch)) {
        return Err(format!(
            "{what} name {name:?} contains {bad:?}, which is not allowed in an HTTP {what} \
             name (letters, digits and !#$%&'*+-.^_`|~ are)"
        ));
    }
    Ok(match what {
        "header" => HashKey::Header(name.to_ascii_lowercase()),
        _ => HashKey::Cookie(name.to_owned()),
    })
}

/// RFC 9110 `tchar`.
pub(super) fn is_token_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(ch)
}

fn retry_budget(c: &mut Checker, raw: RawRetryBudget) -> Option<RetryBudget> {
    let at = &raw.at;
    let defaults = RetryBudget::default();
    let percent = c.optional(at, "percent", raw.percent, defaults.percent, int_in(0, 100));
    let min_per_second = c.optional(
        at,
        "min_per_second",
        raw.min_per_second,
        defaults.min_per_second,
        int_in(0, MAX_RETRIES_PER_SECOND),
    );
    Some(RetryBudget {
        percent: percent?.value,
        min_per_second: min_per_second?.value,
    })
}

/// A backend's address as written: an IP address, or a host name that is
/// looked up at run time.
enum Address {
    Ip(SocketAddr),
    Name { host: String, port: u16 },
}

impl Address {
    fn key(&self) -> String {
        match self {
            Address::Ip(address) => address.to_string(),
            Address::Name { host, port } => format!("{host}:{port}"),
        }
    }
}

/// The pool's backends by IP address, and those by host name.
type Backends = (Vec<Backend>, Vec<NamedBackend>);

fn backends(c: &mut Checker, raw: Vec<RawBackend>) -> Option<Backends> {
    // address → (path, line) of its first use in this pool
    let mut seen: HashMap<String, (String, Option<usize>)> = HashMap::new();
    let checked: Vec<Option<(Address, Backend)>> = raw
        .into_iter()
        .map(|raw| backend(c, raw, &mut seen))
        .collect();
    let mut by_ip = Vec::new();
    let mut by_name = Vec::new();
    for (address, backend) in checked.into_iter().collect::<Option<Vec<_>>>()? {
        match address {
            Address::Ip(address) => by_ip.push(Backend { address, ..backend }),
            Address::Name { host, port } => by_name.push(NamedBackend {
                host,
                port,
                weight: backend.weight,
                backup: backend.backup,
                priority: backend.priority,
                zone: backend.zone,
            }),
        }
    }
    Some((by_ip, by_name))
}

fn backend(
    c: &mut Checker,
    raw: RawBackend,
    seen: &mut HashMap<String, (String, Option<usize>)>,
) -> Option<(Address, Backend)> {
    let at = &raw.at;
    let address = c.required(at, "address", raw.address, backend_address);
    if let Some(address) = &address {
        let path = at.path_of("address");
        let key = address.value.key();
        if let Some((first_path, first_line)) = seen.get(&key) {
            let message = format!(
                "duplicate backend address {key}; already used by {first_path}{}",
                at_line(*first_line)
            );
            c.error(path, address.line, message);
        } else {
            seen.insert(key, (path, address.line));
        }
    }
    let weight = c.optional(
        at,
        "weight",
        raw.weight,
        DEFAULT_WEIGHT,
        int_in(0, MAX_WEIGHT),
    );
    let backup = c.optional(at, "backup", raw.backup, false, Ok);
    let priority = super::levels::priority(c, at, raw.priority, backup.as_ref().map(|b| b.value));
    let zone = super::levels::zone(c, at, raw.zone);
    let backend = Backend {
        // Replaced by the address proper, or dropped for a named one.
        address: SocketAddr::from(([0, 0, 0, 0], 0)),
        weight: weight?.value,
        backup: backup?.value,
        priority: priority?,
        zone: zone?,
    };
    Some((address?.value, backend))
}

/// `ip:port`, `[ipv6]:port` or `host.name:port`.
fn backend_address(s: String) -> Result<Address, String> {
    let address = match ip_socket_addr(s.clone(), "") {
        Ok(address) => Address::Ip(address),
        Err(ip_error) => match host_and_port(&s) {
            Some((host, port)) => Address::Name { host, port },
            None if looks_like_a_name(&s) => {
                return Err(format!(
                    "expected \"ip:port\" or \"host.name:port\", got {s:?}: {}",
                    name_problem(&s)
                ))
            }
            None => return Err(ip_error),
        },
    };
    let port = match &address {
        Address::Ip(address) => address.port(),
        Address::Name { port, .. } => *port,
    };
    if port == 0 {
        return Err(format!(
            "port 0 is not a usable backend port; got {}",
            address.key()
        ));
    }
    Ok(address)
}

/// Whether `s` was meant as a host name (it has a letter before the port),
/// so that an error can speak of names rather than IP addresses.
fn looks_like_a_name(s: &str) -> bool {
    let host = s.rsplit_once(':').map_or(s, |(host, _)| host);
    !host.contains(':') && host.chars().any(|c| c.is_ascii_alphabetic())
}

fn name_problem(s: &str) -> String {
    match s.rsplit_once(':') {
        None => "the port is missing".to_owned(),
        Some((_, port)) if port.parse::<u16>().is_err() => {
            "the port must be a number from 1 to 65535".to_owned()
        }
        Some((host, _)) => format!(
            "{host:?} is not a host name (letters, digits and '-' in dot-separated labels of 1 to 63 characters)"
        ),
    }
}

/// A valid host name (RFC 1123 labels) and a port; names are lower-cased.
fn host_and_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(label_ok)
        // An all-numeric last label would be a malformed IP address.
        && host
            .rsplit('.')
            .next()
            .is_some_and(|last| last.chars().any(|c| c.is_ascii_alphabetic()));
    valid.then(|| (host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_keys() {
        assert_eq!(hash_key("client_ip".into()), Ok(HashKey::ClientIp));
        assert_eq!(hash_key("path".into()), Ok(HashKey::Path));
        assert_eq!(
            hash_key("header:X-User-Id".into()),
            Ok(HashKey::Header("x-user-id".into()))
        );
        assert_eq!(
            hash_key("cookie:SessionID".into()),
            Ok(HashKey::Cookie("SessionID".into()))
        );
        assert!(hash_key("header:".into())
            .unwrap_err()
            .contains("header name"));
        assert!(hash_key("cookie:".into())
            .unwrap_err()
            .contains("cookie name"));
        assert!(hash_key("header:x user".into())
            .unwrap_err()
            .contains("' '"));
        assert!(hash_key("source_ip".into())
            .unwrap_err()
            .contains("\"header:NAME\""));
    }

    #[test]
    fn hash_key_display_round_trips() {
        for key in [
            HashKey::ClientIp,
            HashKey::Path,
            HashKey::Header("x-user".into()),
            HashKey::Cookie("sid".into()),
        ] {
            assert_eq!(hash_key(key.to_string()), Ok(key));
        }
    }
}
