//! Reading the bundle the Build Service put at `/app/bundle`: the model, the migrations, the screens.

use std::path::{Path, PathBuf};

use crate::model::{Model, ModelError, RawModel};

/// Why a bundle cannot be loaded. The binary exits with code 2 on any of these.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file of the bundle could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `model.json` is not valid JSON of the expected shape.
    #[error("{path} is not a valid model: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// `model.json` parses but cannot be served.
    #[error("{path}: {source}")]
    Model {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: ModelError,
    },
}

/// One SQL migration file.
#[derive(Debug, Clone)]
pub struct Migration {
    /// The file name, e.g. `0001_schema.sql`; migrations apply in name order.
    pub name: String,
    /// The SQL text.
    pub sql: String,
}

/// A loaded bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle's directory.
    pub dir: PathBuf,
    /// The checked model.
    pub model: Model,
    /// The migrations, sorted by name.
    pub migrations: Vec<Migration>,
}

impl Bundle {
    /// Reads `model.json` and `migrations/*.sql` from `dir`.
    ///
    /// # Errors
    /// A missing or invalid `model.json`, or an unreadable migration.
    pub fn load(dir: &Path) -> Result<Self, BundleError> {
        let model_path = dir.join("model.json");
        let text = std::fs::read_to_string(&model_path).map_err(|source| BundleError::Read {
            path: model_path.clone(),
            source,
        })?;
        let raw: RawModel = serde_json::from_str(&text).map_err(|source| BundleError::Parse {
            path: model_path.clone(),
            source,
        })?;
        let model = Model::resolve(raw).map_err(|source| BundleError::Model {
            path: model_path,
            source,
        })?;
        let migrations = read_migrations(&dir.join("migrations"))?;
        Ok(Self {
            dir: dir.to_owned(),
            model,
            migrations,
        })
    }

    /// The directory of the static screens.
    pub fn screens_dir(&self) -> PathBuf {
        self.dir.join("screens")
    }
}

fn read_migrations(dir: &Path) -> Result<Vec<Migration>, BundleError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(BundleError::Read {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut migrations = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| BundleError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if !name.ends_with(".sql") || !path.is_file() {
            continue;
        }
        let sql =
            std::fs::read_to_string(&path).map_err(|source| BundleError::Read { path, source })?;
        migrations.push(Migration { name, sql });
    }
    migrations.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(migrations)
}
