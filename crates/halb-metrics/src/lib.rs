//! Metrics for halb: lock-free cells the data path updates on every request
//! ([`Counter`], [`Gauge`], [`Histogram`]: one relaxed atomic add each, no
//! lock, no allocation, no lookup), and the Prometheus text exposition
//! format ([`Exposition`]) that the admin endpoint writes at scrape time by
//! walking the running topology.
//!
//! Cells are created with the listener, pool or backend they count for and
//! live in its state; nothing is registered anywhere. A scrape reads them
//! with relaxed loads, so a histogram's buckets and sum may be a request
//! apart, never more.

mod cells;
mod exposition;

pub use cells::{Counter, Gauge, Histogram, HistogramSnapshot, LATENCY_BUCKETS};
pub use exposition::{Exposition, Family, Kind, SampleValue, CONTENT_TYPE};
