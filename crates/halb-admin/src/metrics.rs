//! `GET /metrics`: the Prometheus text exposition, written at scrape time
//! by walking the running topology and reading its cells. The data path
//! only ever adds to atomics; everything here is off the hot path.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use arc_swap::ArcSwap;
use halb_access_log::AccessLogStats;
use halb_alerts::Alerter;
use halb_config::Protocol;
use halb_health::{clock, ServingState};
use halb_metrics::{Exposition, Kind};
use halb_proxy::{
    BackendState, ListenerContext, PoolState, Route, RouteCounters, Topology, STATUS_CLASSES,
};

use crate::control::ConfigInfo;

/// The backend states of `halb_backend_state`, one series each.
const STATES: [ServingState; 5] = [
    ServingState::Up,
    ServingState::Down,
    ServingState::Ejected,
    ServingState::Draining,
    ServingState::Disabled,
];

/// A family read from one field per backend or pool: its name, its help
/// text, and how to read the value.
type Reading<T> = (&'static str, &'static str, fn(&T) -> u64);

/// What `/metrics` reports beyond the topology and the config.
#[derive(Debug, Clone, Default)]
pub struct MetricSources {
    /// The running alerter (its counts survive reconfiguration).
    pub alerts: Option<Arc<ArcSwap<Alerter>>>,
    /// The access log's counts, shared by every writer the node starts.
    pub access_log: Option<Arc<AccessLogStats>>,
    /// The VRRP instances' states and counts, when `[vrrp]` is set.
    pub vrrp: Option<Arc<halb_vrrp::Registry>>,
    /// The injected faults (`/api/v1/faults`).
    pub faults: Option<Arc<halb_chaos::Faults>>,
    /// The peer links, when `[cluster.peers]` is set.
    pub peers: Option<Arc<halb_cluster::Peers>>,
}

fn fault_metrics(text: &mut Exposition, faults: &halb_chaos::Faults) {
    text.family(
        "halb_faults_active",
        Kind::Gauge,
        "Injected faults now active (/api/v1/faults).",
    )
    .sample(&[], faults.list().len() as u64);
    let mut applied = text.family(
        "halb_faults_applied_total",
        Kind::Counter,
        "Requests (HTTP) or connections (TCP) an injected fault hit, by pool and kind.",
    );
    for ((pool, kind), count) in faults.applied_totals() {
        applied.sample(&[("pool", &pool), ("kind", kind)], count);
    }
}

fn vrrp_metrics(text: &mut Exposition, instances: &[halb_vrrp::InstanceStatus]) {
    let mut state = text.family(
        "halb_vrrp_state",
        Kind::Gauge,
        "1 for the state each VRRP instance is in (init, backup, master, fault), 0 for the others.",
    );
    for instance in instances {
        for name in ["init", "backup", "master", "fault"] {
            let value = u64::from(instance.state.as_str() == name);
            state.sample(&[("instance", &instance.name), ("state", name)], value);
        }
    }
    let mut transitions = text.family(
        "halb_vrrp_transitions_total",
        Kind::Counter,
        "VRRP state changes per instance.",
    );
    for instance in instances {
        transitions.sample(&[("instance", &instance.name)], instance.transitions);
    }
    let mut adverts = text.family(
        "halb_vrrp_adverts_total",
        Kind::Counter,
        "VRRP adverts per instance: sent, received (valid, this VRID), bad (dropped: TTL, version, checksum, length or interval).",
    );
    for instance in instances {
        adverts.sample(
            &[("instance", &instance.name), ("kind", "sent")],
            instance.adverts_sent,
        );
        adverts.sample(
            &[("instance", &instance.name), ("kind", "received")],
            instance.adverts_received,
        );
        adverts.sample(
            &[("instance", &instance.name), ("kind", "bad")],
            instance.adverts_bad,
        );
    }
}

/// The whole exposition.
pub fn render(topology: &Topology, config: &ConfigInfo, sources: &MetricSources) -> String {
    let mut text = Exposition::new();
    node(&mut text, config, sources);
    listeners(&mut text, topology);
    backends(&mut text, topology);
    health_checks(&mut text, topology);
    pools(&mut text, topology);
    crate::level_metrics::levels(&mut text, topology);
    if let Some(faults) = &sources.faults {
        fault_metrics(&mut text, faults);
    }
    if let Some(peers) = &sources.peers {
        peer_metrics(&mut text, peers);
    }
    text.into_string()
}

fn peer_metrics(text: &mut Exposition, peers: &halb_cluster::Peers) {
    let links = peers.status();
    type Value = fn(&halb_cluster::LinkStatus) -> u64;
    let families: [(&str, Kind, &str, Value); 8] = [
        ("halb_peer_connected", Kind::Gauge, "1 while the link to the peer is authenticated and sending.", |l| u64::from(l.connected)),
        ("halb_peer_lag_ms", Kind::Gauge, "How long the oldest update not yet acknowledged by the peer has waited (or the last one took), ms.", |l| l.lag_ms),
        ("halb_peer_sent_bytes_total", Kind::Counter, "Bytes sent to the peer.", |l| l.bytes_sent),
        ("halb_peer_received_bytes_total", Kind::Counter, "Bytes of updates received from the peer.", |l| l.bytes_received),
        ("halb_peer_sent_updates_total", Kind::Counter, "Sticky entries, operator actions and verdicts sent to the peer.", |l| l.updates_sent),
        ("halb_peer_received_updates_total", Kind::Counter, "Updates received from the peer.", |l| l.updates_received),
        ("halb_peer_resyncs_total", Kind::Counter, "Full resyncs sent to the peer (at connect, and when it fell behind).", |l| l.resyncs),
        ("halb_peer_refused_total", Kind::Counter, "Handshakes with the peer refused.", |l| l.refused),
    ];
    for (name, kind, help, value) in families {
        let mut family = text.family(name, kind, help);
        for link in &links {
            family.sample(&[("peer", &link.address)], value(link));
        }
    }
    let mut ack = text.family(
        "halb_peer_ack_seconds",
        Kind::Gauge,
        "Send to acknowledgement of the peer's last few thousand updates, by quantile.",
    );
    for link in &links {
        for (q, v) in [("0.5", link.ack_p50_ms), ("0.99", link.ack_p99_ms)] {
            ack.sample(&[("peer", &link.address), ("quantile", q)], v / 1000.0);
        }
    }
    text.family(
        "halb_peer_refused_inbound_total",
        Kind::Counter,
        "Connections to the peer port refused: wrong secret, another protocol version, no handshake.",
    )
    .sample(&[], peers.refused_inbound());
}

fn node(text: &mut Exposition, config: &ConfigInfo, sources: &MetricSources) {
    text.family(
        "halb_build_info",
        Kind::Gauge,
        "Always 1; the running halb's version.",
    )
    .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1u64);
    text.family(
        "halb_config_info",
        Kind::Gauge,
        "Always 1; the hash of the config file that runs (as in GET /api/v1/status).",
    )
    .sample(&[("hash", &config.hash())], 1u64);
    let mut reloads = text.family(
        "halb_config_reloads_total",
        Kind::Counter,
        "Config reloads (SIGHUP, API, --watch) by result: ok = applied, failed = refused (the running config stayed).",
    );
    reloads.sample(&[("result", "ok")], config.reloads_ok());
    reloads.sample(&[("result", "failed")], config.reloads_failed());
    if let Some(vrrp) = &sources.vrrp {
        vrrp_metrics(text, &vrrp.snapshot());
    }
    if let Some(up) = config.source().report.and_then(|r| r.store_up()) {
        text.family(
            "halb_config_store_up",
            Kind::Gauge,
            "1 while the shared config store (etcd) answers; 0 while it is away (the node serves what it applied).",
        )
        .sample(&[], u64::from(up));
    }
    if let Some(alerter) = &sources.alerts {
        let stats = alerter.load().stats();
        let mut alerts = text.family(
            "halb_alerts_total",
            Kind::Counter,
            "Alert deliveries per webhook by result: delivered (2xx), failed (gave up after retries, or 4xx), dropped (a queue was full).",
        );
        alerts.sample(&[("result", "delivered")], stats.delivered);
        alerts.sample(&[("result", "failed")], stats.failed);
        alerts.sample(&[("result", "dropped")], stats.dropped);
    }
    if let Some(log) = &sources.access_log {
        text.family(
            "halb_access_log_lines_total",
            Kind::Counter,
            "Access log lines written.",
        )
        .sample(&[], log.lines());
        text.family(
            "halb_access_log_dropped_total",
            Kind::Counter,
            "Access log records dropped because the writer fell behind (its queue was full).",
        )
        .sample(&[], log.dropped());
        text.family(
            "halb_access_log_write_errors_total",
            Kind::Counter,
            "Access log writes that failed (disk full, closed output).",
        )
        .sample(&[], log.write_errors());
    }
}

fn listeners(text: &mut Exposition, topology: &Topology) {
    let mut family = text.family(
        "halb_listener_connections_total",
        Kind::Counter,
        "Client connections accepted, by listener.",
    );
    for listener in &topology.listeners {
        let name = listener.name();
        let labels = [
            ("listener", name.as_str()),
            ("protocol", listener.protocol.as_str()),
        ];
        family.sample(&labels, listener.metrics.connections.get());
    }
    crate::edge_metrics::tls(text, topology);
    crate::edge_metrics::http2(text, topology);
    let mut family = text.family(
        "halb_listener_active_connections",
        Kind::Gauge,
        "Client connections open now, by listener.",
    );
    for listener in &topology.listeners {
        let name = listener.name();
        let labels = [
            ("listener", name.as_str()),
            ("protocol", listener.protocol.as_str()),
        ];
        family.sample(&labels, listener.metrics.active_connections.get());
    }
    let families = [
        (
            "halb_listener_refused_connections_total",
            "Client connections refused before proxying (no or a bad PROXY header, over [listener.limits]), by listener.",
            ListenerContext::refused_connections as fn(&ListenerContext) -> u64,
        ),
        (
            "halb_listener_evicted_connections_total",
            "Idle client connections closed to make room (a connection cap, or no file descriptor left), by listener.",
            ListenerContext::evicted_connections,
        ),
    ];
    for (name, help, value) in families {
        let mut family = text.family(name, Kind::Counter, help);
        for listener in &topology.listeners {
            let name = listener.name();
            let labels = [
                ("listener", name.as_str()),
                ("protocol", listener.protocol.as_str()),
            ];
            family.sample(&labels, value(listener));
        }
    }

    let routes: Vec<_> = topology
        .listeners
        .iter()
        .flat_map(|listener| {
            let routes = listener.routes.load_full();
            let all: Vec<Arc<Route>> = routes.all().cloned().collect();
            all.into_iter().map(move |route| (listener.protocol, route))
        })
        .collect();
    let mut family = text.family(
        "halb_http_requests_total",
        Kind::Counter,
        "HTTP responses sent, by listener, route, pool, backend and status class (code). route=\"default\": no [[listener.route]] matched. backend=\"\": halb answered itself (no usable backend, or every try failed).",
    );
    for (_, route) in routes.iter().filter(|(p, _)| *p == Protocol::Http) {
        for (backend, counters) in &cells(route) {
            for (class, counter) in STATUS_CLASSES.iter().zip(&counters.responses) {
                let count = counter.get();
                if count > 0 {
                    family.sample(
                        &[
                            ("listener", &route.listener),
                            ("route", &route.name),
                            ("pool", &route.pool_name),
                            ("backend", backend),
                            ("code", class),
                        ],
                        count,
                    );
                }
            }
        }
    }
    let mut family = text.family(
        "halb_http_requests_abandoned_total",
        Kind::Counter,
        "HTTP requests whose client went away before a response head was ready (logged with status 499), by the backend they waited on.",
    );
    for (_, route) in routes.iter().filter(|(p, _)| *p == Protocol::Http) {
        for (backend, counters) in cells(route) {
            let count = counters.abandoned.get();
            if count > 0 {
                family.sample(
                    &[
                        ("listener", &route.listener),
                        ("route", &route.name),
                        ("pool", &route.pool_name),
                        ("backend", &backend),
                    ],
                    count,
                );
            }
        }
    }
    let mut family = text.family(
        "halb_http_request_duration_seconds",
        Kind::Histogram,
        "HTTP requests as the client saw them: from the request head's arrival to the end of the response, by listener.",
    );
    for listener in topology
        .listeners
        .iter()
        .filter(|l| l.protocol == Protocol::Http)
    {
        family.histogram(
            &[("listener", &listener.name())],
            &listener.metrics.request_duration.snapshot(),
        );
    }
    let mut family = text.family(
        "halb_tcp_connections_total",
        Kind::Counter,
        "TCP connections relayed, by listener, pool and backend. backend=\"\": closed because no backend could be reached.",
    );
    for (_, route) in routes.iter().filter(|(p, _)| *p == Protocol::Tcp) {
        for (backend, counters) in cells(route) {
            let count = counters.connections.get();
            if count > 0 || !backend.is_empty() {
                family.sample(
                    &[
                        ("listener", &route.listener),
                        ("pool", &route.pool_name),
                        ("backend", &backend),
                    ],
                    count,
                );
            }
        }
    }
}

/// A route's cells, each backend's with its address for a label, then
/// halb's own with an empty one.
fn cells(route: &Route) -> Vec<(String, &RouteCounters)> {
    route
        .pool
        .backends
        .iter()
        .zip(&*route.backends)
        .map(|(backend, cell)| (backend.address.to_string(), &**cell))
        .chain(std::iter::once((String::new(), &*route.local)))
        .collect()
}

/// `(pool, backend address, state)` for every backend of every pool.
fn each_backend(topology: &Topology) -> Vec<(&str, String, &BackendState)> {
    topology
        .pools
        .iter()
        .flat_map(|pool| {
            pool.backends
                .iter()
                .map(move |b| (pool.config.name.as_str(), b.address.to_string(), &**b))
        })
        .collect()
}

fn backends(text: &mut Exposition, topology: &Topology) {
    let all = each_backend(topology);
    let now = clock::now();
    let mut family = text.family(
        "halb_backend_state",
        Kind::Gauge,
        "1 for the backend's current state, 0 for the others; state is one of up, down (failing its checks or not yet checked up), ejected (outlier detection), draining, disabled.",
    );
    for (pool, backend, state) in &all {
        let current = state.health.serving_state(now);
        for candidate in STATES {
            family.sample(
                &[
                    ("pool", pool),
                    ("backend", backend),
                    ("state", candidate.as_str()),
                ],
                u64::from(candidate == current),
            );
        }
    }
    let gauges: [Reading<BackendState>; 2] = [
        (
            "halb_backend_in_flight",
            "Requests (HTTP) or connections (TCP) using the backend now.",
            |b| b.in_flight(),
        ),
        (
            "halb_backend_weight",
            "The backend's configured weight.",
            |b| u64::from(b.weight),
        ),
    ];
    for (name, help, value) in gauges {
        let mut family = text.family(name, Kind::Gauge, help);
        for (pool, backend, state) in &all {
            family.sample(&[("pool", pool), ("backend", backend)], value(state));
        }
    }
    let counters: [Reading<BackendState>; 5] = [
        (
            "halb_backend_attempts_total",
            "Tries sent to the backend: HTTP requests (retries included) and TCP connects.",
            |b| b.requests.load(Relaxed),
        ),
        (
            "halb_backend_failures_total",
            "Tries that failed: connect error or timeout, no response head in time, a broken response, or a 5xx counted by outlier detection.",
            |b| b.failures.load(Relaxed),
        ),
        (
            "halb_backend_ejections_total",
            "Times outlier detection ejected the backend.",
            |b| b.health.ejections_total(),
        ),
        (
            "halb_backend_state_changes_total",
            "Changes of the backend's active-check verdict (up to down, down to up).",
            |b| b.health.transitions(),
        ),
        (
            "halb_backend_closed_on_down_total",
            "TCP connections closed because the backend was marked down in a pool with on_down = \"close\".",
            |b| b.health.fence.closed.get(),
        ),
    ];
    for (name, help, value) in counters {
        let mut family = text.family(name, Kind::Counter, help);
        for (pool, backend, state) in &all {
            family.sample(&[("pool", pool), ("backend", backend)], value(state));
        }
    }
    let mut family = text.family(
        "halb_backend_response_seconds",
        Kind::Histogram,
        "HTTP: from sending a request to the backend's response head (connect time excluded), by backend.",
    );
    for (pool, backend, state) in &all {
        family.histogram(
            &[("pool", pool), ("backend", backend)],
            &state.response_time.snapshot(),
        );
    }
}

fn health_checks(text: &mut Exposition, topology: &Topology) {
    let checked: Vec<_> = each_backend(topology)
        .into_iter()
        .filter(|(pool, _, _)| {
            topology
                .pools
                .iter()
                .find(|p| p.config.name == *pool)
                .is_some_and(|p| p.config.health_check.kind != halb_config::HealthCheckKind::None)
        })
        .collect();
    let mut family = text.family(
        "halb_health_checks_total",
        Kind::Counter,
        "Active health checks run, by backend and result (pass, fail).",
    );
    for (pool, backend, state) in &checked {
        let checks = &state.health.checks;
        family.sample(
            &[("pool", pool), ("backend", backend), ("result", "pass")],
            checks.passed.get(),
        );
        family.sample(
            &[("pool", pool), ("backend", backend), ("result", "fail")],
            checks.failed.get(),
        );
    }
    let mut family = text.family(
        "halb_health_check_duration_seconds",
        Kind::Histogram,
        "How long active health checks took, by backend (a timed-out check: about its timeout).",
    );
    for (pool, backend, state) in &checked {
        family.histogram(
            &[("pool", pool), ("backend", backend)],
            &state.health.checks.duration.snapshot(),
        );
    }
}

fn pools(text: &mut Exposition, topology: &Topology) {
    let counters: [Reading<PoolState>; 2] = [
        (
            "halb_pool_retries_total",
            "Retries made (tries beyond a request's or connection's first).",
            |p| p.retry_budget.spent(),
        ),
        (
            "halb_pool_retries_denied_total",
            "Retries refused because the pool's retry budget was spent.",
            |p| p.retry_budget.denied(),
        ),
    ];
    for (name, help, value) in counters {
        let mut family = text.family(name, Kind::Counter, help);
        for pool in &topology.pools {
            family.sample(&[("pool", &pool.config.name)], value(pool));
        }
    }
    let mut sticky = text.family(
        "halb_sticky_entries",
        Kind::Gauge,
        "Entries in the pool's stick table ([pool.sticky] kind = \"table\"), learned here or from peers.",
    );
    for pool in &topology.pools {
        if let Some(entries) = pool.sticky_entries() {
            sticky.sample(&[("pool", &pool.config.name)], entries as u64);
        }
    }
    let now = clock::now();
    let mut family = text.family(
        "halb_pool_usable_backends",
        Kind::Gauge,
        "Backends of the pool that may get new traffic now (up, weight above 0; backups included).",
    );
    for pool in &topology.pools {
        let usable = pool
            .backends
            .iter()
            .filter(|b| b.weight > 0 && b.health.serving_state(now) == ServingState::Up)
            .count();
        family.sample(&[("pool", &pool.config.name)], usable as u64);
    }
}
