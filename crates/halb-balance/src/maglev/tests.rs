use super::*;
use crate::hash_bytes;
use crate::test_support::{pick_counts, TestBackends};

const KEYS: u64 = 100_000;

fn addresses(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.0.{}.{}:8080", i / 200, i % 200 + 1))
        .collect()
}

fn build(ids: &[String], weights: &[u32]) -> Maglev {
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    Maglev::new(&ids, weights, Maglev::DEFAULT_TABLE_SIZE)
}

/// Keys as the data path makes them: hashes of client addresses.
fn key(k: u64) -> u64 {
    hash_bytes(format!("192.168.{}.{}", k / 250, k % 250).as_bytes())
}

/// The backend id each of [`KEYS`] keys maps to.
fn assignment(maglev: &Maglev, ids: &[String]) -> Vec<String> {
    let backends = TestBackends::idle(ids.len());
    (0..KEYS)
        .map(|k| ids[maglev.pick(&backends, Some(key(k))).unwrap()].clone())
        .collect()
}

fn slot_counts(maglev: &Maglev, n: usize) -> Vec<usize> {
    let mut counts = vec![0; n];
    for &owner in maglev.table() {
        counts[owner as usize] += 1;
    }
    counts
}

#[test]
fn rounds_table_sizes_up_to_a_prime() {
    let ids = ["a", "b"];
    assert_eq!(Maglev::new(&ids, &[1, 1], 65537).table_size(), 65537);
    assert_eq!(Maglev::new(&ids, &[1, 1], 65536).table_size(), 65537);
    assert_eq!(Maglev::new(&ids, &[1, 1], 10).table_size(), 11);
    assert_eq!(Maglev::new(&ids, &[1, 1], 0).table_size(), 2);
    assert!(is_prime(Maglev::DEFAULT_TABLE_SIZE));
    assert!(!is_prime(1) && is_prime(2) && !is_prime(65535) && is_prime(65521));
}

#[test]
fn same_inputs_give_the_same_table() {
    let ids = addresses(7);
    let weights = [1, 2, 3, 1, 1, 5, 1];
    assert_eq!(build(&ids, &weights).table(), build(&ids, &weights).table());
}

/// Pins the table itself: other processes, other nodes and later versions
/// must build exactly this table, or sticky keys move on upgrade.
#[test]
fn the_table_is_stable_across_processes_and_versions() {
    let maglev = Maglev::new(
        &["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"],
        &[1, 1, 2],
        Maglev::DEFAULT_TABLE_SIZE,
    );
    let bytes: Vec<u8> = maglev
        .table()
        .iter()
        .flat_map(|i| i.to_le_bytes())
        .collect();
    assert_eq!(&maglev.table()[..8], [2, 2, 0, 0, 0, 2, 1, 0]);
    assert_eq!(hash_bytes(&bytes), 0x00F5_E24E_4A56_1DA6);
}

#[test]
fn equal_weights_split_evenly() {
    for n in [3, 10, 100] {
        let maglev = build(&addresses(n), &vec![1; n]);
        let counts = slot_counts(&maglev, n);
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 1, "n={n}: {min}..{max}");
    }
    // And keys follow: within 5 % of an even share over 100k keys.
    let ids = addresses(10);
    let maglev = build(&ids, &[1; 10]);
    let backends = TestBackends::idle(10);
    let mut counts = [0u64; 10];
    for k in 0..KEYS {
        counts[maglev.pick(&backends, Some(key(k))).unwrap()] += 1;
    }
    for count in counts {
        assert!(
            (count as f64 / (KEYS / 10) as f64 - 1.0).abs() < 0.05,
            "{counts:?}"
        );
    }
}

#[test]
fn weights_give_proportional_shares() {
    let weights = [1, 2, 3, 4, 0, 10];
    let maglev = build(&addresses(6), &weights);
    let counts = slot_counts(&maglev, 6);
    let total: u32 = weights.iter().sum();
    for (i, (&count, &weight)) in counts.iter().zip(&weights).enumerate() {
        let expected = maglev.table_size() as f64 * f64::from(weight) / f64::from(total);
        assert!(
            (count as f64 - expected).abs() <= expected * 0.02,
            "backend {i}: {count} slots, expected {expected:.0}"
        );
    }
    assert_eq!(counts[4], 0);
}

/// Rebuilding without one backend moves that backend's keys and, ideally,
/// no others. Maglev trades a little of that for balance: measured here at
/// 0.05 % of the other keys for 3 backends and 0.27 % for 10 (and 33.56 %
/// and 10.17 % of all keys moved), asserted with margin.
#[test]
fn removing_a_backend_moves_few_other_keys() {
    for (n, max_other_moved) in [(3, 0.005), (10, 0.01)] {
        let ids = addresses(n);
        let before = assignment(&build(&ids, &vec![1; n]), &ids);
        let removed = &ids[n / 2];
        let rest: Vec<String> = ids.iter().filter(|id| *id != removed).cloned().collect();
        let after = assignment(&build(&rest, &vec![1; n - 1]), &rest);

        let on_removed = before.iter().filter(|id| *id == removed).count();
        let others_moved = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| *b != removed && b != a)
            .count();
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        let others = KEYS as usize - on_removed;
        let other_fraction = others_moved as f64 / others as f64;
        let moved_fraction = moved as f64 / KEYS as f64;
        assert!(
            other_fraction < max_other_moved,
            "n={n}: {:.3} % of the other keys moved",
            other_fraction * 100.0
        );
        let expected = 1.0 / n as f64;
        assert!(
            (moved_fraction - expected).abs() < 0.015,
            "n={n}: {:.2} % of keys moved, expected about {:.2} %",
            moved_fraction * 100.0,
            expected * 100.0
        );
    }
}

#[test]
fn adding_a_backend_moves_about_its_share() {
    let ids = addresses(11);
    let before = assignment(&build(&ids[..10], &[1; 10]), &ids[..10]);
    let after = assignment(&build(&ids, &[1; 11]), &ids);
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    let to_new = after.iter().filter(|id| **id == ids[10]).count();
    assert!((moved - to_new) as f64 / (KEYS as f64) < 0.02);
    assert!(((to_new as f64 / KEYS as f64) - 1.0 / 11.0).abs() < 0.01);
}

/// Marking a backend unusable (down, or already tried by this request)
/// moves exactly its keys, spread over the others, and deterministically.
#[test]
fn an_unusable_backends_keys_walk_to_the_others() {
    let ids = addresses(10);
    let maglev = build(&ids, &[1; 10]);
    let all = TestBackends::idle(10);
    let mut one_down = all.clone();
    one_down.usable[4] = false;
    let mut moved_to = [0u64; 10];
    for k in 0..KEYS {
        let before = maglev.pick(&all, Some(key(k))).unwrap();
        let after = maglev.pick(&one_down, Some(key(k))).unwrap();
        assert_eq!(after, maglev.pick(&one_down, Some(key(k))).unwrap());
        if before == 4 {
            assert_ne!(after, 4);
            moved_to[after] += 1;
        } else {
            assert_eq!(before, after);
        }
    }
    let moved: u64 = moved_to.iter().sum();
    // Each of the 9 others takes between half and twice a ninth (measured:
    // 7.3 % to 13.8 %; table neighbours are not independent).
    for (i, &count) in moved_to.iter().enumerate().filter(|&(i, _)| i != 4) {
        let share = count as f64 / moved as f64;
        assert!(
            (0.055..0.22).contains(&share),
            "backend {i} took {share:.3}"
        );
    }
}

#[test]
fn falls_back_to_pool_order_when_the_walk_finds_nothing() {
    // Of 100 backends only one is usable: most walks of 64 slots miss it.
    let ids = addresses(100);
    let maglev = build(&ids, &[1; 100]);
    let mut backends = TestBackends::idle(100);
    backends.usable = vec![false; 100];
    backends.usable[37] = true;
    for k in 0..1000 {
        assert_eq!(maglev.pick(&backends, Some(key(k))), Some(37));
    }
    backends.usable[37] = false;
    assert_eq!(maglev.pick(&backends, Some(key(0))), None);
}

#[test]
fn keyless_picks_rotate_through_the_table_by_weight() {
    let maglev = build(&addresses(3), &[1, 2, 0]);
    let mut backends = TestBackends::idle(3);
    let counts = pick_counts(&maglev, &backends, maglev.table_size());
    assert_eq!(
        counts,
        slot_counts(&maglev, 3)
            .iter()
            .map(|&c| c as u64)
            .collect::<Vec<_>>()
    );
    assert_eq!(counts[2], 0);
    backends.usable[1] = false;
    assert_eq!(pick_counts(&maglev, &backends, 100), [100, 0, 0]);
}

#[test]
fn no_weighted_backend_gives_none() {
    let backends = TestBackends::idle(2);
    let maglev = Maglev::new(&["a", "b"], &[0, 0], 11);
    assert_eq!(maglev.table_size(), 0);
    assert_eq!(maglev.pick(&backends, Some(1)), None);
    assert_eq!(Maglev::new(&[], &[], 11).pick(&backends, None), None);
}
