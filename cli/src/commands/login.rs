//! `neo login`, `neo logout`, `neo whoami` and `neo user create`: identity and the saved token.

use std::io::BufRead as _;

use neo_gateway::api;
use serde_json::json;

use crate::connect::{Context, normalize_endpoint};
use crate::error::CliError;
use crate::output::{role_word, unix_secs};
use crate::progress::with_spinner;
use crate::render;

/// The variable `neo login` reads the password from when not told to use stdin.
pub const PASSWORD_ENV: &str = "NEO_PASSWORD";

/// Arguments of `neo login` (the endpoint and tenant are the global `--endpoint` and `--tenant`).
#[derive(Debug, Clone, clap::Args)]
pub struct LoginArgs {
    /// The user to log in as; default: the one saved by the last login.
    #[arg(long, env = "NEO_USER", value_name = "USER")]
    pub user: Option<String>,
    /// Read the password from the first line of stdin (else $NEO_PASSWORD, else a prompt).
    #[arg(long)]
    pub password_stdin: bool,
}

/// `neo user …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user (platform admins, or tenant admins who then add them as members).
    #[command(
        after_help = "Examples:\n  neo user create erin\n  neo user create erin --password-stdin"
    )]
    Create {
        /// The new user's name.
        name: String,
        /// Read the new password from the first line of stdin (else it is prompted twice).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user (platform admins): their tokens stop working at once and they cannot log
    /// in; the name may be created again.
    #[command(after_help = "Examples:\n  neo user delete erin")]
    Delete {
        /// The user to delete.
        name: String,
    },
}

/// `neo login`: reads the password (stdin, `$NEO_PASSWORD` or a prompt), then
/// [`login_with_password`].
///
/// # Errors
///
/// As [`login_with_password`], and [`CliError::Password`] when the password cannot be read.
pub async fn login(cx: &mut Context, args: LoginArgs) -> Result<(), CliError> {
    let user = login_user(cx, &args)?;
    let password = if args.password_stdin {
        password_from_stdin()?
    } else if let Some(password) = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()) {
        password
    } else {
        rpassword::prompt_password(format!("Password for {user}: ")).map_err(CliError::Password)?
    };
    login_with_password(cx, args, password).await
}

/// The user to log in as: `--user`, else the saved one.
fn login_user(cx: &Context, args: &LoginArgs) -> Result<String, CliError> {
    args.user
        .clone()
        .or_else(|| cx.config.user.clone())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| CliError::Usage("no user: pass --user NAME".into()))
}

/// Exchanges `password` for a token and saves it with the endpoint, user and tenant
/// (`--tenant`; without it the token is platform-wide, for platform admins).
///
/// # Errors
///
/// [`CliError::Usage`] without an endpoint or user; the gateway's error (exit 4 for a wrong
/// password); [`CliError::Config`] when the config cannot be saved.
pub async fn login_with_password(
    cx: &mut Context,
    args: LoginArgs,
    password: String,
) -> Result<(), CliError> {
    let endpoint = cx
        .endpoint()
        .map(|e| normalize_endpoint(&e))
        .ok_or_else(|| CliError::Usage("no endpoint: pass --endpoint URL".into()))?;
    let user = login_user(cx, &args)?;
    if cx.config.endpoint.as_deref() != Some(endpoint.as_str()) && cx.global.ca_cert.is_none() {
        // The CA saved for another gateway says nothing about this one.
        cx.config.ca_cert = None;
    }
    let tenant = cx.global.tenant.clone().unwrap_or_default();
    let gateway = cx.connect_to(&endpoint, None).await?;
    let request = api::LoginRequest {
        user: user.clone(),
        password,
        tenant,
    };
    let response = with_spinner("logging in", gateway.identity().login(request))
        .await?
        .into_inner();

    cx.config.endpoint = Some(endpoint);
    cx.config.user = Some(user.clone());
    cx.config.tenant = Some(response.tenant.clone()).filter(|t| !t.is_empty());
    cx.config.token = Some(response.token.clone());
    if let Some(ca) = &cx.global.ca_cert {
        // Saved absolute, so later commands work from any directory.
        cx.config.ca_cert = Some(std::fs::canonicalize(ca).unwrap_or_else(|_| ca.clone()));
    }
    cx.config.save(&cx.config_path)?;

    let scope = if response.tenant.is_empty() {
        "the platform".to_owned()
    } else {
        format!("tenant {}", response.tenant)
    };
    cx.print(
        || {
            json!({
                "user": user,
                "tenant": (!response.tenant.is_empty()).then_some(&response.tenant),
                "role": role_word(response.role),
                "platform_admin": response.platform_admin,
                "expires_at": unix_secs(response.expires_at),
            })
        },
        || {
            format!(
                "logged in as {user} on {scope} (role {}{}), token expires {}",
                role_word(response.role),
                if response.platform_admin {
                    ", platform admin"
                } else {
                    ""
                },
                unix_secs(response.expires_at),
            )
        },
    )
}

/// `neo logout`: ends every session of the user at the gateway (each of their tokens is
/// refused from the next call on), then removes the saved token, keeping the endpoint, user
/// and tenant. The token is removed even when the gateway cannot be reached (said on stderr).
///
/// # Errors
///
/// [`CliError::Config`] when the config cannot be saved.
pub async fn logout(cx: &mut Context) -> Result<(), CliError> {
    let ended = if cx.config.token.is_some() {
        match cx.connect().await {
            Ok(gateway) => gateway.identity().logout(api::LogoutRequest {}).await,
            Err(e) => Err(tonic::Status::unavailable(e.to_string())),
        }
    } else {
        Err(tonic::Status::unauthenticated("no token"))
    };
    if let Err(e) = &ended
        && cx.config.token.is_some()
    {
        eprintln!(
            "warning: the gateway did not end the session ({}); the token is removed here \
             but stays valid until it expires",
            e.message()
        );
    }
    let had_token = cx.config.token.take().is_some();
    if had_token {
        cx.config.save(&cx.config_path)?;
    }
    let path = cx.config_path.display().to_string();
    let ended = ended.is_ok();
    cx.print(
        || json!({ "logged_out": had_token, "sessions_ended": ended, "config": path }),
        || {
            if had_token && ended {
                format!("logged out: every session ended, token removed from {path}")
            } else if had_token {
                format!("logged out here (token removed from {path})")
            } else {
                "not logged in".to_owned()
            }
        },
    )
}

/// `neo whoami`.
///
/// # Errors
///
/// [`CliError::NotLoggedIn`], or the gateway's error (exit 4 for an expired token).
pub async fn whoami(cx: &Context) -> Result<(), CliError> {
    let gateway = cx.connect().await?;
    let who = gateway
        .identity()
        .who_am_i(api::WhoAmIRequest {})
        .await?
        .into_inner();
    cx.print(|| render::whoami_json(&who), || render::whoami_table(&who))
}

/// `neo user create`, `neo user delete`.
///
/// # Errors
///
/// [`CliError::Usage`] when the prompted passwords differ; the gateway's error.
pub async fn user(cx: &Context, command: UserCommand) -> Result<(), CliError> {
    let (name, password_stdin) = match command {
        UserCommand::Create {
            name,
            password_stdin,
        } => (name, password_stdin),
        UserCommand::Delete { name } => {
            let gateway = cx.connect().await?;
            let request = api::DeleteUserRequest { user: name };
            let user = gateway.identity().delete_user(request).await?.into_inner();
            return cx.print(
                || json!({ "name": user.name, "deleted": true }),
                || format!("deleted user {} (their tokens no longer work)", user.name),
            );
        }
    };
    let password = if password_stdin {
        password_from_stdin()?
    } else {
        let first = rpassword::prompt_password(format!("New password for {name}: "))
            .map_err(CliError::Password)?;
        let again = rpassword::prompt_password("Again: ").map_err(CliError::Password)?;
        if first != again {
            return Err(CliError::Usage("the two passwords differ".into()));
        }
        first
    };
    let gateway = cx.connect().await?;
    let request = api::CreateUserRequest {
        user: name,
        password,
    };
    let user = gateway.identity().create_user(request).await?.into_inner();
    cx.print(
        || json!({ "name": user.name, "platform_admin": user.platform_admin }),
        || format!("created user {}", user.name),
    )
}

/// The first line of stdin, without its line ending.
fn password_from_stdin() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(CliError::Password)?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        return Err(CliError::Usage("no password on stdin".into()));
    }
    Ok(password)
}
