//! Metrics of the edge: the TLS handshakes of the listeners that terminate
//! TLS, and the HTTP/2 connections, streams and GOAWAYs of HTTP listeners.

use halb_config::Protocol;
use halb_metrics::{Exposition, Kind};
use halb_proxy::{Http2Metrics, Topology, GOAWAY_REASONS, TLS_FAILURES, TLS_VERSIONS};

/// TLS handshakes of the listeners that terminate TLS (`[listener.tls]`).
pub(crate) fn tls(text: &mut Exposition, topology: &Topology) {
    let tls_listeners: Vec<_> = topology
        .listeners
        .iter()
        .filter(|l| l.config.load().tls.is_some())
        .collect();
    let mut family = text.family(
        "halb_tls_handshakes_total",
        Kind::Counter,
        "TLS handshakes completed, by listener and protocol version.",
    );
    for listener in &tls_listeners {
        let name = listener.name();
        for (version, count) in TLS_VERSIONS.iter().zip(&listener.metrics.tls.handshakes) {
            family.sample(
                &[("listener", name.as_str()), ("version", version)],
                count.get(),
            );
        }
    }
    let mut family = text.family(
        "halb_tls_resumed_handshakes_total",
        Kind::Counter,
        "TLS handshakes that resumed a session (ticket or session ID), by listener.",
    );
    for listener in &tls_listeners {
        let name = listener.name();
        family.sample(
            &[("listener", name.as_str())],
            listener.metrics.tls.resumed.get(),
        );
    }
    let mut family = text.family(
        "halb_tls_handshake_failures_total",
        Kind::Counter,
        "TLS handshakes that failed, by listener and reason.",
    );
    for listener in &tls_listeners {
        let name = listener.name();
        for (reason, count) in TLS_FAILURES.iter().zip(&listener.metrics.tls.failures) {
            family.sample(
                &[("listener", name.as_str()), ("reason", reason)],
                count.get(),
            );
        }
    }
}

/// A family of one sample per listener: name, kind, help, and the reading.
type Family = (&'static str, Kind, &'static str, fn(&Http2Metrics) -> u64);

/// HTTP/2 to clients, per HTTP listener (h2 over TLS and h2c alike).
pub(crate) fn http2(text: &mut Exposition, topology: &Topology) {
    let http: Vec<_> = topology
        .listeners
        .iter()
        .filter(|l| l.protocol == Protocol::Http)
        .collect();
    let families: [Family; 3] = [
        (
            "halb_http2_connections_total",
            Kind::Counter,
            "Client connections that completed the HTTP/2 handshake, by listener.",
            |m| m.connections.get(),
        ),
        (
            "halb_http2_streams_total",
            Kind::Counter,
            "HTTP/2 streams (requests) accepted, by listener.",
            |m| m.streams.get(),
        ),
        (
            "halb_http2_active_streams",
            Kind::Gauge,
            "HTTP/2 streams being served now, by listener.",
            |m| u64::try_from(m.active_streams.get()).unwrap_or(0),
        ),
    ];
    for (name, kind, help, read) in families {
        let mut family = text.family(name, kind, help);
        for listener in &http {
            let label = listener.name();
            family.sample(
                &[("listener", label.as_str())],
                read(&listener.metrics.http2),
            );
        }
    }
    let mut family = text.family(
        "halb_http2_goaways_total",
        Kind::Counter,
        "GOAWAY frames halb sent, by listener and reason: no_error (drain, reload), enhance_your_calm (rapid reset, too many streams reset), protocol_error.",
    );
    for listener in &http {
        let name = listener.name();
        for (reason, count) in GOAWAY_REASONS.iter().zip(&listener.metrics.http2.goaways) {
            family.sample(
                &[("listener", name.as_str()), ("reason", reason)],
                count.get(),
            );
        }
    }
}
