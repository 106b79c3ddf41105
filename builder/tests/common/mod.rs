//! Shared helpers of the builder's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use neo_builder::project::Project;
use neo_model::{self as model, Model};

/// The repository's `examples/<name>` folder.
pub fn example_dir(name: &str) -> PathBuf {
    PathBuf::from(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("../examples")
    .join(name)
}

/// `builder/tests/fixtures/<name>`.
pub fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("tests/fixtures")
    .join(name)
}

pub fn example(name: &str) -> (Project, Model) {
    let project = Project::from_dir(&example_dir(name)).unwrap();
    let model = model::load(&project).unwrap_or_else(|diags| {
        panic!(
            "{name}: {}",
            diags
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    (project, model)
}

/// A project of one `neo.toml` and a `screens/index.html`.
pub fn manifest_project(manifest: &str) -> Project {
    Project::from_files([
        ("neo.toml".to_owned(), manifest.as_bytes().to_vec()),
        ("screens/index.html".to_owned(), b"<!doctype html>".to_vec()),
    ])
    .unwrap()
}

/// The diagnostics of loading `manifest`, as `line:column: message` strings.
pub fn errors(manifest: &str) -> Vec<String> {
    match model::load(&manifest_project(manifest)) {
        Ok(model) => panic!("expected errors, got {model:?}"),
        Err(diags) => diags
            .into_iter()
            .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
            .collect(),
    }
}
