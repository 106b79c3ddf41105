//! Fixtures on disk: a directory tree copied, so a test can change a copy of an example.

use std::io;
use std::path::Path;

/// Copies the files under `from` into `to` (created if missing), directories recursively.
///
/// # Errors
/// When a directory cannot be read or created, or a file cannot be copied.
pub fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_nested_files() -> io::Result<()> {
        let from = tempfile::tempdir()?;
        std::fs::create_dir_all(from.path().join("a/b"))?;
        std::fs::write(from.path().join("a/b/c.txt"), "hello")?;
        std::fs::write(from.path().join("top.txt"), "top")?;
        let to = tempfile::tempdir()?;
        copy_dir(from.path(), &to.path().join("copy"))?;
        assert_eq!(
            std::fs::read_to_string(to.path().join("copy/a/b/c.txt"))?,
            "hello"
        );
        assert_eq!(
            std::fs::read_to_string(to.path().join("copy/top.txt"))?,
            "top"
        );
        Ok(())
    }
}
