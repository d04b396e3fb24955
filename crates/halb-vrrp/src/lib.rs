//! VRRPv3 (RFC 5798, IPv4) inside halb: redundant nodes share virtual IPs,
//! and the highest-priority usable node holds them.
//!
//! - [`packet`]: the advertisement codec and the checks a received one
//!   passes (TTL 255, version, type, length, checksum, interval);
//! - [`machine`]: the pure state machine (init, backup, master, and fault
//!   while a tracked pool has no usable backend), time passed in;
//! - [`net`]: the raw socket (protocol 112), netlink for the addresses (with
//!   a short lifetime the master keeps renewing, so a killed master's
//!   addresses vanish on their own) and gratuitous ARP;
//! - [`addresses`]: the netlink requests made on a thread of their own, so
//!   that a slow answer from the kernel never stalls the runtime;
//! - [`speaker`]: one instance running, publishing its status.

pub mod addresses;
pub mod machine;
pub mod net;
pub mod packet;
pub mod speaker;

pub use machine::VrrpState;
pub use speaker::{Control, InstanceSettings, InstanceStatus, Registry, Transition};
