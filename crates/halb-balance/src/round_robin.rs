//! `round_robin`: every backend in turn, a b c a b c, exact across all
//! worker threads for the life of the balancer.

use crate::cursor::Cursor;
use crate::{BackendSet, Balancer};

/// Plain rotation over the pool, ignoring weights and load. One shared
/// ticket counter makes the rotation exact across threads: over any run of
/// `k * n` picks with every backend usable, each backend gets exactly `k`.
/// When the backend whose turn it is cannot be used, the next usable one in
/// pool order takes its turn.
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
        let turn = self.cursor.next(members.len());
        let len = backends.len();
        let (before, after) = members.split_at(turn);
        after
            .iter()
            .chain(before)
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
    fn an_unusable_backends_turn_goes_to_the_next_usable_one() {
        let mut backends = TestBackends::idle(4);
        backends.usable[1] = false;
        backends.usable[3] = false;
        let rr = RoundRobin::new(4);
        // Turns 0 1 2 3 0 1 2 3 become 0 2 2 0 0 2 2 0: 1's turn goes to 2,
        // 3's turn wraps to 0.
        assert_eq!(picks(&rr, &backends, 8), [0, 2, 2, 0, 0, 2, 2, 0]);
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
