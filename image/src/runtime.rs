//! The runtime layer: what a dynamically linked binary needs to start in an image that holds
//! nothing else: the dynamic loader and the shared libraries it loads (as `ldd` resolves them
//! on this machine) and the CA bundle when this machine has one. App images and Neo's own
//! platform image both start from it; without it, a container runtime that runs the image on
//! its own (Kubernetes) finds no loader and the binary does not start.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::{Layer, TarEntry};

/// The CA bundle shipped when this machine has one (HTTPS to S3, a registry, a producer).
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Why the runtime layer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A binary, a library or the CA bundle could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (part of the message, so not also a source that would print twice).
        error: std::io::Error,
    },
    /// `ldd` could not list a binary's shared libraries, or named one it cannot find.
    #[error("the shared libraries of {binary}: {message}")]
    Libraries {
        /// The binary.
        binary: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The runtime layer of `binaries` and the libraries it holds (their paths in the image).
///
/// # Guarantees
/// Reproducible: the same files give the same layer.
///
/// # Errors
/// A binary that cannot be read, a library `ldd` cannot resolve.
pub fn layer(binaries: &[&Path]) -> Result<(Layer, Vec<PathBuf>), RuntimeError> {
    let mut libraries = BTreeSet::new();
    for binary in binaries {
        // A missing file is named as such, not as what ldd makes of it.
        std::fs::metadata(binary).map_err(|error| RuntimeError::Read {
            path: binary.to_path_buf(),
            error,
        })?;
        libraries.extend(shared_libraries(binary)?);
    }
    let mut files = Vec::new();
    for library in &libraries {
        files.push((in_tar(library), read(library)?));
    }
    if Path::new(CA_BUNDLE).exists() {
        files.push((in_tar(Path::new(CA_BUNDLE)), read(Path::new(CA_BUNDLE))?));
    }
    Ok((layer_of(&files), libraries.into_iter().collect()))
}

/// The paths `ldd` prints for a binary's shared objects (the loader included, the kernel's
/// vDSO left out), in its order.
///
/// # Errors
/// The name of a library `ldd` reports as not found.
pub fn parse_ldd(output: &str) -> Result<Vec<PathBuf>, String> {
    let mut found = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let target = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    return Err(name.trim().to_owned());
                }
                rest
            }
            None => line,
        };
        // `/path (0xADDRESS)`; a name without a slash is the vDSO, which no file backs.
        let path = target.split(" (").next().unwrap_or_default().trim();
        if path.starts_with('/') {
            found.push(PathBuf::from(path));
        }
    }
    Ok(found)
}

/// The shared objects `binary` loads, as `ldd` resolves them here; none for a static binary
/// (or a script).
///
/// # Errors
/// [`RuntimeError::Libraries`] when `ldd` cannot run or a library is missing.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, RuntimeError> {
    let failed = |message: String| RuntimeError::Libraries {
        binary: binary.to_owned(),
        message,
    };
    let output = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| failed(format!("cannot run ldd: {e}")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() || stdout.contains("statically linked") {
        if stdout.contains("not a dynamic executable")
            || stderr.contains("not a dynamic executable")
            || stdout.contains("statically linked")
        {
            return Ok(Vec::new());
        }
        return Err(failed(format!(
            "ldd exited with {}: {}",
            output.status,
            stderr.trim()
        )));
    }
    parse_ldd(&stdout).map_err(|library| failed(format!("{library} not found")))
}

/// The contents of `path`.
///
/// # Errors
/// [`RuntimeError::Read`] naming the file.
pub fn read(path: &Path) -> Result<Vec<u8>, RuntimeError> {
    std::fs::read(path).map_err(|error| RuntimeError::Read {
        path: path.to_owned(),
        error,
    })
}

/// `path` as a tar entry name: relative, without its leading `/`.
pub fn in_tar(path: &Path) -> String {
    path.to_string_lossy().trim_start_matches('/').to_owned()
}

/// The folders above `files` (tar entry names), parents first, each once.
fn parent_dirs<'a>(files: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut dirs = BTreeSet::new();
    for file in files {
        let mut path = Path::new(file);
        while let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(parent.to_string_lossy().into_owned());
            path = parent;
        }
    }
    // Sorted, a folder comes before what it holds.
    dirs.into_iter().collect()
}

/// A layer holding `files` (name in the tar, contents) under their folders: programs and
/// libraries with mode 0755 (the kernel executes the loader), files under `etc/` with 0644.
/// Gzipped at the fastest level: binaries are large, and the default level would triple the
/// time for a few percent of size.
pub fn layer_of(files: &[(String, Vec<u8>)]) -> Layer {
    let dirs = parent_dirs(files.iter().map(|(name, _)| name.as_str()));
    let entries = dirs
        .into_iter()
        .map(|path| TarEntry::Dir { path })
        .chain(files.iter().map(|(name, contents)| {
            if name.starts_with("etc/") {
                TarEntry::File {
                    path: name.clone(),
                    contents,
                }
            } else {
                TarEntry::Program {
                    path: name.clone(),
                    contents,
                }
            }
        }));
    Layer::from_tar_fast(&crate::layer::tar(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_loader_and_libraries_without_the_vdso() {
        let output = "\tlinux-vdso.so.1 (0x00007ffd4a5f2000)\n\
                      \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0e1c2a1000)\n\
                      \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e1c0c0000)\n\
                      \t/lib64/ld-linux-x86-64.so.2 (0x00007f0e1c2d8000)\n";
        assert_eq!(
            parse_ldd(output),
            Ok(vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ])
        );
        assert_eq!(
            parse_ldd("\tlibssl.so.3 => not found\n"),
            Err("libssl.so.3".to_owned())
        );
    }

    #[test]
    fn folders_come_before_what_they_hold_and_once() {
        assert_eq!(
            parent_dirs([
                "usr/local/bin/neo",
                "lib64/ld.so",
                "usr/local/bin/neo-apphost"
            ]),
            ["lib64", "usr", "usr/local", "usr/local/bin"]
        );
    }

    #[test]
    fn a_script_needs_no_library_and_a_missing_binary_is_named() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let script = dir.path().join("run");
        std::fs::write(&script, "#!/bin/sh\n").expect("a script");
        let (_, libraries) = layer(&[&script]).expect("a layer");
        assert!(libraries.is_empty());
        let missing = dir.path().join("missing");
        let error = layer(&[&missing]).expect_err("no such binary").to_string();
        assert!(error.contains("missing"), "{error}");
    }
}
