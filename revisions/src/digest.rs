//! Content digests, tenant names and the S3 keys built from them (pure, no I/O).

use sha2::{Digest, Sha256};

use crate::error::StorageError;

/// The only digest algorithm revisions are addressed by.
const SHA256_PREFIX: &str = "sha256:";

/// The digest of `content` as `"sha256:<64 lowercase hex>"`.
pub fn content_digest(content: &[u8]) -> String {
    digest_of_hash(&sha256(content))
}

/// The raw sha256 of `content`.
pub(crate) fn sha256(content: &[u8]) -> [u8; 32] {
    Sha256::digest(content).into()
}

/// `"sha256:<64 lowercase hex>"` for an already computed sha256.
pub(crate) fn digest_of_hash(hash: &[u8; 32]) -> String {
    format!("{SHA256_PREFIX}{}", hex::encode(hash))
}

/// The hex part of a `sha256:` digest, after checking its format.
///
/// # Errors
/// [`StorageError::InvalidDigest`] unless `digest` is `sha256:` and 64 lowercase hex digits.
pub(crate) fn digest_hex(digest: &str) -> Result<&str, StorageError> {
    let invalid = || StorageError::InvalidDigest(digest.to_owned());
    let hex = digest.strip_prefix(SHA256_PREFIX).ok_or_else(invalid)?;
    let well_formed = hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if well_formed { Ok(hex) } else { Err(invalid()) }
}

/// Checks that a tenant name is non-empty and made of `[a-z0-9-]`.
///
/// # Errors
/// [`StorageError::InvalidTenant`] otherwise.
pub(crate) fn check_tenant(tenant: &str) -> Result<(), StorageError> {
    let valid = !tenant.is_empty()
        && tenant
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(StorageError::InvalidTenant(tenant.to_owned()))
    }
}

/// The key prefix of a tenant's revisions: `revisions/{tenant}/`.
///
/// # Errors
/// [`StorageError::InvalidTenant`] for a malformed tenant.
pub(crate) fn tenant_prefix(tenant: &str) -> Result<String, StorageError> {
    check_tenant(tenant)?;
    Ok(format!("revisions/{tenant}/"))
}

/// The key of a revision blob: `revisions/{tenant}/sha256/{hex}`.
///
/// # Errors
/// [`StorageError::InvalidTenant`] or [`StorageError::InvalidDigest`].
pub(crate) fn revision_key(tenant: &str, digest: &str) -> Result<String, StorageError> {
    let prefix = tenant_prefix(tenant)?;
    let hex = digest_hex(digest)?;
    Ok(format!("{prefix}sha256/{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_empty_content_is_the_known_one() {
        assert_eq!(content_digest(b""), EMPTY);
    }

    #[test]
    fn key_joins_tenant_and_hex() {
        assert_eq!(
            revision_key("acme-1", EMPTY).unwrap(),
            "revisions/acme-1/sha256/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn malformed_digests_are_rejected() {
        let upper = EMPTY.to_uppercase().replace("SHA256:", "sha256:");
        let short = &EMPTY[..EMPTY.len() - 1];
        let long = format!("{EMPTY}0");
        let other_algorithm = EMPTY.replace("sha256:", "sha512:");
        let bare = EMPTY.trim_start_matches("sha256:");
        let non_hex = EMPTY.replace('e', "g");
        for digest in [
            "",
            "sha256:",
            short,
            &long,
            &upper,
            &other_algorithm,
            bare,
            &non_hex,
        ] {
            assert!(
                matches!(digest_hex(digest), Err(StorageError::InvalidDigest(d)) if d == digest),
                "{digest:?} should be invalid"
            );
        }
    }

    #[test]
    fn malformed_tenants_are_rejected() {
        for tenant in ["", "Acme", "a/b", "a_b", "..", "a b", "é"] {
            assert!(
                matches!(
                    revision_key(tenant, EMPTY),
                    Err(StorageError::InvalidTenant(_))
                ),
                "{tenant:?} should be invalid"
            );
        }
    }
}
