//! End to end in a real browser: the harness that drives Debian's headless Chromium through
//! its WebDriver server (`chromedriver`), and the tests of what a person sees — the HTML
//! report files ([`reports`]) and the dashboard ([`dashboard`]).
//!
//! The harness is synchronous on purpose: a test is a sequence of "start gavat, open a page,
//! read it, click", and the `gavat` processes and raw HTTP probes beside the browser are
//! plain `std`. [`Browser`] owns a current-thread tokio runtime and blocks on each WebDriver
//! command, every one bounded by [`COMMAND_TIMEOUT`] so a stuck browser fails the test
//! instead of hanging it.
//!
//! One browser at a time: [`Browser::start`] takes a process-wide lock, held until the
//! browser is dropped, so the tests of this module run serially with respect to each other
//! (the rest of the suite still runs beside them). A missing `chromium` or `chromedriver`
//! fails the test with the command that installs them; these tests never skip.
//!
//! The browser reaches nothing but 127.0.0.1: every host name fails to resolve
//! (`--host-resolver-rules`) and Chromium's background traffic is off, so a page that
//! fetched anything from the network (a CDN) would show it broken.

mod dashboard;
mod reports;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fantoccini::elements::Element as WdElement;
use fantoccini::{Client, ClientBuilder, Locator};

/// What a browser test returns.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Any failure of the harness or a check: the message says what was being done.
pub type Error = Box<dyn std::error::Error>;

/// Chromium unless `GAVAT_CHROMIUM` names another binary.
const CHROMIUM: &str = "/usr/bin/chromium";

/// The longest one WebDriver command (open a page, find, click, screenshot) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long chromedriver may take to listen after it starts.
const DRIVER_START: Duration = Duration::from_secs(15);

/// How often [`wait_until`] probes.
const POLL: Duration = Duration::from_millis(100);

/// Held by the one live [`Browser`]: the browser tests run one at a time.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// A headless Chromium session through a chromedriver child, both ended on drop.
pub struct Browser {
    /// Runs the WebDriver client's connection task; every command blocks on it.
    runtime: tokio::runtime::Runtime,
    /// The session; taken on drop to close it (which ends Chromium).
    client: Option<Client>,
    /// The chromedriver process, killed on drop after the session is closed.
    driver: Child,
    /// Chromium's profile (`--user-data-dir`) and chromedriver's log.
    scratch: tempfile::TempDir,
    /// The lock that keeps browser tests serial; released last, after the processes end.
    _turn: MutexGuard<'static, ()>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("driver", &self.driver.id()).finish_non_exhaustive()
    }
}

/// What to run when the browser is missing.
const INSTALL: &str = "the browser tests need Debian's headless Chromium and its WebDriver server: \
                       install them with `apt-get install chromium chromium-driver` (.ci/run does)";

impl Browser {
    /// Starts `chromedriver` on a free loopback port and opens a headless Chromium session
    /// (1280×900, a fresh profile). Fails, naming the packages to install, when either
    /// binary is missing.
    #[allow(clippy::disallowed_methods, reason = "a deadline for the chromedriver child, in wall time")]
    pub fn start() -> Result<Browser, Error> {
        let turn = ONE_BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let chromium = std::env::var_os("GAVAT_CHROMIUM").map_or_else(|| PathBuf::from(CHROMIUM), PathBuf::from);
        if !chromium.is_file() {
            return Err(format!("no Chromium at {}: {INSTALL}", chromium.display()).into());
        }
        let scratch = tempfile::tempdir()?;
        let port = free_port()?;
        let log = scratch.path().join("chromedriver.log");
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| -> Error {
                if e.kind() == std::io::ErrorKind::NotFound {
                    format!("no `chromedriver` on the PATH: {INSTALL}").into()
                } else {
                    format!("chromedriver does not start: {e}").into()
                }
            })?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        // From here on, dropping `browser` ends chromedriver whatever fails next.
        let mut browser = Browser { runtime, client: None, driver, scratch, _turn: turn };
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if let Some(status) = browser.driver.try_wait()? {
                return Err(format!("chromedriver exited ({status}) before listening: {}", browser.driver_log()).into());
            }
            if started.elapsed() > DRIVER_START {
                return Err(format!("chromedriver did not listen on {address} in {DRIVER_START:?}").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = browser.scratch.path().join("profile");
        let capabilities = serde_json::json!({
            "browserName": "chrome",
            "timeouts": { "pageLoad": 20_000, "script": 10_000, "implicit": 0 },
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                ],
            },
        });
        let serde_json::Value::Object(capabilities) = capabilities else { unreachable!("a JSON object literal") };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let url = format!("http://{address}");
        let client = browser
            .block("open a Chromium session", ClientBuilder::new(connector).capabilities(capabilities).connect(&url))
            .map_err(|e| format!("{e}; chromedriver's log: {}", browser.driver_log()))?;
        browser.client = Some(client);
        Ok(browser)
    }

    /// The last lines of chromedriver's log, for an error message.
    fn driver_log(&self) -> String {
        let text = std::fs::read_to_string(self.scratch.path().join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Runs one WebDriver command to completion within [`COMMAND_TIMEOUT`]; `what` names it
    /// in the error.
    fn block<T, E: std::fmt::Display>(
        &self,
        what: &str,
        command: impl Future<Output = Result<T, E>>,
    ) -> Result<T, Error> {
        match self.runtime.block_on(async { tokio::time::timeout(COMMAND_TIMEOUT, command).await }) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(format!("{what}: {e}").into()),
            Err(_) => Err(format!("{what}: no answer from the browser in {COMMAND_TIMEOUT:?}").into()),
        }
    }

    /// The session (present from `start` until drop).
    fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open until drop")
    }

    /// Opens `url` and waits for the page to load.
    pub fn goto(&self, url: &str) -> Result<(), Error> {
        self.block(&format!("open {url}"), self.client().goto(url))
    }

    /// The address of the page shown.
    pub fn current_url(&self) -> Result<String, Error> {
        Ok(self.block("read the current URL", self.client().current_url())?.to_string())
    }

    /// The first element matching `css`; an error naming the selector when none does.
    pub fn find(&self, css: &str) -> Result<Element<'_>, Error> {
        let found = self.block(&format!("find `{css}`"), self.client().find(Locator::Css(css)))?;
        Ok(Element { browser: self, css: css.to_owned(), inner: found })
    }

    /// Every element matching `css`, in document order (none is not an error).
    pub fn find_all(&self, css: &str) -> Result<Vec<Element<'_>>, Error> {
        let found = self.block(&format!("find all `{css}`"), self.client().find_all(Locator::Css(css)))?;
        Ok(found.into_iter().map(|inner| Element { browser: self, css: css.to_owned(), inner }).collect())
    }

    /// How many elements match `css`.
    pub fn count(&self, css: &str) -> Result<usize, Error> {
        Ok(self.find_all(css)?.len())
    }

    /// The rendered text of the first element matching `css`, trimmed.
    pub fn text(&self, css: &str) -> Result<String, Error> {
        self.find(css)?.text()
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page and returns
    /// what it returns.
    pub fn execute(&self, script: &str, args: Vec<serde_json::Value>) -> Result<serde_json::Value, Error> {
        self.block("run a script in the page", self.client().execute(script, args))
    }

    /// The HTTP status of the document shown (the Navigation Timing entry's
    /// `responseStatus`; 0 for a `file://` page).
    pub fn response_status(&self) -> Result<u64, Error> {
        let status = self.execute(
            "const nav = performance.getEntriesByType('navigation')[0]; return nav ? nav.responseStatus : null;",
            vec![],
        )?;
        status.as_u64().ok_or_else(|| format!("no navigation entry with a status: {status}").into())
    }

    /// Saves a PNG of the viewport as `target/browser-screenshots/NAME.png` and returns its
    /// path.
    pub fn screenshot(&self, name: &str) -> Result<PathBuf, Error> {
        let png = self.block(&format!("take screenshot {name}"), self.client().screenshot())?;
        if !png.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Err(format!("screenshot {name}: the browser did not return a PNG").into());
        }
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Closing the session ends Chromium; a dead browser is ended below all the same.
            let _ =
                self.runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), client.close()).await });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One element of the page shown, found by `css`.
pub struct Element<'b> {
    browser: &'b Browser,
    /// The selector that found it, for error messages.
    css: String,
    inner: WdElement,
}

impl Element<'_> {
    /// Its rendered text, trimmed.
    pub fn text(&self) -> Result<String, Error> {
        Ok(self.browser.block(&format!("read the text of `{}`", self.css), self.inner.text())?.trim().to_owned())
    }

    /// The value of its attribute `name`, if it has one.
    pub fn attr(&self, name: &str) -> Result<Option<String>, Error> {
        self.browser.block(&format!("read `{}`'s {name}", self.css), self.inner.attr(name))
    }

    /// Clicks it (a link is followed, a submit button submits).
    pub fn click(&self) -> Result<(), Error> {
        self.browser.block(&format!("click `{}`", self.css), self.inner.click())
    }

    /// Types `text` into it.
    pub fn type_text(&self, text: &str) -> Result<(), Error> {
        self.browser.block(&format!("type into `{}`", self.css), self.inner.send_keys(text))
    }

    /// Its width and height on the page, in CSS pixels.
    pub fn size(&self) -> Result<(f64, f64), Error> {
        let (_, _, width, height) = self.browser.block(&format!("measure `{}`", self.css), self.inner.rectangle())?;
        Ok((width, height))
    }

    /// Every descendant matching `css`.
    pub fn find_all(&self, css: &str) -> Result<Vec<Element<'_>>, Error> {
        let what = format!("{} {css}", self.css);
        let found = self.browser.block(&format!("find all `{what}`"), self.inner.find_all(Locator::Css(css)))?;
        Ok(found.into_iter().map(|inner| Element { browser: self.browser, css: what.clone(), inner }).collect())
    }

    /// The first descendant matching `css`.
    pub fn find(&self, css: &str) -> Result<Element<'_>, Error> {
        let what = format!("{} {css}", self.css);
        let found = self.browser.block(&format!("find `{what}`"), self.inner.find(Locator::Css(css)))?;
        Ok(Element { browser: self.browser, css: what, inner: found })
    }
}

/// Polls `probe` every [`POLL`] until it gives a value or `timeout` passes; `what` says
/// what was awaited. An `Err` from the probe counts as "not yet" (the element may not be
/// there yet) and is quoted if time runs out.
#[allow(clippy::disallowed_methods, reason = "the browser and the servers run on the wall clock")]
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>, Error>,
) -> Result<T, Error> {
    let started = Instant::now();
    loop {
        let last = match probe() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => None,
            Err(e) => Some(e),
        };
        if started.elapsed() > timeout {
            let last = last.map(|e| format!(" (last error: {e})")).unwrap_or_default();
            return Err(format!("timed out after {timeout:?} waiting until {what}{last}").into());
        }
        std::thread::sleep(POLL);
    }
}

/// Checks every `svg.chart` on the page is drawn: it has a nonzero size and at least one
/// shape (`path`, `rect`, `circle`, `line`, `polyline`) inside. Returns how many charts
/// there are; fails when there are fewer than `at_least`.
pub fn charts_drawn(browser: &Browser, at_least: usize) -> Result<usize, Error> {
    let charts = browser.find_all("svg.chart")?;
    if charts.len() < at_least {
        return Err(format!("{} svg.chart on the page, expected at least {at_least}", charts.len()).into());
    }
    for (i, chart) in charts.iter().enumerate() {
        let (width, height) = chart.size()?;
        if width < 1.0 || height < 1.0 {
            return Err(format!("chart {i} is {width}×{height} px: not drawn").into());
        }
        let shapes = chart.find_all("path, rect, circle, line, polyline")?;
        if shapes.is_empty() {
            return Err(format!("chart {i} ({width}×{height} px) has no path, rect, circle or line").into());
        }
    }
    Ok(charts.len())
}

/// Where the screenshots go: `browser-screenshots/` in the target directory
/// (`CARGO_TARGET_DIR` when set, else the one this test binary was built in).
pub fn screenshot_dir() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => Path::new(env!("CARGO_MANIFEST_DIR")).join(dir),
        None => Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"), Path::to_path_buf),
    };
    target.join("browser-screenshots")
}

/// A loopback port nobody listens on at this instant.
fn free_port() -> Result<u16, Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process killed (and reaped) when dropped: a `gavat` server a test started.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection to `addr` with exactly `headers` (plus
/// `Content-Length` and `Connection: close`); returns the status and the whole reply.
pub fn raw_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String), Error> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes())?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("{method} {path}: not an HTTP reply: {reply:.200}"))?;
    Ok((status, reply))
}

/// `value` percent-encoded for an `application/x-www-form-urlencoded` body.
pub fn form_encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Opens the browser and checks the harness itself: a page served from a file shows its
/// text, a polled wait sees a script's later change, and a screenshot is a PNG on disk.
#[test]
fn the_harness_drives_chromium() -> TestResult {
    let dir = super::common::temp_dir();
    let page = dir.path().join("page.html");
    std::fs::write(
        &page,
        "<!doctype html><title>t</title><p id=a>hello</p><p id=b>0</p>\
         <script>setTimeout(() => { document.getElementById('b').textContent = '1'; }, 300);</script>",
    )?;
    let browser = Browser::start()?;
    browser.goto(&format!("file://{}", page.display()))?;
    assert_eq!(browser.text("#a")?, "hello");
    wait_until("#b reads 1", Duration::from_secs(5), || Ok((browser.text("#b")? == "1").then_some(())))?;
    assert!(browser.find("#missing").is_err(), "a missing element is an error");
    let shot = browser.screenshot("harness")?;
    assert!(std::fs::metadata(&shot)?.len() > 100, "{}", shot.display());
    Ok(())
}
