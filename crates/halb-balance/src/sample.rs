//! Drawing two distinct random usable backends: the "power of two choices"
//! both `random_two_choices` and `peak_ewma` build on.

use crate::BackendSet;

/// Random draws tried for each candidate before falling back to a scan.
/// With half the pool unusable, four draws all miss 1 time in 16.
const DRAWS: usize = 4;

/// Two distinct random backends that are usable and have a nonzero weight;
/// the second is `None` when only one such backend exists, and the result
/// is `None` when there is none.
///
/// Draws use fastrand's thread-local generator, so workers never contend.
/// Draws are retried a few times; after that a scan from a random start
/// finds a candidate if one exists, so a usable backend is never missed
/// however few there are.
pub(crate) fn two_candidates(
    backends: &dyn BackendSet,
    weights: &[u32],
) -> Option<(usize, Option<usize>)> {
    let n = weights.len().min(backends.len());
    let eligible = |i: usize| weights[i] > 0 && backends.usable(i);
    let first = draw(n, None, eligible)?;
    Some((first, draw(n, Some(first), eligible)))
}

/// A random eligible index in `0..n` other than `not`.
fn draw(n: usize, not: Option<usize>, eligible: impl Fn(usize) -> bool) -> Option<usize> {
    let choices = n - usize::from(not.is_some());
    if choices == 0 {
        return None;
    }
    // Drawing from one fewer choices and stepping over `not` keeps the draw
    // uniform over the others.
    let skip = |i: usize| match not {
        Some(not) if i >= not => i + 1,
        _ => i,
    };
    (0..DRAWS)
        .map(|_| skip(fastrand::usize(..choices)))
        .find(|&i| eligible(i))
        .or_else(|| {
            let start = fastrand::usize(..n);
            (start..n)
                .chain(0..start)
                .find(|&i| Some(i) != not && eligible(i))
        })
}
