//! `halb drill` (issue 15): real drills against real halb nodes, each read
//! from its report: a backend SIGKILLed (no failed request, the down state
//! seen within a second), a 503 burst (SLO missed, the failures agree with
//! halb's own metrics), a latency fault (p50 during and after it), fault
//! steps refused without `[chaos] allow` or the token, `--dry-run` (nothing
//! runs), a bad scenario (exit 2 naming the key), and the HTML report in
//! headless Chromium (no request leaves the page). With `HALB_SCREENSHOT=1`
//! the last test also saves `docs/drill-report.png`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::faults::chaos_node;
use crate::metrics::Scrape;
use crate::support::backends::{named, CHECK_PATH};
use crate::support::node_config::NodeConfig;
use crate::support::process::{run_halb, Finished, KillOnDrop, TempFile};
use crate::support::webdriver::Browser;
use crate::support::{exclusive, free_addr, Halb};

const TOKEN: &str = "e2e-drill-token-7d01";

/// A temp directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(kind: &str) -> TempDir {
        let path = TempFile::unique(kind).path.clone();
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A scenario file's text: `head` holds name, duration, [load] and [slo];
/// then the node and the steps.
fn scenario(head: &str, admin: SocketAddr, token: Option<&str>, steps: &str) -> String {
    let token = token
        .map(|t| format!("token = \"{t}\"\n"))
        .unwrap_or_default();
    format!("{head}\n[[node]]\nname = \"lb1\"\nadmin = \"http://{admin}\"\n{token}{steps}")
}

/// `[load]` and `[slo]` for `rate` requests/s to `listen`.
fn head(name: &str, duration: &str, listen: SocketAddr, rate: u32, p99: &str) -> String {
    format!(
        "name = \"{name}\"\nduration = \"{duration}\"\n[load]\nurl = \"http://{listen}/\"\nrate = {rate}\nconcurrency = 16\n[slo]\nsuccess = 0.999\np99 = \"{p99}\"\n"
    )
}

/// Runs `halb drill --scenario FILE --report DIR EXTRA` to completion;
/// what it said and its report, if it wrote one.
async fn drill(text: &str, extra: &[&str]) -> (Finished, Option<Value>, TempDir) {
    let file = TempFile::with_contents("scenario.toml", text);
    let dir = TempDir::new("drill-report");
    let mut args: Vec<String> = vec![
        "drill".into(),
        "--scenario".into(),
        file.path.display().to_string(),
        "--report".into(),
        dir.0.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let finished = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_halb(&args, Duration::from_secs(120))
    })
    .await
    .expect("run halb drill");
    eprintln!(
        "halb drill: {:?}\nstdout:\n{}\nstderr:\n{}",
        finished.code(),
        finished.stdout,
        finished.stderr
    );
    let report = std::fs::read_to_string(dir.0.join("report.json"))
        .ok()
        .map(|t| serde_json::from_str(&t).expect("report.json is JSON"));
    (finished, report, dir)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

/// Timeline points whose time is in `from..to` seconds.
fn points(report: &Value, from: f64, to: f64) -> Vec<Value> {
    report["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter(|p| (from..to).contains(&num(&p["t_s"])))
        .cloned()
        .collect()
}

/// A backend in its own process (Python's http.server over an empty
/// directory with the check file), so a drill step can SIGKILL it.
fn python_backend(dir: &Path) -> (KillOnDrop, SocketAddr) {
    std::fs::write(dir.join(CHECK_PATH.trim_start_matches('/')), "ok").expect("check file");
    let addr = free_addr();
    let child = KillOnDrop(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                &addr.port().to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server"),
    );
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return (child, addr);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("python3 http.server on {addr} did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_killed_in_a_drill_costs_no_request_and_is_seen_down_within_a_second() {
    let _alone = exclusive().await;
    let dirs = [TempDir::new("backend-a"), TempDir::new("backend-b")];
    let (victim, a) = python_backend(&dirs[0].0);
    let (_b_process, b) = python_backend(&dirs[1].0);
    let listen = free_addr();
    let config = NodeConfig::new()
        .listener("front", listen, "app")
        .pool("app", &[a, b])
        .http_checks("app", "100ms", "1s", 2, 2);
    let halb = Halb::start(&config.to_toml()).await;
    let steps = format!(
        "[[step]]\nat = \"2s\"\nexec = \"kill -9 {}\"\n",
        victim.0.id()
    );
    let text = scenario(
        &head("backend-kill", "6s", listen, 200, "500ms"),
        halb.admin(),
        None,
        &steps,
    );
    let (finished, report, _dir) = drill(&text, &[]).await;
    let report = report.expect("a report");
    assert_eq!(finished.code(), Some(0), "SLO met: {}", finished.stdout);
    assert_eq!(report["failed"], 0, "{}", report["failures"]);
    let requests = num(&report["requests"]);
    assert!(
        (requests - 1200.0).abs() <= 120.0,
        "{requests} requests, rate x duration = 1200"
    );
    assert_eq!(report["steps"][0]["ok"], true, "{}", report["steps"]);
    let down = report["detections"]
        .as_array()
        .expect("detections")
        .iter()
        .find(|d| d["what"] == format!("backend app/{a}").as_str() && d["to"] == "down")
        .unwrap_or_else(|| panic!("no down detection of {a}: {}", report["detections"]))
        .clone();
    let after = num(&down["after_step_s"]);
    eprintln!("backend kill: {requests} requests, 0 failed, seen down {after:.3} s after the kill");
    assert_eq!(down["step"], 0);
    assert!(after <= 1.0, "seen down {after} s after the kill");
    assert_eq!(report["slo_met"], true);
    assert_eq!(report["rto_s"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_burst_misses_the_slo_and_its_count_agrees_with_halbs_metrics() {
    let _alone = exclusive().await;
    let a = named("a").await;
    let (halb, listen) = chaos_node(&[a.addr]).await;
    let steps = "[[step]]\nat = \"1.5s\"\nfault = { pool = \"app\", kind = \"abort\", value = 503, percent = 100, duration = \"3s\" }\n";
    let text = scenario(
        &head("5xx-burst", "6s", listen, 200, "500ms"),
        halb.admin(),
        None,
        steps,
    );
    let (finished, report, _dir) = drill(&text, &[]).await;
    let report = report.expect("a report");
    assert_eq!(finished.code(), Some(1), "SLO missed: {}", finished.stdout);
    assert!(
        finished.stdout.contains("SLO missed"),
        "{}",
        finished.stdout
    );
    assert_eq!(report["slo_met"], false);
    assert_eq!(report["steps"][0]["ok"], true, "{}", report["steps"]);
    let failed = num(&report["failed"]);
    assert!(
        (failed - 600.0).abs() <= 120.0,
        "{failed} failed, rate x 3 s = 600"
    );
    assert_eq!(
        num(&report["failures"]["503"]),
        failed,
        "{}",
        report["failures"]
    );
    let scrape = Scrape::of(&halb, &[]).await;
    let applied = scrape.value(
        "halb_faults_applied_total",
        &[("pool", "app"), ("kind", "abort")],
    );
    let five_xx = scrape.sum("halb_http_requests_total", &[("code", "5xx")]);
    eprintln!("503 burst: drill counted {failed} failed; halb applied the fault {applied} times, counted {five_xx} 5xx; rto {} s", report["rto_s"]);
    assert_eq!(applied, failed, "the drill and halb's metrics agree");
    assert_eq!(five_xx, failed);
    let rto = num(&report["rto_s"]);
    assert!((2.7..=3.4).contains(&rto), "rto {rto} s for a 3 s burst");
    let seen: Vec<_> = report["detections"]
        .as_array()
        .expect("detections")
        .iter()
        .filter(|d| d["what"].as_str().is_some_and(|w| w.starts_with("fault ")))
        .map(|d| (d["to"].as_str().unwrap_or("").to_owned(), num(&d["at_s"])))
        .collect();
    assert_eq!(seen.len(), 2, "fault start and end: {seen:?}");
    assert!(
        seen[0].0.starts_with("active: abort 503 on app"),
        "{seen:?}"
    );
    assert_eq!(seen[1].0, "ended");
    assert!((4.3..5.2).contains(&seen[1].1), "ended at {} s", seen[1].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latency_fault_shows_in_p50_and_is_gone_after_it_expires() {
    let _alone = exclusive().await;
    let a = named("a").await;
    let listen = free_addr();
    let config = NodeConfig::new()
        .chaos_allowed()
        .token(TOKEN)
        .listener("front", listen, "app")
        .pool("app", &[a.addr]);
    let halb = Halb::start(&config.to_toml()).await;
    let steps = "[[step]]\nat = \"1s\"\nfault = { pool = \"app\", kind = \"latency\", value = \"200ms\", duration = \"2s\" }\n";
    let text = scenario(
        &head("latency", "5s", listen, 50, "1s"),
        halb.admin(),
        Some(TOKEN),
        steps,
    );
    let (finished, report, _dir) = drill(&text, &[]).await;
    let report = report.expect("a report");
    assert_eq!(finished.code(), Some(0), "{}", finished.stdout);
    assert_eq!(report["failed"], 0);
    let during: Vec<f64> = points(&report, 1.2, 2.8)
        .iter()
        .map(|p| num(&p["p50_ms"]))
        .collect();
    let after: Vec<f64> = points(&report, 3.5, 5.0)
        .iter()
        .map(|p| num(&p["p50_ms"]))
        .collect();
    eprintln!("latency fault: p50 per 100 ms during {during:?}, after {after:?}");
    assert!(
        during.len() >= 15 && during.iter().all(|p| *p >= 200.0),
        "{during:?}"
    );
    assert!(
        !after.is_empty() && after.iter().all(|p| *p < 100.0),
        "{after:?}"
    );
    let auth = format!("Bearer {TOKEN}");
    let listed = halb
        .admin_request_with("GET", "/api/v1/faults", &[("authorization", auth.as_str())])
        .await;
    let listed: Value = serde_json::from_slice(&listed.body).expect("faults JSON");
    assert_eq!(
        listed["faults"],
        serde_json::json!([]),
        "the fault ended by itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_steps_need_chaos_allowed_and_the_token() {
    let a = named("a").await;
    let steps = "[[step]]\nat = \"0.5s\"\nfault = { pool = \"app\", kind = \"abort\", value = 503, duration = \"1s\" }\n";
    for (chaos, token, sent, want) in [
        (false, None, None, "403"),
        (true, Some(TOKEN), None, "401"),
        (true, Some(TOKEN), Some("wrong"), "401"),
    ] {
        let listen = free_addr();
        let mut config = NodeConfig::new()
            .listener("front", listen, "app")
            .pool("app", &[a.addr]);
        if chaos {
            config = config.chaos_allowed();
        }
        if let Some(token) = token {
            config = config.token(token);
        }
        let halb = Halb::start(&config.to_toml()).await;
        let text = scenario(
            &head("refused", "1s", listen, 50, "500ms"),
            halb.admin(),
            sent,
            steps,
        );
        let (finished, report, _dir) = drill(&text, &[]).await;
        let report = report.expect("a report");
        let result = report["steps"][0]["result"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(result.starts_with(&format!("lb1: {want}")), "{result}");
        assert_eq!(report["steps"][0]["ok"], false);
        assert_eq!(report["failed"], 0, "the fault never started");
        assert_eq!(
            finished.code(),
            Some(1),
            "a drill whose fault was refused does not pass"
        );
        assert!(
            finished.stdout.contains("did not succeed"),
            "{}",
            finished.stdout
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_plan_and_runs_nothing_and_a_bad_scenario_names_the_key() {
    let a = named("a").await;
    let listen = free_addr();
    let config = NodeConfig::new()
        .listener("front", listen, "app")
        .pool("app", &[a.addr]);
    let halb = Halb::start(&config.to_toml()).await;
    let marker = TempFile::unique("dry-run-marker");
    let steps = format!(
        "[[step]]\nat = \"1s\"\nexec = \"touch {}\"\n[[step]]\nat = \"2s\"\nrandom = [{{ api = \"POST /api/v1/pools/app/backends/{}/drain\" }}, {{ exec = \"true\" }}]\n",
        marker.path.display(),
        a.addr
    );
    let seeded = format!("seed = 7\n{}", head("dry", "3s", listen, 100, "500ms"));
    let text = scenario(&seeded, halb.admin(), None, &steps);
    let (finished, report, _dir) = drill(&text, &["--dry-run"]).await;
    assert_eq!(finished.code(), Some(0), "{}", finished.stderr);
    assert!(report.is_none(), "a dry run writes no report");
    assert!(finished.stdout.contains("dry run: nothing was run"));
    assert!(
        finished.stdout.contains("step 1 at 1.00s: exec touch"),
        "{}",
        finished.stdout
    );
    assert!(finished.stdout.contains("seed 7"), "{}", finished.stdout);
    assert!(
        finished.stdout.contains("(random: choice"),
        "{}",
        finished.stdout
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!marker.path.exists(), "the exec step did not run");
    assert_eq!(a.requests(), 0, "no load was sent");

    let (finished, report, _dir) = drill(&text.replace("rate = 100", "rate = 0"), &[]).await;
    assert_eq!(finished.code(), Some(2));
    assert!(report.is_none());
    assert!(finished.stderr.contains("load.rate"), "{}", finished.stderr);
    assert!(!marker.path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_opens_offline_in_chromium() {
    let a = named("a").await;
    let (halb, listen) = chaos_node(&[a.addr]).await;
    let steps = "[[step]]\nat = \"1s\"\nfault = { pool = \"app\", kind = \"latency\", value = \"30ms\", duration = \"1s\" }\n[[step]]\nat = \"2.5s\"\nfault = { pool = \"app\", kind = \"abort\", value = 503, percent = 50, duration = \"1s\" }\n";
    let text = scenario(
        &head("report-page", "5s", listen, 100, "500ms"),
        halb.admin(),
        None,
        steps,
    );
    let (finished, report, dir) = drill(&text, &[]).await;
    assert_eq!(finished.code(), Some(1), "the 503s miss the SLO");
    assert!(report.is_some());
    let page = dir.0.join("report.html");
    let html = std::fs::read_to_string(&page).expect("report.html");
    assert!(
        html.contains("default-src 'none'"),
        "the page allows no fetch"
    );

    let session = Browser::start().await;
    let browser = &session;
    browser
        .goto(&format!("file://{}", page.display()))
        .await
        .expect("open the report");
    let seen = browser
        .execute(
            "return [performance.getEntriesByType('resource').length, document.querySelectorAll('svg').length, document.querySelectorAll('line.step').length, document.querySelector('.verdict').textContent, document.documentElement.scrollHeight];",
            serde_json::json!([]),
        )
        .await
        .expect("read the page");
    eprintln!("report page: {seen}");
    assert_eq!(seen[0], 0, "no request left the page");
    assert_eq!(seen[1], 2, "two plots");
    assert_eq!(seen[2], 4, "two steps marked on each plot");
    assert_eq!(seen[3], "SLO missed");
    let height = seen[4].as_u64().unwrap_or(900) as u32;
    browser
        .set_window_size(1100, height.clamp(600, 2400) + 120)
        .await
        .expect("resize");
    let png = browser.screenshot().await.expect("screenshot");
    assert!(png.len() > 10_000, "a screenshot of {} bytes", png.len());
    if std::env::var_os("HALB_SCREENSHOT").is_some() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/drill-report.png");
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}
