//! Validation of how a pool finds failed backends: `[pool.health_check]`
//! (active checks) and `[pool.outlier_detection]` (real traffic as the
//! signal).

use super::checker::{at_line, duration, int_in, non_empty, one_of, Checker};
use crate::raw::{Field, Header, RawHealthCheck, RawOutlierDetection, RawStatus, Slot};
use crate::{HealthCheck, HealthCheckKind, OutlierDetection};

const MAX_RISE_FALL: i64 = 100;
const MAX_CONSECUTIVE_FAILURES: i64 = 1000;
const STATUS_FORMS: &str = r#"a status or range such as "200" or "200-399""#;
const MIN_STATUS: i64 = 100;
const MAX_STATUS: i64 = 599;

pub(super) fn health_check(c: &mut Checker, raw: RawHealthCheck) -> Option<HealthCheck> {
    let at = &raw.at;
    let defaults = HealthCheck::default();
    let kind_written = matches!(raw.kind, Slot::Set(_));
    let kind = c.optional(
        at,
        "kind",
        raw.kind,
        HealthCheckKind::Tcp,
        one_of(
            "health check kind",
            &HealthCheckKind::ALL,
            HealthCheckKind::as_str,
        ),
    );
    // Why an HTTP-only key is refused here, when it is; `None` while the
    // kind is HTTP or unknown (a bad kind is already reported).
    let not_http = kind
        .as_ref()
        .filter(|kind| kind.value != HealthCheckKind::Http)
        .map(|kind| {
            let default_note = if kind_written {
                ""
            } else {
                ", the default when kind is not set"
            };
            format!(
                "this check is kind = \"{}\"{default_note}",
                kind.value.as_str()
            )
        });
    let not_http = not_http.as_deref();

    let path = http_only(c, at, "path", raw.path, not_http);
    let path = c.optional(at, "path", path, defaults.path, |path| {
        if !path.starts_with('/') {
            Err(format!("must start with \"/\", got {path:?}"))
        } else if path.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
            Err(format!(
                "must not contain spaces or control characters, got {path:?}"
            ))
        } else {
            Ok(path)
        }
    });
    let interval = c.optional(at, "interval", raw.interval, defaults.interval, duration);
    let timeout = c.optional(at, "timeout", raw.timeout, defaults.timeout, duration);
    let rise = c.optional(
        at,
        "rise",
        raw.rise,
        defaults.rise,
        int_in(1, MAX_RISE_FALL),
    );
    let fall = c.optional(
        at,
        "fall",
        raw.fall,
        defaults.fall,
        int_in(1, MAX_RISE_FALL),
    );
    let port = c.optional(at, "port", raw.port, defaults.port, |n| {
        int_in(1, 65535)(n).map(Some)
    });
    let method = http_only(c, at, "method", raw.method, not_http);
    let method = c.optional(at, "method", method, defaults.method, method_name);
    let host = http_only(c, at, "host", raw.host, not_http);
    let host = c.optional(at, "host", host, defaults.host, |s| {
        host_header(s).map(Some)
    });
    let expect_status = http_only(c, at, "expect_status", raw.expect_status, not_http);
    let expect_status = c.optional(
        at,
        "expect_status",
        expect_status,
        defaults.expect_status,
        status_range,
    );
    let expect_body = http_only(c, at, "expect_body", raw.expect_body, not_http);
    let expect_body = c.optional(at, "expect_body", expect_body, defaults.expect_body, |s| {
        non_empty(s).map(Some)
    });

    let database = super::db::database_check(
        c,
        at,
        kind.as_ref().map(|kind| kind.value),
        kind_written,
        super::db::RawDatabaseKeys {
            role: raw.role,
            user: raw.user,
            password: raw.password,
            password_env: raw.password_env,
            database: raw.database,
        },
    );

    Some(HealthCheck {
        database: database?,
        kind: kind?.value,
        path: path?.value,
        interval: interval?.value,
        timeout: timeout?.value,
        rise: rise?.value,
        fall: fall?.value,
        port: port?.value,
        method: method?.value,
        host: host?.value,
        expect_status: expect_status?.value,
        expect_body: expect_body?.value,
    })
}

/// A key that only HTTP checks use, written on a check of another kind
/// (`not_http` says which): reported, and its value is not checked further.
/// A key left out is fine whatever the kind.
fn http_only<T>(
    c: &mut Checker,
    at: &Header,
    key: &str,
    slot: Slot<T>,
    not_http: Option<&str>,
) -> Slot<T> {
    match (slot, not_http) {
        (Slot::Set(field), Some(why)) => {
            let message = format!(
                "{key} only applies to kind = \"http\"; {why} (remove {key} or set kind = \"http\")"
            );
            c.error(at.path_of(key), field.line, message);
            Slot::Invalid
        }
        (slot, _) => slot,
    }
}

/// `GET` or `HEAD`, in any case; stored upper-case.
fn method_name(s: String) -> Result<String, String> {
    let upper = s.to_ascii_uppercase();
    match upper.as_str() {
        "GET" | "HEAD" => Ok(upper),
        _ => Err(format!("expected \"GET\" or \"HEAD\", got {s:?}")),
    }
}

/// A Host header value: `uri-host [":" port]` (RFC 9110 §7.2), so only the
/// characters a host name, an IP literal or a port can hold. Anything else,
/// spaces and control characters above all, would corrupt the request.
fn host_header(s: String) -> Result<String, String> {
    const ALLOWED_PUNCTUATION: &str = "-._~!$&'()*+,;=:[]%";
    if s.is_empty() {
        return Err("must not be empty".to_owned());
    }
    match s
        .chars()
        .find(|&ch| !(ch.is_ascii_alphanumeric() || ALLOWED_PUNCTUATION.contains(ch)))
    {
        Some(bad) => Err(format!(
            "host {s:?} contains {bad:?}, which is not allowed in a Host header \
             (letters, digits and {ALLOWED_PUNCTUATION} are; write an international \
             name in its xn-- form)"
        )),
        None => Ok(s),
    }
}

/// `200`, `"200"` or `"200-399"` → the inclusive range of passing statuses.
fn status_range(raw: RawStatus) -> Result<(u16, u16), String> {
    let text = match raw {
        RawStatus::Code(code) => {
            let status = status_in_range(code)
                .ok_or_else(|| format!("expected a status from 100 to 599, got {code}"))?;
            return Ok((status, status));
        }
        RawStatus::Text(text) => text,
    };
    let bad_form = || format!("expected {STATUS_FORMS}, got {text:?}");
    let (low, high) = match text.split_once('-') {
        Some((low, high)) => (low.trim(), high.trim()),
        None => (text.trim(), text.trim()),
    };
    let number = |part: &str| -> Option<i64> {
        // A length cap keeps the parse from overflowing; range checks follow.
        let digits =
            !part.is_empty() && part.len() <= 9 && part.bytes().all(|b| b.is_ascii_digit());
        digits.then(|| part.parse().ok()).flatten()
    };
    let (Some(low), Some(high)) = (number(low), number(high)) else {
        return Err(bad_form());
    };
    let (Some(low), Some(high)) = (status_in_range(low), status_in_range(high)) else {
        return Err(format!(
            "expected statuses from {MIN_STATUS} to {MAX_STATUS}, got {text:?}"
        ));
    };
    if low > high {
        return Err(format!(
            "the range {text:?} starts above where it ends; write \"{high}-{low}\""
        ));
    }
    Ok((low, high))
}

fn status_in_range(n: i64) -> Option<u16> {
    (MIN_STATUS..=MAX_STATUS)
        .contains(&n)
        .then(|| u16::try_from(n).ok())
        .flatten()
}

pub(super) fn outlier_detection(
    c: &mut Checker,
    raw: RawOutlierDetection,
) -> Option<OutlierDetection> {
    let at = &raw.at;
    let defaults = OutlierDetection::default();
    let consecutive_failures = c.optional(
        at,
        "consecutive_failures",
        raw.consecutive_failures,
        defaults.consecutive_failures,
        int_in(0, MAX_CONSECUTIVE_FAILURES),
    );
    let base_written = matches!(raw.base_ejection, Slot::Set(_));
    let base_ejection = c.optional(
        at,
        "base_ejection",
        raw.base_ejection,
        defaults.base_ejection,
        duration,
    );
    let max_ejection_percent = c.optional(
        at,
        "max_ejection_percent",
        raw.max_ejection_percent,
        defaults.max_ejection_percent,
        int_in(0, 100),
    );
    let max_written = matches!(raw.max_ejection, Slot::Set(_));
    let max_ejection = c.optional(
        at,
        "max_ejection",
        raw.max_ejection,
        defaults.max_ejection,
        duration,
    );
    let max_ejection = match (max_ejection, &base_ejection) {
        (Some(max), Some(base)) if max.value < base.value => {
            if max_written {
                let base_at = if base_written {
                    at_line(base.line)
                } else {
                    " (the default)".to_owned()
                };
                let message = format!(
                    "max_ejection {:?} is shorter than base_ejection {:?}{base_at}; an \
                     ejection lasts base_ejection × the backend's ejection count, at most \
                     max_ejection, so max_ejection must be at least base_ejection",
                    max.value, base.value
                );
                c.error(at.path_of("max_ejection"), max.line, message);
                None
            } else {
                // Left out, the cap never cuts a longer base_ejection short
                // (as Envoy's max_ejection_time does).
                Some(Field {
                    value: base.value,
                    line: max.line,
                })
            }
        }
        (max, _) => max,
    };
    let count_5xx = c.optional(at, "count_5xx", raw.count_5xx, defaults.count_5xx, Ok);
    Some(OutlierDetection {
        consecutive_failures: consecutive_failures?.value,
        base_ejection: base_ejection?.value,
        max_ejection_percent: max_ejection_percent?.value,
        max_ejection: max_ejection?.value,
        count_5xx: count_5xx?.value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<(u16, u16), String> {
        status_range(RawStatus::Text(s.to_owned()))
    }

    #[test]
    fn status_ranges() {
        assert_eq!(text("200-399"), Ok((200, 399)));
        assert_eq!(text("200"), Ok((200, 200)));
        assert_eq!(text(" 200 - 204 "), Ok((200, 204)));
        assert_eq!(text("100-599"), Ok((100, 599)));
        assert_eq!(status_range(RawStatus::Code(204)), Ok((204, 204)));
    }

    #[test]
    fn bad_status_forms() {
        for s in [
            "",
            "2xx",
            "200-",
            "-399",
            "200-300-400",
            "+200",
            "200,204",
            "1e2",
        ] {
            assert_eq!(
                text(s),
                Err(format!("expected {STATUS_FORMS}, got {s:?}")),
                "{s:?}"
            );
        }
        assert_eq!(
            text("99999999999999999999"),
            Err(format!(
                "expected {STATUS_FORMS}, got \"99999999999999999999\""
            ))
        );
    }

    #[test]
    fn status_bounds_and_order() {
        assert!(text("099").unwrap_err().contains("from 100 to 599"));
        assert!(text("200-600").unwrap_err().contains("from 100 to 599"));
        assert_eq!(
            status_range(RawStatus::Code(600)),
            Err("expected a status from 100 to 599, got 600".to_owned())
        );
        assert_eq!(
            text("399-200"),
            Err(r#"the range "399-200" starts above where it ends; write "200-399""#.to_owned())
        );
    }

    #[test]
    fn methods() {
        assert_eq!(method_name("head".into()), Ok("HEAD".into()));
        assert_eq!(method_name("Get".into()), Ok("GET".into()));
        assert_eq!(
            method_name("POST".into()),
            Err(r#"expected "GET" or "HEAD", got "POST""#.into())
        );
    }

    #[test]
    fn host_headers() {
        for ok in [
            "example.com",
            "api.example.com:8443",
            "[::1]:80",
            "10.0.0.1",
        ] {
            assert_eq!(host_header(ok.into()), Ok(ok.into()));
        }
        assert_eq!(host_header(String::new()), Err("must not be empty".into()));
        assert!(host_header("my host".into()).unwrap_err().contains("' '"));
        assert!(host_header("a\r\nX-Evil: 1".into())
            .unwrap_err()
            .contains("'\\r'"));
        assert!(host_header("example.com/healthz".into())
            .unwrap_err()
            .contains("'/'"));
        assert!(host_header("bücher.de".into())
            .unwrap_err()
            .contains("xn--"));
    }
}
