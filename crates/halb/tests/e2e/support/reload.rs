//! Reloading a running halb the three ways it offers (`POST
//! /api/v1/reload`, SIGHUP, `--watch`) and reading what the status API says
//! about reloads (`config: {hash, reloads_ok, reloads_failed, last_error}`).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::Halb;

/// `POST /api/v1/reload` (with `headers`, such as a bearer token): the
/// status and the body parsed as JSON.
pub async fn reload_via_api(halb: &Halb, headers: &[(&str, &str)]) -> (u16, Value) {
    let response = halb
        .admin_request_with("POST", "/api/v1/reload", headers)
        .await;
    let body = serde_json::from_slice(&response.body).unwrap_or_else(|e| {
        panic!(
            "POST /api/v1/reload answered {} with a body that is not JSON ({e}): {}",
            response.status,
            response.text()
        )
    });
    (response.status, body)
}

/// The status API's `config` object.
pub async fn config_status(halb: &Halb) -> Value {
    halb.status_json().await["config"].clone()
}

/// `config.reloads_ok` and `config.reloads_failed`.
pub fn reload_counts(config: &Value) -> (u64, u64) {
    (
        config["reloads_ok"].as_u64().expect("config.reloads_ok"),
        config["reloads_failed"]
            .as_u64()
            .expect("config.reloads_failed"),
    )
}

/// Polls the status API until `reloads_ok + reloads_failed` reaches
/// `total`; returns the `config` object then. Fails the test after `limit`.
pub async fn wait_for_reloads(halb: &Halb, total: u64, limit: Duration) -> Value {
    let started = Instant::now();
    loop {
        let config = config_status(halb).await;
        let (ok, failed) = reload_counts(&config);
        if ok + failed >= total {
            return config;
        }
        if started.elapsed() > limit {
            panic!("halb did not reach {total} reloads within {limit:?}: {config:#}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Rewrites halb's config file with `config_toml`, sends SIGHUP, and waits
/// until halb counts the reload; returns the `config` status object then.
pub async fn reload_via_sighup(halb: &Halb, config_toml: &str) -> Value {
    let (ok, failed) = reload_counts(&config_status(halb).await);
    halb.rewrite_config(config_toml);
    halb.signal("HUP");
    wait_for_reloads(halb, ok + failed + 1, Duration::from_secs(10)).await
}

/// The names of the listeners the status API shows.
pub fn listener_names(status: &Value) -> Vec<String> {
    status["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| l["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The backend addresses of pool `pool` in the status API.
pub fn pool_backends(status: &Value, pool: &str) -> Vec<String> {
    status["pools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == pool)
        .flat_map(|p| p["backends"].as_array().into_iter().flatten())
        .map(|b| b["address"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A JSON array of strings as a `Vec<String>` (empty when absent).
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}
