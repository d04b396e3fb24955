//! Mistakes in `[runtime] drain_timeout`, `[log]`, `[access_log]` and
//! `[alerts]`, each reported with its key path, line and a clear message.

mod support;

use support::{assert_error, errors, only_error, MINIMAL};

/// `tables` (which start at line 1) followed by a valid minimal config.
fn with_tables(tables: &str) -> String {
    format!("{tables}\n{MINIMAL}")
}

#[test]
fn bad_log_level_directive() {
    let error = only_error(&with_tables("[log]\nlevel = \"halb_proxy=debug,verbose\""));
    assert_error(
        &error,
        "log.level",
        Some(2),
        "bad directive \"verbose\" in the log filter: unknown level \"verbose\"",
    );
}

#[test]
fn bad_log_level_target_and_empty_level() {
    let errors = errors(&with_tables(
        "[log]\nlevel = \"halb-proxy=debug\"\n[access_log]\npath = \"\"",
    ));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(
        &errors[0],
        "log.level",
        Some(2),
        "bad directive \"halb-proxy=debug\" in the log filter: the target \"halb-proxy\"",
    );
    assert_error(&errors[1], "access_log.path", Some(4), "must not be empty");
}

#[test]
fn bad_access_log_format() {
    let error = only_error(&with_tables("[access_log]\nformat = \"jsonl\""));
    assert_error(
        &error,
        "access_log.format",
        Some(2),
        "unknown access log format \"jsonl\" (did you mean \"json\"?); \
         expected one of: json, plain",
    );
}

#[test]
fn https_webhooks_are_accepted() {
    let config = halb_config::parse(&with_tables(
        "[alerts]\nwebhooks = [\"http://127.0.0.1:9000/alerts\", \"https://hooks.example.com/halb\"]",
    ))
    .expect("https webhooks are valid");
    let url = halb_config::WebhookUrl::parse(&config.alerts.webhooks[1]).unwrap();
    assert!(url.tls);
    assert_eq!(url.port, 443);
}

#[test]
fn malformed_webhook_urls_each_at_their_own_index_and_line() {
    let errors = errors(&with_tables(
        r#"[alerts]
webhooks = [
  "hooks.internal:9000/alerts",
  "http://hooks.internal:9000/alerts",
  "http://hooks.internal:http/alerts",
  7,
  "http:///alerts",
]"#,
    ));
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_error(
        &errors[0],
        "alerts.webhooks[0]",
        Some(3),
        "expected an http://host:port/path URL such as \"http://127.0.0.1:9000/alerts\", \
         got \"hooks.internal:9000/alerts\" (it must start with http:// or https://)",
    );
    assert_error(
        &errors[1],
        "alerts.webhooks[2]",
        Some(5),
        "(the port must be a number from 1 to 65535)",
    );
    assert_error(
        &errors[2],
        "alerts.webhooks[3]",
        Some(6),
        "expected a string, got an integer 7",
    );
    assert_error(
        &errors[3],
        "alerts.webhooks[4]",
        Some(7),
        "(the host is missing)",
    );
}

#[test]
fn duplicate_webhook_endpoint() {
    let error = only_error(&with_tables(
        "[alerts]\nwebhooks = [\n  \"http://hooks:80/\",\n  \"http://hooks\",\n]",
    ));
    assert_error(
        &error,
        "alerts.webhooks[1]",
        Some(4),
        "duplicate webhook \"http://hooks\": the same endpoint as alerts.webhooks[0] (line 3)",
    );
}

#[test]
fn webhooks_must_be_an_array() {
    let error = only_error(&with_tables("[alerts]\nwebhooks = \"http://hooks/\""));
    assert_error(
        &error,
        "alerts.webhooks",
        Some(2),
        "expected an array of strings, got a string \"http://hooks/\" \
         (write webhooks = [\"http://hooks/\"])",
    );
}

#[test]
fn max_attempts_out_of_range() {
    let errors = errors(&with_tables(
        "[alerts]\nmax_attempts = 0\n[[pool]]\nname = \"other\"\nbackend = [{ address = \"127.0.0.1:1\" }]",
    ));
    // The pool is fine; only max_attempts is wrong.
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_error(
        &errors[0],
        "alerts.max_attempts",
        Some(2),
        "expected an integer from 1 to 20, got 0",
    );
    let error = only_error(&with_tables("[alerts]\nmax_attempts = 21"));
    assert_error(
        &error,
        "alerts.max_attempts",
        Some(2),
        "expected an integer from 1 to 20, got 21",
    );
}

#[test]
fn unknown_keys_in_the_new_tables_with_suggestions() {
    let errors = errors(&with_tables(
        r#"[alerts]
webhook = ["http://hooks/"]
max_attempt = 3
[log]
levle = "debug"
[access_log]
formt = "plain"
[runtime]
drain = "10s""#,
    ));
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert_error(
        &errors[0],
        "alerts.webhook",
        Some(2),
        "unknown key `webhook`, did you mean `webhooks`?",
    );
    assert_error(
        &errors[1],
        "alerts.max_attempt",
        Some(3),
        "unknown key `max_attempt`, did you mean `max_attempts`?",
    );
    assert_error(
        &errors[2],
        "log.levle",
        Some(5),
        "unknown key `levle`, did you mean `level`?",
    );
    assert_error(
        &errors[3],
        "access_log.formt",
        Some(7),
        "unknown key `formt`, did you mean `format`?",
    );
    assert_error(
        &errors[4],
        "runtime.drain",
        Some(9),
        "unknown key `drain`, did you mean `drain_timeout`?",
    );
}

#[test]
fn misspelled_table_names_get_suggestions() {
    let errors = errors(&with_tables("[alert]\n[accesslog]"));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(&errors[0], "alert", Some(1), "did you mean `alerts`?");
    assert_error(
        &errors[1],
        "accesslog",
        Some(2),
        "did you mean `access_log`?",
    );
}

#[test]
fn bad_durations_in_runtime_and_alerts() {
    let errors = errors(&with_tables(
        "[runtime]\ndrain_timeout = 30\n[alerts]\ntimeout = \"5 seconds\"",
    ));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(
        &errors[0],
        "runtime.drain_timeout",
        Some(2),
        "expected a duration string with a unit, such as \"30s\" or \"30ms\", got the bare number 30",
    );
    assert_error(
        &errors[1],
        "alerts.timeout",
        Some(4),
        "expected a duration such as \"250ms\", \"2s\" or \"1m\", got \"5 seconds\"",
    );
}

#[test]
fn new_tables_must_be_tables() {
    let errors = errors(&with_tables("log = \"debug\"\naccess_log = true"));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(
        &errors[0],
        "log",
        Some(1),
        "expected a table, got a string \"debug\"",
    );
    assert_error(
        &errors[1],
        "access_log",
        Some(2),
        "expected a table, got a boolean true",
    );
}
