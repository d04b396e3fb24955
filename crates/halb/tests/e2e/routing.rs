//! Routing (issue 19): `[[listener.route]]` sends requests to pools by
//! host (exact and `*.suffix`), path prefix or exact path, and header, in
//! order, with the listener's `pool` for the rest. The host of an
//! absolute-form target wins over the Host header, and is the one the
//! backend is told: no choice of form routes a request by one host and
//! serves it as another. Status and metrics count by route.

use std::net::SocketAddr;

use serde_json::Value;

use crate::support::backends::{echo_headers, named};
use crate::support::client::raw_exchange;
use crate::support::{free_addr, Halb};

/// A listener with every kind of rule, over pools of one named backend
/// each (`api`, `shop`, `wild`, `health`, `canary`) and `web` by default.
fn config(admin: SocketAddr, front: SocketAddr, pools: &[(&str, SocketAddr)]) -> String {
    let mut toml = format!(
        r#"[admin]
bind = "{admin}"

[[listener]]
name = "front"
bind = "{front}"
pool = "web"

[[listener.route]]
name = "api"
host = "api.example.com"
path_prefix = "/v1/"
pool = "api"

[[listener.route]]
name = "canary"
header = {{ name = "X-Canary", value = "1" }}
pool = "canary"

[[listener.route]]
host = "shop.example.com"
pool = "shop"

[[listener.route]]
name = "wild"
host = "*.example.com"
pool = "wild"

[[listener.route]]
name = "health"
path = "/healthz"
pool = "health"
"#
    );
    for (name, address) in pools {
        toml.push_str(&format!(
            "\n[[pool]]\nname = \"{name}\"\n[[pool.backend]]\naddress = \"{address}\"\n"
        ));
    }
    toml
}

/// `GET target` with these header lines; the answer's status and body.
async fn get(front: SocketAddr, target: &str, headers: &str) -> (u16, String) {
    let request = format!("GET {target} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n");
    let response = raw_exchange(front, request.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("GET {target}: {e}"));
    (response.status, response.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_to_the_first_route_that_matches() {
    let names = ["web", "api", "shop", "wild", "health", "canary"];
    let mut backends = Vec::new();
    for name in names {
        backends.push(named(name).await);
    }
    let pools: Vec<(&str, SocketAddr)> = names
        .iter()
        .copied()
        .zip(backends.iter().map(|b| b.addr))
        .collect();
    let (admin, front) = (free_addr(), free_addr());
    let halb = Halb::start(&config(admin, front, &pools)).await;

    let cases = [
        (
            "/v1/users",
            "Host: api.example.com\r\n",
            "api",
            "host and path prefix",
        ),
        (
            "/v1/users",
            "Host: API.Example.COM:8080\r\n",
            "api",
            "any case, any port",
        ),
        (
            "/v2/users",
            "Host: api.example.com\r\n",
            "wild",
            "prefix not met: the wildcard",
        ),
        ("/", "Host: shop.example.com\r\n", "shop", "exact host"),
        (
            "/",
            "Host: eu.shop.example.com\r\n",
            "wild",
            "wildcard, two labels deep",
        ),
        (
            "/",
            "Host: example.com\r\n",
            "web",
            "a wildcard needs a label before it",
        ),
        (
            "/",
            "Host: other.test\r\nX-Canary: 1\r\n",
            "canary",
            "header",
        ),
        (
            "/",
            "Host: other.test\r\nX-Canary: 2\r\n",
            "web",
            "header of another value",
        ),
        ("/healthz", "Host: other.test\r\n", "health", "exact path"),
        (
            "/healthz/x",
            "Host: other.test\r\n",
            "web",
            "an exact path only",
        ),
        (
            "/healthz?full=1",
            "Host: other.test\r\n",
            "health",
            "the query is not the path",
        ),
        (
            "/",
            "Host: other.test\r\n",
            "web",
            "no rule: the listener's pool",
        ),
    ];
    for (target, headers, expected, why) in cases {
        let (status, body) = get(front, target, headers).await;
        assert_eq!(
            (status, body.as_str()),
            (200, expected),
            "{why}: GET {target} {headers:?}"
        );
    }

    let status = halb.status_json().await;
    let routes = &status["listeners"][0]["routes"];
    let summary: Vec<(String, String, u64)> = routes
        .as_array()
        .expect("routes")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_owned(),
                r["pool"].as_str().unwrap_or_default().to_owned(),
                r["requests"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    let expect = [
        ("api", "api", 2),
        ("canary", "canary", 1),
        ("route[2]", "shop", 1),
        ("wild", "wild", 2),
        ("health", "health", 2),
        ("default", "web", 4),
    ];
    let expect: Vec<(String, String, u64)> = expect
        .iter()
        .map(|(n, p, c)| (n.to_string(), p.to_string(), *c))
        .collect();
    assert_eq!(summary, expect, "{routes:#}");
    assert_eq!(routes[0]["host"], "api.example.com");
    assert_eq!(routes[0]["path_prefix"], "/v1/");
    assert_eq!(routes[3]["host"], "*.example.com");

    let metrics = halb.admin_request("GET", "/metrics").await.text();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("halb_http_requests_total") && l.contains("route=\"wild\""))
        .unwrap_or_else(|| panic!("no series for route wild:\n{metrics}"));
    assert!(
        line.contains("pool=\"wild\"") && line.ends_with(" 2"),
        "{line}"
    );
}

/// `GET http://a.example/x` with `Host: b.example`: routed by a.example,
/// and the backend is told a.example, not b.example.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_target_routes_and_is_forwarded_by_its_own_host() {
    let (guarded, web) = (echo_headers().await, named("web").await);
    let (admin, front) = (free_addr(), free_addr());
    let toml = format!(
        r#"[admin]
bind = "{admin}"
[[listener]]
name = "front"
bind = "{front}"
pool = "web"
[[listener.route]]
host = "admin.example.com"
pool = "admin"
[[pool]]
name = "web"
[[pool.backend]]
address = "{}"
[[pool]]
name = "admin"
[[pool.backend]]
address = "{}"
"#,
        web.addr, guarded.addr
    );
    let _halb = Halb::start(&toml).await;

    // The Host header alone would route to web; the target's host wins.
    let (status, body) = get(
        front,
        "http://admin.example.com/panel",
        "Host: www.example.com\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).expect("the echoed headers");
    assert_eq!(
        seen["host"],
        serde_json::json!(["admin.example.com"]),
        "{seen:#}"
    );

    // And the other way round: a target host that no rule takes goes to
    // web, whatever the Host header says.
    let (status, body) = get(
        front,
        "http://www.example.com/panel",
        "Host: admin.example.com\r\n",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "web"));
}
