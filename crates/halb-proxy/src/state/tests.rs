//! A pool's in-flight counts across reloads: shared while the backends stay
//! the same, carried into a rebuilt pool's own array for the backends it
//! keeps, and seen by least connections where they are.

use super::*;

/// A `least_connections` pool over backends `(port, weight)`, with
/// `extra` config lines for the pool.
fn pool_config(backends: &[(u16, u32)], extra: &str) -> Pool {
    let mut toml = format!(
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [[pool]]\nname = \"app\"\nalgorithm = \"least_connections\"\n{extra}"
    );
    for (port, weight) in backends {
        toml.push_str(&format!(
            "[[pool.backend]]\naddress = \"127.0.0.1:{port}\"\nweight = {weight}\n"
        ));
    }
    let config = halb_config::parse(&toml).expect("a valid config");
    config.pools.into_iter().next().expect("one pool")
}

fn pool(backends: &[(u16, u32)]) -> PoolState {
    PoolState::new(pool_config(backends, ""), &State::new())
}

fn rebuilt(previous: &PoolState, backends: &[(u16, u32)], extra: &str) -> PoolState {
    previous.next(pool_config(backends, extra))
}

/// The pool's array of counts, in pool order.
fn counts(pool: &PoolState) -> Vec<u64> {
    pool.in_flight.iter().map(|c| c.load(Relaxed)).collect()
}

fn in_flight(pool: &PoolState) -> Vec<u64> {
    pool.backends.iter().map(|b| b.in_flight()).collect()
}

fn port(pool: &PoolState, index: usize) -> u16 {
    pool.backends[index].address.port()
}

#[test]
fn backends_count_their_requests_in_the_pools_array() {
    let pool = pool(&[(1, 1), (2, 1), (3, 1)]);
    let first = pool.backends[1].begin();
    let second = pool.backends[1].begin();
    let third = pool.backends[2].begin();
    assert_eq!(counts(&pool), [0, 2, 1]);
    assert_eq!(in_flight(&pool), [0, 2, 1]);
    drop((first, second, third));
    assert_eq!(counts(&pool), [0, 0, 0]);
}

#[test]
fn a_pool_rebuilt_with_the_same_backends_shares_them_and_their_counts() {
    let before = pool(&[(1, 1), (2, 3)]);
    let guard = before.backends[1].begin();
    let after = rebuilt(&before, &[(1, 1), (2, 3)], "timeout = \"5s\"\n");
    assert!(Arc::ptr_eq(&after.in_flight, &before.in_flight));
    for (kept, old) in after.backends.iter().zip(&before.backends) {
        assert!(Arc::ptr_eq(kept, old));
    }
    after.take_over_in_flight();
    assert_eq!(counts(&after), [0, 1]);
    drop(guard);
    assert_eq!((counts(&before), counts(&after)), (vec![0, 0], vec![0, 0]));
}

/// Ports 1 and 2 stay (2 with another weight), 3 goes, 4 comes, and the
/// order changes: the new pool counts in an array of its own.
#[test]
fn kept_backends_carry_their_requests_in_flight_into_a_rebuilt_pool() {
    let before = pool(&[(1, 1), (2, 1), (3, 1)]);
    let on_one: Vec<InFlight> = (0..2).map(|_| before.backends[0].begin()).collect();
    let on_two = before.backends[1].begin();
    let on_three = before.backends[2].begin();
    before.backends[0].requests.fetch_add(5, Relaxed);
    let after = rebuilt(&before, &[(4, 1), (2, 2), (1, 1)], "");
    assert_eq!(
        [port(&after, 0), port(&after, 1), port(&after, 2)],
        [4, 2, 1]
    );
    assert!(!Arc::ptr_eq(&after.in_flight, &before.in_flight));
    // Until the new pool takes over, the old one serves and sees the counts.
    assert_eq!(counts(&after), [0, 0, 0]);
    assert_eq!(counts(&before), [2, 1, 1]);

    after.take_over_in_flight();
    // Port 1's two requests moved; port 2 was re-weighted, and starts
    // afresh as before; port 3, removed, counts where it was.
    assert_eq!(counts(&after), [0, 0, 2]);
    assert_eq!(in_flight(&after), [0, 0, 2]);
    assert_eq!(in_flight(&before), [2, 1, 1]);
    // Port 1 is the same backend: same counters, health and latency.
    let (old_one, new_one) = (&before.backends[0], &after.backends[2]);
    assert_eq!(new_one.requests.load(Relaxed), 7);
    assert!(Arc::ptr_eq(&new_one.health, &old_one.health));
    assert!(Arc::ptr_eq(&new_one.latency, &old_one.latency));

    // A retry that picks port 1 from the old pool counts in the new one.
    let late = before.backends[0].begin();
    assert_eq!(counts(&after), [0, 0, 3]);
    assert_eq!(new_one.requests.load(Relaxed), 8);
    // Requests that began on the old pool end where their count went.
    drop(on_one);
    drop(late);
    assert_eq!(counts(&after), [0, 0, 0]);
    drop((on_two, on_three));
    assert_eq!(in_flight(&before), [0, 0, 0]);
    assert_eq!(counts(&after), [0, 0, 0]);
    // Taking over twice changes nothing.
    after.take_over_in_flight();
    assert_eq!(in_flight(&after), [0, 0, 0]);
}

/// Least connections in the rebuilt pool ranks the requests that began
/// before the reload: the busy kept backend is not mistaken for an idle one.
#[test]
fn least_connections_sees_requests_that_began_before_a_reload() {
    let before = pool(&[(1, 1), (2, 1)]);
    let busy: Vec<InFlight> = (0..3).map(|_| before.backends[0].begin()).collect();
    let _one = before.backends[1].begin();
    let after = rebuilt(&before, &[(1, 1), (2, 1), (3, 1)], "");
    after.take_over_in_flight();
    let tried = Tried::default();
    let picks: Vec<u16> = (0..6)
        .map(|_| {
            let (index, _) = after.pick(None, &tried).expect("a backend");
            port(&after, index)
        })
        .collect();
    assert_eq!(picks, [3; 6]);
    // With one each on ports 2 and 3, those two share the picks (2 also
    // wins the scans that start on 1, as ties go).
    let _three = after.backends[2].begin();
    let mut picks: Vec<u16> = (0..6)
        .map(|_| port(&after, after.pick(None, &tried).expect("a backend").0))
        .collect();
    picks.sort_unstable();
    assert_eq!(picks, [2, 2, 2, 2, 3, 3]);
    drop(busy);
    assert_eq!(in_flight(&after), [0, 1, 1]);
}

/// Slow start with a hashing balancer: while a backend ramps up, each key
/// keeps one answer from pick to pick (admission is drawn from the key, not
/// at random), so Maglev's affinity holds during the ramp.
#[test]
fn slow_start_admits_the_same_keys_each_time() {
    let toml = "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\npool = \"app\"\n\
         [[pool]]\nname = \"app\"\nalgorithm = \"maglev\"\nslow_start = \"60s\"\n\
         [[pool.backend]]\naddress = \"127.0.0.1:1\"\n[[pool.backend]]\naddress = \"127.0.0.1:2\"\n\
         [[pool.backend]]\naddress = \"127.0.0.1:3\"\n";
    let config = halb_config::parse(toml).expect("a valid config");
    let state = State::new();
    let pool = PoolState::new(config.pools[0].clone(), &state);
    let first = pool.backends[0].address;
    for up in [false, true] {
        let change = halb_state::Change::Verdict {
            up,
            detail: String::new(),
        };
        state
            .apply("app", first, halb_state::Origin::Check, change)
            .expect("the backend is known");
    }
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert!(pool.backends[0].health.ramp(clock::now(), pool.slow_start) < 1.0);
    let mut admitted = 0;
    for key in 0..2000u64 {
        let key = Some(halb_balance::hash_bytes(&key.to_le_bytes()));
        let picks: Vec<usize> = (0..5)
            .map(|_| pool.pick(key, &Tried::default()).expect("a backend").0)
            .collect();
        assert!(
            picks.iter().all(|p| *p == picks[0]),
            "key {key:?}: {picks:?}"
        );
        admitted += usize::from(picks[0] == 0);
    }
    assert!(admitted > 0, "the ramping backend takes some keys already");
}
