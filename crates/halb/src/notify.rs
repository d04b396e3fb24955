//! Telling a service manager (systemd `Type=notify`) how the node is doing:
//! `READY=1` once the listeners and the admin endpoint are bound,
//! `RELOADING=1` … `READY=1` around a reload, `STOPPING=1` when it starts
//! to drain. Without `NOTIFY_SOCKET` in the environment nothing is sent.
//!
//! The protocol is one datagram per message on the Unix socket named by
//! `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket), as
//! `sd_notify(3)` describes; it needs no library.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where to send service-manager messages, taken from `NOTIFY_SOCKET` once.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`; an unusable one is logged and ignored.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|name| {
            let name = name.to_string_lossy().into_owned();
            match connect(&name) {
                Ok(target) => Some(target),
                Err(e) => {
                    tracing::warn!(socket = %name, error = %e, "NOTIFY_SOCKET is set but unusable; the service manager will not hear from halb");
                    None
                }
            }
        });
        Notifier { target }
    }

    /// Listeners and admin are bound: the service is up.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// A reload starts. systemd wants the monotonic time with it, to tell
    /// this reload's READY=1 from an earlier one.
    pub fn reloading(&self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading the config"
        ));
    }

    /// The node stops accepting and drains.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping: finishing in-flight work");
    }

    fn send(&self, message: &str) {
        if let Some((socket, address)) = &self.target {
            if let Err(e) = socket.send_to_addr(message.as_bytes(), address) {
                tracing::warn!(error = %e, "cannot notify the service manager");
            }
        }
    }
}

fn connect(name: &str) -> std::io::Result<(UnixDatagram, SocketAddr)> {
    let address = match name.strip_prefix('@') {
        Some(abstract_name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abstract_name.as_bytes())?
        }
        None if name.starts_with('/') => SocketAddr::from_pathname(name)?,
        None => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "expected an absolute path or @abstract-name",
            ))
        }
    };
    Ok((UnixDatagram::unbound()?, address))
}
