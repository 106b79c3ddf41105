//! `neo settings …` and `neo secrets …`: an app's settings and secrets on a stage, and how two
//! stages differ (the gateway's `Settings` service). A secret's value is read from a file, stdin
//! or a hidden prompt, never from the command line, and is never printed.

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;

use neo_gateway::api;

use super::Target;
use crate::connect::Context;
use crate::error::CliError;
use crate::output::OutputFormat;
use crate::progress::with_spinner;
use crate::render::settings as render;

/// `neo settings …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SettingsCommand {
    /// Show the settings and secrets (names and versions) of an app on a stage, and what the
    /// build of its current release needs that the stage lacks.
    #[command(after_help = "Examples:\n  neo settings list shop --stage prod")]
    List(Target),
    /// Set settings in one change: with a running release, rolled out as one new release.
    #[command(
        after_help = "Examples:\n  neo settings set shop --stage prod currency=CHF region=eu"
    )]
    Set {
        /// The app and stage.
        #[command(flatten)]
        target: Target,
        /// The settings (names `[a-z][a-z0-9_]*`, values at most 4 KiB).
        #[arg(required = true, value_name = "NAME=VALUE", value_parser = parse_pair)]
        pairs: Vec<(String, String)>,
    },
    /// Remove settings in one change: with a running release, rolled out as one new release.
    #[command(after_help = "Examples:\n  neo settings unset shop --stage prod region")]
    Unset {
        /// The app and stage.
        #[command(flatten)]
        target: Target,
        /// The settings to remove.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// How two stages' settings and secrets differ, and what refuses promoting FROM into TO
    /// (exit 5 when something does).
    #[command(after_help = "Examples:\n  neo settings diff shop --from test --to prod")]
    Diff {
        /// The app.
        app: String,
        /// The stage promoted from.
        #[arg(long, value_name = "STAGE")]
        from: String,
        /// The stage promoted into.
        #[arg(long, value_name = "STAGE")]
        to: String,
    },
}

/// `neo secrets …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum SecretsCommand {
    /// List the secrets of an app on a stage: name, version, when and by whom they changed.
    #[command(after_help = "Examples:\n  neo secrets list shop --stage prod")]
    List(Target),
    /// Set a secret as its next version. The value is read from --value-file, else from stdin
    /// when it is not a terminal, else from a hidden prompt; a trailing newline is dropped.
    #[command(
        after_help = "Examples:\n  neo secrets set shop --stage prod payment_api_key --value-file key.txt\n  neo secrets set shop -s dev payment_api_key"
    )]
    Set {
        /// The app and stage.
        #[command(flatten)]
        target: Target,
        /// The secret's name (`[a-z][a-z0-9_]*`).
        name: String,
        /// Read the value from this file (at most 64 KiB).
        #[arg(long, value_name = "FILE")]
        value_file: Option<PathBuf>,
    },
    /// Remove a secret (the stage's release without it is rolled out first).
    #[command(after_help = "Examples:\n  neo secrets unset shop --stage prod payment_api_key")]
    Unset {
        /// The app and stage.
        #[command(flatten)]
        target: Target,
        /// The secret's name.
        name: String,
    },
}

/// Parses `NAME=VALUE` (the value may hold `=` and be empty).
///
/// # Errors
/// A message naming the text when it has no `=` or no name.
pub fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}

/// `text` without one trailing newline (`\n` or `\r\n`).
fn without_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

/// A secret's value: from `file`, else stdin when it is not a terminal, else a hidden prompt.
fn read_value(name: &str, file: Option<PathBuf>) -> Result<String, CliError> {
    let value = if let Some(path) = file {
        let text =
            std::fs::read_to_string(&path).map_err(|source| CliError::Read { path, source })?;
        without_newline(text)
    } else if !std::io::stdin().is_terminal() {
        let mut text = String::new();
        std::io::stdin()
            .lock()
            .read_to_string(&mut text)
            .map_err(CliError::SecretValue)?;
        without_newline(text)
    } else {
        rpassword::prompt_password(format!("Value of secret {name}: "))
            .map_err(CliError::SecretValue)?
    };
    if value.is_empty() {
        return Err(CliError::Usage(format!(
            "no value for secret {name}: give --value-file FILE, pipe it on stdin or type it"
        )));
    }
    Ok(value)
}

/// Prints a stage's settings after a change, and whether it was rolled out as a new release.
fn show_change(cx: &Context, before: u32, after: &api::StageSettings) -> Result<(), CliError> {
    let rolled_out = after.release > before;
    match cx.output() {
        OutputFormat::Json => {
            let mut doc = render::stage_settings_json(after);
            doc["rolled_out"] = rolled_out.into();
            cx.print(|| doc, String::new)
        }
        OutputFormat::Table => {
            let note = if rolled_out {
                format!("rolled out as release v{}", after.release)
            } else {
                format!(
                    "nothing runs on {}: this applies to its next release",
                    after.stage
                )
            };
            cx.emit(&format!("{}\n\n{note}", render::settings_table(after)))
        }
    }
}

/// Runs `neo settings …`.
///
/// # Errors
///
/// [`CliError::NotLoggedIn`], [`CliError::Usage`] with no tenant, the gateway's error (exit 2
/// naming the field for a bad name or value, 3 for an unknown app or stage, 4 for a role that
/// may not deploy there), [`CliError::SettingsMissing`] (exit 5, after printing the diff) when
/// the diff finds what refuses a promotion.
pub async fn settings(cx: &Context, command: SettingsCommand) -> Result<(), CliError> {
    let tenant = cx.tenant()?;
    let mut client = cx.connect().await?.settings();
    let (target, set, unset) = match command {
        SettingsCommand::List(target) => {
            let request = api::GetSettingsRequest {
                tenant,
                app: target.app,
                stage: target.stage,
            };
            let settings = client.get_settings(request).await?.into_inner();
            return cx.print(
                || render::stage_settings_json(&settings),
                || render::stage_settings_table(&settings),
            );
        }
        SettingsCommand::Diff { app, from, to } => {
            let request = api::DiffSettingsRequest {
                tenant,
                app,
                from_stage: from.clone(),
                to_stage: to.clone(),
            };
            let diff = with_spinner("comparing the stages", client.diff_settings(request))
                .await?
                .into_inner();
            cx.print(
                || render::diff_json(&from, &to, &diff),
                || render::diff_table(&from, &to, &diff),
            )?;
            let missing = render::missing_words(diff.missing.as_ref());
            if missing.is_empty() {
                return Ok(());
            }
            return Err(CliError::SettingsMissing { from, to, missing });
        }
        SettingsCommand::Set { target, pairs } => (target, pairs, Vec::new()),
        SettingsCommand::Unset { target, names } => (target, Vec::new(), names),
    };
    let before = client
        .get_settings(api::GetSettingsRequest {
            tenant: tenant.clone(),
            app: target.app.clone(),
            stage: target.stage.clone(),
        })
        .await?
        .into_inner()
        .release;
    let request = api::ChangeSettingsRequest {
        tenant,
        app: target.app,
        stage: target.stage,
        set: set.into_iter().collect(),
        unset,
    };
    let message = format!(
        "changing the settings of {} on {}",
        request.app, request.stage
    );
    let after = crate::retrying!(message, client.change_settings(request))
        .await?
        .into_inner();
    show_change(cx, before, &after)
}

/// Runs `neo secrets …`.
///
/// # Errors
///
/// As [`settings`]; [`CliError::Read`] for an unreadable `--value-file`,
/// [`CliError::SecretValue`] when stdin or the prompt cannot be read, [`CliError::Usage`] for
/// an empty value; exit 5 when the platform runs without a secrets store.
pub async fn secrets(cx: &Context, command: SecretsCommand) -> Result<(), CliError> {
    let tenant = cx.tenant()?;
    match command {
        SecretsCommand::List(target) => {
            let request = api::GetSettingsRequest {
                tenant,
                app: target.app,
                stage: target.stage,
            };
            let mut client = cx.connect().await?.settings();
            let settings = client.get_settings(request).await?.into_inner();
            cx.print(
                || render::stage_settings_json(&settings)["secrets"].take(),
                || render::secrets_table(&settings),
            )
        }
        SecretsCommand::Set {
            target,
            name,
            value_file,
        } => {
            // Read before connecting, so a prompt does not wait on an open connection.
            let value = read_value(&name, value_file)?;
            let request = api::SetSecretRequest {
                tenant,
                app: target.app,
                stage: target.stage,
                name: name.clone(),
                value,
            };
            let client = cx.connect().await?.settings();
            let message = format!("sealing secret {name}");
            let settings = crate::retrying!(message, client.set_secret(request))
                .await?
                .into_inner();
            let secret = settings
                .secrets
                .iter()
                .find(|s| s.name == name)
                .cloned()
                .unwrap_or(api::SecretInfo {
                    name,
                    ..Default::default()
                });
            cx.print(
                || render::secret_set_json(&secret),
                || render::secret_set_table(&secret),
            )
        }
        SecretsCommand::Unset { target, name } => {
            let request = api::UnsetSecretRequest {
                tenant,
                app: target.app,
                stage: target.stage,
                name,
            };
            let client = cx.connect().await?.settings();
            let message = format!("removing secret {}", request.name);
            let settings = crate::retrying!(message, client.unset_secret(request))
                .await?
                .into_inner();
            cx.print(
                || render::stage_settings_json(&settings)["secrets"].take(),
                || render::secrets_table(&settings),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_at_the_first_equals_sign() {
        assert_eq!(parse_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_pair("a="), Ok(("a".into(), String::new())));
        assert!(parse_pair("novalue").is_err());
        assert!(parse_pair("=x").is_err());
    }

    #[test]
    fn one_trailing_newline_is_dropped() {
        assert_eq!(without_newline("v\n".into()), "v");
        assert_eq!(without_newline("v\r\n".into()), "v");
        assert_eq!(without_newline("v\n\n".into()), "v\n");
        assert_eq!(without_newline("v".into()), "v");
    }

    #[test]
    fn values_never_come_from_the_command_line() {
        let parsed = crate::parse(["neo", "secrets", "set", "shop", "--stage", "dev", "k", "v"]);
        assert!(parsed.is_err(), "a value as an argument must not parse");
    }
}
