//! The revision store against a real embedded S3 endpoint in a temporary directory.
#![allow(clippy::unwrap_used)] // a test harness may unwrap, like the tests themselves

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use neo_revisions::{EmbeddedS3, RevisionStore, S3Config, StorageError, content_digest};
use tempfile::TempDir;

const BUCKET: &str = "neo-revisions";

/// A running endpoint, a store connected to it and the directory it serves.
struct Harness {
    dir: TempDir,
    s3: EmbeddedS3,
    store: RevisionStore,
}

impl Harness {
    async fn start() -> Harness {
        let dir = TempDir::new().unwrap();
        let s3 = EmbeddedS3::start(dir.path(), 0).await.unwrap();
        let store = RevisionStore::connect(&s3.config(BUCKET)).await.unwrap();
        Harness { dir, s3, store }
    }

    /// The file s3s-fs keeps an object's bytes in.
    fn object_path(&self, key: &str) -> PathBuf {
        self.dir.path().join(BUCKET).join(key)
    }
}

fn content(seed: u8, len: usize) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test]
async fn put_then_get_round_trips() {
    let h = Harness::start().await;
    let blob = content(1, 4096);

    let stored = h.store.put("acme", blob.clone()).await.unwrap();

    assert_eq!(stored.digest, content_digest(&blob));
    assert_eq!(stored.size, 4096);
    assert!(stored.created);
    assert_eq!(
        stored.key,
        RevisionStore::key("acme", &stored.digest).unwrap()
    );
    assert!(stored.key.starts_with("revisions/acme/sha256/"));
    assert_eq!(h.store.get("acme", &stored.digest).await.unwrap(), blob);
}

#[tokio::test]
async fn empty_content_round_trips() {
    let h = Harness::start().await;

    let stored = h.store.put("acme", Bytes::new()).await.unwrap();

    assert_eq!(stored.size, 0);
    assert!(
        h.store
            .get("acme", &stored.digest)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn identical_puts_store_one_object() {
    let h = Harness::start().await;
    let blob = content(2, 1000);

    let first = h.store.put("acme", blob.clone()).await.unwrap();
    let second = h.store.put("acme", blob).await.unwrap();

    assert!(first.created);
    assert!(!second.created);
    assert_eq!(first.key, second.key);
    assert_eq!(h.store.list("acme").await.unwrap(), vec![first.key]);
}

#[tokio::test]
async fn tenants_get_separate_keys() {
    let h = Harness::start().await;
    let blob = content(3, 100);

    let a = h.store.put("tenant-a", blob.clone()).await.unwrap();
    let b = h.store.put("tenant-b", blob).await.unwrap();

    assert!(a.created && b.created);
    assert_eq!(a.digest, b.digest);
    assert_ne!(a.key, b.key);
    assert_eq!(h.store.list("tenant-a").await.unwrap(), vec![a.key]);
    assert_eq!(h.store.list("tenant-b").await.unwrap(), vec![b.key]);
    assert!(h.store.list("tenant").await.unwrap().is_empty());
}

#[tokio::test]
async fn list_pages_through_more_keys_than_one_page() {
    let h = Harness::start().await;
    let mut expected = vec![h.store.put("acme", content(0, 10)).await.unwrap().key];
    // More objects than one ListObjectsV2 page (1000), written straight into the directory
    // s3s-fs serves, which is much faster than a thousand uploads.
    for n in 0..1100u32 {
        let key = RevisionStore::key("acme", &content_digest(&n.to_be_bytes())).unwrap();
        let path = h.object_path(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, n.to_be_bytes()).unwrap();
        expected.push(key);
    }
    expected.sort();

    let listed = h.store.list("acme").await.unwrap();

    assert_eq!(listed.len(), expected.len());
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn get_of_an_unknown_digest_is_not_found() {
    let h = Harness::start().await;
    h.store.put("acme", content(4, 10)).await.unwrap();
    let absent = content_digest(b"never stored");

    let err = h.store.get("acme", &absent).await.unwrap_err();

    let expected_key = RevisionStore::key("acme", &absent).unwrap();
    assert!(
        matches!(&err, StorageError::NotFound { key } if *key == expected_key),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_blob_of_another_tenant_is_not_found() {
    let h = Harness::start().await;
    let stored = h.store.put("tenant-a", content(5, 10)).await.unwrap();

    let err = h.store.get("tenant-b", &stored.digest).await.unwrap_err();

    assert!(matches!(err, StorageError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn a_blob_corrupted_on_disk_is_a_digest_mismatch() {
    let h = Harness::start().await;
    let blob = content(6, 2048);
    let stored = h.store.put("acme", blob.clone()).await.unwrap();
    let path = h.object_path(&stored.key);
    let mut corrupted = std::fs::read(&path).unwrap();
    assert_eq!(corrupted, blob, "s3s-fs keeps the bytes as they are");
    corrupted[100] ^= 0xff;
    std::fs::write(&path, &corrupted).unwrap();

    let err = h.store.get("acme", &stored.digest).await.unwrap_err();

    match err {
        StorageError::DigestMismatch { expected, actual } => {
            assert_eq!(expected, stored.digest);
            assert_eq!(actual, content_digest(&corrupted));
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_digests_and_tenants_are_rejected() {
    let h = Harness::start().await;
    let good = content_digest(b"x");
    let upper = good.to_uppercase().replace("SHA256:", "sha256:");
    for digest in [
        "",
        "sha256:",
        "sha256:abc",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        &upper,
    ] {
        let err = h.store.get("acme", digest).await.unwrap_err();
        assert!(
            matches!(&err, StorageError::InvalidDigest(d) if d == digest),
            "{err:?}"
        );
        assert!(matches!(
            RevisionStore::key("acme", digest),
            Err(StorageError::InvalidDigest(_))
        ));
    }
    for tenant in ["", "Acme", "../x", "a/b"] {
        let err = h
            .store
            .put(tenant, Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::InvalidTenant(_)), "{err:?}");
        assert!(matches!(
            h.store.list(tenant).await,
            Err(StorageError::InvalidTenant(_))
        ));
    }
}

#[tokio::test]
async fn a_stopped_endpoint_is_unavailable_quickly() {
    let Harness {
        dir: _dir,
        s3,
        store,
    } = Harness::start().await;
    let config = s3.config(BUCKET);
    s3.shutdown().await;

    let started = Instant::now();
    let put = store.put("acme", content(7, 10)).await.unwrap_err();
    let connect = RevisionStore::connect(&config).await.unwrap_err();
    let elapsed = started.elapsed();

    for err in [&put, &connect] {
        let StorageError::Unavailable(message) = err else {
            panic!("expected Unavailable, got {err:?}");
        };
        // The SDK's cause, not only "dispatch failure".
        assert!(
            message.to_lowercase().contains("connect"),
            "message without its cause: {message}"
        );
    }
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

#[tokio::test]
async fn wrong_credentials_are_access_denied() {
    let h = Harness::start().await;
    let right = h.s3.config(BUCKET);
    let wrong_secret = S3Config {
        secret_access_key: "not-the-secret".to_owned(),
        ..right.clone()
    };
    let wrong_key = S3Config {
        access_key_id: "someone".to_owned(),
        ..right
    };

    for config in [wrong_secret, wrong_key] {
        let err = RevisionStore::connect(&config).await.unwrap_err();
        assert!(matches!(err, StorageError::AccessDenied(_)), "{err:?}");
        assert!(err.to_string().contains("access key"), "{err}");
    }
}

#[tokio::test]
async fn unsigned_requests_are_refused() {
    let h = Harness::start().await;
    let addr = h.s3.endpoint().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /{BUCKET}?list-type=2 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut response)
        .await
        .unwrap();

    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mib_blob_round_trips() {
    let h = Harness::start().await;
    let blob = content(8, 20 * 1024 * 1024);

    let stored = h.store.put("acme", blob.clone()).await.unwrap();
    let read = h.store.get("acme", &stored.digest).await.unwrap();

    assert_eq!(stored.size, blob.len() as u64);
    assert!(read == blob, "20 MiB blob came back different");
}

#[tokio::test]
async fn a_missing_bucket_is_created_and_reconnecting_keeps_it() {
    let h = Harness::start().await;
    let stored = h.store.put("acme", content(9, 10)).await.unwrap();

    let again = RevisionStore::connect(&h.s3.config(BUCKET)).await.unwrap();

    assert_eq!(again.list("acme").await.unwrap(), vec![stored.key]);
    assert!(h.dir.path().join(BUCKET).is_dir());
}

#[tokio::test]
async fn dropping_the_endpoint_stops_it() {
    let dir = TempDir::new().unwrap();
    let s3 = EmbeddedS3::start(dir.path(), 0).await.unwrap();
    let addr = s3.endpoint().trim_start_matches("http://").to_owned();
    tokio::net::TcpStream::connect(&addr).await.unwrap();

    drop(s3);

    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(&addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting on {addr}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn debug_output_leaves_the_secret_out() {
    let dir = TempDir::new().unwrap();
    let s3 = EmbeddedS3::start_with_secret(dir.path(), 0, "very-secret")
        .await
        .unwrap();
    let config = s3.config(BUCKET);

    assert_eq!(config.secret_access_key, "very-secret");
    assert!(!format!("{config:?} {s3:?}").contains("very-secret"));
}
