//! The netlink requests of one instance, made on a thread of its own.
//!
//! A netlink request is a blocking send and a blocking wait for the
//! kernel's answer, which waits on the kernel's routing lock: on a busy
//! host (many addresses or routes changing) that can take a while. Made on
//! the runtime, it would stall the instance's timers and every other task
//! of that worker thread; here the instance awaits the answer instead, and
//! the requests are still carried out one at a time, in order.

use std::io;
use std::net::Ipv4Addr;
use std::sync::mpsc as std_mpsc;

use tokio::sync::oneshot;

use crate::net::{InterfaceAddress, Netlink};

/// One request and where its answer goes.
enum Request {
    Add {
        index: u32,
        address: Ipv4Addr,
        prefix: u8,
        lifetime_secs: u32,
        done: oneshot::Sender<io::Result<()>>,
    },
    Remove {
        index: u32,
        address: Ipv4Addr,
        prefix: u8,
        done: oneshot::Sender<io::Result<()>>,
    },
    List {
        index: u32,
        done: oneshot::Sender<io::Result<Vec<InterfaceAddress>>>,
    },
}

/// A [`Netlink`] socket owned by a thread; the async methods ask it. The
/// thread ends when this is dropped.
pub struct Addresses {
    requests: std_mpsc::Sender<Request>,
}

impl Addresses {
    /// Opens the socket (so that an error is the caller's at once) and
    /// starts the thread that uses it.
    pub fn open() -> io::Result<Addresses> {
        let mut netlink = Netlink::open()?;
        let (requests, incoming) = std_mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("halb-vrrp-nl".to_owned())
            .spawn(move || {
                for request in incoming {
                    // A caller that stopped waiting does not need the answer.
                    match request {
                        Request::Add {
                            index,
                            address,
                            prefix,
                            lifetime_secs,
                            done,
                        } => {
                            let _ = done.send(netlink.add(index, address, prefix, lifetime_secs));
                        }
                        Request::Remove {
                            index,
                            address,
                            prefix,
                            done,
                        } => {
                            let _ = done.send(netlink.remove(index, address, prefix));
                        }
                        Request::List { index, done } => {
                            let _ = done.send(netlink.addresses(index));
                        }
                    }
                }
            })?;
        Ok(Addresses { requests })
    }

    /// [`Netlink::add`], off the runtime.
    pub async fn add(
        &self,
        index: u32,
        address: Ipv4Addr,
        prefix: u8,
        lifetime_secs: u32,
    ) -> io::Result<()> {
        let (done, answer) = oneshot::channel();
        self.ask(Request::Add {
            index,
            address,
            prefix,
            lifetime_secs,
            done,
        })?;
        answer.await.map_err(|_| gone())?
    }

    /// [`Netlink::remove`], off the runtime.
    pub async fn remove(&self, index: u32, address: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let (done, answer) = oneshot::channel();
        self.ask(Request::Remove {
            index,
            address,
            prefix,
            done,
        })?;
        answer.await.map_err(|_| gone())?
    }

    /// [`Netlink::addresses`], off the runtime.
    pub async fn list(&self, index: u32) -> io::Result<Vec<InterfaceAddress>> {
        let (done, answer) = oneshot::channel();
        self.ask(Request::List { index, done })?;
        answer.await.map_err(|_| gone())?
    }

    fn ask(&self, request: Request) -> io::Result<()> {
        self.requests.send(request).map_err(|_| gone())
    }
}

fn gone() -> io::Error {
    io::Error::other("the netlink thread has stopped")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loopback interface is index 1 in every network namespace and
    /// has 127.0.0.1: listing it needs no privilege.
    #[tokio::test]
    async fn lists_the_loopback_address_from_its_thread() {
        let addresses = Addresses::open().expect("netlink socket");
        let found = addresses.list(1).await.expect("list lo");
        assert!(
            found
                .iter()
                .any(|a| a.address == Ipv4Addr::LOCALHOST && a.prefix == 8),
            "{found:?}"
        );
        // Requests after the first are answered too: the thread keeps going.
        assert_eq!(addresses.list(1).await.expect("list lo again"), found);
    }
}
