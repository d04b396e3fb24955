//! Which route a request takes: the first of its listener's rules whose
//! conditions all hold, else the listener's default route.
//!
//! The host a rule sees is the request's authority: the host of an
//! absolute-form target (`GET http://a.example/x`) when there is one, else
//! the Host header (RFC 9112 §3.2.2), without its port. The forwarded
//! request carries that same host (see [`authority_host`]), so no choice of
//! form lets a request be routed by one host and served as another.

use std::sync::Arc;

use halb_config::Route as Rule;
use http::Uri;

use crate::http::codec::fields::{Fields, Known};
use crate::route::{Route, Routes};

/// The route for a request with this target and these headers.
pub(crate) fn route(routes: &Routes, uri: &Uri, fields: &Fields) -> Arc<Route> {
    if routes.rules.is_empty() {
        return routes.default.clone();
    }
    let host = request_host(uri, fields);
    let path = uri.path().as_bytes();
    routes
        .rules
        .iter()
        .find(|rule| matches(&rule.matcher, host, path, fields))
        .map_or(&routes.default, |rule| &rule.route)
        .clone()
}

fn matches(rule: &Rule, host: Option<&[u8]>, path: &[u8], fields: &Fields) -> bool {
    if let Some(wanted) = &rule.host {
        if !host.is_some_and(|host| wanted.matches(host)) {
            return false;
        }
    }
    if let Some(wanted) = &rule.path {
        if !wanted.matches(path) {
            return false;
        }
    }
    if let Some(wanted) = &rule.header {
        let found = fields.get_named(&wanted.name);
        let holds = match (&wanted.value, found) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(value), Some(found)) => found == value.as_bytes(),
        };
        if !holds {
            return false;
        }
    }
    true
}

/// The host of an absolute-form target, if the request has one: it wins
/// over the Host header, and is what the backend is told.
pub(crate) fn authority_host(uri: &Uri) -> Option<&str> {
    uri.authority().map(|authority| authority.as_str())
}

/// The request's host without its port: from the target, else Host.
fn request_host<'a>(uri: &'a Uri, fields: &'a Fields) -> Option<&'a [u8]> {
    if let Some(authority) = uri.authority() {
        return Some(authority.host().as_bytes());
    }
    fields.get(Known::Host).map(without_port)
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
fn without_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_cut_from_hosts() {
        assert_eq!(without_port(b"example.com:8080"), b"example.com");
        assert_eq!(without_port(b"example.com"), b"example.com");
        assert_eq!(without_port(b"[::1]:80"), b"[::1]");
        assert_eq!(without_port(b"[::1]"), b"[::1]");
    }

    #[test]
    fn the_target_host_wins_over_the_host_header() {
        let fields = Fields::from_pairs(&[("host", "b.example:80")]);
        let absolute: Uri = "http://A.example:8080/x".parse().unwrap();
        assert_eq!(request_host(&absolute, &fields), Some(&b"A.example"[..]));
        let origin: Uri = "/x".parse().unwrap();
        assert_eq!(request_host(&origin, &fields), Some(&b"b.example"[..]));
        assert_eq!(authority_host(&absolute), Some("A.example:8080"));
        assert_eq!(authority_host(&origin), None);
    }
}
