//! Properties every algorithm must keep, checked over random pools (fixed
//! seeds): a pick is a usable backend of nonzero weight, and `None` exactly
//! when there is no such backend.

use crate::test_support::{TestBackends, WithCounters};
use crate::{
    BackendSet, Balancer, LeastConnections, Maglev, PeakEwmaBalancer, RoundRobin, SmoothWeighted,
    TwoChoices,
};

fn all_balancers(weights: &[u32], ids: &[&str]) -> Vec<(&'static str, Box<dyn Balancer>)> {
    vec![
        ("round_robin", Box::new(RoundRobin::new(weights.len()))),
        (
            "round_robin weighted",
            Box::new(RoundRobin::with_weights(weights)),
        ),
        (
            "weighted_round_robin",
            Box::new(SmoothWeighted::new(weights)),
        ),
        (
            "least_connections",
            Box::new(LeastConnections::new(weights)),
        ),
        ("random_two_choices", Box::new(TwoChoices::new(weights))),
        ("peak_ewma", Box::new(PeakEwmaBalancer::new(weights))),
        ("maglev", Box::new(Maglev::new(ids, weights, 1009))),
    ]
}

#[test]
fn picks_only_usable_weighted_backends_and_none_only_without_them() {
    for seed in 0..300 {
        let mut rng = fastrand::Rng::with_seed(seed);
        fastrand::seed(seed);
        let n = rng.usize(0..70);
        // Small weights half the time: least connections ranks those by
        // scaled loads, large ones by cross-multiplication.
        let max_weight = if seed % 2 == 0 { 4 } else { 1000 };
        let weights: Vec<u32> = (0..n)
            .map(|_| {
                if rng.u8(..4) == 0 {
                    0
                } else {
                    rng.u32(1..=max_weight)
                }
            })
            .collect();
        let names: Vec<String> = (0..n).map(|i| format!("10.1.0.{i}:80")).collect();
        let ids: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut backends = TestBackends::random(&mut rng, n);
        // Some pools with almost nothing usable, to reach the fallbacks.
        if seed % 3 == 0 {
            backends.usable = (0..n).map(|_| rng.u8(..20) == 0).collect();
        }
        for (name, balancer) in all_balancers(&weights, &ids) {
            let ignores_weights = name == "round_robin";
            let eligible = |i: usize| backends.usable[i] && (ignores_weights || weights[i] > 0);
            let any_eligible = (0..n).any(eligible);
            // The pool as the copied loads of `TestBackends` and as an
            // array of counters read in place.
            let counters = WithCounters::new(&backends);
            for turn in 0..100 {
                let key = rng.bool().then(|| rng.u64(..));
                let set: &dyn BackendSet = if turn % 2 == 0 { &backends } else { &counters };
                match balancer.pick(set, key) {
                    Some(i) => assert!(
                        i < n && eligible(i),
                        "{name} seed {seed}: picked {i} (usable {:?}, weights {weights:?})",
                        backends.usable
                    ),
                    None => assert!(
                        !any_eligible,
                        "{name} seed {seed}: None with a backend usable"
                    ),
                }
            }
        }
    }
}

/// Every eligible backend is reachable: over many picks with everything
/// idle and usable, each backend of nonzero weight is picked at least once.
#[test]
fn every_weighted_backend_gets_traffic() {
    fastrand::seed(5);
    let weights = [1, 3, 0, 2, 1];
    let ids = ["a:1", "b:1", "c:1", "d:1", "e:1"];
    for (name, balancer) in all_balancers(&weights, &ids) {
        let mut backends = TestBackends::idle(5);
        let mut counts = [0u64; 5];
        for k in 0..2000u64 {
            let i = balancer
                .pick(&backends, Some(crate::hash_bytes(&k.to_le_bytes())))
                .unwrap();
            counts[i] += 1;
            // Let least connections see the load it places, then drain it.
            backends.in_flight[i] += 1;
            if k % 10 == 9 {
                backends.in_flight = vec![0; 5];
            }
        }
        for (i, &count) in counts.iter().enumerate() {
            if name == "round_robin" || weights[i] > 0 {
                assert!(count > 0, "{name}: backend {i} never picked: {counts:?}");
            } else {
                assert_eq!(count, 0, "{name}: weight 0 picked: {counts:?}");
            }
        }
    }
}
