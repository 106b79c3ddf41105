//! The Kubernetes objects of one podgroup (Deployment, Service, PodDisruptionBudget, Secret), built as plain values, and the names and labels every object of the driver carries.
//!
//! A canary's Deployment and Secret are built here too (from a `Workload`, what one Deployment
//! runs), named and sized in [`super::canary`].
//!
//! Nothing here talks to the API: [`super::KubeDriver`] sends these objects by server-side
//! apply, and the tests compare them (as the API stored them) with golden files.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecurityContext, Service,
    ServicePort, ServiceSpec, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use neo_image::APP_USER_ID;
use neo_protocol::names::{MAX_NAME_LEN, NameError, validate_name};

use super::canary;
use crate::driver::{Desired, PodgroupKey, SecretEnv};

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "neo-runtime-agent";
/// `app.kubernetes.io/managed-by`: `neo` on every object the driver writes.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "neo";
/// The label selector of everything the driver manages (`app.kubernetes.io/managed-by=neo`).
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=neo";
/// `app.kubernetes.io/name`: the app.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// `dev.neo/tenant`.
pub const LABEL_TENANT: &str = "dev.neo/tenant";
/// `dev.neo/stage`.
pub const LABEL_STAGE: &str = "dev.neo/stage";
/// `dev.neo/app`.
pub const LABEL_APP: &str = "dev.neo/app";
/// `dev.neo/release`: the release a Deployment (and its pods) run.
pub const LABEL_RELEASE: &str = "dev.neo/release";
/// `dev.neo/track`: [`TRACK_CANARY`] on a canary's Deployment, pod template and Secret, and in
/// its Deployment's selector. The podgroup's own Deployment and pods carry none (adding one
/// would change every running pod template, rolling every app once): they are the stable track.
pub const LABEL_TRACK: &str = "dev.neo/track";
/// The value of [`LABEL_TRACK`] on a canary's objects.
pub const TRACK_CANARY: &str = "canary";
/// `dev.neo/secret-versions`: on the pod template, the versions of the podgroup's secrets
/// (`name=version,…`), so that a new version rolls the pods (see [`secret_versions`]). Versions
/// only: nothing here can be checked against a guessed value.
pub const ANNOTATION_SECRET_VERSIONS: &str = "dev.neo/secret-versions";
/// The writable scratch volume of every pod (the root filesystem is read-only), at `/tmp`.
pub const TMP_VOLUME: &str = "tmp";
/// How big the scratch volume may grow.
pub const TMP_SIZE: &str = "64Mi";
/// The name of the one container of every pod.
pub const CONTAINER: &str = "app";
/// The port the apphost listens on (`NEO_LISTEN=0.0.0.0:8080`).
pub const CONTAINER_PORT: i32 = 8080;
/// The Service's port.
pub const SERVICE_PORT: i32 = 80;
/// How long a rollout may make no progress before the Deployment reports it failed.
pub const PROGRESS_DEADLINE_SECONDS: i32 = 600;

/// The environment variables the driver sets itself; `desired.env` cannot override them.
const DRIVER_ENV: [&str; 6] = [
    "NEO_LISTEN",
    "NEO_TENANT",
    "NEO_APP",
    "NEO_STAGE",
    "NEO_REPLICA",
    "NEO_PRODUCERS",
];

/// A podgroup that cannot be written as Kubernetes objects.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The tenant, app or stage is not a valid name (so not a valid DNS label either).
    #[error(transparent)]
    Name(#[from] NameError),
    /// `neo-{tenant}-{stage}` is longer than the 63 characters a namespace name may have.
    #[error("namespace `{0}` is longer than {MAX_NAME_LEN} characters")]
    NamespaceTooLong(String),
    /// The replica count does not fit the API's 32-bit signed integer.
    #[error("{0} replicas is more than Kubernetes accepts")]
    TooManyReplicas(u32),
    /// A secret's name cannot be a key of a Secret (`[-._a-zA-Z0-9]+`); the name only, never
    /// the value.
    #[error("secret `{0}` is not a valid Secret key (letters, digits, `-`, `_`, `.`)")]
    SecretName(String),
}

/// The namespace of one tenant's stage: `neo-{tenant}-{stage}`.
pub fn namespace_name(key: &PodgroupKey) -> String {
    format!("neo-{}-{}", key.tenant, key.stage)
}

/// Checks that `key` names valid Kubernetes objects (names are DNS labels, the namespace fits).
///
/// # Errors
///
/// [`ObjectError::Name`] or [`ObjectError::NamespaceTooLong`].
pub fn check_key(key: &PodgroupKey) -> Result<(), ObjectError> {
    validate_name("tenant", &key.tenant)?;
    validate_name("app", &key.app)?;
    validate_name("stage", &key.stage)?;
    let namespace = namespace_name(key);
    if namespace.len() > MAX_NAME_LEN {
        return Err(ObjectError::NamespaceTooLong(namespace));
    }
    Ok(())
}

/// The labels that select one podgroup's pods (stable across releases).
pub fn selector_labels(key: &PodgroupKey) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_TENANT.to_owned(), key.tenant.clone()),
        (LABEL_STAGE.to_owned(), key.stage.clone()),
        (LABEL_APP.to_owned(), key.app.clone()),
    ])
}

/// The labels of the podgroup's Service and PodDisruptionBudget.
pub(super) fn podgroup_labels(key: &PodgroupKey) -> BTreeMap<String, String> {
    let mut labels = selector_labels(key);
    labels.insert(LABEL_NAME.to_owned(), key.app.clone());
    labels.insert(LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned());
    labels
}

/// The labels of the Deployment and its pods: the podgroup's, plus the release.
fn release_labels(key: &PodgroupKey, release: u32) -> BTreeMap<String, String> {
    let mut labels = podgroup_labels(key);
    labels.insert(LABEL_RELEASE.to_owned(), release.to_string());
    labels
}

/// The metadata of a namespaced object of the podgroup, named after the app.
fn metadata(key: &PodgroupKey, labels: BTreeMap<String, String>) -> ObjectMeta {
    named_metadata(key, key.app.clone(), labels)
}

/// The metadata of a namespaced object of the podgroup called `name`.
pub(super) fn named_metadata(
    key: &PodgroupKey,
    name: String,
    labels: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace_name(key)),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

/// What one Deployment of a podgroup runs: the podgroup's release (the stable track, named
/// after the app) or its canary beside it ([`super::canary::deployment`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Workload<'a> {
    /// The podgroup.
    pub key: &'a PodgroupKey,
    /// The Deployment's name.
    pub name: &'a str,
    /// Whether it is the canary's (labelled and selected by [`LABEL_TRACK`]).
    pub canary: bool,
    /// The release it runs.
    pub release: u32,
    /// Its image's pull reference.
    pub image_reference: &'a str,
    /// How many replicas.
    pub replicas: u32,
    /// Per-replica allocation.
    pub resources: &'a neo_protocol::pb::Resources,
    /// Its environment (settings).
    pub env: &'a BTreeMap<String, String>,
    /// Its secret environment (the names are what matters here: the values are in a Secret).
    pub secrets: &'a SecretEnv,
    /// The versions of its secrets.
    pub secret_versions: &'a BTreeMap<String, u32>,
    /// The Secret its secret environment refers to.
    pub secret_name: &'a str,
}

impl Workload<'_> {
    /// The labels of the Deployment and its pods: the podgroup's, the release's, and the
    /// track's for a canary.
    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = release_labels(self.key, self.release);
        if self.canary {
            labels.insert(LABEL_TRACK.to_owned(), TRACK_CANARY.to_owned());
        }
        labels
    }

    /// The Deployment's selector: the podgroup's labels, and the track's for a canary. The
    /// podgroup's own Deployment keeps the selector it always had (a selector cannot change),
    /// which also matches the canary's pods; neither Deployment adopts the other's pods, which
    /// belong to the other's ReplicaSets by their owner references and `pod-template-hash`.
    fn selector(&self) -> BTreeMap<String, String> {
        let mut labels = selector_labels(self.key);
        if self.canary {
            labels.insert(LABEL_TRACK.to_owned(), TRACK_CANARY.to_owned());
        }
        labels
    }
}

/// The Deployment running `desired`'s release: pinned to its image digest, with probes,
/// resources, topology spread and a surge-only rolling update. While a canary runs beside it,
/// it runs the rest of the desired count ([`super::canary::split`]).
///
/// # Errors
///
/// [`ObjectError::TooManyReplicas`] when the count does not fit an `i32`;
/// [`ObjectError::SecretName`] when a secret's name cannot be a Secret key.
pub fn deployment(desired: &Desired) -> Result<Deployment, ObjectError> {
    let split = canary::split(desired.replicas, desired.canary.as_ref().map(|c| c.weight));
    workload_deployment(&Workload {
        key: &desired.key,
        name: &desired.key.app,
        canary: false,
        release: desired.release,
        image_reference: &desired.image_reference,
        replicas: split.stable,
        resources: &desired.resources,
        env: &desired.env,
        secrets: &desired.secrets,
        secret_versions: &desired.secret_versions,
        secret_name: &secret_name(&desired.key),
    })
}

/// The Deployment of `workload`: pinned to its image digest, with probes, resources, topology
/// spread and a surge-only rolling update. Its pods meet the Pod Security `restricted` profile
/// (see [`pod_security`]) and mount no service-account token. Its secret environment comes
/// from its Secret by reference (the values are not in the Deployment); the template's
/// [`ANNOTATION_SECRET_VERSIONS`] changes with their versions, so a new version rolls the pods.
///
/// # Errors
///
/// [`ObjectError::TooManyReplicas`] when the count does not fit an `i32`;
/// [`ObjectError::SecretName`] when a secret's name cannot be a Secret key.
pub(super) fn workload_deployment(workload: &Workload<'_>) -> Result<Deployment, ObjectError> {
    let replicas = i32::try_from(workload.replicas)
        .map_err(|_| ObjectError::TooManyReplicas(workload.replicas))?;
    check_secret_names(workload.secrets)?;
    let annotations = (!workload.secrets.is_empty()).then(|| {
        BTreeMap::from([(
            ANNOTATION_SECRET_VERSIONS.to_owned(),
            secret_versions(workload.secret_versions),
        )])
    });
    let selector = LabelSelector {
        match_labels: Some(workload.selector()),
        ..LabelSelector::default()
    };
    let spread = |topology_key: &str| TopologySpreadConstraint {
        max_skew: 1,
        topology_key: topology_key.to_owned(),
        when_unsatisfiable: "ScheduleAnyway".to_owned(),
        label_selector: Some(selector.clone()),
        // Spread each ReplicaSet on its own, so a rollout does not skew by old pods.
        match_label_keys: Some(vec!["pod-template-hash".to_owned()]),
        ..TopologySpreadConstraint::default()
    };
    let labels = workload.labels();
    Ok(Deployment {
        metadata: named_metadata(workload.key, workload.name.to_owned(), labels.clone()),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: selector.clone(),
            progress_deadline_seconds: Some(PROGRESS_DEADLINE_SECONDS),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations,
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container(workload)],
                    topology_spread_constraints: Some(vec![
                        spread("topology.kubernetes.io/zone"),
                        spread("kubernetes.io/hostname"),
                    ]),
                    // Apps do not talk to the Kubernetes API: no token, no service links.
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(i64::from(APP_USER_ID)),
                        run_as_group: Some(i64::from(APP_USER_ID)),
                        fs_group: Some(i64::from(APP_USER_ID)),
                        seccomp_profile: Some(runtime_default_seccomp()),
                        ..PodSecurityContext::default()
                    }),
                    volumes: Some(vec![Volume {
                        name: TMP_VOLUME.to_owned(),
                        empty_dir: Some(EmptyDirVolumeSource {
                            size_limit: Some(Quantity(TMP_SIZE.to_owned())),
                            ..EmptyDirVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    })
}

/// The apphost container of `workload`.
fn container(workload: &Workload<'_>) -> Container {
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    Container {
        name: CONTAINER.to_owned(),
        image: Some(workload.image_reference.to_owned()),
        env: Some(env(workload)),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: CONTAINER_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(probe("/readyz", 5)),
        liveness_probe: Some(probe("/healthz", 10)),
        resources: Some(resources(workload.resources)),
        security_context: Some(pod_security()),
        volume_mounts: Some(vec![VolumeMount {
            name: TMP_VOLUME.to_owned(),
            mount_path: "/tmp".to_owned(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    }
}

/// The seccomp profile of the container runtime.
fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        ..SeccompProfile::default()
    }
}

/// The container's security context under the Pod Security `restricted` profile: not root
/// (the image's user, [`APP_USER_ID`]), no privilege escalation, every capability dropped,
/// seccomp `RuntimeDefault`, and a read-only root filesystem (scratch space is the
/// [`TMP_VOLUME`] at `/tmp`).
fn pod_security() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(i64::from(APP_USER_ID)),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..SecurityContext::default()
    }
}

/// The container's environment: the driver's own variables, then the workload's settings sorted
/// by name, then its secrets sorted by name, each a `secretKeyRef` to its Secret. A secret wins
/// over a setting of the same name (as in the process driver); neither overrides the driver's
/// own variables.
fn env(workload: &Workload<'_>) -> Vec<EnvVar> {
    let key = workload.key;
    let value = |name: &str, value: &str| EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    };
    let mut env = vec![
        value("NEO_LISTEN", &format!("0.0.0.0:{CONTAINER_PORT}")),
        value("NEO_TENANT", &key.tenant),
        value("NEO_APP", &key.app),
        value("NEO_STAGE", &key.stage),
        // The apps of this tenant on this stage: their Services in this namespace (which its
        // NetworkPolicy keeps to itself).
        value(
            "NEO_PRODUCERS",
            &format!("http://{{app}}.{}.svc", namespace_name(key)),
        ),
        EnvVar {
            name: "NEO_REPLICA".to_owned(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".to_owned(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        },
    ];
    for (name, val) in workload.env {
        if DRIVER_ENV.contains(&name.as_str()) {
            tracing::warn!(podgroup = %key, name, "ignoring an env entry the driver sets itself");
            continue;
        }
        if workload.secrets.0.contains_key(name) {
            tracing::warn!(podgroup = %key, name, "ignoring an env entry a secret of the same name replaces");
            continue;
        }
        env.push(value(name, val));
    }
    for name in workload.secrets.0.keys() {
        if DRIVER_ENV.contains(&name.as_str()) {
            tracing::warn!(podgroup = %key, name, "ignoring a secret the driver sets itself");
            continue;
        }
        env.push(EnvVar {
            name: name.clone(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: workload.secret_name.to_owned(),
                    key: name.clone(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
    }
    env
}

/// Whether every secret's name can be a key of a Secret (`[-._a-zA-Z0-9]+`).
///
/// # Errors
///
/// [`ObjectError::SecretName`] with the first name that cannot.
fn check_secret_names(secrets: &SecretEnv) -> Result<(), ObjectError> {
    let valid = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match secrets.0.keys().find(|name| !valid(name)) {
        Some(name) => Err(ObjectError::SecretName(name.clone())),
        None => Ok(()),
    }
}

/// The name of the podgroup's Secret: `{app}-secrets` (the Deployment is `{app}`).
pub fn secret_name(key: &PodgroupKey) -> String {
    format!("{}-secrets", key.app)
}

/// The value of [`ANNOTATION_SECRET_VERSIONS`]: `name=version` sorted by name, comma-separated.
/// A new version of any secret changes it; it says nothing about the values.
pub fn secret_versions(versions: &BTreeMap<String, u32>) -> String {
    versions
        .iter()
        .map(|(name, version)| format!("{name}={version}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The podgroup's Opaque Secret holding its secret environment, one key per variable; `None`
/// when it has none. It carries the podgroup's labels, not the release's: a new release with
/// the same secrets leaves it as it is.
///
/// # Errors
///
/// [`ObjectError::SecretName`] when a secret's name cannot be a Secret key.
pub fn secret(desired: &Desired) -> Result<Option<Secret>, ObjectError> {
    let key = &desired.key;
    opaque_secret(
        key,
        secret_name(key),
        podgroup_labels(key),
        &desired.secrets,
    )
}

/// An Opaque Secret called `name` holding `secrets`, one key per variable, labelled `labels`;
/// `None` when there are none.
///
/// # Errors
///
/// [`ObjectError::SecretName`] when a secret's name cannot be a Secret key.
pub(super) fn opaque_secret(
    key: &PodgroupKey,
    name: String,
    labels: BTreeMap<String, String>,
    secrets: &SecretEnv,
) -> Result<Option<Secret>, ObjectError> {
    if secrets.is_empty() {
        return Ok(None);
    }
    check_secret_names(secrets)?;
    let data = secrets
        .0
        .iter()
        .map(|(name, value)| (name.clone(), ByteString(value.clone().into_bytes())))
        .collect();
    Ok(Some(Secret {
        metadata: named_metadata(key, name, labels),
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }))
}

/// Requests equal to limits (guaranteed QoS); a zero amount is left unset.
fn resources(resources: &neo_protocol::pb::Resources) -> ResourceRequirements {
    let mut amounts = BTreeMap::new();
    if resources.cpu_millis > 0 {
        amounts.insert(
            "cpu".to_owned(),
            Quantity(format!("{}m", resources.cpu_millis)),
        );
    }
    if resources.memory_mib > 0 {
        amounts.insert(
            "memory".to_owned(),
            Quantity(format!("{}Mi", resources.memory_mib)),
        );
    }
    if amounts.is_empty() {
        return ResourceRequirements::default();
    }
    ResourceRequirements {
        requests: Some(amounts.clone()),
        limits: Some(amounts),
        ..ResourceRequirements::default()
    }
}

/// The podgroup's ClusterIP Service: port 80 to the container's 8080, of every ready pod of
/// the podgroup's, its canary's included (its selector names no release nor track).
pub fn service(key: &PodgroupKey) -> Service {
    Service {
        metadata: metadata(key, podgroup_labels(key)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(key)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::Int(CONTAINER_PORT)),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The podgroup's PodDisruptionBudget: at most one replica voluntarily down at a time (of
/// both Deployments while a canary runs).
pub fn pod_disruption_budget(key: &PodgroupKey) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: metadata(key, podgroup_labels(key)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(key)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// The podgroup an object belongs to, from its `dev.neo/{tenant,stage,app}` labels.
pub fn key_from_labels(labels: Option<&BTreeMap<String, String>>) -> Option<PodgroupKey> {
    let labels = labels?;
    Some(PodgroupKey {
        tenant: labels.get(LABEL_TENANT)?.clone(),
        app: labels.get(LABEL_APP)?.clone(),
        stage: labels.get(LABEL_STAGE)?.clone(),
    })
}

/// The release in an object's `dev.neo/release` label (0 when missing or not a number).
pub fn release_from_labels(labels: Option<&BTreeMap<String, String>>) -> u32 {
    labels
        .and_then(|labels| labels.get(LABEL_RELEASE))
        .and_then(|release| release.parse().ok())
        .unwrap_or(0)
}
