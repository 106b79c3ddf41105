//! OCI images without a container engine: reproducible layers ([`layer`]), app image
//! assembly, and the registry's push (build workers) and pull (runtime agents), through
//! `oci-client`.
//!
//! An app image is the base: the runtime layer ([`runtime`]: the loader and the libraries the
//! apphost loads, the CA bundle) and the apphost layer (the `apphost` binary at
//! `/app/apphost`), plus the app's bundle layer (`/app/bundle/…`), an image config whose entrypoint is the apphost, and
//! an OCI manifest pushed under the tag `r{revision}` and referred to by its digest. Blobs the
//! repository already holds are not pushed again; the base layers are pushed once to the base
//! repository and mounted from there into each app's repository.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use bytes::Bytes;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{
    IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciDescriptor,
    OciImageManifest, OciManifest,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

pub use layer::{Layer, TarEntry, sha256_digest};

pub mod layer;
pub mod runtime;

/// Where the apphost lives inside every image.
pub const APPHOST_PATH: &str = "/app/apphost";
/// The user (and group) id app containers run as: not root, set in the image config.
pub const APP_USER_ID: u32 = 65532;
/// Where the bundle lives inside every image.
pub const BUNDLE_DIR: &str = "/app/bundle";

/// Image assembly or push failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The apphost binary could not be read.
    #[error("cannot read the apphost binary {path}: {source}")]
    Apphost {
        /// The path tried.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime layer (the apphost's loader and libraries) could not be made.
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    /// The registry refused or could not be reached.
    #[error("registry {registry}: {message}")]
    Registry {
        /// The registry host.
        registry: String,
        /// What went wrong.
        message: String,
    },
}

/// How to reach the registry.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// `host[:port]`.
    pub host: String,
    /// Plain HTTP (a loopback registry), not HTTPS.
    pub insecure: bool,
    /// Repositories are `{prefix}/{tenant}/{app}`; the base is `{prefix}/apphost`.
    pub prefix: String,
    /// Basic credentials, if the registry wants them.
    pub credentials: Option<(String, String)>,
}

impl RegistryConfig {
    /// Whether a registry at `host` is spoken to over plain HTTP by default: on loopback
    /// (`127.…`, `localhost`), unless `tls` asks for HTTPS there too.
    pub fn plain_by_default(host: &str, tls: bool) -> bool {
        (host.starts_with("127.") || host.starts_with("localhost")) && !tls
    }
}

/// The base layers every app image starts from.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
}

impl BaseImage {
    /// The base made of the apphost binary at `path` (installed as [`APPHOST_PATH`], mode 0755)
    /// above the runtime layer of what it loads ([`runtime::layer`]), so that the image starts
    /// on its own (on Kubernetes), not only beside this machine's libraries.
    ///
    /// # Errors
    /// When the binary cannot be read, or a library it loads cannot be found.
    pub fn from_apphost(path: &Path) -> Result<Self, ImageError> {
        let binary = std::fs::read(path).map_err(|source| ImageError::Apphost {
            path: path.display().to_string(),
            source,
        })?;
        let tar = layer::tar([
            TarEntry::Dir { path: "app".into() },
            TarEntry::Program {
                path: "app/apphost".into(),
                contents: &binary,
            },
        ]);
        let (runtime, _) = runtime::layer(&[path])?;
        Ok(Self {
            layers: vec![runtime, Layer::from_tar(&tar)],
        })
    }
}

/// An image in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedImage {
    /// The manifest digest.
    pub digest: String,
    /// `host/repository@digest`.
    pub reference: String,
    /// The repository.
    pub repository: String,
    /// Bytes of the layers and config the push actually uploaded (0 when all were there).
    pub uploaded_bytes: u64,
}

/// Labels and identity of an app image.
#[derive(Debug, Clone)]
pub struct ImageSpec<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The app.
    pub app: &'a str,
    /// The revision.
    pub revision: u32,
    /// The model's content digest.
    pub revision_digest: &'a str,
}

/// Pushes images to one registry.
pub struct Registry {
    client: Client,
    config: RegistryConfig,
    auth: RegistryAuth,
    /// Blobs known to be in a repository: `(repository, digest)`.
    known: Mutex<HashSet<(String, String)>>,
}

impl Registry {
    /// A client of the registry described by `config`.
    pub fn new(config: RegistryConfig) -> Self {
        // The one TLS crypto provider of the process (ring); installing it again is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let protocol = if config.insecure {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            ..Default::default()
        });
        let auth = match &config.credentials {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        };
        Self {
            client,
            config,
            auth,
            known: Mutex::new(HashSet::new()),
        }
    }

    /// The registry host.
    pub fn host(&self) -> &str {
        &self.config.host
    }

    /// The repository of an app's images.
    pub fn repository(&self, tenant: &str, app: &str) -> String {
        format!("{}/{tenant}/{app}", self.config.prefix)
    }

    fn base_repository(&self) -> String {
        format!("{}/apphost", self.config.prefix)
    }

    fn reference(&self, repository: &str, tag: &str) -> Reference {
        Reference::with_tag(
            self.config.host.clone(),
            repository.to_owned(),
            tag.to_owned(),
        )
    }

    fn error(&self, e: impl std::fmt::Display) -> ImageError {
        ImageError::Registry {
            registry: self.config.host.clone(),
            message: e.to_string(),
        }
    }

    fn is_known(&self, repository: &str, digest: &str) -> bool {
        self.known
            .lock()
            .map(|k| k.contains(&(repository.to_owned(), digest.to_owned())))
            .unwrap_or(false)
    }

    fn remember(&self, repository: &str, digest: &str) {
        if let Ok(mut known) = self.known.lock() {
            known.insert((repository.to_owned(), digest.to_owned()));
        }
    }

    /// Makes sure `repository` holds the blob `digest`: known, present, mounted from `source`,
    /// or uploaded. Returns the bytes uploaded.
    async fn ensure_blob(
        &self,
        repository: &str,
        digest: &str,
        data: &Bytes,
        source: Option<&str>,
    ) -> Result<u64, ImageError> {
        if self.is_known(repository, digest) {
            return Ok(0);
        }
        let target = self.reference(repository, "latest");
        let present = self
            .client
            .blob_exists(&target, digest)
            .await
            .map_err(|e| self.error(e))?;
        let mut uploaded = 0;
        if !present {
            let mounted = match source {
                Some(source) => {
                    let from = self.reference(source, "latest");
                    self.client.mount_blob(&target, &from, digest).await.is_ok()
                }
                None => false,
            };
            if !mounted {
                self.client
                    .push_blob(&target, data.clone(), digest)
                    .await
                    .map_err(|e| self.error(e))?;
                uploaded = data.len() as u64;
            }
        }
        self.remember(repository, digest);
        Ok(uploaded)
    }

    /// Pushes the base layers to the base repository (once; later calls find them there).
    ///
    /// # Errors
    /// When the registry refuses or cannot be reached.
    pub async fn push_base(&self, base: &BaseImage) -> Result<u64, ImageError> {
        self.client
            .store_auth_if_needed(&self.config.host, &self.auth)
            .await;
        let repository = self.base_repository();
        let mut uploaded = 0;
        for layer in &base.layers {
            let data = Bytes::from(layer.tar_gz.clone());
            uploaded += self
                .ensure_blob(&repository, &layer.digest, &data, None)
                .await?;
        }
        Ok(uploaded)
    }

    /// Assembles and pushes the image of one app revision: the base layers, the bundle layer,
    /// the config and the manifest (tag `r{revision}`).
    ///
    /// # Errors
    /// When the registry refuses or cannot be reached.
    pub async fn push_app(
        &self,
        spec: &ImageSpec<'_>,
        base: &BaseImage,
        bundle: &Layer,
    ) -> Result<PushedImage, ImageError> {
        let mut uploaded = self.push_base(base).await?;
        let repository = self.repository(spec.tenant, spec.app);
        let base_repository = self.base_repository();
        for layer in &base.layers {
            let data = Bytes::from(layer.tar_gz.clone());
            uploaded += self
                .ensure_blob(&repository, &layer.digest, &data, Some(&base_repository))
                .await?;
        }
        let bundle_data = Bytes::from(bundle.tar_gz.clone());
        uploaded += self
            .ensure_blob(&repository, &bundle.digest, &bundle_data, None)
            .await?;
        let layers: Vec<&Layer> = base.layers.iter().chain(std::iter::once(bundle)).collect();
        let config = image_config(spec, &layers);
        self.push_config_and_manifest(
            &repository,
            &format!("r{}", spec.revision),
            &layers,
            config,
            labels(spec),
            uploaded,
        )
        .await
    }

    /// Pushes an image of `layers` (bottom first) and its image `config` (JSON) to
    /// `repository` under `tag`, with `annotations` on the manifest: each blob the repository
    /// lacks is uploaded, then the OCI manifest. What `neo image platform` pushes.
    ///
    /// # Guarantees
    /// Idempotent: blobs already in the repository are not uploaded again, and the same layers
    /// and config give the same manifest digest.
    ///
    /// # Errors
    /// When the registry refuses or cannot be reached.
    pub async fn push_image(
        &self,
        repository: &str,
        tag: &str,
        layers: &[&Layer],
        config: Vec<u8>,
        annotations: BTreeMap<String, String>,
    ) -> Result<PushedImage, ImageError> {
        self.client
            .store_auth_if_needed(&self.config.host, &self.auth)
            .await;
        let mut uploaded = 0;
        for layer in layers {
            let data = Bytes::from(layer.tar_gz.clone());
            uploaded += self
                .ensure_blob(repository, &layer.digest, &data, None)
                .await?;
        }
        self.push_config_and_manifest(repository, tag, layers, config, annotations, uploaded)
            .await
    }

    /// Uploads `config` (unless there) and the OCI manifest of `layers` (already in
    /// `repository`) under `tag`; the image's reference by digest, with the bytes uploaded for
    /// it (`layers_uploaded` for the layers, plus the config's).
    async fn push_config_and_manifest(
        &self,
        repository: &str,
        tag: &str,
        layers: &[&Layer],
        config: Vec<u8>,
        annotations: BTreeMap<String, String>,
        layers_uploaded: u64,
    ) -> Result<PushedImage, ImageError> {
        let config = Bytes::from(config);
        let config_digest = sha256_digest(&config);
        let uploaded = layers_uploaded
            + self
                .ensure_blob(repository, &config_digest, &config, None)
                .await?;
        let manifest = OciImageManifest {
            schema_version: 2,
            media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_owned()),
            config: OciDescriptor {
                media_type: IMAGE_CONFIG_MEDIA_TYPE.to_owned(),
                digest: config_digest,
                size: i64::try_from(config.len()).unwrap_or(i64::MAX),
                ..Default::default()
            },
            layers: layers
                .iter()
                .map(|l| OciDescriptor {
                    media_type: IMAGE_LAYER_GZIP_MEDIA_TYPE.to_owned(),
                    digest: l.digest.clone(),
                    size: i64::try_from(l.tar_gz.len()).unwrap_or(i64::MAX),
                    ..Default::default()
                })
                .collect(),
            subject: None,
            artifact_type: None,
            annotations: Some(annotations),
        };
        let tagged = self.reference(repository, tag);
        self.client
            .push_manifest(&tagged, &OciManifest::Image(manifest))
            .await
            .map_err(|e| self.error(e))?;
        let digest = self
            .client
            .fetch_manifest_digest(&tagged, &self.auth)
            .await
            .map_err(|e| self.error(e))?;
        Ok(PushedImage {
            reference: format!("{}/{repository}@{digest}", self.config.host),
            digest,
            repository: repository.to_owned(),
            uploaded_bytes: uploaded,
        })
    }

    /// Pulls an image by reference (`host/repo@digest` or `host/repo:tag`): its manifest digest
    /// and its layers, bottom first.
    ///
    /// # Errors
    /// When the reference is malformed or the registry refuses.
    pub async fn pull(&self, reference: &str) -> Result<(String, Vec<Bytes>), ImageError> {
        let reference: Reference = reference.parse().map_err(|e| self.error(e))?;
        let image = self
            .client
            .pull(&reference, &self.auth, vec![IMAGE_LAYER_GZIP_MEDIA_TYPE])
            .await
            .map_err(|e| self.error(e))?;
        // Layers may arrive in any order: put them in the manifest's.
        let mut by_digest: BTreeMap<String, Bytes> = image
            .layers
            .into_iter()
            .map(|l| (l.sha256_digest(), l.data))
            .collect();
        let order = image.manifest.map(|m| m.layers).unwrap_or_default();
        let layers = order
            .iter()
            .filter_map(|d| by_digest.remove(&d.digest))
            .collect();
        Ok((image.digest.unwrap_or_default(), layers))
    }
}

fn labels(spec: &ImageSpec<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("dev.neo.tenant".to_owned(), spec.tenant.to_owned()),
        ("dev.neo.app".to_owned(), spec.app.to_owned()),
        ("dev.neo.revision".to_owned(), spec.revision.to_string()),
        (
            "dev.neo.revision-digest".to_owned(),
            spec.revision_digest.to_owned(),
        ),
    ])
}

/// The OCI image config: linux/amd64, the apphost as entrypoint, the layers' diff ids.
fn image_config(spec: &ImageSpec<'_>, layers: &[&Layer]) -> Vec<u8> {
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": [APPHOST_PATH],
            "Env": [
                format!("NEO_BUNDLE_DIR={BUNDLE_DIR}"),
                format!("NEO_APP={}", spec.app),
                format!("NEO_TENANT={}", spec.tenant),
            ],
            "WorkingDir": "/app",
            "User": format!("{APP_USER_ID}:{APP_USER_ID}"),
            "ExposedPorts": {"8080/tcp": {}},
            "Labels": labels(spec),
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
        },
        "history": [
            {"created_by": "neo: apphost base", "created": "1970-01-01T00:00:00Z"},
            {"created_by": format!("neo: bundle of {} r{}", spec.app, spec.revision), "created": "1970-01-01T00:00:00Z"},
        ],
    });
    serde_json::to_vec(&config).unwrap_or_default()
}
