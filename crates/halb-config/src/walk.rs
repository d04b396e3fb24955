//! Reading: TOML text → [`RawConfig`]. The document is walked by hand against
//! the schema so that every unknown key and every wrong type is reported,
//! each with its key path and line (serde would stop at the first).

use std::ops::Range;

use toml_edit::{ImDocument, Item, TableLike, Value};

use crate::raw::{
    Field, Header, RawAdmin, RawBackend, RawConfig, RawHealthCheck, RawListener,
    RawOutlierDetection, RawPool, RawRetryBudget, RawRuntime, RawStatus, Slot,
};
use crate::suggest::did_you_mean;
use crate::ConfigError;

const ROOT_KEYS: &[&str] = &["runtime", "admin", "listener", "pool"];
const RUNTIME_KEYS: &[&str] = &["workers"];
const ADMIN_KEYS: &[&str] = &["bind", "token"];
const LISTENER_KEYS: &[&str] = &[
    "name",
    "bind",
    "protocol",
    "pool",
    "request_head_timeout",
    "idle_timeout",
    "max_header_bytes",
];
const POOL_KEYS: &[&str] = &[
    "name",
    "algorithm",
    "hash_key",
    "retries",
    "connect_timeout",
    "timeout",
    "drain_timeout",
    "slow_start",
    "panic_threshold",
    "health_check",
    "outlier_detection",
    "retry_budget",
    "backend",
];
const HEALTH_CHECK_KEYS: &[&str] = &[
    "kind",
    "path",
    "interval",
    "timeout",
    "rise",
    "fall",
    "port",
    "method",
    "host",
    "expect_status",
    "expect_body",
];
const OUTLIER_DETECTION_KEYS: &[&str] = &[
    "consecutive_failures",
    "base_ejection",
    "max_ejection_percent",
    "max_ejection",
    "count_5xx",
];
const RETRY_BUDGET_KEYS: &[&str] = &["percent", "min_per_second"];
const BACKEND_KEYS: &[&str] = &["address", "weight", "backup"];

/// Read a config file. A TOML syntax error is the single error returned as
/// `Err`; otherwise the raw config comes back with every reading error.
pub(crate) fn read(text: &str) -> Result<(RawConfig, Vec<ConfigError>), ConfigError> {
    let lines = Lines::new(text);
    let document = ImDocument::parse(text).map_err(|error| ConfigError {
        path: String::new(),
        line: error.span().map(|span| lines.line_of(span.start)),
        message: format!(
            "invalid TOML: {}",
            error.message().trim().replace('\n', "; ")
        ),
    })?;

    let mut walker = Walker {
        lines,
        errors: Vec::new(),
    };
    let root = Table {
        entries: document.as_table(),
        at: Header {
            path: String::new(),
            line: None,
        },
    };
    let raw = walker.config(&root);
    Ok((raw, walker.errors))
}

/// Byte offset → 1-based line number.
struct Lines {
    /// Byte offset of the start of every line after the first.
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Self {
        let starts = text.match_indices('\n').map(|(at, _)| at + 1).collect();
        Lines { starts }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset) + 1
    }
}

/// A TOML table (standard, inline or dotted) and where it is.
struct Table<'doc> {
    entries: &'doc dyn TableLike,
    at: Header,
}

struct Walker {
    lines: Lines,
    errors: Vec<ConfigError>,
}

impl Walker {
    fn config(&mut self, root: &Table<'_>) -> RawConfig {
        self.reject_unknown_keys(root, ROOT_KEYS);
        let runtime = match self.table(root, "runtime") {
            Slot::Set(table) => self.runtime(&table.value),
            Slot::Missing | Slot::Invalid => RawRuntime {
                at: Header {
                    path: "runtime".to_owned(),
                    line: None,
                },
                workers: Slot::Missing,
            },
        };
        let admin = self.table(root, "admin").map(|table| self.admin(table));
        let listeners = self
            .array_of_tables(root, "listener")
            .map(|tables| tables.iter().map(|t| self.listener(t)).collect());
        let pools = self
            .array_of_tables(root, "pool")
            .map(|tables| tables.iter().map(|t| self.pool(t)).collect());
        RawConfig {
            root: root.at.clone(),
            runtime,
            admin,
            listeners,
            pools,
        }
    }

    fn runtime(&mut self, table: &Table<'_>) -> RawRuntime {
        self.reject_unknown_keys(table, RUNTIME_KEYS);
        RawRuntime {
            at: table.at.clone(),
            workers: self.integer(table, "workers"),
        }
    }

    fn admin(&mut self, table: &Table<'_>) -> RawAdmin {
        self.reject_unknown_keys(table, ADMIN_KEYS);
        RawAdmin {
            at: table.at.clone(),
            bind: self.string(table, "bind"),
            token: self.string(table, "token"),
        }
    }

    fn listener(&mut self, table: &Table<'_>) -> RawListener {
        self.reject_unknown_keys(table, LISTENER_KEYS);
        RawListener {
            at: table.at.clone(),
            name: self.string(table, "name"),
            bind: self.string(table, "bind"),
            protocol: self.string(table, "protocol"),
            pool: self.string(table, "pool"),
            request_head_timeout: self.duration(table, "request_head_timeout"),
            idle_timeout: self.duration(table, "idle_timeout"),
            max_header_bytes: self.integer(table, "max_header_bytes"),
        }
    }

    fn pool(&mut self, table: &Table<'_>) -> RawPool {
        self.reject_unknown_keys(table, POOL_KEYS);
        RawPool {
            at: table.at.clone(),
            name: self.string(table, "name"),
            algorithm: self.string(table, "algorithm"),
            hash_key: self.string(table, "hash_key"),
            retries: self.integer(table, "retries"),
            connect_timeout: self.duration(table, "connect_timeout"),
            timeout: self.duration(table, "timeout"),
            health_check: self
                .table(table, "health_check")
                .map(|t| self.health_check(t)),
            outlier_detection: self
                .table(table, "outlier_detection")
                .map(|t| self.outlier_detection(t)),
            retry_budget: self
                .table(table, "retry_budget")
                .map(|t| self.retry_budget(t)),
            drain_timeout: self.duration(table, "drain_timeout"),
            slow_start: self.duration(table, "slow_start"),
            panic_threshold: self.integer(table, "panic_threshold"),
            backends: self
                .array_of_tables(table, "backend")
                .map(|tables| tables.iter().map(|t| self.backend(t)).collect()),
        }
    }

    fn health_check(&mut self, table: &Table<'_>) -> RawHealthCheck {
        self.reject_unknown_keys(table, HEALTH_CHECK_KEYS);
        RawHealthCheck {
            at: table.at.clone(),
            kind: self.string(table, "kind"),
            path: self.string(table, "path"),
            interval: self.duration(table, "interval"),
            timeout: self.duration(table, "timeout"),
            rise: self.integer(table, "rise"),
            fall: self.integer(table, "fall"),
            port: self.integer(table, "port"),
            method: self.string(table, "method"),
            host: self.string(table, "host"),
            expect_status: self.status(table, "expect_status"),
            expect_body: self.string(table, "expect_body"),
        }
    }

    fn outlier_detection(&mut self, table: &Table<'_>) -> RawOutlierDetection {
        self.reject_unknown_keys(table, OUTLIER_DETECTION_KEYS);
        RawOutlierDetection {
            at: table.at.clone(),
            consecutive_failures: self.integer(table, "consecutive_failures"),
            base_ejection: self.duration(table, "base_ejection"),
            max_ejection_percent: self.integer(table, "max_ejection_percent"),
            max_ejection: self.duration(table, "max_ejection"),
            count_5xx: self.boolean(table, "count_5xx"),
        }
    }

    fn retry_budget(&mut self, table: &Table<'_>) -> RawRetryBudget {
        self.reject_unknown_keys(table, RETRY_BUDGET_KEYS);
        RawRetryBudget {
            at: table.at.clone(),
            percent: self.integer(table, "percent"),
            min_per_second: self.integer(table, "min_per_second"),
        }
    }

    fn backend(&mut self, table: &Table<'_>) -> RawBackend {
        self.reject_unknown_keys(table, BACKEND_KEYS);
        RawBackend {
            at: table.at.clone(),
            address: self.string(table, "address"),
            weight: self.integer(table, "weight"),
            backup: self.boolean(table, "backup"),
        }
    }

    // ---- generic readers ----

    fn error(&mut self, path: String, line: Option<usize>, message: String) {
        self.errors.push(ConfigError {
            path,
            line,
            message,
        });
    }

    fn line(&self, span: Option<Range<usize>>) -> Option<usize> {
        span.map(|span| self.lines.line_of(span.start))
    }

    fn reject_unknown_keys(&mut self, table: &Table<'_>, known: &[&str]) {
        for (key, _) in table.entries.iter() {
            if known.contains(&key) {
                continue;
            }
            let line = self.line(table.entries.key(key).and_then(|k| k.span()));
            let message = match did_you_mean(key, known) {
                Some(suggestion) => {
                    format!("unknown key `{key}`, did you mean `{suggestion}`?")
                }
                None => format!("unknown key `{key}`; known keys here: {}", known.join(", ")),
            };
            self.error(table.at.path_of(key), line, message);
        }
    }

    /// The item under `key` with its path and the line of its key.
    fn get<'doc>(
        &self,
        table: &Table<'doc>,
        key: &str,
    ) -> Option<(&'doc Item, String, Option<usize>)> {
        let (k, item) = table.entries.get_key_value(key)?;
        if item.is_none() {
            return None;
        }
        Some((item, table.at.path_of(key), self.line(k.span())))
    }

    /// A scalar of the type `pick` accepts; anything else is reported as
    /// "expected `expected`, got …".
    fn scalar<T>(
        &mut self,
        table: &Table<'_>,
        key: &str,
        expected: &str,
        pick: impl FnOnce(&Value) -> Option<T>,
    ) -> Slot<T> {
        let Some((item, path, line)) = self.get(table, key) else {
            return Slot::Missing;
        };
        match item.as_value().and_then(pick) {
            Some(value) => Slot::Set(Field { value, line }),
            None => {
                let message = format!("expected {expected}, got {}", describe(item));
                self.error(path, line, message);
                Slot::Invalid
            }
        }
    }

    fn string(&mut self, table: &Table<'_>, key: &str) -> Slot<String> {
        self.scalar(table, key, "a string", |v| v.as_str().map(str::to_owned))
    }

    fn integer(&mut self, table: &Table<'_>, key: &str) -> Slot<i64> {
        let slot = self.scalar(table, key, "an integer", Value::as_integer);
        if let Slot::Invalid = slot {
            self.hint_quoted(table, key, |s| s.parse::<i64>().is_ok());
        }
        slot
    }

    fn boolean(&mut self, table: &Table<'_>, key: &str) -> Slot<bool> {
        let slot = self.scalar(table, key, "a boolean (true or false)", Value::as_bool);
        if let Slot::Invalid = slot {
            self.hint_quoted(table, key, |s| s == "true" || s == "false");
        }
        slot
    }

    /// `weight = "5"`: the value is right but quoted; say so.
    fn hint_quoted(&mut self, table: &Table<'_>, key: &str, looks_right: impl Fn(&str) -> bool) {
        let quoted = table
            .entries
            .get(key)
            .and_then(Item::as_str)
            .is_some_and(looks_right);
        if quoted {
            if let Some(error) = self.errors.last_mut() {
                error.message.push_str(" (remove the quotes)");
            }
        }
    }

    /// An HTTP status or range: `200`, `"200"` or `"200-399"`. The string
    /// stays a string here; validation parses it.
    fn status(&mut self, table: &Table<'_>, key: &str) -> Slot<RawStatus> {
        let expected = r#"a status or range such as "200" or "200-399""#;
        self.scalar(table, key, expected, |value| match value {
            Value::Integer(n) => Some(RawStatus::Code(*n.value())),
            Value::String(s) => Some(RawStatus::Text(s.value().clone())),
            _ => None,
        })
    }

    /// A duration stays a string here; a bare number gets its own message
    /// because "add a unit" is the fix.
    fn duration(&mut self, table: &Table<'_>, key: &str) -> Slot<String> {
        let Some((item, path, line)) = self.get(table, key) else {
            return Slot::Missing;
        };
        let bare_number = match item.as_value() {
            Some(Value::String(s)) => {
                return Slot::Set(Field {
                    value: s.value().clone(),
                    line,
                })
            }
            Some(Value::Integer(n)) => Some(n.value().to_string()),
            Some(Value::Float(n)) => Some(n.value().to_string()),
            _ => None,
        };
        let message = match bare_number {
            Some(n) => format!(
                "expected a duration string with a unit, such as \"{n}s\" or \"{n}ms\", \
                 got the bare number {n}"
            ),
            None => format!(
                "expected a duration string such as \"250ms\", \"2s\" or \"1m\", got {}",
                describe(item)
            ),
        };
        self.error(path, line, message);
        Slot::Invalid
    }

    /// A sub-table: `[a.b]`, `b = { … }` or dotted keys `b.c = …`.
    fn table<'doc>(&mut self, parent: &Table<'doc>, key: &str) -> Slot<Table<'doc>> {
        let Some((item, path, key_line)) = self.get(parent, key) else {
            return Slot::Missing;
        };
        let Some(entries) = item.as_table_like() else {
            let hint = if item.is_array_of_tables() {
                format!(" (write [{path}], not [[{path}]])")
            } else {
                String::new()
            };
            let message = format!("expected a table, got {}{hint}", describe(item));
            self.error(path, key_line, message);
            return Slot::Invalid;
        };
        let line = self.line(item.span()).or(key_line);
        Slot::Set(Field {
            value: Table {
                entries,
                at: Header { path, line },
            },
            line,
        })
    }

    /// An array of tables: `[[a.b]]` sections or `b = [{ … }, { … }]`.
    fn array_of_tables<'doc>(&mut self, parent: &Table<'doc>, key: &str) -> Slot<Vec<Table<'doc>>> {
        let Some((item, path, line)) = self.get(parent, key) else {
            return Slot::Missing;
        };
        let element_at = |i: usize, line: Option<usize>| Header {
            path: format!("{path}[{i}]"),
            line,
        };
        let tables = if let Some(array) = item.as_array_of_tables() {
            array
                .iter()
                .enumerate()
                .map(|(i, table)| Table {
                    entries: table,
                    at: element_at(i, self.line(table.span()).or(line)),
                })
                .collect()
        } else if let Some(array) = item.as_array() {
            let mut tables = Vec::new();
            for (i, value) in array.iter().enumerate() {
                let at = element_at(i, self.line(value.span()).or(line));
                match value.as_inline_table() {
                    Some(table) => tables.push(Table { entries: table, at }),
                    None => {
                        let message = format!(
                            "expected a table, got {}",
                            describe(&Item::Value(value.clone()))
                        );
                        self.error(at.path, at.line, message);
                    }
                }
            }
            tables
        } else {
            let hint = if item.is_table() {
                format!(" (write [[{path}]], not [{path}])")
            } else {
                String::new()
            };
            let message = format!("expected an array of tables, got {}{hint}", describe(item));
            self.error(path, line, message);
            return Slot::Invalid;
        };
        Slot::Set(Field {
            value: tables,
            line,
        })
    }
}

/// What a TOML item is, for "expected X, got Y" messages.
fn describe(item: &Item) -> String {
    const MAX_SHOWN: usize = 60;
    match item {
        Item::None => "nothing".to_owned(),
        Item::Table(_) => "a table".to_owned(),
        Item::ArrayOfTables(_) => "an array of tables".to_owned(),
        Item::Value(value) => match value {
            Value::String(s) => {
                let s = s.value();
                if s.chars().count() > MAX_SHOWN {
                    let shown: String = s.chars().take(MAX_SHOWN).collect();
                    format!("a string {shown:?}…")
                } else {
                    format!("a string {s:?}")
                }
            }
            Value::Integer(n) => format!("an integer {}", n.value()),
            Value::Float(n) => format!("a float {}", n.value()),
            Value::Boolean(b) => format!("a boolean {}", b.value()),
            Value::Datetime(d) => format!("a date-time {}", d.value()),
            Value::Array(_) => "an array".to_owned(),
            Value::InlineTable(_) => "a table".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based() {
        let lines = Lines::new("a\nbc\n\nd");
        assert_eq!(lines.line_of(0), 1);
        assert_eq!(lines.line_of(1), 1);
        assert_eq!(lines.line_of(2), 2);
        assert_eq!(lines.line_of(5), 3);
        assert_eq!(lines.line_of(6), 4);
    }

    #[test]
    fn inline_and_dotted_tables_read_like_sections() {
        let text = r#"
listener = [{ name = "web", bind = "127.0.0.1:80", pool = "app" }]
[[pool]]
name = "app"
health_check.kind = "http"
backend = [{ address = "127.0.0.1:1", weigth = 2 }]
"#;
        let (raw, errors) = read(text).unwrap();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "pool[0].backend[0].weigth");
        assert_eq!(errors[0].line, Some(6));
        let Slot::Set(listeners) = raw.listeners else {
            panic!("listeners not read")
        };
        assert_eq!(listeners.value.len(), 1);
        assert_eq!(listeners.value[0].at.line, Some(2));
        let Slot::Set(pools) = raw.pools else {
            panic!("pools not read")
        };
        let Slot::Set(health_check) = &pools.value[0].health_check else {
            panic!("health_check not read")
        };
        assert_eq!(health_check.value.at.path, "pool[0].health_check");
        assert_eq!(health_check.value.at.line, Some(5));
    }

    #[test]
    fn single_table_where_array_expected_gets_a_hint() {
        let (_, errors) = read("[listener]\nname = \"x\"\n").unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "listener");
        assert_eq!(errors[0].line, Some(1));
        assert!(errors[0].message.contains("[[listener]]"), "{}", errors[0]);
    }

    #[test]
    fn quoted_numbers_get_a_hint() {
        let (_, errors) = read("[runtime]\nworkers = \"4\"\n").unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "runtime.workers");
        assert_eq!(
            errors[0].message,
            "expected an integer, got a string \"4\" (remove the quotes)"
        );
    }
}
