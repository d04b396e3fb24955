//! Durations as written in the config file: `"250ms"`, `"2s"`, `"1.5m"`, `"1h"`.

use std::time::Duration;

/// The longest duration any setting accepts. Anything longer is almost
/// certainly a typo (`"30h"` for `"30s"`), and a bound keeps timer math safe.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

const NANOS_PER_MS: u128 = 1_000_000;
const NANOS_PER_S: u128 = 1_000 * NANOS_PER_MS;

/// Parse a duration string such as `"250ms"`, `"2s"`, `"1.5m"` or `"1h"`.
///
/// The number is an integer or a decimal; the unit is one of `ms`, `s`, `m`,
/// `h`. The result must be greater than zero and at most 24h. The error is a
/// message for a person, e.g. `expected a duration such as "250ms", "2s" or
/// "1m", got "5 parsecs"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration such as \"250ms\", \"2s\" or \"1m\", got {s:?}");

    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(number_end);
    let unit_nanos = match unit {
        "ms" => NANOS_PER_MS,
        "s" => NANOS_PER_S,
        "m" => 60 * NANOS_PER_S,
        "h" => 3600 * NANOS_PER_S,
        "" if !number.is_empty() => {
            return Err(format!(
                "{}; add a unit: ms, s, m or h (e.g. \"{number}s\")",
                bad()
            ))
        }
        _ => return Err(bad()),
    };

    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !all_digits(whole)
        || !all_digits(fraction)
        || (number.contains('.') && fraction.is_empty())
    {
        return Err(bad());
    }

    let too_long = || format!("must be at most 24h, got {s:?}");
    // More than 20 digits cannot fit in u64 nanoseconds, let alone 24h.
    if whole.len() > 20 {
        return Err(too_long());
    }
    let whole: u128 = whole.parse().map_err(|_| bad())?;
    // Digits past nanosecond resolution cannot change the result.
    let fraction = &fraction[..fraction.len().min(18)];
    let fraction_nanos = if fraction.is_empty() {
        0
    } else {
        let digits: u128 = fraction.parse().map_err(|_| bad())?;
        digits * unit_nanos / 10u128.pow(fraction.len() as u32)
    };
    let nanos = whole * unit_nanos + fraction_nanos;

    if nanos == 0 {
        return Err(format!("must be greater than zero, got {s:?}"));
    }
    if nanos > MAX_DURATION.as_nanos() {
        return Err(too_long());
    }
    let secs = (nanos / NANOS_PER_S) as u64;
    let subsec = (nanos % NANOS_PER_S) as u32;
    Ok(Duration::new(secs, subsec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
    }

    #[test]
    fn accepts_decimals_exactly() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("0.25m"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_duration("007s"), Ok(Duration::from_secs(7)));
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "s",
            "5 parsecs",
            "5 s",
            " 5s",
            "5S",
            "-1s",
            "1.s",
            ".5s",
            "1..5s",
            "1.2.3s",
            "5d",
            "5sec",
            "1e3ms",
        ] {
            let err = parse_duration(s).unwrap_err();
            assert!(
                err.starts_with("expected a duration such as \"250ms\", \"2s\" or \"1m\", got"),
                "{s:?}: {err}"
            );
        }
        assert_eq!(
            parse_duration("5 parsecs").unwrap_err(),
            r#"expected a duration such as "250ms", "2s" or "1m", got "5 parsecs""#
        );
    }

    #[test]
    fn asks_for_a_missing_unit() {
        let err = parse_duration("5").unwrap_err();
        assert!(err.contains("add a unit"), "{err}");
        assert!(err.contains("\"5s\""), "{err}");
    }

    #[test]
    fn rejects_zero_and_too_long() {
        assert!(parse_duration("0s")
            .unwrap_err()
            .contains("greater than zero"));
        assert!(parse_duration("0.0ms")
            .unwrap_err()
            .contains("greater than zero"));
        assert!(parse_duration("25h").unwrap_err().contains("at most 24h"));
        assert!(parse_duration("86400.001s")
            .unwrap_err()
            .contains("at most 24h"));
        assert!(parse_duration("99999999999999999999999999h")
            .unwrap_err()
            .contains("at most 24h"));
    }
}
