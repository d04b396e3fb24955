//! halb's fleet: where a node's config comes from and how nodes share it.
//!
//! - Config sources with versions ([`source`]): a file (by the hash of its
//!   text), inline (the demo), etcd (by revision). Each yields validated
//!   configs tagged with their [`Identity`].
//! - etcd v3 as the fleet's store ([`etcd`], a small client over etcd's
//!   JSON gateway): the shared document `<prefix>/config` and dynamic
//!   backends `<prefix>/pools/<pool>/backends/<address>` ([`snapshot`],
//!   [`compose`]), watched ([`etcd_source`]), with a last-known-good copy
//!   on disk ([`lkg`]); keys kept on leases ([`lease`]) and the node
//!   registry `<prefix>/nodes/<node>` ([`registry`]).
//!
//! - Peer links between active-active nodes ([`peers`]): sticky entries,
//!   operator actions and health verdicts shared node to node.
//!
//! etcd is never on the data path: nodes serve what they last applied
//! while it is away.

#![forbid(unsafe_code)]

pub mod compose;
pub mod etcd;
pub mod etcd_source;
pub mod lease;
pub mod lkg;
pub mod peers;
pub mod registry;
pub mod snapshot;
pub mod source;

pub use compose::{Composed, Composer, Refused};
pub use etcd::{Client, EtcdError};
pub use etcd_source::{EtcdSource, StoreHealth, StoreStatus};
pub use lease::KeptKey;
pub use lkg::LastKnownGood;
pub use peers::{LinkStatus, Peers};
pub use registry::{fleet_status, nodes, FleetStatus, NodeRecord, PeerRecord, VrrpRecord};
pub use snapshot::{AdminRecord, Snapshot, ADMIN_DIR};
pub use source::{inline, FileSource, Identity, Versioned};
