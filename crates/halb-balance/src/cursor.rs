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
        self.ticket() % n
    }

    /// [`next`](Cursor::next) for the `n` of `modulus`, without a division.
    #[inline]
    pub(crate) fn next_of(&self, modulus: &Modulus) -> usize {
        modulus.reduce(self.ticket())
    }

    #[inline]
    pub(crate) fn ticket(&self) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// `x % n` for one `n` fixed in advance, by multiplications: a 64-bit
/// division costs 26 to 90 cycles, more than the rest of a round-robin pick.
/// This is the direct remainder of Lemire, Kaser and Kurz ("Faster remainder
/// by direct computation", 2019) with a 128-bit reciprocal, exact for every
/// 64-bit `x`: the low 128 bits of `x * ceil(2^128 / n)` are the fraction
/// `(x mod n) / n` to 128 bits, and times `n` its integer part is the
/// remainder.
#[derive(Debug)]
pub(crate) struct Modulus {
    n: u64,
    /// `ceil(2^128 / n)`, wrapped to 0 for `n == 1` (every remainder is 0).
    reciprocal: u128,
}

impl Modulus {
    /// Remainders by `n` (`n > 0`; 0 is taken as 1).
    pub(crate) fn new(n: usize) -> Modulus {
        let n = (n as u64).max(1);
        Modulus {
            n,
            reciprocal: (u128::MAX / u128::from(n)).wrapping_add(1),
        }
    }

    /// `x % n`.
    #[inline]
    pub(crate) fn reduce(&self, x: usize) -> usize {
        let fraction = self.reciprocal.wrapping_mul(x as u128);
        let n = u128::from(self.n);
        // The top 64 bits of the 192-bit product `fraction * n`.
        let carry = (u128::from(fraction as u64) * n) >> 64;
        (((fraction >> 64) * n + carry) >> 64) as usize
    }

    /// The `n` this reduces by.
    #[inline]
    pub(crate) fn n(&self) -> usize {
        self.n as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remainders_match_division() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut divisors: Vec<usize> = (1..=300).collect();
        divisors.extend([1 << 16, (1 << 32) - 1, 1 << 32, (1 << 32) + 1]);
        divisors.extend((0..200).map(|_| rng.usize(1..=u32::MAX as usize)));
        divisors.extend((0..50).map(|_| rng.usize(1..)));
        divisors.extend([usize::MAX, usize::MAX - 1]);
        for n in divisors {
            let modulus = Modulus::new(n);
            assert_eq!(modulus.n(), n);
            let mut xs = vec![
                0,
                1,
                n - 1,
                n,
                n.wrapping_add(1),
                usize::MAX,
                usize::MAX - 1,
            ];
            let multiple = n.wrapping_mul(rng.usize(..));
            for x in [1 << 32, multiple] {
                xs.extend([x.wrapping_sub(1), x, x.wrapping_add(1)]);
            }
            xs.extend((0..100).map(|_| rng.usize(..)));
            xs.extend((0..100).map(|_| rng.usize(..1 << 34)));
            for x in xs {
                assert_eq!(modulus.reduce(x), x % n, "{x} % {n}");
            }
        }
    }

    #[test]
    fn tickets_rotate_through_every_remainder_in_turn() {
        let cursor = Cursor::default();
        let modulus = Modulus::new(7);
        let starts: Vec<usize> = (0..15).map(|_| cursor.next_of(&modulus)).collect();
        assert_eq!(starts, [0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6, 0]);
        assert_eq!(cursor.next(7), 1);
        assert_eq!(cursor.next_of(&modulus), 2);
    }
}
