//! The drill's numbers: what clients saw (requests, failures, latency, the
//! longest stretch below the SLO), the steps and the state changes, per
//! 100 ms and in total.

use std::collections::BTreeMap;

use serde::Serialize;

use super::load::Sample;
use super::watch::Detection;

/// The width of one point of the timeline.
pub const BUCKET_MS: u64 = 100;

/// A step as it ran.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// When it was due, seconds after the start of the load.
    pub at_s: f64,
    /// When it ran.
    pub ran_at_s: f64,
    /// `exec`, `api` or `fault`.
    pub kind: &'static str,
    /// The command, the request or the fault.
    pub did: String,
    /// The nodes an api or fault step went to.
    pub nodes: Vec<String>,
    /// For a random step: which of how many choices was drawn.
    pub random: Option<String>,
    /// The exit status or the answers.
    pub result: String,
    /// Whether it did what it was asked (exit 0, a 2xx answer from every node).
    pub ok: bool,
}

/// One 100 ms point of the timeline, by due time.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub t_s: f64,
    pub requests: u64,
    pub ok: u64,
    /// `None` when no request was due in it.
    pub success_ratio: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The SLO as the scenario set it.
#[derive(Debug, Clone, Serialize)]
pub struct Slo {
    pub success: f64,
    pub p99_ms: f64,
}

/// `report.json`: what the drill was (its keys at the top level) and what
/// clients saw.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub drill: Inputs,
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    /// Failed requests by status, or by `connect`, `reset`, `timeout`.
    pub failures: BTreeMap<String, u64>,
    pub success_ratio: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub slo_met: bool,
    /// Why the SLO was missed, when it was.
    pub slo_missed: Vec<String>,
    /// The longest stretch with the success ratio below the SLO.
    pub rto_s: f64,
    /// Whether every step did what it was asked (a drill whose fault was
    /// refused proved nothing, whatever the SLO says).
    pub steps_ok: bool,
    /// SLO met and every step done: `halb drill` exits 0.
    pub passed: bool,
    pub steps: Vec<StepReport>,
    pub detections: Vec<Detection>,
    pub timeline: Vec<Point>,
}

/// The `q` quantile of sorted µs values, in ms (0 when there are none).
pub(crate) fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

/// What the drill was.
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    pub name: String,
    pub scenario: String,
    /// Unix time of the start of the load.
    pub started_unix_s: f64,
    pub duration_s: f64,
    pub rate: u32,
    pub concurrency: u32,
    pub seed: u64,
    pub slo: Slo,
}

/// Puts the numbers together.
pub fn build(
    inputs: Inputs,
    mut samples: Vec<Sample>,
    steps: Vec<StepReport>,
    mut detections: Vec<Detection>,
) -> Report {
    samples.sort_by_key(|s| s.due_us);
    let requests = samples.len() as u64;
    let ok = samples.iter().filter(|s| s.outcome.ok()).count() as u64;
    let mut failures = BTreeMap::new();
    for s in samples.iter().filter(|s| !s.outcome.ok()) {
        *failures.entry(s.outcome.label()).or_insert(0) += 1;
    }
    let mut latencies: Vec<u64> = samples.iter().map(|s| s.latency_us).collect();
    latencies.sort_unstable();
    let success_ratio = if requests == 0 {
        0.0
    } else {
        ok as f64 / requests as f64
    };
    let p50_ms = percentile(&latencies, 0.50);
    let p99_ms = percentile(&latencies, 0.99);

    let buckets = (inputs.duration_s * 1000.0 / BUCKET_MS as f64).ceil() as usize;
    let mut per: Vec<Vec<&Sample>> = vec![Vec::new(); buckets.max(1)];
    for s in &samples {
        let i = ((s.due_us / 1000 / BUCKET_MS) as usize).min(per.len() - 1);
        per[i].push(s);
    }
    let timeline: Vec<Point> = per
        .iter()
        .enumerate()
        .map(|(i, bucket)| {
            let mut l: Vec<u64> = bucket.iter().map(|s| s.latency_us).collect();
            l.sort_unstable();
            let n = bucket.len() as u64;
            let good = bucket.iter().filter(|s| s.outcome.ok()).count() as u64;
            Point {
                t_s: (i as u64 * BUCKET_MS) as f64 / 1000.0,
                requests: n,
                ok: good,
                success_ratio: (n > 0).then(|| good as f64 / n as f64),
                p50_ms: (n > 0).then(|| percentile(&l, 0.50)),
                p99_ms: (n > 0).then(|| percentile(&l, 0.99)),
            }
        })
        .collect();

    // The longest run of points below the SLO; a point with no request
    // neither starts nor ends a run.
    let (mut longest, mut current) = (0u64, 0u64);
    for p in &timeline {
        match p.success_ratio {
            Some(r) if r < inputs.slo.success => current += 1,
            Some(_) => current = 0,
            None if current > 0 => current += 1,
            None => {}
        }
        longest = longest.max(current);
    }
    let rto_s = (longest * BUCKET_MS) as f64 / 1000.0;

    for d in &mut detections {
        let before = steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.ran_at_s <= d.at_s)
            .max_by(|a, b| a.1.ran_at_s.total_cmp(&b.1.ran_at_s));
        if let Some((i, s)) = before {
            d.step = Some(i);
            d.after_step_s = Some(((d.at_s - s.ran_at_s) * 1000.0).round() / 1000.0);
        }
        d.at_s = (d.at_s * 1000.0).round() / 1000.0;
    }
    detections.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));

    let mut slo_missed = Vec::new();
    if success_ratio < inputs.slo.success {
        slo_missed.push(format!(
            "success ratio {success_ratio:.4} is below {}",
            inputs.slo.success
        ));
    }
    if p99_ms > inputs.slo.p99_ms {
        slo_missed.push(format!(
            "p99 {p99_ms:.1} ms is above {} ms",
            inputs.slo.p99_ms
        ));
    }
    let steps_ok = steps.iter().all(|s| s.ok);
    Report {
        drill: inputs,
        passed: slo_missed.is_empty() && steps_ok,
        steps_ok,
        requests,
        ok,
        failed: requests - ok,
        failures,
        success_ratio,
        p50_ms,
        p99_ms,
        max_ms: latencies.last().map_or(0.0, |m| *m as f64 / 1000.0),
        slo_met: slo_missed.is_empty(),
        slo_missed,
        rto_s,
        steps,
        detections,
        timeline,
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::Failure;
    use super::super::load::Outcome;
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            name: "t".into(),
            scenario: "t.toml".into(),
            started_unix_s: 0.0,
            duration_s: 1.0,
            rate: 100,
            concurrency: 1,
            seed: 1,
            slo: Slo {
                success: 0.99,
                p99_ms: 50.0,
            },
        }
    }

    #[test]
    fn counts_failures_and_the_longest_stretch_below_the_slo() {
        let samples: Vec<Sample> = (0..100)
            .map(|i| Sample {
                due_us: i * 10_000,
                latency_us: 1_000 + i,
                // Failed from 300 ms to 549 ms: 25 requests, 2.5 points.
                outcome: if (30..55).contains(&i) {
                    Outcome::Failed(Failure::Reset)
                } else {
                    Outcome::Status(200)
                },
            })
            .collect();
        let r = build(inputs(), samples, Vec::new(), Vec::new());
        assert_eq!((r.requests, r.ok, r.failed), (100, 75, 25));
        assert_eq!(r.failures["reset"], 25);
        assert_eq!(r.timeline.len(), 10);
        // 300-399, 400-499 fully failed, 500-599 half: three points below.
        assert!((r.rto_s - 0.3).abs() < 1e-9, "{}", r.rto_s);
        assert!(!r.slo_met);
        assert!(
            r.slo_missed[0].contains("success ratio"),
            "{:?}",
            r.slo_missed
        );
        assert!((r.p50_ms - 1.049).abs() < 1e-9, "{}", r.p50_ms);
    }

    #[test]
    fn a_detection_is_timed_from_the_step_before_it() {
        let step = |at: f64| StepReport {
            at_s: at,
            ran_at_s: at + 0.001,
            kind: "exec",
            did: "true".into(),
            nodes: Vec::new(),
            random: None,
            result: "exit 0".into(),
            ok: true,
        };
        let d = Detection {
            node: "lb1".into(),
            what: "backend app/127.0.0.1:1".into(),
            from: "up".into(),
            to: "down".into(),
            at_s: 2.301,
            after_step_s: None,
            step: None,
        };
        let r = build(inputs(), Vec::new(), vec![step(1.0), step(2.0)], vec![d]);
        assert_eq!(r.detections[0].step, Some(1));
        assert_eq!(r.detections[0].after_step_s, Some(0.3));
        assert_eq!(r.requests, 0);
        assert!(!r.slo_met, "a drill with no answered request fails");
    }
}
