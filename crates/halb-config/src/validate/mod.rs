//! Validation: [`RawConfig`] → [`Config`]. Checks every rule (formats,
//! ranges, uniqueness, references) and reports every violation; a `Config`
//! comes out only when there is none.

mod alerts;
mod checker;
mod cluster;
mod connection;
mod db;
mod health;
mod levels;

pub use levels::check_zone_name;
mod log;
mod pool;
mod pool_tls;
mod route;
mod sticky;
mod tls;
mod vrrp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::raw::{Field, Header, RawAdmin, RawChaos, RawConfig, RawListener, RawRuntime, Slot};
use crate::{
    Admin, Alerts, Chaos, Config, ConfigError, Document, Listener, Log, Protocol, Runtime,
    DEFAULT_RESOLVE_INTERVAL, DEFAULT_SHUTDOWN_DRAIN, MAX_RESOLVE_INTERVAL, MIN_RESOLVE_INTERVAL,
};
use checker::{at_line, duration, int_in, non_empty, one_of, socket_addr, Checker};

const MAX_WORKERS: i64 = 1024;
const DEFAULT_REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
const MIN_HEADER_BYTES: i64 = 8 * 1024;
const MAX_HEADER_BYTES: i64 = 1024 * 1024;

/// Validate a raw config. `errors` holds the reading errors so far; the
/// result carries them plus every validation error.
pub(crate) fn validate(
    raw: RawConfig,
    errors: Vec<ConfigError>,
    document: Document,
) -> Result<Config, Vec<ConfigError>> {
    let mut checker = Checker {
        errors,
        backends_optional: document == Document::Shared,
    };
    let c = &mut checker;
    // A node whose shared sections come from etcd has none of its own.
    let local_only = document == Document::Node && cluster::shared_from_etcd(&raw);
    match document {
        Document::Node if local_only => cluster::reject_shared_sections(c, &raw),
        Document::Node => {}
        Document::Shared => cluster::reject_node_local_sections(c, &raw),
    }

    let runtime = runtime(c, raw.runtime);
    let log = match raw.log {
        Slot::Missing => Some(Log::default()),
        Slot::Invalid => None,
        Slot::Set(field) => log::log(c, field.value),
    };
    // `None` inside: no access log; `None` outside: a bad table.
    let access_log = match raw.access_log {
        Slot::Missing => Some(None),
        Slot::Invalid => None,
        Slot::Set(field) => log::access_log(c, field.value).map(Some),
    };
    let alerts = match raw.alerts {
        Slot::Missing => Some(Alerts::default()),
        Slot::Invalid => None,
        Slot::Set(field) => alerts::alerts(c, field.value),
    };
    let admin = match raw.admin {
        Slot::Missing => Some(None),
        Slot::Invalid => None,
        Slot::Set(field) => Some(Some(admin(c, field.value))),
    };
    let admin_bind = admin
        .as_ref()
        .and_then(|admin| admin.as_ref())
        .and_then(|admin| admin.bind.clone());

    let chaos = match raw.chaos {
        Slot::Missing => Some(Chaos::default()),
        Slot::Invalid => None,
        Slot::Set(field) => chaos(c, field.value),
    };
    let cluster = match raw.cluster {
        Slot::Missing => Some(None),
        Slot::Invalid => None,
        Slot::Set(field) => cluster::cluster(c, field.value).map(Some),
    };
    if local_only {
        // Reported above; validated no further. The pools that `[vrrp]`
        // tracks come from etcd: checked when a shared config is applied.
        let vrrp = match raw.vrrp {
            Slot::Missing => Some(None),
            Slot::Invalid => None,
            Slot::Set(field) => vrrp::vrrp(c, field.value, None).map(Some),
        };
        return match (runtime, admin, log, access_log, cluster, vrrp, chaos) {
            (
                Some(runtime),
                Some(admin),
                Some(log),
                Some(access_log),
                Some(cluster),
                Some(vrrp),
                Some(chaos),
            ) if checker.errors.is_empty() => Ok(Config {
                chaos,
                runtime,
                admin: admin.and_then(|admin| admin.valid),
                listeners: Vec::new(),
                pools: Vec::new(),
                log,
                access_log,
                alerts: Alerts::default(),
                cluster,
                vrrp,
            }),
            _ => Err(rejected(checker)),
        };
    }
    let raw_pools = match raw.pools {
        Slot::Set(field) => field.value,
        Slot::Missing | Slot::Invalid => Vec::new(),
    };
    let defined_pools = pool::defined_names(&raw_pools);
    let vrrp = match raw.vrrp {
        Slot::Missing => Some(None),
        Slot::Invalid => None,
        Slot::Set(field) => vrrp::vrrp(c, field.value, Some(&defined_pools)).map(Some),
    };
    let pools = pool::pools(c, raw_pools);
    let listeners = listeners(c, raw.listeners, &raw.root, &defined_pools, admin_bind);
    if let (Some(listeners), Some(pools)) = (&listeners, &pools) {
        connection::send_proxy_only_for_tcp(c, listeners, pools);
        pool_tls::tls_only_for_http(c, listeners, pools);
    }

    match (
        runtime, admin, listeners, pools, log, access_log, alerts, cluster,
    ) {
        (
            Some(runtime),
            Some(admin),
            Some(listeners),
            Some(pools),
            Some(log),
            Some(access_log),
            Some(alerts),
            Some(cluster),
        ) if checker.errors.is_empty() && vrrp.is_some() && chaos.is_some() => Ok(Config {
            chaos: chaos.unwrap_or_default(),
            vrrp: vrrp.flatten(),
            runtime,
            admin: admin.and_then(|admin| admin.valid),
            listeners,
            pools,
            log,
            access_log,
            alerts,
            cluster,
        }),
        _ => Err(rejected(checker)),
    }
}

/// The errors of a rejected config (never none).
fn rejected(mut checker: Checker) -> Vec<ConfigError> {
    if checker.errors.is_empty() {
        // Every `None` above comes with an error; this is a safety net.
        checker.error(
            String::new(),
            None,
            "the config was rejected without a reason (a bug in halb-config)",
        );
    }
    checker.errors
}

fn runtime(c: &mut Checker, raw: RawRuntime) -> Option<Runtime> {
    let workers = c.optional(&raw.at, "workers", raw.workers, 0, int_in(0, MAX_WORKERS));
    let drain_timeout = c.optional(
        &raw.at,
        "drain_timeout",
        raw.drain_timeout,
        DEFAULT_SHUTDOWN_DRAIN,
        duration,
    );
    let resolve_interval = c.optional(
        &raw.at,
        "resolve_interval",
        raw.resolve_interval,
        DEFAULT_RESOLVE_INTERVAL,
        |s| {
            let interval = duration(s)?;
            if !(MIN_RESOLVE_INTERVAL..=MAX_RESOLVE_INTERVAL).contains(&interval) {
                return Err(format!(
                    "expected from {MIN_RESOLVE_INTERVAL:?} to {MAX_RESOLVE_INTERVAL:?}, got {interval:?}"
                ));
            }
            Ok(interval)
        },
    );
    let zone = levels::zone(c, &raw.at, raw.zone);
    Some(Runtime {
        zone: zone?,
        workers: workers?.value,
        drain_timeout: drain_timeout?.value,
        resolve_interval: resolve_interval?.value,
    })
}

fn chaos(c: &mut Checker, raw: RawChaos) -> Option<Chaos> {
    let allow = c.optional(&raw.at, "allow", raw.allow, false, Ok)?;
    Some(Chaos { allow: allow.value })
}

/// The admin table, valid or not; its bind address is needed to check
/// listeners either way.
struct CheckedAdmin {
    bind: Option<Field<SocketAddr>>,
    valid: Option<Admin>,
}

fn admin(c: &mut Checker, raw: RawAdmin) -> CheckedAdmin {
    let at = &raw.at;
    let bind = c.required(at, "bind", raw.bind, socket_addr);
    let token = match raw.token {
        Slot::Missing => Some(None),
        Slot::Invalid => None,
        Slot::Set(field) => c
            .check(at.path_of("token"), field, non_empty)
            .map(|token| Some(token.value)),
    };
    if let (Some(bind), Some(None)) = (&bind, &token) {
        if !bind.value.ip().to_canonical().is_loopback() {
            c.error(
                at.path_of("token"),
                at.line,
                format!(
                    "admin.bind {} is not a loopback address, so a token is required \
                     (anyone who can reach the admin API could drain backends or reload \
                     the config); set token = \"...\" or bind to 127.0.0.1",
                    bind.value
                ),
            );
            return CheckedAdmin {
                bind: Some(bind.clone()),
                valid: None,
            };
        }
    }
    let valid = match (&bind, token) {
        (Some(bind), Some(token)) => Some(Admin {
            bind: bind.value,
            token,
        }),
        _ => None,
    };
    CheckedAdmin { bind, valid }
}

/// The listeners seen so far, for uniqueness checks.
#[derive(Default)]
struct SeenListeners {
    /// name → (path, line) of its first use
    names: HashMap<String, (String, Option<usize>)>,
    /// (address, path, line) of every bind so far, admin's included
    binds: Vec<(SocketAddr, String, Option<usize>)>,
}

fn listeners(
    c: &mut Checker,
    slot: Slot<Vec<RawListener>>,
    root: &Header,
    defined_pools: &[String],
    admin_bind: Option<Field<SocketAddr>>,
) -> Option<Vec<Listener>> {
    let none_defined =
        "no listeners are defined; add at least one [[listener]] with name, bind and pool";
    let raw = match slot {
        Slot::Invalid => return None,
        Slot::Missing => {
            c.error(root.path_of("listener"), None, none_defined);
            return None;
        }
        Slot::Set(field) if field.value.is_empty() => {
            c.error(root.path_of("listener"), field.line, none_defined);
            return None;
        }
        Slot::Set(field) => field.value,
    };

    let mut seen = SeenListeners::default();
    if let Some(bind) = admin_bind {
        seen.binds
            .push((bind.value, "admin.bind".to_owned(), bind.line));
    }
    let checked: Vec<Option<Listener>> = raw
        .into_iter()
        .map(|raw| listener(c, raw, defined_pools, &mut seen))
        .collect();
    checked.into_iter().collect()
}

fn listener(
    c: &mut Checker,
    raw: RawListener,
    defined_pools: &[String],
    seen: &mut SeenListeners,
) -> Option<Listener> {
    let at = &raw.at;

    let name = c.required(at, "name", raw.name, non_empty);
    if let Some(name) = &name {
        let path = at.path_of("name");
        if let Some((first_path, first_line)) = seen.names.get(&name.value) {
            let message = format!(
                "duplicate listener name {:?}; already used by {first_path}{}",
                name.value,
                at_line(*first_line)
            );
            c.error(path, name.line, message);
        } else {
            seen.names.insert(name.value.clone(), (path, name.line));
        }
    }

    let bind = c.required(at, "bind", raw.bind, socket_addr);
    if let Some(bind) = &bind {
        let path = at.path_of("bind");
        let clash = seen
            .binds
            .iter()
            .find(|(other, _, _)| binds_clash(bind.value, *other));
        if let Some((other, other_path, other_line)) = clash {
            let message = if *other == bind.value {
                format!(
                    "address {} is already used by {other_path}{}",
                    bind.value,
                    at_line(*other_line)
                )
            } else {
                format!(
                    "address {} overlaps {other_path} = {other}{}: a wildcard address \
                     takes the port on every interface",
                    bind.value,
                    at_line(*other_line)
                )
            };
            c.error(path, bind.line, message);
        } else {
            seen.binds.push((bind.value, path, bind.line));
        }
    }

    let protocol = c.optional(
        at,
        "protocol",
        raw.protocol,
        Protocol::Http,
        |name: String| {
            if ["https", "tls", "h2"].contains(&name.to_ascii_lowercase().as_str()) {
                return Err(format!(
                    "{name:?} is not a protocol: to terminate TLS, keep protocol = \"http\" \
                     and add [listener.tls] with `cert` and `key`; use protocol = \"tcp\" to \
                     pass TLS through to backends that terminate it"
                ));
            }
            one_of("protocol", &Protocol::ALL, Protocol::as_str)(name)
        },
    );
    let pool = c.required(at, "pool", raw.pool, |name| {
        if defined_pools.contains(&name) {
            Ok(name)
        } else if defined_pools.is_empty() {
            Err(format!(
                "names pool {name:?}, which is not defined; no [[pool]] is defined"
            ))
        } else {
            Err(format!(
                "names pool {name:?}, which is not defined; defined pools: {}",
                defined_pools.join(", ")
            ))
        }
    });
    let request_head_timeout = c.optional(
        at,
        "request_head_timeout",
        raw.request_head_timeout,
        DEFAULT_REQUEST_HEAD_TIMEOUT,
        duration,
    );
    let idle_timeout = c.optional(
        at,
        "idle_timeout",
        raw.idle_timeout,
        DEFAULT_IDLE_TIMEOUT,
        duration,
    );
    let max_header_bytes = c.optional(
        at,
        "max_header_bytes",
        raw.max_header_bytes,
        DEFAULT_MAX_HEADER_BYTES,
        int_in(MIN_HEADER_BYTES, MAX_HEADER_BYTES),
    );

    let routes = route::routes(
        c,
        raw.routes,
        at,
        protocol.as_ref().map(|p| p.value),
        defined_pools,
    );
    let tls = tls::listener_tls(c, raw.tls, at, protocol.as_ref().map(|p| p.value));

    let connection = connection::policy(c, at, raw.connection);
    Some(Listener {
        name: name?.value,
        bind: bind?.value,
        protocol: protocol?.value,
        pool: pool?.value,
        request_head_timeout: request_head_timeout?.value,
        idle_timeout: idle_timeout?.value,
        max_header_bytes: max_header_bytes?.value,
        routes: routes?,
        connection: connection?,
        tls: tls?,
    })
}

/// Whether two listening addresses would fight over a port. Port 0 asks the
/// OS for a free port and never clashes; a wildcard address (`0.0.0.0`,
/// `[::]`) clashes with every address on the same port.
fn binds_clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bind_clashes() {
        assert!(binds_clash(addr("127.0.0.1:80"), addr("127.0.0.1:80")));
        assert!(binds_clash(addr("0.0.0.0:80"), addr("127.0.0.1:80")));
        assert!(binds_clash(addr("127.0.0.1:80"), addr("[::]:80")));
        assert!(!binds_clash(addr("127.0.0.1:80"), addr("127.0.0.2:80")));
        assert!(!binds_clash(addr("127.0.0.1:80"), addr("127.0.0.1:81")));
        assert!(!binds_clash(addr("127.0.0.1:0"), addr("127.0.0.1:0")));
    }
}
