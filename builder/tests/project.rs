//! Projects: read from a folder, packed deterministically, unpacked safely.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;

use common::example_dir;
use neo_builder::project::{Project, ProjectError};

/// A raw tar.gz with one entry built by hand (to smuggle in what `pack` never writes).
fn raw_tar_gz(path: &[u8], kind: tar::EntryType, contents: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    {
        let bytes = header.as_old_mut();
        bytes.name[..path.len()].copy_from_slice(path);
    }
    header.set_entry_type(kind);
    header.set_size(contents.len() as u64);
    header.set_mode(0o644);
    if kind == tar::EntryType::Symlink {
        header.set_link_name("/etc/passwd").unwrap();
    }
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, contents).unwrap();
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

#[test]
fn pack_is_deterministic() {
    let dir = example_dir("orders");
    let a = Project::from_dir(&dir).unwrap();
    let first = a.pack();
    assert_eq!(first, a.pack());
    assert_eq!(first, Project::from_dir(&dir).unwrap().pack());

    // A copy elsewhere, with fresh mtimes and junk to skip, packs to the same bytes.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("orders-copy");
    neo_harness::copy_dir(&dir, &copy).unwrap();
    std::fs::create_dir_all(copy.join(".git")).unwrap();
    std::fs::write(copy.join(".git/HEAD"), "ref").unwrap();
    std::fs::write(copy.join(".DS_Store"), "junk").unwrap();
    std::fs::create_dir_all(copy.join("target/debug")).unwrap();
    std::fs::write(copy.join("target/debug/x"), "junk").unwrap();
    let b = Project::from_dir(&copy).unwrap();
    assert_eq!(b, a);
    assert_eq!(b.pack(), first);
    assert_eq!(b.digest(), a.digest());
    assert!(a.digest().starts_with("sha256:") && a.digest().len() == 71);
    let paths: Vec<_> = a.files().keys().cloned().collect();
    assert_eq!(paths, ["neo.toml", "screens/summary.html"]);
}

#[test]
fn pack_writes_fixed_metadata() {
    let project = Project::from_files([
        ("b.txt".to_owned(), b"b".to_vec()),
        ("a/long/".to_owned() + &"x".repeat(150), b"long".to_vec()),
    ])
    .unwrap();
    let packed = project.pack();
    assert_eq!(&packed[4..8], &[0, 0, 0, 0], "gzip mtime is 0");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(packed.as_slice()));
    let mut paths = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let h = entry.header();
        assert_eq!(h.mtime().unwrap(), 0);
        assert_eq!(h.mode().unwrap(), 0o644);
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
        assert_eq!(h.username().unwrap(), Some(""));
        paths.push(entry.path().unwrap().to_string_lossy().into_owned());
    }
    assert_eq!(paths[1], "b.txt");
    assert_eq!(Project::unpack(&packed).unwrap(), project);
}

#[test]
fn unpack_reverses_pack() {
    let project = Project::from_dir(&example_dir("catalog")).unwrap();
    assert_eq!(Project::unpack(&project.pack()).unwrap(), project);
    let empty = Project::default();
    assert_eq!(Project::unpack(&empty.pack()).unwrap(), empty);
}

#[test]
fn unpack_refuses_escapes_links_and_garbage() {
    let err = Project::unpack(&raw_tar_gz(b"../x", tar::EntryType::Regular, b"x")).unwrap_err();
    assert!(matches!(err, ProjectError::InvalidPath { .. }), "{err}");
    assert!(err.to_string().contains("`..`"), "{err}");

    let err = Project::unpack(&raw_tar_gz(b"/etc/x", tar::EntryType::Regular, b"x")).unwrap_err();
    assert!(err.to_string().contains("absolute"), "{err}");

    let err = Project::unpack(&raw_tar_gz(b"link", tar::EntryType::Symlink, b"")).unwrap_err();
    assert!(matches!(err, ProjectError::Symlink { .. }), "{err}");

    let err = Project::unpack(&raw_tar_gz(b"dev", tar::EntryType::Char, b"")).unwrap_err();
    assert!(matches!(err, ProjectError::NotRegular { .. }), "{err}");

    for garbage in [
        &b""[..],
        b"hello",
        &[0x1f, 0x8b, 8, 0, 1, 2, 3],
        &[0u8; 1024],
    ] {
        let err = Project::unpack(garbage).unwrap_err();
        assert!(matches!(err, ProjectError::Archive { .. }), "{err}");
    }
    // A valid gzip of something that is not a tar.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&[7u8; 700]).unwrap();
    let err = Project::unpack(&gz.finish().unwrap()).unwrap_err();
    assert!(matches!(err, ProjectError::Archive { .. }), "{err}");
    // A truncated pack.
    let packed = Project::from_dir(&example_dir("catalog")).unwrap().pack();
    assert!(Project::unpack(&packed[..packed.len() / 2]).is_err());
}

#[test]
fn from_files_validates_paths() {
    for (path, why) in [
        ("/abs", "absolute"),
        ("a/../b", "`..`"),
        ("./a", "`.`"),
        ("a//b", "empty"),
        ("a\\b", "backslash"),
        ("", "empty"),
    ] {
        let err = Project::from_files([(path.to_owned(), vec![])]).unwrap_err();
        assert!(err.to_string().contains(why), "{path}: {err}");
    }
    let err =
        Project::from_files([("a".to_owned(), vec![]), ("a/b".to_owned(), vec![])]).unwrap_err();
    assert!(matches!(err, ProjectError::FileAndFolder { .. }), "{err}");
    let err =
        Project::from_files([("a".to_owned(), vec![]), ("a".to_owned(), vec![])]).unwrap_err();
    assert!(matches!(err, ProjectError::Duplicate { .. }), "{err}");
    let files = (0..=neo_builder::project::MAX_FILES).map(|i| (format!("f{i}"), vec![]));
    assert!(matches!(
        Project::from_files(files).unwrap_err(),
        ProjectError::TooManyFiles { .. }
    ));
}

#[cfg(unix)]
#[test]
fn from_dir_refuses_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("neo.toml"), "name = \"a\"").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("passwd")).unwrap();
    let err = Project::from_dir(tmp.path()).unwrap_err();
    assert!(
        matches!(err, ProjectError::Symlink { ref path } if path == "passwd"),
        "{err}"
    );
}
