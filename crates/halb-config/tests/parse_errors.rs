//! Every kind of mistake is reported with its key path, line and a clear message.

use halb_config::{parse, ConfigError};

/// All errors for `text`, which must be rejected.
fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text) {
        Ok(config) => panic!("accepted a bad config: {config:#?}"),
        Err(errors) => errors.0,
    }
}

/// The single error for `text`.
fn only_error(text: &str) -> ConfigError {
    let mut errors = errors(text);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    errors.remove(0)
}

#[track_caller]
fn assert_error(error: &ConfigError, path: &str, line: Option<usize>, message: &str) {
    assert_eq!(error.path, path, "{error}");
    assert_eq!(error.line, line, "{error}");
    assert!(
        error.message.contains(message),
        "message {:?} lacks {message:?}",
        error.message
    );
}

#[test]
fn unknown_key_with_suggestion() {
    let error = only_error(
        r#"[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"

[[pool]]
name = "app"

[[pool.backend]]
address = "127.0.0.1:9001"
weigth = 5
"#,
    );
    assert_error(
        &error,
        "pool[0].backend[0].weigth",
        Some(11),
        "unknown key `weigth`, did you mean `weight`?",
    );
}

#[test]
fn unknown_key_without_suggestion_lists_known_keys() {
    let error = only_error(
        r#"colour = "blue"
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"
[[pool]]
name = "app"
backend = [{ address = "127.0.0.1:9001" }]
"#,
    );
    assert_error(&error, "colour", Some(1), "unknown key `colour`");
    assert!(
        error.message.contains("runtime, admin, listener, pool"),
        "{error}"
    );
}

#[test]
fn wrong_type() {
    let error = only_error(
        r#"[runtime]
workers = "many"
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"
[[pool]]
name = "app"
backend = [{ address = "127.0.0.1:9001" }]
"#,
    );
    assert_error(
        &error,
        "runtime.workers",
        Some(2),
        "expected an integer, got a string \"many\"",
    );
}

#[test]
fn wrong_type_for_boolean_and_string() {
    let errors = errors(
        r#"[[listener]]
name = 7
bind = "127.0.0.1:8080"
pool = "app"
[[pool]]
name = "app"
[[pool.backend]]
address = "127.0.0.1:9001"
backup = "yes"
"#,
    );
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(
        &errors[0],
        "listener[0].name",
        Some(2),
        "expected a string, got an integer 7",
    );
    assert_error(
        &errors[1],
        "pool[0].backend[0].backup",
        Some(9),
        "expected a boolean",
    );
}

#[test]
fn bad_duration() {
    let error = only_error(
        r#"[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"
[[pool]]
name = "app"
timeout = "5 parsecs"
backend = [{ address = "127.0.0.1:9001" }]
"#,
    );
    assert_error(
        &error,
        "pool[0].timeout",
        Some(7),
        r#"expected a duration such as "250ms", "2s" or "1m", got "5 parsecs""#,
    );
}

#[test]
fn zero_duration() {
    let error = only_error(
        r#"[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"
[[pool]]
name = "app"
backend = [{ address = "127.0.0.1:9001" }]
[pool.health_check]
timeout = "0s"
"#,
    );
    assert_error(
        &error,
        "pool[0].health_check.timeout",
        Some(9),
        "greater than zero",
    );
}

#[test]
fn bare_integer_duration() {
    let error = only_error(
        r#"[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"
idle_timeout = 5
[[pool]]
name = "app"
backend = [{ address = "127.0.0.1:9001" }]
"#,
    );
    assert_error(
        &error,
        "listener[0].idle_timeout",
        Some(5),
        r#"expected a duration string with a unit, such as "5s" or "5ms""#,
    );
}

#[test]
fn weight_out_of_range() {
    let error = only_error(
        r#"[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"
[[pool]]
name = "app"
[[pool.backend]]
address = "127.0.0.1:9001"
weight = 1001
"#,
    );
    assert_error(
        &error,
        "pool[0].backend[0].weight",
        Some(9),
        "expected an integer from 0 to 1000, got 1001",
    );
}

#[test]
fn dangling_pool_reference() {
    let error = only_error(
        r#"[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "ap"
[[pool]]
name = "app"
backend = [{ address = "127.0.0.1:9001" }]
[[pool]]
name = "api"
backend = [{ address = "127.0.0.1:9002" }]
"#,
    );
    assert_error(
        &error,
        "listener[0].pool",
        Some(4),
        r#"names pool "ap", which is not defined; defined pools: app, api"#,
    );
}

#[test]
fn duplicate_listener_names() {
    let error = only_error(
        r#"[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"
[[listener]]
name = "web"
bind = "127.0.0.1:8081"
pool = "app"
[[pool]]
name = "app"
backend = [{ address = "127.0.0.1:9001" }]
"#,
    );
    assert_error(
        &error,
        "listener[1].name",
        Some(6),
        r#"duplicate listener name "web"; already used by listener[0].name (line 2)"#,
    );
}

#[test]
fn duplicate_binds_and_admin_clash() {
    let errors = errors(
        r#"[admin]
bind = "127.0.0.1:9900"
[[listener]]
name = "a"
bind = "127.0.0.1:9900"
pool = "app"
[[listener]]
name = "b"
bind = "0.0.0.0:8080"
pool = "app"
[[listener]]
name = "c"
bind = "127.0.0.1:8080"
pool = "app"
[[pool]]
name = "app"
backend = [{ address = "127.0.0.1:9001" }]
"#,
    );
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(
        &errors[0],
        "listener[0].bind",
        Some(5),
        "already used by admin.bind (line 2)",
    );
    assert_error(
        &errors[1],
        "listener[2].bind",
        Some(13),
        "overlaps listener[1].bind",
    );
}

#[test]
fn duplicate_backend_address() {
    let error = only_error(
        r#"[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"
[[pool]]
name = "app"
[[pool.backend]]
address = "127.0.0.1:9001"
[[pool.backend]]
address = "127.0.0.1:9001"
"#,
    );
    assert_error(
        &error,
        "pool[0].backend[1].address",
        Some(10),
        "duplicate backend address 127.0.0.1:9001; already used by pool[0].backend[0].address (line 8)",
    );
}

#[test]
fn bad_address() {
    let errors = errors(
        r#"[[listener]]
name = "web"
bind = "localhost:8080"
pool = "app"
[[pool]]
name = "app"
[[pool.backend]]
address = "127.0.0.1:0"
"#,
    );
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(
        &errors[0],
        "listener[0].bind",
        Some(3),
        r#"expected a socket address "ip:port" such as "127.0.0.1:8080""#,
    );
    assert!(errors[0].message.contains("host names are not accepted"));
    assert_error(&errors[1], "pool[0].backend[0].address", Some(8), "port 0");
}

#[test]
fn unknown_algorithm() {
    let error = only_error(
        r#"[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"
[[pool]]
name = "app"
algorithm = "fastest"
backend = [{ address = "127.0.0.1:9001" }]
"#,
    );
    assert_error(
        &error,
        "pool[0].algorithm",
        Some(7),
        r#"unknown algorithm "fastest"; expected one of: round_robin, weighted_round_robin, least_connections, random_two_choices, peak_ewma, maglev"#,
    );
}

#[test]
fn hash_key_without_maglev() {
    let error = only_error(
        r#"[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"
[[pool]]
name = "app"
algorithm = "least_connections"
hash_key = "cookie:session"
backend = [{ address = "127.0.0.1:9001" }]
"#,
    );
    assert_error(
        &error,
        "pool[0].hash_key",
        Some(8),
        r#"hash_key is only used by algorithm = "maglev""#,
    );
}

#[test]
fn bad_hash_key() {
    let errors = errors(
        r#"[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"
[[pool]]
name = "app"
algorithm = "maglev"
hash_key = "source_ip"
backend = [{ address = "127.0.0.1:9001" }]
[[pool]]
name = "other"
algorithm = "maglev"
hash_key = "header:"
backend = [{ address = "127.0.0.1:9001" }]
"#,
    );
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(
        &errors[0],
        "pool[0].hash_key",
        Some(8),
        r#"expected "client_ip", "path", "header:NAME" or "cookie:NAME", got "source_ip""#,
    );
    assert_error(
        &errors[1],
        "pool[1].hash_key",
        Some(13),
        "expected a header name",
    );
}

#[test]
fn missing_required_key_points_at_the_table_header() {
    let error = only_error(
        r#"[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"

[[pool]]
name = "app"

[[pool.backend]]
weight = 2
"#,
    );
    assert_error(
        &error,
        "pool[0].backend[0].address",
        Some(9),
        "missing required key `address`",
    );
}

#[test]
fn no_listeners() {
    let error = only_error(
        r#"[[pool]]
name = "app"
backend = [{ address = "127.0.0.1:9001" }]
"#,
    );
    assert_error(&error, "listener", None, "no listeners are defined");
}

#[test]
fn pool_without_backends() {
    let error = only_error(
        r#"[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"

[[pool]]
name = "app"
"#,
    );
    assert_error(
        &error,
        "pool[0].backend",
        Some(6),
        r#"pool "app" has no backends"#,
    );
}

#[test]
fn non_loopback_admin_without_token() {
    let error = only_error(
        r#"[admin]
bind = "0.0.0.0:9900"
[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"
[[pool]]
name = "app"
backend = [{ address = "127.0.0.1:9001" }]
"#,
    );
    assert_error(
        &error,
        "admin.token",
        Some(1),
        "is not a loopback address, so a token is required",
    );
}

#[test]
fn syntax_error_with_line() {
    let error = only_error(
        r#"[[listener]]
name = "web"
bind = "127.0.0.1:8080
pool = "app"
"#,
    );
    assert_error(&error, "", Some(3), "invalid TOML");
}

#[test]
fn three_errors_are_all_reported_with_paths_and_lines() {
    let errors = errors(
        r#"[runtime]
workers = 0

[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "missing"

[[pool]]
name = "app"
connect_timeout = 3

[[pool.backend]]
address = "127.0.0.1:9001"
wieght = 2
"#,
    );
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_error(
        &errors[0],
        "listener[0].pool",
        Some(7),
        r#"names pool "missing""#,
    );
    assert_error(
        &errors[1],
        "pool[0].connect_timeout",
        Some(11),
        "with a unit",
    );
    assert_error(
        &errors[2],
        "pool[0].backend[0].wieght",
        Some(15),
        "did you mean `weight`?",
    );
}

#[test]
fn display_names_path_and_line() {
    let error = only_error(
        r#"[[pool]]
name = "app"
backend = [{ address = "127.0.0.1:9001" }]
"#,
    );
    assert_eq!(
        error.to_string(),
        "listener: no listeners are defined; add at least one [[listener]] with name, bind and pool"
    );
    let errors = parse("[runtime]\nworkers = -1\n").unwrap_err();
    assert_eq!(
        errors.to_string(),
        "runtime.workers (line 2): expected an integer from 0 to 1024, got -1\n\
         listener: no listeners are defined; add at least one [[listener]] with name, bind and pool"
    );
}
