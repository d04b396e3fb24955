//! `round_robin`: every backend in turn, a b c a b c, exact across all
//! worker threads for the life of the balancer.

use crate::cursor::Cursor;
use crate::{BackendSet, Balancer};

/// Plain rotation over the pool, ignoring weights and load. One shared
/// ticket counter makes the rotation exact across threads: over any run of
/// `k * n` picks with every backend usable, each backend gets exactly `k`.
/// When the backend whose turn it is cannot be used, the pick takes the
/// next ticket, and the next, so the turns of a backend that is down are
/// spread evenly over the others (a b c with b down gives a c a c), not all
/// handed to its neighbour.
#[derive(Debug)]
pub struct RoundRobin {
    /// The backends in the rotation, in pool order.
    members: Box<[usize]>,
    cursor: Cursor,
}

impl RoundRobin {
    /// A rotation over `len` backends, starting with the first.
    pub fn new(len: usize) -> Self {
        Self::over((0..len).collect())
    }

    /// A rotation over the backends whose weight is not 0, for pools that
    /// configure weights: weight 0 takes a backend out of the rotation,
    /// other weights are ignored (use [`SmoothWeighted`](crate::SmoothWeighted)
    /// to honour them).
    pub fn with_weights(weights: &[u32]) -> Self {
        Self::over((0..weights.len()).filter(|&i| weights[i] > 0).collect())
    }

    fn over(members: Box<[usize]>) -> Self {
        Self {
            members,
            cursor: Cursor::default(),
        }
    }
}

impl Balancer for RoundRobin {
    fn pick(&self, backends: &dyn BackendSet, _key: Option<u64>) -> Option<usize> {
        let members = &self.members[..];
        if members.is_empty() {
            return None;
        }
        let len = backends.len();
        for _ in 0..members.len() {
            let i = members[self.cursor.next(members.len())];
            if i < len && backends.usable(i) {
                return Some(i);
            }
        }
        // Other threads took tickets meanwhile: look at every member once.
        members
            .iter()
            .copied()
            .find(|&i| i < len && backends.usable(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{pick_counts_concurrently, picks, TestBackends};

    #[test]
    fn rotates_in_exact_order() {
        let backends = TestBackends::idle(3);
        let rr = RoundRobin::new(3);
        assert_eq!(picks(&rr, &backends, 7), [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn unusable_backends_turns_are_spread_over_the_others() {
        let mut backends = TestBackends::idle(4);
        backends.usable[1] = false;
        backends.usable[3] = false;
        let rr = RoundRobin::new(4);
        // The turns of 1 and 3 are skipped, not handed to a neighbour.
        assert_eq!(picks(&rr, &backends, 8), [0, 2, 0, 2, 0, 2, 0, 2]);
        let mut three = TestBackends::idle(3);
        three.usable[1] = false;
        let rr3 = RoundRobin::new(3);
        let counts = picks(&rr3, &three, 600).iter().fold([0; 3], |mut c, &i| {
            c[i] += 1;
            c
        });
        assert_eq!(
            counts,
            [300, 0, 300],
            "the dead backend's share is split evenly"
        );
        backends.usable[1] = true;
        assert_eq!(picks(&rr, &backends, 4), [0, 1, 2, 0]);
    }

    #[test]
    fn weight_zero_leaves_the_rotation() {
        let backends = TestBackends::idle(4);
        let rr = RoundRobin::with_weights(&[1, 0, 5, 1]);
        assert_eq!(picks(&rr, &backends, 6), [0, 2, 3, 0, 2, 3]);
    }

    #[test]
    fn nothing_usable_gives_none() {
        let mut backends = TestBackends::idle(3);
        backends.usable = vec![false; 3];
        assert_eq!(RoundRobin::new(3).pick(&backends, None), None);
        assert_eq!(RoundRobin::new(0).pick(&TestBackends::idle(0), None), None);
    }

    #[test]
    fn exact_across_threads() {
        let backends = TestBackends::idle(3);
        let rr = RoundRobin::new(3);
        let counts = pick_counts_concurrently(&rr, &backends, 4, 30_000);
        assert_eq!(counts, [40_000, 40_000, 40_000]);
    }
}
