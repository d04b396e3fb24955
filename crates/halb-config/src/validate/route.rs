//! Validation of `[[listener.route]]`: each rule's conditions, its pool,
//! and rules that can never match because an earlier one takes every
//! request they would.

use std::collections::HashMap;

use super::checker::{at_line, non_empty, Checker};
use super::pool::is_token_char;
use crate::raw::{Field, Header, RawRoute, RawRouteHeader, Slot};
use crate::{HeaderMatch, HostMatch, PathMatch, Protocol, Route};

/// The routes of one listener, valid or not (`None`: an error is reported).
pub(super) fn routes(
    c: &mut Checker,
    slot: Slot<Vec<RawRoute>>,
    listener: &Header,
    protocol: Option<Protocol>,
    defined_pools: &[String],
) -> Option<Vec<Route>> {
    let raw = match slot {
        Slot::Missing => return Some(Vec::new()),
        Slot::Invalid => return None,
        Slot::Set(field) => field,
    };
    if protocol == Some(Protocol::Tcp) && !raw.value.is_empty() {
        c.error(
            listener.path_of("route"),
            raw.line,
            "routes need protocol = \"http\": a TCP listener sends every connection to its `pool`",
        );
        return None;
    }
    let mut names: HashMap<String, (String, Option<usize>)> = HashMap::new();
    let mut checked = Vec::new();
    for (index, raw) in raw.value.into_iter().enumerate() {
        let at = raw.at.clone();
        let route = route(c, raw, index, defined_pools, &mut names);
        checked.push((at, route));
    }
    for later in 1..checked.len() {
        let (before, rest) = checked.split_at(later);
        let (at, Some(route)) = &rest[0] else {
            continue;
        };
        let shadow = before.iter().find_map(|(earlier_at, earlier)| {
            earlier
                .as_ref()
                .filter(|earlier| covers(earlier, route))
                .map(|_| earlier_at)
        });
        if let Some(earlier_at) = shadow {
            let message = format!(
                "this route can never match: {}{} matches every request it would, and the \
                 first route that matches wins (put this one first, or remove it)",
                earlier_at.path,
                at_line(earlier_at.line)
            );
            c.error(at.path.clone(), at.line, message);
        }
    }
    checked.into_iter().map(|(_, route)| route).collect()
}

fn route(
    c: &mut Checker,
    raw: RawRoute,
    index: usize,
    defined_pools: &[String],
    names: &mut HashMap<String, (String, Option<usize>)>,
) -> Option<Route> {
    let at = &raw.at;
    let name = match raw.name {
        Slot::Missing => Some(Field {
            value: format!("route[{index}]"),
            line: at.line,
        }),
        Slot::Invalid => None,
        Slot::Set(field) => c.check(at.path_of("name"), field, |name| {
            if name == "default" {
                return Err("\"default\" names the route of requests no rule matches; \
                     choose another name"
                    .to_owned());
            }
            non_empty(name)
        }),
    };
    if let Some(name) = &name {
        if let Some((first, line)) = names.get(&name.value) {
            let message = format!(
                "duplicate route name {:?}; already used by {first}{}",
                name.value,
                at_line(*line)
            );
            c.error(at.path_of("name"), name.line, message);
        } else {
            names.insert(name.value.clone(), (at.path.clone(), name.line));
        }
    }
    let host = c.if_set(at, "host", raw.host, host_match);
    let prefix = c.if_set(at, "path_prefix", raw.path_prefix, |s| {
        path(s).map(PathMatch::Prefix)
    });
    let exact = c.if_set(at, "path", raw.path, |s| path(s).map(PathMatch::Exact));
    let header = match raw.header {
        Slot::Missing => Some(None),
        Slot::Invalid => None,
        Slot::Set(field) => header_match(c, field.value).map(Some),
    };
    let path = match (prefix, exact) {
        (Some(Some(_)), Some(Some(_))) => {
            c.error(
                at.path_of("path"),
                at.line,
                "set path_prefix or path, not both: path matches one path exactly, \
                 path_prefix every path that starts with it",
            );
            None
        }
        (Some(prefix), Some(exact)) => Some(prefix.or(exact)),
        _ => None,
    };
    let pool = c.required(at, "pool", raw.pool, |name| {
        if defined_pools.contains(&name) {
            Ok(name)
        } else {
            Err(format!(
                "names pool {name:?}, which is not defined; defined pools: {}",
                defined_pools.join(", ")
            ))
        }
    });
    let (host, path, header) = (host?, path?, header?);
    if host.is_none() && path.is_none() && header.is_none() {
        c.error(
            at.path.clone(),
            at.line,
            "a route needs at least one of host, path_prefix, path or header \
             (the listener's `pool` already takes every request no route matches)",
        );
        return None;
    }
    Some(Route {
        name: name?.value,
        host,
        path,
        header,
        pool: pool?.value,
    })
}

/// `api.example.com` or `*.example.com`.
fn host_match(s: String) -> Result<HostMatch, String> {
    let lower = s.to_ascii_lowercase();
    let (name, wildcard) = match lower.strip_prefix("*.") {
        Some(rest) => (rest, true),
        None => (lower.as_str(), false),
    };
    if name.contains(':') {
        return Err(format!(
            "a host is matched without its port; write {:?}",
            s.split(':').next().unwrap_or_default()
        ));
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    };
    if name.is_empty() || !name.split('.').all(valid_label) {
        return Err(format!(
            "expected a host name such as \"api.example.com\" or \"*.example.com\" \
             (a `*.` wildcard only at the start), got {s:?}"
        ));
    }
    Ok(if wildcard {
        HostMatch::Suffix(format!(".{name}"))
    } else {
        HostMatch::Exact(name.to_owned())
    })
}

fn path(s: String) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!("expected a path starting with \"/\", got {s:?}"));
    }
    if s.contains('?') || s.contains('#') || s.chars().any(|ch| ch.is_ascii_whitespace()) {
        return Err(format!(
            "a path is matched without its query; got {s:?} (no '?', '#' or spaces)"
        ));
    }
    Ok(s)
}

fn header_match(c: &mut Checker, raw: RawRouteHeader) -> Option<HeaderMatch> {
    let at = &raw.at;
    let name = c.required(at, "name", raw.name, |name| {
        if name.is_empty() {
            return Err("must not be empty".to_owned());
        }
        match name.chars().find(|&ch| !is_token_char(ch)) {
            Some(bad) => Err(format!(
                "header name {name:?} contains {bad:?}, which is not allowed in an HTTP \
                 header name (letters, digits and !#$%&'*+-.^_`|~ are)"
            )),
            None => Ok(name.to_ascii_lowercase()),
        }
    });
    let value = match raw.value {
        Slot::Missing => Some(None),
        Slot::Invalid => None,
        Slot::Set(field) => Some(Some(field.value)),
    };
    Some(HeaderMatch {
        name: name?.value,
        value: value?,
    })
}

/// Whether every request `later` matches is matched by `earlier` (so
/// `later`, coming after it, never gets one).
fn covers(earlier: &Route, later: &Route) -> bool {
    let host = match (&earlier.host, &later.host) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(HostMatch::Exact(a)), Some(HostMatch::Exact(b))) => a == b,
        (Some(HostMatch::Exact(_)), Some(HostMatch::Suffix(_))) => false,
        (Some(HostMatch::Suffix(a)), Some(HostMatch::Exact(b))) => {
            b.len() > a.len() && b.ends_with(a.as_str())
        }
        (Some(HostMatch::Suffix(a)), Some(HostMatch::Suffix(b))) => b.ends_with(a.as_str()),
    };
    let path = match (&earlier.path, &later.path) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(PathMatch::Prefix(a)), Some(PathMatch::Prefix(b) | PathMatch::Exact(b))) => {
            b.starts_with(a.as_str())
        }
        (Some(PathMatch::Exact(a)), Some(PathMatch::Exact(b))) => a == b,
        (Some(PathMatch::Exact(_)), Some(PathMatch::Prefix(_))) => false,
    };
    let header = match (&earlier.header, &later.header) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => a.name == b.name && (a.value.is_none() || a.value == b.value),
    };
    host && path && header
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, path: Option<PathMatch>, header: Option<(&str, &str)>) -> Route {
        Route {
            name: "r".into(),
            host: host.map(|h| host_match(h.to_owned()).unwrap()),
            path,
            header: header.map(|(name, value)| HeaderMatch {
                name: name.into(),
                value: (!value.is_empty()).then(|| value.into()),
            }),
            pool: "app".into(),
        }
    }

    #[test]
    fn hosts_parse_lower_case_with_wildcards() {
        assert_eq!(
            host_match("API.Example.com".into()),
            Ok(HostMatch::Exact("api.example.com".into()))
        );
        assert_eq!(
            host_match("*.example.com".into()),
            Ok(HostMatch::Suffix(".example.com".into()))
        );
        assert!(host_match("api.example.com:8080".into())
            .unwrap_err()
            .contains("without its port"));
        assert!(host_match("a.*.com".into()).is_err());
        assert!(host_match("*".into()).is_err());
        let wild = host_match("*.example.com".into()).unwrap();
        assert!(wild.matches(b"a.example.com"));
        assert!(wild.matches(b"b.a.example.com"));
        assert!(!wild.matches(b"example.com"));
        assert!(!wild.matches(b"aexample.com"));
    }

    #[test]
    fn an_earlier_wider_rule_covers_a_narrower_one() {
        let prefix = |p: &str| Some(PathMatch::Prefix(p.into()));
        let exact = |p: &str| Some(PathMatch::Exact(p.into()));
        let wide = route(Some("*.example.com"), prefix("/v1/"), None);
        assert!(covers(
            &wide,
            &route(Some("api.example.com"), exact("/v1/users"), None)
        ));
        assert!(covers(
            &wide,
            &route(Some("*.eu.example.com"), prefix("/v1/x"), Some(("x", "1")))
        ));
        assert!(!covers(
            &wide,
            &route(Some("example.com"), prefix("/v1/"), None)
        ));
        assert!(!covers(
            &wide,
            &route(Some("api.example.com"), prefix("/v2/"), None)
        ));
        assert!(!covers(&wide, &route(None, prefix("/v1/"), None)));
        let canary = route(None, None, Some(("x-canary", "")));
        assert!(covers(
            &canary,
            &route(None, prefix("/"), Some(("x-canary", "1")))
        ));
        assert!(!covers(
            &route(None, None, Some(("x-canary", "1"))),
            &route(None, None, Some(("x-canary", "")))
        ));
    }
}
