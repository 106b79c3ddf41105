//! A project folder as files in memory, packed and unpacked as a deterministic `.tar.gz`.
//!
//! A [`Project`] maps relative, `/`-separated paths to file contents. Every way in
//! ([`Project::from_dir`], [`Project::from_files`], [`Project::unpack`]) validates the paths
//! and applies the same limits ([`MAX_FILES`], [`MAX_TOTAL_BYTES`]), so a `Project` is always
//! safe to write back to disk under a directory of one's choosing.
//!
//! [`Project::pack`] is deterministic: the same files give the same bytes, so the `sha256`
//! digest of a pack ([`Project::digest`]) names the content.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use neo_image::layer::{TarEntry, gzip, sha256_digest, tar};

/// The most files a project may hold.
pub const MAX_FILES: usize = 10_000;
/// The most bytes a project's files may hold together (64 MiB).
pub const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;
/// The longest path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 1024;

/// Why a project could not be read, built or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// Reading the folder failed.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The file or folder being read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The folder holds a symbolic link; projects hold regular files only.
    #[error("`{path}` is a symbolic link; a project holds regular files only")]
    Symlink {
        /// The link's relative path.
        path: String,
    },
    /// The folder or archive holds something that is not a regular file or a directory.
    #[error("`{path}` is not a regular file; a project holds regular files only")]
    NotRegular {
        /// The entry's relative path.
        path: String,
    },
    /// A file name is not valid UTF-8.
    #[error("`{}` is not a UTF-8 path", path.display())]
    NonUtf8Path {
        /// The offending path.
        path: PathBuf,
    },
    /// A path is absolute, escapes the project, or is otherwise malformed.
    #[error("invalid path `{path}`: {reason}")]
    InvalidPath {
        /// The offending path (truncated to 200 characters).
        path: String,
        /// The rule it broke.
        reason: &'static str,
    },
    /// The same path appears twice.
    #[error("`{path}` appears twice")]
    Duplicate {
        /// The repeated path.
        path: String,
    },
    /// A path is used both as a file and as a folder.
    #[error("`{path}` is both a file and a folder")]
    FileAndFolder {
        /// The path used both ways.
        path: String,
    },
    /// More than [`MAX_FILES`] files.
    #[error("a project holds at most {limit} files")]
    TooManyFiles {
        /// The limit.
        limit: usize,
    },
    /// More than [`MAX_TOTAL_BYTES`] bytes.
    #[error("a project holds at most {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The bytes are not a valid `.tar.gz`.
    #[error("not a valid .tar.gz archive: {source}")]
    Archive {
        /// What the reader reported.
        source: io::Error,
    },
}

/// The files of an app project: relative `/`-separated paths to contents, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Project {
    files: BTreeMap<String, Vec<u8>>,
}

impl Project {
    /// Reads a project folder.
    ///
    /// Skips dot-files and dot-folders (`.git`, `.DS_Store`, …) at any depth and the `target/`
    /// folder at the root.
    ///
    /// # Errors
    ///
    /// An I/O error, a symbolic link, a special file, a non-UTF-8 name, or a limit exceeded.
    pub fn from_dir(dir: &Path) -> Result<Project, ProjectError> {
        let mut files = Vec::new();
        let mut total = 0u64;
        walk(dir, "", &mut files, &mut total)?;
        Project::from_files(files)
    }

    /// Builds a project from `(path, contents)` pairs.
    ///
    /// # Errors
    ///
    /// A path that is absolute, holds `.`/`..`/empty components, a backslash or a control
    /// character; a duplicate path; a path used as both file and folder; a limit exceeded.
    pub fn from_files(
        files: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<Project, ProjectError> {
        let mut map = BTreeMap::new();
        let mut total = 0u64;
        for (path, contents) in files {
            validate_path(&path)?;
            total += contents.len() as u64;
            if total > MAX_TOTAL_BYTES {
                return Err(ProjectError::TooLarge {
                    limit: MAX_TOTAL_BYTES,
                });
            }
            if map.len() >= MAX_FILES {
                return Err(ProjectError::TooManyFiles { limit: MAX_FILES });
            }
            if map.insert(path.clone(), contents).is_some() {
                return Err(ProjectError::Duplicate { path });
            }
        }
        for path in map.keys() {
            let mut prefix = String::new();
            for component in path.split('/') {
                if !prefix.is_empty() && map.contains_key(&prefix) {
                    return Err(ProjectError::FileAndFolder { path: prefix });
                }
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(component);
            }
        }
        Ok(Project { files: map })
    }

    /// All files, sorted by path.
    pub fn files(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.files
    }

    /// The contents of the file at `path`, if any.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// Packs the files as a deterministic `.tar.gz`.
    ///
    /// # Guarantees
    ///
    /// Entries sorted by path, regular files only, mode 0644, mtime 0, uid/gid 0, no user or
    /// group names; gzip header mtime 0. The same files give the same bytes.
    pub fn pack(&self) -> Vec<u8> {
        let entries = self.files.iter().map(|(path, contents)| TarEntry::File {
            path: path.clone(),
            contents,
        });
        gzip(&tar(entries))
    }

    /// `sha256:<hex>` of [`Project::pack`]: the content digest of the project.
    pub fn digest(&self) -> String {
        sha256_digest(&self.pack())
    }

    /// Unpacks a `.tar.gz` made by [`Project::pack`] (or any tar of regular files).
    ///
    /// Directory entries are accepted and ignored.
    ///
    /// # Errors
    ///
    /// Bytes that are not a `.tar.gz`, an entry that is not a regular file or a directory
    /// (symbolic or hard link, device, …), an invalid path (absolute, `..`), a duplicate, or a
    /// limit exceeded. Never panics on malformed input.
    pub fn unpack(bytes: &[u8]) -> Result<Project, ProjectError> {
        let archive_err = |source| ProjectError::Archive { source };
        if !bytes.starts_with(&[0x1f, 0x8b]) {
            return Err(archive_err(io::Error::new(
                io::ErrorKind::InvalidData,
                "it does not start with a gzip header",
            )));
        }
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        let mut files = Vec::new();
        let mut total = 0u64;
        let mut entries_seen = 0usize;
        for entry in archive.entries().map_err(archive_err)? {
            let mut entry = entry.map_err(archive_err)?;
            entries_seen += 1;
            if entries_seen > 2 * MAX_FILES {
                return Err(ProjectError::TooManyFiles { limit: MAX_FILES });
            }
            let raw_path = entry.path_bytes();
            let path = String::from_utf8(raw_path.into_owned()).map_err(|e| {
                ProjectError::InvalidPath {
                    path: shown(&String::from_utf8_lossy(e.as_bytes())),
                    reason: "it is not UTF-8",
                }
            })?;
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                validate_path(path.trim_end_matches('/'))?;
                continue;
            }
            if kind.is_pax_global_extensions() {
                continue;
            }
            if kind.is_symlink() {
                return Err(ProjectError::Symlink { path: shown(&path) });
            }
            if !(kind.is_file() || kind.is_contiguous()) {
                return Err(ProjectError::NotRegular { path: shown(&path) });
            }
            validate_path(&path)?;
            if files.len() >= MAX_FILES {
                return Err(ProjectError::TooManyFiles { limit: MAX_FILES });
            }
            let size = entry.size();
            total = total.saturating_add(size);
            if total > MAX_TOTAL_BYTES {
                return Err(ProjectError::TooLarge {
                    limit: MAX_TOTAL_BYTES,
                });
            }
            let mut contents = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            entry.read_to_end(&mut contents).map_err(archive_err)?;
            files.push((path, contents));
        }
        Project::from_files(files)
    }
}

/// Walks `dir` (at relative path `rel`), collecting regular files.
fn walk(
    dir: &Path,
    rel: &str,
    files: &mut Vec<(String, Vec<u8>)>,
    total: &mut u64,
) -> Result<(), ProjectError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ProjectError::Io { path, source }
    };
    let mut children = Vec::new();
    for child in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let child = child.map_err(io_err(dir))?;
        let name = child.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| ProjectError::NonUtf8Path { path: child.path() })?;
        if name.starts_with('.') || (rel.is_empty() && name == "target") {
            continue;
        }
        children.push((name.to_owned(), child.path()));
    }
    children.sort();
    for (name, path) in children {
        let child_rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let meta = std::fs::symlink_metadata(&path).map_err(io_err(&path))?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            return Err(ProjectError::Symlink { path: child_rel });
        } else if kind.is_dir() {
            walk(&path, &child_rel, files, total)?;
        } else if kind.is_file() {
            *total += meta.len();
            if *total > MAX_TOTAL_BYTES {
                return Err(ProjectError::TooLarge {
                    limit: MAX_TOTAL_BYTES,
                });
            }
            if files.len() >= MAX_FILES {
                return Err(ProjectError::TooManyFiles { limit: MAX_FILES });
            }
            let contents = std::fs::read(&path).map_err(io_err(&path))?;
            files.push((child_rel, contents));
        } else {
            return Err(ProjectError::NotRegular { path: child_rel });
        }
    }
    Ok(())
}

/// Checks that `path` is a relative, normalised, `/`-separated path.
fn validate_path(path: &str) -> Result<(), ProjectError> {
    let invalid = |reason| ProjectError::InvalidPath {
        path: shown(path),
        reason,
    };
    if path.is_empty() {
        return Err(invalid("it is empty"));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(invalid("it is longer than 1024 bytes"));
    }
    if path.starts_with('/') {
        return Err(invalid("it is absolute"));
    }
    if path.contains('\\') {
        return Err(invalid("it holds a backslash; use `/`"));
    }
    if path.chars().any(char::is_control) {
        return Err(invalid("it holds a control character"));
    }
    for component in path.split('/') {
        match component {
            "" => return Err(invalid("it holds an empty component")),
            "." => return Err(invalid("it holds a `.` component")),
            ".." => return Err(invalid("it holds a `..` component")),
            _ => {}
        }
    }
    Ok(())
}

fn shown(value: &str) -> String {
    value.chars().take(200).collect()
}

/// The model reads a project's manifest and screens through this.
impl neo_model::ProjectFiles for Project {
    fn file(&self, path: &str) -> Option<&[u8]> {
        Project::file(self, path)
    }
}
