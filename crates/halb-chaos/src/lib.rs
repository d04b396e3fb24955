//! halb's chaos engineering: faults injected into the data path (latency,
//! aborts, resets, hangs, throttling) on a share of a pool's requests or
//! connections, each ending by itself.

#![forbid(unsafe_code)]

pub mod fault;

pub use fault::{
    EndReason, Fault, FaultError, FaultEvent, FaultKind, FaultRequest, Faults, PoolTarget,
    MAX_FAULT_DURATION,
};
