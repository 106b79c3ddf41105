//! Images on local disk: pulled from the registry by digest, unpacked once per digest.
//!
//! `{dir}/{hex}/rootfs` holds the unpacked layers. Unpacking goes to a temporary directory that
//! is renamed into place, so a crash never leaves a half-unpacked image that looks complete, and
//! several agents may share one directory: the first rename wins, the others use its result.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use neo_image::Registry;
use tokio::sync::Mutex;

use crate::driver::DriverError;

/// Pulls and unpacks images, one at a time per digest.
pub struct ImageCache {
    dir: PathBuf,
    registry: Arc<Registry>,
    /// One lock per digest, so concurrent replicas of one image wait for a single pull.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl ImageCache {
    /// Images go under `dir`, pulled from `registry`.
    pub fn new(dir: PathBuf, registry: Arc<Registry>) -> Self {
        Self {
            dir,
            registry,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The pull reference of an app's image: `host/repository@digest`.
    pub fn reference(&self, tenant: &str, app: &str, digest: &str) -> String {
        format!(
            "{}/{}@{digest}",
            self.registry.host(),
            self.registry.repository(tenant, app)
        )
    }

    /// The unpacked root of the image `digest` (pulled from `reference` when not on disk yet).
    ///
    /// # Errors
    /// When the registry refuses, the image's digest differs, or unpacking fails.
    pub async fn rootfs(&self, reference: &str, digest: &str) -> Result<PathBuf, DriverError> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| image_error(reference, format!("malformed digest {digest:?}")))?;
        let root = self.dir.join(hex).join("rootfs");
        let lock = self
            .locks
            .lock()
            .await
            .entry(hex.to_owned())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        if root.is_dir() {
            return Ok(root);
        }
        let (pulled, layers) = self
            .registry
            .pull(reference)
            .await
            .map_err(|e| image_error(reference, e.to_string()))?;
        if pulled != digest {
            return Err(image_error(
                reference,
                format!("the registry served {pulled}, not {digest}"),
            ));
        }
        let parent = self.dir.join(hex);
        let reference_owned = reference.to_owned();
        let root_owned = root.clone();
        tokio::task::spawn_blocking(move || unpack(&parent, &root_owned, &layers))
            .await
            .map_err(|e| image_error(&reference_owned, e.to_string()))?
            .map_err(|e| image_error(&reference_owned, format!("unpacking: {e}")))?;
        tracing::info!(%reference, root = %root.display(), "image unpacked");
        Ok(root)
    }
}

fn image_error(reference: &str, reason: String) -> DriverError {
    DriverError::Image {
        reference: reference.to_owned(),
        reason,
    }
}

/// Unpacks `layers` (tar.gz, bottom first) into `root` through a temporary sibling.
fn unpack(parent: &Path, root: &Path, layers: &[bytes::Bytes]) -> std::io::Result<()> {
    std::fs::create_dir_all(parent)?;
    let staging = tempfile::Builder::new()
        .prefix("unpacking-")
        .tempdir_in(parent)?;
    for layer in layers {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer.as_ref()));
        archive.set_preserve_permissions(true);
        archive.set_overwrite(true);
        archive.unpack(staging.path())?;
    }
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, root) {
        // Another agent sharing the directory unpacked the same digest first.
        let _ = std::fs::remove_dir_all(&staged);
        if !root.is_dir() {
            return Err(e);
        }
    }
    Ok(())
}
