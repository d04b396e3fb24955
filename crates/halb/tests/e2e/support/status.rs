//! Reading halb's status API the way the fault-tolerance tests need it: one
//! backend's entry, waiting for a state, and sampling a backend's state in
//! the background so that what a backend saw can be compared with what halb
//! said at the time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinHandle;

use super::process::admin_get;
use super::Halb;

/// The status entry of the backend at `address` (in any pool).
pub fn backend_entry(status: &Value, address: SocketAddr) -> &Value {
    status["pools"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|pool| pool["backends"].as_array().into_iter().flatten())
        .find(|backend| backend["address"] == address.to_string())
        .unwrap_or_else(|| panic!("backend {address} not in status: {status:#}"))
}

/// The status entry of the (only) pool.
pub fn pool_entry(status: &Value) -> &Value {
    &status["pools"][0]
}

/// A number from a status entry (0 when absent, so that the assertion
/// that follows says what is wrong).
pub fn number(entry: &Value, key: &str) -> u64 {
    entry[key].as_u64().unwrap_or(0)
}

/// The `state` of the backend at `address`.
pub async fn state_of(halb: &Halb, address: SocketAddr) -> String {
    let status = halb.status_json().await;
    backend_entry(&status, address)["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Polls the status API every 10 ms until the backend at `address` is in
/// `state`; returns how long that took. Fails the test after `limit`.
pub async fn wait_for_state(
    halb: &Halb,
    address: SocketAddr,
    state: &str,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let status = halb.status_json().await;
        let entry = backend_entry(&status, address);
        if entry["state"] == state {
            return started.elapsed();
        }
        if started.elapsed() > limit {
            panic!("backend {address} not {state:?} within {limit:?}: {entry:#}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until every backend in `addresses` is `up`.
pub async fn wait_until_up(halb: &Halb, addresses: &[SocketAddr]) {
    for address in addresses {
        wait_for_state(halb, *address, "up", Duration::from_secs(10)).await;
    }
}

/// One reading of a backend's state: halb computed `state` at some moment
/// between `asked` and `answered`.
#[derive(Debug, Clone)]
pub struct StateSample {
    pub asked: Instant,
    pub answered: Instant,
    pub state: String,
}

/// Reads one backend's state from the status API, over and over, until
/// [`StateSampler::finish`].
pub struct StateSampler {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<StateSample>>,
}

impl StateSampler {
    /// Samples the backend at `address` about every `every`.
    pub fn start(halb: &Halb, address: SocketAddr, every: Duration) -> StateSampler {
        let admin = halb.admin();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                let asked = Instant::now();
                // A failed reading is skipped: the gap only widens the
                // windows in which nothing is asserted.
                if let Ok(response) = admin_get(admin, "/api/v1/status").await {
                    let answered = Instant::now();
                    if let Ok(status) = serde_json::from_slice::<Value>(&response.body) {
                        let state = backend_entry(&status, address)["state"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        samples.push(StateSample {
                            asked,
                            answered,
                            state,
                        });
                    }
                }
                tokio::time::sleep(every).await;
            }
            samples
        });
        StateSampler { stop, task }
    }

    pub async fn finish(self) -> Vec<StateSample> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("state sampler")
    }
}

/// The spans in which halb surely had the backend in `state`: from the
/// answer to the first sample of a run of samples in that state to the
/// question of the last one (the state cannot have changed in between and
/// back, as long as samples are closer than any state change can be).
pub fn surely_in(samples: &[StateSample], state: &str) -> Vec<(Instant, Instant)> {
    let mut spans = Vec::new();
    let mut run: Option<(Instant, Instant)> = None;
    for sample in samples {
        if sample.state == state {
            run = Some(match run {
                None => (sample.answered, sample.asked),
                Some((from, _)) => (from, sample.asked),
            });
        } else if let Some(span) = run.take() {
            spans.push(span);
        }
    }
    spans.extend(run);
    spans.retain(|(from, to)| from < to);
    spans
}

/// How many times the state changed between consecutive samples.
pub fn changes(samples: &[StateSample]) -> usize {
    samples
        .windows(2)
        .filter(|pair| pair[0].state != pair[1].state)
        .count()
}
