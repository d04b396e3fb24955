//! The Prometheus text exposition format, version 0.0.4: `# HELP` and
//! `# TYPE` once per family, then its samples, label values escaped.
//! Written by hand: the admin endpoint renders the cells it walks, and no
//! registry or lock is needed.

use std::fmt::Write as _;

use crate::cells::HistogramSnapshot;

/// The content type of [`Exposition`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; its name ends in `_total`.
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A scrape's text, built family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// One family being written; its samples follow its `# HELP`/`# TYPE`.
#[derive(Debug)]
pub struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

/// A sample's value, written as Prometheus reads it.
pub trait SampleValue {
    fn write_to(&self, out: &mut String);
}

impl SampleValue for u64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl SampleValue for i64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl SampleValue for f64 {
    fn write_to(&self, out: &mut String) {
        write_float(out, *self);
    }
}

impl Exposition {
    pub fn new() -> Self {
        Exposition::default()
    }

    /// Start a family. `name` must be a valid metric name and, for a
    /// counter, end in `_total`; `help` may hold any text.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &str) -> Family<'_> {
        debug_assert!(is_valid_name(name), "bad metric name {name:?}");
        debug_assert!(
            kind != Kind::Counter || name.ends_with("_total"),
            "counter {name:?} must end in _total"
        );
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        escape_help(&mut self.out, help);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
        Family {
            out: &mut self.out,
            name,
        }
    }

    pub fn into_string(self) -> String {
        self.out
    }
}

impl Family<'_> {
    /// One sample of a counter or gauge.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl SampleValue) {
        self.line("", labels, None, &value);
    }

    /// A histogram's `_bucket` (one per bound, `+Inf` last), `_sum` and
    /// `_count` samples.
    pub fn histogram(&mut self, labels: &[(&str, &str)], snapshot: &HistogramSnapshot) {
        let mut bound = String::new();
        for (le, count) in snapshot.buckets() {
            bound.clear();
            write_float(&mut bound, le);
            self.line("_bucket", labels, Some(&bound), &count);
        }
        self.line("_sum", labels, None, &snapshot.sum_seconds);
        self.line("_count", labels, None, &snapshot.count());
    }

    fn line(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        le: Option<&str>,
        value: &dyn SampleValue,
    ) {
        let out = &mut *self.out;
        out.push_str(self.name);
        out.push_str(suffix);
        let extra = le.map(|le| ("le", le));
        let mut all = labels.iter().copied().chain(extra).peekable();
        if all.peek().is_some() {
            out.push('{');
            for (i, (name, value)) in all.enumerate() {
                debug_assert!(is_valid_label_name(name), "bad label name {name:?}");
                if i > 0 {
                    out.push(',');
                }
                out.push_str(name);
                out.push_str("=\"");
                escape_label_value(out, value);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        value.write_to(out);
        out.push('\n');
    }
}

/// `\` and line feed, escaped as the format asks for HELP text.
fn escape_help(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `\`, `"` and line feed, escaped as the format asks for label values.
fn escape_label_value(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_float(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // Rust's Display never uses an exponent and round-trips exactly.
        let _ = write!(out, "{value}");
    }
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Histogram;

    #[test]
    fn counters_and_gauges_get_help_type_and_labelled_samples() {
        let mut text = Exposition::new();
        let mut family = text.family("halb_things_total", Kind::Counter, "Things seen.");
        family.sample(&[("pool", "app"), ("code", "2xx")], 7u64);
        family.sample(&[("pool", "app"), ("code", "5xx")], 0u64);
        text.family("halb_up", Kind::Gauge, "Whether it runs.")
            .sample(&[], 1i64);
        assert_eq!(
            text.into_string(),
            "# HELP halb_things_total Things seen.\n\
             # TYPE halb_things_total counter\n\
             halb_things_total{pool=\"app\",code=\"2xx\"} 7\n\
             halb_things_total{pool=\"app\",code=\"5xx\"} 0\n\
             # HELP halb_up Whether it runs.\n\
             # TYPE halb_up gauge\n\
             halb_up 1\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut text = Exposition::new();
        text.family("halb_x", Kind::Gauge, "a \\ back\nslash")
            .sample(&[("name", "q\"uo\\te\nnl")], 1.5f64);
        assert_eq!(
            text.into_string(),
            "# HELP halb_x a \\\\ back\\nslash\n\
             # TYPE halb_x gauge\n\
             halb_x{name=\"q\\\"uo\\\\te\\nnl\"} 1.5\n"
        );
    }

    #[test]
    fn special_floats() {
        let mut out = String::new();
        for value in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0001,
            2.5,
            60.0,
        ] {
            write_float(&mut out, value);
            out.push(' ');
        }
        assert_eq!(out, "NaN +Inf -Inf 0.0001 2.5 60 ");
    }

    #[test]
    fn histograms_have_cumulative_buckets_sum_and_count() {
        let histogram = Histogram::new();
        histogram.observe(Duration::from_micros(80));
        histogram.observe(Duration::from_millis(2));
        histogram.observe(Duration::from_secs(100));
        let mut text = Exposition::new();
        text.family("halb_latency_seconds", Kind::Histogram, "Latency.")
            .histogram(&[("listener", "web")], &histogram.snapshot());
        let text = text.into_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# HELP halb_latency_seconds Latency.");
        assert_eq!(lines[1], "# TYPE halb_latency_seconds histogram");
        assert_eq!(
            lines[2],
            "halb_latency_seconds_bucket{listener=\"web\",le=\"0.0001\"} 1"
        );
        assert!(lines.contains(&"halb_latency_seconds_bucket{listener=\"web\",le=\"0.0025\"} 2"));
        assert!(lines.contains(&"halb_latency_seconds_bucket{listener=\"web\",le=\"60\"} 2"));
        assert!(lines.contains(&"halb_latency_seconds_bucket{listener=\"web\",le=\"+Inf\"} 3"));
        assert!(lines.contains(&"halb_latency_seconds_count{listener=\"web\"} 3"));
        let sum = lines
            .iter()
            .find_map(|l| l.strip_prefix("halb_latency_seconds_sum{listener=\"web\"} "))
            .expect("a _sum line");
        assert!((sum.parse::<f64>().unwrap() - 100.00208).abs() < 1e-9);
        // 19 buckets, sum, count, after HELP and TYPE.
        assert_eq!(lines.len(), 2 + 19 + 2);
    }

    #[test]
    fn names_are_checked() {
        assert!(is_valid_name("halb_requests_total"));
        assert!(is_valid_name("a:b"));
        assert!(!is_valid_name("9lives"));
        assert!(!is_valid_name("with-dash"));
        assert!(is_valid_label_name("le"));
        assert!(!is_valid_label_name("a:b"));
    }
}
