//! `neo publish`: 1-Click Publish of a project directory. The model is checked here first (a
//! broken `neo.toml` is reported without contacting the gateway), then the project is uploaded
//! and each step the gateway streams back (revision, build, deploy) is printed as it arrives;
//! then what the stage lacks, or the wait until the release serves ([`serving`]).

pub mod serving;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use indicatif::ProgressBar;
use neo_builder::project::Project;
use neo_gateway::api::publish_request::Part;
use neo_gateway::api::{self, PublishProgress, PublishStep};
use neo_protocol::pb;

use super::app::chunks;
use crate::connect::Context;
use crate::error::CliError;
use crate::output::{OutputFormat, Sink, dim};
use crate::progress::{bytes_bar, spinner};
use crate::render;

/// Arguments of `neo publish`.
#[derive(Debug, Clone, clap::Args)]
pub struct PublishArgs {
    /// The project directory, with its `neo.toml` (dot-files and `target/` are left out).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The app to publish as; default: the `name` in `neo.toml`. It is created if missing.
    #[arg(long, value_name = "APP")]
    pub app: Option<String>,
    /// The stage to deploy to; default: the tenant's first stage.
    #[arg(long, short = 's', value_name = "STAGE")]
    pub stage: Option<String>,
    /// What changed in this revision.
    #[arg(long, short = 'm', value_name = "TEXT")]
    pub message: Option<String>,
    /// After the deploy, wait up to this many seconds until the release serves, showing why
    /// it does not yet (0: do not wait). A stage lacking a setting or secret is not waited for.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub wait: u64,
}

/// Runs `neo publish`.
///
/// # Errors
///
/// - [`CliError::Project`] when the directory cannot be read as a project;
/// - [`CliError::InvalidModel`] (exit 2) when `neo.toml` is invalid: nothing is sent;
/// - [`CliError::NotLoggedIn`], [`CliError::Usage`] with no tenant, or the gateway's error;
/// - [`CliError::BuildFailed`] (exit 8) with the builder's diagnostics;
/// - [`CliError::DeployRefused`] (exit 5) when impact analysis blocked the deploy;
/// - [`CliError::Unfinished`] when the stream ends before the deploy or a failure.
/// - after the deploy (unless `--wait 0`, or the stage lacks a setting or secret):
///   [`CliError::RolloutFailed`] (exit 5) when the release's rollout fails,
///   [`CliError::NotServing`] (exit 1) when it does not serve within `--wait`.
pub async fn publish(cx: &Context, args: PublishArgs) -> Result<(), CliError> {
    let (project, name) = load_project(&args.dir)?;
    let app = args.app.clone().unwrap_or(name);
    let tenant = cx.tenant()?;
    let content = Bytes::from(project.pack());
    // A publish cut by `UNAVAILABLE` (the gateway or the platform out of reach, a dropped
    // connection) is made again with the same request id and content: the revision is not
    // recorded twice, and the same content resumes the publish where it is.
    let mut delays = RETRY_DELAYS.iter();
    loop {
        match publish_once(cx, &args, &tenant, &app, content.clone()).await {
            Err(CliError::Rpc(status)) if status.code() == tonic::Code::Unavailable => {
                let Some(delay) = delays.next() else {
                    return Err(CliError::Rpc(status));
                };
                eprintln!(
                    "publish interrupted ({}); publishing again in {:.1} s (the same content resumes it)",
                    status.message(),
                    delay.as_secs_f64()
                );
                tokio::time::sleep(*delay).await;
            }
            other => return other,
        }
    }
}

/// The waits before publishing again after `UNAVAILABLE`.
const RETRY_DELAYS: [std::time::Duration; 5] = [
    std::time::Duration::from_millis(500),
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(2),
    std::time::Duration::from_secs(4),
    std::time::Duration::from_secs(8),
];

/// One try of [`publish`]: upload, then follow the steps to the outcome.
async fn publish_once(
    cx: &Context,
    args: &PublishArgs,
    tenant: &str,
    app: &str,
    content: Bytes,
) -> Result<(), CliError> {
    let (tenant, app) = (tenant.to_owned(), app.to_owned());
    // The upload is bounded by --timeout; following the build and deploy is not.
    let gateway = cx.connect().await?.without_deadline();

    let total = u64::try_from(content.len()).unwrap_or(u64::MAX);
    let bar = bytes_bar(total, format!("uploading {app}"));
    let header = api::PublishRequest {
        part: Some(Part::Header(api::PublishHeader {
            tenant: tenant.clone(),
            app: app.clone(),
            message: args.message.clone().unwrap_or_default(),
            stage: args.stage.clone().unwrap_or_default(),
        })),
    };
    let counter = bar.clone();
    let parts = chunks(content).into_iter().map(move |chunk| {
        counter.inc(u64::try_from(chunk.len()).unwrap_or(0));
        api::PublishRequest {
            part: Some(Part::Chunk(chunk)),
        }
    });
    let stream = futures::stream::iter(std::iter::once(header).chain(parts));
    let mut client = gateway.apps();
    let call = client.publish(stream);
    let response = match cx.deadline() {
        Some(deadline) => tokio::time::timeout(deadline, call)
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("the upload took too long"))),
        None => call.await,
    };
    bar.finish_and_clear();
    let mut progress = response?.into_inner();

    let mut view = Steps::new(cx.output(), cx.sink.clone());
    let mut revision = 0;
    while let Some(step) = progress.message().await? {
        view.show(&step)?;
        if step.step() == PublishStep::RevisionCreated {
            revision = step.revision;
        }
        if let Some(outcome) = outcome(&step, &app, revision) {
            view.finish();
            outcome?;
            let lacks = lacking(cx, &gateway, &tenant, &app, &step.stage).await?;
            if lacks || args.wait == 0 {
                return Ok(());
            }
            let target = (tenant.as_str(), app.as_str(), step.stage.as_str());
            let wait = std::time::Duration::from_secs(args.wait);
            return serving::wait(cx, target, step.release, wait).await;
        }
    }
    view.finish();
    Err(CliError::Unfinished(
        "the gateway ended the publish before the deploy; see `neo build list` and `neo releases`"
            .into(),
    ))
}

/// After a deploy of `app` to `stage`: what the stage still lacks of what the build needs
/// (settings without a default, secrets), each with the command that sets it; nothing when it
/// lacks nothing, or when that cannot be read now (the deploy itself succeeded). Whether it
/// lacks something.
///
/// # Errors
///
/// [`CliError::Stdout`] when stdout cannot be written.
async fn lacking(
    cx: &Context,
    gateway: &crate::connect::Gateway,
    tenant: &str,
    app: &str,
    stage: &str,
) -> Result<bool, CliError> {
    let request = api::GetSettingsRequest {
        tenant: tenant.to_owned(),
        app: app.to_owned(),
        stage: stage.to_owned(),
    };
    let missing = match gateway.settings().get_settings(request).await {
        Ok(settings) => settings.into_inner().missing.unwrap_or_default(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read what the stage lacks");
            return Ok(false);
        }
    };
    if missing.settings.is_empty() && missing.secrets.is_empty() {
        return Ok(false);
    }
    cx.print(
        || render::settings::lacking_json(app, stage, &missing),
        || render::settings::lacking_text(app, stage, &missing),
    )?;
    Ok(true)
}

/// Reads the project at `dir` and checks its model; returns it with the model's app name.
///
/// # Errors
///
/// [`CliError::Project`] for an unreadable project, [`CliError::InvalidModel`] with every
/// diagnostic of an invalid `neo.toml`.
pub fn load_project(dir: &Path) -> Result<(Project, String), CliError> {
    let project = Project::from_dir(dir)?;
    match neo_model::load(&project) {
        Ok(model) => Ok((project, model.name)),
        Err(diagnostics) => Err(CliError::InvalidModel(
            diagnostics.into_iter().map(pb::Diagnostic::from).collect(),
        )),
    }
}

/// How a step ends the publish of `app`: `None` while it goes on, else the command's result.
/// `revision` is the one the publish created (0 before its step).
pub fn outcome(
    progress: &PublishProgress,
    app: &str,
    revision: u32,
) -> Option<Result<(), CliError>> {
    match progress.step() {
        PublishStep::Deployed => Some(Ok(())),
        PublishStep::BuildFailed => Some(Err(CliError::BuildFailed {
            message: progress.message.clone(),
            diagnostics: progress.diagnostics.clone(),
        })),
        PublishStep::DeployRefused => Some(Err(CliError::DeployRefused {
            message: progress.message.clone(),
            app: app.to_owned(),
            stage: progress.stage.clone(),
            revision: if progress.revision > 0 {
                progress.revision
            } else {
                revision
            },
        })),
        _ => None,
    }
}

/// What is awaited after a step, shown by the spinner.
fn waiting_for(step: PublishStep) -> Option<&'static str> {
    match step {
        PublishStep::Uploaded => Some("recording the revision"),
        PublishStep::RevisionCreated => Some("requesting the build"),
        PublishStep::BuildRequested => Some("waiting for a build worker"),
        PublishStep::BuildStarted | PublishStep::BuildLog => Some("building"),
        PublishStep::BuildSucceeded => Some("deploying"),
        _ => None,
    }
}

/// The printed steps of a publish: one line each (build log lines dimmed on a terminal), or
/// one JSON object per line; a spinner on stderr says what is awaited.
struct Steps {
    format: OutputFormat,
    sink: Sink,
    color: bool,
    spinner: ProgressBar,
}

impl Steps {
    fn new(format: OutputFormat, sink: Sink) -> Self {
        let color = sink.is_terminal();
        Self {
            format,
            sink,
            color,
            spinner: spinner("recording the revision"),
        }
    }

    /// Prints one step (failures are left to the returned error, printed once on stderr).
    fn show(&mut self, step: &PublishProgress) -> Result<(), CliError> {
        let line = match self.format {
            OutputFormat::Json => Some(render::publish_progress_json(step).to_string()),
            OutputFormat::Table => render::publish_step_line(step).map(|(text, is_log)| {
                if is_log && self.color {
                    dim(&text)
                } else {
                    text
                }
            }),
        };
        if let Some(message) = waiting_for(step.step()) {
            self.spinner.set_message(message);
        }
        match line {
            Some(line) => self.spinner.suspend(|| self.sink.emit(&line)),
            None => Ok(()),
        }
    }

    fn finish(&self) {
        self.spinner.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, relative: &str, content: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    #[test]
    fn a_valid_project_gives_its_app_name() {
        let dir = Path::new(
            &std::env::var("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
        )
        .join("../examples/catalog");
        let (project, name) = load_project(&dir).unwrap();
        assert_eq!(name, "catalog");
        assert!(project.file("screens/shelf.html").is_some());
    }

    #[test]
    fn an_invalid_model_is_every_positioned_diagnostic() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "neo.toml", "name = \"Bad Name\"\nbogus = 1\n");
        let Err(CliError::InvalidModel(diagnostics)) = load_project(dir.path()) else {
            panic!("the model was accepted")
        };
        assert!(!diagnostics.is_empty());
        assert!(
            diagnostics
                .iter()
                .all(|d| d.file == "neo.toml" && d.line > 0)
        );
        let empty = tempfile::tempdir().unwrap();
        let Err(CliError::InvalidModel(missing)) = load_project(empty.path()) else {
            panic!("a project without neo.toml was accepted")
        };
        assert_eq!((missing[0].line, missing[0].column), (1, 1));
    }

    fn progress(step: PublishStep, message: &str) -> PublishProgress {
        PublishProgress {
            step: step as i32,
            message: message.into(),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_last_steps_end_a_publish() {
        for step in [
            PublishStep::Uploaded,
            PublishStep::RevisionCreated,
            PublishStep::BuildRequested,
            PublishStep::BuildStarted,
            PublishStep::BuildLog,
            PublishStep::BuildSucceeded,
        ] {
            assert!(
                outcome(&progress(step, ""), "shop", 1).is_none(),
                "{step:?}"
            );
        }
        assert!(matches!(
            outcome(&progress(PublishStep::Deployed, ""), "shop", 1),
            Some(Ok(()))
        ));
        let mut failed = progress(PublishStep::BuildFailed, "build failed: 1 error");
        failed.diagnostics.push(pb::Diagnostic {
            file: "neo.toml".into(),
            line: 4,
            column: 1,
            message: "no such entity".into(),
        });
        let Some(Err(error)) = outcome(&failed, "shop", 1) else {
            panic!("a failed build ended nothing")
        };
        assert_eq!(error.exit_code(), 8);
        assert!(
            error
                .to_string()
                .ends_with("\nneo.toml:4:1: no such entity")
        );
        let refused = PublishProgress {
            stage: "dev".into(),
            ..progress(PublishStep::DeployRefused, "it would break")
        };
        let Some(Err(refused)) = outcome(&refused, "shop", 3) else {
            panic!("a refused deploy ended nothing")
        };
        assert_eq!(refused.exit_code(), 5);
        assert!(
            refused
                .to_string()
                .ends_with("neo deploy shop --stage dev --revision 3 --force"),
            "{refused}"
        );
    }
}
