//! A tiny W3C WebDriver client, enough to test the dashboard in a real
//! browser: it runs Debian's `chromedriver` on a free loopback port, opens
//! one headless Chromium session and speaks the WebDriver JSON protocol to
//! it over HTTP/1.1. Dropping the [`Browser`] ends the session (Chromium
//! quits) and kills chromedriver.

use std::fmt;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::free_port;
use super::process::TempFile;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

const DRIVER_READY_WITHIN: Duration = Duration::from_secs(20);
/// Starting Chromium on a busy two-core machine can take a while.
const NEW_SESSION_WITHIN: Duration = Duration::from_secs(60);
const COMMAND_WITHIN: Duration = Duration::from_secs(30);

/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A WebDriver command that failed: the protocol's error code (`no such
/// element`, `stale element reference`, ...) or `transport`.
#[derive(Debug, Clone)]
pub struct WebDriverError {
    pub code: String,
    pub message: String,
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl WebDriverError {
    fn transport(what: impl fmt::Display) -> Self {
        WebDriverError {
            code: "transport".to_owned(),
            message: what.to_string(),
        }
    }
}

pub type WebDriverResult<T> = Result<T, WebDriverError>;

/// An element on the page, by its WebDriver reference.
#[derive(Debug, Clone)]
pub struct Element(String);

/// A headless Chromium driven through chromedriver.
pub struct Browser {
    driver: SocketAddr,
    session: String,
    chromedriver: Child,
    profile: PathBuf,
    log: TempFile,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a fresh
    /// profile. Fails the test if Chromium is not installed.
    pub async fn start() -> Browser {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: the dashboard test needs Debian's chromium and \
                 chromium-driver packages; run scripts/test.sh, which installs them"
            );
        }
        let driver = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = TempFile::unique("chromedriver.log");
        let chromedriver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={}", driver.port()))
            .arg(format!("--log-path={}", log.path.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that drop can end Chromium with it.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {CHROMEDRIVER}: {e}"));
        let profile = TempFile::unique("chromium-profile").path.clone();
        std::fs::create_dir_all(&profile).expect("create the Chromium profile dir");
        let mut browser = Browser {
            driver,
            session: String::new(),
            chromedriver,
            profile,
            log,
        };
        browser.wait_until_ready().await;
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--disable-quic",
                            "--no-first-run",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--window-size=1280,800",
                            format!("--user-data-dir={}", browser.profile.display()),
                        ],
                    },
                },
            },
        });
        let session = call(
            driver,
            Method::POST,
            "/session",
            Some(capabilities),
            NEW_SESSION_WITHIN,
        )
        .await
        .unwrap_or_else(|e| panic!("new Chromium session: {e}\n{}", browser.log_tail()));
        browser.session = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {session}"))
            .to_owned();
        browser
    }

    async fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + DRIVER_READY_WITHIN;
        loop {
            if let Some(status) = self.chromedriver.try_wait().expect("try_wait") {
                panic!("chromedriver exited ({status}):\n{}", self.log_tail());
            }
            let ready = call(self.driver, Method::GET, "/status", None, COMMAND_WITHIN).await;
            if ready.is_ok_and(|status| status["ready"] == true) {
                return;
            }
            if Instant::now() > deadline {
                panic!("chromedriver not ready within {DRIVER_READY_WITHIN:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The end of chromedriver's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log.read();
        let start = log.len().saturating_sub(4000);
        let start = (start..log.len())
            .find(|i| log.is_char_boundary(*i))
            .unwrap_or(log.len());
        format!("--- chromedriver log (end) ---\n{}", &log[start..])
    }

    async fn command(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> WebDriverResult<Value> {
        let path = format!("/session/{}{path}", self.session);
        call(self.driver, method, &path, body, COMMAND_WITHIN).await
    }

    /// Loads `url` and waits for its `load` event.
    pub async fn goto(&self, url: &str) -> WebDriverResult<()> {
        self.command(Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    /// The first element matching the CSS `selector`, if any.
    pub async fn find(&self, selector: &str) -> WebDriverResult<Option<Element>> {
        let found = self
            .command(
                Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": selector })),
            )
            .await;
        match found {
            Ok(value) => Ok(Some(element(&value)?)),
            Err(e) if e.code == "no such element" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every element matching the CSS `selector`.
    pub async fn find_all(&self, selector: &str) -> WebDriverResult<Vec<Element>> {
        let found = self
            .command(
                Method::POST,
                "/elements",
                Some(json!({ "using": "css selector", "value": selector })),
            )
            .await?;
        found
            .as_array()
            .map(|list| list.iter().map(element).collect())
            .unwrap_or_else(|| Err(WebDriverError::transport(format!("not a list: {found}"))))
    }

    /// An attribute of `element` (`data-*` included), if it has it.
    pub async fn attribute(
        &self,
        element: &Element,
        name: &str,
    ) -> WebDriverResult<Option<String>> {
        let value = self
            .command(
                Method::GET,
                &format!("/element/{}/attribute/{name}", element.0),
                None,
            )
            .await?;
        Ok(value.as_str().map(str::to_owned))
    }

    /// The text of `element` as rendered: hidden text is not included.
    pub async fn text(&self, element: &Element) -> WebDriverResult<String> {
        let value = self
            .command(Method::GET, &format!("/element/{}/text", element.0), None)
            .await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// Clicks `element` as a user would (it must be visible and enabled).
    pub async fn click(&self, element: &Element) -> WebDriverResult<()> {
        self.command(
            Method::POST,
            &format!("/element/{}/click", element.0),
            Some(json!({})),
        )
        .await
        .map(drop)
    }

    /// Empties an input, then types `keys` into it as a user would
    /// (`\u{E007}` is Enter).
    pub async fn type_into(&self, element: &Element, keys: &str) -> WebDriverResult<()> {
        self.command(
            Method::POST,
            &format!("/element/{}/clear", element.0),
            Some(json!({})),
        )
        .await?;
        self.command(
            Method::POST,
            &format!("/element/{}/value", element.0),
            Some(json!({ "text": keys })),
        )
        .await
        .map(drop)
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn execute(&self, script: &str, args: Value) -> WebDriverResult<Value> {
        self.command(
            Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Resizes the browser window.
    pub async fn set_window_size(&self, width: u32, height: u32) -> WebDriverResult<()> {
        self.command(
            Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await
        .map(drop)
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> WebDriverResult<Vec<u8>> {
        let value = self.command(Method::GET, "/screenshot", None).await?;
        let encoded = value
            .as_str()
            .ok_or_else(|| WebDriverError::transport("screenshot is not a string"))?;
        base64_decode(encoded).ok_or_else(|| WebDriverError::transport("screenshot is not base64"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Drop cannot await: end the session on a runtime of its own.
            let (driver, path) = (self.driver, format!("/session/{}", self.session));
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                let limit = Duration::from_secs(10);
                let _ = runtime.block_on(call(driver, Method::DELETE, &path, None, limit));
            })
            .join();
        }
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
        // Whatever of Chromium is left in chromedriver's process group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.chromedriver.id())])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.profile);
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}

fn element(value: &Value) -> WebDriverResult<Element> {
    value[ELEMENT_KEY]
        .as_str()
        .map(|id| Element(id.to_owned()))
        .ok_or_else(|| WebDriverError::transport(format!("not an element: {value}")))
}

/// One WebDriver command on a new connection: JSON in, `value` out.
async fn call(
    driver: SocketAddr,
    method: Method,
    path: &str,
    body: Option<Value>,
    limit: Duration,
) -> WebDriverResult<Value> {
    let exchange = async {
        let stream = TcpStream::connect(driver)
            .await
            .map_err(WebDriverError::transport)?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(WebDriverError::transport)?;
        tokio::spawn(connection);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", driver.to_string())
            .header("content-type", "application/json; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .map_err(WebDriverError::transport)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(WebDriverError::transport)?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(WebDriverError::transport)?
            .to_bytes();
        let reply: Value = serde_json::from_slice(&bytes).map_err(|e| {
            WebDriverError::transport(format!("{e}: {}", String::from_utf8_lossy(&bytes)))
        })?;
        let value = reply.get("value").cloned().unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            Err(WebDriverError {
                code: value["error"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_owned(),
                message: value["message"].as_str().unwrap_or_default().to_owned(),
            })
        }
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(result) => result,
        Err(_) => Err(WebDriverError::transport(format!(
            "no answer to {path} within {limit:?}"
        ))),
    }
}

/// Standard base64 (with padding) to bytes; `None` if malformed.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let text = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut bits = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            bits |= sextet(*c)? << (18 - 6 * i);
        }
        let bytes = bits.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64_decodes_every_padding() {
        assert_eq!(base64_decode("aGFsYg==").unwrap(), b"halb");
        assert_eq!(base64_decode("aGFsYjE=").unwrap(), b"halb1");
        assert_eq!(base64_decode("aGFsYjEy").unwrap(), b"halb12");
        assert!(base64_decode("a!==").is_none());
    }
}
