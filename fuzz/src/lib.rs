//! The checks each fuzz target runs on one input, shared with the stable
//! test that replays the kept corpus (`crates/halb/tests/fuzz_corpus.rs`
//! includes this file), so CI runs the same assertions on every corpus file
//! without a nightly toolchain. Each check panics when halb's decoder
//! breaks a promise; a decoder's own panic is a finding too.

use std::net::Ipv4Addr;
use std::time::Duration;

use halb_proxy::codec_check::{self, Framing};
use http::Method;

/// The head limit the request target parses with: the listener default.
const MAX_HEAD: usize = 64 * 1024;

/// Request heads: a head taken whole is the same head parsed alone, and
/// never claims more bytes than it was given.
pub fn request_head(data: &[u8]) {
    let parsed = codec_check::parse_request_head(data, MAX_HEAD);
    if let Ok(Some(head)) = &parsed {
        assert!(head.head_len <= data.len());
        assert_ne!(head.method, Method::CONNECT, "CONNECT is refused");
        if let Framing::Length(n) = head.framing {
            assert!(n > 0 && n < 1 << 62, "length {n}");
        }
        let alone = codec_check::parse_request_head(&data[..head.head_len], MAX_HEAD);
        assert_eq!(alone, parsed, "the head depends on what follows it");
    }
}

/// Chunked bodies: where reads end changes nothing, and a body never
/// gives more data than its bytes.
pub fn chunked(data: &[u8]) {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let split = usize::from(split) * body.len() / 255;
    let whole = codec_check::decode_chunked(body, body.len());
    let in_two = codec_check::decode_chunked(body, split);
    assert_eq!(whole, in_two, "split at {split}");
    if let Ok(decoded) = whole {
        assert!(decoded.data.len() <= body.len());
        if let Some(consumed) = decoded.consumed {
            assert!(consumed <= body.len() && decoded.data.len() < consumed);
        }
    }
}

/// Response heads (the first byte picks GET or HEAD): as for requests, and
/// a response with a body is never read both by length and as chunked.
pub fn response_head(data: &[u8]) {
    let Some((&pick, raw)) = data.split_first() else {
        return;
    };
    let method = if pick & 1 == 0 {
        Method::GET
    } else {
        Method::HEAD
    };
    let parsed = codec_check::parse_response_head(raw, &method).map_err(|e| e.to_string());
    if let Ok(Some(head)) = &parsed {
        assert!(head.head_len <= raw.len());
        if method == Method::HEAD {
            assert_eq!(head.framing, Framing::None, "a HEAD response has no body");
        }
        if head.framing == Framing::UntilClose {
            assert!(!head.keep_alive);
        }
        let alone = codec_check::parse_response_head(&raw[..head.head_len], &method)
            .map_err(|e| e.to_string());
        assert_eq!(alone, parsed, "the head depends on what follows it");
    }
}

/// Config files: errors, never a panic; a config that parses has no
/// difference from itself.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = halb_config::parse(text) {
        assert!(halb_config::diff(&config, &config).is_empty());
    }
    let _ = halb_config::parse_shared(text);
}

/// VRRP adverts: any packet is an advert or a counted reason; and an advert
/// built from the input, encoded and put in an IPv4 header, decodes to
/// itself.
pub fn vrrp_advert(data: &[u8]) {
    use halb_vrrp::packet::Advert;
    let _ = Advert::decode(data);
    if data.len() < 4 {
        return;
    }
    let centis = u16::from_be_bytes([data[2], data[3]]).clamp(1, 4095);
    let advert = Advert {
        vrid: data[0],
        priority: data[1],
        interval: Duration::from_millis(u64::from(centis) * 10),
        addresses: data[4..]
            .chunks_exact(4)
            .take(255)
            .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]))
            .collect(),
    };
    let source = Ipv4Addr::new(198, 18, 0, 1);
    let message = advert.encode(source, halb_vrrp::packet::GROUP);
    let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 255, 112, 0, 0];
    packet[2..4].copy_from_slice(&((20 + message.len()) as u16).to_be_bytes());
    packet.extend_from_slice(&source.octets());
    packet.extend_from_slice(&halb_vrrp::packet::GROUP.octets());
    packet.extend_from_slice(&message);
    let received = Advert::decode(&packet).expect("an advert halb encoded decodes");
    assert_eq!((received.source, received.advert), (source, advert));
}

/// Peer messages: a frame is a message or an error naming why; a message
/// written back out reads as itself.
pub fn peer_message(data: &[u8]) {
    use halb_cluster::peers::wire;
    if let Ok(message) = wire::decode(data) {
        let again = serde_json::to_vec(&message).expect("a message serialises");
        assert_eq!(wire::decode(&again).ok(), Some(message));
    }
}

/// One target's check of one input.
pub type Check = fn(&[u8]);

/// Every target by its name (as in `fuzz/fuzz_targets/` and
/// `fuzz/corpus/`), for the replay test.
pub const TARGETS: &[(&str, Check)] = &[
    ("request_head", request_head),
    ("chunked", chunked),
    ("response_head", response_head),
    ("config", config),
    ("vrrp_advert", vrrp_advert),
    ("peer_message", peer_message),
];
