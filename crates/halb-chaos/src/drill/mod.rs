//! `halb drill`: a scenario's steps run at their times under the drill's
//! own steady load while the nodes are watched, then a report of what
//! clients saw.

pub mod html;
pub mod http;
pub mod load;
pub mod report;
pub mod watch;

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::scenario::{Action, Scenario, Target};
use report::{Inputs, Report, Slo, StepReport};

/// A step with its choice made.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub at: Duration,
    pub target: Target,
    /// For a random step: `choice k of n`.
    pub random: Option<String>,
}

/// The drill as it will run: the random steps drawn with the seed.
#[derive(Debug, Clone)]
pub struct DrillPlan {
    pub scenario: Scenario,
    pub seed: u64,
    pub steps: Vec<PlannedStep>,
}

/// Draws the random steps with the scenario's seed (or a fresh one, which
/// the report names so the same draw can be run again).
pub fn plan(scenario: Scenario) -> DrillPlan {
    let seed = scenario.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 % 1_000_000_000)
    });
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut steps: Vec<PlannedStep> = scenario
        .steps
        .iter()
        .map(|s| {
            let pick = if s.random {
                rng.usize(..s.choices.len())
            } else {
                0
            };
            PlannedStep {
                at: s.at,
                target: s.choices[pick].clone(),
                random: s
                    .random
                    .then(|| format!("choice {} of {}", pick + 1, s.choices.len())),
            }
        })
        .collect();
    steps.sort_by_key(|s| s.at);
    DrillPlan {
        scenario,
        seed,
        steps,
    }
}

fn nodes_of(plan: &DrillPlan, target: &Target) -> Vec<usize> {
    match (&target.action, target.node) {
        (Action::Exec(_), _) => Vec::new(),
        (_, Some(n)) => vec![n],
        (_, None) => (0..plan.scenario.nodes.len()).collect(),
    }
}

/// What `--dry-run` prints: everything the drill would do, in order.
pub fn describe(plan: &DrillPlan) -> String {
    let s = &plan.scenario;
    let mut out = format!(
        "drill {:?}: {} s of load, {} requests/s open loop over {} connections ({} requests) to {}\n",
        s.name,
        s.duration.as_secs_f64(),
        s.rate,
        s.concurrency,
        (s.rate as f64 * s.duration.as_secs_f64()).round(),
        s.urls.join(", "),
    );
    out += &format!(
        "SLO: {} of requests answered 2xx/3xx within {} ms timeout, p99 at most {} ms\n",
        s.slo_success,
        s.timeout.as_millis(),
        s.slo_p99.as_millis()
    );
    for n in &s.nodes {
        out += &format!("watch node {} at {}\n", n.name, n.admin);
    }
    out += &format!("seed {}\n", plan.seed);
    for (i, step) in plan.steps.iter().enumerate() {
        let to = nodes_of(plan, &step.target)
            .iter()
            .map(|&n| s.nodes[n].name.clone())
            .collect::<Vec<_>>()
            .join(", ");
        out += &format!(
            "step {} at {:.2}s: {} {}{}{}\n",
            i + 1,
            step.at.as_secs_f64(),
            step.target.action.kind(),
            step.target.action.describe(),
            if to.is_empty() {
                String::new()
            } else {
                format!(" on {to}")
            },
            step.random
                .as_ref()
                .map(|r| format!(" (random: {r})"))
                .unwrap_or_default()
        );
    }
    out
}

async fn run_step(plan: &DrillPlan, index: usize, start: Instant) -> StepReport {
    let step = &plan.steps[index];
    tokio::time::sleep_until(start + step.at).await;
    let ran_at_s = start.elapsed().as_secs_f64();
    let nodes = nodes_of(plan, &step.target);
    let (result, ok) = match &step.target.action {
        Action::Exec(command) => {
            let outcome = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output()
                .await;
            match outcome {
                Ok(out) => {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    let tail = stderr.trim().lines().last().unwrap_or("").to_owned();
                    match out.status.code() {
                        Some(0) => ("exit 0".to_owned(), true),
                        Some(c) if tail.is_empty() => (format!("exit {c}"), false),
                        Some(c) => (format!("exit {c}: {tail}"), false),
                        None => ("killed by a signal".to_owned(), false),
                    }
                }
                Err(e) => (format!("could not run sh: {e}"), false),
            }
        }
        Action::Api { method, path } => api_on(plan, &nodes, method, path, None).await,
        Action::Fault(body) => {
            api_on(
                plan,
                &nodes,
                "POST",
                "/api/v1/faults",
                Some(body.to_string()),
            )
            .await
        }
    };
    StepReport {
        at_s: step.at.as_secs_f64(),
        ran_at_s: (ran_at_s * 1000.0).round() / 1000.0,
        kind: step.target.action.kind(),
        did: step.target.action.describe(),
        nodes: nodes
            .iter()
            .map(|&n| plan.scenario.nodes[n].name.clone())
            .collect(),
        random: step.random.clone(),
        result,
        ok,
    }
}

/// Sends one admin request to each node; every answer in one line.
async fn api_on(
    plan: &DrillPlan,
    nodes: &[usize],
    method: &str,
    path: &str,
    body: Option<String>,
) -> (String, bool) {
    let mut answers = Vec::new();
    let mut all_ok = true;
    for &n in nodes {
        let node = &plan.scenario.nodes[n];
        let auth = node.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| ("authorization", a))
            .into_iter()
            .collect();
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let mut conn = http::Conn::new(node.authority());
        let answer = conn
            .send(method, path, &headers, body.clone(), Duration::from_secs(5))
            .await;
        let line = match answer {
            Ok((status, text)) => {
                all_ok &= (200..300).contains(&status);
                let text = String::from_utf8_lossy(&text);
                let text = text.trim();
                let text = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| v["error"].as_str().or(v["id"].as_str()).map(str::to_owned))
                    .unwrap_or_else(|| text.chars().take(120).collect());
                format!("{}: {status} {text}", node.name)
            }
            Err(f) => {
                all_ok = false;
                format!("{}: no answer ({})", node.name, f.as_str())
            }
        };
        answers.push(line);
    }
    (answers.join("; "), all_ok)
}

/// Prints a progress line each second until `until`.
async fn progress(
    name: String,
    start: Instant,
    duration: Duration,
    recorder: Arc<load::Recorder>,
    until: Instant,
) {
    let terminal = std::io::stderr().is_terminal();
    let mut seen = 0usize;
    let (mut requests, mut failed) = (0u64, 0u64);
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        tick.tick().await;
        let fresh = recorder.since(seen);
        seen += fresh.len();
        requests += fresh.len() as u64;
        failed += fresh.iter().filter(|s| !s.outcome.ok()).count() as u64;
        let mut l: Vec<u64> = fresh.iter().map(|s| s.latency_us).collect();
        l.sort_unstable();
        let p99 = report::percentile(&l, 0.99);
        let t = start.elapsed().min(duration).as_secs_f64();
        let line = format!(
            "drill {name}: {t:>5.1}/{:.0} s  requests {requests}  failed {failed}  p99 (last second) {p99:.1} ms",
            duration.as_secs_f64()
        );
        let mut err = std::io::stderr();
        let _ = if terminal {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
        if Instant::now() >= until {
            if terminal {
                let _ = writeln!(err);
            }
            return;
        }
    }
}

/// Runs the drill and returns its report. `source` names the scenario
/// file in the report.
pub async fn run(plan: DrillPlan, source: &str, show_progress: bool) -> Report {
    let plan = Arc::new(plan);
    let s = &plan.scenario;
    let load_plan = Arc::new(load::Plan {
        urls: s
            .urls
            .iter()
            .map(|u| {
                halb_config::WebhookUrl::parse(u).expect("checked when the scenario was parsed")
            })
            .collect(),
        rate: s.rate,
        concurrency: s.concurrency,
        duration: s.duration,
        timeout: s.timeout,
    });
    // Watching starts before the load, so the first answers are the
    // baseline rather than changes.
    let start = Instant::now() + Duration::from_millis(300);
    let end = start + s.duration + s.timeout + Duration::from_millis(200);
    let detections = Arc::new(Mutex::new(Vec::new()));
    let mut watchers = tokio::task::JoinSet::new();
    for node in &s.nodes {
        watchers.spawn(watch::watch(node.clone(), start, end, detections.clone()));
    }
    let recorder = Arc::new(load::Recorder::default());
    let mut steps = tokio::task::JoinSet::new();
    for i in 0..plan.steps.len() {
        let plan = plan.clone();
        steps.spawn(async move { (i, run_step(&plan, i, start).await) });
    }
    let reporter = show_progress.then(|| {
        tokio::spawn(progress(
            s.name.clone(),
            start,
            s.duration,
            recorder.clone(),
            start + s.duration,
        ))
    });
    let started_unix_s = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
        + 0.3;
    load::run(load_plan, start, recorder.clone()).await;
    let mut step_reports: Vec<Option<StepReport>> = vec![None; plan.steps.len()];
    while let Some(done) = steps.join_next().await {
        if let Ok((i, report)) = done {
            step_reports[i] = Some(report);
        }
    }
    while watchers.join_next().await.is_some() {}
    if let Some(r) = reporter {
        let _ = r.await;
    }
    let detections = std::mem::take(&mut *detections.lock().expect("not poisoned"));
    report::build(
        Inputs {
            name: s.name.clone(),
            scenario: source.to_owned(),
            started_unix_s,
            duration_s: s.duration.as_secs_f64(),
            rate: s.rate,
            concurrency: s.concurrency,
            seed: plan.seed,
            slo: Slo {
                success: s.slo_success,
                p99_ms: s.slo_p99.as_secs_f64() * 1000.0,
            },
        },
        recorder.since(0),
        step_reports.into_iter().flatten().collect(),
        detections,
    )
}
