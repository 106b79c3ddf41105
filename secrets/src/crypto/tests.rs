//! Unit tests of [`super`]: round trips, associated-data binding, wrong keys, tampering, key files.

use super::*;

fn dek() -> DataKey {
    DataKey::generate().unwrap()
}

fn aad(tenant: &str, name: &str) -> String {
    aad_secret(tenant, "shop", "dev", name, 1, 1)
}

#[test]
fn a_sealed_value_opens_with_the_same_key_and_aad() {
    let key = dek();
    let sealed = key.seal(&aad("acme", "db_url"), b"s3cret").unwrap();
    assert_ne!(sealed.ciphertext, b"s3cret");
    let plain = key.open(&aad("acme", "db_url"), &sealed).unwrap();
    assert_eq!(&plain[..], b"s3cret");
}

#[test]
fn every_seal_uses_a_fresh_nonce() {
    let key = dek();
    let a = key.seal("x", b"same").unwrap();
    let b = key.seal("x", b"same").unwrap();
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.ciphertext, b.ciphertext);
}

#[test]
fn a_ciphertext_moved_to_another_name_tenant_or_version_fails() {
    let key = dek();
    let sealed = key.seal(&aad("acme", "db_url"), b"s3cret").unwrap();
    assert!(key.open(&aad("acme", "api_key"), &sealed).is_none());
    assert!(key.open(&aad("other", "db_url"), &sealed).is_none());
    assert!(
        key.open(&aad_secret("acme", "shop", "prod", "db_url", 1, 1), &sealed)
            .is_none()
    );
    assert!(
        key.open(&aad_secret("acme", "shop", "dev", "db_url", 2, 1), &sealed)
            .is_none()
    );
}

#[test]
fn a_wrong_key_fails() {
    let sealed = dek().seal("x", b"s3cret").unwrap();
    assert!(dek().open("x", &sealed).is_none());
}

#[test]
fn tampered_ciphertexts_and_nonces_fail() {
    let key = dek();
    let sealed = key.seal("x", b"s3cret").unwrap();
    for i in 0..sealed.ciphertext.len() {
        let mut bad = sealed.clone();
        bad.ciphertext[i] ^= 1;
        assert!(key.open("x", &bad).is_none(), "byte {i}");
    }
    let mut bad = sealed.clone();
    bad.nonce[0] ^= 1;
    assert!(key.open("x", &bad).is_none());
    let mut bad = sealed;
    bad.ciphertext.pop();
    assert!(key.open("x", &bad).is_none());
}

#[test]
fn data_keys_round_trip_through_the_keyring_and_are_bound_to_tenant_and_version() {
    let ring = Keyring::new(Kek::generate().unwrap());
    let key = dek();
    let (kek_id, sealed) = ring.seal_dek("acme", 1, &key).unwrap();
    assert_eq!(&kek_id, ring.primary_id());
    let opened = ring.open_dek("acme", 1, &kek_id, &sealed).unwrap();
    let value = opened.seal("x", b"v").unwrap();
    assert_eq!(&key.open("x", &value).unwrap()[..], b"v");

    let moved = ring.open_dek("other", 1, &kek_id, &sealed).unwrap_err();
    assert!(
        matches!(moved, SecretsError::KekAuthentication { .. }),
        "{moved}"
    );
    let moved = ring.open_dek("acme", 2, &kek_id, &sealed).unwrap_err();
    assert!(
        matches!(moved, SecretsError::KekAuthentication { .. }),
        "{moved}"
    );
}

#[test]
fn a_keyring_without_the_sealing_key_names_both_ids() {
    let old = Kek::generate().unwrap();
    let new = Kek::generate().unwrap();
    let (kek_id, sealed) = Keyring::new(old.clone())
        .seal_dek("acme", 1, &dek())
        .unwrap();
    let err = Keyring::new(new.clone())
        .open_dek("acme", 1, &kek_id, &sealed)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(old.id().as_str()) && text.contains(new.id().as_str()),
        "{text}"
    );
    assert!(text.contains("does not hold"), "{text}");
    // With the old key as a previous one, it opens.
    let ring = Keyring::new(new).with_previous(old);
    ring.open_dek("acme", 1, &kek_id, &sealed).unwrap();
}

#[test]
fn a_key_with_the_right_id_that_fails_authentication_says_so() {
    let kek = Kek::generate().unwrap();
    let ring = Keyring::new(kek);
    let (kek_id, mut sealed) = ring.seal_dek("acme", 1, &dek()).unwrap();
    sealed.ciphertext[3] ^= 0x40;
    let err = ring.open_dek("acme", 1, &kek_id, &sealed).unwrap_err();
    assert!(err.to_string().contains("failed authentication"), "{err}");
}

#[test]
fn key_ids_are_stable_short_hex_and_differ_between_keys() {
    let bytes = [7u8; KEY_LEN];
    let a = Kek::from_bytes(bytes);
    let b = Kek::from_bytes(bytes);
    assert_eq!(a.id(), b.id());
    assert_eq!(a.id().as_str().len(), 16);
    assert!(a.id().as_str().bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a.id(), Kek::from_bytes([8u8; KEY_LEN]).id());
    // The id is not a prefix of the key's hex.
    assert!(!hex::encode(bytes).starts_with(a.id().as_str()));
    assert!(!format!("{a:?}").contains(&hex::encode(bytes)));
}

#[test]
fn key_text_parses_as_hex_or_base64_with_whitespace_trimmed() {
    let bytes: [u8; KEY_LEN] = std::array::from_fn(|i| i as u8 * 7);
    let id = Kek::from_bytes(bytes).id().clone();
    let hex_text = format!("  {}\n", hex::encode(bytes));
    assert_eq!(Kek::parse(&hex_text).unwrap().id(), &id);
    assert_eq!(Kek::parse(&hex::encode_upper(bytes)).unwrap().id(), &id);
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    assert_eq!(Kek::parse(&format!("{b64}\n")).unwrap().id(), &id);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    assert_eq!(Kek::parse(&b64).unwrap().id(), &id);
}

#[test]
fn wrong_key_text_is_refused_without_quoting_it() {
    let short = hex::encode([0xabu8; 16]);
    let err = Kek::parse(&short).unwrap_err();
    assert!(err.contains("16 bytes"), "{err}");
    assert!(!err.contains(&short));
    let garbage = "not-a-key-at-all!!";
    let err = Kek::parse(garbage).unwrap_err();
    assert!(!err.contains(garbage), "{err}");
    assert!(Kek::parse("  \n").unwrap_err().contains("empty"));
}

#[test]
fn key_files_are_generated_0600_read_back_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kek");
    let ring = Keyring::generate_file(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(
        Keyring::from_file(&path).unwrap().primary_id(),
        ring.primary_id()
    );
    let err = Keyring::generate_file(&path).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(
        Keyring::from_file(&path).unwrap().primary_id(),
        ring.primary_id()
    );
}

#[test]
fn a_key_file_of_the_wrong_length_names_the_file_but_not_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.key");
    let text = base64::engine::general_purpose::STANDARD.encode([0x5au8; 20]);
    std::fs::write(&path, &text).unwrap();
    let err = Keyring::from_file(&path).unwrap_err().to_string();
    assert!(
        err.contains("short.key") && err.contains("20 bytes"),
        "{err}"
    );
    assert!(!err.contains(&text), "{err}");
    let missing = Keyring::from_file(dir.path().join("missing")).unwrap_err();
    assert!(missing.to_string().contains("missing"), "{missing}");
}

#[test]
fn a_key_from_the_environment_is_read() {
    // A variable name unique to this test; no other test touches it.
    let var = "NEO_SECRETS_TEST_KEK_FROM_ENV";
    assert!(matches!(
        Keyring::from_env(var),
        Err(SecretsError::KeyEnv { .. })
    ));
}

#[test]
fn a_keyring_holds_each_id_once_primary_first() {
    let a = Kek::generate().unwrap();
    let b = Kek::generate().unwrap();
    let ring = Keyring::new(a.clone())
        .with_previous(b.clone())
        .with_previous(b.clone())
        .with_previous(a.clone());
    assert_eq!(ring.ids(), vec![a.id().clone(), b.id().clone()]);
}
