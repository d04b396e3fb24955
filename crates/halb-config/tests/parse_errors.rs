//! Every kind of mistake is reported with its key path, line and a clear message.

mod support;

use halb_config::parse;
use support::{assert_error, errors, only_error};

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

/// A valid config with `pool_keys` (line 8 on) added to its one pool.
fn with_pool_keys(pool_keys: &str) -> String {
    format!(
        r#"[[listener]]
name = "web"
bind = "127.0.0.1:8080"
pool = "app"
[[pool]]
name = "app"
backend = [{{ address = "127.0.0.1:9001" }}]
{pool_keys}
"#
    )
}

#[test]
fn bad_expect_status_forms() {
    let errors = errors(&with_pool_keys(
        r#"[pool.health_check]
kind = "http"
expect_status = "2xx"
[[pool]]
name = "backwards"
backend = [{ address = "127.0.0.1:9002" }]
health_check = { kind = "http", expect_status = "399-200" }
[[pool]]
name = "too-high"
backend = [{ address = "127.0.0.1:9003" }]
health_check = { kind = "http", expect_status = 600 }
[[pool]]
name = "float"
backend = [{ address = "127.0.0.1:9004" }]
health_check = { kind = "http", expect_status = 2.5 }
[[pool]]
name = "range-too-wide"
backend = [{ address = "127.0.0.1:9005" }]
health_check = { kind = "http", expect_status = "200-700" }"#,
    ));
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert_error(
        &errors[0],
        "pool[0].health_check.expect_status",
        Some(10),
        r#"expected a status or range such as "200" or "200-399", got "2xx""#,
    );
    assert_error(
        &errors[1],
        "pool[1].health_check.expect_status",
        Some(14),
        r#"the range "399-200" starts above where it ends; write "200-399""#,
    );
    assert_error(
        &errors[2],
        "pool[2].health_check.expect_status",
        Some(18),
        "expected a status from 100 to 599, got 600",
    );
    assert_error(
        &errors[3],
        "pool[3].health_check.expect_status",
        Some(22),
        r#"expected a status or range such as "200" or "200-399", got a float 2.5"#,
    );
    assert_error(
        &errors[4],
        "pool[4].health_check.expect_status",
        Some(26),
        r#"expected statuses from 100 to 599, got "200-700""#,
    );
}

#[test]
fn health_check_method_other_than_get_or_head() {
    let error = only_error(&with_pool_keys(
        r#"[pool.health_check]
kind = "http"
method = "POST""#,
    ));
    assert_error(
        &error,
        "pool[0].health_check.method",
        Some(10),
        r#"expected "GET" or "HEAD", got "POST""#,
    );
}

#[test]
fn http_only_keys_on_a_tcp_check() {
    let errors = errors(&with_pool_keys(
        r#"[pool.health_check]
kind = "tcp"
port = 9100
path = "/healthz"
method = "POST"
host = "example.com"
expect_status = "2xx"
expect_body = "ok""#,
    ));
    // One error per key, about the kind; the values are not judged too.
    assert_eq!(errors.len(), 5, "{errors:#?}");
    for (error, (key, line)) in errors.iter().zip([
        ("path", 11),
        ("method", 12),
        ("host", 13),
        ("expect_status", 14),
        ("expect_body", 15),
    ]) {
        assert_error(
            error,
            &format!("pool[0].health_check.{key}"),
            Some(line),
            &format!(r#"{key} only applies to kind = "http"; this check is kind = "tcp""#),
        );
    }
}

#[test]
fn http_only_key_where_kind_defaults_to_tcp_or_is_none() {
    let errors = errors(&with_pool_keys(
        r#"[pool.health_check]
path = "/healthz"
[[pool]]
name = "unchecked"
backend = [{ address = "127.0.0.1:9002" }]
health_check = { kind = "none", expect_body = "ok" }"#,
    ));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(
        &errors[0],
        "pool[0].health_check.path",
        Some(9),
        r#"path only applies to kind = "http"; this check is kind = "tcp", the default when kind is not set (remove path or set kind = "http")"#,
    );
    assert_error(
        &errors[1],
        "pool[1].health_check.expect_body",
        Some(13),
        r#"expect_body only applies to kind = "http"; this check is kind = "none""#,
    );
}

#[test]
fn bad_health_check_port_host_and_body() {
    let errors = errors(&with_pool_keys(
        r#"[pool.health_check]
kind = "http"
port = 0
host = "my host"
expect_body = """#,
    ));
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_error(
        &errors[0],
        "pool[0].health_check.port",
        Some(10),
        "expected an integer from 1 to 65535, got 0",
    );
    assert_error(
        &errors[1],
        "pool[0].health_check.host",
        Some(11),
        r#"host "my host" contains ' ', which is not allowed in a Host header"#,
    );
    assert_error(
        &errors[2],
        "pool[0].health_check.expect_body",
        Some(12),
        "must not be empty",
    );
}

#[test]
fn panic_threshold_out_of_range() {
    let error = only_error(&with_pool_keys("panic_threshold = 150"));
    assert_error(
        &error,
        "pool[0].panic_threshold",
        Some(8),
        "expected an integer from 0 to 100, got 150",
    );
}

#[test]
fn bad_pool_fault_tolerance_durations() {
    let errors = errors(&with_pool_keys("drain_timeout = 30\nslow_start = \"0s\""));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(
        &errors[0],
        "pool[0].drain_timeout",
        Some(8),
        r#"expected a duration string with a unit, such as "30s" or "30ms""#,
    );
    assert_error(
        &errors[1],
        "pool[0].slow_start",
        Some(9),
        "greater than zero",
    );
}

#[test]
fn max_ejection_shorter_than_base_ejection() {
    let errors = errors(&with_pool_keys(
        r#"[pool.outlier_detection]
base_ejection = "1m"
max_ejection = "30s"
[[pool]]
name = "defaulted-base"
backend = [{ address = "127.0.0.1:9002" }]
outlier_detection = { max_ejection = "10s" }"#,
    ));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(
        &errors[0],
        "pool[0].outlier_detection.max_ejection",
        Some(10),
        "max_ejection 30s is shorter than base_ejection 60s (line 9)",
    );
    assert_error(
        &errors[1],
        "pool[1].outlier_detection.max_ejection",
        Some(14),
        "max_ejection 10s is shorter than base_ejection 30s (the default)",
    );
}

#[test]
fn bad_count_5xx_and_retry_budget_values() {
    let errors = errors(&with_pool_keys(
        r#"[pool.outlier_detection]
count_5xx = "true"
[pool.retry_budget]
percent = 101
min_per_second = -1"#,
    ));
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_error(
        &errors[0],
        "pool[0].outlier_detection.count_5xx",
        Some(9),
        "expected a boolean (true or false), got a string \"true\" (remove the quotes)",
    );
    assert_error(
        &errors[1],
        "pool[0].retry_budget.percent",
        Some(11),
        "expected an integer from 0 to 100, got 101",
    );
    assert_error(
        &errors[2],
        "pool[0].retry_budget.min_per_second",
        Some(12),
        "expected an integer from 0 to 100000, got -1",
    );
}

#[test]
fn unknown_key_in_retry_budget_with_suggestion() {
    let errors = errors(&with_pool_keys(
        r#"[pool.retry_budget]
min_per_sec = 5
[pool.outlier_detection]
count5xx = false
[pool.health_check]
expected_status = 200"#,
    ));
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_error(
        &errors[0],
        "pool[0].retry_budget.min_per_sec",
        Some(9),
        "unknown key `min_per_sec`, did you mean `min_per_second`?",
    );
    assert_error(
        &errors[1],
        "pool[0].outlier_detection.count5xx",
        Some(11),
        "did you mean `count_5xx`?",
    );
    assert_error(
        &errors[2],
        "pool[0].health_check.expected_status",
        Some(13),
        "did you mean `expect_status`?",
    );
}

#[test]
fn retry_budget_must_be_a_table() {
    let error = only_error(&with_pool_keys("retry_budget = 20"));
    assert_error(
        &error,
        "pool[0].retry_budget",
        Some(8),
        "expected a table, got an integer 20",
    );
}

#[test]
fn https_listener_says_how_to_carry_tls() {
    let error = only_error(
        r#"[[listener]]
name = "web"
bind = "127.0.0.1:8443"
protocol = "https"
pool = "app"
[[pool]]
name = "app"
backend = [{ address = "127.0.0.1:9001" }]
"#,
    );
    assert_error(
        &error,
        "listener[0].protocol",
        Some(4),
        "\"https\" is not a protocol: to terminate TLS",
    );
    assert!(error.message.contains("[listener.tls]"), "{error}");
    assert!(error.message.contains("protocol = \"tcp\""), "{error}");
    assert!(!error.message.contains("did you mean"), "{error}");
}

#[test]
fn backend_addresses_by_name_are_checked() {
    let config = |address: &str| {
        format!(
            "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\npool = \"app\"\n\
             [[pool]]\nname = \"app\"\n[[pool.backend]]\naddress = \"{address}\"\n"
        )
    };
    for (address, message) in [
        ("app.internal", "the port is missing"),
        ("app.internal:http", "the port must be a number"),
        ("app_internal:80", "is not a host name"),
        ("-app.internal:80", "is not a host name"),
        ("app.internal:0", "port 0 is not a usable backend port"),
        ("10.0.0.300:80", "expected a socket address"),
    ] {
        let error = only_error(&config(address));
        assert_error(&error, "pool[0].backend[0].address", Some(8), message);
    }
    let twice = config("app.internal:80") + "[[pool.backend]]\naddress = \"APP.internal:80\"\n";
    let error = only_error(&twice);
    assert_error(
        &error,
        "pool[0].backend[1].address",
        Some(10),
        "duplicate backend address app.internal:80",
    );
    assert!(parse(&config("app.internal:8080")).is_ok());
}

#[test]
fn resolve_interval_has_bounds() {
    let error = only_error(
        "[runtime]\nresolve_interval = \"10ms\"\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\npool = \"app\"\n\
         [[pool]]\nname = \"app\"\nbackend = [{ address = \"127.0.0.1:9001\" }]\n",
    );
    assert_error(
        &error,
        "runtime.resolve_interval",
        Some(2),
        "expected from 100ms to 3600s",
    );
}
