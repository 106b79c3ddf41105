//! The README's walkthrough, run as written against an `ops/up`: each command line of the block
//! after "After `ops/up`, for example" goes to `bash` from the repository's root, with `HOME` a
//! sandbox whose `~/.local/share/neo` is the installation's `NEO_DATA`, `neo` on `PATH`, and
//! only the ports the README names changed to the installation's.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

/// How long one command of the walkthrough may take (a publish builds and starts the app).
const COMMAND_DEADLINE: Duration = Duration::from_secs(300);
/// How long a command that follows (`-f`, `events watch`) runs before it is stopped.
const FOLLOW_FOR: Duration = Duration::from_secs(5);
/// How long a line whose output the README describes may be retried until it shows it.
const SETTLE: Duration = Duration::from_secs(90);

/// The walkthrough's command lines (continuations joined), from `readme`.
pub fn commands(readme: &str) -> anyhow::Result<Vec<String>> {
    let after = readme
        .split_once("After `ops/up`, for example")
        .context("the README has no walkthrough")?
        .1;
    let block = after
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .context("the walkthrough has no ```sh block")?
        .0;
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    Ok(lines)
}

/// Where the walkthrough runs.
pub struct Sandbox {
    /// The repository's root (the commands' working directory).
    pub root: PathBuf,
    /// `HOME`: `HOME/.local/share/neo` is the installation's data.
    pub home: PathBuf,
    /// A directory with `neo` in it, first on `PATH`.
    pub bin: PathBuf,
    /// The README's ports and the installation's: gateway, dev's load balancer.
    pub ports: Vec<(u16, u16)>,
}

impl Sandbox {
    /// `line` with the README's ports replaced by the installation's.
    fn localized(&self, line: &str) -> String {
        let mut line = line.to_owned();
        for (readme, here) in &self.ports {
            line = line.replace(&format!("127.0.0.1:{readme}"), &format!("127.0.0.1:{here}"));
        }
        line
    }

    fn command(&self, line: &str) -> Command {
        let mut command = Command::new("bash");
        command.arg("-c").arg(format!("set -o pipefail; {line}"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("NEO_") {
                command.env_remove(key);
            }
        }
        let path = std::env::var("PATH").unwrap_or_default();
        command
            .env("HOME", &self.home)
            .env("PATH", format!("{}:{path}", self.bin.display()))
            .current_dir(&self.root)
            .stdin(Stdio::null());
        command
    }

    /// Runs `line` to its end: its output (stdout then stderr), or why it failed.
    pub fn run(&self, line: &str) -> anyhow::Result<String> {
        let line = self.localized(line);
        let mut child = self
            .command(&line)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {line}"))?;
        let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > COMMAND_DEADLINE {
                child.kill().ok();
                child.wait().ok();
                bail!("`{line}` still running after {COMMAND_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let text = format!("{}{}", joined(out), joined(err));
        ensure!(status.success(), "`{line}` failed ({status}):\n{text}");
        Ok(text)
    }

    /// Runs `line` (a command that follows) for [`FOLLOW_FOR`], then stops it: what it printed,
    /// which must be something, and it must not have failed meanwhile.
    pub fn follow(&self, line: &str) -> anyhow::Result<String> {
        let line = self.localized(line);
        let mut child = self
            .command(&format!("exec {line}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {line}"))?;
        let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
        std::thread::sleep(FOLLOW_FOR);
        let early = child.try_wait()?;
        child.kill().ok();
        child.wait().ok();
        let (out, err) = (joined(out), joined(err));
        if let Some(status) = early {
            ensure!(status.success(), "`{line}` failed ({status}):\n{out}{err}");
        }
        ensure!(!out.trim().is_empty(), "`{line}` printed nothing:\n{err}");
        Ok(out)
    }

    /// Runs `line` until its output contains `expected` (what the README says it shows), for
    /// up to [`SETTLE`].
    pub fn until(&self, line: &str, expected: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + SETTLE;
        loop {
            let out = self.run(line)?;
            if out.contains(expected) {
                return Ok(out);
            }
            if Instant::now() > deadline {
                bail!("`{line}` did not show {expected:?} within {SETTLE:?}:\n{out}");
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Reads a child's pipe to its end on a thread.
fn drain<R: std::io::Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).ok();
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

fn joined(reader: std::thread::JoinHandle<String>) -> String {
    reader.join().unwrap_or_default()
}

/// Runs the README's walkthrough in `sandbox` and checks what each line is said to do.
pub fn run(sandbox: &Sandbox, readme: &Path) -> anyhow::Result<()> {
    let lines = commands(&std::fs::read_to_string(readme)?)?;
    ensure!(lines.len() >= 10, "too short a walkthrough: {lines:#?}");
    std::fs::create_dir_all(
        sandbox
            .home
            .join(".local/share/bash-completion/completions"),
    )?;
    for line in &lines {
        let command = line.split('#').next().unwrap_or_default().trim();
        let words: Vec<&str> = command.split_whitespace().collect();
        let out = match words.as_slice() {
            [.., "-f"] | ["neo", "events", "watch", ..] => sandbox.follow(command)?,
            ["neo", "status", app] => {
                // The README shows why the app does not serve: its replica's reason.
                let reason = line.split_once("and why: ").map(|(_, r)| r.trim());
                match reason {
                    Some(reason) => sandbox.until(command, reason)?,
                    None => sandbox.run(command)?,
                }
                .lines()
                .filter(|l| l.contains(app))
                .collect::<Vec<_>>()
                .join("\n")
            }
            _ => sandbox.run(command)?,
        };
        check(&words, &out).with_context(|| format!("`{command}` printed:\n{out}"))?;
    }
    // With the secret set as told, orders serves.
    sandbox.until("neo status orders --stage dev", "succeeded")?;
    let completions = sandbox
        .home
        .join(".local/share/bash-completion/completions/neo");
    ensure!(
        std::fs::read_to_string(&completions)?.contains("neo"),
        "no completions in {}",
        completions.display()
    );
    Ok(())
}

/// What a user would check in a line's output.
fn check(words: &[&str], out: &str) -> anyhow::Result<()> {
    match words {
        ["neo", "publish", "examples/catalog"] => {
            ensure!(
                out.contains("catalog v1 serves on dev at https://"),
                "not serving"
            );
        }
        ["neo", "publish", "examples/orders"] => {
            ensure!(
                out.contains("neo secrets set orders --stage dev payment_api_key"),
                "the missing secret is not named"
            );
        }
        ["neo", "status", "orders"] => {
            ensure!(
                out.contains("secret payment_api_key is not set"),
                "no reason"
            );
        }
        ["curl", ..] => ensure!(out.contains("\"items\""), "not a page of products"),
        ["neo", "build", "log", ..] => ensure!(out.lines().count() > 3, "no build log"),
        ["neo", "promote", ..] => ensure!(out.contains("promotion"), "not a promotion"),
        ["neo", "logs", ..] => ensure!(out.contains("dev/catalog/"), "no line of catalog on dev"),
        ["neo", "events", "watch", ..] => ensure!(out.contains("Created"), "no event"),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn continued_lines_are_one_command() {
        let readme = "After `ops/up`, for example:\n\n```sh\nneo a \\\n  --b c   # d\nneo e\n```\n";
        let lines = super::commands(readme).unwrap();
        assert_eq!(lines, ["neo a   --b c   # d", "neo e"]);
    }
}
