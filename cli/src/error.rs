//! [`CliError`]: what can go wrong in a client command, its message and its exit code.

use std::path::PathBuf;

use tonic::Code;

use neo_builder::project::ProjectError;
use neo_protocol::pb::Diagnostic;

use super::config::ConfigError;

/// The gateway's trailer naming the domain rule that refused a command.
pub const RULE_METADATA: &str = "neo-rule";
/// The gateway's trailer naming the invalid field of a request.
pub const FIELD_METADATA: &str = "neo-field";

/// Exit code: any other error.
pub const EXIT_OTHER: u8 = 1;
/// Exit code: usage or input error (clap uses 2 as well).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: not found.
pub const EXIT_NOT_FOUND: u8 = 3;
/// Exit code: not logged in, unauthenticated or permission denied.
pub const EXIT_AUTH: u8 = 4;
/// Exit code: refused by a domain rule, or a conflict.
pub const EXIT_REFUSED: u8 = 5;
/// Exit code: the gateway cannot be reached in time.
pub const EXIT_UNAVAILABLE: u8 = 6;
/// Exit code: too large.
pub const EXIT_TOO_LARGE: u8 = 7;
/// Exit code: a build failed (`neo publish`).
pub const EXIT_BUILD_FAILED: u8 = 8;

/// A failed client command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No token (or no endpoint) was given or saved.
    #[error("not logged in: run `neo login --endpoint URL --user NAME [--tenant TENANT]`")]
    NotLoggedIn,
    /// The command line or its input is unusable (a missing tenant, a bad token, …).
    #[error("{0}")]
    Usage(String),
    /// The config file could not be read or written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A local file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The directory to upload could not be read as a project (see `neo_builder::project`).
    #[error(transparent)]
    Project(#[from] ProjectError),
    /// The project's model (`neo.toml`) is invalid; nothing was sent.
    #[error("{}", invalid_model(.0))]
    InvalidModel(Vec<Diagnostic>),
    /// A publish's build failed, with the reason and the builder's diagnostics.
    #[error("{}", with_diagnostics(.message, .diagnostics))]
    BuildFailed {
        /// The gateway's line, e.g. `build failed: …`.
        message: String,
        /// Where the model or the build went wrong.
        diagnostics: Vec<Diagnostic>,
    },
    /// A publish's deploy was refused by impact analysis (the revision is built, not deployed).
    #[error(
        "{message}\nsee what would break: neo impact {app} --stage {stage} --revision {revision}\n\
         deploy anyway: neo deploy {app} --stage {stage} --revision {revision} --force"
    )]
    DeployRefused {
        /// The gateway's line, naming the blockers.
        message: String,
        /// The app.
        app: String,
        /// The stage it was not deployed to.
        stage: String,
        /// The built revision.
        revision: u32,
    },
    /// `neo impact` found blockers: deploying the revision would be refused.
    #[error(
        "{count} blocker(s): deploying revision {revision} of {app} to {stage} would be refused \
         (`neo deploy --force` deploys anyway)"
    )]
    ImpactBlockers {
        /// How many blockers.
        count: usize,
        /// The app.
        app: String,
        /// The stage.
        stage: String,
        /// The revision.
        revision: u32,
    },
    /// `neo settings diff` found what a stage lacks for the build running on the one before:
    /// promoting it would be refused.
    #[error("promoting {from} → {to} is refused until {to} has: {}", .missing.join(", "))]
    SettingsMissing {
        /// The stage promoted from.
        from: String,
        /// The stage promoted into.
        to: String,
        /// What `to` lacks (`setting NAME`, `secret NAME`).
        missing: Vec<String>,
    },
    /// A secret's value could not be read from stdin or the terminal.
    #[error("cannot read the secret's value: {0}")]
    SecretValue(std::io::Error),
    /// The gateway ended a stream before its last message (a publish before its outcome).
    #[error("{0}")]
    Unfinished(String),
    /// A watched canary was rolled back.
    #[error("{app} v{release} was rolled back on {stage}: {reason}; v{baseline} serves everything")]
    CanaryRolledBack {
        /// The app.
        app: String,
        /// The stage.
        stage: String,
        /// The canary's release.
        release: u32,
        /// The release serving again.
        baseline: u32,
        /// Why (the deployment's verdict or the abort's reason).
        reason: String,
    },
    /// A published release's rollout failed on its stage.
    #[error(
        "{app} v{release} failed to roll out on {stage}: {reason}; the previous release (if any) still serves"
    )]
    RolloutFailed {
        /// The app.
        app: String,
        /// The stage.
        stage: String,
        /// The release.
        release: u32,
        /// The rollout's reason.
        reason: String,
    },
    /// A published release did not serve within the wait.
    #[error(
        "{app} v{release} does not serve on {stage} after {waited_s} s: {why}; follow it with `neo status {app} --stage {stage}`"
    )]
    NotServing {
        /// The app.
        app: String,
        /// The stage.
        stage: String,
        /// The release.
        release: u32,
        /// How long the CLI waited.
        waited_s: u64,
        /// Why not, as the agent last reported.
        why: String,
    },
    /// The password could not be read from stdin or the terminal.
    #[error("cannot read the password: {0}")]
    Password(std::io::Error),
    /// The gateway could not be reached.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The transport error, with its causes.
        source: ErrorChain,
    },
    /// The gateway answered with an error.
    #[error("{}", describe_status(.0))]
    Rpc(#[from] tonic::Status),
    /// The endpoint is not a gateway spoken to the right way (wrong scheme or port): what to
    /// use instead, then the error the call got.
    #[error("{hint} ({source})")]
    WrongEndpoint {
        /// What answers there, and what to use.
        hint: String,
        /// The error of the call.
        source: Box<CliError>,
    },
    /// Standard output could not be written (a closed pipe ends the command quietly).
    #[error("cannot write to stdout: {0}")]
    Stdout(std::io::Error),
}

impl CliError {
    /// The process exit code for this error (see the `cli` module doc).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::NotLoggedIn => EXIT_AUTH,
            Self::Usage(_) | Self::WrongEndpoint { .. } => EXIT_USAGE,
            Self::Connect { .. } => EXIT_UNAVAILABLE,
            Self::Rpc(status) => exit_code_for(status.code()),
            Self::InvalidModel(_) => EXIT_USAGE,
            Self::BuildFailed { .. } => EXIT_BUILD_FAILED,
            Self::DeployRefused { .. }
            | Self::ImpactBlockers { .. }
            | Self::SettingsMissing { .. }
            | Self::RolloutFailed { .. }
            | Self::CanaryRolledBack { .. } => EXIT_REFUSED,
            Self::Project(ProjectError::TooLarge { .. } | ProjectError::TooManyFiles { .. }) => {
                EXIT_TOO_LARGE
            }
            Self::Config(_)
            | Self::Read { .. }
            | Self::Project(_)
            | Self::Password(_)
            | Self::SecretValue(_)
            | Self::Unfinished(_)
            | Self::NotServing { .. }
            | Self::Stdout(_) => EXIT_OTHER,
        }
    }
}

impl CliError {
    /// Whether the call failed in its transport rather than being answered by a gateway (no
    /// connection, or an HTTP/2 or TLS failure surfacing as a status the client made).
    pub fn is_transport(&self) -> bool {
        match self {
            Self::Connect { .. } => true,
            Self::Rpc(status) => {
                matches!(
                    status.code(),
                    Code::Unknown | Code::Unavailable | Code::Cancelled | Code::Internal
                ) && status.metadata().get(RULE_METADATA).is_none()
                    && status.metadata().get(FIELD_METADATA).is_none()
            }
            _ => false,
        }
    }
}

/// The exit code of a gRPC status code.
pub fn exit_code_for(code: Code) -> u8 {
    match code {
        Code::Ok => 0,
        Code::InvalidArgument | Code::OutOfRange => EXIT_USAGE,
        Code::NotFound => EXIT_NOT_FOUND,
        Code::Unauthenticated | Code::PermissionDenied => EXIT_AUTH,
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => EXIT_REFUSED,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => EXIT_UNAVAILABLE,
        Code::ResourceExhausted => EXIT_TOO_LARGE,
        Code::Unknown | Code::Unimplemented | Code::Internal | Code::DataLoss => EXIT_OTHER,
    }
}

/// The message printed for a gateway error: the refusing rule or invalid field when the
/// gateway named one, else what the code means, then the gateway's message.
pub fn describe_status(status: &tonic::Status) -> String {
    let meta = |key| {
        status
            .metadata()
            .get(key)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
    };
    let rule = meta(RULE_METADATA);
    let field = meta(FIELD_METADATA);
    let prefix = match (rule, field) {
        (Some(rule), Some(field)) => format!("refused by rule {rule} (field {field})"),
        (Some(rule), None) => format!("refused by rule {rule}"),
        (None, Some(field)) => format!("invalid {field}"),
        (None, None) if is_client_deadline(status) => {
            return code_words(Code::DeadlineExceeded).into();
        }
        (None, None) => code_words(status.code()).to_owned(),
    };
    // The gateway may repeat the field or rule in its message; say each once.
    let mut message = status.message();
    if let Some(field) = field {
        message = message
            .strip_prefix(field)
            .and_then(|m| m.strip_prefix(": "))
            .unwrap_or(message);
    }
    let suffix = rule.map(|rule| format!(" (rule {rule})"));
    if let Some(suffix) = &suffix {
        message = message.strip_suffix(suffix.as_str()).unwrap_or(message);
    }
    let mut text = if message.is_empty() {
        prefix
    } else {
        format!("{prefix}: {message}")
    };
    match status.code() {
        Code::Unauthenticated => text.push_str(" (run `neo login` to get a new token)"),
        Code::Aborted => text.push_str(" (someone else wrote first; try again)"),
        _ => {}
    }
    text
}

/// The message of an invalid model: a summary, then each diagnostic on its own line.
fn invalid_model(diagnostics: &[Diagnostic]) -> String {
    let summary = match diagnostics.len() {
        1 => "the model has 1 error; nothing was uploaded".to_owned(),
        n => format!("the model has {n} errors; nothing was uploaded"),
    };
    with_diagnostics(&summary, diagnostics)
}

/// `message`, then each diagnostic as `file:line:column: message` on its own line.
pub fn with_diagnostics(message: &str, diagnostics: &[Diagnostic]) -> String {
    let mut text = message.to_owned();
    for d in diagnostics {
        text.push('\n');
        text.push_str(&diagnostic_line(d));
    }
    text
}

/// A diagnostic as `file:line:column: message`, as compilers print them.
pub fn diagnostic_line(d: &Diagnostic) -> String {
    format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message)
}

/// Whether tonic cancelled the call because the client's own deadline (`--timeout`) passed.
fn is_client_deadline(status: &tonic::Status) -> bool {
    status.code() == Code::Cancelled && status.message() == "Timeout expired"
}

/// A few words for a gRPC code.
fn code_words(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded (see --timeout)",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "too large or too many",
        Code::FailedPrecondition => "refused",
        Code::Aborted => "conflict",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "not implemented by the gateway",
        Code::Internal => "internal gateway error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// An error shown with its chain of causes (`a: b: c`), as transport errors hide the useful
/// part (connection refused, certificate unknown) in their sources.
#[derive(Debug)]
pub struct ErrorChain(pub String);

impl ErrorChain {
    /// Flattens `error` and its sources into one line, skipping repeated messages.
    pub fn of(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut parts: Vec<String> = Vec::new();
        let mut next = Some(error);
        while let Some(e) = next {
            let text = e.to_string();
            if !parts.iter().any(|p| p.contains(&text)) {
                parts.push(text);
            }
            next = e.source();
        }
        Self(parts.join(": "))
    }
}

impl std::fmt::Display for ErrorChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ErrorChain {}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    #[test]
    fn grpc_codes_map_to_the_documented_exit_codes() {
        let cases = [
            (Code::Ok, 0),
            (Code::Unknown, 1),
            (Code::Internal, 1),
            (Code::Unimplemented, 1),
            (Code::DataLoss, 1),
            (Code::InvalidArgument, 2),
            (Code::OutOfRange, 2),
            (Code::NotFound, 3),
            (Code::Unauthenticated, 4),
            (Code::PermissionDenied, 4),
            (Code::FailedPrecondition, 5),
            (Code::AlreadyExists, 5),
            (Code::Aborted, 5),
            (Code::Unavailable, 6),
            (Code::DeadlineExceeded, 6),
            (Code::Cancelled, 6),
            (Code::ResourceExhausted, 7),
        ];
        for (code, exit) in cases {
            assert_eq!(exit_code_for(code), exit, "{code:?}");
            assert_eq!(
                CliError::Rpc(tonic::Status::new(code, "x")).exit_code(),
                exit,
                "{code:?}"
            );
        }
    }

    #[test]
    fn local_errors_have_their_exit_codes() {
        assert_eq!(CliError::NotLoggedIn.exit_code(), 4);
        assert_eq!(CliError::Usage("no tenant".into()).exit_code(), 2);
        let connect = CliError::Connect {
            endpoint: "http://127.0.0.1:1".into(),
            source: ErrorChain("connection refused".into()),
        };
        assert_eq!(connect.exit_code(), 6);
        assert!(
            CliError::NotLoggedIn
                .to_string()
                .starts_with("not logged in: run `neo login")
        );
        assert_eq!(CliError::InvalidModel(Vec::new()).exit_code(), 2);
        let failed = CliError::BuildFailed {
            message: "build failed: 1 error".into(),
            diagnostics: vec![diagnostic()],
        };
        assert_eq!(failed.exit_code(), 8);
        assert_eq!(
            failed.to_string(),
            "build failed: 1 error\nneo.toml:3:8: unknown type `strng`"
        );
        let refused = CliError::DeployRefused {
            message: "not deployed to dev: it would break reviews r1".into(),
            app: "catalog".into(),
            stage: "dev".into(),
            revision: 2,
        };
        assert_eq!(refused.exit_code(), 5);
        assert_eq!(
            refused.to_string(),
            "not deployed to dev: it would break reviews r1\n\
             see what would break: neo impact catalog --stage dev --revision 2\n\
             deploy anyway: neo deploy catalog --stage dev --revision 2 --force"
        );
        let blockers = CliError::ImpactBlockers {
            count: 2,
            app: "catalog".into(),
            stage: "dev".into(),
            revision: 3,
        };
        assert_eq!(blockers.exit_code(), 5);
        let too_large = neo_builder::project::ProjectError::TooLarge { limit: 1 };
        assert_eq!(CliError::Project(too_large).exit_code(), 7);
    }

    fn diagnostic() -> Diagnostic {
        Diagnostic {
            file: "neo.toml".into(),
            line: 3,
            column: 8,
            message: "unknown type `strng`".into(),
        }
    }

    #[test]
    fn an_invalid_model_lists_every_positioned_diagnostic() {
        let error = CliError::InvalidModel(vec![diagnostic(), diagnostic()]);
        assert_eq!(
            error.to_string(),
            "the model has 2 errors; nothing was uploaded\n\
             neo.toml:3:8: unknown type `strng`\n\
             neo.toml:3:8: unknown type `strng`"
        );
    }

    #[test]
    fn a_refusal_names_its_rule() {
        let mut status =
            tonic::Status::failed_precondition("stage dev has no current release of app shop");
        status.metadata_mut().insert(
            RULE_METADATA,
            MetadataValue::from_static("promotion.no_source"),
        );
        assert_eq!(
            CliError::Rpc(status).to_string(),
            "refused by rule promotion.no_source: stage dev has no current release of app shop"
        );
    }

    #[test]
    fn a_rule_or_field_repeated_in_the_message_is_said_once() {
        let mut status = tonic::Status::failed_precondition(
            "`alice` is the last admin (rule member.last_admin)",
        );
        status.metadata_mut().insert(
            RULE_METADATA,
            MetadataValue::from_static("member.last_admin"),
        );
        assert_eq!(
            describe_status(&status),
            "refused by rule member.last_admin: `alice` is the last admin"
        );
        let mut status = tonic::Status::invalid_argument("app: `Bad` is invalid");
        status
            .metadata_mut()
            .insert(FIELD_METADATA, MetadataValue::from_static("app"));
        assert_eq!(describe_status(&status), "invalid app: `Bad` is invalid");
    }

    #[test]
    fn an_invalid_argument_names_its_field() {
        let mut status = tonic::Status::invalid_argument("must be 1-63 chars of a-z0-9-");
        status
            .metadata_mut()
            .insert(FIELD_METADATA, MetadataValue::from_static("app"));
        assert_eq!(
            describe_status(&status),
            "invalid app: must be 1-63 chars of a-z0-9-"
        );
    }

    #[test]
    fn other_statuses_say_what_their_code_means() {
        assert_eq!(
            describe_status(&tonic::Status::not_found("app shop")),
            "not found: app shop"
        );
        assert_eq!(
            describe_status(&tonic::Status::unauthenticated("token expired")),
            "unauthenticated: token expired (run `neo login` to get a new token)"
        );
        assert_eq!(
            describe_status(&tonic::Status::unavailable("")),
            "unavailable"
        );
    }

    #[test]
    fn an_error_chain_keeps_distinct_causes() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = std::io::Error::other(inner);
        assert_eq!(ErrorChain::of(&outer).0, "refused");
    }
}
