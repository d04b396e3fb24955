//! The dashboard at `GET /`, in a real headless Chromium driven through
//! chromedriver: the page shows every backend's state live, and its buttons
//! drain and enable a backend through the admin API.
//!
//! With `HALB_SCREENSHOT=1` the test also saves `docs/dashboard.png`, the
//! README's picture of the dashboard.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::backends::{named, tcp_echo, CHECK_PATH};
use crate::support::load::Load;
use crate::support::process::admin_get;
use crate::support::webdriver::{Browser, WebDriverResult};
use crate::support::{exclusive, free_addr, Halb, HttpClient};

const TOKEN: &str = "dashboard-test-token";
/// The issue's bound: a dead backend shows as down on the page within 2 s.
const DOWN_WITHIN: Duration = Duration::from_secs(2);
const CLICK_SHOWS_WITHIN: Duration = Duration::from_secs(2);

struct Addresses {
    admin: SocketAddr,
    web: SocketAddr,
    db: SocketAddr,
}

/// An HTTP pool of three backends with fast checks (a dead backend is down
/// after one failed check), a TCP pool with a backup, and a token.
fn config(at: &Addresses, app: [SocketAddr; 3], db: [SocketAddr; 2]) -> String {
    let [a, b, c] = app;
    let [db1, db2] = db;
    format!(
        r#"[runtime]
workers = 2

[admin]
bind = "{admin}"
token = "{TOKEN}"

[chaos]
allow = true

[[listener]]
name = "web"
bind = "{web}"
protocol = "http"
pool = "app"

[[listener]]
name = "db"
bind = "{db}"
protocol = "tcp"
pool = "db"

[[pool]]
name = "app"
algorithm = "round_robin"

[pool.health_check]
kind = "http"
path = "{CHECK_PATH}"
interval = "100ms"
timeout = "1s"
rise = 1
fall = 1

[[pool.backend]]
address = "{a}"
[[pool.backend]]
address = "{b}"
[[pool.backend]]
address = "{c}"
weight = 2

[[pool]]
name = "db"
algorithm = "least_connections"

[pool.health_check]
kind = "tcp"
interval = "100ms"
timeout = "1s"
rise = 1
fall = 1

[[pool.backend]]
address = "{db1}"
[[pool.backend]]
address = "{db2}"
backup = true
"#,
        admin = at.admin,
        web = at.web,
        db = at.db,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_backends_live_and_drains_and_enables_them() {
    let _machine = exclusive().await;
    let (a, mut b, c) = (named("a").await, named("b").await, named("c").await);
    let (db1, db2) = (tcp_echo().await, tcp_echo().await);
    let at = Addresses {
        admin: free_addr(),
        web: free_addr(),
        db: free_addr(),
    };
    let halb = Halb::start(&config(&at, [a.addr, b.addr, c.addr], [db1.addr, db2.addr])).await;

    // The page loads without the token (it holds no data); the API does not.
    let page = admin_get(at.admin, "/").await.expect("GET /");
    assert_eq!(page.status, 200, "GET /: {}", page.text());
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "GET / content-type: {:?}",
        page.header("content-type")
    );
    let script = admin_get(at.admin, "/assets/app.js")
        .await
        .expect("GET app.js");
    assert_eq!(script.status, 200);
    let refused = admin_get(at.admin, "/api/v1/status").await.expect("status");
    assert_eq!(refused.status, 401, "the status API without the token");

    let traffic = Load::start(at.web, "/", 2, Duration::from_millis(15));
    let session = Browser::start().await;
    let browser = &session;
    let dashboard = format!("http://{}/", at.admin);

    // A wrong token: the page says so, visibly.
    browser
        .goto(&format!("{dashboard}?token=wrong"))
        .await
        .expect("load the dashboard");
    let message = wait_for(
        browser,
        "the page to show the API's 401",
        Duration::from_secs(5),
        || async move {
            let Some(message) = browser.find("#messages .message").await? else {
                return Ok(None);
            };
            let text = browser.text(&message).await?;
            Ok(text.contains("bearer token").then_some(text))
        },
    )
    .await;
    assert!(message.contains("refused"), "error message: {message}");

    // The right token: every backend shows up, with live rates.
    browser
        .goto(&format!("{dashboard}?token={TOKEN}"))
        .await
        .expect("load the dashboard");
    for backend in [a.addr, b.addr, c.addr] {
        wait_for_state(browser, "app", backend, "up", Duration::from_secs(10)).await;
    }
    for backend in [db1.addr, db2.addr] {
        wait_for_state(browser, "db", backend, "up", Duration::from_secs(10)).await;
    }
    assert_reads_at_laptop_width(browser).await;
    let listeners = browser
        .find_all("#listeners tr[data-listener]")
        .await
        .expect("listener rows");
    assert_eq!(listeners.len(), 2, "one row per listener");
    assert!(
        browser
            .find("#messages .message")
            .await
            .expect("find")
            .is_none(),
        "an error is still shown with the right token"
    );
    wait_for(
        browser,
        "a live backend's req/s above 0",
        Duration::from_secs(10),
        || async move {
            let rps = row_attribute(browser, "app", a.addr, "data-rps").await?;
            Ok(rps.and_then(|r| r.parse::<f64>().ok()).filter(|r| *r > 0.0))
        },
    )
    .await;

    // A killed backend turns down on the page within 2 s.
    b.stop().await;
    let killed = Instant::now();
    wait_for_state(
        browser,
        "app",
        b.addr,
        "down",
        DOWN_WITHIN + Duration::from_secs(8),
    )
    .await;
    let took = killed.elapsed();
    assert!(
        took <= DOWN_WITHIN,
        "the killed backend showed as down after {took:?}, more than {DOWN_WITHIN:?}"
    );
    let badge = browser
        .find(&format!("{} [data-role=state]", row("app", b.addr)))
        .await
        .expect("find")
        .expect("the state badge");
    assert_eq!(
        browser
            .text(&badge)
            .await
            .expect("badge text")
            .to_lowercase(),
        "down"
    );

    let latency = browser
        .find(&format!("{} [data-role=latency]", row("app", b.addr)))
        .await
        .expect("find")
        .expect("the latency cell");
    assert_eq!(
        browser.text(&latency).await.expect("latency text"),
        "–",
        "a down backend shows no stale latency"
    );

    // A weight typed into the page is set through the API.
    let weight = browser
        .find(&format!("{} input[data-role=weight]", row("app", c.addr)))
        .await
        .expect("find")
        .expect("the weight input");
    browser
        .type_into(&weight, "4\u{E007}")
        .await
        .expect("type a weight");
    wait_for(
        browser,
        "the API to report the typed weight",
        CLICK_SHOWS_WITHIN,
        || async move {
            let weight = api_backend(at.admin, c.addr).await["weight"].as_u64();
            Ok((weight == Some(4)).then_some(()))
        },
    )
    .await;

    // Drain a live backend with its button, then enable it again.
    click(browser, "app", a.addr, "drain").await;
    wait_for_state(browser, "app", a.addr, "draining", CLICK_SHOWS_WITHIN).await;
    assert_eq!(api_state(at.admin, a.addr).await, "draining");

    click(browser, "app", a.addr, "enable").await;
    wait_for_state(browser, "app", a.addr, "up", CLICK_SHOWS_WITHIN).await;
    assert_eq!(api_state(at.admin, a.addr).await, "up");

    // An injected fault shows with its countdown, and goes when deleted.
    let bearer = format!("Bearer {TOKEN}");
    let body = r#"{"pool":"app","kind":"latency","value":"1ms","duration":"90s"}"#;
    let added = crate::support::process::admin_request_with_body(
        at.admin,
        "POST",
        "/api/v1/faults",
        &[("Authorization", bearer.as_str())],
        body,
    )
    .await
    .expect("POST a fault");
    assert_eq!(added.status, 201, "{}", added.text());
    let id = serde_json::from_slice::<serde_json::Value>(&added.body).expect("JSON")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let selector = format!("#faults tr[data-fault='{id}'] .countdown");
    let first = wait_for(browser, "the fault on the page", CLICK_SHOWS_WITHIN, || {
        let selector = selector.clone();
        async move {
            let Some(cell) = browser.find(&selector).await? else {
                return Ok(None);
            };
            Ok(Some(browser.text(&cell).await?))
        }
    })
    .await;
    let seconds = |text: &str| -> u64 {
        text.trim_end_matches(" s")
            .parse()
            .unwrap_or_else(|_| panic!("countdown {text:?}"))
    };
    let start = seconds(&first);
    assert!((80..=90).contains(&start), "countdown {first:?}");
    wait_for(
        browser,
        "the countdown to go down",
        Duration::from_secs(4),
        || {
            let selector = selector.clone();
            async move {
                let Some(cell) = browser.find(&selector).await? else {
                    return Ok(None);
                };
                let now = seconds(&browser.text(&cell).await?);
                Ok((now < start).then_some(()))
            }
        },
    )
    .await;
    let deleted = crate::support::process::admin_request_with(
        at.admin,
        "DELETE",
        &format!("/api/v1/faults/{id}"),
        &[("Authorization", bearer.as_str())],
    )
    .await
    .expect("DELETE the fault");
    assert_eq!(deleted.status, 204);
    wait_for(
        browser,
        "the fault to leave the page",
        CLICK_SHOWS_WITHIN,
        || {
            let selector = selector.clone();
            async move { Ok(browser.find(&selector).await?.is_none().then_some(())) }
        },
    )
    .await;

    // Everything the page loaded came from halb itself.
    let resources = browser
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name);",
            serde_json::json!([]),
        )
        .await
        .expect("list the page's resources");
    for resource in resources.as_array().expect("a list") {
        let url = resource.as_str().unwrap_or_default();
        assert!(
            url.starts_with(&dashboard),
            "the page loaded {url}, not from halb"
        );
    }

    if std::env::var("HALB_SCREENSHOT").is_ok_and(|v| v == "1") {
        save_screenshot(browser, at.db, db2.addr).await;
    }
    drop(session);
    traffic.finish().await;
    drop(halb);
}

/// At 1280×800, a laptop's window, the backend table reads whole: no
/// sideways scrolling, room for the last check, the sparkline and the
/// buttons, and every column has a header.
async fn assert_reads_at_laptop_width(browser: &Browser) {
    let layout = browser
        .execute(
            r#"
            const table = document.querySelector('#pool-app table.backends');
            const wrap = table.closest('.table-wrap');
            const row = table.querySelector('tr.backend');
            const width = (el) => el.getBoundingClientRect().width;
            // Whatever a cell holds lies inside it (nothing cut off).
            const cut = [...document.querySelectorAll('table.backends tr.backend')].flatMap((tr) =>
              [...tr.querySelectorAll('button, .badge, input, td.address > span')].filter((el) => {
                if (el.hidden) return false;
                const inner = el.getBoundingClientRect();
                const td = el.closest('td');
                const cell = td.getBoundingClientRect();
                const style = getComputedStyle(td);
                const left = cell.left + parseFloat(style.paddingLeft);
                const right = cell.right - parseFloat(style.paddingRight);
                return inner.left < left - 0.5 || inner.right > right + 0.5;
              }).map((el) => el.textContent || el.className));
            return {
              window: window.innerWidth,
              page_overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
              table_overflow: Math.max(...[...document.querySelectorAll('.table-wrap')].map((w) => w.scrollWidth - w.clientWidth)),
              check: width(row.querySelector('[data-role="check"]')),
              spark: width(row.querySelector('svg.spark')),
              cut,
              headers: [...table.querySelectorAll('th')].map((th) => th.textContent.trim()),
            };"#,
            serde_json::json!([]),
        )
        .await
        .expect("measure the layout");
    assert_eq!(layout["window"], 1280, "{layout:#}");
    assert!(layout["page_overflow"].as_f64() <= Some(0.0), "{layout:#}");
    assert!(layout["table_overflow"].as_f64() <= Some(0.0), "{layout:#}");
    assert!(layout["check"].as_f64() >= Some(110.0), "{layout:#}");
    assert!(layout["spark"].as_f64() >= Some(60.0), "{layout:#}");
    assert_eq!(layout["cut"], serde_json::json!([]), "{layout:#}");
    let headers = layout["headers"].as_array().expect("headers");
    assert!(
        headers
            .iter()
            .all(|h| h.as_str().is_some_and(|h| !h.is_empty())),
        "a column without a header: {layout:#}"
    );
}

/// The CSS selector of a backend's row.
fn row(pool: &str, backend: SocketAddr) -> String {
    format!("tr[data-pool=\"{pool}\"][data-backend=\"{backend}\"]")
}

async fn row_attribute(
    browser: &Browser,
    pool: &str,
    backend: SocketAddr,
    name: &str,
) -> WebDriverResult<Option<String>> {
    match browser.find(&row(pool, backend)).await? {
        Some(element) => browser.attribute(&element, name).await,
        None => Ok(None),
    }
}

/// Waits until the page shows `backend` in `state`; fails after `limit`.
async fn wait_for_state(
    browser: &Browser,
    pool: &str,
    backend: SocketAddr,
    state: &str,
    limit: Duration,
) {
    let what = format!("the page to show {backend} (pool {pool}) as {state:?}");
    wait_for(browser, &what, limit, || async move {
        let shown = row_attribute(browser, pool, backend, "data-state").await?;
        Ok((shown.as_deref() == Some(state)).then_some(()))
    })
    .await
}

/// Clicks the `action` button of a backend's row.
async fn click(browser: &Browser, pool: &str, backend: SocketAddr, action: &str) {
    let selector = format!("{} button[data-action=\"{action}\"]", row(pool, backend));
    let button = browser
        .find(&selector)
        .await
        .expect("find the button")
        .unwrap_or_else(|| panic!("no {selector}"));
    browser
        .click(&button)
        .await
        .unwrap_or_else(|e| panic!("click {action} on {backend}: {e}"));
}

/// Polls `check` every 50 ms until it gives a value; a WebDriver error (an
/// element replaced meanwhile, say) counts as "not yet". Fails after `limit`
/// with the last error.
async fn wait_for<T, F, Fut>(browser: &Browser, what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = WebDriverResult<Option<T>>>,
{
    let started = Instant::now();
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if started.elapsed() > limit {
            let shown = browser
                .execute(
                    "return document.querySelector('main').innerText;",
                    serde_json::json!([]),
                )
                .await
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            panic!(
                "timed out after {limit:?} waiting for {what}; last WebDriver error: {last_error:?}\n\
                 --- the page shows ---\n{shown}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The backend's state as the status API (with the token) says.
async fn api_state(admin: SocketAddr, backend: SocketAddr) -> String {
    api_backend(admin, backend).await["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The status API's entry for `backend`.
async fn api_backend(admin: SocketAddr, backend: SocketAddr) -> serde_json::Value {
    let mut client = HttpClient::connect(admin).await;
    let authorization = format!("Bearer {TOKEN}");
    let reply = client
        .get(
            "/api/v1/status",
            &[("authorization", authorization.as_str())],
        )
        .await;
    assert_eq!(reply.status, 200, "status API: {}", reply.text());
    let status: serde_json::Value = serde_json::from_slice(&reply.body).expect("status JSON");
    crate::support::status::backend_entry(&status, backend).clone()
}

/// Puts the pools in a state worth a picture (the db pool's backup drained,
/// TCP traffic through it), lets the sparklines fill, sizes the window to
/// the page and saves the PNG.
async fn save_screenshot(browser: &Browser, db_listener: SocketAddr, db_backup: SocketAddr) {
    click(browser, "db", db_backup, "drain").await;
    wait_for_state(browser, "db", db_backup, "draining", CLICK_SHOWS_WITHIN).await;
    let tcp_traffic = tokio::spawn(async move {
        loop {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(db_listener).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut echo = [0u8; 5];
                let _ = stream.write_all(b"ping\n").await;
                let _ = stream.read_exact(&mut echo).await;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    });
    // The sparklines show 30 s.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let size = browser
        .execute(
            "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight];",
            serde_json::json!([]),
        )
        .await
        .expect("page height");
    let height = size[0].as_u64().unwrap_or(900) + size[1].as_u64().unwrap_or(0);
    browser
        .set_window_size(1280, height as u32)
        .await
        .expect("resize the window");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let png = browser.screenshot().await.expect("screenshot");
    tcp_traffic.abort();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard.png");
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    eprintln!("saved {}", path.display());
}
