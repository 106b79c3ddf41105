//! `deploy/secrets`, run with the real `neo` on a credentials directory: it prints exactly the
//! Secrets and keys the workloads mount, as `secrets.template.yaml` says, the same again on a
//! second run, and a NATS configuration that the real nats-server accepts as a pod sees it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;

use crate::{
    container, deploy_dir, manifests, named, of_kind, pod_templates, tools, validate,
    yaml_documents,
};

/// What a Secret holds: key → value (decoded).
fn secret_data(secret: &Value) -> BTreeMap<String, String> {
    let mut data = BTreeMap::new();
    for (key, value) in secret["data"].as_object().into_iter().flatten() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().expect("base64"))
            .expect("base64");
        data.insert(key.clone(), String::from_utf8_lossy(&bytes).into_owned());
    }
    for (key, value) in secret["stringData"].as_object().into_iter().flatten() {
        data.insert(key.clone(), value.as_str().unwrap_or_default().to_owned());
    }
    data
}

/// Secret name → keys.
fn secret_keys(documents: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    of_kind(documents, "Secret")
        .into_iter()
        .map(|s| {
            let name = s["metadata"]["name"].as_str().expect("a name").to_owned();
            (name, secret_data(s).into_keys().collect())
        })
        .collect()
}

/// Secret name → the keys the workloads read from it (volumes and environment).
fn mounted_secrets(documents: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    let mut mounted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, pod) in pod_templates(documents) {
        for volume in pod["volumes"].as_array().into_iter().flatten() {
            let Some(secret) = volume.get("secret") else {
                continue;
            };
            let secret_name = secret["secretName"]
                .as_str()
                .expect("secretName")
                .to_owned();
            let items = secret["items"].as_array();
            assert!(items.is_some(), "{name}: volume {volume} mounts every key");
            let keys = mounted.entry(secret_name).or_default();
            for item in items.into_iter().flatten() {
                keys.insert(item["key"].as_str().expect("a key").to_owned());
            }
        }
        for container in pod["containers"].as_array().into_iter().flatten() {
            for variable in container["env"].as_array().into_iter().flatten() {
                let reference = &variable["valueFrom"]["secretKeyRef"];
                if let (Some(secret), Some(key)) =
                    (reference["name"].as_str(), reference["key"].as_str())
                {
                    mounted
                        .entry(secret.to_owned())
                        .or_default()
                        .insert(key.to_owned());
                }
            }
        }
    }
    mounted
}

/// `deploy/secrets DIR` with the `neo` under test; its YAML, written to `out`.
fn run_secrets_script(dir: &Path, out: &Path) {
    let output = Command::new(deploy_dir().join("secrets"))
        .arg(dir)
        .env("NEO_BIN", env!("CARGO_BIN_EXE_neo"))
        .output()
        .expect("deploy/secrets");
    assert!(
        output.status.success(),
        "deploy/secrets: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(out, &output.stdout).expect("write");
}

/// `value` with Kubernetes' `$(NAME)` references to `env` filled in.
fn expand(value: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = value.to_owned();
    for (name, known) in env {
        out = out.replace(&format!("$({name})"), known);
    }
    out
}

#[test]
fn deploy_secrets_prints_the_secrets_the_workloads_mount() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let creds = dir.path().join("credentials");
    std::fs::create_dir_all(&creds).expect("mkdir");
    for (file, value) in [
        (
            "database-url",
            "postgres://neo:pw@postgres.example:5432/neo\n",
        ),
        (
            "database-url-dev",
            "postgres://neo:pw@postgres.example:5432/neo_dev\n",
        ),
        (
            "database-url-test",
            "postgres://neo:pw@postgres.example:5432/neo_test\n",
        ),
        (
            "database-url-prod",
            "postgres://neo:pw@postgres.example:5432/neo_prod\n",
        ),
        ("s3-access-key", "neo\n"),
        ("s3-secret", "s3-secret-value\n"),
    ] {
        std::fs::write(creds.join(file), value).expect("write");
    }
    let printed_file = dir.path().join("secrets.yaml");
    run_secrets_script(&creds, &printed_file);
    let printed = yaml_documents(std::slice::from_ref(&printed_file));
    validate(std::slice::from_ref(&printed_file), printed.len());

    // The same Secrets and keys as the template, and the workloads read each of them.
    let template = yaml_documents(&[deploy_dir().join("secrets.template.yaml")]);
    let printed_keys = secret_keys(&printed);
    assert_eq!(printed_keys, secret_keys(&template));
    assert_eq!(printed_keys, mounted_secrets(&yaml_documents(&manifests())));
    for secret in &printed {
        assert_eq!(secret["metadata"]["namespace"], "neo-system");
    }
    let values: BTreeMap<String, BTreeMap<String, String>> = printed
        .iter()
        .map(|s| {
            (
                s["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                secret_data(s),
            )
        })
        .collect();
    // Values that become environment variables lose the file's line end.
    assert_eq!(
        values["neo-database"]["platform"],
        "postgres://neo:pw@postgres.example:5432/neo"
    );
    assert!(values["neo-nats-agent-dev"]["agent-dev.nk"].contains("agent-dev"));
    assert!(values["neo-gateway"]["token-key"].len() >= 32);

    // Kept: a second run prints the same Secrets.
    let again = dir.path().join("again.yaml");
    run_secrets_script(&creds, &again);
    assert_eq!(
        std::fs::read_to_string(&printed_file).expect("read"),
        std::fs::read_to_string(&again).expect("read")
    );

    // The NATS configuration as a pod sees it (the ConfigMap, the accounts and TLS from these
    // Secrets, the StatefulSet's environment), at this machine's paths: the real nats-server
    // accepts it (`-t` loads the certificates and the included accounts).
    let documents = yaml_documents(&manifests());
    let pod_dir = dir.path().join("pod");
    let at_pod = |path: &str| pod_dir.join(path.trim_start_matches('/'));
    let config = named(&documents, "ConfigMap", "nats-config")["data"]["nats.conf"]
        .as_str()
        .expect("nats.conf")
        .replace("/etc/nats/", &format!("{}/", at_pod("/etc/nats").display()))
        .replace(
            "\"/data\"",
            &format!("{:?}", at_pod("/data").display().to_string()),
        )
        .replace(
            "/var/run/nats/",
            &format!("{}/", at_pod("/var/run/nats").display()),
        );
    for (path, contents) in [
        ("/etc/nats/config/nats.conf", config),
        (
            "/etc/nats/accounts/accounts.conf",
            values["neo-nats-accounts"]["accounts.conf"].clone(),
        ),
        (
            "/etc/nats/tls/ca.pem",
            values["neo-nats-tls"]["ca.pem"].clone(),
        ),
        (
            "/etc/nats/tls/server.pem",
            values["neo-nats-tls"]["server.pem"].clone(),
        ),
        (
            "/etc/nats/tls/server-key.pem",
            values["neo-nats-tls"]["server-key.pem"].clone(),
        ),
    ] {
        let file = at_pod(path);
        std::fs::create_dir_all(file.parent().expect("a folder")).expect("mkdir");
        std::fs::write(file, contents).expect("write");
    }
    let mut env = BTreeMap::from([("POD_NAME".to_owned(), "nats-0".to_owned())]);
    for variable in container(&documents, "StatefulSet", "nats")["env"]
        .as_array()
        .expect("env")
    {
        let name = variable["name"].as_str().expect("a name").to_owned();
        let value = match (&variable["value"], &variable["valueFrom"]["secretKeyRef"]) {
            (Value::String(value), _) => expand(value, &env),
            (_, reference) if reference.is_object() => values
                [reference["name"].as_str().expect("a Secret")]
                [reference["key"].as_str().expect("a key")]
            .clone(),
            _ => continue,
        };
        env.insert(name, value);
    }
    assert!(env["NEO_ROUTES"].contains(&format!("route:{}@nats-0", env["NEO_ROUTE_PASSWORD"])));
    let nats_server = std::env::var_os("NEO_NATS_SERVER")
        .map_or_else(|| tools().join("venv/bin/nats-server"), PathBuf::from);
    let output = Command::new(&nats_server)
        .arg("-t")
        .arg("-c")
        .arg(at_pod("/etc/nats/config/nats.conf"))
        .env_clear()
        .envs(&env)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", nats_server.display()));
    assert!(
        output.status.success(),
        "nats-server -t: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
