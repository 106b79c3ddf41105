//! The CLI's config file: the gateway endpoint, tenant, user, token and CA saved by `neo login`.
//!
//! It is TOML at `--config`, `$NEO_CONFIG`, `$XDG_CONFIG_HOME/neo/config.toml` or
//! `~/.config/neo/config.toml`, written atomically (a temporary file renamed over it) with mode
//! 0600 because it holds a bearer token; missing directories are created (mode 0700).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The saved settings; every field is optional and unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The gateway URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The tenant commands act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The user who logged in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The bearer token from the last login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A PEM CA file that verifies the gateway's TLS certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

/// Why the config file could not be found, read or written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither `XDG_CONFIG_HOME` nor `HOME` is set, so there is no default path.
    #[error("no config path: set HOME, XDG_CONFIG_HOME or pass --config")]
    NoDefaultPath,
    /// The file exists but could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("the config file {path} is invalid: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error.
        source: toml::de::Error,
    },
    /// The file or its directory could not be written.
    #[error("cannot write the config file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config could not be encoded (cannot happen with these field types).
    #[error("cannot encode the config: {0}")]
    Encode(#[from] toml::ser::Error),
}

/// The default config path: `$XDG_CONFIG_HOME/neo/config.toml` when that is an absolute path,
/// else `$HOME/.config/neo/config.toml`.
pub fn default_path() -> Result<PathBuf, ConfigError> {
    default_path_from(
        std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

/// [`default_path`] from given variable values (pure, for tests).
fn default_path_from(
    xdg_config_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Result<PathBuf, ConfigError> {
    let base = match (xdg_config_home, home) {
        (Some(xdg), _) if xdg.is_absolute() => xdg,
        (_, Some(home)) if !home.as_os_str().is_empty() => home.join(".config"),
        _ => return Err(ConfigError::NoDefaultPath),
    };
    Ok(base.join("neo").join("config.toml"))
}

impl Config {
    /// Reads the config at `path`; a missing file is the empty config.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes the config to `path` atomically with mode 0600, creating its directory.
    ///
    /// # Guarantees
    ///
    /// Readers see the old file or the new one, never a partial one; the token is never in a
    /// file readable by others.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Write`] when the directory or file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let text = toml::to_string_pretty(self)?;
        let write_err = |source| ConfigError::Write {
            path: path.to_owned(),
            source,
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        create_private_dir(&dir).map_err(write_err)?;
        let mut file = tempfile::Builder::new()
            .prefix(".config.toml.")
            .tempfile_in(&dir)
            .map_err(write_err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            file.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(write_err)?;
        }
        file.write_all(text.as_bytes()).map_err(write_err)?;
        file.as_file().sync_all().map_err(write_err)?;
        file.persist(path).map_err(|e| write_err(e.error))?;
        Ok(())
    }
}

/// Creates `dir` and its missing parents, the new ones with mode 0700.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Config {
        Config {
            endpoint: Some("https://neo.example.com:443".into()),
            tenant: Some("acme".into()),
            user: Some("alice".into()),
            token: Some("eyJ.secret.token".into()),
            ca_cert: Some(PathBuf::from("/etc/neo/ca.pem")),
        }
    }

    #[test]
    fn round_trips_through_a_new_directory_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/neo/config.toml");
        sample().save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), sample());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dir_mode = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dir_mode & 0o777, 0o700);
        }
    }

    #[test]
    fn saving_again_replaces_the_file_and_drops_cleared_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        sample().save(&path).unwrap();
        let logged_out = Config {
            token: None,
            ..sample()
        };
        logged_out.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), logged_out);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("token"), "{text}");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    #[test]
    fn a_missing_file_is_the_empty_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(&dir.path().join("absent.toml")).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn unknown_fields_are_ignored_and_bad_toml_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "endpoint = \"http://x\"\ncolour = true\n").unwrap();
        let config = Config::load(&path).unwrap();
        assert_eq!(config.endpoint.as_deref(), Some("http://x"));
        std::fs::write(&path, "endpoint = [").unwrap();
        assert!(matches!(
            Config::load(&path),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn the_default_path_prefers_an_absolute_xdg_config_home() {
        let xdg = default_path_from(Some("/x/cfg".into()), Some("/home/a".into())).unwrap();
        assert_eq!(xdg, PathBuf::from("/x/cfg/neo/config.toml"));
        let relative = default_path_from(Some("cfg".into()), Some("/home/a".into())).unwrap();
        assert_eq!(relative, PathBuf::from("/home/a/.config/neo/config.toml"));
        assert!(matches!(
            default_path_from(None, None),
            Err(ConfigError::NoDefaultPath)
        ));
    }
}
