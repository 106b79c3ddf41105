//! `neo logs`, `neo status` and `neo scale`: the apps' log lines, what runs on each stage, and
//! the scale policy of an app on a stage (the gateway's `Runtime` service).

use std::io::IsTerminal as _;
use std::time::Duration;

use neo_gateway::api;
use neo_gateway::api::runtime_client::RuntimeClient;
use neo_protocol::pb;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Target;
use crate::connect::{AuthChannel, Context};
use crate::error::CliError;
use crate::output::OutputFormat;
use crate::render;

/// A log level, for `--level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    /// TRACE and above (everything).
    Trace,
    /// DEBUG and above.
    Debug,
    /// INFO and above (a line without a level counts as INFO).
    Info,
    /// WARN and ERROR.
    Warn,
    /// ERROR only.
    Error,
}

impl From<Level> for pb::LogLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => Self::Trace,
            Level::Debug => Self::Debug,
            Level::Info => Self::Info,
            Level::Warn => Self::Warn,
            Level::Error => Self::Error,
        }
    }
}

/// Arguments of `neo logs`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// Only this app's lines.
    pub app: Option<String>,
    /// Only this stage's lines.
    #[arg(long, short = 's', value_name = "STAGE")]
    pub stage: Option<String>,
    /// Only lines at this level or above.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub level: Option<Level>,
    /// Only lines at or after this time: an age (`30s`, `10m`, `2h`, `1d`) or RFC 3339.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only lines before this time: an age (`5m`) or RFC 3339.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only lines containing this text (case-sensitive).
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,
    /// Only this replica's lines (as `neo status` names it).
    #[arg(long, value_name = "REPLICA")]
    pub replica: Option<String>,
    /// Keep printing new lines until Ctrl-C (no --timeout).
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// Arguments of `neo status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Only this app.
    pub app: Option<String>,
    /// Only this stage.
    #[arg(long, short = 's', value_name = "STAGE")]
    pub stage: Option<String>,
}

/// Arguments of `neo scale`: the fields given replace the current policy's, the others stay.
#[derive(Debug, Clone, clap::Args)]
pub struct ScaleArgs {
    /// The app and the stage.
    #[command(flatten)]
    pub target: Target,
    /// The policy fields to change.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// Scale policy fields given on the command line (`neo scale`, `neo what-if`); each one left
/// out keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct PolicyArgs {
    /// The fewest replicas.
    #[arg(long, value_name = "N")]
    pub min: Option<u32>,
    /// The most replicas (1 to 100).
    #[arg(long, value_name = "N")]
    pub max: Option<u32>,
    /// The target CPU use per replica, in percent of its allocation (1 to 100).
    #[arg(long, value_name = "PCT")]
    pub cpu: Option<u32>,
    /// The target memory use per replica, in percent of its allocation (1 to 100).
    #[arg(long, value_name = "PCT")]
    pub memory: Option<u32>,
    /// How long usage must stay low before scaling down (`300s`, `5m`, `300`), in seconds.
    #[arg(long, value_name = "DURATION", value_parser = parse_window)]
    pub window: Option<u32>,
    /// Scale to zero after this long without a request (`90s`, `10m`; with `--min 0`; `0`:
    /// never). The stage holds the next request and wakes the app for it.
    #[arg(long, value_name = "DURATION", value_parser = parse_window)]
    pub idle_to_zero: Option<u32>,
}

impl PolicyArgs {
    /// Whether no field is given.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `current` with the given fields replaced.
    pub fn over(&self, current: pb::ScalePolicy) -> pb::ScalePolicy {
        pb::ScalePolicy {
            min_replicas: self.min.unwrap_or(current.min_replicas),
            max_replicas: self.max.unwrap_or(current.max_replicas),
            target_cpu_percent: self.cpu.unwrap_or(current.target_cpu_percent),
            target_memory_percent: self.memory.unwrap_or(current.target_memory_percent),
            scale_down_window_s: self.window.unwrap_or(current.scale_down_window_s),
            idle_to_zero_s: self.idle_to_zero.unwrap_or(current.idle_to_zero_s),
        }
    }
}

/// Parses a scale-down window (`300`, `300s`, `5m`, `1h`, `1d`) in seconds.
///
/// # Errors
/// A message naming the text when it is not a duration or is too long.
pub fn parse_window(text: &str) -> Result<u32, String> {
    let window = parse_duration(text.trim())?;
    u32::try_from(window.as_secs()).map_err(|_| format!("`{text}` is too long a window"))
}

/// A duration: seconds, or a number with `s`, `m`, `h` or `d` (`90s`, `10m`, `2h`, `1d`).
///
/// # Errors
/// A message naming the text when it is not one.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("`{text}` is not a duration (like 90s, 10m, 2h, 1d)");
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(bad)?,
        "h" => n.checked_mul(3600).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

/// A `--since`/`--until` value as Unix milliseconds: an age before `now`, or an RFC 3339 time.
fn parse_when(flag: &str, text: &str, now: OffsetDateTime) -> Result<u64, CliError> {
    let at = match parse_duration(text) {
        Ok(age) => now - age,
        Err(_) => OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
            CliError::Usage(format!(
                "{flag} `{text}`: not an age (like 10m) nor an RFC 3339 time: {e}"
            ))
        })?,
    };
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| CliError::Usage(format!("{flag} `{text}` is before 1970")))
}

/// `neo logs`: the lines as `time level stage/app/replica text` (one JSON object per line with
/// --output json), oldest first; with `-f`, new lines as they come until Ctrl-C.
///
/// # Errors
///
/// [`CliError::NotLoggedIn`], [`CliError::Usage`] for no tenant or a bad `--since`/`--until`,
/// or the gateway's error (exit 2 for a bad filter).
pub async fn logs(cx: &Context, args: LogsArgs) -> Result<(), CliError> {
    let now = OffsetDateTime::now_utc();
    let when = |flag: &str, value: &Option<String>| match value {
        Some(text) => parse_when(flag, text, now),
        None => Ok(0),
    };
    let request = api::LogsRequest {
        tenant: cx.tenant()?,
        stage: args.stage.unwrap_or_default(),
        app: args.app.unwrap_or_default(),
        min_level: args.level.map_or(0, |l| pb::LogLevel::from(l) as i32),
        since_ms: when("--since", &args.since)?,
        until_ms: when("--until", &args.until)?,
        text: args.grep.unwrap_or_default(),
        follow: args.follow,
        replica: args.replica.unwrap_or_default(),
    };
    let gateway = cx.connect().await?;
    // A followed log lasts until Ctrl-C: no deadline.
    let gateway = if args.follow {
        gateway.without_deadline()
    } else {
        gateway
    };
    let mut client = gateway.runtime();
    if args.follow && std::io::stderr().is_terminal() {
        eprintln!("following the logs of {} (Ctrl-C to stop)", request.tenant);
    }
    let mut batches = client.logs(request).await?.into_inner();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let batch = tokio::select! {
            batch = batches.message() => batch?,
            _ = &mut ctrl_c => return Ok(()),
        };
        let Some(batch) = batch else {
            return Ok(());
        };
        for line in &batch.lines {
            let text = match cx.output() {
                OutputFormat::Json => render::runtime::log_line_json(line).to_string(),
                OutputFormat::Table => render::runtime::log_line(line),
            };
            cx.emit(&text)?;
        }
    }
}

/// `neo status`: per stage and app the release, image, rollout, ready/desired replicas and
/// url, then a row per replica.
///
/// # Errors
///
/// As [`logs`] (exit 3 for an unknown stage or app).
pub async fn status(cx: &Context, args: StatusArgs) -> Result<(), CliError> {
    let request = api::StatusRequest {
        tenant: cx.tenant()?,
        stage: args.stage.unwrap_or_default(),
        app: args.app.unwrap_or_default(),
    };
    let client = cx.connect().await?.runtime();
    // A read: retried after UNAVAILABLE like a command (a gateway or NATS node restarting).
    let status = crate::retrying!("reading the status", client.status(request))
        .await?
        .into_inner();
    cx.print(
        || render::runtime::status_json(&status.podgroups),
        || render::runtime::status_table(&status.podgroups),
    )
}

/// The status of `app` on `stage` (`Runtime.Status` for it, retried after `UNAVAILABLE` with
/// `message` on the spinner); `None` when the app has no podgroup there.
///
/// # Errors
///
/// The gateway's error.
pub async fn podgroup_status(
    client: &RuntimeClient<AuthChannel>,
    message: &str,
    tenant: &str,
    app: &str,
    stage: &str,
) -> Result<Option<api::PodgroupStatus>, CliError> {
    let request = api::StatusRequest {
        tenant: tenant.to_owned(),
        stage: stage.to_owned(),
        app: app.to_owned(),
    };
    let status = crate::retrying!(message, client.status(request))
        .await?
        .into_inner();
    Ok(status
        .podgroups
        .into_iter()
        .find(|p| p.app == app && p.stage == stage))
}

/// `neo scale`: reads the current policy (`Runtime.Status`), changes the fields given, and sets
/// it (`Runtime.SetScalePolicy`).
///
/// # Errors
///
/// As [`logs`]; [`CliError::Usage`] when no field is given; exit 3 when the app has no
/// podgroup on the stage, 2 for bad bounds, 4 for a role that may not deploy there.
pub async fn scale(cx: &Context, args: ScaleArgs) -> Result<(), CliError> {
    if args.policy.is_empty() {
        return Err(CliError::Usage(
            "nothing to change: give --min, --max, --cpu, --memory or --window".into(),
        ));
    }
    let Target { app, stage } = args.target;
    let tenant = cx.tenant()?;
    let client = cx.connect().await?.runtime();
    let current = podgroup_status(&client, "reading the policy", &tenant, &app, &stage)
        .await?
        .and_then(|p| p.policy)
        .unwrap_or_default();
    let policy = args.policy.over(current);
    let request = api::SetScalePolicyRequest {
        tenant,
        app,
        stage,
        policy: Some(policy),
    };
    let message = format!(
        "setting the scale policy of {} on {}",
        request.app, request.stage
    );
    let response = crate::retrying!(message, client.set_scale_policy(request))
        .await?
        .into_inner();
    cx.print(
        || render::runtime::scale_policy_json(&response),
        || render::runtime::scale_policy_table(&response),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_or_mean_seconds() {
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("5 m").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("10w").is_err());
    }

    #[test]
    fn times_are_ages_or_rfc3339() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        assert_eq!(parse_when("--since", "10m", now).unwrap(), 999_400_000);
        assert_eq!(
            parse_when("--since", "1970-01-01T00:00:01.5Z", now).unwrap(),
            1_500
        );
        let bad = parse_when("--until", "yesterday", now).unwrap_err();
        assert_eq!(bad.exit_code(), 2);
        assert!(bad.to_string().starts_with("--until `yesterday`"));
    }
}
