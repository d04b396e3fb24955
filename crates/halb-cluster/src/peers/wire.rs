//! The peer protocol's messages and framing: each message is a 4-byte
//! big-endian length and that many bytes of JSON. A frame over
//! [`MAX_FRAME`] or one that does not parse ends the link, named in the log.

use std::net::SocketAddr;

use halb_state::StickyEntry;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The protocol this build speaks; a peer speaking another is refused with
/// a message saying both.
pub const PROTOCOL: u32 = 1;

/// The largest frame accepted.
pub const MAX_FRAME: usize = 4 << 20;

/// One message on a peer link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Dialer → listener: who it is, and a nonce to prove the secret on.
    Hello {
        protocol: u32,
        node: String,
        nonce: String,
    },
    /// Listener → dialer: its own nonce and its proof of the secret.
    Challenge {
        node: String,
        nonce: String,
        proof: String,
    },
    /// Dialer → listener: the dialer's proof.
    Proof { proof: String },
    /// Listener → dialer: accepted.
    Welcome,
    /// Either way: the link is refused, and why.
    Refused { reason: String },
    /// Dialer → listener: this node's whole shareable state, in parts; the
    /// last has `done`.
    Resync {
        sticky: Vec<StickyEntry>,
        admin: Vec<AdminEntry>,
        done: bool,
    },
    /// Dialer → listener: entries this node learned.
    Sticky { seq: u64, entries: Vec<StickyEntry> },
    /// Dialer → listener: an operator action on this node.
    Admin { seq: u64, entry: AdminEntry },
    /// Dialer → listener: this node's own checks changed their verdict.
    Verdict {
        seq: u64,
        pool: String,
        backend: SocketAddr,
        up: bool,
        at_ms: u64,
    },
    /// Dialer → listener: still here.
    Ping { seq: u64 },
    /// Listener → dialer: everything up to `seq` is applied.
    Ack { seq: u64 },
}

/// An operator state as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminEntry {
    pub pool: String,
    pub backend: SocketAddr,
    /// `enabled`, `draining` or `disabled`.
    pub state: String,
    pub at_ms: u64,
}

/// Why a link ended.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("a frame of {0} bytes is over the limit of {1}")]
    TooLarge(usize, usize),
    #[error("a message that does not parse: {0}")]
    Bad(String),
}

/// The largest frame accepted before a peer has proved the secret.
pub const MAX_HANDSHAKE_FRAME: usize = 4096;

/// Reads one handshake message: small, so that a stranger cannot make this
/// node allocate much.
pub async fn read_handshake<R: AsyncReadExt + Unpin>(from: &mut R) -> Result<Message, WireError> {
    let length = from.read_u32().await? as usize;
    if length > MAX_HANDSHAKE_FRAME {
        return Err(WireError::TooLarge(length, MAX_HANDSHAKE_FRAME));
    }
    let mut bytes = vec![0u8; length];
    from.read_exact(&mut bytes).await?;
    decode(&bytes)
}

/// One message out of a frame's body (the bytes after its length): the
/// one place a peer's bytes become a [`Message`], so the fuzz target
/// (`fuzz/`) exercises what a link does.
pub fn decode(frame: &[u8]) -> Result<Message, WireError> {
    serde_json::from_slice(frame).map_err(|e| WireError::Bad(e.to_string()))
}

/// Reads one message.
pub async fn read<R: AsyncReadExt + Unpin>(from: &mut R) -> Result<Message, WireError> {
    read_counted(from).await.map(|(message, _)| message)
}

/// Reads one message; with the frame's size.
pub async fn read_counted<R: AsyncReadExt + Unpin>(
    from: &mut R,
) -> Result<(Message, usize), WireError> {
    let length = from.read_u32().await? as usize;
    if length > MAX_FRAME {
        return Err(WireError::TooLarge(length, MAX_FRAME));
    }
    let mut bytes = vec![0u8; length];
    from.read_exact(&mut bytes).await?;
    Ok((decode(&bytes)?, 4 + length))
}

/// Writes one message.
pub async fn write<W: AsyncWriteExt + Unpin>(
    to: &mut W,
    message: &Message,
) -> Result<usize, WireError> {
    let bytes = serde_json::to_vec(message).map_err(|e| WireError::Bad(e.to_string()))?;
    if bytes.len() > MAX_FRAME {
        return Err(WireError::TooLarge(bytes.len(), MAX_FRAME));
    }
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    frame.extend_from_slice(&bytes);
    to.write_all(&frame).await?;
    Ok(frame.len())
}

/// The proof that `role` knows the secret, bound to both nonces and both
/// names so that it cannot be replayed on another link.
pub fn proof(secret: &str, role: &str, nonces: (&str, &str), nodes: (&str, &str)) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    for part in ["halb peers v1", role, nonces.0, nonces.1, nodes.0, nodes.1] {
        mac.update(part.as_bytes());
        mac.update(b"\0");
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares two proofs in time independent of where they differ.
pub fn same_proof(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A fresh nonce (kernel randomness).
pub fn nonce() -> String {
    let read = || std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap_or_default();
    format!("{}{}", read().trim(), read().trim()).replace('-', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_bind_the_secret_the_role_and_the_nonces() {
        let p = proof("0123456789abcdef", "dialer", ("a", "b"), ("lb1", "lb2"));
        assert_eq!(
            p,
            proof("0123456789abcdef", "dialer", ("a", "b"), ("lb1", "lb2"))
        );
        assert_ne!(
            p,
            proof("0123456789abcdeX", "dialer", ("a", "b"), ("lb1", "lb2"))
        );
        assert_ne!(
            p,
            proof("0123456789abcdef", "listener", ("a", "b"), ("lb1", "lb2"))
        );
        assert_ne!(
            p,
            proof("0123456789abcdef", "dialer", ("b", "a"), ("lb1", "lb2"))
        );
        assert!(same_proof(&p, &p.clone()));
        assert!(!same_proof(&p, &p[1..]));
        assert_ne!(nonce(), nonce());
        assert!(nonce().len() >= 32);
    }

    #[tokio::test]
    async fn frames_round_trip_and_bad_ones_are_named() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let m = Message::Ack { seq: 7 };
        write(&mut a, &m).await.unwrap();
        assert_eq!(read(&mut b).await.unwrap(), m);
        a.write_all(&5u32.to_be_bytes()).await.unwrap();
        a.write_all(b"{bad}").await.unwrap();
        assert!(matches!(read(&mut b).await, Err(WireError::Bad(_))));
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(read(&mut b).await, Err(WireError::TooLarge(..))));
        a.write_all(&5000u32.to_be_bytes()).await.unwrap();
        assert!(matches!(
            read_handshake(&mut b).await,
            Err(WireError::TooLarge(5000, MAX_HANDSHAKE_FRAME))
        ));
    }
}
