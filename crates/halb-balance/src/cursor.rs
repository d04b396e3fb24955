//! A shared rotating counter: the one piece of mutable state the rotating
//! balancers keep. Every pick takes a ticket with one `fetch_add`, so the
//! rotation stays exact however many threads pick at once.

use std::sync::atomic::{AtomicUsize, Ordering};

/// An atomic ticket counter on its own cache line, so that the line every
/// worker writes on each pick does not also hold read-mostly fields (the
/// balancer's tables), which would otherwise bounce between cores with it.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Cursor(AtomicUsize);

impl Cursor {
    /// The next ticket reduced to `0..n` (`n > 0`). Tickets are unique across
    /// threads, so consecutive tickets give an exact rotation. `Relaxed` is
    /// enough: read-modify-writes of one atomic are totally ordered whatever
    /// the ordering, and the ticket guards no other memory. The counter wraps
    /// after 2^64 picks, which no process lives to see.
    #[inline]
    pub(crate) fn next(&self, n: usize) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed) % n
    }
}
