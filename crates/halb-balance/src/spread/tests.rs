use super::*;

fn cap(healthy: u64, total: u64) -> Capacity {
    Capacity { healthy, total }
}

fn level(healthy: u64, total: u64) -> LevelCapacity {
    LevelCapacity {
        local: Capacity::default(),
        remote: cap(healthy, total),
    }
}

/// Parts of SCALE as a percentage, to 0.01.
fn percent(share: u32) -> f64 {
    (f64::from(share) * 10_000.0 / f64::from(SCALE)).round() / 100.0
}

#[test]
fn a_level_at_or_above_the_overflow_threshold_counts_as_whole() {
    assert_eq!(cap(7, 10).health(70), SCALE);
    assert_eq!(cap(10, 10).health(70), SCALE);
    assert!(cap(7, 10).is_whole(70));
    assert!(!cap(6, 10).is_whole(70));
    assert_eq!(percent(cap(1, 4).health(70)), 35.71);
    assert_eq!(cap(0, 4).health(70), 0);
    assert_eq!(cap(0, 0).health(70), 0);
    // overflow = 100: health is the plain healthy fraction.
    assert_eq!(percent(cap(1, 4).health(100)), 25.0);
}

#[test]
fn the_worked_example_of_the_docs() {
    // Level 0: 4 backends, 1 left; level 1: 2 backends, both up.
    let shares = level_shares(&[cap(1, 4), cap(2, 2)], 70);
    assert_eq!(shares.iter().sum::<u32>(), SCALE);
    assert_eq!(percent(shares[0]), 35.71);
    assert_eq!(percent(shares[1]), 64.29);
}

#[test]
fn a_whole_first_level_takes_everything() {
    assert_eq!(
        level_shares(&[cap(3, 4), cap(2, 2), cap(1, 1)], 70),
        [SCALE, 0, 0]
    );
}

#[test]
fn the_surplus_cascades_through_the_levels() {
    // 20% → health 28.57%; next 40% → 57.14%; the last takes the rest.
    let shares = level_shares(&[cap(1, 5), cap(2, 5), cap(5, 5)], 70);
    assert_eq!(percent(shares[0]), 28.57);
    assert_eq!(percent(shares[1]), 57.14);
    assert_eq!(percent(shares[2]), 14.29);
    assert_eq!(shares.iter().sum::<u32>(), SCALE);
}

#[test]
fn short_total_health_is_normalised_in_proportion() {
    // Health 35.71% and 17.86%: together about 53.57%, scaled to 100.
    let shares = level_shares(&[cap(1, 4), cap(1, 8)], 70);
    assert_eq!(shares.iter().sum::<u32>(), SCALE);
    assert_eq!(percent(shares[0]), 66.67);
    assert_eq!(percent(shares[1]), 33.33);
    assert_eq!(level_shares(&[cap(0, 4), cap(0, 2)], 70), [0, 0]);
    assert_eq!(level_shares(&[cap(0, 4), cap(1, 2)], 70), [0, SCALE]);
}

#[test]
fn local_zone_keeps_everything_while_whole_and_spills_below() {
    assert_eq!(local_share(cap(3, 4), cap(4, 4), 70), SCALE);
    assert_eq!(percent(local_share(cap(1, 4), cap(4, 4), 70)), 35.71);
    assert_eq!(local_share(cap(0, 4), cap(4, 4), 70), 0);
    // Nowhere to spill to: the local zone keeps what it gets.
    assert_eq!(local_share(cap(1, 4), cap(0, 4), 70), SCALE);
}

#[test]
fn draws_follow_the_shares_closely_over_every_run() {
    let plan = Plan::new(&[level(1, 4), level(2, 2)], 70, false);
    let draws = Draws::default();
    let mut counts = [0usize; 2];
    for n in 1..=10_000usize {
        let choice = plan.choose(draws.next(None)).expect("a level serves");
        assert_eq!(choice.locality, Locality::Any);
        counts[choice.level] += 1;
        if n % 100 == 0 {
            let expected = n as f64 * f64::from(plan.level_shares()[0]) / f64::from(SCALE);
            assert!(
                (counts[0] as f64 - expected).abs() <= 3.0,
                "after {n}: level 0 got {} of an expected {expected:.1}",
                counts[0]
            );
        }
    }
}

#[test]
fn zone_draws_split_a_level_between_local_and_remote() {
    let levels = [LevelCapacity {
        local: cap(1, 4),
        remote: cap(4, 4),
    }];
    let plan = Plan::new(&levels, 70, true);
    let local = plan.local_shares().next().flatten().expect("zoned");
    assert_eq!(percent(local), 35.71);
    let draws = Draws::default();
    let n = 10_000;
    let locals = (0..n)
        .filter(|_| plan.choose(draws.next(None)).unwrap().locality == Locality::Local)
        .count();
    assert!(
        (locals as f64 - 3571.4).abs() <= 5.0,
        "{locals} local of {n}"
    );
    // Without a zone on the node, or with every backend in one zone,
    // zones are not in play at all.
    assert_eq!(
        Plan::new(&levels, 70, false).local_shares().next(),
        Some(None)
    );
    let one_zone = [LevelCapacity {
        local: cap(1, 4),
        remote: Capacity::default(),
    }];
    assert_eq!(
        Plan::new(&one_zone, 70, true).local_shares().next(),
        Some(None)
    );
}

#[test]
fn a_key_always_draws_the_same() {
    let draws = Draws::default();
    for key in [0u64, 1, 0xdead_beef, u64::MAX] {
        assert_eq!(draws.next(Some(key)), draws.next(Some(key)));
    }
}

#[test]
fn nothing_healthy_chooses_nothing() {
    let plan = Plan::new(&[level(0, 4), level(0, 2)], 70, false);
    assert_eq!(plan.choose(Draw { level: 0, zone: 0 }), None);
}

/// Properties over random pools (fixed seeds): shares add up to SCALE
/// whenever something is healthy; a level never takes more than its
/// health unless the total is short; a level before a whole level takes
/// nothing after it; a choice is always a level with a share.
#[test]
fn shares_keep_their_invariants_over_random_pools() {
    for seed in 0..2000 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let overflow = rng.u32(1..=100);
        let levels: Vec<Capacity> = (0..rng.usize(1..=10))
            .map(|_| {
                let total = rng.u64(0..=5000);
                cap(rng.u64(0..=total), total)
            })
            .collect();
        let shares = level_shares(&levels, overflow);
        let health: Vec<u32> = levels.iter().map(|l| l.health(overflow)).collect();
        let sum: u64 = health.iter().map(|&h| u64::from(h)).sum();
        let total: u64 = shares.iter().map(|&s| u64::from(s)).sum();
        if sum == 0 {
            assert_eq!(total, 0, "seed {seed}");
            continue;
        }
        assert_eq!(total, u64::from(SCALE), "seed {seed}: {levels:?}");
        if sum >= u64::from(SCALE) {
            for (share, health) in shares.iter().zip(&health) {
                assert!(share <= health, "seed {seed}: {shares:?} {health:?}");
            }
        }
        if let Some(whole) = health.iter().position(|&h| h == SCALE) {
            assert!(shares[whole + 1..].iter().all(|&s| s == 0), "seed {seed}");
        }
        let plan = Plan::new(
            &levels
                .iter()
                .map(|&l| LevelCapacity {
                    local: Capacity::default(),
                    remote: l,
                })
                .collect::<Vec<_>>(),
            overflow,
            false,
        );
        for _ in 0..20 {
            let draw = Draw {
                level: rng.u32(0..SCALE),
                zone: rng.u32(0..SCALE),
            };
            let choice = plan.choose(draw).expect("something is healthy");
            assert!(shares[choice.level] > 0, "seed {seed}");
        }
    }
}
