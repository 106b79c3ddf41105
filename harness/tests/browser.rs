//! `neo_harness::browser` against a real headless Chromium: a form served from a tiny
//! hand-written HTTP/1.1 server on loopback is filled, submitted and read back, and no
//! chromedriver or chromium process outlives the handle.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use neo_harness::{Browser, BrowserError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const FORM_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>New item</title></head>
<body>
<h1>New item</h1>
<form id="new" action="/submit" method="get">
  <label>Title <input name="title" id="title"></label>
  <label>Kind
    <select name="kind" id="kind">
      <option value="task">Task</option>
      <option value="bug">Bug</option>
    </select>
  </label>
  <button type="submit" id="create">Create</button>
</form>
</body></html>
"#;

/// The request targets (`/path?query`) the test server got, in order.
type Received = Arc<Mutex<Vec<String>>>;

/// Serves [`FORM_PAGE`] at `/` and, at `/submit`, a page listing the query's pairs; returns
/// the server's base URL and what it received.
async fn serve() -> anyhow::Result<(String, Received)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let received = Received::default();
    let log = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, &log).await {
                    eprintln!("test server: {e:#}");
                }
            });
        }
    });
    Ok((base, received))
}

/// Reads one request's head and answers it, then closes the connection.
async fn answer(mut stream: TcpStream, received: &Received) -> anyhow::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let target = head
        .split_whitespace()
        .nth(1)
        .context("no request target")?
        .to_owned();
    received
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .push(target.clone());

    let (status, body) = match target.split_once('?') {
        _ if target == "/" => ("200 OK", FORM_PAGE.to_owned()),
        Some(("/submit", query)) => {
            let items: String = query
                .split('&')
                .map(|pair| format!("<li>{}</li>", escape(pair)))
                .collect();
            let body = format!(
                "<!doctype html><html><head><title>Created</title></head><body>\
                 <p id=\"result\">got {}</p><ul id=\"pairs\">{items}</ul></body></html>",
                escape(query)
            );
            ("200 OK", body)
        }
        _ => ("404 Not Found", "not found".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The live (not zombie) processes whose process group is `pgid`, as `pid state comm`.
fn live_in_group(pgid: u32) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // Gone between the listing and the read: not alive.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Some((left, right)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = left.split_once('(').map_or("", |(_, c)| c);
        let fields: Vec<&str> = right.split_whitespace().collect();
        let (Some(state), Some(pgrp)) = (fields.first(), fields.get(2)) else {
            continue;
        };
        if pgrp.parse::<u32>().ok() == Some(pgid) && *state != "Z" {
            found.push(format!("{pid} {state} {comm}"));
        }
    }
    Ok(found)
}

/// Waits (at most 5 s) until chromedriver's pid is gone and no live process is left in its
/// group.
async fn assert_gone(pid: u32) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let pid_exists = std::path::Path::new(&format!("/proc/{pid}")).exists();
        let left = live_in_group(pid)?;
        if !pid_exists && left.is_empty() {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(5) {
            bail!("chromedriver pid {pid} exists: {pid_exists}; left in its group: {left:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_fills_selects_submits_and_screenshots() -> anyhow::Result<()> {
    let started = Instant::now();
    let (base, received) = serve().await?;
    let browser = Browser::start().await?;
    let pid = browser.driver_pid();
    let group = live_in_group(pid)?;
    ensure!(
        group.iter().any(|p| p.ends_with(" chromedriver"))
            && group.iter().any(|p| p.ends_with(" chromium")),
        "chromedriver and chromium should run in chromedriver's group: {group:?}"
    );
    eprintln!("browser started in {:?}", started.elapsed());

    browser.goto(&format!("{base}/")).await?;
    browser.wait_until_text("h1", "New item").await?;
    browser.fill("#title", "draft").await?;
    // Clears before typing.
    browser.fill("input[name=title]", "Hello world").await?;
    // By visible text, then by value.
    browser.select("select[name=kind]", "Task").await?;
    browser.select("#kind", "bug").await?;
    browser.click("#create").await?;

    let result = browser
        .wait_until_text("#result", "title=Hello+world&kind=bug")
        .await?;
    assert_eq!(result, "got title=Hello+world&kind=bug");
    assert_eq!(
        browser.texts("#pairs li").await?,
        ["title=Hello+world", "kind=bug"]
    );
    assert_eq!(
        browser.current_url().await?,
        format!("{base}/submit?title=Hello+world&kind=bug")
    );
    let got = received
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    assert!(
        got.iter()
            .any(|t| t == "/submit?title=Hello+world&kind=bug"),
        "the server got {got:?}"
    );

    let shots = tempfile::tempdir()?;
    let png = shots.path().join("pages").join("created.png");
    browser.screenshot(&png).await?;
    let bytes = std::fs::read(&png)?;
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {:?}",
        &bytes[..bytes.len().min(8)]
    );
    assert!(bytes.len() > 1000, "a suspiciously small PNG");

    browser.stop().await;
    assert_gone(pid).await?;
    eprintln!("whole test in {:?}", started.elapsed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_times_out_naming_the_selector_and_dies_with_its_handle() -> anyhow::Result<()> {
    let (base, _received) = serve().await?;
    let mut browser = Browser::start().await?;
    let pid = browser.driver_pid();
    browser.set_timeout(Duration::from_millis(500));
    browser.goto(&format!("{base}/")).await?;

    let waited = Instant::now();
    let err = browser
        .click("#no-such-button")
        .await
        .expect_err("there is no such button");
    assert!(
        waited.elapsed() >= Duration::from_millis(500),
        "gave up after {:?}",
        waited.elapsed()
    );
    assert!(matches!(err, BrowserError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("#no-such-button"), "{err}");
    let err = browser
        .select("#kind", "epic")
        .await
        .expect_err("there is no such option");
    assert!(
        err.to_string().contains("#kind") && err.to_string().contains("bug=\"Bug\""),
        "{err}"
    );

    // Dropped without stop(), as when a test panics.
    drop(browser);
    assert_gone(pid).await?;
    Ok(())
}
