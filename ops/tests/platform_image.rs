//! `neo image platform` against a real registry (Debian's `docker-registry`, started here and
//! stopped at the end): the image is pulled back through the registry's own HTTP API, every
//! digest checked, and taken apart. Its entrypoint is `neo`, the layer holds the very `neo`
//! that pushed it, byte for byte, and the loader and libraries shipped beside it run it.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `GET http://{host}{path}`: the body, and the `Docker-Content-Digest` header.
async fn get(
    client: &reqwest::Client,
    host: &str,
    path: &str,
    accept: &str,
) -> (Vec<u8>, Option<String>) {
    let response = client
        .get(format!("http://{host}{path}"))
        .header("accept", accept)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert!(
        response.status().is_success(),
        "GET {path}: {}",
        response.status()
    );
    let digest = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.bytes().await.expect("the body").to_vec();
    (body, digest)
}

/// The files of a gzipped layer: path → (mode, contents).
fn unpack(layer: &[u8], diff_id: &str) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(layer)
        .read_to_end(&mut tar)
        .expect("a gzipped layer");
    assert_eq!(sha256(&tar), diff_id, "the layer's diff id");
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(tar.as_slice());
    for entry in archive.entries().expect("a tar") {
        let mut entry = entry.expect("an entry");
        let header = entry.header().clone();
        assert_eq!(header.mtime().expect("mtime"), 0, "reproducible");
        if header.entry_type().is_dir() {
            continue;
        }
        let path = entry.path().expect("a path").to_string_lossy().into_owned();
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).expect("contents");
        files.insert(path, (header.mode().expect("a mode"), contents));
    }
    files
}

/// Runs `/usr/local/bin/neo --version` inside `root`, as a container would.
fn neo_version_in(root: &Path, files: &BTreeMap<String, (u32, Vec<u8>)>) -> String {
    let output = neo_harness::rootfs::run_inside(root, files, "/usr/local/bin/neo", &["--version"])
        .expect("neo runs inside the image");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn neo_image_platform_pushes_an_image_of_itself_that_runs() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut registry = neo_harness::RegistryServer::start()
        .await
        .expect("docker-registry (ops/install-deps installs it)");
    let host = registry.host();
    let dir = tempfile::tempdir().expect("a temporary directory");
    // A stand-in apphost (the option is what is tested; the real one is 100 MB more to pack).
    let apphost = dir.path().join("neo-apphost");
    std::fs::write(&apphost, "#!/bin/sh\necho apphost\n").expect("write");
    let neo = PathBuf::from(env!("CARGO_BIN_EXE_neo"));

    let run = tokio::process::Command::new(&neo)
        .args(["image", "platform", "--registry", &host, "--tag", "test"])
        .arg("--apphost")
        .arg(&apphost)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(150), run)
        .await
        .expect("neo image platform in time")
        .expect("neo runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("pushing 3 layers"), "{stderr}");
    let reference = stdout.trim();
    let digest = reference
        .strip_prefix(&format!("{host}/neo/platform:test@"))
        .unwrap_or_else(|| panic!("prints the reference with its digest: {reference}"))
        .to_owned();

    // The manifest, as the registry serves the tag: the digest printed.
    let client = reqwest::Client::new();
    let (manifest, served_digest) = get(
        &client,
        &host,
        "/v2/neo/platform/manifests/test",
        "application/vnd.oci.image.manifest.v1+json",
    )
    .await;
    assert_eq!(sha256(&manifest), digest);
    assert_eq!(served_digest.as_deref(), Some(digest.as_str()));
    let manifest: Value = serde_json::from_slice(&manifest).expect("a JSON manifest");
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );

    // The config: entrypoint neo, not root, one diff id per layer.
    let config_descriptor = &manifest["config"];
    assert_eq!(
        config_descriptor["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let config_digest = config_descriptor["digest"].as_str().expect("a digest");
    let (config, _) = get(
        &client,
        &host,
        &format!("/v2/neo/platform/blobs/{config_digest}"),
        "*/*",
    )
    .await;
    assert_eq!(sha256(&config), config_digest);
    let config: Value = serde_json::from_slice(&config).expect("a JSON config");
    assert_eq!(config["os"], "linux");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/neo"])
    );
    assert_eq!(config["config"]["User"], "65532:65532");
    let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff ids");

    // The layers: runtime, apphost, neo; each blob's digest and size as the manifest says.
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 3);
    assert_eq!(diff_ids.len(), 3);
    let mut files = BTreeMap::new();
    for (descriptor, diff_id) in layers.iter().zip(diff_ids) {
        assert_eq!(
            descriptor["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let layer_digest = descriptor["digest"].as_str().expect("a digest");
        let (blob, _) = get(
            &client,
            &host,
            &format!("/v2/neo/platform/blobs/{layer_digest}"),
            "*/*",
        )
        .await;
        assert_eq!(sha256(&blob), layer_digest);
        assert_eq!(Some(blob.len() as u64), descriptor["size"].as_u64());
        files.extend(unpack(&blob, diff_id.as_str().expect("a diff id")));
    }
    let (mode, shipped) = &files["usr/local/bin/neo"];
    assert_eq!(mode & 0o777, 0o755);
    let binary = std::fs::read(&neo).expect("the neo binary");
    assert_eq!(shipped.len(), binary.len());
    assert_eq!(sha256(shipped), sha256(&binary), "the very neo that pushed");
    assert_eq!(
        files["usr/local/bin/neo-apphost"].1,
        std::fs::read(&apphost).expect("the apphost")
    );
    assert!(
        files.keys().any(|path| path.contains("libc.so")),
        "the C library neo links: {:?}",
        files.keys().collect::<Vec<_>>()
    );

    // What the image holds runs neo.
    let root = dir.path().join("root");
    neo_harness::rootfs::write_tree(&root, &files).expect("the image written out");
    let version = neo_version_in(&root, &files);
    assert_eq!(version.trim(), format!("neo {}", env!("CARGO_PKG_VERSION")));

    registry.stop();
}
