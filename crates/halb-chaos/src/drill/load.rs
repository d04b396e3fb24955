//! Open-loop load: request `i` is due at `start + i / rate` whatever
//! happened to the ones before it, and its latency is measured from that
//! due time (as wrk2 does), so a stall shows as latency instead of hiding
//! as a lower send rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use halb_config::WebhookUrl;

use super::http::Conn;

/// What one request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer with this status.
    Status(u16),
    /// No answer.
    Failed(super::http::Failure),
}

impl Outcome {
    /// 2xx and 3xx count as served.
    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Status(200..=399))
    }

    /// How the report names it: the status, or why there was none.
    pub fn label(&self) -> String {
        match self {
            Outcome::Status(s) => s.to_string(),
            Outcome::Failed(f) => f.as_str().to_owned(),
        }
    }
}

/// One request: when it was due, how long it took from then, what it got.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Due time, µs after the start of the load.
    pub due_us: u64,
    /// From due time to the end of the answer (or of the failure).
    pub latency_us: u64,
    pub outcome: Outcome,
}

/// What the load is asked to do.
#[derive(Debug, Clone)]
pub struct Plan {
    pub urls: Vec<WebhookUrl>,
    pub rate: u32,
    pub concurrency: u32,
    pub duration: Duration,
    pub timeout: Duration,
}

impl Plan {
    /// Requests in the whole drill: rate × duration.
    pub fn total(&self) -> u64 {
        (self.rate as f64 * self.duration.as_secs_f64()).round() as u64
    }

    fn due(&self, i: u64) -> Duration {
        Duration::from_nanos(i * 1_000_000_000 / self.rate as u64)
    }
}

/// The samples so far, shared with the progress line.
#[derive(Default)]
pub struct Recorder {
    samples: Mutex<Vec<Sample>>,
}

impl Recorder {
    fn push(&self, sample: Sample) {
        self.samples.lock().expect("not poisoned").push(sample);
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.samples.lock().expect("not poisoned").len()
    }

    /// Whether there is none yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the samples from index `from` on.
    pub fn since(&self, from: usize) -> Vec<Sample> {
        let samples = self.samples.lock().expect("not poisoned");
        samples.get(from..).unwrap_or_default().to_vec()
    }
}

/// Runs the plan from `start`; returns when every request has its
/// outcome (at most `timeout` after the last one is due).
pub async fn run(plan: Arc<Plan>, start: Instant, recorder: Arc<Recorder>) {
    let next = Arc::new(AtomicU64::new(0));
    let total = plan.total();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..plan.concurrency {
        let (plan, next, recorder) = (plan.clone(), next.clone(), recorder.clone());
        workers.spawn(async move {
            let mut conns: Vec<Conn> = plan
                .urls
                .iter()
                .map(|u| Conn::new(&format!("{}:{}", u.host, u.port)))
                .collect();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let due = start + plan.due(i);
                tokio::time::sleep_until(due).await;
                let which = (i % plan.urls.len() as u64) as usize;
                let url = &plan.urls[which];
                let outcome = match conns[which]
                    .send("GET", &url.path, &[], None, plan.timeout)
                    .await
                {
                    Ok((status, _)) => Outcome::Status(status),
                    Err(failure) => Outcome::Failed(failure),
                };
                recorder.push(Sample {
                    due_us: plan.due(i).as_micros() as u64,
                    latency_us: due.elapsed().as_micros() as u64,
                    outcome,
                });
            }
        });
    }
    while workers.join_next().await.is_some() {}
}
