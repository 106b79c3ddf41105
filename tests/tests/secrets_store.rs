//! The encrypted secrets store against a real nats-server: values never stored in clear, wrong
//! key-encryption keys refused without side effects, key rotation and re-keying keeping every
//! secret readable, crypto-shredding, and the agents' request/reply.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use neo_protocol::{AppName, StageName, TenantName};
use neo_secrets::{
    Kek, Keyring, SECRETS_BUCKET, SecretName, SecretStore, SecretsError, TENANT_KEYS_BUCKET,
    fetch_stage_secrets, serve_stage_requests,
};
use neo_tests::Core;

const KNOWN: &str = "s3cret-VALUE-1234";

fn t(s: &str) -> TenantName {
    TenantName::new(s).unwrap()
}
fn a(s: &str) -> AppName {
    AppName::new(s).unwrap()
}
fn s(s: &str) -> StageName {
    StageName::new(s).unwrap()
}
fn n(s: &str) -> SecretName {
    SecretName::new(s).unwrap()
}

async fn store(core: &Core, keyring: Keyring) -> SecretStore {
    let js = jetstream::new(core.connect().await.unwrap());
    SecretStore::open(js, keyring).await.unwrap()
}

fn ring(kek: &Kek) -> Keyring {
    Keyring::new(kek.clone())
}

async fn values(
    store: &SecretStore,
    tenant: &str,
    app: &str,
    stage: &str,
) -> Result<BTreeMap<String, (u64, String)>, SecretsError> {
    Ok(store
        .reveal(&t(tenant), &a(app), &s(stage))
        .await?
        .into_iter()
        .map(|(name, secret)| (name, (secret.version, secret.value.to_string())))
        .collect())
}

/// Every message still in a bucket's stream: (subject, headers + payload as raw bytes).
async fn stream_messages(core: &Core, bucket: &str) -> Vec<(String, Vec<u8>)> {
    let js = jetstream::new(core.connect().await.unwrap());
    let mut stream = js.get_stream(format!("KV_{bucket}")).await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    let mut out = Vec::new();
    for seq in state.first_sequence..=state.last_sequence {
        let Ok(message) = stream.get_raw_message(seq).await else {
            continue;
        };
        let mut raw = format!("{:?}", message.headers).into_bytes();
        raw.extend_from_slice(&message.payload);
        out.push((message.subject.to_string(), raw));
    }
    out
}

async fn last_sequences(core: &Core) -> (u64, u64) {
    let js = jetstream::new(core.connect().await.unwrap());
    let mut seqs = [0; 2];
    for (i, bucket) in [SECRETS_BUCKET, TENANT_KEYS_BUCKET].iter().enumerate() {
        let mut stream = js.get_stream(format!("KV_{bucket}")).await.unwrap();
        seqs[i] = stream.info().await.unwrap().state.last_sequence;
    }
    (seqs[0], seqs[1])
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|bytes| contains(&bytes, needle)) {
            found.push(path.display().to_string());
        }
    }
    found
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn set_list_reveal_unset_and_versions() {
    let core = Core::start().await.unwrap();
    let store = store(&core, ring(&Kek::generate().unwrap())).await;
    let (acme, shop, dev, prod) = (t("acme"), a("shop"), s("dev"), s("prod"));

    assert!(
        values(&store, "acme", "shop", "dev")
            .await
            .unwrap()
            .is_empty()
    );
    let first = store
        .set(
            &acme,
            &shop,
            &dev,
            &n("db_url"),
            "postgres://one",
            "user:alice",
        )
        .await
        .unwrap();
    assert_eq!(
        (first.version, first.changed_by.as_str()),
        (1, "user:alice")
    );
    let second = store
        .set(
            &acme,
            &shop,
            &dev,
            &n("db_url"),
            "postgres://two",
            "user:bob",
        )
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    assert!(second.changed_at_ms >= first.changed_at_ms);
    store
        .set(&acme, &shop, &dev, &n("api_key"), "k-1", "user:alice")
        .await
        .unwrap();
    store
        .set(
            &acme,
            &shop,
            &prod,
            &n("db_url"),
            "postgres://prod",
            "user:alice",
        )
        .await
        .unwrap();

    let listed = store.list(&acme, &shop, &dev).await.unwrap();
    let names: Vec<_> = listed
        .iter()
        .map(|i| (i.name.as_str(), i.version))
        .collect();
    assert_eq!(names, [("api_key", 1), ("db_url", 2)]);
    assert_eq!(listed[1].changed_by, "user:bob");
    assert_eq!(store.list_tenant(&acme).await.unwrap().len(), 3);

    let dev_values = values(&store, "acme", "shop", "dev").await.unwrap();
    assert_eq!(dev_values["db_url"], (2, "postgres://two".to_owned()));
    assert_eq!(dev_values["api_key"], (1, "k-1".to_owned()));
    assert_eq!(
        values(&store, "acme", "shop", "prod").await.unwrap()["db_url"].1,
        "postgres://prod"
    );

    // Unset returns what was removed; versions keep counting after it.
    let removed = store
        .unset(&acme, &shop, &dev, &n("db_url"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(removed.version, 2);
    assert!(
        store
            .unset(&acme, &shop, &dev, &n("db_url"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .unset(&acme, &shop, &dev, &n("never"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !values(&store, "acme", "shop", "dev")
            .await
            .unwrap()
            .contains_key("db_url")
    );
    assert_eq!(store.list(&acme, &shop, &dev).await.unwrap().len(), 1);
    let again = store
        .set(
            &acme,
            &shop,
            &dev,
            &n("db_url"),
            "postgres://three",
            "user:carol",
        )
        .await
        .unwrap();
    assert_eq!(again.version, 3);

    // Bad principals are refused before anything is written.
    let before = last_sequences(&core).await;
    assert!(matches!(
        store.set(&acme, &shop, &dev, &n("x"), "v", "").await,
        Err(SecretsError::Name(_))
    ));
    assert_eq!(last_sequences(&core).await, before);
}

#[tokio::test]
async fn values_never_reach_the_buckets_the_disk_the_logs_or_errors_in_clear() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let core = Core::start().await.unwrap();
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("kek");
    Keyring::generate_file(&key_file).unwrap();
    let kek_text = std::fs::read_to_string(&key_file).unwrap();
    let store = store(&core, Keyring::from_file(&key_file).unwrap()).await;
    let (acme, shop, dev) = (t("acme"), a("shop"), s("dev"));
    for i in 0..3 {
        store
            .set(
                &acme,
                &shop,
                &dev,
                &n(&format!("s{i}")),
                KNOWN,
                "user:alice",
            )
            .await
            .unwrap();
    }
    store
        .set(&t("globex"), &shop, &dev, &n("token"), KNOWN, "user:bob")
        .await
        .unwrap();
    store.rotate_tenant_key(&acme).await.unwrap();
    assert_eq!(
        values(&store, "acme", "shop", "dev").await.unwrap()["s1"].1,
        KNOWN
    );

    // Errors along the way name secrets, never values.
    let mut errors = Vec::new();
    let (big, big_value) = (n("big"), KNOWN.repeat(5000));
    let too_big = store.set(&acme, &shop, &dev, &big, &big_value, "u").await;
    errors.push(too_big.unwrap_err().to_string());
    let wrong = self::store(&core, ring(&Kek::generate().unwrap())).await;
    errors.push(
        wrong
            .reveal(&acme, &shop, &dev)
            .await
            .unwrap_err()
            .to_string(),
    );
    errors.push(
        wrong
            .set(&acme, &shop, &dev, &n("s0"), KNOWN, "u")
            .await
            .unwrap_err()
            .to_string(),
    );
    for error in &errors {
        assert!(!error.contains(KNOWN), "{error}");
    }

    for bucket in [SECRETS_BUCKET, TENANT_KEYS_BUCKET] {
        let messages = stream_messages(&core, bucket).await;
        assert!(!messages.is_empty(), "{bucket}");
        for (subject, raw) in messages {
            assert!(
                !contains(&raw, KNOWN.as_bytes()),
                "{subject} holds the value in clear"
            );
            assert!(
                !contains(&raw, kek_text.trim().as_bytes()),
                "{subject} holds the key"
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let on_disk = files_containing(&core.nats.store_dir(), b"user:alice");
    assert!(!on_disk.is_empty(), "the records reached the disk");
    let on_disk = files_containing(&core.nats.store_dir(), KNOWN.as_bytes());
    assert!(on_disk.is_empty(), "{on_disk:?}");
    assert!(files_containing(&core.nats.log_path(), KNOWN.as_bytes()).is_empty());
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    assert!(logged.contains("secret set"), "the capture works");
    assert!(!logged.contains(KNOWN));
    assert!(!logged.contains(kek_text.trim()));
}

#[tokio::test]
async fn a_wrong_kek_gives_a_clear_error_and_changes_nothing() {
    let core = Core::start().await.unwrap();
    let right = Kek::generate().unwrap();
    let wrong = Kek::generate().unwrap();
    let good = store(&core, ring(&right)).await;
    let (acme, shop, dev) = (t("acme"), a("shop"), s("dev"));
    good.set(&acme, &shop, &dev, &n("db_url"), KNOWN, "user:alice")
        .await
        .unwrap();

    let bad = store(&core, ring(&wrong)).await;
    let before = last_sequences(&core).await;
    let err = bad
        .set(&acme, &shop, &dev, &n("db_url"), "other", "user:mallory")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SecretsError::UnknownKek { .. }), "{text}");
    assert!(
        text.contains("tenant `acme`")
            && text.contains(right.id().as_str())
            && text.contains(wrong.id().as_str())
            && text.contains("does not hold"),
        "{text}"
    );
    assert!(matches!(
        bad.reveal(&acme, &shop, &dev).await,
        Err(SecretsError::UnknownKek { .. })
    ));
    assert!(matches!(
        bad.rekey().await,
        Err(SecretsError::UnknownKek { .. })
    ));
    assert!(matches!(
        bad.rotate_tenant_key(&acme).await,
        Err(SecretsError::UnknownKek { .. })
    ));
    assert_eq!(last_sequences(&core).await, before, "nothing was written");
    assert_eq!(
        values(&good, "acme", "shop", "dev").await.unwrap()["db_url"].1,
        KNOWN
    );

    // A key record altered in the bucket fails authentication under the right key.
    let js = jetstream::new(core.connect().await.unwrap());
    let keys = js.get_key_value(TENANT_KEYS_BUCKET).await.unwrap();
    let mut record: serde_json::Value =
        serde_json::from_slice(&keys.get("acme").await.unwrap().unwrap()).unwrap();
    let sealed = record["keys"][0]["sealed"].as_str().unwrap().to_owned();
    let flipped = if sealed.starts_with('A') { "B" } else { "A" };
    record["keys"][0]["sealed"] = format!("{flipped}{}", &sealed[1..]).into();
    keys.put("acme", serde_json::to_vec(&record).unwrap().into())
        .await
        .unwrap();
    let err = good.reveal(&acme, &shop, &dev).await.unwrap_err();
    assert!(
        matches!(err, SecretsError::KekAuthentication { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("failed authentication"), "{err}");
}

#[tokio::test]
async fn kek_rotation_reseals_every_data_key() {
    let core = Core::start().await.unwrap();
    let old = Kek::generate().unwrap();
    let new = Kek::generate().unwrap();
    let before = store(&core, ring(&old)).await;
    let secrets = [
        ("acme", "shop", "dev", "db_url", "acme-dev-db"),
        ("acme", "shop", "prod", "db_url", "acme-prod-db"),
        ("acme", "blog", "dev", "token", "acme-blog"),
        ("globex", "shop", "dev", "db_url", "globex-db"),
        ("globex", "shop", "dev", "api_key", "globex-key"),
    ];
    for (tenant, app, stage, name, value) in secrets {
        before
            .set(&t(tenant), &a(app), &s(stage), &n(name), value, "user:ops")
            .await
            .unwrap();
    }
    let during = store(&core, Keyring::new(new.clone()).with_previous(old.clone())).await;
    let report = during.rekey().await.unwrap();
    assert_eq!((report.tenants, report.resealed), (2, 2));
    assert_eq!(&report.primary, new.id());
    let again = during.rekey().await.unwrap();
    assert_eq!((again.resealed, again.already_current), (0, 2));

    let after = store(&core, ring(&new)).await;
    for (tenant, app, stage, name, value) in secrets {
        let got = values(&after, tenant, app, stage).await.unwrap();
        assert_eq!(got[name].1, value);
    }
    let stale = store(&core, ring(&old)).await;
    let err = stale
        .reveal(&t("acme"), &a("shop"), &s("dev"))
        .await
        .unwrap_err();
    assert!(matches!(err, SecretsError::UnknownKek { .. }), "{err}");
    assert!(
        err.to_string().contains(new.id().as_str()) && err.to_string().contains(old.id().as_str()),
        "{err}"
    );
}

#[tokio::test]
async fn tenant_key_rotation_keeps_every_secret_readable_for_a_concurrent_reader() {
    let core = Core::start().await.unwrap();
    let kek = Kek::generate().unwrap();
    let writer = store(&core, ring(&kek)).await;
    let acme = t("acme");
    let mut expected: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
    for (app, stage) in [("shop", "dev"), ("shop", "prod"), ("blog", "dev")] {
        for i in 0..4 {
            let (name, value) = (format!("key_{i}"), format!("{app}-{stage}-{i}"));
            writer
                .set(&acme, &a(app), &s(stage), &n(&name), &value, "user:ops")
                .await
                .unwrap();
            expected
                .entry((app.into(), stage.into()))
                .or_default()
                .insert(name, value);
        }
    }

    let reader = Arc::new(store(&core, ring(&kek)).await);
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let task = {
        let (reader, stop, reads, expected) = (
            reader.clone(),
            stop.clone(),
            reads.clone(),
            expected.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for ((app, stage), want) in &expected {
                    let got = values(&reader, "acme", app, stage)
                        .await
                        .map_err(|e| e.to_string())?;
                    let got: BTreeMap<_, _> = got.into_iter().map(|(k, (_, v))| (k, v)).collect();
                    if &got != want {
                        return Err(format!("{app}/{stage}: read {got:?}"));
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<(), String>(())
        })
    };

    while reads.load(Ordering::Relaxed) < 3 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let reads_before = reads.load(Ordering::Relaxed);
    let first = writer.rotate_tenant_key(&acme).await.unwrap();
    assert_eq!(
        (first.new_version, first.dropped_versions.clone()),
        (2, vec![1])
    );
    assert_eq!(first.resealed, 12);
    let second = writer.rotate_tenant_key(&acme).await.unwrap();
    assert_eq!((second.new_version, second.dropped_versions), (3, vec![2]));
    let reads_during = reads.load(Ordering::Relaxed) - reads_before;
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap().unwrap();
    assert!(reads_during > 0, "the reader ran during the rotations");

    for ((app, stage), want) in &expected {
        let got = values(&writer, "acme", app, stage).await.unwrap();
        for (name, value) in want {
            assert_eq!(&got[name], &(1, value.clone()));
        }
    }
    // Only the new data key version is left, and every record names it.
    let js = jetstream::new(core.connect().await.unwrap());
    let keys = js.get_key_value(TENANT_KEYS_BUCKET).await.unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&keys.get("acme").await.unwrap().unwrap()).unwrap();
    assert_eq!(record["current"], 3);
    let versions: Vec<_> = record["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["version"].clone())
        .collect();
    assert_eq!(versions, [serde_json::json!(3)]);
    for (subject, raw) in stream_messages(&core, SECRETS_BUCKET).await {
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains(r#""dek_version":3"#), "{subject}: {text}");
    }
    assert_eq!(stream_messages(&core, TENANT_KEYS_BUCKET).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_racing_tenant_key_rotations_stay_readable() {
    let core = Core::start().await.unwrap();
    let kek = Kek::generate().unwrap();
    let rotator = store(&core, ring(&kek)).await;
    let (acme, shop, dev) = (t("acme"), a("shop"), s("dev"));
    rotator
        .set(&acme, &shop, &dev, &n("seed"), "seed", "user:ops")
        .await
        .unwrap();
    let writer = Arc::new(store(&core, ring(&kek)).await);
    let stop = Arc::new(AtomicBool::new(false));
    let task = {
        let (writer, stop) = (writer.clone(), stop.clone());
        let (acme, shop, dev) = (acme.clone(), shop.clone(), dev.clone());
        tokio::spawn(async move {
            let mut last = BTreeMap::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) || i < 20 {
                let name = format!("live_{}", i % 5);
                let value = format!("value-{i}");
                writer
                    .set(&acme, &shop, &dev, &n(&name), &value, "user:writer")
                    .await
                    .map_err(|e| e.to_string())?;
                last.insert(name, value);
                i += 1;
            }
            Ok::<_, String>(last)
        })
    };
    for _ in 0..5 {
        rotator.rotate_tenant_key(&acme).await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let last = task.await.unwrap().unwrap();
    let got = values(&rotator, "acme", "shop", "dev").await.unwrap();
    for (name, value) in &last {
        assert_eq!(&got[name].1, value, "{name}");
    }
    assert_eq!(got["seed"], (1, "seed".to_owned()));
}

#[tokio::test]
async fn shredding_a_tenant_makes_its_secrets_unreadable() {
    let core = Core::start().await.unwrap();
    let store = store(&core, ring(&Kek::generate().unwrap())).await;
    let (shop, dev) = (a("shop"), s("dev"));
    for tenant in ["doomed", "kept"] {
        for name in ["db_url", "api_key"] {
            store
                .set(&t(tenant), &shop, &dev, &n(name), KNOWN, "user:ops")
                .await
                .unwrap();
        }
    }
    store
        .unset(&t("doomed"), &shop, &dev, &n("api_key"))
        .await
        .unwrap();
    let js = jetstream::new(core.connect().await.unwrap());
    let keys = js.get_key_value(TENANT_KEYS_BUCKET).await.unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&keys.get("doomed").await.unwrap().unwrap()).unwrap();
    let sealed_dek = record["keys"][0]["sealed"].as_str().unwrap().to_owned();

    let report = store.shred_tenant(&t("doomed")).await.unwrap();
    assert!(report.had_data_key);
    assert_eq!(report.secrets_purged, 2, "the value and the tombstone");

    let err = store.reveal(&t("doomed"), &shop, &dev).await.unwrap_err();
    assert!(
        matches!(err, SecretsError::DataKeyDestroyed { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("tenant `doomed`'s data key was destroyed; its secrets are unreadable"),
        "{err}"
    );
    // Another process sees the same at once (nothing is cached).
    let other = self::store(&core, store.keyring().clone()).await;
    assert!(matches!(
        other.reveal(&t("doomed"), &shop, &dev).await,
        Err(SecretsError::DataKeyDestroyed { .. })
    ));
    assert!(store.list_tenant(&t("doomed")).await.unwrap().is_empty());
    assert_eq!(
        values(&store, "kept", "shop", "dev").await.unwrap().len(),
        2
    );

    // No message of either stream still holds the tenant's data key or records.
    for bucket in [SECRETS_BUCKET, TENANT_KEYS_BUCKET] {
        for (subject, raw) in stream_messages(&core, bucket).await {
            assert!(!contains(&raw, sealed_dek.as_bytes()), "{subject}");
            if subject.contains(".doomed") {
                assert!(
                    !contains(&raw, b"\"format\""),
                    "{subject} still holds a record"
                );
            }
        }
    }

    // Shredding is idempotent; a re-created tenant of the same name starts a fresh key.
    let again = store.shred_tenant(&t("doomed")).await.unwrap();
    assert_eq!((again.had_data_key, again.secrets_purged), (false, 0));
    let info = store
        .set(&t("doomed"), &shop, &dev, &n("db_url"), "fresh", "user:ops")
        .await
        .unwrap();
    assert_eq!(info.version, 1);
    let fresh = values(&store, "doomed", "shop", "dev").await.unwrap();
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh["db_url"], (1, "fresh".to_owned()));
}

#[tokio::test]
async fn agents_fetch_their_secrets_over_nats() {
    let core = Core::start().await.unwrap();
    let store = Arc::new(store(&core, ring(&Kek::generate().unwrap())).await);
    let (acme, shop, dev) = (t("acme"), a("shop"), s("dev"));
    store
        .set(&acme, &shop, &dev, &n("db_url"), KNOWN, "user:ops")
        .await
        .unwrap();
    let server = serve_stage_requests(core.connect().await.unwrap(), store.clone())
        .await
        .unwrap();

    let agent = core.connect().await.unwrap();
    let timeout = Duration::from_secs(5);
    let got = fetch_stage_secrets(&agent, &dev, &acme, &shop, timeout)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got["db_url"].version, got["db_url"].value.as_str()),
        (1, KNOWN)
    );
    assert!(!format!("{got:?}").contains(KNOWN));
    let none = fetch_stage_secrets(&agent, &s("prod"), &acme, &shop, timeout)
        .await
        .unwrap();
    assert!(none.is_empty());

    // A malformed subject gets an error reply, and the responder keeps serving.
    let reply = agent
        .request("neo.secrets.DEV.acme.shop", bytes::Bytes::new())
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("neo.secrets.DEV.acme.shop"),
        "{body}"
    );

    store.shred_tenant(&acme).await.unwrap();
    let err = fetch_stage_secrets(&agent, &dev, &acme, &shop, timeout)
        .await
        .unwrap_err();
    assert!(matches!(err, SecretsError::Remote { .. }), "{err}");
    assert!(err.to_string().contains("data key was destroyed"), "{err}");
    server.abort();
}
