//! Kubernetes' own schemas, for tests of manifests: `kubernetes-validate` (PyPI; `ops/install-deps`
//! installs it in the tools' venv) run strictly on files, offline.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Kubernetes version whose schemas manifests are checked against.
pub const KUBERNETES_VERSION: &str = "1.33.0";

/// Why manifests did not pass.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The validator could not run.
    #[error("{validator}: {source} (ops/install-deps installs it)")]
    Run {
        /// Its path.
        validator: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A document did not pass: what the validator said.
    #[error("kubernetes-validate refused:\n{0}")]
    Refused(String),
}

/// The validator: `NEO_KUBERNETES_VALIDATE`, else `venv/bin/kubernetes-validate` under
/// `NEO_TOOLS` (default `~/.cache/neo-tools`).
pub fn validator() -> PathBuf {
    if let Some(path) = std::env::var_os("NEO_KUBERNETES_VALIDATE") {
        return PathBuf::from(path);
    }
    let tools = std::env::var_os("NEO_TOOLS").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/neo-tools"),
        PathBuf::from,
    );
    tools.join("venv/bin/kubernetes-validate")
}

/// Checks every document of `files` against [`KUBERNETES_VERSION`]'s schemas, strictly (an
/// unknown field fails); the validator's output (one line per document, "… passed").
///
/// # Errors
/// When the validator cannot run or a document does not pass.
pub fn validate(files: &[impl AsRef<Path>]) -> Result<String, ValidateError> {
    let validator = validator();
    let output = Command::new(&validator)
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(files.iter().map(AsRef::as_ref))
        .output()
        .map_err(|source| ValidateError::Run {
            validator: validator.clone(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        Ok(text)
    } else {
        Err(ValidateError::Refused(text))
    }
}
