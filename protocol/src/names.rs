//! Validated names (tenant, app, stage) and entity ids: nothing unvalidated reaches a subject.
//!
//! A name is 1 to 63 characters of `a-z`, `0-9` and `-`, starting with a letter and not ending
//! with `-`. So it is a single, wildcard-free NATS subject token and a valid KV key part: `a.b`,
//! `*`, `>`, or a name with spaces can never be built into a subject.

use std::fmt;

/// The longest name accepted.
pub const MAX_NAME_LEN: usize = 63;
/// The longest command, correlation or causation id accepted.
pub const MAX_ID_LEN: usize = 128;

/// Why a name or id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("{what} must not be empty")]
    Empty {
        /// What was being named (`tenant`, `app`, …).
        what: &'static str,
    },
    /// The name is longer than allowed.
    #[error("{what} `{value}` is {len} characters long; the limit is {max}")]
    TooLong {
        /// What was being named.
        what: &'static str,
        /// The refused value (truncated).
        value: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name holds a character outside the allowed set, or is badly shaped.
    #[error("{what} `{value}` is invalid: {reason}")]
    Invalid {
        /// What was being named.
        what: &'static str,
        /// The refused value (truncated).
        value: String,
        /// What rule it broke.
        reason: &'static str,
    },
}

fn shown(value: &str) -> String {
    value.chars().take(80).collect()
}

/// Checks `value` against the name rules; `what` names it in the error.
pub fn validate_name(what: &'static str, value: &str) -> Result<(), NameError> {
    check_word(
        what,
        value,
        b'-',
        "only lowercase letters, digits and `-` are allowed",
    )?;
    if value.ends_with('-') {
        return Err(NameError::Invalid {
            what,
            value: shown(value),
            reason: "it must not end with `-`",
        });
    }
    Ok(())
}

/// Checks a setting or secret name: `[a-z][a-z0-9_]{0,62}` (the app model's rule for field,
/// setting and secret names, so each is an environment variable suffix and one KV key token).
pub fn validate_setting_name(what: &'static str, value: &str) -> Result<(), NameError> {
    check_word(
        what,
        value,
        b'_',
        "only lowercase letters, digits and `_` are allowed",
    )
}

/// 1 to [`MAX_NAME_LEN`] bytes of lowercase letters, digits and `separator`, starting with a
/// letter.
fn check_word(
    what: &'static str,
    value: &str,
    separator: u8,
    charset: &'static str,
) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty { what });
    }
    if value.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            what,
            value: shown(value),
            len: value.len(),
            max: MAX_NAME_LEN,
        });
    }
    let invalid = |reason| NameError::Invalid {
        what,
        value: shown(value),
        reason,
    };
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == separator)
    {
        return Err(invalid(charset));
    }
    if !value.as_bytes()[0].is_ascii_lowercase() {
        return Err(invalid("it must start with a lowercase letter"));
    }
    Ok(())
}

/// Checks a command, correlation or causation id: 1 to 128 characters of `A-Z a-z 0-9 - _ : .`.
pub fn validate_id(what: &'static str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty { what });
    }
    if value.len() > MAX_ID_LEN {
        return Err(NameError::TooLong {
            what,
            value: shown(value),
            len: value.len(),
            max: MAX_ID_LEN,
        });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.'))
    {
        return Err(NameError::Invalid {
            what,
            value: shown(value),
            reason: "only letters, digits, `-`, `_`, `:` and `.` are allowed",
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(String);

        impl $ty {
            /// Validates `value` as a name of this kind.
            pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
                let value = value.into();
                validate_name($what, &value)?;
                Ok(Self(value))
            }

            /// The name as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A tenant's name, which is also its entity id.
    TenantName,
    "tenant"
);
name_type!(
    /// An app's name within its tenant, which is also its entity id.
    AppName,
    "app"
);
name_type!(
    /// A stage's name (`dev`, `test`, `prod`, …).
    StageName,
    "stage"
);

/// The id of one entity within its tenant and kind; always a single subject token.
///
/// - tenant: the tenant name; app: the app name;
/// - build: `{app}_r{revision}` (one build entity per revision, attempts inside);
/// - deployment and podgroup: `{app}_{stage}`.
///
/// `_` never occurs in a name, so the parts are unambiguous.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityId(String);

impl EntityId {
    /// The id of a tenant entity.
    pub fn tenant(name: &TenantName) -> Self {
        Self(name.0.clone())
    }

    /// The id of an app entity.
    pub fn app(name: &AppName) -> Self {
        Self(name.0.clone())
    }

    /// The id of the build entity of one app revision.
    pub fn build(app: &AppName, revision: u32) -> Self {
        Self(format!("{}_r{revision}", app.0))
    }

    /// The id of the deployment entity of an app on a stage.
    pub fn deployment(app: &AppName, stage: &StageName) -> Self {
        Self(format!("{}_{}", app.0, stage.0))
    }

    /// The id of the podgroup entity of an app on a stage (same shape as the deployment's).
    pub fn podgroup(app: &AppName, stage: &StageName) -> Self {
        Self::deployment(app, stage)
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses an id of the given shape: `"name"`, `"build"` or `"app_stage"`.
    pub(crate) fn parse(shape: IdShape, value: &str) -> Result<Self, NameError> {
        match shape {
            IdShape::Name(what) => validate_name(what, value)?,
            IdShape::Build => {
                let (app, revision) = value.rsplit_once("_r").ok_or(NameError::Invalid {
                    what: "build id",
                    value: shown(value),
                    reason: "expected `{app}_r{revision}`",
                })?;
                validate_name("app", app)?;
                parse_revision(value, revision)?;
            }
            IdShape::AppStage(what) => {
                let (app, stage) = value.split_once('_').ok_or(NameError::Invalid {
                    what,
                    value: shown(value),
                    reason: "expected `{app}_{stage}`",
                })?;
                validate_name("app", app)?;
                validate_name("stage", stage)?;
            }
        }
        Ok(Self(value.to_owned()))
    }

    /// Splits a `{app}_{stage}` id into its parts.
    pub fn app_and_stage(&self) -> Option<(AppName, StageName)> {
        let (app, stage) = self.0.split_once('_')?;
        Some((AppName::new(app).ok()?, StageName::new(stage).ok()?))
    }

    /// Splits a `{app}_r{revision}` id into its parts.
    pub fn app_and_revision(&self) -> Option<(AppName, u32)> {
        let (app, revision) = self.0.rsplit_once("_r")?;
        Some((AppName::new(app).ok()?, revision.parse().ok()?))
    }
}

fn parse_revision(value: &str, revision: &str) -> Result<u32, NameError> {
    let bad = || NameError::Invalid {
        what: "build id",
        value: shown(value),
        reason: "the revision must be a number from 1",
    };
    if revision.starts_with('0') || revision.is_empty() {
        return Err(bad());
    }
    revision.parse::<u32>().map_err(|_| bad())
}

/// The shape of an entity id, per kind.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IdShape {
    Name(&'static str),
    Build,
    AppStage(&'static str),
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["a", "acme", "shop-2", "x1", &"a".repeat(63)] {
            assert!(TenantName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_names_that_could_break_a_subject() {
        for bad in [
            "", "a.b", "*", ">", "a b", "A", "1abc", "abc-", "a_b", "é", "a\tb", "a>",
        ] {
            assert!(AppName::new(bad).is_err(), "{bad:?} was accepted");
        }
        let long = "a".repeat(64);
        assert!(matches!(
            StageName::new(long),
            Err(NameError::TooLong { len: 64, .. })
        ));
    }

    #[test]
    fn errors_name_what_was_refused() {
        let err = TenantName::new("a.b").unwrap_err().to_string();
        assert!(err.contains("tenant `a.b`"), "{err}");
    }

    #[test]
    fn composite_ids_round_trip() {
        let app = AppName::new("shop").unwrap();
        let stage = StageName::new("prod").unwrap();
        let dep = EntityId::deployment(&app, &stage);
        assert_eq!(dep.as_str(), "shop_prod");
        assert_eq!(dep.app_and_stage(), Some((app.clone(), stage)));
        let build = EntityId::build(&app, 12);
        assert_eq!(build.as_str(), "shop_r12");
        assert_eq!(build.app_and_revision(), Some((app, 12)));
        assert!(EntityId::parse(IdShape::Build, "shop_r0").is_err());
        assert!(EntityId::parse(IdShape::Build, "shop_rx").is_err());
        assert!(EntityId::parse(IdShape::AppStage("deployment id"), "shop").is_err());
        assert!(EntityId::parse(IdShape::AppStage("deployment id"), "shop_a.b").is_err());
    }

    #[test]
    fn command_ids_are_bounded() {
        assert!(validate_id("command id", "0b4f-aa:1").is_ok());
        assert!(validate_id("command id", "").is_err());
        assert!(validate_id("command id", "a b").is_err());
        assert!(validate_id("command id", &"x".repeat(129)).is_err());
    }
}
