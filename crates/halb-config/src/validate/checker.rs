//! The error collector used by validation, and the conversions from raw
//! values (strings, integers) to model values, each with an SRE-readable
//! message when the value is wrong.

use std::net::SocketAddr;
use std::time::Duration;

use crate::raw::{Field, Header, Slot};
use crate::suggest::did_you_mean;
use crate::{parse_duration, ConfigError};

/// Collects every validation error; validation goes on after each one.
pub(super) struct Checker {
    pub errors: Vec<ConfigError>,
    /// A pool may have no `[[pool.backend]]`: the shared config in etcd,
    /// whose backends may all be registered at run time.
    pub backends_optional: bool,
}

impl Checker {
    pub fn error(&mut self, path: String, line: Option<usize>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path,
            line,
            message: message.into(),
        });
    }

    /// Convert a present value; on failure report at `path` and the value's line.
    pub fn check<T, U>(
        &mut self,
        path: String,
        field: Field<T>,
        convert: impl FnOnce(T) -> Result<U, String>,
    ) -> Option<Field<U>> {
        match convert(field.value) {
            Ok(value) => Some(Field {
                value,
                line: field.line,
            }),
            Err(message) => {
                self.error(path, field.line, message);
                None
            }
        }
    }

    /// A key that must be present; a missing one is reported at the table header.
    pub fn required<T, U>(
        &mut self,
        at: &Header,
        key: &str,
        slot: Slot<T>,
        convert: impl FnOnce(T) -> Result<U, String>,
    ) -> Option<Field<U>> {
        match slot {
            Slot::Set(field) => self.check(at.path_of(key), field, convert),
            Slot::Invalid => None,
            Slot::Missing => {
                let message = format!("missing required key `{key}`");
                self.error(at.path_of(key), at.line, message);
                None
            }
        }
    }

    /// A key with a default; the default's line is the table header's.
    pub fn optional<T, U>(
        &mut self,
        at: &Header,
        key: &str,
        slot: Slot<T>,
        default: U,
        convert: impl FnOnce(T) -> Result<U, String>,
    ) -> Option<Field<U>> {
        match slot {
            Slot::Set(field) => self.check(at.path_of(key), field, convert),
            Slot::Invalid => None,
            Slot::Missing => Some(Field {
                value: default,
                line: at.line,
            }),
        }
    }
    /// A key without a default: `Some(None)` when absent, `None` when bad.
    pub fn if_set<T, U>(
        &mut self,
        at: &Header,
        key: &str,
        slot: Slot<T>,
        convert: impl FnOnce(T) -> Result<U, String>,
    ) -> Option<Option<U>> {
        match slot {
            Slot::Missing => Some(None),
            Slot::Invalid => None,
            Slot::Set(field) => self
                .check(at.path_of(key), field, convert)
                .map(|f| Some(f.value)),
        }
    }
}

/// A file path: any non-empty string (the file is read where it is used).
pub(super) fn file_path(path: String) -> Result<std::path::PathBuf, String> {
    non_empty(path).map(std::path::PathBuf::from)
}

/// A DNS host name: dot-separated labels of letters, digits and inner
/// hyphens, each 1 to 63 bytes, 253 in all.
pub(super) fn is_dns_name(name: &str) -> bool {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)
}

/// `" (line 12)"`, or nothing when the line is unknown.
pub(super) fn at_line(line: Option<usize>) -> String {
    line.map(|line| format!(" (line {line})"))
        .unwrap_or_default()
}

pub(super) fn non_empty(s: String) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(s)
    }
}

/// An `ip:port` socket address. Host names are refused: resolving them would
/// make the config's meaning depend on DNS at load time.
pub(super) fn socket_addr(s: String) -> Result<SocketAddr, String> {
    ip_socket_addr(s, " (host names are not accepted; use an IP address)")
}

/// As [`socket_addr`]; `not_an_ip` ends the message when the host part is
/// neither an IP address nor anything else recognisable (where host names
/// are accepted, the caller has tried them first and passes "").
pub(super) fn ip_socket_addr(s: String, not_an_ip: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let expected = format!(
        "expected a socket address \"ip:port\" such as \"127.0.0.1:8080\" or \"[::1]:8080\", got {s:?}"
    );
    let hint = match s.rsplit_once(':') {
        None => " (the port is missing)",
        Some(_) if s.starts_with('[') && s.ends_with(']') => " (the port is missing)",
        Some((host, port)) if port.parse::<u16>().is_err() => {
            if host.is_empty() {
                " (the IP address is missing)"
            } else {
                " (the port must be a number from 0 to 65535)"
            }
        }
        Some(("", _)) => " (the IP address is missing)",
        Some((host, _)) if host.contains(':') && !host.starts_with('[') => {
            " (put an IPv6 address in brackets: \"[::1]:8080\")"
        }
        Some(_) => not_an_ip,
    };
    Err(format!("{expected}{hint}"))
}

pub(super) fn duration(s: String) -> Result<Duration, String> {
    parse_duration(&s)
}

/// An integer within `min..=max`, converted to the model's type.
pub(super) fn int_in<U: TryFrom<i64>>(min: i64, max: i64) -> impl FnOnce(i64) -> Result<U, String> {
    move |n| {
        let out_of_range = || format!("expected an integer from {min} to {max}, got {n}");
        if !(min..=max).contains(&n) {
            return Err(out_of_range());
        }
        U::try_from(n).map_err(|_| out_of_range())
    }
}

/// One of a fixed set of names, e.g. an algorithm.
pub(super) fn one_of<E: Copy>(
    what: &'static str,
    choices: &'static [E],
    name: fn(E) -> &'static str,
) -> impl FnOnce(String) -> Result<E, String> {
    move |s| {
        if let Some(&choice) = choices.iter().find(|&&c| name(c) == s) {
            return Ok(choice);
        }
        let names: Vec<&str> = choices.iter().map(|&c| name(c)).collect();
        let suggestion = did_you_mean(&s, &names)
            .map(|n| format!(" (did you mean \"{n}\"?)"))
            .unwrap_or_default();
        Err(format!(
            "unknown {what} {s:?}{suggestion}; expected one of: {}",
            names.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Algorithm;

    #[test]
    fn socket_addr_explains_common_mistakes() {
        let hint = |s: &str| socket_addr(s.to_owned()).unwrap_err();
        assert!(hint("localhost:80").contains("host names are not accepted"));
        assert!(hint("127.0.0.1").contains("port is missing"));
        assert!(hint("[::1]").contains("port is missing"));
        assert!(hint("127.0.0.1:http").contains("port must be a number"));
        assert!(hint("127.0.0.1:70000").contains("port must be a number"));
        assert!(hint(":80").contains("IP address is missing"));
        assert!(hint("::1:80").contains("brackets"));
        assert_eq!(
            socket_addr("[::1]:80".to_owned()),
            Ok("[::1]:80".parse().unwrap())
        );
    }

    #[test]
    fn int_in_checks_bounds() {
        assert_eq!(int_in::<u32>(0, 10)(10), Ok(10));
        assert_eq!(
            int_in::<u32>(0, 10)(-1),
            Err("expected an integer from 0 to 10, got -1".to_owned())
        );
    }

    #[test]
    fn one_of_lists_choices_and_suggests() {
        let parse = |s: &str| one_of("algorithm", &Algorithm::ALL, Algorithm::as_str)(s.to_owned());
        assert_eq!(parse("maglev"), Ok(Algorithm::Maglev));
        let err = parse("roundrobin").unwrap_err();
        assert!(err.contains("did you mean \"round_robin\"?"), "{err}");
        assert!(err.contains("peak_ewma, maglev"), "{err}");
    }
}
