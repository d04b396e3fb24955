//! "Did you mean …?" for misspelled keys and values.

/// The candidate closest to `word`, if one is close enough to be a likely
/// typo (a couple of edits, a different case, or `word` is a clear prefix).
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase().replace('-', "_");
    candidates
        .iter()
        .filter_map(|&candidate| {
            let distance = edit_distance(&word, candidate);
            let allowed = (candidate.len() / 3).clamp(1, 3);
            let is_prefix = word.len() >= 4 && candidate.starts_with(&word);
            (distance <= allowed || is_prefix).then_some((distance, candidate))
        })
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and transpositions of neighbours (`weigth` → `weight` is one edit).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j] = distance between a[..i] and b[..j]
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str] = &["address", "weight", "backup"];

    #[test]
    fn suggests_close_spellings() {
        assert_eq!(did_you_mean("weigth", KEYS), Some("weight"));
        assert_eq!(did_you_mean("adress", KEYS), Some("address"));
        assert_eq!(did_you_mean("Backup", KEYS), Some("backup"));
        assert_eq!(
            did_you_mean("least_conn", &["round_robin", "least_connections"]),
            Some("least_connections")
        );
        assert_eq!(
            did_you_mean("connect-timeout", &["connect_timeout", "timeout"]),
            Some("connect_timeout")
        );
    }

    #[test]
    fn stays_quiet_when_nothing_is_close() {
        assert_eq!(did_you_mean("colour", KEYS), None);
        assert_eq!(did_you_mean("x", KEYS), None);
    }

    #[test]
    fn counts_edits() {
        assert_eq!(edit_distance("weigth", "weight"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
