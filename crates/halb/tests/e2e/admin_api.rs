//! The admin API's access control and errors (issue 4): a bearer token on
//! every path but `/healthz`, JSON errors, and a non-loopback admin bind
//! without a token refused at start.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::support::backends::named;
use crate::support::client::connection_refused;
use crate::support::node_config::NodeConfig;
use crate::support::process::{run_halb, TempFile};
use crate::support::reload::{reload_counts, reload_via_api};
use crate::support::{free_addr, free_port, Halb};

const TOKEN: &str = "e2e-admin-token-7f3a";

/// The body of an admin answer as JSON.
fn json(response: &crate::support::client::RawResponse) -> Value {
    serde_json::from_slice(&response.body).unwrap_or_else(|e| {
        panic!(
            "{} answer is not JSON ({e}): {}",
            response.status,
            response.text()
        )
    })
}

/// `halb ARGS --config FILE` on `config_toml`.
fn halb_on(command: &str, config_toml: &str) -> crate::support::process::Finished {
    let file = TempFile::with_contents("admin.toml", config_toml);
    let path = file.path.to_str().expect("UTF-8 temp path");
    run_halb(&[command, "--config", path], Duration::from_secs(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_guards_every_path_but_healthz() {
    let a = named("a").await;
    let config = NodeConfig::new()
        .token(TOKEN)
        .listener("front", free_addr(), "app")
        .pool("app", &[a.addr]);
    let halb = Halb::start(&config.to_toml()).await;
    let bearer = format!("Bearer {TOKEN}");
    let same_length_wrong = format!("Bearer {}X", &TOKEN[..TOKEN.len() - 1]);
    let refusals: [(&str, Vec<(&str, &str)>); 5] = [
        ("no Authorization", vec![]),
        ("a wrong token", vec![("Authorization", "Bearer wrong")]),
        (
            "a wrong token of the right length",
            vec![("Authorization", same_length_wrong.as_str())],
        ),
        ("the token without Bearer", vec![("Authorization", TOKEN)]),
        (
            "another scheme",
            vec![("Authorization", "Basic ZTJlOmUyZQ==")],
        ),
    ];

    let healthz = halb.admin_request("GET", "/healthz").await;
    assert_eq!(healthz.status, 200, "/healthz without a token");

    for (method, path) in [
        ("GET", "/api/v1/status"),
        ("POST", "/api/v1/reload"),
        ("GET", "/api/v1/no-such-thing"),
        (
            "POST",
            &*format!("/api/v1/pools/app/backends/{}/drain", a.addr),
        ),
    ] {
        for (why, headers) in &refusals {
            let response = halb.admin_request_with(method, path, headers).await;
            assert_eq!(
                response.status,
                401,
                "{method} {path} with {why}: {}",
                response.text()
            );
            assert!(
                json(&response)["error"]
                    .as_str()
                    .is_some_and(|e| !e.is_empty()),
                "{method} {path} with {why}: 401 without an error message: {}",
                response.text()
            );
        }
    }

    // Nothing the refused requests asked for happened.
    let authorized = [("Authorization", bearer.as_str())];
    let status = halb
        .admin_request_with("GET", "/api/v1/status", &authorized)
        .await;
    assert_eq!(status.status, 200, "{}", status.text());
    let status = json(&status);
    assert_eq!(reload_counts(&status["config"]), (0, 0), "{status:#}");
    assert_eq!(
        status["pools"][0]["backends"][0]["state"], "up",
        "{status:#}"
    );

    let (code, outcome) = reload_via_api(&halb, &authorized).await;
    assert_eq!(code, 200, "{outcome:#}");
    assert_eq!(outcome["status"], "applied", "{outcome:#}");
    let status = halb
        .admin_request_with("GET", "/api/v1/status", &authorized)
        .await;
    assert_eq!(reload_counts(&json(&status)["config"]), (1, 0));

    let missing = halb
        .admin_request_with("GET", "/api/v1/no-such-thing", &authorized)
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert!(
        json(&missing)["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{}",
        missing.text()
    );
    assert!(
        missing
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        missing.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_admin_api_is_open_on_loopback() {
    let a = named("a").await;
    let config = NodeConfig::new()
        .listener("front", free_addr(), "app")
        .pool("app", &[a.addr]);
    let halb = Halb::start(&config.to_toml()).await;
    let status = halb.admin_request("GET", "/api/v1/status").await;
    assert_eq!(status.status, 200, "{}", status.text());
    let missing = halb.admin_request("GET", "/api/v1/no-such-thing").await;
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert!(json(&missing)["error"].is_string(), "{}", missing.text());
    let wrong_method = halb.admin_request("GET", "/api/v1/reload").await;
    assert_eq!(wrong_method.status, 405, "{}", wrong_method.text());
    assert!(json(&wrong_method)["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_admin_bind_needs_a_token() {
    let admin = SocketAddr::from(([0, 0, 0, 0], free_port()));
    let front = free_addr();
    let open = NodeConfig::new()
        .admin_bind(admin)
        .listener("front", front, "app")
        .pool("app", &[free_addr()]);

    let checked = halb_on("check", &open.to_toml());
    assert_eq!(checked.code(), Some(1), "halb check: {}", checked.stderr);
    assert!(
        checked.stderr.contains("admin.token"),
        "halb check must name admin.token: {}",
        checked.stderr
    );

    let ran = halb_on("run", &open.to_toml());
    assert_eq!(ran.code(), Some(1), "halb run: {}", ran.stderr);
    assert!(
        ran.stderr.contains("admin.token"),
        "halb run must name admin.token: {}",
        ran.stderr
    );
    assert!(
        connection_refused(front).await,
        "halb run started a listener"
    );

    let guarded = open.token(TOKEN);
    let checked = halb_on("check", &guarded.to_toml());
    assert_eq!(
        checked.code(),
        Some(0),
        "with a token: {}{}",
        checked.stdout,
        checked.stderr
    );
}
