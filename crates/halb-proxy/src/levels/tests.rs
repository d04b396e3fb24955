//! Picks of a pool with priority levels and zones follow the shares, and
//! a pool with neither has no spread at all.

use std::time::Duration;

use halb_state::{AdminState, Change, Origin, State};

use crate::state::{PoolState, Tried};

/// A round-robin pool without checks over `(port, extra backend lines)`,
/// with `[runtime] zone` = `zone`.
fn pool(backends: &[(u16, &str)], zone: Option<&str>, state: &std::sync::Arc<State>) -> PoolState {
    let mut toml = String::new();
    if let Some(zone) = zone {
        toml.push_str(&format!("[runtime]\nzone = \"{zone}\"\n"));
    }
    toml.push_str(
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [[pool]]\nname = \"app\"\n[pool.health_check]\nkind = \"none\"\n",
    );
    for (port, extra) in backends {
        toml.push_str(&format!(
            "[[pool.backend]]\naddress = \"127.0.0.1:{port}\"\n{extra}\n"
        ));
    }
    let config = halb_config::parse(&toml).expect("a valid config");
    let zone = config.runtime.zone.clone();
    PoolState::new_in_zone(config.pools[0].clone(), zone.as_deref(), state)
}

fn disable(state: &State, pool: &PoolState, indices: &[usize]) {
    for &i in indices {
        let address = pool.backends[i].address;
        state
            .apply(
                "app",
                address,
                Origin::Operator,
                Change::Admin(AdminState::Disabled),
            )
            .expect("known backend");
    }
}

fn enable(state: &State, pool: &PoolState, indices: &[usize]) {
    for &i in indices {
        let address = pool.backends[i].address;
        state
            .apply(
                "app",
                address,
                Origin::Operator,
                Change::Admin(AdminState::Enabled),
            )
            .expect("known backend");
    }
}

/// Picks per backend over `n` requests, after the shares caught up.
fn picks(pool: &PoolState, n: usize) -> Vec<usize> {
    std::thread::sleep(Duration::from_millis(150));
    pool.pick(None, &Tried::default());
    let mut counts = vec![0; pool.backends.len()];
    for _ in 0..n {
        let (i, _) = pool.pick(None, &Tried::default()).expect("a backend");
        counts[i] += 1;
    }
    counts
}

#[test]
fn one_level_and_no_zone_has_no_spread() {
    let state = State::new();
    let plain = pool(&[(1, ""), (2, "backup = true")], None, &state);
    assert!(plain.spread.is_none());
    let zoned_node = pool(
        &[(1, "zone = \"b\""), (2, "zone = \"b\"")],
        Some("a"),
        &state,
    );
    assert!(zoned_node.spread.is_none(), "no backend in the node's zone");
    let one_level = pool(&[(1, "priority = 2"), (2, "priority = 2")], None, &state);
    assert!(one_level.spread.is_none());
}

#[test]
fn the_next_level_takes_the_surplus_in_proportion() {
    let state = State::new();
    let levels = [
        (1, ""),
        (2, ""),
        (3, ""),
        (4, ""),
        (5, "priority = 1"),
        (6, "priority = 1"),
    ];
    let pool = pool(&levels, None, &state);
    assert_eq!(pool.spread.as_ref().expect("two levels").levels, [0, 1]);
    let all_up = picks(&pool, 1000);
    assert_eq!(all_up, [250, 250, 250, 250, 0, 0]);

    // 1 of 4 left: level 0 takes 25 % / 70 % = 35.71 %.
    disable(&state, &pool, &[1, 2, 3]);
    let counts = picks(&pool, 10_000);
    let level0 = counts[..4].iter().sum::<usize>();
    assert!((level0 as i64 - 3571).abs() <= 10, "{counts:?}");
    assert_eq!(counts[1] + counts[2] + counts[3], 0, "{counts:?}");
    assert!(counts[4].abs_diff(counts[5]) <= 2, "{counts:?}");
    let shares = pool
        .spread
        .as_ref()
        .unwrap()
        .shares(&pool.backends, halb_health::clock::now());
    assert_eq!(shares[0].percent, 35.71);
    assert_eq!(shares[1].percent, 64.29);

    enable(&state, &pool, &[1, 2, 3]);
    assert_eq!(picks(&pool, 1000)[4..], [0, 0]);
}

#[test]
fn a_zone_keeps_its_traffic_until_it_is_short_then_spills_in_proportion() {
    let state = State::new();
    let zones = [
        (1, "zone = \"a\""),
        (2, "zone = \"a\""),
        (3, "zone = \"a\""),
        (4, "zone = \"a\""),
        (5, "zone = \"b\""),
        (6, "zone = \"b\""),
        (7, "zone = \"c\""),
        (8, ""),
    ];
    let pool = pool(&zones, Some("a"), &state);
    let spread = pool.spread.as_ref().expect("zones in play");
    assert_eq!(picks(&pool, 1000)[4..], [0, 0, 0, 0]);
    assert!(!spread.spilling());

    disable(&state, &pool, &[1, 2, 3]);
    let counts = picks(&pool, 10_000);
    assert!(spread.spilling());
    assert!((counts[0] as i64 - 3571).abs() <= 10, "{counts:?}");
    // The rest spreads evenly over the four other backends (round robin).
    for &remote in &counts[4..] {
        assert!((remote as i64 - 1607).abs() <= 40, "{counts:?}");
    }
    let mut events = state.subscribe();
    enable(&state, &pool, &[1, 2, 3]);
    assert_eq!(picks(&pool, 1000)[4..], [0, 0, 0, 0]);
    assert!(!spread.spilling());
    let mut returned = false;
    while let Ok(event) = events.try_recv() {
        if let halb_state::Event::ZoneSpill {
            spilling: false, ..
        } = event
        {
            returned = true;
        }
    }
    assert!(returned, "the return to the zone is reported");
}
