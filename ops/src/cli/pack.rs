//! The archive `neo app upload` makes of a directory: deterministic, so that the same tree always
//! has the same bytes and therefore the same revision digest.
//!
//! # Format (`neo-pack/1`)
//!
//! ```text
//! archive = MAGIC record*
//! MAGIC   = "neo-pack/1" NUL
//! record  = path NUL length NUL content
//! ```
//!
//! - `path` is the file's path relative to the directory, UTF-8, with `/` separators, never
//!   empty, never containing NUL;
//! - `length` is the content's size in bytes as ASCII decimal digits, with no leading zeros;
//! - `content` is exactly `length` bytes.
//!
//! Only regular files are stored, sorted by `path` in byte order; directories are implied by the
//! paths (empty ones are not kept); no times, owners or modes are stored. A symlink or any other
//! kind of file is an error rather than something silently left out.

use std::path::{Path, PathBuf};

/// The first bytes of every archive.
pub const MAGIC: &[u8] = b"neo-pack/1\0";

/// Why a directory could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// A directory or file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A path is not valid UTF-8.
    #[error("cannot pack {0}: the path is not UTF-8")]
    NotUtf8(PathBuf),
    /// An entry is neither a regular file nor a directory.
    #[error("cannot pack {0}: only regular files and directories can be uploaded (no symlinks)")]
    Unsupported(PathBuf),
}

/// Packs the regular files under `root` into one archive (see the module doc).
///
/// # Guarantees
///
/// The same files with the same contents give the same bytes, whatever the order they were
/// created in or the directory listing order.
///
/// # Errors
///
/// [`PackError`] for an unreadable entry, a non-UTF-8 path or an entry that is not a regular
/// file or directory.
pub fn pack_dir(root: &Path) -> Result<Vec<u8>, PackError> {
    let mut files = Vec::new();
    collect(root, "", &mut files)?;
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = MAGIC.to_vec();
    for (relative, path) in files {
        let content = std::fs::read(&path).map_err(|source| PackError::Io {
            path: path.clone(),
            source,
        })?;
        out.extend_from_slice(relative.as_bytes());
        out.push(0);
        out.extend_from_slice(content.len().to_string().as_bytes());
        out.push(0);
        out.extend_from_slice(&content);
    }
    Ok(out)
}

/// Adds the regular files under `dir` (at `prefix` relative to the root) to `files`.
fn collect(dir: &Path, prefix: &str, files: &mut Vec<(String, PathBuf)>) -> Result<(), PackError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| PackError::Io { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| PackError::NotUtf8(path.clone()))?;
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_dir() {
            collect(&path, &relative, files)?;
        } else if kind.is_file() {
            files.push((relative, path));
        } else {
            return Err(PackError::Unsupported(path));
        }
    }
    Ok(())
}

/// Splits an archive back into `(path, content)` records (for tests).
#[cfg(test)]
pub(crate) fn unpack(mut archive: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    archive = archive.strip_prefix(MAGIC)?;
    let mut records = Vec::new();
    while !archive.is_empty() {
        let end = archive.iter().position(|b| *b == 0)?;
        let path = String::from_utf8(archive[..end].to_vec()).ok()?;
        archive = &archive[end + 1..];
        let end = archive.iter().position(|b| *b == 0)?;
        let len: usize = std::str::from_utf8(&archive[..end]).ok()?.parse().ok()?;
        archive = &archive[end + 1..];
        records.push((path, archive.get(..len)?.to_vec()));
        archive = &archive[len..];
    }
    Some(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, relative: &str, content: &[u8]) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    const FILES: [(&str, &[u8]); 5] = [
        ("model.json", b"{\"entities\":[]}"),
        ("a-b", b"dash sorts before slash"),
        ("a/b/deep.txt", b"deep"),
        ("a/c.txt", b""),
        ("z.bin", &[0, 1, 2, 0, 255]),
    ];

    #[test]
    fn the_same_tree_packs_to_the_same_bytes_whatever_the_creation_order() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        for (path, content) in FILES {
            write(first.path(), path, content);
        }
        for (path, content) in FILES.iter().rev() {
            write(second.path(), path, content);
        }
        std::fs::create_dir_all(second.path().join("empty/dir")).unwrap();
        let a = pack_dir(first.path()).unwrap();
        let b = pack_dir(second.path()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn records_are_sorted_by_path_and_round_trip() {
        let root = tempfile::tempdir().unwrap();
        for (path, content) in FILES {
            write(root.path(), path, content);
        }
        let archive = pack_dir(root.path()).unwrap();
        assert!(archive.starts_with(b"neo-pack/1\0a-b\x0023\0dash"));
        let records = unpack(&archive).unwrap();
        let paths: Vec<&str> = records.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["a-b", "a/b/deep.txt", "a/c.txt", "model.json", "z.bin"]
        );
        assert_eq!(records[4].1, vec![0, 1, 2, 0, 255]);
        assert!(records[2].1.is_empty());
    }

    #[test]
    fn an_empty_directory_is_just_the_magic() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(pack_dir(root.path()).unwrap(), MAGIC);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_is_refused() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "real.txt", b"x");
        std::os::unix::fs::symlink(root.path().join("real.txt"), root.path().join("link")).unwrap();
        assert!(matches!(
            pack_dir(root.path()),
            Err(PackError::Unsupported(_))
        ));
    }
}
