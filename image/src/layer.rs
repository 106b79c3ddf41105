//! Image layers, byte for byte reproducible: a deterministic tar (fixed modes, mtime 0, no
//! owners), gzipped with a fixed header, and its digests.

use std::io::Write as _;

use sha2::{Digest, Sha256};

/// An image layer: a gzipped tar and its digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The compressed layer, as pushed to the registry.
    pub tar_gz: Vec<u8>,
    /// `sha256:<hex>` of `tar_gz`: the layer's digest in the manifest.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar: the layer's `diff_id` in the image config.
    pub diff_id: String,
}

impl Layer {
    /// The layer of an uncompressed `tar` (from [`tar`]): gzipped with a fixed header, with
    /// both digests.
    pub fn from_tar(tar: &[u8]) -> Self {
        Self::of(tar, gzip(tar))
    }

    /// As [`from_tar`](Self::from_tar), with the fastest compression: for layers of large
    /// binaries (Neo's own image), where compressing at the default level takes most of the
    /// time for a few percent of size. Just as reproducible.
    pub fn from_tar_fast(tar: &[u8]) -> Self {
        Self::of(tar, gzip_with(tar, flate2::Compression::fast()))
    }

    fn of(tar: &[u8], tar_gz: Vec<u8>) -> Self {
        Self {
            digest: sha256_digest(&tar_gz),
            diff_id: sha256_digest(tar),
            tar_gz,
        }
    }
}

/// `sha256:<lowercase hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One entry of a deterministic tar.
pub enum TarEntry<'a> {
    /// A folder; `path` without the trailing `/`.
    Dir { path: String },
    /// A regular file.
    File { path: String, contents: &'a [u8] },
    /// A regular file with mode 0755 (a program).
    Program { path: String, contents: &'a [u8] },
}

/// Writes `entries`, in the order given, as an uncompressed tar with fixed metadata: mode
/// 0644 for files and 0755 for folders and programs, mtime 0, uid/gid 0, no user or group names.
pub fn tar<'a>(entries: impl IntoIterator<Item = TarEntry<'a>>) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let (path, contents): (String, &[u8]) = match entry {
            TarEntry::Dir { path } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                (format!("{path}/"), &[])
            }
            TarEntry::File { path, contents } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                (path, contents)
            }
            TarEntry::Program { path, contents } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o755);
                (path, contents)
            }
        };
        header.set_size(contents.len() as u64);
        // Writing into a Vec cannot fail, and paths were validated (relative, no `..`), so
        // the builder accepts them; long paths become GNU long-name entries.
        if let Err(error) = builder.append_data(&mut header, &path, contents) {
            tracing::error!(%error, path, "cannot add an entry to an in-memory tar");
        }
    }
    builder.into_inner().unwrap_or_default()
}

/// Gzips `bytes` with a fixed header (mtime 0, no file name) and compression level.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    gzip_with(bytes, flate2::Compression::default())
}

/// Gzips `bytes` with a fixed header (mtime 0, no file name) at `level`.
fn gzip_with(bytes: &[u8], level: flate2::Compression) -> Vec<u8> {
    let mut encoder = flate2::GzBuilder::new().mtime(0).write(Vec::new(), level);
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}
