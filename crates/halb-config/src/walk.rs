//! Reading: TOML text → [`RawConfig`]. The document is walked by hand against
//! the schema (in `schema`) so that every unknown key and every wrong type is
//! reported, each with its key path and line (serde would stop at the first).
//! This file holds the generic readers: tables, scalars, arrays, durations.

mod cluster;
mod schema;

use std::ops::Range;

use toml_edit::{ImDocument, Item, TableLike, Value};

use crate::raw::{Field, Header, RawConfig, RawStatus, Slot};
use crate::suggest::did_you_mean;
use crate::ConfigError;

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

    /// An array of strings, such as `webhooks = ["http://…", "http://…"]`.
    /// An element of another type is reported at `key[i]` and read as
    /// `Slot::Invalid`, so the other elements keep their index.
    fn string_array(&mut self, table: &Table<'_>, key: &str) -> Slot<Vec<Slot<String>>> {
        let Some((item, path, line)) = self.get(table, key) else {
            return Slot::Missing;
        };
        let Some(array) = item.as_array() else {
            let hint = match item.as_str() {
                Some(s) => format!(" (write {key} = [{s:?}])"),
                None => String::new(),
            };
            let message = format!("expected an array of strings, got {}{hint}", describe(item));
            self.error(path, line, message);
            return Slot::Invalid;
        };
        let mut elements = Vec::new();
        for (i, value) in array.iter().enumerate() {
            let element_line = self.line(value.span()).or(line);
            match value.as_str() {
                Some(s) => elements.push(Slot::Set(Field {
                    value: s.to_owned(),
                    line: element_line,
                })),
                None => {
                    let message = format!(
                        "expected a string, got {}",
                        describe(&Item::Value(value.clone()))
                    );
                    self.error(format!("{path}[{i}]"), element_line, message);
                    elements.push(Slot::Invalid);
                }
            }
        }
        Slot::Set(Field {
            value: elements,
            line,
        })
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
