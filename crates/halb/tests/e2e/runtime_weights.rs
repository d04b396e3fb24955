//! Runtime weights (issue 19): `POST /api/v1/pools/{pool}/backends/{address}/weight`
//! with `{"weight": N}` sets a backend's weight at once, as HAProxy's
//! `set weight`; the balance follows from the next request, and a reload
//! brings back the config's weight. Bad bodies and unknown backends are
//! refused by name.

use crate::support::backends::named;
use crate::support::client::HttpClient;
use crate::support::node_config::NodeConfig;
use crate::support::reload::reload_via_api;
use crate::support::status::backend_entry;
use crate::support::{free_addr, Halb};

/// How many of `n` keep-alive requests each of `names` answered.
async fn tally(client: &mut HttpClient, n: usize, names: &[&str]) -> Vec<usize> {
    let mut counts = vec![0; names.len()];
    for _ in 0..n {
        let reply = client.get("/", &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let text = reply.text();
        let index = names
            .iter()
            .position(|name| *name == text)
            .unwrap_or_else(|| panic!("answered by {text:?}"));
        counts[index] += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weight_set_at_run_time_steers_the_next_requests_until_a_reload() {
    let (a, b) = (named("a").await, named("b").await);
    let front = free_addr();
    let config = NodeConfig::new()
        .listener("front", front, "app")
        .pool("app", &[a.addr, b.addr])
        .pool_key("app", "algorithm", "\"weighted_round_robin\"");
    let halb = Halb::start(&config.to_toml()).await;
    let mut client = HttpClient::connect(front).await;
    assert_eq!(tally(&mut client, 40, &["a", "b"]).await, [20, 20]);

    let path = format!("/api/v1/pools/app/backends/{}/weight", b.addr);
    let set = halb.admin_post_json(&path, r#"{"weight": 3}"#).await;
    assert_eq!(set.status, 200, "{}", set.text());
    let answer: serde_json::Value = serde_json::from_slice(&set.body).expect("JSON");
    assert_eq!(answer["weight"], 3, "{answer:#}");
    assert_eq!(
        tally(&mut client, 40, &["a", "b"]).await,
        [10, 30],
        "3:1 at once"
    );

    let set = halb.admin_post_json(&path, r#"{"weight": 0}"#).await;
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(
        tally(&mut client, 20, &["a", "b"]).await,
        [20, 0],
        "weight 0: none"
    );
    let status = halb.status_json().await;
    assert_eq!(backend_entry(&status, b.addr)["weight"], 0);
    assert_eq!(
        backend_entry(&status, b.addr)["state"],
        "up",
        "still up, just unweighted"
    );

    // A reload brings the config's weights back.
    let (code, outcome) = reload_via_api(&halb, &[]).await;
    assert_eq!(code, 200, "{outcome:#}");
    let status = halb.status_json().await;
    assert_eq!(backend_entry(&status, b.addr)["weight"], 1, "{status:#}");
    assert_eq!(tally(&mut client, 40, &["a", "b"]).await, [20, 20]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_weight_requests_are_refused_by_name() {
    let a = named("a").await;
    let front = free_addr();
    let config = NodeConfig::new()
        .listener("front", front, "app")
        .pool("app", &[a.addr]);
    let halb = Halb::start(&config.to_toml()).await;
    let path = format!("/api/v1/pools/app/backends/{}/weight", a.addr);
    let cases = [
        (
            path.as_str(),
            r#"{"weight": 2000}"#,
            400,
            "expected an integer from 0 to 1000, got 2000",
        ),
        (path.as_str(), r#"{"weight": "5"}"#, 400, "bad JSON body"),
        (
            path.as_str(),
            r#"{"weigth": 5}"#,
            400,
            "unknown field `weigth`",
        ),
        (path.as_str(), "", 400, "expected a JSON body"),
        (
            "/api/v1/pools/api/backends/127.0.0.1:1/weight",
            r#"{"weight": 1}"#,
            404,
            "no pool named",
        ),
        (
            "/api/v1/pools/app/backends/127.0.0.1:1/weight",
            r#"{"weight": 1}"#,
            404,
            "has no backend 127.0.0.1:1",
        ),
    ];
    for (path, body, status, message) in cases {
        let answer = halb.admin_post_json(path, body).await;
        assert_eq!(
            answer.status,
            status,
            "POST {path} {body}: {}",
            answer.text()
        );
        assert!(
            answer.text().contains(message),
            "POST {path} {body}: {}",
            answer.text()
        );
    }
    let get = halb.admin_request("GET", &path).await;
    assert_eq!(get.status, 405);
    let status = halb.status_json().await;
    assert_eq!(
        backend_entry(&status, a.addr)["weight"],
        1,
        "nothing changed"
    );
}
