//! Valid configs parse into the model with the documented defaults.

mod support;

use std::time::Duration;

use halb_config::{
    parse, AccessLog, AccessLogFormat, Alerts, Algorithm, HashKey, HealthCheck, HealthCheckKind,
    Log, OutlierDetection, Protocol, RetryBudget,
};
use support::MINIMAL;

/// The example from DESIGN.md, verbatim.
const DESIGN_EXAMPLE: &str = r#"[runtime]
workers = 0                  # data-path threads; 0 = one per core

[admin]
bind = "127.0.0.1:9900"      # API, /metrics, dashboard. Non-loopback needs token.
# token = "secret"           # Authorization: Bearer <token>

[[listener]]
name = "web"
bind = "127.0.0.1:8080"
protocol = "http"            # "http" | "tcp"
pool = "app"

[[pool]]
name = "app"
algorithm = "round_robin"    # round_robin | weighted_round_robin | least_connections
                             # | random_two_choices | peak_ewma | maglev
hash_key = "client_ip"       # maglev only: client_ip | header:NAME | cookie:NAME | path
retries = 2                  # extra attempts on another backend (safe requests only)
connect_timeout = "1s"
timeout = "30s"              # per try: backend must answer (response head) within it

[pool.health_check]
kind = "http"                # http | tcp | none
path = "/healthz"            # http only
interval = "1s"
timeout = "500ms"
rise = 2                     # consecutive passes to mark up
fall = 3                     # consecutive failures to mark down

[pool.outlier_detection]     # passive: real traffic as the health signal
consecutive_failures = 5
base_ejection = "30s"
max_ejection_percent = 50

[[pool.backend]]
address = "127.0.0.1:9001"
weight = 1                   # 0..=1000
backup = false               # used only when no primary backend is usable
"#;

#[test]
fn minimal_config_gets_every_default() {
    let config = parse(MINIMAL).unwrap();

    assert_eq!(config.runtime.workers, 0);
    assert_eq!(config.runtime.drain_timeout, Duration::from_secs(30));
    assert_eq!(config.admin, None);
    assert_eq!(config.log, Log { level: None });
    assert_eq!(config.access_log, None);
    assert_eq!(
        config.alerts,
        Alerts {
            webhooks: Vec::new(),
            timeout: Duration::from_secs(5),
            max_attempts: 5,
        }
    );

    assert_eq!(config.listeners.len(), 1);
    let listener = &config.listeners[0];
    assert_eq!(listener.name, "web");
    assert_eq!(listener.bind, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(listener.protocol, Protocol::Http);
    assert_eq!(listener.pool, "app");
    assert_eq!(listener.request_head_timeout, Duration::from_secs(10));
    assert_eq!(listener.idle_timeout, Duration::from_secs(60));
    assert_eq!(listener.max_header_bytes, 65536);

    assert_eq!(config.pools.len(), 1);
    let pool = config.pool("app").unwrap();
    assert_eq!(pool.algorithm, Algorithm::RoundRobin);
    assert_eq!(pool.hash_key, HashKey::ClientIp);
    assert_eq!(pool.retries, 2);
    assert_eq!(pool.connect_timeout, Duration::from_secs(1));
    assert_eq!(pool.timeout, Duration::from_secs(30));
    assert_eq!(
        pool.health_check,
        HealthCheck {
            kind: HealthCheckKind::None,
            path: "/".into(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            port: None,
            method: "GET".into(),
            host: None,
            expect_status: (200, 399),
            expect_body: None,
            database: None,
        }
    );
    assert_eq!(
        pool.outlier_detection,
        OutlierDetection {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: 50,
            max_ejection: Duration::from_secs(300),
            count_5xx: true,
        }
    );
    assert_eq!(
        pool.retry_budget,
        RetryBudget {
            percent: 20,
            min_per_second: 10,
        }
    );
    assert_eq!(pool.drain_timeout, Duration::from_secs(30));
    assert_eq!(pool.slow_start, None);
    assert_eq!(pool.panic_threshold, 50);
    assert_eq!(pool.backends.len(), 1);
    let backend = &pool.backends[0];
    assert_eq!(backend.address, "127.0.0.1:9001".parse().unwrap());
    assert_eq!(backend.weight, 1);
    assert!(!backend.backup);
}

#[test]
fn design_example_parses() {
    let config = parse(DESIGN_EXAMPLE).unwrap();
    let admin = config.admin.as_ref().unwrap();
    assert_eq!(admin.bind, "127.0.0.1:9900".parse().unwrap());
    assert_eq!(admin.token, None);
    let pool = config.pool("app").unwrap();
    assert_eq!(pool.health_check.kind, HealthCheckKind::Http);
    assert_eq!(pool.health_check.path, "/healthz");
    assert_eq!(pool.health_check.interval, Duration::from_secs(1));
    assert_eq!(pool.health_check.timeout, Duration::from_millis(500));
    assert_eq!(pool.backends.len(), 1);
}

#[test]
fn present_health_check_table_defaults_to_tcp() {
    let text = MINIMAL.replace(
        "[[pool.backend]]",
        "[pool.health_check]\ninterval = \"1.5s\"\n\n[[pool.backend]]",
    );
    let config = parse(&text).unwrap();
    let health_check = &config.pools[0].health_check;
    assert_eq!(health_check.kind, HealthCheckKind::Tcp);
    assert_eq!(health_check.interval, Duration::from_millis(1500));
    assert_eq!(health_check.timeout, Duration::from_secs(1));
}

#[test]
fn present_but_empty_sub_tables_get_the_defaults() {
    let text = MINIMAL.replace(
        "[[pool.backend]]",
        "[pool.health_check]\nkind = \"http\"\n[pool.outlier_detection]\n\
         [pool.retry_budget]\n\n[[pool.backend]]",
    );
    let config = parse(&text).unwrap();
    let pool = &config.pools[0];
    assert_eq!(
        pool.health_check,
        HealthCheck {
            kind: HealthCheckKind::Http,
            ..HealthCheck::default()
        }
    );
    assert_eq!(pool.outlier_detection, OutlierDetection::default());
    assert_eq!(pool.retry_budget, RetryBudget::default());
}

#[test]
fn every_fault_tolerance_key_set() {
    let text = MINIMAL.replace(
        "[[pool.backend]]",
        r#"drain_timeout = "2m"
slow_start = "45s"
panic_threshold = 0

[pool.health_check]
kind = "http"
path = "/ready?full=1"
interval = "5s"
timeout = "2s"
rise = 1
fall = 10
port = 9100
method = "head"
host = "app.internal:9100"
expect_status = "200-204"
expect_body = "ok"

[pool.outlier_detection]
consecutive_failures = 3
base_ejection = "10s"
max_ejection_percent = 100
max_ejection = "10s"
count_5xx = false

[pool.retry_budget]
percent = 0
min_per_second = 100000

[[pool.backend]]"#,
    );
    let config = parse(&text).unwrap();
    let pool = &config.pools[0];
    assert_eq!(pool.drain_timeout, Duration::from_secs(120));
    assert_eq!(pool.slow_start, Some(Duration::from_secs(45)));
    assert_eq!(pool.panic_threshold, 0);
    assert_eq!(
        pool.health_check,
        HealthCheck {
            kind: HealthCheckKind::Http,
            path: "/ready?full=1".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            rise: 1,
            fall: 10,
            port: Some(9100),
            method: "HEAD".into(),
            host: Some("app.internal:9100".into()),
            expect_status: (200, 204),
            expect_body: Some("ok".into()),
            database: None,
        }
    );
    assert_eq!(
        pool.outlier_detection,
        OutlierDetection {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection_percent: 100,
            max_ejection: Duration::from_secs(10),
            count_5xx: false,
        }
    );
    assert_eq!(
        pool.retry_budget,
        RetryBudget {
            percent: 0,
            min_per_second: 100_000,
        }
    );
}

#[test]
fn expect_status_forms() {
    for (written, expected) in [
        ("200", (200, 200)),
        ("\"204\"", (204, 204)),
        ("\"200-299\"", (200, 299)),
        ("\"100-599\"", (100, 599)),
    ] {
        let text = MINIMAL.replace(
            "[[pool.backend]]",
            &format!(
                "[pool.health_check]\nkind = \"http\"\nexpect_status = {written}\n\n[[pool.backend]]"
            ),
        );
        let config = parse(&text).unwrap();
        assert_eq!(
            config.pools[0].health_check.expect_status, expected,
            "{written}"
        );
    }
}

#[test]
fn tcp_check_may_set_its_port() {
    let text = MINIMAL.replace(
        "[[pool.backend]]",
        "[pool.health_check]\nkind = \"tcp\"\nport = 65535\n\n[[pool.backend]]",
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.pools[0].health_check.kind, HealthCheckKind::Tcp);
    assert_eq!(config.pools[0].health_check.port, Some(65535));
}

#[test]
fn unset_max_ejection_never_cuts_a_longer_base_ejection_short() {
    let text = MINIMAL.replace(
        "[[pool.backend]]",
        "[pool.outlier_detection]\nbase_ejection = \"10m\"\n\n[[pool.backend]]",
    );
    let config = parse(&text).unwrap();
    let outlier_detection = &config.pools[0].outlier_detection;
    assert_eq!(outlier_detection.base_ejection, Duration::from_secs(600));
    assert_eq!(outlier_detection.max_ejection, Duration::from_secs(600));
}

#[test]
fn everything_set_explicitly() {
    let text = r#"
[runtime]
workers = 4

[admin]
bind = "0.0.0.0:9900"
token = "s3cret"

[[listener]]
name = "web"
bind = "0.0.0.0:80"
pool = "sticky"
request_head_timeout = "5s"
idle_timeout = "2m"
max_header_bytes = 8192

[[listener]]
name = "db"
bind = "127.0.0.1:5432"
protocol = "tcp"
pool = "db"

[[listener]]
name = "test-a"
bind = "127.0.0.1:0"
pool = "db"

[[listener]]
name = "test-b"
bind = "127.0.0.1:0"
pool = "db"

[[pool]]
name = "sticky"
algorithm = "maglev"
hash_key = "header:X-User-Id"
retries = 0
connect_timeout = "250ms"
timeout = "1h"

[pool.outlier_detection]
consecutive_failures = 0

[[pool.backend]]
address = "10.0.0.1:8080"
weight = 0

[[pool.backend]]
address = "[2001:db8::1]:8080"
weight = 1000
backup = true

[[pool]]
name = "db"
algorithm = "least_connections"
health_check = { kind = "none" }
backend = [{ address = "10.0.0.2:5432" }]

[[pool]]
name = "unused"
[[pool.backend]]
address = "10.0.0.3:1"
"#;
    let config = parse(text).unwrap();
    assert_eq!(config.runtime.workers, 4);
    assert_eq!(
        config.admin.as_ref().unwrap().token.as_deref(),
        Some("s3cret")
    );
    assert_eq!(config.listeners.len(), 4);
    assert_eq!(config.listeners[0].idle_timeout, Duration::from_secs(120));
    assert_eq!(config.listeners[0].max_header_bytes, 8192);
    assert_eq!(config.listeners[1].protocol, Protocol::Tcp);

    let sticky = config.pool("sticky").unwrap();
    assert_eq!(sticky.algorithm, Algorithm::Maglev);
    assert_eq!(sticky.hash_key, HashKey::Header("x-user-id".into()));
    assert_eq!(sticky.retries, 0);
    assert_eq!(sticky.connect_timeout, Duration::from_millis(250));
    assert_eq!(sticky.timeout, Duration::from_secs(3600));
    assert_eq!(sticky.outlier_detection.consecutive_failures, 0);
    assert_eq!(sticky.outlier_detection.max_ejection_percent, 50);
    assert_eq!(sticky.backends[0].weight, 0);
    assert!(sticky.backends[1].backup);

    let db = config.pool("db").unwrap();
    assert_eq!(db.health_check.kind, HealthCheckKind::None);
    assert_eq!(db.backends.len(), 1);
    assert!(config.pool("unused").is_some());
}

#[test]
fn every_log_and_alerts_key_set() {
    let text = format!(
        r#"[runtime]
workers = 2
drain_timeout = "90s"

[log]
level = "halb_proxy=debug, halb_health::probe=TRACE,warn"

[access_log]
format = "plain"
path = "/var/log/halb/access.log"

[alerts]
webhooks = [
  "http://127.0.0.1:9000/alerts",
  "http://alerts.internal/halb?team=sre",
  "http://[::1]:8080",
]
timeout = "2s"
max_attempts = 20

{MINIMAL}"#
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.runtime.workers, 2);
    assert_eq!(config.runtime.drain_timeout, Duration::from_secs(90));
    // Spaces around directives are dropped; the rest is kept as written.
    assert_eq!(
        config.log.level.as_deref(),
        Some("halb_proxy=debug,halb_health::probe=TRACE,warn")
    );
    assert_eq!(
        config.access_log,
        Some(AccessLog {
            format: AccessLogFormat::Plain,
            path: Some("/var/log/halb/access.log".into()),
        })
    );
    assert_eq!(
        config.alerts,
        Alerts {
            webhooks: vec![
                "http://127.0.0.1:9000/alerts".to_owned(),
                "http://alerts.internal/halb?team=sre".to_owned(),
                "http://[::1]:8080".to_owned(),
            ],
            timeout: Duration::from_secs(2),
            max_attempts: 20,
        }
    );
}

#[test]
fn present_but_empty_log_and_alerts_tables_get_the_defaults() {
    let text = format!("[log]\n[access_log]\n[alerts]\n{MINIMAL}");
    let config = parse(&text).unwrap();
    assert_eq!(config.log, Log::default());
    // A present [access_log] turns the access log on: JSON to standard output.
    assert_eq!(
        config.access_log,
        Some(AccessLog {
            format: AccessLogFormat::Json,
            path: None,
        })
    );
    assert_eq!(config.alerts, Alerts::default());
}

#[test]
fn access_log_path_stdout_means_standard_output() {
    let text = format!("[access_log]\npath = \"stdout\"\n{MINIMAL}");
    let config = parse(&text).unwrap();
    assert_eq!(config.access_log.unwrap().path, None);
}
