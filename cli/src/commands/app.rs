//! `neo app …`: create, show and list apps, list their revisions, upload a new revision.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use neo_builder::project::Project;
use neo_gateway::api;
use neo_gateway::api::upload_revision_request::Part;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::all_pages;
use crate::connect::Context;
use crate::error::CliError;
use crate::output::{fields, or_dash};
use crate::progress::bytes_bar;
use crate::render;

/// The size of each uploaded chunk.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// `neo app …` (on --tenant or the saved tenant).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AppCommand {
    /// Create an app.
    #[command(after_help = "Examples:\n  neo app create shop --description 'The web shop'")]
    Create {
        /// The app's name (1–63 chars of a-z, 0-9 and -).
        app: String,
        /// What the app is for.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
    },
    /// Show an app and its revisions.
    #[command(after_help = "Examples:\n  neo app get shop")]
    Get {
        /// The app.
        app: String,
    },
    /// List the tenant's apps.
    #[command(after_help = "Examples:\n  neo app list")]
    List,
    /// List an app's revisions.
    #[command(after_help = "Examples:\n  neo app revisions shop")]
    Revisions {
        /// The app.
        app: String,
    },
    /// Upload a model as the app's next revision: a file as is, or a project directory packed
    /// as the build workers read it (a deterministic .tar.gz; dot-files and `target/` skipped).
    #[command(after_help = "Examples:\n  neo app upload shop examples/catalog -m 'first cut'")]
    Upload(UploadArgs),
}

/// Arguments of `neo app upload`.
#[derive(Debug, Clone, clap::Args)]
pub struct UploadArgs {
    /// The app.
    pub app: String,
    /// The model: a file, or a project directory.
    pub path: PathBuf,
    /// What changed in this revision.
    #[arg(long, short = 'm', value_name = "TEXT")]
    pub message: Option<String>,
}

/// Runs `neo app …`.
///
/// # Errors
///
/// [`CliError::NotLoggedIn`], [`CliError::Usage`] with no tenant, a local read or pack error,
/// or the gateway's error.
pub async fn run(cx: &Context, command: AppCommand) -> Result<(), CliError> {
    let tenant = cx.tenant()?;
    match command {
        AppCommand::Create { app, description } => {
            let request = api::CreateAppRequest {
                tenant,
                app,
                description: description.unwrap_or_default(),
            };
            let client = cx.connect().await?.apps();
            let app = crate::retrying!("creating the app", client.create_app(request)).await?;
            show(cx, &app.into_inner())
        }
        AppCommand::Get { app } => {
            let request = api::GetAppRequest { tenant, app };
            let app = cx.connect().await?.apps().get_app(request).await?;
            show(cx, &app.into_inner())
        }
        AppCommand::List => list(cx, tenant).await,
        AppCommand::Revisions { app } => revisions(cx, tenant, app).await,
        AppCommand::Upload(args) => upload(cx, tenant, args).await,
    }
}

/// Prints an app.
fn show(cx: &Context, app: &api::App) -> Result<(), CliError> {
    cx.print(|| render::app_json(app), || render::app_table(app))
}

/// `neo app list`: every page of the tenant's app names.
async fn list(cx: &Context, tenant: String) -> Result<(), CliError> {
    let client = cx.connect().await?.apps();
    let names = all_pages(|page| {
        let mut client = client.clone();
        let request = api::ListAppsRequest {
            tenant: tenant.clone(),
            page: Some(page),
        };
        async move {
            let response = client.list_apps(request).await?.into_inner();
            Ok((response.apps, response.next_page_token))
        }
    })
    .await?;
    cx.print(
        || render::names_json(&names),
        || render::names_table("APP", &names),
    )
}

/// `neo app revisions`: every page of an app's revisions.
async fn revisions(cx: &Context, tenant: String, app: String) -> Result<(), CliError> {
    let client = cx.connect().await?.apps();
    let revisions = all_pages(|page| {
        let mut client = client.clone();
        let request = api::ListRevisionsRequest {
            tenant: tenant.clone(),
            app: app.clone(),
            page: Some(page),
        };
        async move {
            let response = client.list_revisions(request).await?.into_inner();
            Ok((response.revisions, response.next_page_token))
        }
    })
    .await?;
    cx.print(
        || {
            json!(
                revisions
                    .iter()
                    .map(render::revision_json)
                    .collect::<Vec<_>>()
            )
        },
        || render::revisions_table(&revisions),
    )
}

/// `neo app upload`: streams the header, then the content in 64 KiB chunks, with a byte bar.
async fn upload(cx: &Context, tenant: String, args: UploadArgs) -> Result<(), CliError> {
    let content = Bytes::from(read_model(&args.path)?);
    let local_digest = format!("sha256:{}", hex::encode(Sha256::digest(&content)));
    let gateway = cx.connect().await?;

    let total = u64::try_from(content.len()).unwrap_or(u64::MAX);
    let bar = bytes_bar(total, format!("uploading {}", args.app));
    let header = api::UploadRevisionRequest {
        part: Some(Part::Header(api::RevisionHeader {
            tenant,
            app: args.app.clone(),
            message: args.message.unwrap_or_default(),
            dependencies: Vec::new(),
        })),
    };
    let counter = bar.clone();
    let chunks = chunks(content).into_iter().map(move |chunk| {
        counter.inc(u64::try_from(chunk.len()).unwrap_or(0));
        api::UploadRevisionRequest {
            part: Some(Part::Chunk(chunk)),
        }
    });
    let stream = futures::stream::iter(std::iter::once(header).chain(chunks));
    let result = gateway.apps().upload_revision(stream).await;
    bar.finish_and_clear();
    let revision = result?.into_inner();

    if revision.digest != local_digest {
        eprintln!(
            "warning: the gateway recorded digest {} but the uploaded content is {local_digest}",
            revision.digest
        );
    }
    cx.print(
        || render::revision_json(&revision),
        || {
            fields([
                ("app", args.app.clone()),
                ("revision", revision.number.to_string()),
                ("digest", revision.digest.clone()),
                ("size", revision.size.to_string()),
                ("author", or_dash(&revision.author)),
                ("message", or_dash(&revision.message)),
            ])
            .to_string()
        },
    )
}

/// The bytes to upload: the file itself, or the directory packed by [`Project::pack`] (so the
/// revision digest is [`Project::digest`]).
fn read_model(path: &Path) -> Result<Vec<u8>, CliError> {
    let read_err = |source| CliError::Read {
        path: path.to_owned(),
        source,
    };
    if std::fs::metadata(path).map_err(read_err)?.is_dir() {
        Ok(Project::from_dir(path)?.pack())
    } else {
        std::fs::read(path).map_err(read_err)
    }
}

/// `content` cut into [`CHUNK_SIZE`] pieces (sharing its buffer).
pub fn chunks(content: Bytes) -> Vec<Bytes> {
    let mut rest = content;
    let mut out = Vec::with_capacity(rest.len().div_ceil(CHUNK_SIZE));
    while !rest.is_empty() {
        let take = rest.len().min(CHUNK_SIZE);
        out.push(rest.split_to(take));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_cut_into_64_kib_chunks_in_order() {
        let content: Vec<u8> = (0..(2 * CHUNK_SIZE + 10))
            .map(|i| (i % 251) as u8)
            .collect();
        let pieces = chunks(Bytes::from(content.clone()));
        let sizes: Vec<usize> = pieces.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [CHUNK_SIZE, CHUNK_SIZE, 10]);
        assert_eq!(pieces.concat(), content);
        assert!(chunks(Bytes::new()).is_empty());
    }

    #[test]
    fn a_directory_is_packed_as_a_project_and_a_file_is_sent_as_is() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.json"), b"{}").unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), b"ref").unwrap();
        let packed = read_model(dir.path()).unwrap();
        let project = Project::unpack(&packed).unwrap();
        assert_eq!(project.files().keys().collect::<Vec<_>>(), ["model.json"]);
        assert_eq!(packed, Project::from_dir(dir.path()).unwrap().pack());
        let file = read_model(&dir.path().join("model.json")).unwrap();
        assert_eq!(file, b"{}");
        assert!(matches!(
            read_model(&dir.path().join("absent")),
            Err(CliError::Read { .. })
        ));
    }
}
