//! Validation of `[log]` (halb's own logs) and `[access_log]` (one line per
//! request or connection).

use std::path::PathBuf;

use super::checker::{non_empty, one_of, Checker};
use crate::raw::{RawAccessLog, RawLog};
use crate::suggest::did_you_mean;
use crate::{AccessLog, AccessLogFormat, Log};

const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
/// `path = "stdout"` says what leaving `path` out does.
const STDOUT: &str = "stdout";

pub(super) fn log(c: &mut Checker, raw: RawLog) -> Option<Log> {
    let level = c.optional(&raw.at, "level", raw.level, None, |filter| {
        log_filter(filter).map(Some)
    })?;
    Some(Log { level: level.value })
}

pub(super) fn access_log(c: &mut Checker, raw: RawAccessLog) -> Option<AccessLog> {
    let at = &raw.at;
    let format = c.optional(
        at,
        "format",
        raw.format,
        AccessLogFormat::Json,
        one_of(
            "access log format",
            &AccessLogFormat::ALL,
            AccessLogFormat::as_str,
        ),
    );
    let path = c.optional(at, "path", raw.path, None, |path| {
        let path = non_empty(path)?;
        Ok((path != STDOUT).then(|| PathBuf::from(path)))
    });
    Some(AccessLog {
        format: format?.value,
        path: path?.value,
    })
}

/// A tracing filter: comma-separated directives, each a level or
/// `target=level`. Checked lightly (no span or field filters) so that a typo
/// is caught at load time rather than silently logging nothing. Spaces around
/// directives are dropped.
fn log_filter(filter: String) -> Result<String, String> {
    let filter = non_empty(filter)?;
    let mut directives = Vec::new();
    for directive in filter.split(',').map(str::trim) {
        if directive.is_empty() {
            return Err(format!(
                "empty directive in {filter:?} (a stray comma?); expected directives \
                 such as \"info\" or \"halb_proxy=debug\", separated by commas"
            ));
        }
        let (target, level) = match directive.split_once('=') {
            Some((target, level)) => (Some(target), level),
            None => (None, directive),
        };
        if let Some(target) = target {
            let target_ok = !target.is_empty()
                && target
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
            if !target_ok {
                return Err(format!(
                    "bad directive {directive:?} in the log filter: the target {target:?} \
                     must be letters, digits, \"_\" and \"::\", such as \"halb_proxy\" \
                     or \"halb_proxy::http\""
                ));
            }
        }
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            let suggestion = did_you_mean(level, LEVELS)
                .map(|l| format!(" (did you mean \"{l}\"?)"))
                .unwrap_or_default();
            return Err(format!(
                "bad directive {directive:?} in the log filter: unknown level {level:?}\
                 {suggestion}; a directive is a level ({}) or target=level, such as \
                 \"halb_proxy=debug\"",
                LEVELS.join(", ")
            ));
        }
        directives.push(directive);
    }
    Ok(directives.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(s: &str) -> Result<String, String> {
        log_filter(s.to_owned())
    }

    #[test]
    fn accepts_levels_and_targets() {
        assert_eq!(filter("info"), Ok("info".to_owned()));
        assert_eq!(filter("WARN"), Ok("WARN".to_owned()));
        assert_eq!(
            filter("halb_proxy=debug, halb_health::probe=trace ,info"),
            Ok("halb_proxy=debug,halb_health::probe=trace,info".to_owned())
        );
        assert_eq!(filter("off"), Ok("off".to_owned()));
    }

    #[test]
    fn names_the_bad_directive() {
        let err = filter("info,verbose").unwrap_err();
        assert!(err.contains("directive \"verbose\""), "{err}");
        assert!(filter("debg")
            .unwrap_err()
            .contains("did you mean \"debug\"?"));
        let err = filter("halb-proxy=debug").unwrap_err();
        assert!(err.contains("\"halb-proxy=debug\""), "{err}");
        assert!(err.contains("target \"halb-proxy\""), "{err}");
        assert!(filter("=debug").unwrap_err().contains("target \"\""));
        assert!(filter("halb=").unwrap_err().contains("unknown level \"\""));
        assert!(filter("info,,debug").unwrap_err().contains("stray comma"));
        assert_eq!(filter(""), Err("must not be empty".to_owned()));
    }
}
