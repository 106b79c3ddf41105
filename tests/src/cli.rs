//! `neo` run in process against a test gateway, each runner with its own config file.

use std::path::PathBuf;

use neo_cli::commands::login::{LoginArgs, login_with_password};
use neo_cli::config::Config;
use neo_cli::serde_json::{self, Value};
use neo_cli::{self as cli, CliError, Context, Sink};

use crate::gateway::{Stack, password};

/// A config file in a temporary directory, and the gateway's endpoint.
pub struct Neo {
    _dir: tempfile::TempDir,
    /// The config file `neo login` writes.
    pub config: PathBuf,
    /// The gateway's endpoint.
    pub endpoint: String,
}

/// Runs `neo --config (a fresh one) --endpoint ENDPOINT --token t --timeout SECS ARGS` in
/// process, not logged in and saving nothing anywhere that outlives it: a client pointed at an
/// endpoint by hand.
///
/// # Panics
/// When the arguments do not parse or no temporary directory can be made.
pub async fn run_at(endpoint: &str, timeout_s: u32, args: &[&str]) -> Result<(), CliError> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("config.toml");
    let timeout = timeout_s.to_string();
    let line = [
        "neo",
        "--config",
        config.to_str().expect("a UTF-8 temporary path"),
        "--endpoint",
        endpoint,
        "--token",
        "t",
        "--timeout",
        &timeout,
    ]
    .into_iter()
    .chain(args.iter().copied());
    let (result, _) = run_line(line, args).await;
    assert!(!config.exists(), "a call without login saved a config");
    result
}

/// Runs the command `line` (for the arguments `args` of a panic's message) in process; its
/// result and what it printed.
async fn run_line<'a>(
    line: impl IntoIterator<Item = &'a str>,
    args: &[&str],
) -> (Result<(), CliError>, String) {
    let (global, command) = cli::parse(line).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut cx = Context::load(global).expect("the config loads");
    cx.sink = Sink::memory();
    let result = cli::execute(&mut cx, command).await;
    (result, cx.sink.contents())
}

impl Neo {
    /// A runner for `stack`'s gateway, not logged in.
    ///
    /// # Panics
    /// When no temporary directory can be made.
    pub fn new(stack: &Stack) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("neo/config.toml");
        Self {
            _dir: dir,
            config,
            endpoint: stack.gateway.endpoint(),
        }
    }

    fn config_arg(&self) -> &str {
        self.config.to_str().expect("a UTF-8 temporary path")
    }

    /// Runs `neo --config … ARGS` in process; returns the result and what it printed.
    ///
    /// # Panics
    /// When the arguments do not parse or the config cannot be loaded.
    pub async fn run(&self, args: &[&str]) -> (Result<(), CliError>, String) {
        let line = ["neo", "--config", self.config_arg(), "--timeout", "10"]
            .into_iter()
            .chain(args.iter().copied());
        run_line(line, args).await
    }

    /// Runs a command that must succeed; returns what it printed.
    ///
    /// # Panics
    /// When it fails.
    pub async fn ok(&self, args: &[&str]) -> String {
        let (result, out) = self.run(args).await;
        if let Err(e) = result {
            panic!("neo {args:?} failed: {e}");
        }
        out
    }

    /// Runs a command that must succeed and print JSON; returns that JSON.
    ///
    /// # Panics
    /// When it fails or prints something else.
    pub async fn json(&self, args: &[&str]) -> Value {
        let mut with_json = vec!["--output", "json"];
        with_json.extend_from_slice(args);
        let out = self.ok(&with_json).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("neo {args:?} printed {out}: {e}"))
    }

    /// Runs a command that must fail with `exit`; returns the error message.
    ///
    /// # Panics
    /// When it succeeds or exits otherwise.
    pub async fn fails(&self, args: &[&str], exit: u8) -> String {
        let (result, out) = self.run(args).await;
        let error = result
            .err()
            .unwrap_or_else(|| panic!("neo {args:?} succeeded: {out}"));
        assert_eq!(error.exit_code(), exit, "neo {args:?}: {error}");
        error.to_string()
    }

    /// `neo login --endpoint … --user USER [--tenant TENANT]` with the fixture's password.
    ///
    /// # Errors
    /// As `neo login`.
    pub async fn login(&self, user: &str, tenant: Option<&str>) -> Result<(), CliError> {
        self.login_with(user, &password(user), tenant).await
    }

    /// `neo login --endpoint … --user USER [--tenant TENANT]` with `secret`.
    ///
    /// # Errors
    /// As `neo login`.
    pub async fn login_with(
        &self,
        user: &str,
        secret: &str,
        tenant: Option<&str>,
    ) -> Result<(), CliError> {
        let mut line = vec![
            "neo",
            "--config",
            self.config_arg(),
            "--endpoint",
            &self.endpoint,
        ];
        if let Some(tenant) = tenant {
            line.extend(["--tenant", tenant]);
        }
        line.extend(["--output", "json", "login", "--user", user]);
        let (global, _) = cli::parse(line).expect("login arguments parse");
        let mut cx = Context::load(global).expect("the config loads");
        cx.sink = Sink::memory();
        let args = LoginArgs {
            user: Some(user.to_owned()),
            password_stdin: false,
        };
        login_with_password(&mut cx, args, secret.to_owned()).await
    }

    /// The config file as `neo login` left it.
    ///
    /// # Panics
    /// When it cannot be read.
    pub fn saved(&self) -> Config {
        Config::load(&self.config).expect("the config file reads")
    }
}
