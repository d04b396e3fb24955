//! `halb config push --canary NODE[,NODE] FILE`: a staged rollout. The
//! new document goes to `<prefix>/canary` naming the canary nodes, which
//! run it in place of `<prefix>/config` while every other node keeps the
//! stored one. The push then watches the canaries' share of 5xx answers
//! (their `/metrics`) over `--watch`, and either stores the document as
//! `<prefix>/config` (promoted) or deletes the canary key, so that the
//! canaries return to the previous revision (rolled back, exit 1).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use halb_cluster::snapshot::{Canary, CANARY_KEY, CONFIG_KEY};
use halb_cluster::{fleet_status, Client, NodeRecord};

/// How long the canaries get to apply (or go back from) a revision.
const APPLY_WITHIN: Duration = Duration::from_secs(10);
/// How often the canaries' counters are read during the watch.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Fewer answers than this in the window prove nothing either way: an
/// early rollback waits for at least this many.
const EARLY_VERDICT_AFTER: u64 = 20;

/// What a canary push asks for.
pub struct Trial {
    pub nodes: Vec<String>,
    pub watch: Duration,
    /// The largest share of 5xx answers that still promotes (0.0..=1.0).
    pub max_error_rate: f64,
}

/// A canary node and where its admin endpoint answers.
struct Node {
    name: String,
    admin: String,
}

/// HTTP answers a node has sent: all, and those that were 5xx.
#[derive(Debug, Clone, Copy, Default)]
struct Answers {
    total: u64,
    errors: u64,
}

impl Answers {
    fn since(self, base: Answers) -> Answers {
        Answers {
            total: self.total.saturating_sub(base.total),
            errors: self.errors.saturating_sub(base.errors),
        }
    }

    fn rate(self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.errors as f64 / self.total as f64
        }
    }
}

/// Runs the trial of `text` (validated) against `<prefix>/config` at
/// revision `base`.
pub async fn run(
    client: &Client,
    prefix: &str,
    text: &str,
    base: i64,
    trial: Trial,
) -> anyhow::Result<ExitCode> {
    let nodes = canary_nodes(client, prefix, &trial.nodes).await?;
    let canary_key = format!("{prefix}/{CANARY_KEY}");
    let value = serde_json::to_vec(&Canary {
        nodes: trial.nodes.clone(),
        config: text.to_owned(),
        base_revision: base,
    })?;
    let Some(revision) = client.put_if_unchanged(&canary_key, &value, 0).await? else {
        anyhow::bail!(
            "{canary_key} exists: another canary is on trial; wait for its push to end \
             (or delete the key if that push died)"
        );
    };
    let names = trial.nodes.join(", ");
    println!("canary: revision {revision} on {names}; the other nodes keep revision {base}");

    let verdict = watch(client, prefix, &nodes, revision, &trial).await;
    match verdict {
        Ok(answers) => promote(client, prefix, text, base, revision, answers).await,
        Err(why) => {
            rollback(client, prefix, &nodes, revision).await?;
            let run = if trial.nodes.len() == 1 {
                "runs"
            } else {
                "run"
            };
            eprintln!(
                "halb: canary revision {revision} rolled back: {why}; {names} {run} revision \
                 {base} again and nothing else changed"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The registry's records of `names`, each with an admin endpoint.
async fn canary_nodes(
    client: &Client,
    prefix: &str,
    names: &[String],
) -> anyhow::Result<Vec<Node>> {
    if names.is_empty() || names.iter().any(String::is_empty) {
        anyhow::bail!("--canary needs node names, comma-separated (as in `halb cluster status`)");
    }
    let fleet = fleet_status(client, prefix).await?;
    let known: Vec<&NodeRecord> = fleet.nodes.iter().map(|n| &n.record).collect();
    names
        .iter()
        .map(|name| {
            let record = (known.iter().find(|r| &r.node == name)).ok_or_else(|| {
                let registered: Vec<&str> = known.iter().map(|r| r.node.as_str()).collect();
                anyhow::anyhow!(
                    "--canary: node {name:?} is not in {prefix}/nodes/ (registered: {})",
                    if registered.is_empty() {
                        "none".to_owned()
                    } else {
                        registered.join(", ")
                    }
                )
            })?;
            let admin = record.admin.clone().ok_or_else(|| {
                anyhow::anyhow!("--canary: node {name:?} has no [admin] endpoint to watch")
            })?;
            Ok(Node {
                name: name.clone(),
                admin,
            })
        })
        .collect()
}

/// Wait for the canaries to apply `revision`, then watch their answers:
/// `Ok` with what they answered when the revision may be promoted.
async fn watch(
    client: &Client,
    prefix: &str,
    nodes: &[Node],
    revision: i64,
    trial: &Trial,
) -> Result<Answers, String> {
    applied(client, prefix, nodes, revision).await?;
    let base = answers(nodes).await?;
    let started = Instant::now();
    loop {
        tokio::time::sleep(SAMPLE_EVERY.min(trial.watch)).await;
        let seen = answers(nodes).await?.since(base);
        let over = seen.rate() > trial.max_error_rate;
        let done = started.elapsed() >= trial.watch;
        if over && (done || seen.total >= EARLY_VERDICT_AFTER) {
            return Err(format!(
                "{} of {} answers were 5xx ({:.1} %, more than --max-error-rate {:.1} %)",
                seen.errors,
                seen.total,
                seen.rate() * 100.0,
                trial.max_error_rate * 100.0
            ));
        }
        if done {
            if seen.total == 0 {
                return Err(format!(
                    "no request reached the canaries in {:?}, so nothing shows the revision \
                     works (send traffic to them, or watch longer)",
                    trial.watch
                ));
            }
            return Ok(seen);
        }
    }
}

/// Every canary's record says it runs `revision` without errors.
async fn applied(
    client: &Client,
    prefix: &str,
    nodes: &[Node],
    revision: i64,
) -> Result<(), String> {
    let deadline = Instant::now() + APPLY_WITHIN;
    loop {
        let fleet = fleet_status(client, prefix)
            .await
            .map_err(|e| format!("cannot read the registry: {e}"))?;
        let mut waiting = Vec::new();
        for node in nodes {
            let record = fleet
                .nodes
                .iter()
                .map(|n| &n.record)
                .find(|r| r.node == node.name);
            match record {
                Some(r) if r.config_revision == revision && r.errors.is_empty() => {}
                Some(r) if !r.errors.is_empty() => {
                    return Err(format!("{} refused it: {}", node.name, r.errors.join("; ")));
                }
                _ => waiting.push(node.name.as_str()),
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not apply it within {APPLY_WITHIN:?}",
                waiting.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The canaries' answers so far, summed.
async fn answers(nodes: &[Node]) -> Result<Answers, String> {
    let mut sum = Answers::default();
    for node in nodes {
        let (status, body) = crate::fleet::get(&node.admin, "/metrics")
            .await
            .map_err(|e| format!("cannot read {}'s metrics: {e}", node.name))?;
        if !status.is_success() {
            return Err(format!("{}'s /metrics answered {status}", node.name));
        }
        let counted = count_answers(&String::from_utf8_lossy(&body));
        sum.total += counted.total;
        sum.errors += counted.errors;
    }
    Ok(sum)
}

/// `halb_http_requests_total` summed, and its `code="5xx"` samples.
fn count_answers(metrics: &str) -> Answers {
    let mut answers = Answers::default();
    for line in metrics.lines() {
        let Some(sample) = line.strip_prefix("halb_http_requests_total{") else {
            continue;
        };
        let Some(value) = (sample.rsplit(' ').next()).and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        answers.total += value as u64;
        if sample.contains("code=\"5xx\"") {
            answers.errors += value as u64;
        }
    }
    answers
}

/// Store the document for every node, then end the trial.
async fn promote(
    client: &Client,
    prefix: &str,
    text: &str,
    base: i64,
    canary: i64,
    answers: Answers,
) -> anyhow::Result<ExitCode> {
    let config_key = format!("{prefix}/{CONFIG_KEY}");
    let stored = client
        .put_if_unchanged(&config_key, text.as_bytes(), base)
        .await?;
    client.delete(&format!("{prefix}/{CANARY_KEY}")).await?;
    match stored {
        Some(revision) => {
            println!(
                "canary revision {canary}: {} of {} answers were 5xx ({:.2} %); promoted: \
                 stored {config_key} at revision {revision} for every node",
                answers.errors,
                answers.total,
                answers.rate() * 100.0
            );
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!(
                "halb: {config_key} changed during the trial (it was at revision {base}); \
                 nothing promoted and the canaries run the stored config again: push again"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// End the trial: the canaries go back to `<prefix>/config`.
async fn rollback(
    client: &Client,
    prefix: &str,
    nodes: &[Node],
    canary: i64,
) -> anyhow::Result<()> {
    client.delete(&format!("{prefix}/{CANARY_KEY}")).await?;
    let deadline = Instant::now() + APPLY_WITHIN;
    loop {
        let fleet = fleet_status(client, prefix).await?;
        let still: Vec<&str> = (fleet.nodes.iter().map(|n| &n.record))
            .filter(|r| r.config_revision == canary && nodes.iter().any(|n| n.name == r.node))
            .map(|r| r.node.as_str())
            .collect();
        if still.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "{} still run{} canary revision {canary} {APPLY_WITHIN:?} after its key was deleted",
                still.join(", "),
                if still.len() == 1 { "s" } else { "" }
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_from_the_metrics_text() {
        let text = "\
# TYPE halb_http_requests_total counter
halb_http_requests_total{listener=\"front\",route=\"default\",pool=\"app\",backend=\"127.0.0.1:1\",code=\"2xx\"} 90
halb_http_requests_total{listener=\"front\",route=\"default\",pool=\"app\",backend=\"\",code=\"5xx\"} 10
halb_http_requests_abandoned_total{listener=\"front\"} 3
";
        let answers = count_answers(text);
        assert_eq!((answers.total, answers.errors), (100, 10));
        assert!((answers.rate() - 0.1).abs() < 1e-9);
        let later = Answers {
            total: 150,
            errors: 10,
        };
        assert_eq!(later.since(answers).total, 50);
        assert_eq!(later.since(answers).rate(), 0.0);
    }
}
