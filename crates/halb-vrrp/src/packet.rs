//! The VRRPv3 advertisement (RFC 5798 §5.1) for IPv4: encoding, and the
//! checks a received one must pass before the state machine sees it.
//!
//! ```text
//!  0                   1                   2                   3
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! |                       IPvX Address(es)                        |
//! ```
//! The checksum covers an IPv4 pseudo-header (source, destination, zero,
//! protocol 112, VRRP length) and the VRRP message (§5.2.8), as keepalived
//! and routers compute it.

use std::net::Ipv4Addr;
use std::time::Duration;

/// IP protocol number of VRRP.
pub const PROTOCOL: u8 = 112;
/// The multicast group adverts go to.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
const VERSION: u8 = 3;
const TYPE_ADVERTISEMENT: u8 = 1;

/// One advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub vrid: u8,
    /// 0: the master is leaving; 1-254 backup priorities; 255: address owner.
    pub priority: u8,
    /// The sender's advert interval, in centiseconds on the wire.
    pub interval: Duration,
    pub addresses: Vec<Ipv4Addr>,
}

/// A received advert that passed every check, and who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub source: Ipv4Addr,
    pub advert: Advert,
}

/// Why a received packet is not a usable advert; each is counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadAdvert {
    #[error("shorter than an IPv4 header and a VRRP header ({0} bytes)")]
    Short(usize),
    #[error("not IPv4 protocol 112")]
    NotVrrp,
    #[error("TTL {0}, not 255: it crossed a router")]
    Ttl(u8),
    #[error("version {0}, not 3")]
    Version(u8),
    #[error("type {0}, not an advertisement")]
    Type(u8),
    #[error("{count} addresses announced, {room} bytes for them")]
    Length { count: u8, room: usize },
    #[error("bad checksum")]
    Checksum,
    #[error("advert interval 0")]
    Interval,
}

impl Advert {
    /// The VRRP message (no IP header), its checksum computed for a packet
    /// from `source` to `destination`.
    pub fn encode(&self, source: Ipv4Addr, destination: Ipv4Addr) -> Vec<u8> {
        let centis = (self.interval.as_millis() / 10).clamp(1, 4095) as u16;
        let mut message = Vec::with_capacity(8 + 4 * self.addresses.len());
        message.push((VERSION << 4) | TYPE_ADVERTISEMENT);
        message.push(self.vrid);
        message.push(self.priority);
        message.push(self.addresses.len() as u8);
        message.extend_from_slice(&centis.to_be_bytes());
        message.extend_from_slice(&[0, 0]);
        for address in &self.addresses {
            message.extend_from_slice(&address.octets());
        }
        let sum = checksum(source, destination, &message);
        message[6..8].copy_from_slice(&sum.to_be_bytes());
        message
    }

    /// Checks a whole IPv4 packet as a raw socket gives it (IP header
    /// first) and reads the advert in it.
    pub fn decode(packet: &[u8]) -> Result<Received, BadAdvert> {
        if packet.len() < 20 {
            return Err(BadAdvert::Short(packet.len()));
        }
        let header_len = usize::from(packet[0] & 0x0f) * 4;
        if packet[0] >> 4 != 4 || packet[9] != PROTOCOL || header_len < 20 {
            return Err(BadAdvert::NotVrrp);
        }
        if packet.len() < header_len + 8 {
            return Err(BadAdvert::Short(packet.len()));
        }
        let ttl = packet[8];
        let source = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
        let destination = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        let total = usize::from(u16::from_be_bytes([packet[2], packet[3]])).min(packet.len());
        let message = &packet[header_len..total.max(header_len)];
        if message.len() < 8 {
            return Err(BadAdvert::Short(packet.len()));
        }
        if ttl != 255 {
            return Err(BadAdvert::Ttl(ttl));
        }
        if message[0] >> 4 != VERSION {
            return Err(BadAdvert::Version(message[0] >> 4));
        }
        if message[0] & 0x0f != TYPE_ADVERTISEMENT {
            return Err(BadAdvert::Type(message[0] & 0x0f));
        }
        let count = message[3];
        let room = message.len() - 8;
        if usize::from(count) * 4 > room {
            return Err(BadAdvert::Length { count, room });
        }
        if checksum(source, destination, message) != 0 {
            return Err(BadAdvert::Checksum);
        }
        let centis = u16::from_be_bytes([message[4], message[5]]) & 0x0fff;
        if centis == 0 {
            return Err(BadAdvert::Interval);
        }
        let addresses = message[8..8 + usize::from(count) * 4]
            .chunks_exact(4)
            .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]))
            .collect();
        Ok(Received {
            source,
            advert: Advert {
                vrid: message[1],
                priority: message[2],
                interval: Duration::from_millis(u64::from(centis) * 10),
                addresses,
            },
        })
    }
}

/// The Internet checksum of the pseudo-header and `message`; 0 when
/// `message` carries a right checksum.
fn checksum(source: Ipv4Addr, destination: Ipv4Addr, message: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    };
    add(&source.octets());
    add(&destination.octets());
    add(&[0, PROTOCOL]);
    add(&(message.len() as u16).to_be_bytes());
    add(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header in front of `message`, as the kernel delivers it.
    fn packet(source: Ipv4Addr, ttl: u8, message: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0xc0];
        p.extend_from_slice(&((20 + message.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, ttl, PROTOCOL, 0, 0]);
        p.extend_from_slice(&source.octets());
        p.extend_from_slice(&GROUP.octets());
        p.extend_from_slice(message);
        p
    }

    fn advert() -> Advert {
        Advert {
            vrid: 51,
            priority: 150,
            interval: Duration::from_millis(100),
            addresses: vec![Ipv4Addr::new(198, 18, 0, 100)],
        }
    }

    #[test]
    fn round_trip() {
        let source = Ipv4Addr::new(198, 18, 0, 11);
        let message = advert().encode(source, GROUP);
        assert_eq!(message.len(), 12);
        assert_eq!(&message[..6], &[0x31, 51, 150, 1, 0, 10]);
        let received = Advert::decode(&packet(source, 255, &message)).expect("valid");
        assert_eq!(received.source, source);
        assert_eq!(received.advert, advert());
    }

    #[test]
    fn the_checksum_covers_the_pseudo_header() {
        // vrid 51, priority 100, 100 ms, VIP 198.18.0.100, from 198.18.0.13
        // to 224.0.0.18: the checksum as computed independently (RFC 1071
        // over pseudo-header and message) is 0xfd9b.
        let ours = Advert {
            vrid: 51,
            priority: 100,
            interval: Duration::from_millis(100),
            addresses: vec![Ipv4Addr::new(198, 18, 0, 100)],
        }
        .encode(Ipv4Addr::new(198, 18, 0, 13), GROUP);
        assert_eq!(
            ours,
            [0x31, 0x33, 0x64, 0x01, 0x00, 0x0a, 0xfd, 0x9b, 198, 18, 0, 100]
        );
    }

    #[test]
    fn bad_adverts_are_named() {
        let source = Ipv4Addr::new(198, 18, 0, 11);
        let good = advert().encode(source, GROUP);
        assert_eq!(
            Advert::decode(&packet(source, 254, &good)),
            Err(BadAdvert::Ttl(254))
        );
        let mut corrupt = good.clone();
        corrupt[2] = 200;
        assert_eq!(
            Advert::decode(&packet(source, 255, &corrupt)),
            Err(BadAdvert::Checksum)
        );
        let mut v2 = good.clone();
        v2[0] = 0x21;
        assert_eq!(
            Advert::decode(&packet(source, 255, &v2)),
            Err(BadAdvert::Version(2))
        );
        let mut many = good.clone();
        many[3] = 5;
        assert!(matches!(
            Advert::decode(&packet(source, 255, &many)),
            Err(BadAdvert::Length { count: 5, .. })
        ));
        assert!(matches!(
            Advert::decode(&[0x45, 0, 0]),
            Err(BadAdvert::Short(3))
        ));
        // The same message from another source fails its checksum.
        assert_eq!(
            Advert::decode(&packet(Ipv4Addr::new(198, 18, 0, 12), 255, &good)),
            Err(BadAdvert::Checksum)
        );
    }
}
