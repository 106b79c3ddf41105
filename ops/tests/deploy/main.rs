//! `deploy/`, the platform on Kubernetes: every manifest passes Kubernetes' own schemas
//! (`kubernetes-validate --strict`, Kubernetes 1.33) and together they hold what the platform
//! needs (NATS's three JetStream nodes, `neo serve` with its autoscaler, budget and probes,
//! build workers, two agents per stage, RBAC, NetworkPolicies); the kustomization renders all
//! of them; `neo` takes every flag and variable they give it; and `deploy/secrets`, run with
//! the real `neo`, prints exactly the Secrets and keys the workloads mount (as the template
//! says), with a NATS configuration the real nats-server accepts ([`secrets`]).

mod secrets;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

fn tools() -> PathBuf {
    std::env::var_os("NEO_TOOLS").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/neo-tools"),
        PathBuf::from,
    )
}

/// Runs kubernetes-validate on `files`; its output. Panics unless every document passed.
fn validate(files: &[PathBuf], documents: usize) -> String {
    let text = neo_harness::kubernetes::validate(files).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text.matches(" passed ").count(), documents, "{text}");
    text
}

/// The documents of YAML files, as JSON (PyYAML from the tools' venv: the workspace has no
/// YAML crate).
fn yaml_documents(files: &[PathBuf]) -> Vec<Value> {
    let python = tools().join("venv/bin/python");
    let output = Command::new(&python)
        .args([
            "-c",
            "import json, sys, yaml\n\
             docs = []\n\
             for path in sys.argv[1:]:\n\
             \x20   docs += [d for d in yaml.safe_load_all(open(path)) if d]\n\
             print(json.dumps(docs))",
        ])
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (ops/install-deps makes it)", python.display()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&output.stdout).expect("JSON from PyYAML")
}

/// The manifests `kubectl apply -k deploy` applies (every YAML file but the kustomization and
/// the Secrets' template).
fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("deploy/")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .filter(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            name != "kustomization.yaml" && name != "secrets.template.yaml"
        })
        .collect();
    files.sort();
    files
}

fn named<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/"))
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

/// The pod templates of the workloads.
fn pod_templates(documents: &[Value]) -> Vec<(String, &Value)> {
    documents
        .iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("Deployment" | "StatefulSet" | "Job")
            )
        })
        .map(|d| {
            let name = d["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (name, &d["spec"]["template"]["spec"])
        })
        .collect()
}

fn container<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    &named(documents, kind, name)["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn every_manifest_passes_the_kubernetes_schemas_and_the_platform_is_all_there() {
    let files = manifests();
    let documents = yaml_documents(&files);
    let text = validate(&files, documents.len());
    for file in &files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(text.contains(&format!("{name} passed")), "{name}: {text}");
    }

    // NATS: three JetStream nodes on their own volumes, one per machine, spread over zones,
    // routed over the headless Service, configured as `neo nats-config` configures a cluster.
    let nats = named(&documents, "StatefulSet", "nats");
    assert_eq!(nats["spec"]["replicas"], 3);
    assert_eq!(nats["spec"]["serviceName"], "nats-routes");
    assert_eq!(
        nats["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"],
        serde_json::json!(["ReadWriteOnce"])
    );
    let nats_pod = &nats["spec"]["template"]["spec"];
    assert_eq!(
        nats_pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            [0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        nats_pod["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    assert_eq!(
        nats_pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"],
        serde_json::json!(["nats-server", "--signal", "ldm=/var/run/nats/nats.pid"])
    );
    assert_eq!(
        named(&documents, "Service", "nats-routes")["spec"]["clusterIP"],
        "None"
    );
    let config = named(&documents, "ConfigMap", "nats-config")["data"]["nats.conf"]
        .as_str()
        .expect("nats.conf");
    for setting in [
        "sync_interval: always",
        "lame_duck_duration: \"30s\"",
        "routes: $NEO_ROUTES",
        "verify: true",
        "cert_file: \"/etc/nats/tls/server.pem\"",
        "include \"../accounts/accounts.conf\"",
    ] {
        assert!(config.contains(setting), "{setting} not in nats.conf");
    }
    assert_eq!(
        named(&documents, "PodDisruptionBudget", "nats")["spec"]["maxUnavailable"],
        1
    );

    // `neo serve`: two or more, spread over zones, gRPC health probes on the gateway, a drain
    // on SIGTERM, an autoscaler on CPU and a disruption budget.
    let serve = named(&documents, "Deployment", "neo-serve");
    assert_eq!(serve["spec"]["replicas"], 2);
    let serve_pod = &serve["spec"]["template"]["spec"];
    assert_eq!(
        serve_pod["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    let serve_container = container(&documents, "Deployment", "neo-serve");
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(serve_container[probe]["grpc"]["port"], 50051, "{probe}");
    }
    assert!(
        serve_container["args"]
            .as_array()
            .expect("args")
            .contains(&Value::from("--grpc-listen=0.0.0.0:50051"))
    );
    assert_eq!(
        serve_container["lifecycle"]["preStop"]["sleep"]["seconds"],
        5
    );
    // The pause, then the drain (20 s) fit in the grace period.
    assert!(serve_pod["terminationGracePeriodSeconds"].as_u64() >= Some(30));
    assert!(serve_container["resources"]["requests"]["cpu"].is_string());
    assert_eq!(
        named(&documents, "PodDisruptionBudget", "neo-serve")["spec"]["minAvailable"],
        1
    );

    // Two autoscalers on CPU: the platform's and the build workers'.
    let autoscalers = of_kind(&documents, "HorizontalPodAutoscaler");
    let targets: BTreeSet<&str> = autoscalers
        .iter()
        .map(|hpa| {
            hpa["spec"]["scaleTargetRef"]["name"]
                .as_str()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(targets, BTreeSet::from(["neo-build-worker", "neo-serve"]));
    for hpa in &autoscalers {
        assert_eq!(hpa["apiVersion"], "autoscaling/v2");
        assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    }
    assert_eq!(
        named(&documents, "HorizontalPodAutoscaler", "neo-serve")["spec"]["minReplicas"],
        2
    );
    let worker = container(&documents, "Deployment", "neo-build-worker");
    assert_eq!(worker["args"][0], "build-worker");

    // Two kube-driver agents per stage, sharing the stage's lease, as ServiceAccount neo-agent.
    for stage in ["dev", "test", "prod"] {
        let name = format!("neo-agent-{stage}");
        let agent = named(&documents, "Deployment", &name);
        assert_eq!(agent["spec"]["replicas"], 2, "{name}");
        let pod = &agent["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "neo-agent", "{name}");
        let args = pod["containers"][0]["args"].as_array().expect("args");
        let stage_arg = format!("--stage={stage}");
        for arg in [
            "agent",
            "--driver=kube",
            stage_arg.as_str(),
            "--activator-ip=$(POD_IP)",
        ] {
            assert!(args.contains(&Value::from(arg)), "{name}: {arg}");
        }
        // The activator is reached at the pod's IP.
        let env = pod["containers"][0]["env"].as_array().expect("env");
        assert!(
            env.iter().any(|e| e["name"] == "POD_IP"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"),
            "{name}: POD_IP"
        );
        assert_eq!(
            named(&documents, "PodDisruptionBudget", &name)["spec"]["minAvailable"],
            1
        );
    }
    named(&documents, "ServiceAccount", "neo-agent");
    named(&documents, "ClusterRole", "neo-agent-kube-driver");
    named(&documents, "ClusterRoleBinding", "neo-agent-kube-driver");

    // Default deny, then each allowed path.
    let deny = named(&documents, "NetworkPolicy", "default-deny-ingress");
    assert_eq!(deny["spec"]["podSelector"], serde_json::json!({}));
    assert!(deny["spec"].get("ingress").is_none());
    for policy in [
        "gateway-from-clients",
        "nats-from-neo",
        "nats-routes",
        "metrics-scrape",
    ] {
        named(&documents, "NetworkPolicy", policy);
    }
    // The agents' activator ports (the agent's default range) are open to the tenants' apps
    // and the edges.
    let activator = named(&documents, "NetworkPolicy", "agent-activator");
    let ports = &activator["spec"]["ingress"][0]["ports"][0];
    assert_eq!(
        (&ports["port"], &ports["endPort"]),
        (&Value::from(40000), &Value::from(40999))
    );
    assert_eq!(
        activator["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "neo-agent"
    );

    // Only the agents talk to the Kubernetes API; every pod meets the `restricted` profile.
    assert_eq!(
        named(&documents, "Namespace", "neo-system")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    for (name, pod) in pod_templates(&documents) {
        let mounts_token = pod["automountServiceAccountToken"] != false;
        assert_eq!(mounts_token, name.starts_with("neo-agent-"), "{name}");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        for container in pod["containers"].as_array().expect("containers") {
            let security = &container["securityContext"];
            assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(
                security["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{name}"
            );
        }
    }
}

#[test]
fn the_kustomization_lists_every_manifest_and_sets_every_workload_s_image() {
    let kustomization = yaml_documents(&[deploy_dir().join("kustomization.yaml")]);
    let listed: BTreeSet<String> = kustomization[0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a file").to_owned())
        .collect();
    let files: BTreeSet<String> = manifests()
        .iter()
        .map(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(listed, files);

    // Every Neo workload runs the image the kustomization sets (by its name), so
    // `kubectl apply -k` gives each the tag chosen there; NATS runs nats-server's own.
    let image = &kustomization[0]["images"][0];
    let name = image["name"].as_str().expect("the image's name");
    assert!(
        image["newTag"].as_str().is_some_and(|t| !t.is_empty()),
        "{image}"
    );
    let documents = yaml_documents(&manifests());
    let templates = pod_templates(&documents);
    assert!(!templates.is_empty());
    for (workload, pod) in templates {
        for container in pod["containers"].as_array().expect("containers") {
            let image_of = container["image"].as_str().unwrap_or_default();
            if image_of.starts_with("nats:") {
                continue;
            }
            assert!(
                image_of == name || image_of.starts_with(&format!("{name}:")),
                "{workload}: {image_of} is not {name}"
            );
        }
    }
}

/// `neo SUBCOMMAND --help`.
fn help(subcommand: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_neo"))
        .args([subcommand, "--help"])
        .output()
        .expect("neo");
    assert!(output.status.success(), "neo {subcommand} --help");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn neo_takes_every_flag_and_variable_the_manifests_give_it() {
    let documents = yaml_documents(&manifests());
    let settings: Vec<String> = named(&documents, "ConfigMap", "neo-settings")["data"]
        .as_object()
        .expect("data")
        .keys()
        .cloned()
        .collect();
    let mut settings_read: BTreeSet<String> = BTreeSet::new();
    let mut checked = 0;
    for (name, pod) in pod_templates(&documents) {
        let container = &pod["containers"][0];
        if !container["image"]
            .as_str()
            .unwrap_or_default()
            .contains("/neo/platform")
        {
            continue;
        }
        let args: Vec<String> = container["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| {
                a.as_str()
                    .expect("an argument")
                    .replace("$(POD_NAME)", "pod-0")
                    .replace("$(POD_IP)", "10.1.0.7")
            })
            .collect();
        // Parsed for real: an unknown flag or a bad value fails before the help is printed.
        let output = Command::new(env!("CARGO_BIN_EXE_neo"))
            .args(&args)
            .arg("--help")
            .output()
            .expect("neo");
        assert!(
            output.status.success(),
            "{name}: neo {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let help = help(&args[0]);
        for variable in container["env"].as_array().into_iter().flatten() {
            let variable = variable["name"].as_str().expect("a name");
            // Kubernetes puts it in the arguments (`$(POD_NAME)`): neo does not read it.
            let in_args = container["args"].as_array().into_iter().flatten().any(|a| {
                a.as_str()
                    .unwrap_or_default()
                    .contains(&format!("$({variable})"))
            });
            if in_args {
                continue;
            }
            assert!(
                help.contains(&format!("[env: {variable}")),
                "{name}: {variable}"
            );
        }
        if container["envFrom"][0]["configMapRef"]["name"] == "neo-settings" {
            for key in &settings {
                if help.contains(&format!("[env: {key}")) {
                    settings_read.insert(key.clone());
                }
            }
        }
        checked += 1;
    }
    assert_eq!(
        checked, 6,
        "serve, the build workers, three stages' agents, provisioning"
    );
    let unread: Vec<&String> = settings
        .iter()
        .filter(|k| !settings_read.contains(*k))
        .collect();
    assert!(unread.is_empty(), "no process reads {unread:?}");
}
