//! Cost of one pick for every algorithm, on pools of 10 and 100 usable
//! backends whose in-flight counts (random, 0 to 19) live in atomics as in
//! the data path, plus least connections on an idle pool (where its scan
//! stops early), the supporting operations, and construction.
//! Prints markdown tables: median and range of 7 samples of 2,000,000 picks
//! each. Run with `cargo bench -p halb-balance`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use halb_balance::{
    hash_bytes, BackendSet, Balancer, LeastConnections, Maglev, PeakEwma, PeakEwmaBalancer,
    RoundRobin, SmoothWeighted, TwoChoices,
};

const PICKS: u64 = 2_000_000;
const SAMPLES: usize = 7;

/// A pool as the data path holds it: flags, and the in-flight counters in
/// one array that least connections reads in place.
struct Pool {
    usable: Vec<bool>,
    in_flight: Vec<AtomicU64>,
    latency_ns: Vec<f64>,
}

impl Pool {
    fn new(n: usize, rng: &mut fastrand::Rng) -> Self {
        Self {
            usable: vec![true; n],
            in_flight: (0..n).map(|_| AtomicU64::new(rng.u64(0..20))).collect(),
            latency_ns: (0..n).map(|_| rng.f64() * 5e6 + 1e5).collect(),
        }
    }
}

impl BackendSet for Pool {
    fn len(&self) -> usize {
        self.usable.len()
    }
    fn usable(&self, index: usize) -> bool {
        self.usable[index]
    }
    fn in_flight(&self, index: usize) -> u64 {
        self.in_flight[index].load(Ordering::Relaxed)
    }
    // A run at a time, as the data path's view of a pool reads it.
    fn in_flight_range(&self, first: usize, out: &mut [u64]) {
        for (in_flight, load) in self.in_flight[first..].iter().zip(out) {
            *load = in_flight.load(Ordering::Relaxed);
        }
    }
    fn latency_ns(&self, index: usize) -> f64 {
        self.latency_ns[index]
    }
    fn in_flight_slice(&self) -> Option<&[AtomicU64]> {
        Some(&self.in_flight)
    }
}

/// Median, min and max nanoseconds per call of `op` over the samples.
fn measure(mut op: impl FnMut(u64)) -> (f64, f64, f64) {
    for i in 0..PICKS / 10 {
        op(i);
    }
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            for i in 0..PICKS {
                op(i);
            }
            start.elapsed().as_nanos() as f64 / PICKS as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    (samples[SAMPLES / 2], samples[0], samples[SAMPLES - 1])
}

/// Median, min and max microseconds per call of `build` over the samples.
fn measure_builds(mut build: impl FnMut()) -> (f64, f64, f64) {
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            build();
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    (samples[SAMPLES / 2], samples[0], samples[SAMPLES - 1])
}

fn row(name: &str, backends: usize, (median, min, max): (f64, f64, f64)) {
    println!("| {name} | {backends} | {median:.1} | {min:.1}–{max:.1} |");
}

fn main() {
    let mut rng = fastrand::Rng::with_seed(42);
    println!("| algorithm | backends | median ns/pick | min–max ns/pick |");
    println!("|---|---:|---:|---:|");
    for n in [10, 100] {
        let pool = Pool::new(n, &mut rng);
        let weights: Vec<u32> = (0..n).map(|_| rng.u32(1..=10)).collect();
        let names: Vec<String> = (0..n).map(|i| format!("10.0.0.{}:8080", i + 1)).collect();
        let ids: Vec<&str> = names.iter().map(String::as_str).collect();
        let balancers: Vec<(&str, Box<dyn Balancer>, bool)> = vec![
            ("round_robin", Box::new(RoundRobin::new(n)), false),
            (
                "weighted_round_robin",
                Box::new(SmoothWeighted::new(&weights)),
                false,
            ),
            (
                "least_connections",
                Box::new(LeastConnections::new(&weights)),
                false,
            ),
            (
                "random_two_choices",
                Box::new(TwoChoices::new(&weights)),
                false,
            ),
            (
                "peak_ewma",
                Box::new(PeakEwmaBalancer::new(&weights)),
                false,
            ),
            (
                "maglev (keyed)",
                Box::new(Maglev::new(&ids, &weights, Maglev::DEFAULT_TABLE_SIZE)),
                true,
            ),
        ];
        for (name, balancer, keyed) in &balancers {
            let backends: &dyn BackendSet = &pool;
            let result = measure(|i| {
                // Keys spread like hashes; a multiply keeps hashing out of the figure.
                let key = keyed.then(|| i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                black_box(balancer.pick(black_box(backends), black_box(key)));
            });
            row(name, n, result);
        }
        let idle = Pool {
            in_flight: (0..n).map(|_| AtomicU64::new(0)).collect(),
            ..Pool::new(n, &mut rng)
        };
        let least_connections = LeastConnections::new(&weights);
        let result = measure(|_| {
            black_box(least_connections.pick(black_box(&idle), None));
        });
        row("least_connections (idle pool)", n, result);
    }

    println!();
    println!("| supporting operation | median ns | min–max ns |");
    println!("|---|---:|---:|");
    let keys: Vec<String> = (0..1024)
        .map(|i| format!("192.168.{}.{}", i / 250, i % 250))
        .collect();
    let (median, min, max) = measure(|i| {
        black_box(hash_bytes(black_box(keys[i as usize % 1024].as_bytes())));
    });
    println!("| hash_bytes (client IP string) | {median:.1} | {min:.1}–{max:.1} |");
    let ewma = PeakEwma::new();
    let (median, min, max) = measure(|i| {
        ewma.observe(Duration::from_micros(500 + i % 1000));
    });
    println!("| PeakEwma::observe | {median:.1} | {min:.1}–{max:.1} |");
    let (median, min, max) = measure(|_| {
        black_box(black_box(&ewma).estimate_ns());
    });
    println!("| PeakEwma::estimate_ns | {median:.1} | {min:.1}–{max:.1} |");
    let now = Instant::now();
    let (median, min, max) = measure(|_| {
        black_box(black_box(&ewma).estimate_ns_at(now));
    });
    println!("| PeakEwma::estimate_ns_at | {median:.1} | {min:.1}–{max:.1} |");

    // Built once per pool snapshot (start, reload), not per pick.
    println!();
    println!("| construction, 100 backends | median µs | min–max µs |");
    println!("|---|---:|---:|");
    let names: Vec<String> = (0..100).map(|i| format!("10.0.0.{i}:8080")).collect();
    let ids: Vec<&str> = names.iter().map(String::as_str).collect();
    let weights: Vec<u32> = (0..100).map(|_| rng.u32(1..=1000)).collect();
    let (median, min, max) = measure_builds(|| {
        black_box(Maglev::new(&ids, &[1; 100], Maglev::DEFAULT_TABLE_SIZE));
    });
    println!("| Maglev::new, equal weights, 65537 slots | {median:.0} | {min:.0}–{max:.0} |");
    let (median, min, max) = measure_builds(|| {
        black_box(Maglev::new(&ids, &weights, Maglev::DEFAULT_TABLE_SIZE));
    });
    println!("| Maglev::new, weights 1–1000, 65537 slots | {median:.0} | {min:.0}–{max:.0} |");
    let (median, min, max) = measure_builds(|| {
        black_box(SmoothWeighted::new(&weights));
    });
    println!("| SmoothWeighted::new, weights 1–1000 | {median:.0} | {min:.0}–{max:.0} |");
}
