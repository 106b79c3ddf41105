//! A real headless Chromium driven through WebDriver (chromedriver), for page tests.
//!
//! [`Browser::start`] runs Debian's `chromedriver` on a free loopback port (in its own process
//! group, with its log in a temporary directory) and opens a session on Debian's `chromium`
//! through [`fantoccini`], over plain HTTP. The binaries are `$NEO_CHROMEDRIVER` and
//! `$NEO_CHROMIUM`, else `/usr/bin/chromedriver` and `/usr/bin/chromium` (`ops/install-deps`
//! installs both packages).
//!
//! The helpers ([`Browser::click`], [`Browser::fill`], [`Browser::text`], …) take a CSS
//! selector and poll until the page lets them act, up to [`Browser::timeout`] (10 s unless
//! [`Browser::set_timeout`] changed it), so a test does not race the page's loading; their
//! errors name the selector. Anything they do not wrap is on [`Browser::client`].
//!
//! [`Browser::stop`] closes the session and kills chromedriver's process group; dropping the
//! handle (e.g. when a test panics) kills the group too, so no chromium outlives the test.
//! (chromium's two `chrome_crashpad_handler`s run in sessions of their own, outside the group;
//! they exit by themselves as soon as chromium is gone.)

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::{CmdError, ErrorStatus};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

const CHROMEDRIVER: &str = "chromedriver";
const CHROMEDRIVER_ENV: &str = "NEO_CHROMEDRIVER";
const CHROMEDRIVER_DEFAULT: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "chromium";
const CHROMIUM_ENV: &str = "NEO_CHROMIUM";
const CHROMIUM_DEFAULT: &str = "/usr/bin/chromium";

/// How long chromedriver gets to answer `GET /status`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long opening the session (starting chromium) may take.
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long closing the session may take in [`Browser::stop`] before the group is killed.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The session's page-load timeout ([`Browser::goto`], and clicks that navigate).
const PAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The helpers' default bounded wait.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the helpers look again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Ports tried when chromedriver finds the probed one taken.
const START_ATTEMPTS: usize = 3;

/// A headless Chromium session through a chromedriver child process; the process group is
/// killed when this is dropped.
#[derive(Debug)]
pub struct Browser {
    client: Client,
    driver: Option<Child>,
    /// chromedriver's pid, which is also its process group's id.
    pid: u32,
    port: u16,
    timeout: Duration,
    // Declared last: removed after `Drop::drop` has killed the processes using it.
    dir: TempDir,
}

/// Why the browser could not be started or a page action failed.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// chromedriver or chromium is not installed where it was looked for.
    #[error("{binary} not found at {path} (run ops/install-deps, or set {env})")]
    BinaryNotFound {
        /// `chromedriver` or `chromium`.
        binary: &'static str,
        /// The environment variable that names the binary directly.
        env: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// chromedriver exited before it answered `GET /status`.
    #[error("chromedriver exited before it was ready ({status}); log {log}:\n{log_tail}")]
    DriverExited {
        /// Its exit status.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        log_tail: String,
    },
    /// chromedriver did not answer `GET /status` in time (it has been killed).
    #[error("chromedriver not ready after {waited:?}; log {log}:\n{log_tail}")]
    DriverNotReady {
        /// How long it was waited for.
        waited: Duration,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        log_tail: String,
    },
    /// chromedriver could not open a session (chromium did not start).
    #[error(
        "opening a WebDriver session on {chromium}: {reason}; chromedriver log {log}:\n{log_tail}"
    )]
    Session {
        /// The chromium binary.
        chromium: PathBuf,
        /// What went wrong.
        reason: String,
        /// chromedriver's log file.
        log: PathBuf,
        /// The end of its log.
        log_tail: String,
    },
    /// A page action did not succeed within the bounded wait.
    #[error("{action} `{selector}`: not done after {waited:?} ({last})")]
    Timeout {
        /// What was tried, e.g. `click`.
        action: &'static str,
        /// The CSS selector (or URL) it was tried on.
        selector: String,
        /// How long it was tried.
        waited: Duration,
        /// Why the last try failed.
        last: String,
    },
    /// A WebDriver command failed in a way that waiting does not fix.
    #[error("{action} `{selector}`: {source}")]
    WebDriver {
        /// What was tried.
        action: &'static str,
        /// The CSS selector (or URL) it was tried on; empty if none.
        selector: String,
        /// The WebDriver error (boxed: it is large).
        #[source]
        source: Box<CmdError>,
    },
}

impl BrowserError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BrowserError {
        let what = what.into();
        move |source| BrowserError::Io { what, source }
    }

    fn webdriver(action: &'static str, selector: &str) -> impl FnOnce(CmdError) -> BrowserError {
        let selector = selector.to_owned();
        move |source| BrowserError::WebDriver {
            action,
            selector,
            source: Box::new(source),
        }
    }
}

/// What one look of a polling helper found: done, or not yet (and why).
enum Look<T> {
    Done(T),
    NotYet(String),
}

impl Browser {
    /// Starts chromedriver on a free 127.0.0.1 port, waits until it answers `GET /status`
    /// (at most 20 s) and opens a headless Chromium session (`--headless=new`, `--no-sandbox`,
    /// a 1280×900 window, certificate errors ignored, a fresh profile in a temporary directory;
    /// `XDG_CONFIG_HOME` and `XDG_CACHE_HOME` point there too, so nothing is written to `$HOME`).
    ///
    /// # Errors
    /// [`BrowserError::BinaryNotFound`] without chromedriver or chromium (run
    /// `ops/install-deps`); [`BrowserError::DriverExited`] / [`BrowserError::DriverNotReady`] /
    /// [`BrowserError::Session`] with the end of chromedriver's log.
    pub async fn start() -> Result<Browser, BrowserError> {
        let chromedriver = find_binary(CHROMEDRIVER, CHROMEDRIVER_ENV, CHROMEDRIVER_DEFAULT)?;
        let chromium = find_binary(CHROMIUM, CHROMIUM_ENV, CHROMIUM_DEFAULT)?;
        let dir = tempfile::Builder::new()
            .prefix("neo-browser-")
            .tempdir()
            .map_err(BrowserError::io("creating the browser temp dir"))?;
        let log_path = dir.path().join("chromedriver.log");

        let mut attempt = 1;
        let (mut driver, pid, port) = loop {
            let port = free_port()?;
            match spawn_driver(&chromedriver, port, dir.path(), &log_path).await {
                Ok((driver, pid)) => break (driver, pid, port),
                Err(e @ BrowserError::DriverExited { .. })
                    if attempt < START_ATTEMPTS && e.to_string().contains("in use") =>
                {
                    tracing::warn!(port, attempt, "chromedriver's port taken; retrying");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        tracing::info!(port, pid, "chromedriver ready");

        let client = match open_session(&chromium, port, dir.path()).await {
            Ok(client) => client,
            Err(reason) => {
                kill_group(pid);
                reap(&mut driver, Duration::from_secs(2));
                return Err(BrowserError::Session {
                    chromium,
                    reason,
                    log_tail: log_tail(&log_path),
                    log: log_path,
                });
            }
        };
        tracing::info!(port, chromium = %chromium.display(), "chromium session open");
        Ok(Browser {
            client,
            driver: Some(driver),
            pid,
            port,
            timeout: DEFAULT_TIMEOUT,
            dir,
        })
    }

    /// The WebDriver client, for anything the helpers do not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// chromedriver's pid, which is also the id of the process group chromium runs in.
    pub fn driver_pid(&self) -> u32 {
        self.pid
    }

    /// chromedriver's port on 127.0.0.1.
    pub fn driver_port(&self) -> u16 {
        self.port
    }

    /// chromedriver's log file (chromium's own output goes there too).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("chromedriver.log")
    }

    /// How long the helpers keep trying before they give up.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sets how long the helpers keep trying (not [`Browser::goto`]'s page-load timeout).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Navigates to `url` and waits for the page to load (at most 30 s, the session's page-load
    /// timeout: a cold chromium on a busy machine can take a while for its first page).
    ///
    /// # Errors
    /// [`BrowserError::WebDriver`] naming the URL, e.g. when the load timed out.
    pub async fn goto(&self, url: &str) -> Result<(), BrowserError> {
        tracing::debug!(url, "goto");
        self.client
            .goto(url)
            .await
            .map_err(BrowserError::webdriver("goto", url))
    }

    /// The URL of the current page.
    ///
    /// # Errors
    /// [`BrowserError::WebDriver`] if the session is gone.
    pub async fn current_url(&self) -> Result<String, BrowserError> {
        self.client
            .current_url()
            .await
            .map(String::from)
            .map_err(BrowserError::webdriver("current_url", ""))
    }

    /// Waits until an element matches `css` and returns the first one.
    ///
    /// # Errors
    /// [`BrowserError::Timeout`] naming the selector if none appeared in time.
    pub async fn wait_for(&self, css: &str) -> Result<Element, BrowserError> {
        self.poll("wait_for", css, async || {
            Ok(Look::Done(self.client.find(Locator::Css(css)).await?))
        })
        .await
    }

    /// Clicks the first element matching `css`, once it is there and clickable.
    ///
    /// # Errors
    /// [`BrowserError::Timeout`] naming the selector if it could not be clicked in time.
    pub async fn click(&self, css: &str) -> Result<(), BrowserError> {
        self.poll("click", css, async || {
            self.client.find(Locator::Css(css)).await?.click().await?;
            Ok(Look::Done(()))
        })
        .await
    }

    /// Clears the first field matching `css` and types `text` into it.
    ///
    /// # Errors
    /// [`BrowserError::Timeout`] naming the selector if it could not be filled in time.
    pub async fn fill(&self, css: &str, text: &str) -> Result<(), BrowserError> {
        self.poll("fill", css, async || {
            let field = self.client.find(Locator::Css(css)).await?;
            field.clear().await?;
            field.send_keys(text).await?;
            Ok(Look::Done(()))
        })
        .await
    }

    /// Chooses an `<option>` of the first `<select>` matching `css`: the one whose `value` is
    /// `option`, else the one whose visible text is `option`.
    ///
    /// # Errors
    /// [`BrowserError::Timeout`] naming the selector (and the options there were) if no such
    /// option could be chosen in time.
    pub async fn select(&self, css: &str, option: &str) -> Result<(), BrowserError> {
        self.poll("select", css, async || {
            let select = self.client.find(Locator::Css(css)).await?;
            let options = select.find_all(Locator::Css("option")).await?;
            let mut by_text = None;
            let mut seen = Vec::new();
            for candidate in options {
                let value = candidate.attr("value").await?;
                let text = candidate.text().await?;
                if value.as_deref() == Some(option) {
                    candidate.click().await?;
                    return Ok(Look::Done(()));
                }
                if by_text.is_none() && text.trim() == option {
                    by_text = Some(candidate);
                }
                seen.push(format!("{}={text:?}", value.unwrap_or_default()));
            }
            match by_text {
                Some(candidate) => {
                    candidate.click().await?;
                    Ok(Look::Done(()))
                }
                None => Ok(Look::NotYet(format!(
                    "no option {option:?} among [{}]",
                    seen.join(", ")
                ))),
            }
        })
        .await
    }

    /// The visible text of the first element matching `css`, once there is one.
    ///
    /// # Errors
    /// [`BrowserError::Timeout`] naming the selector if none appeared in time.
    pub async fn text(&self, css: &str) -> Result<String, BrowserError> {
        self.poll("text", css, async || {
            Ok(Look::Done(
                self.client.find(Locator::Css(css)).await?.text().await?,
            ))
        })
        .await
    }

    /// The visible texts of all elements matching `css`, in document order, once at least one
    /// matches (to check that none does, use [`Browser::client`]'s `find_all`).
    ///
    /// # Errors
    /// [`BrowserError::Timeout`] naming the selector if none appeared in time.
    pub async fn texts(&self, css: &str) -> Result<Vec<String>, BrowserError> {
        self.poll("texts", css, async || {
            let elements = self.client.find_all(Locator::Css(css)).await?;
            if elements.is_empty() {
                return Ok(Look::NotYet("no element matches".to_owned()));
            }
            let mut texts = Vec::with_capacity(elements.len());
            for element in elements {
                texts.push(element.text().await?);
            }
            Ok(Look::Done(texts))
        })
        .await
    }

    /// Waits until the text of the first element matching `css` contains `needle`, and returns
    /// that text.
    ///
    /// # Errors
    /// [`BrowserError::Timeout`] naming the selector and the last text seen.
    pub async fn wait_until_text(&self, css: &str, needle: &str) -> Result<String, BrowserError> {
        self.poll("wait_until_text", css, async || {
            let text = self.client.find(Locator::Css(css)).await?.text().await?;
            if text.contains(needle) {
                Ok(Look::Done(text))
            } else {
                Ok(Look::NotYet(format!(
                    "text {text:?} does not contain {needle:?}"
                )))
            }
        })
        .await
    }

    /// How many elements match `css` now (no waiting: 0 is an answer).
    ///
    /// # Errors
    /// [`BrowserError::WebDriver`] if chromium could not be asked.
    pub async fn count(&self, css: &str) -> Result<usize, BrowserError> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|found| found.len())
            .map_err(BrowserError::webdriver("count", css))
    }

    /// The text of the first element matching `css` now, if any (no waiting).
    ///
    /// # Errors
    /// [`BrowserError::WebDriver`] if chromium could not be asked.
    pub async fn text_now(&self, css: &str) -> Result<Option<String>, BrowserError> {
        let found = self
            .client
            .find_all(Locator::Css(css))
            .await
            .map_err(BrowserError::webdriver("text_now", css))?;
        match found.first() {
            Some(element) => element
                .text()
                .await
                .map(Some)
                .map_err(BrowserError::webdriver("text_now", css)),
            None => Ok(None),
        }
    }

    /// The page's HTML as the browser holds it now.
    ///
    /// # Errors
    /// [`BrowserError::WebDriver`] if chromium could not be asked.
    pub async fn source(&self) -> Result<String, BrowserError> {
        self.client
            .source()
            .await
            .map_err(BrowserError::webdriver("source", ""))
    }

    /// Resizes the window to `width` × `height` CSS pixels.
    ///
    /// # Errors
    /// [`BrowserError::WebDriver`] if chromium refused.
    pub async fn resize(&self, width: u32, height: u32) -> Result<(), BrowserError> {
        self.client
            .set_window_size(width, height)
            .await
            .map_err(BrowserError::webdriver("resize", ""))
    }

    /// Saves a PNG screenshot of the viewport to `path`, creating its parent directories.
    ///
    /// # Errors
    /// [`BrowserError::WebDriver`] if chromium could not take it; [`BrowserError::Io`] if it
    /// could not be written.
    pub async fn screenshot(&self, path: impl AsRef<Path>) -> Result<(), BrowserError> {
        let path = path.as_ref();
        let png = self
            .client
            .screenshot()
            .await
            .map_err(BrowserError::webdriver("screenshot", ""))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(BrowserError::io(format!("creating {}", parent.display())))?;
        }
        tokio::fs::write(path, &png)
            .await
            .map_err(BrowserError::io(format!("writing {}", path.display())))?;
        tracing::debug!(path = %path.display(), bytes = png.len(), "screenshot");
        Ok(())
    }

    /// Closes the session (chromedriver then quits chromium), kills chromedriver's process
    /// group and waits for chromedriver to exit.
    pub async fn stop(mut self) {
        match tokio::time::timeout(CLOSE_TIMEOUT, self.client.clone().close()).await {
            Ok(Ok(())) => tracing::debug!("session closed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "closing the session"),
            Err(_) => tracing::warn!(waited = ?CLOSE_TIMEOUT, "closing the session timed out"),
        }
        if let Some(mut driver) = self.driver.take() {
            kill_group(self.pid);
            match tokio::time::timeout(Duration::from_secs(5), driver.wait()).await {
                Ok(Ok(status)) => tracing::info!(pid = self.pid, %status, "chromedriver stopped"),
                Ok(Err(e)) => tracing::warn!(error = %e, "waiting for chromedriver"),
                Err(_) => tracing::warn!(pid = self.pid, "chromedriver did not exit after kill"),
            }
        }
    }

    /// Tries `look` every 50 ms until it is done, a look fails in a way waiting does not fix,
    /// or [`Browser::timeout`] has passed.
    async fn poll<T>(
        &self,
        action: &'static str,
        css: &str,
        mut look: impl AsyncFnMut() -> Result<Look<T>, CmdError>,
    ) -> Result<T, BrowserError> {
        let started = Instant::now();
        loop {
            let last = match look().await {
                Ok(Look::Done(value)) => return Ok(value),
                Ok(Look::NotYet(why)) => why,
                Err(e) if is_transient(&e) => e.to_string(),
                Err(e) => return Err(BrowserError::webdriver(action, css)(e)),
            };
            if started.elapsed() >= self.timeout {
                return Err(BrowserError::Timeout {
                    action,
                    selector: css.to_owned(),
                    waited: self.timeout,
                    last,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(mut driver) = self.driver.take() {
            kill_group(self.pid);
            reap(&mut driver, Duration::from_secs(2));
            tracing::info!(pid = self.pid, "chromedriver killed");
        }
    }
}

/// What chromedriver says of a command cut short by the page navigating (a form submitted, a
/// redirect followed): the next look sees the new page.
const NAVIGATING: &str = "aborted by navigation";

/// Whether a failed look may succeed later: the element is not there yet, was replaced, or
/// cannot take the action yet, or the page was navigating.
fn is_transient(e: &CmdError) -> bool {
    match e {
        CmdError::Standard(w) => {
            matches!(
                w.error,
                ErrorStatus::NoSuchElement
                    | ErrorStatus::StaleElementReference
                    | ErrorStatus::ElementNotInteractable
                    | ErrorStatus::ElementClickIntercepted
                    | ErrorStatus::InvalidElementState
            ) || w.message.contains(NAVIGATING)
        }
        CmdError::NotW3C(answer) => answer.as_str().is_some_and(|a| a.contains(NAVIGATING)),
        _ => false,
    }
}

/// `$env` if set, else `default`; an error unless it is a file.
fn find_binary(
    binary: &'static str,
    env: &'static str,
    default: &str,
) -> Result<PathBuf, BrowserError> {
    let path = std::env::var_os(env)
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(default), PathBuf::from);
    if path.is_file() {
        Ok(path)
    } else {
        Err(BrowserError::BinaryNotFound { binary, env, path })
    }
}

/// A free port on 127.0.0.1 (free when probed).
fn free_port() -> Result<u16, BrowserError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(BrowserError::io("binding 127.0.0.1:0 to find a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(BrowserError::io("reading the free port"))?
        .port())
}

/// Starts chromedriver on `port` in its own process group, with its output appended to
/// `log_path`, and waits until `GET /status` says it is ready; returns it and its pid.
async fn spawn_driver(
    chromedriver: &Path,
    port: u16,
    dir: &Path,
    log_path: &Path,
) -> Result<(Child, u32), BrowserError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(BrowserError::io(format!("opening {}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(BrowserError::io("cloning the log handle"))?;
    let mut driver = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .current_dir(dir)
        // chromium inherits these: its crash-report database and caches stay in the temp dir.
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .map_err(BrowserError::io(format!(
            "spawning {}",
            chromedriver.display()
        )))?;
    let Some(pid) = driver.id() else {
        return Err(BrowserError::Io {
            what: "reading chromedriver's pid".to_owned(),
            source: std::io::Error::other("it exited at once"),
        });
    };
    tracing::debug!(port, pid, "chromedriver spawned");

    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = driver.try_wait() {
            kill_group(pid);
            return Err(BrowserError::DriverExited {
                status,
                log_tail: log_tail(log_path),
                log: log_path.to_owned(),
            });
        }
        if status_ready(port).await {
            return Ok((driver, pid));
        }
        if started.elapsed() > READY_TIMEOUT {
            kill_group(pid);
            reap(&mut driver, Duration::from_secs(2));
            return Err(BrowserError::DriverNotReady {
                waited: READY_TIMEOUT,
                log_tail: log_tail(log_path),
                log: log_path.to_owned(),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Whether chromedriver on `port` answers `GET /status` with 200 and `"ready": true`.
async fn status_ready(port: u16) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let request =
            format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        // chromedriver says `Connection: close` but keeps the connection open: read up to the
        // end of the body its Content-Length announces.
        let mut response = Vec::new();
        let mut buf = [0u8; 1024];
        while !response_complete(&response) {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
        }
        let response = String::from_utf8_lossy(&response);
        Ok::<bool, std::io::Error>(
            response.starts_with("HTTP/1.1 200")
                && response
                    .replace(char::is_whitespace, "")
                    .contains("\"ready\":true"),
        )
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), probe).await,
        Ok(Ok(true))
    )
}

/// Whether `response` holds a whole HTTP response: its head and as many body bytes as its
/// `Content-Length` says.
fn response_complete(response: &[u8]) -> bool {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&response[..end]);
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            value.trim().parse::<usize>().ok()
        } else {
            None
        }
    });
    // Without a length the body ends when the connection does.
    length.is_some_and(|length| response.len() >= end + 4 + length)
}

/// Opens a headless chromium session on chromedriver at `port`, its profile under `dir`.
async fn open_session(chromium: &Path, port: u16, dir: &Path) -> Result<Client, String> {
    let profile = dir.join("profile");
    let capabilities = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium.to_string_lossy(),
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,900",
                "--ignore-certificate-errors",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
        "timeouts": { "pageLoad": PAGE_LOAD_TIMEOUT.as_millis() as u64 },
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        return Err("the capabilities are not a JSON object".to_owned());
    };
    let mut builder = ClientBuilder::new(HttpConnector::new());
    builder.capabilities(capabilities);
    let url = format!("http://127.0.0.1:{port}");
    match tokio::time::timeout(SESSION_TIMEOUT, builder.connect(&url)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no session after {SESSION_TIMEOUT:?}")),
    }
}

/// Kills the process group `pgid` (chromedriver and the chromium it started) with SIGKILL.
fn kill_group(pgid: u32) {
    let result = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match result {
        Ok(status) if status.success() => tracing::debug!(pgid, "process group killed"),
        // Exits non-zero when the group is already gone.
        Ok(status) => tracing::debug!(pgid, %status, "kill of the process group"),
        Err(e) => tracing::warn!(pgid, error = %e, "running kill for the process group"),
    }
}

/// Waits (blocking, at most `limit`) for the killed `driver` to be reaped, so its pid is gone.
fn reap(driver: &mut Child, limit: Duration) {
    let started = Instant::now();
    loop {
        match driver.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                tracing::warn!("chromedriver not reaped after kill");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "waiting for chromedriver");
                return;
            }
        }
    }
}

/// The last 30 lines of the log at `path` (empty if unreadable).
fn log_tail(path: &Path) -> String {
    super::log_tail(path, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_look_cut_short_by_a_navigation_is_tried_again() {
        let said = |text: &str| CmdError::NotW3C(serde_json::Value::String(text.to_owned()));
        assert!(is_transient(&said("aborted by navigation")));
        assert!(!is_transient(&said("session deleted")));
    }
}
