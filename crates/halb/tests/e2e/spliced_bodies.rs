//! Large Content-Length response bodies go from the backend's socket to
//! the client's with `splice(2)`: they must arrive whole and in order, let
//! the backend connection serve again, and fail as a copied body would
//! when the backend stalls or breaks off.

use crate::backend_protocol::{
    a_get_after_the_break_is_whole, body_stalls, pattern, raw_get, read_until_closed, ANSWER_LIMIT,
};
use crate::support::scripted::{ok, scripted};
use crate::support::{within, BalancerConfig, Halb, HttpClient};

/// Well above the size from which bodies are spliced (64 KiB).
const LARGE: usize = 3 * 1024 * 1024 + 17;

/// Pipes the halb process holds open (spare pipes kept after a splice).
fn open_pipes(halb: &Halb) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", halb.pid()))
        .expect("the halb process's fds")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("pipe:"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_sized_bodies_arrive_whole_and_the_backend_connection_serves_again() {
    let (backend, seen) = scripted(|mut wire| async move {
        while let Some(request) = wire.read_request().await {
            let body = match request.target.as_str() {
                "/large" => pattern(LARGE),
                _ => b"small".to_vec(),
            };
            // Head and body in one write: some of the body arrives with the
            // head, the rest is still in the socket.
            if !wire.write(&ok(&body)).await {
                return;
            }
        }
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]);
    let halb = Halb::start(&config.to_toml()).await;
    let pipes_before = open_pipes(&halb);

    let mut client = HttpClient::connect(config.listen).await;
    for path in ["/large", "/small", "/large", "/large"] {
        let reply = within(ANSWER_LIMIT, "a large GET", client.get(path, &[])).await;
        assert_eq!(reply.status, 200, "{path}");
        if path == "/large" {
            assert_eq!(reply.body.len(), LARGE, "{path}");
            assert!(reply.body == pattern(LARGE), "{path}: the body's bytes");
        } else {
            assert_eq!(reply.text(), "small");
        }
    }
    assert_eq!(seen.count(), 4);
    assert_eq!(
        backend.connections(),
        1,
        "each spliced body left the backend connection ready for the next request"
    );
    assert!(
        open_pipes(&halb) > pipes_before,
        "a spliced body leaves its pipe as a spare ({pipes_before} pipes before)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_that_stalls_is_cut_off_after_the_pool_timeout() {
    body_stalls(LARGE, 200 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_the_backend_breaks_off_closes_the_client_connection() {
    const SENT: usize = 300 * 1024 + 5;
    let (backend, _seen) = scripted(|mut wire| async move {
        while let Some(request) = wire.read_request().await {
            if request.target == "/broken" {
                let mut start =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {LARGE}\r\n\r\n").into_bytes();
                start.extend(pattern(SENT));
                wire.write(&start).await;
                return;
            }
            wire.write(&ok(b"whole")).await;
        }
    })
    .await;
    let config = BalancerConfig::http(&[backend.addr]);
    let _halb = Halb::start(&config.to_toml()).await;

    let broken = read_until_closed(config.listen, &raw_get("/broken")).await;
    assert!(broken.head.starts_with("HTTP/1.1 200"), "{}", broken.head);
    assert_eq!(broken.after_head.len(), SENT, "{}", broken.head);
    assert!(
        broken.after_head == pattern(SENT),
        "the bytes before the break"
    );

    a_get_after_the_break_is_whole(config.listen).await;
}
