//! An image's root file system on disk, and a program run inside it as a container would: in a
//! chroot where this process may make one (root, as CI runs), else through the tree's own
//! dynamic loader and libraries. Either way nothing of this machine's libraries is used.

use std::collections::BTreeMap;
use std::io::{self, Read as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

/// An image's files: path in the image (no leading `/`) → (mode, contents).
pub type Files = BTreeMap<String, (u32, Vec<u8>)>;

/// The files of a gzipped tar layer (folders left out).
///
/// # Errors
/// When the layer is not a gzipped tar.
pub fn unpack(tar_gz: &[u8]) -> io::Result<Files> {
    let mut files = Files::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tar_gz));
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let mode = entry.header().mode()?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents)?;
        files.insert(path, (mode, contents));
    }
    Ok(files)
}

/// Writes `files` under `root` with their modes.
///
/// # Errors
/// When a file or folder cannot be written.
pub fn write_tree(root: &Path, files: &Files) -> io::Result<()> {
    for (path, (mode, contents)) in files {
        let file = root.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, contents)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))?;
    }
    Ok(())
}

/// Runs `program` (a path in the image) with `args` inside `root`, which holds `files`, with an
/// empty environment.
///
/// # Errors
/// When neither a chroot nor the tree's loader can run it (no loader in a tree whose program
/// needs one: the error says so).
pub fn run_inside(root: &Path, files: &Files, program: &str, args: &[&str]) -> io::Result<Output> {
    // By its path: the child's environment, where a bare name is looked up, is cleared.
    let chroot = ["/usr/sbin/chroot", "/sbin/chroot"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .unwrap_or("chroot");
    let chrooted = Command::new(chroot)
        .arg(root)
        .arg(program)
        .args(args)
        .env_clear()
        .output();
    if let Ok(output) = &chrooted
        && output.status.success()
    {
        return chrooted;
    }
    tracing::info!(
        ?chrooted,
        "no chroot here; running through the image's loader instead"
    );
    let loader = files
        .keys()
        .find(|path| {
            Path::new(path)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ld-linux"))
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no dynamic loader (ld-linux*) in the image; chroot said {chrooted:?}"),
            )
        })?;
    let library_dirs: Vec<String> = files
        .keys()
        .filter(|path| path.contains(".so"))
        .filter_map(|path| Path::new(path).parent())
        .map(|dir| root.join(dir).display().to_string())
        .collect();
    Command::new(root.join(loader))
        .arg("--library-path")
        .arg(library_dirs.join(":"))
        .arg(root.join(program.trim_start_matches('/')))
        .args(args)
        .env_clear()
        .output()
}
