//! A WebSocket upgrade (101) passes through halb, and then bytes flow both
//! ways on the upgraded connection. The frames are written by hand.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::support::backends::websocket_echo;
use crate::support::client::read_response;
use crate::support::websocket_key::websocket_accept;
use crate::support::{within, BalancerConfig, Halb};

/// A masked client frame (RFC 6455 §5.2) with FIN set.
fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Sends `frame` and expects the echo backend to send back the same bytes.
async fn round_trip(stream: &mut BufReader<TcpStream>, frame: &[u8]) {
    stream.get_mut().write_all(frame).await.expect("send frame");
    let mut echoed = vec![0u8; frame.len()];
    within(
        Duration::from_secs(10),
        "the echoed frame",
        stream.read_exact(&mut echoed),
    )
    .await
    .expect("read echoed frame");
    assert!(
        echoed == frame,
        "the echoed frame differs from the frame sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_and_echo_pass_through() {
    let echo = websocket_echo().await;
    let config = BalancerConfig::http(&[echo.addr]);
    let _halb = Halb::start(&config.to_toml()).await;
    upgrade_and_echo(config.listen).await;
    assert_eq!(echo.requests(), 1, "one handshake reached the backend");
}

/// A WebSocket handshake through the listener at `listen` to an echo
/// backend, then frames (one of 200 KB) that must come back as sent.
pub(crate) async fn upgrade_and_echo(listen: std::net::SocketAddr) {
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let mut stream = BufReader::new(TcpStream::connect(listen).await.expect("connect"));
    let handshake = format!(
        "GET /chat HTTP/1.1\r\nHost: {listen}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .get_mut()
        .write_all(handshake.as_bytes())
        .await
        .expect("send handshake");
    let response = within(
        Duration::from_secs(10),
        "the handshake answer",
        read_response(&mut stream),
    )
    .await
    .expect("handshake answer");

    assert_eq!(response.status, 101, "handshake answer: {response:?}");
    assert_eq!(
        response.header("sec-websocket-accept"),
        Some(websocket_accept(key).as_str())
    );
    assert_eq!(
        response
            .header("upgrade")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("websocket")
    );
    assert!(
        response
            .header("connection")
            .is_some_and(|c| c.to_ascii_lowercase().contains("upgrade")),
        "the 101 must say Connection: Upgrade: {response:?}"
    );

    round_trip(
        &mut stream,
        &client_frame(0x1, b"hello through halb", [1, 2, 3, 4]),
    )
    .await;
    round_trip(
        &mut stream,
        &client_frame(0x1, b"and once more", [9, 8, 7, 6]),
    )
    .await;
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    round_trip(&mut stream, &client_frame(0x2, &big, [0xA, 0xB, 0xC, 0xD])).await;
}
