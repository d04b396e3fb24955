//! The two line formats. JSON lines all have the same keys (`null` where a
//! key does not apply), so log processors see one schema; plain lines read
//! like HAProxy's `httplog`, the request last because it is the only field
//! that may be long.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Duration;

use crate::record::{AccessRecord, Exchange};
use crate::rfc3339;

/// Append `record` as one JSON object and a line feed:
///
/// ```text
/// {"time":"2025-05-01T12:00:00.123Z","client":"10.0.0.7:51234","listener":"web","pool":"app","backend":"10.0.1.2:8080","protocol":"http","method":"GET","path":"/cart?id=7","status":200,"bytes":512,"duration_ms":1.234,"backend_ms":0.912,"retries":0}
/// ```
pub fn json_line(out: &mut String, record: &AccessRecord) {
    out.push_str("{\"time\":\"");
    rfc3339::write(out, record.time);
    let _ = write!(out, "\",\"client\":\"{}\",\"listener\":", record.client);
    json_string(out, &record.listener);
    out.push_str(",\"pool\":");
    json_string(out, &record.pool);
    out.push_str(",\"backend\":\"");
    if let Some(backend) = record.backend {
        let _ = write!(out, "{backend}");
    }
    match &record.exchange {
        Exchange::Http {
            method,
            target,
            status,
        } => {
            out.push_str("\",\"protocol\":\"http\",\"method\":");
            json_string(out, method.as_str());
            out.push_str(",\"path\":");
            json_string(out, &path(target));
            let _ = write!(out, ",\"status\":{status}");
        }
        Exchange::Tcp => {
            out.push_str("\",\"protocol\":\"tcp\",\"method\":null,\"path\":null,\"status\":null");
        }
    }
    let _ = write!(
        out,
        ",\"bytes\":{},\"duration_ms\":{:.3},\"backend_ms\":",
        record.bytes,
        millis(record.duration)
    );
    match record.backend_duration {
        Some(took) => {
            let _ = write!(out, "{:.3}", millis(took));
        }
        None => out.push_str("null"),
    }
    let _ = writeln!(out, ",\"retries\":{}}}", record.retries);
}

/// Append `record` as one line of text and a line feed:
///
/// ```text
/// 2025-05-01T12:00:00.123Z 10.0.0.7:51234 web app/10.0.1.2:8080 200 512B 1.234ms backend=0.912ms retries=0 "GET /cart?id=7"
/// 2025-05-01T12:00:00.456Z 10.0.0.7:51240 db pg/10.0.1.5:5432 tcp 20480B 5012.001ms backend=0.310ms retries=0
/// ```
///
/// A missing backend or backend time shows as `-`.
pub fn plain_line(out: &mut String, record: &AccessRecord) {
    rfc3339::write(out, record.time);
    let _ = write!(
        out,
        " {} {} {}/",
        record.client, record.listener, record.pool
    );
    match record.backend {
        Some(backend) => {
            let _ = write!(out, "{backend}");
        }
        None => out.push('-'),
    }
    match &record.exchange {
        Exchange::Http { status, .. } => {
            let _ = write!(out, " {status}");
        }
        Exchange::Tcp => out.push_str(" tcp"),
    }
    let _ = write!(
        out,
        " {}B {:.3}ms backend=",
        record.bytes,
        millis(record.duration)
    );
    match record.backend_duration {
        Some(took) => {
            let _ = write!(out, "{:.3}ms", millis(took));
        }
        None => out.push('-'),
    }
    let _ = write!(out, " retries={}", record.retries);
    if let Exchange::Http { method, target, .. } = &record.exchange {
        out.push_str(" \"");
        out.push_str(method.as_str());
        out.push(' ');
        for c in path(target).chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('\n');
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The path and query; the whole target when it has no path (`*`, or an
/// authority for CONNECT).
fn path(target: &http::Uri) -> Cow<'_, str> {
    match target.path_and_query() {
        Some(path) => Cow::Borrowed(path.as_str()),
        None => Cow::Owned(target.to_string()),
    }
}

fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn http_record() -> AccessRecord {
        AccessRecord {
            time: UNIX_EPOCH + Duration::from_millis(1_746_100_800_123),
            client: "10.0.0.7:51234".parse().unwrap(),
            listener: "web".into(),
            pool: "app".into(),
            backend: Some("10.0.1.2:8080".parse().unwrap()),
            exchange: Exchange::Http {
                method: http::Method::GET,
                target: "/cart?id=7".parse().unwrap(),
                status: 200,
            },
            bytes: 512,
            duration: Duration::from_micros(1234),
            backend_duration: Some(Duration::from_micros(912)),
            retries: 0,
        }
    }

    fn tcp_record() -> AccessRecord {
        AccessRecord {
            backend: None,
            exchange: Exchange::Tcp,
            backend_duration: None,
            retries: 2,
            bytes: 0,
            ..http_record()
        }
    }

    #[test]
    fn an_http_request_as_json() {
        let mut line = String::new();
        json_line(&mut line, &http_record());
        assert_eq!(
            line,
            "{\"time\":\"2025-05-01T12:00:00.123Z\",\"client\":\"10.0.0.7:51234\",\
             \"listener\":\"web\",\"pool\":\"app\",\"backend\":\"10.0.1.2:8080\",\
             \"protocol\":\"http\",\"method\":\"GET\",\"path\":\"/cart?id=7\",\"status\":200,\
             \"bytes\":512,\"duration_ms\":1.234,\"backend_ms\":0.912,\"retries\":0}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["status"], 200);
    }

    #[test]
    fn a_tcp_connection_without_backend_as_json() {
        let mut line = String::new();
        json_line(&mut line, &tcp_record());
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["protocol"], "tcp");
        assert_eq!(parsed["backend"], "");
        assert!(parsed["status"].is_null());
        assert!(parsed["method"].is_null());
        assert!(parsed["backend_ms"].is_null());
        assert_eq!(parsed["retries"], 2);
    }

    #[test]
    fn names_and_paths_are_escaped_in_json() {
        let mut record = http_record();
        record.listener = "we\"b\\\n\u{1}".into();
        record.exchange = Exchange::Http {
            method: http::Method::from_bytes(b"PURGE").unwrap(),
            target: "/a%22b?q={x}|y".parse().unwrap(),
            status: 502,
        };
        let mut line = String::new();
        json_line(&mut line, &record);
        assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["listener"], "we\"b\\\n\u{1}");
        assert_eq!(parsed["method"], "PURGE");
        assert_eq!(parsed["path"], "/a%22b?q={x}|y");
    }

    #[test]
    fn plain_lines() {
        let mut line = String::new();
        plain_line(&mut line, &http_record());
        assert_eq!(
            line,
            "2025-05-01T12:00:00.123Z 10.0.0.7:51234 web app/10.0.1.2:8080 200 512B 1.234ms \
             backend=0.912ms retries=0 \"GET /cart?id=7\"\n"
        );
        line.clear();
        plain_line(&mut line, &tcp_record());
        assert_eq!(
            line,
            "2025-05-01T12:00:00.123Z 10.0.0.7:51234 web app/- tcp 0B 1.234ms backend=- retries=2\n"
        );
    }

    #[test]
    fn a_target_without_path_is_shown_whole() {
        let target: http::Uri = "example.com:443".parse().unwrap();
        assert_eq!(path(&target), "example.com:443");
        let client: SocketAddr = "[::1]:8080".parse().unwrap();
        let mut record = http_record();
        record.client = client;
        let mut line = String::new();
        json_line(&mut line, &record);
        assert!(line.contains("\"client\":\"[::1]:8080\""), "{line}");
    }
}
