//! Requests (HTTP) or connections (TCP) in flight, counted per backend in
//! one array per pool, in pool order, so that least connections reads a
//! whole pool's counts as one run of memory
//! ([`halb_balance::BackendSet::in_flight_slice`]).
//!
//! A backend counts into its place in its pool's array. A reload that
//! rebuilds a pool around another list of backends gives the new pool a
//! new array, and each backend it keeps a place there; when the new pool
//! starts serving, the count of each kept backend moves to its new place
//! ([`InFlightCount::move_to`]). The old place is then marked as moved, and
//! a change that finds the mark is taken back and made where the count
//! went: a request that began before the move ends there, and one that
//! picks the old pool afterwards counts there. No count is lost, counted
//! twice, or left behind in an array no pick reads. A count changes by one
//! at a time, so it never comes near the mark.

use std::fmt;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// What a moved place holds, give or take the changes being taken back:
/// far from any count, and from a count decremented below zero.
const MOVED: u64 = 0x7800_0000_0000_0000;

/// Whether a place holds [`MOVED`]: its top four bits are `0111`.
fn is_moved(value: u64) -> bool {
    value >> 60 == MOVED >> 60
}

/// A pool's counters, one per backend in pool order, all zero.
pub(crate) fn counters(len: usize) -> Arc<[AtomicU64]> {
    (0..len).map(|_| AtomicU64::new(0)).collect()
}

/// One backend's requests in flight: its place in its pool's counters, and
/// where the count went if it moved.
pub(crate) struct InFlightCount {
    counters: Arc<[AtomicU64]>,
    index: usize,
    moved_to: OnceLock<Arc<InFlightCount>>,
}

impl InFlightCount {
    /// The count at `counters[index]`.
    pub(crate) fn new(counters: &Arc<[AtomicU64]>, index: usize) -> Self {
        assert!(index < counters.len(), "a place in the pool's counters");
        InFlightCount {
            counters: counters.clone(),
            index,
            moved_to: OnceLock::new(),
        }
    }

    /// One more request in flight.
    #[inline]
    pub(crate) fn increment(&self) {
        self.change(1);
    }

    /// One request fewer.
    #[inline]
    pub(crate) fn decrement(&self) {
        self.change(1u64.wrapping_neg());
    }

    /// Adds `delta` (wrapping) where the count is now.
    #[inline]
    fn change(&self, delta: u64) {
        let mut count = self;
        loop {
            let counter = &count.counters[count.index];
            if !is_moved(counter.fetch_add(delta, Ordering::Relaxed)) {
                return;
            }
            // The count moved: take the change back and make it where the
            // count went, set before the mark was (the fence pairs with
            // the mark's release).
            counter.fetch_sub(delta, Ordering::Relaxed);
            fence(Ordering::Acquire);
            count = count.moved_to();
        }
    }

    /// Requests in flight now, wherever the count is. Read while the count
    /// moves, it may be short of the requests that began or ended
    /// meanwhile, and it reads 0 rather than below zero.
    pub(crate) fn get(&self) -> u64 {
        let mut count = self;
        loop {
            let value = count.counters[count.index].load(Ordering::Relaxed);
            if !is_moved(value) {
                return if value >> 63 == 0 { value } else { 0 };
            }
            fence(Ordering::Acquire);
            count = count.moved_to();
        }
    }

    fn moved_to(&self) -> &InFlightCount {
        self.moved_to
            .get()
            .expect("a moved count says where it went")
    }

    /// Moves the count to `to`, a place that counts nothing of its own
    /// yet: from now on, changes made here are made there. A count moves
    /// once; moving it again does nothing.
    pub(crate) fn move_to(&self, to: Arc<InFlightCount>) {
        let destination = to.clone();
        if self.moved_to.set(to).is_err() {
            debug_assert!(false, "an in-flight count moves once");
            return;
        }
        // The release publishes `moved_to` to whoever sees the mark; the
        // count taken with it is all the changes made here before.
        let count = self.counters[self.index].swap(MOVED, Ordering::AcqRel);
        destination.counters[destination.index].fetch_add(count, Ordering::Relaxed);
    }
}

impl fmt::Debug for InFlightCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlightCount")
            .field("index", &self.index)
            .field("count", &self.get())
            .field("moved", &self.moved_to.get().is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_in_its_place() {
        let counters = counters(3);
        let count = InFlightCount::new(&counters, 1);
        count.increment();
        count.increment();
        count.decrement();
        assert_eq!(count.get(), 1);
        let places: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(places, [0, 1, 0]);
    }

    #[test]
    fn a_moved_count_carries_over_and_old_requests_end_where_it_went() {
        let (old_counters, new_counters) = (counters(2), counters(3));
        let old = InFlightCount::new(&old_counters, 1);
        let new = Arc::new(InFlightCount::new(&new_counters, 2));
        for _ in 0..3 {
            old.increment();
        }
        old.move_to(new.clone());
        assert!(is_moved(old_counters[1].load(Ordering::Relaxed)));
        assert_eq!(new_counters[2].load(Ordering::Relaxed), 3);
        assert_eq!((old.get(), new.get()), (3, 3));
        // A request that picks the old pool after the move counts in the
        // new place; those that began before end there.
        old.increment();
        new.increment();
        assert_eq!(new.get(), 5);
        for _ in 0..4 {
            old.decrement();
        }
        new.decrement();
        assert_eq!((old.get(), new.get()), (0, 0));
        assert_eq!(new_counters[2].load(Ordering::Relaxed), 0);
        assert!(is_moved(old_counters[1].load(Ordering::Relaxed)));
    }

    #[test]
    fn counts_follow_moves_over_several_reloads() {
        let arrays: Vec<_> = (0..4).map(|_| counters(1)).collect();
        let counts: Vec<Arc<InFlightCount>> = arrays
            .iter()
            .map(|counters| Arc::new(InFlightCount::new(counters, 0)))
            .collect();
        counts[0].increment();
        for pair in counts.windows(2) {
            pair[0].move_to(pair[1].clone());
            pair[0].increment();
        }
        assert_eq!(counts[3].get(), 4);
        for _ in 0..4 {
            counts[0].decrement();
        }
        assert_eq!(arrays[3][0].load(Ordering::Relaxed), 0);
    }

    /// Requests that begin and end on the old place while the count moves
    /// are all counted once: afterwards the new place holds exactly the
    /// requests still in flight.
    #[test]
    fn no_change_is_lost_while_a_count_moves() {
        for round in 0..20 {
            let (old_counters, new_counters) = (counters(1), counters(1));
            let old = Arc::new(InFlightCount::new(&old_counters, 0));
            let new = Arc::new(InFlightCount::new(&new_counters, 0));
            for _ in 0..7 {
                old.increment();
            }
            std::thread::scope(|scope| {
                for _ in 0..3 {
                    let old = old.clone();
                    scope.spawn(move || {
                        for _ in 0..20_000 {
                            old.increment();
                            old.decrement();
                        }
                    });
                }
                for _ in 0..round * 50 {
                    std::hint::spin_loop();
                }
                old.move_to(new.clone());
            });
            assert_eq!(new_counters[0].load(Ordering::Relaxed), 7, "round {round}");
            assert!(is_moved(old_counters[0].load(Ordering::Relaxed)));
        }
    }

    #[test]
    fn reads_zero_rather_than_below_zero() {
        let counters = counters(1);
        let count = InFlightCount::new(&counters, 0);
        count.decrement();
        assert_eq!(count.get(), 0);
        count.increment();
        assert_eq!(count.get(), 0);
        count.increment();
        assert_eq!(count.get(), 1);
    }
}
