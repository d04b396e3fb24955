//! `[[listener.route]]`: rules read in order, each error named, and rules
//! that can never match reported.

mod support;

use halb_config::{parse, HostMatch, PathMatch};
use support::{assert_error, errors, only_error};

const POOLS: &str = r#"
[[pool]]
name = "app"
[[pool.backend]]
address = "127.0.0.1:9001"
[[pool]]
name = "api"
[[pool.backend]]
address = "127.0.0.1:9002"
"#;

fn with_routes(routes: &str) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\npool = \"app\"\n{routes}{POOLS}"
    )
}

#[test]
fn routes_are_read_in_order_with_their_conditions() {
    let config = parse(&with_routes(
        r#"[[listener.route]]
name = "v1"
host = "API.example.com"
path_prefix = "/v1/"
pool = "api"
[[listener.route]]
host = "*.example.com"
header = { name = "X-Canary", value = "1" }
pool = "api"
[[listener.route]]
path = "/health"
pool = "app"
"#,
    ))
    .unwrap();
    let routes = &config.listeners[0].routes;
    assert_eq!(routes.len(), 3);
    assert_eq!(routes[0].name, "v1");
    assert_eq!(
        routes[0].host,
        Some(HostMatch::Exact("api.example.com".into()))
    );
    assert_eq!(routes[0].path, Some(PathMatch::Prefix("/v1/".into())));
    assert_eq!(routes[1].name, "route[1]", "named by its place");
    assert_eq!(
        routes[1].host,
        Some(HostMatch::Suffix(".example.com".into()))
    );
    let header = routes[1].header.as_ref().unwrap();
    assert_eq!(
        (header.name.as_str(), header.value.as_deref()),
        ("x-canary", Some("1"))
    );
    assert_eq!(routes[2].path, Some(PathMatch::Exact("/health".into())));
}

#[test]
fn a_rule_behind_a_wider_one_can_never_match() {
    let error = only_error(&with_routes(
        r#"[[listener.route]]
host = "*.example.com"
pool = "api"
[[listener.route]]
host = "shop.example.com"
path_prefix = "/cart"
pool = "app"
"#,
    ));
    assert_error(
        &error,
        "listener[0].route[1]",
        Some(8),
        "can never match: listener[0].route[0] (line 5) matches every request it would",
    );
}

#[test]
fn each_bad_condition_is_named() {
    let errors = errors(&with_routes(
        r#"[[listener.route]]
host = "api.example.com:8080"
pool = "api"
[[listener.route]]
path_prefix = "v1"
pool = "api"
[[listener.route]]
path = "/a"
path_prefix = "/b"
pool = "api"
[[listener.route]]
header = { name = "X Canary" }
pool = "api"
[[listener.route]]
pool = "api"
[[listener.route]]
path = "/x"
pool = "apii"
"#,
    ));
    let found: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.path.as_str(), e.message.as_str()))
        .collect();
    let expect = [
        ("listener[0].route[0].host", "without its port"),
        ("listener[0].route[1].path_prefix", "starting with \"/\""),
        ("listener[0].route[2].path", "not both"),
        (
            "listener[0].route[3].header.name",
            "not allowed in an HTTP header name",
        ),
        ("listener[0].route[4]", "needs at least one of host"),
        (
            "listener[0].route[5].pool",
            "names pool \"apii\", which is not defined",
        ),
    ];
    assert_eq!(found.len(), expect.len(), "{errors:#?}");
    for ((path, message), (want_path, want)) in found.iter().zip(expect) {
        assert_eq!(*path, want_path);
        assert!(message.contains(want), "{path}: {message}");
    }
}

#[test]
fn tcp_listeners_take_no_routes() {
    let error = only_error(&format!(
        "[[listener]]\nname = \"raw\"\nbind = \"127.0.0.1:8080\"\nprotocol = \"tcp\"\npool = \"app\"\n\
         [[listener.route]]\npath = \"/\"\npool = \"api\"\n{POOLS}"
    ));
    assert_error(
        &error,
        "listener[0].route",
        Some(6),
        "routes need protocol = \"http\"",
    );
}

#[test]
fn duplicate_route_names() {
    let error = only_error(&with_routes(
        r#"[[listener.route]]
name = "a"
path = "/a"
pool = "api"
[[listener.route]]
name = "a"
path = "/b"
pool = "api"
"#,
    ));
    assert_error(
        &error,
        "listener[0].route[1].name",
        Some(10),
        "duplicate route name \"a\"; already used by listener[0].route[0] (line 6)",
    );
}
