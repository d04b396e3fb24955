//! Bodies stream through halb: a 1 GiB upload and a 1 GiB download pass
//! while halb's peak resident memory stays under 64 MiB.

use std::time::{Duration, Instant};

use crate::support::backends::{download, upload_counter};
use crate::support::body::{count_body_bytes, RepeatBody};
use crate::support::{exclusive, free_addr, within, Halb, HttpClient};
use http_body_util::BodyExt;

const GIB: u64 = 1 << 30;
const PEAK_RSS_LIMIT_KIB: u64 = 64 * 1024;
const TRANSFER_LIMIT: Duration = Duration::from_secs(300);

fn mib_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / took.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_upload_and_download_stream_with_flat_memory() {
    let _alone = exclusive().await;
    let sink = upload_counter().await;
    let source = download(GIB).await;
    let (upload_listen, download_listen, admin) = (free_addr(), free_addr(), free_addr());
    let config = format!(
        r#"[runtime]
workers = 2

[admin]
bind = "{admin}"

[[listener]]
name = "upload"
bind = "{upload_listen}"
protocol = "http"
pool = "sink"

[[listener]]
name = "download"
bind = "{download_listen}"
protocol = "http"
pool = "source"

[[pool]]
name = "sink"
algorithm = "round_robin"

[pool.health_check]
kind = "none"

[[pool.backend]]
address = "{sink}"

[[pool]]
name = "source"
algorithm = "round_robin"

[pool.health_check]
kind = "none"

[[pool.backend]]
address = "{source}"
"#,
        sink = sink.addr,
        source = source.addr,
    );
    let halb = Halb::start(&config).await;
    let rss_at_start = halb.peak_rss_kib();

    // Upload: chunked (no Content-Length), generated as it is sent.
    let started = Instant::now();
    let mut client = HttpClient::connect(upload_listen).await;
    let request = client
        .request("POST", "/upload")
        .body(RepeatBody::chunked(GIB).boxed())
        .expect("request");
    let reply = within(
        TRANSFER_LIMIT,
        "1 GiB upload through halb",
        client.exchange(request),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), GIB.to_string(), "bytes the backend received");
    eprintln!(
        "upload: 1 GiB in {took:?} ({:.0} MiB/s)",
        mib_per_s(GIB, took)
    );

    // Download: Content-Length from the backend, counted as it arrives.
    let started = Instant::now();
    let mut client = HttpClient::connect(download_listen).await;
    let request = client
        .request("GET", "/download")
        .body(crate::support::client::empty_body())
        .expect("request");
    let response = client.send(request).await;
    assert_eq!(response.status(), 200);
    let received = within(
        TRANSFER_LIMIT,
        "1 GiB download through halb",
        count_body_bytes(response.into_body()),
    )
    .await
    .expect("download body");
    let took = started.elapsed();
    assert_eq!(received, GIB, "bytes the client received");
    eprintln!(
        "download: 1 GiB in {took:?} ({:.0} MiB/s)",
        mib_per_s(GIB, took)
    );

    let peak = halb.peak_rss_kib();
    eprintln!("halb peak RSS: {peak} KiB (at start {rss_at_start} KiB)");
    assert!(
        peak < PEAK_RSS_LIMIT_KIB,
        "halb's peak RSS reached {peak} KiB streaming 1 GiB each way; limit {PEAK_RSS_LIMIT_KIB} KiB"
    );
}
