//! halb's chaos engineering: faults injected into the data path (latency,
//! aborts, resets, hangs, throttling) on a share of a pool's requests or
//! connections, each ending by itself; and drills, scripted failures run
//! under steady load, that end in a report of what clients saw.

#![forbid(unsafe_code)]

pub mod drill;
pub mod fault;
pub mod scenario;

pub use fault::{
    EndReason, Fault, FaultError, FaultEvent, FaultKind, FaultRequest, Faults, PoolTarget,
    MAX_FAULT_DURATION,
};
