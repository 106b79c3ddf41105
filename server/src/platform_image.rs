//! `neo image platform`: the image Neo itself runs from on Kubernetes (`deploy/`), assembled by
//! Neo's own OCI code (`neo-image`) without a container engine and pushed to a registry.
//!
//! Three layers, bottom first: the runtime (the dynamic loader and the shared libraries the two
//! binaries load, as `ldd` resolves them on this machine, and the CA bundle when there is one),
//! `/usr/local/bin/neo-apphost` (what build workers base app images on, found next to `neo`),
//! and `/usr/local/bin/neo` (this very program: `std::env::current_exe()`). The entrypoint is
//! `neo`; the image runs as user 65532. Layers are reproducible, so the same binaries give the
//! same digest, and a push uploads only what the repository lacks. Layers are gzipped at the
//! fastest level: the binaries are large, and the default level would triple the time for a few
//! percent of size.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use neo_image::runtime::{self, in_tar, layer_of, read};
use neo_image::{Layer, Registry, RegistryConfig};

/// Where the binaries live in the image.
pub const BIN_DIR: &str = "/usr/local/bin";
/// The entrypoint: `neo`.
pub const NEO_IN_IMAGE: &str = "/usr/local/bin/neo";
/// The apphost, next to `neo` (where `neo serve` and `neo build-worker` look for it).
pub const APPHOST_IN_IMAGE: &str = "/usr/local/bin/neo-apphost";
/// The user (and group) id the image runs as: not root.
pub const PLATFORM_USER_ID: u32 = 65532;

/// Why the platform image could not be made or pushed.
#[derive(Debug, thiserror::Error)]
pub enum PlatformImageError {
    /// This program's own path could not be found (it is the `neo` the image ships).
    #[error("cannot locate this program (the neo binary to ship): {0}")]
    CurrentExe(std::io::Error),
    /// No apphost binary was given or found next to this program.
    #[error(
        "no apphost binary next to {neo} (build it with `cargo build -p neo-apphost`, or pass --apphost)"
    )]
    NoApphost {
        /// The `neo` binary it was looked for beside.
        neo: PathBuf,
    },
    /// A binary, a library or the CA bundle could not be read, or `ldd` could not resolve a
    /// library.
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    /// The registry credentials could not be read.
    #[error("cannot read the registry password from {path}: {error}")]
    Password {
        /// The password file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// An argument is not usable (named).
    #[error("--{flag}: {message}")]
    Argument {
        /// The flag.
        flag: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The registry refused the push or could not be reached.
    #[error(transparent)]
    Registry(#[from] neo_image::ImageError),
    /// The assembling task died.
    #[error("assembling the image: {0}")]
    Task(String),
}

/// `neo image …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ImageCommand {
    /// Assemble the image of Neo's own binaries (`neo`, `neo-apphost` and the libraries they
    /// load; entrypoint `neo`) and push it; prints the pushed reference with its digest.
    Platform(PlatformImageArgs),
}

/// Options of `neo image platform`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlatformImageArgs {
    /// The OCI registry to push to (`host[:port]`).
    #[arg(long, env = "NEO_REGISTRY")]
    pub registry: String,
    /// The repository in the registry.
    #[arg(long, default_value = "neo/platform")]
    pub repository: String,
    /// The tag (default: this program's version).
    #[arg(long)]
    pub tag: Option<String>,
    /// Talk plain HTTP to the registry (the default on loopback, unless --registry-tls).
    #[arg(long, conflicts_with = "registry_tls")]
    pub insecure: bool,
    /// Talk HTTPS to the registry even on loopback.
    #[arg(long)]
    pub registry_tls: bool,
    /// The registry user (basic credentials, with --registry-password-file).
    #[arg(long, env = "NEO_REGISTRY_USER", requires = "registry_password_file")]
    pub registry_user: Option<String>,
    /// A file holding the registry user's password.
    #[arg(long, env = "NEO_REGISTRY_PASSWORD_FILE", requires = "registry_user")]
    pub registry_password_file: Option<PathBuf>,
    /// The apphost binary to ship (default: `neo-apphost` next to this program).
    #[arg(long, env = "NEO_APPHOST")]
    pub apphost: Option<PathBuf>,
}

/// The assembled image: its layers (bottom first), its config and the manifest's annotations.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    /// Runtime, apphost, neo.
    pub layers: Vec<Layer>,
    /// The OCI image config (JSON).
    pub config: Vec<u8>,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
    /// The shared libraries shipped (their paths in the image).
    pub libraries: Vec<PathBuf>,
}

/// The OCI architecture name of this machine.
fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The image's config: entrypoint `neo`, user 65532, the layers' diff ids.
fn image_config(version: &str, layers: &[Layer], history: &[String]) -> Vec<u8> {
    let config = serde_json::json!({
        "architecture": architecture(),
        "os": "linux",
        "config": {
            "Entrypoint": [NEO_IN_IMAGE],
            "Env": [format!("PATH={BIN_DIR}:/usr/bin:/bin")],
            "WorkingDir": "/",
            "User": format!("{PLATFORM_USER_ID}:{PLATFORM_USER_ID}"),
            "Labels": annotations(version),
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
        },
        "history": history
            .iter()
            .map(|step| serde_json::json!({"created_by": step, "created": "1970-01-01T00:00:00Z"}))
            .collect::<Vec<_>>(),
    });
    serde_json::to_vec(&config).unwrap_or_default()
}

fn annotations(version: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "org.opencontainers.image.title".to_owned(),
            "neo".to_owned(),
        ),
        (
            "org.opencontainers.image.description".to_owned(),
            "Neo's platform binaries: neo (serve, agent, build-worker, tools) and neo-apphost"
                .to_owned(),
        ),
        (
            "org.opencontainers.image.version".to_owned(),
            version.to_owned(),
        ),
    ])
}

/// Assembles the image of `neo` and `apphost` (layers built side by side).
///
/// # Guarantees
/// Reproducible: the same files give the same layers, config and so manifest digest.
///
/// # Errors
/// A file that cannot be read, a library `ldd` cannot resolve.
pub fn assemble(
    neo: &Path,
    apphost: &Path,
    version: &str,
) -> Result<PlatformImage, PlatformImageError> {
    let apphost_files = vec![(in_tar(Path::new(APPHOST_IN_IMAGE)), read(apphost)?)];
    let neo_files = vec![(in_tar(Path::new(NEO_IN_IMAGE)), read(neo)?)];
    // Compressing is most of the time: one thread per layer.
    let layers = std::thread::scope(|scope| {
        let runtime = scope.spawn(|| runtime::layer(&[neo, apphost]));
        let apphost = scope.spawn(|| layer_of(&apphost_files));
        let neo = layer_of(&neo_files);
        let panicked = |_| PlatformImageError::Task("a layer's thread panicked".into());
        let (runtime, libraries) = runtime.join().map_err(panicked)??;
        let apphost = apphost.join().map_err(panicked)?;
        Ok::<_, PlatformImageError>((vec![runtime, apphost, neo], libraries))
    })?;
    let (layers, libraries) = layers;
    let history = [
        format!(
            "neo image platform: runtime ({} shared libraries, CA bundle)",
            libraries.len()
        ),
        format!("neo image platform: {APPHOST_IN_IMAGE}"),
        format!("neo image platform: {NEO_IN_IMAGE} {version}"),
    ];
    Ok(PlatformImage {
        config: image_config(version, &layers, &history),
        layers,
        annotations: annotations(version),
        libraries,
    })
}

/// The apphost to ship: `--apphost`, else `neo-apphost` next to `neo`.
fn apphost_path(args: &PlatformImageArgs, neo: &Path) -> Result<PathBuf, PlatformImageError> {
    if let Some(path) = &args.apphost {
        return Ok(path.clone());
    }
    let beside = neo.with_file_name("neo-apphost");
    if beside.exists() {
        return Ok(beside);
    }
    Err(PlatformImageError::NoApphost {
        neo: neo.to_owned(),
    })
}

/// A size for people: `12.3 MiB`.
fn mib(bytes: u64) -> String {
    // Precision is not the point of a progress line.
    let mib = bytes as f64 / (1024.0 * 1024.0);
    format!("{mib:.1} MiB")
}

/// `neo image platform`: assembles the image of this program and the apphost, pushes it, and
/// prints `{registry}/{repository}:{tag}@{digest}` on stdout (progress goes to stderr).
///
/// # Errors
/// See [`PlatformImageError`]: each names what failed (a file, `ldd`, the registry).
pub async fn run(args: PlatformImageArgs) -> Result<(), PlatformImageError> {
    let neo = std::env::current_exe().map_err(PlatformImageError::CurrentExe)?;
    let apphost = apphost_path(&args, &neo)?;
    let version = env!("CARGO_PKG_VERSION");
    let tag = args.tag.clone().unwrap_or_else(|| version.to_owned());
    if args.repository.is_empty() || args.repository.starts_with('/') {
        return Err(PlatformImageError::Argument {
            flag: "repository",
            message: format!("`{}` is not a repository name", args.repository),
        });
    }
    let credentials = match (&args.registry_user, &args.registry_password_file) {
        (Some(user), Some(file)) => {
            let password =
                std::fs::read_to_string(file).map_err(|error| PlatformImageError::Password {
                    path: file.clone(),
                    error,
                })?;
            Some((user.clone(), password.trim().to_owned()))
        }
        _ => None,
    };
    let registry = Registry::new(RegistryConfig {
        host: args.registry.clone(),
        insecure: args.insecure
            || RegistryConfig::plain_by_default(&args.registry, args.registry_tls),
        prefix: String::new(),
        credentials,
    });

    let message = format!(
        "assembling the image of {} and {}",
        neo.display(),
        apphost.display()
    );
    eprintln!("{message}");
    let spinner = neo_cli::progress::spinner(message);
    let (neo_path, apphost_path) = (neo.clone(), apphost.clone());
    let assembled =
        tokio::task::spawn_blocking(move || assemble(&neo_path, &apphost_path, version)).await;
    spinner.finish_and_clear();
    let image = assembled.map_err(|e| PlatformImageError::Task(e.to_string()))??;
    let total: u64 = image.layers.iter().map(|l| l.tar_gz.len() as u64).sum();
    tracing::info!(libraries = ?image.libraries, "platform image assembled");

    let target = format!("{}/{}:{tag}", args.registry, args.repository);
    let message = format!(
        "pushing {} layers ({}; {} shared libraries) to {target}",
        image.layers.len(),
        mib(total),
        image.libraries.len()
    );
    eprintln!("{message}");
    let spinner = neo_cli::progress::spinner(message);
    let layers: Vec<&Layer> = image.layers.iter().collect();
    let pushed = registry
        .push_image(
            &args.repository,
            &tag,
            &layers,
            image.config.clone(),
            image.annotations.clone(),
        )
        .await;
    spinner.finish_and_clear();
    let pushed = pushed?;
    eprintln!(
        "pushed {} ({} uploaded; blobs the registry had were not sent again)",
        pushed.digest,
        mib(pushed.uploaded_bytes)
    );
    println!("{target}@{}", pushed.digest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_runs_neo_as_a_user_and_is_reproducible() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (neo, apphost) = (dir.path().join("neo"), dir.path().join("neo-apphost"));
        for (path, text) in [(&neo, "#!/bin/sh\necho neo\n"), (&apphost, "#!/bin/sh\n")] {
            std::fs::write(path, text).expect("a stand-in binary");
        }
        let image = assemble(&neo, &apphost, "1.2.3").expect("assembled");
        assert_eq!(image.layers.len(), 3);
        // Scripts load no libraries.
        assert!(image.libraries.is_empty());
        let config: serde_json::Value = serde_json::from_slice(&image.config).expect("JSON");
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!([NEO_IN_IMAGE])
        );
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(
            config["rootfs"]["diff_ids"].as_array().map(Vec::len),
            Some(3)
        );
        assert_eq!(
            image.annotations["org.opencontainers.image.version"],
            "1.2.3"
        );
        let again = assemble(&neo, &apphost, "1.2.3").expect("assembled again");
        assert_eq!(again.layers, image.layers);
        assert_eq!(again.config, image.config);
    }
}
