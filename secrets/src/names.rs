//! [`SecretName`] (`[a-z][a-z0-9_]*`) and the keys and checks built from validated names (pure).

use std::fmt;

use neo_protocol::names::validate_setting_name;
use neo_protocol::{AppName, NameError, StageName, TenantName};

/// The longest principal (`changed_by`) accepted.
pub const MAX_PRINCIPAL_LEN: usize = 256;

/// A secret's name within one app on one stage: 1 to 63 characters of `a-z`, `0-9` and `_`,
/// starting with a letter (so it maps to an environment variable and is one KV key token).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretName(String);

impl SecretName {
    /// Validates `value` as a secret name.
    pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
        let value = value.into();
        validate_setting_name("secret name", &value)?;
        Ok(SecretName(value))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SecretName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SecretName::new(s)
    }
}

/// Checks a principal recorded as `changed_by`: 1 to 256 characters, no control characters.
pub(crate) fn validate_principal(by: &str) -> Result<(), NameError> {
    let what = "principal";
    if by.is_empty() {
        return Err(NameError::Empty { what });
    }
    if by.len() > MAX_PRINCIPAL_LEN {
        return Err(NameError::TooLong {
            what,
            value: by.chars().take(80).collect(),
            len: by.len(),
            max: MAX_PRINCIPAL_LEN,
        });
    }
    if by.chars().any(char::is_control) {
        return Err(NameError::Invalid {
            what,
            value: by.chars().filter(|c| !c.is_control()).take(80).collect(),
            reason: "control characters are not allowed",
        });
    }
    Ok(())
}

/// `{tenant}.{app}.{stage}.{name}`: the key of one secret in the secrets bucket.
pub(crate) fn secret_key(
    tenant: &TenantName,
    app: &AppName,
    stage: &StageName,
    name: &SecretName,
) -> String {
    format!("{tenant}.{app}.{stage}.{name}")
}

/// The parts of a secret key, `None` when it is not `{tenant}.{app}.{stage}.{name}` of valid
/// names.
pub(crate) fn parse_secret_key(key: &str) -> Option<(TenantName, AppName, StageName, SecretName)> {
    let mut parts = key.split('.');
    let (t, a, s, n) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((
        TenantName::new(t).ok()?,
        AppName::new(a).ok()?,
        StageName::new(s).ok()?,
        SecretName::new(n).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_follow_the_rules() {
        for good in ["db_url", "a", "api_key_2", "x9"] {
            SecretName::new(good).unwrap();
        }
        for bad in ["", "DB_URL", "1abc", "_x", "a-b", "a.b", "a b", "*", ">"] {
            assert!(SecretName::new(bad).is_err(), "{bad}");
        }
        assert!(SecretName::new("a".repeat(64)).is_err());
    }

    #[test]
    fn keys_round_trip() {
        let t = TenantName::new("acme").unwrap();
        let a = AppName::new("shop").unwrap();
        let s = StageName::new("dev").unwrap();
        let n = SecretName::new("db_url").unwrap();
        let key = secret_key(&t, &a, &s, &n);
        assert_eq!(key, "acme.shop.dev.db_url");
        assert_eq!(parse_secret_key(&key), Some((t, a, s, n)));
        assert_eq!(parse_secret_key("acme.shop.dev"), None);
        assert_eq!(parse_secret_key("acme.shop.dev.x.y"), None);
    }

    #[test]
    fn principals_are_checked() {
        validate_principal("user:alice@example.com").unwrap();
        assert!(validate_principal("").is_err());
        assert!(validate_principal("a\nb").is_err());
    }
}
