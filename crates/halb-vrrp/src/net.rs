//! The adapter's system side: the raw IP socket adverts travel on, the
//! netlink requests that add, refresh and remove virtual IPs, and the
//! gratuitous ARP that tells the segment who holds them now.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::num::NonZeroU32;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::net::{
    recv, send, sendto, socket_with, sockopt, AddressFamily, Protocol, RecvFlags, SendFlags,
    SocketFlags, SocketType,
};
use tokio::io::unix::AsyncFd;

use crate::packet::{GROUP, PROTOCOL};

/// What the adapter needs to know of its interface.
#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
}

impl Interface {
    /// Reads the index and hardware address from /sys/class/net.
    pub fn lookup(name: &str) -> io::Result<Interface> {
        let dir = std::path::Path::new("/sys/class/net").join(name);
        let read = |file: &str| {
            std::fs::read_to_string(dir.join(file))
                .map(|s| s.trim().to_owned())
                .map_err(|e| io::Error::new(e.kind(), format!("interface {name:?}: {file}: {e}")))
        };
        let index: u32 = read("ifindex")?
            .parse()
            .map_err(|_| io::Error::other(format!("interface {name:?}: bad ifindex")))?;
        let mut mac = [0u8; 6];
        let text = read("address")?;
        for (byte, part) in mac.iter_mut().zip(text.split(':')) {
            *byte = u8::from_str_radix(part, 16).unwrap_or(0);
        }
        Ok(Interface {
            name: name.to_owned(),
            index,
            mac,
        })
    }
}

impl Interface {
    /// Whether the link is up with a carrier (`/sys/class/net/NAME/carrier`);
    /// unreadable counts as up, so that a missing file never causes a fault.
    pub fn has_carrier(&self) -> bool {
        let path = std::path::Path::new("/sys/class/net")
            .join(&self.name)
            .join("carrier");
        std::fs::read_to_string(path)
            .map(|s| s.trim() != "0")
            .unwrap_or(true)
    }
}

/// The raw socket of protocol 112 for one interface.
pub struct AdvertSocket {
    fd: AsyncFd<OwnedFd>,
}

impl AdvertSocket {
    /// Joins 224.0.0.18 on the interface (receiving either way) and sends
    /// with TTL 255, multicast looped back off.
    pub fn open(interface: &Interface, source: Ipv4Addr) -> io::Result<AdvertSocket> {
        let protocol = Protocol::from_raw(NonZeroU32::new(u32::from(PROTOCOL)).expect("112"));
        let fd = socket_with(
            AddressFamily::INET,
            SocketType::RAW,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            Some(protocol),
        )?;
        sockopt::set_ip_multicast_ttl(&fd, 255)?;
        sockopt::set_ip_ttl(&fd, 255)?;
        sockopt::set_ip_multicast_loop(&fd, false)?;
        sockopt::set_ip_multicast_if_with_ifindex(&fd, &GROUP, &source, interface.index)?;
        sockopt::set_ip_add_membership_with_ifindex(&fd, &GROUP, &source, interface.index)?;
        // The AsyncFd owns the descriptor, so nothing else can close it
        // while registered: the concern behind `new`'s deprecation.
        #[allow(deprecated)]
        let fd = AsyncFd::new(fd)?;
        Ok(AdvertSocket { fd })
    }

    pub async fn send_to(&self, message: &[u8], destination: Ipv4Addr) -> io::Result<()> {
        let to = SocketAddrV4::new(destination, 0);
        loop {
            let mut ready = self.fd.writable().await?;
            match ready.try_io(|fd| {
                sendto(fd.get_ref(), message, SendFlags::empty(), &to).map_err(io::Error::from)
            }) {
                Ok(result) => return result.map(drop),
                Err(_would_block) => continue,
            }
        }
    }

    /// The next whole IPv4 packet (header included).
    pub async fn recv(&self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.try_io(|fd| {
                recv(fd.get_ref(), &mut *buffer, RecvFlags::empty())
                    .map(|(n, _)| n)
                    .map_err(io::Error::from)
            }) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

// ---- netlink (rtnetlink addresses) -----------------------------------------

const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_CACHEINFO: u16 = 6;
const IFA_F_SECONDARY: u8 = 0x01;
const AF_INET: u8 = 2;

/// A route-netlink socket: adds, refreshes, removes and lists addresses.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

/// An IPv4 address of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub secondary: bool,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        let fd = socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None,
        )?;
        Ok(Netlink { fd, seq: 0 })
    }

    /// Adds `address/prefix` to the interface, or renews it, valid for
    /// `lifetime_secs` (0: forever): a master that stops refreshing loses it.
    pub fn add(
        &mut self,
        index: u32,
        address: Ipv4Addr,
        prefix: u8,
        lifetime_secs: u32,
    ) -> io::Result<()> {
        let mut attrs = Vec::new();
        attr(&mut attrs, IFA_LOCAL, &address.octets());
        attr(&mut attrs, IFA_ADDRESS, &address.octets());
        if lifetime_secs > 0 {
            let mut info = Vec::new();
            info.extend_from_slice(&lifetime_secs.to_ne_bytes()); // preferred
            info.extend_from_slice(&lifetime_secs.to_ne_bytes()); // valid
            info.extend_from_slice(&[0; 8]);
            attr(&mut attrs, IFA_CACHEINFO, &info);
        }
        self.request(
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_REPLACE,
            index,
            prefix,
            &attrs,
        )
    }

    /// Removes `address/prefix`; an address that is not there is fine.
    pub fn remove(&mut self, index: u32, address: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut attrs = Vec::new();
        attr(&mut attrs, IFA_LOCAL, &address.octets());
        match self.request(RTM_DELADDR, 0, index, prefix, &attrs) {
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(()),
            other => other,
        }
    }

    /// The IPv4 addresses of the interface `index`.
    pub fn addresses(&mut self, index: u32) -> io::Result<Vec<InterfaceAddress>> {
        let message = self.message(RTM_GETADDR, NLM_F_DUMP, 0, 0, &[]);
        send(&self.fd, &message, SendFlags::empty())?;
        let mut found = Vec::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let (n, _) = recv(&self.fd, &mut buffer[..], RecvFlags::empty())?;
            let mut rest = &buffer[..n];
            while rest.len() >= 16 {
                let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4")) as usize;
                let kind = u16::from_ne_bytes(rest[4..6].try_into().expect("2"));
                if len < 16 || len > rest.len() {
                    return Err(io::Error::other("malformed netlink answer"));
                }
                match kind {
                    NLMSG_DONE => return Ok(found),
                    NLMSG_ERROR => return Err(netlink_error(&rest[16..len])),
                    RTM_NEWADDR if len >= 24 => {
                        let body = &rest[16..len];
                        let (family, prefix, flags) = (body[0], body[1], body[2]);
                        let at = u32::from_ne_bytes(body[4..8].try_into().expect("4"));
                        if family == AF_INET && at == index {
                            if let Some(address) = find_attr(&body[8..], IFA_LOCAL) {
                                if address.len() == 4 {
                                    found.push(InterfaceAddress {
                                        address: Ipv4Addr::new(
                                            address[0], address[1], address[2], address[3],
                                        ),
                                        prefix,
                                        secondary: flags & IFA_F_SECONDARY != 0,
                                    });
                                }
                            }
                        }
                    }
                    _ => {}
                }
                rest = &rest[align(len).min(rest.len())..];
            }
        }
    }

    fn message(&mut self, kind: u16, flags: u16, index: u32, prefix: u8, attrs: &[u8]) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        let len = 16 + 8 + attrs.len();
        let mut m = Vec::with_capacity(len);
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        m.extend_from_slice(&self.seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        // ifaddrmsg: family, prefix length, flags, scope (universe), index
        m.extend_from_slice(&[AF_INET, prefix, 0, 0]);
        m.extend_from_slice(&index.to_ne_bytes());
        m.extend_from_slice(attrs);
        m
    }

    fn request(
        &mut self,
        kind: u16,
        flags: u16,
        index: u32,
        prefix: u8,
        attrs: &[u8],
    ) -> io::Result<()> {
        let message = self.message(kind, flags | NLM_F_ACK, index, prefix, attrs);
        send(&self.fd, &message, SendFlags::empty())?;
        let mut buffer = [0u8; 4096];
        loop {
            let (n, _) = recv(&self.fd, &mut buffer[..], RecvFlags::empty())?;
            if n < 16 {
                return Err(io::Error::other("short netlink answer"));
            }
            let kind = u16::from_ne_bytes(buffer[4..6].try_into().expect("2"));
            let seq = u32::from_ne_bytes(buffer[8..12].try_into().expect("4"));
            if kind == NLMSG_ERROR && seq == self.seq {
                let error = netlink_error(&buffer[16..n]);
                return match error.raw_os_error() {
                    Some(0) => Ok(()),
                    _ => Err(error),
                };
            }
        }
    }
}

fn netlink_error(body: &[u8]) -> io::Error {
    let code = body
        .get(0..4)
        .map(|b| i32::from_ne_bytes(b.try_into().expect("4")))
        .unwrap_or(-libc::EIO);
    io::Error::from_raw_os_error(-code)
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn attr(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(data);
    out.resize(align(out.len()), 0);
}

fn find_attr(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let at = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        if at == kind {
            return Some(&attrs[4..len]);
        }
        attrs = &attrs[align(len).min(attrs.len())..];
    }
    None
}

// ---- gratuitous ARP -------------------------------------------------------

/// A packet socket that sends ARP on one interface.
pub struct Arp {
    fd: OwnedFd,
    interface: Interface,
}

impl Arp {
    pub fn open(interface: &Interface) -> io::Result<Arp> {
        let fd = socket_with(
            AddressFamily::PACKET,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(rustix::net::eth::ARP),
        )?;
        Ok(Arp {
            fd,
            interface: interface.clone(),
        })
    }

    /// A gratuitous ARP request for `address` from this interface's MAC,
    /// broadcast: switches and neighbours learn the new holder.
    pub fn announce(&self, address: Ipv4Addr) -> io::Result<()> {
        let mut payload = Vec::with_capacity(28);
        payload.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
        payload.extend_from_slice(&self.interface.mac);
        payload.extend_from_slice(&address.octets());
        payload.extend_from_slice(&[0xff; 6]);
        payload.extend_from_slice(&address.octets());
        send_link_broadcast(self.fd.as_fd(), self.interface.index, &payload)
    }
}

/// `sendto` with a `sockaddr_ll` naming the interface and the broadcast
/// address: the one call rustix has no safe form for.
fn send_link_broadcast(
    fd: std::os::fd::BorrowedFd<'_>,
    index: u32,
    payload: &[u8],
) -> io::Result<()> {
    let mut to = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: (libc::ETH_P_ARP as u16).to_be(),
        sll_ifindex: index as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [0; 8],
    };
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: `payload` and `to` are valid for the lengths given for the
    // whole call; the kernel only reads them; `fd` is an open socket.
    #[allow(unsafe_code)]
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            payload.as_ptr().cast(),
            payload.len(),
            0,
            (&to as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
