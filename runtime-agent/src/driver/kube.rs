//! The Kubernetes driver: each podgroup is a Deployment, a Service, a PodDisruptionBudget and
//! (with secrets) a Secret in its tenant's stage namespace, written by server-side apply.
//!
//! With a stage database ([`KubeDriver::with_database`]), each app gets its own role owning
//! only its schema, its URL in the podgroup's Secret as `NEO_DATABASE_URL` (the pods reach the
//! database at `--database-replica-host` when the cluster sees it elsewhere than the agent).
//!
//! Each tenant's stage namespace enforces the Pod Security `restricted` profile and holds a
//! NetworkPolicy (only the tenant's apps and the stage's edge get in), a ResourceQuota from the
//! tenant's quota and a LimitRange; a deleted tenant's namespace is deleted with everything in
//! it ([`Driver::purge`]).
//!
//! # Canaries
//!
//! Kubernetes splits no requests without a mesh or a Gateway, so a canary here is weighted by
//! replicas: a second Deployment, `{app}-canary`, runs the canary's release with the
//! podgroup's pod template (its own image, settings, secrets and a `dev.neo/track=canary`
//! label), and the app's Service, which selects every pod of the app, spreads connections over
//! the ready pods of both. The canary runs its weight's share of the desired count, rounded up
//! (at least one), the podgroup's Deployment the rest (at least one), so the count stays the
//! desired one ([`canary::split`]); its share of the traffic is its share of the ready replicas,
//! by connection, not by request, and a sticky canary is not sticky here. An ended canary
//! (promoted: the podgroup's Deployment then runs its release; or rolled back) has its
//! Deployment and Secret deleted at once; a promoted one's share of the pods is missing until
//! the release's Deployment has rolled its new pods.
//!
//! No load balancer of the agent's stands in front of the pods, so a step's figures (requests,
//! errors, answer times of each release) are counted by the pods themselves: the agent reads
//! every ready pod of an app with a canary each second (`GET /activityz`, [`usage`]) and adds
//! what each answered to its release's side ([`Driver::canaries`]); the agent judges each step
//! by them as on the process driver. A canary whose pods cannot start (its Deployment's progress deadline passes) is observed as
//! [`Observed::canary_failed`]; its pods are never ready, so the Service sends them nothing.
//!
//! # Scale to zero
//!
//! With an activator ([`KubeDriver::with_activator`]), an app whose policy lets it sleep goes
//! to zero replicas after its idle window, and its Service's connections go to the agent's
//! activator meanwhile (an EndpointSlice of its own beside the Service's), which holds the
//! requests, has the app woken and hands them to its first ready pod ([`activator`]); the idle
//! window runs from the last request its pods counted ([`usage`]). Without one, the policy is
//! accepted and the app keeps a replica (the agent never sees it idle).
//!
//! # Layout
//!
//! - [`activator`]: the activator: its ports, its slices, holding and passing requests on.
//! - [`usage`]: reading the pods' counts (idle windows, canaries' figures).
//! - [`ready`]: the ready pods of each podgroup, from the pod watch.
//! - [`objects`]: the objects of a podgroup (names, labels, manifests), built without I/O.
//! - [`canary`]: a canary's Deployment and Secret, and its share of the replicas, without I/O.
//! - [`namespace`]: the objects of a tenant's stage namespace, built without I/O.
//! - [`status`]: what pod and Deployment statuses mean (replica phases, rollouts), without I/O.
//! - [`watch`]: the pod watch that turns pod changes into [`DriverEvent::Health`].
//! - [`logs`]: following pod logs into [`DriverEvent::Logs`], and reading a line's level.
//! - [`why`]: asking a starting pod's apphost why it is not ready.
//!
//! Every object carries `app.kubernetes.io/managed-by=neo`, which is how [`KubeDriver::observe`]
//! and the pod watch find them again after a restart: the driver keeps no state of its own.

pub mod activator;
pub mod canary;
pub mod logs;
pub mod namespace;
pub mod objects;
pub mod ready;
pub mod status;
pub mod usage;
pub mod watch;
pub mod why;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod, ResourceQuota, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::serde::Serialize;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use self::activator::{Activator, ActivatorConfig};
use self::objects::{FIELD_MANAGER, LABEL_STAGE, LABEL_TENANT, MANAGED_SELECTOR, ObjectError};
use super::database::{StageDatabase, URL_ENV};
use super::{Desired, Driver, DriverError, DriverEvent, Observed, PodgroupKey};

/// The Kubernetes driver failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The podgroup cannot be written as Kubernetes objects.
    #[error(transparent)]
    Objects(#[from] ObjectError),
    /// The API refused or failed a request; `message` is the API's own.
    #[error("{action}: {message}")]
    Api {
        /// What the driver was doing (`apply Deployment neo-acme-dev/shop`).
        action: String,
        /// What the API (or the connection to it) said.
        message: String,
    },
    /// The namespace `neo-{tenant}-{stage}` already belongs to another tenant and stage (names
    /// with dashes can meet: `a-b`/`c` and `a`/`b-c`).
    #[error("namespace {namespace} belongs to tenant {tenant}, stage {stage}")]
    NamespaceTaken {
        /// The namespace.
        namespace: String,
        /// Its tenant label.
        tenant: String,
        /// Its stage label.
        stage: String,
    },
    /// No cluster configuration could be loaded.
    #[error("kubeconfig: {0}")]
    Config(String),
    /// The activator cannot answer for an app at zero (no port free).
    #[error("activator: {0}")]
    Activator(String),
}

impl From<KubeError> for DriverError {
    fn from(err: KubeError) -> Self {
        DriverError::Backend(err.to_string())
    }
}

impl KubeError {
    /// An API error while doing `action`, with the API's message when it sent one.
    fn api(action: impl Into<String>, err: kube::Error) -> Self {
        let message = match err {
            kube::Error::Api(status) => {
                let mut message = if status.message.is_empty() {
                    status.reason.clone()
                } else {
                    status.message.clone()
                };
                if status.code != 0 {
                    message = format!("{message} ({})", status.code);
                }
                message
            }
            other => {
                // Connection errors say little at the top ("client error (Connect)"): add causes.
                let mut message = other.to_string();
                let mut source = std::error::Error::source(&other);
                while let Some(cause) = source {
                    let cause_text = cause.to_string();
                    if !message.contains(&cause_text) {
                        message = format!("{message}: {cause_text}");
                    }
                    source = cause.source();
                }
                message
            }
        };
        KubeError::Api {
            action: action.into(),
            message,
        }
    }
}

/// Whether an error is the API's 404.
fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

/// Runs podgroups on a Kubernetes cluster.
#[derive(Clone)]
pub struct KubeDriver {
    client: Client,
    events: mpsc::Sender<DriverEvent>,
    /// The stage database, when the stage has one: each app gets its own role and schema.
    database: Option<Arc<StageDatabase>>,
    /// The ready pods, the port pods are reached on (a starting pod's `/readyz` ([`watch`]), a
    /// pod's `/activityz` ([`usage`]), the requests the activator held), and the apps whose
    /// pods' usage is read.
    tracked: Arc<usage::Tracked>,
    /// The activator, when apps may go to zero here.
    activator: Option<Arc<Activator>>,
}

impl Debug for KubeDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeDriver")
            .field("namespace", &self.client.default_namespace())
            .finish_non_exhaustive()
    }
}

/// The pod watch and its log followers; dropping it stops them.
#[derive(Debug)]
pub struct Watching {
    task: JoinHandle<()>,
}

impl Watching {
    /// Whether the watch has ended (its events channel closed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KubeDriver {
    /// A driver talking to the cluster behind `client`, sending what it watches on `events`.
    pub fn new(client: Client, events: mpsc::Sender<DriverEvent>) -> Self {
        Self {
            client,
            events,
            database: None,
            tracked: Arc::new(usage::Tracked::new(
                Arc::default(),
                objects::CONTAINER_PORT as u16,
            )),
            activator: None,
        }
    }

    /// The same driver, reaching pods on `port` of their IP instead of the app's container
    /// port (for a cluster whose pod IPs are reached through a port map, and for tests).
    #[must_use]
    pub fn with_pod_port(self, port: u16) -> Self {
        self.tracked.set_pod_port(port);
        self
    }

    /// The same driver, letting apps go to zero replicas: an activator listening and reached
    /// as `config` says stands in for an app at zero ([`activator`]).
    #[must_use]
    pub fn with_activator(mut self, config: ActivatorConfig) -> Self {
        self.activator = Some(Arc::new(Activator::new(
            config,
            self.client.clone(),
            self.tracked.clone(),
        )));
        self
    }

    /// The same driver, giving each app its own role on `database` (its URL in the podgroup's
    /// Secret as `NEO_DATABASE_URL`), and dropping a purged app's schema and role.
    #[must_use]
    pub fn with_database(mut self, database: StageDatabase) -> Self {
        self.database = Some(Arc::new(database));
        self
    }

    /// A driver for the cluster of the kubeconfig at `path`, or (`None`) of the usual
    /// configuration: `$KUBECONFIG`, `~/.kube/config`, or the in-cluster service account.
    ///
    /// # Errors
    ///
    /// [`KubeError::Config`] when no configuration can be loaded or it is invalid.
    pub async fn from_kubeconfig(
        path: Option<&Path>,
        events: mpsc::Sender<DriverEvent>,
    ) -> Result<Self, KubeError> {
        // The process uses ring; another component may have installed it already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = match path {
            None => Client::try_default()
                .await
                .map_err(|err| KubeError::Config(err.to_string()))?,
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .map_err(|err| KubeError::Config(format!("{}: {err}", path.display())))?;
                let config =
                    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                        .await
                        .map_err(|err| KubeError::Config(format!("{}: {err}", path.display())))?;
                Client::try_from(config).map_err(|err| KubeError::Config(err.to_string()))?
            }
        };
        Ok(Self::new(client, events))
    }

    /// The client the driver uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Starts the pod watch (health events, the ready pods), the log followers (log events)
    /// and the usage reader (idle windows, canaries' figures) on the current tokio runtime.
    pub fn start_watching(&self) -> Watching {
        let watching = watch::run(
            self.client.clone(),
            self.events.clone(),
            self.tracked.pod_port(),
            self.tracked.ready.clone(),
        );
        let idle_every = self
            .activator
            .as_ref()
            .map_or(activator::USAGE_EVERY, |a| a.config().usage_every);
        let usage = usage::run(self.tracked.clone(), idle_every);
        Watching {
            task: tokio::spawn(async move {
                tokio::select! {
                    () = watching => {}
                    () = usage => {}
                }
            }),
        }
    }

    /// Makes sure the namespace of `key` is ours, then applies it and its NetworkPolicy,
    /// LimitRange and (when the platform sent the tenant's quota) ResourceQuota.
    ///
    /// # Errors
    ///
    /// [`KubeError::NamespaceTaken`] when it is labelled for another tenant or stage;
    /// [`KubeError::Api`] when the API fails.
    async fn apply_namespace(
        &self,
        key: &PodgroupKey,
        quota: Option<&neo_protocol::pb::Quota>,
    ) -> Result<(), KubeError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let wanted = namespace::namespace(key);
        let name = wanted.metadata.name.clone().unwrap_or_default();
        if let Some(labels) = self.namespace_labels(&api, &name).await? {
            let tenant = labels.get(LABEL_TENANT).cloned().unwrap_or_default();
            let stage = labels.get(LABEL_STAGE).cloned().unwrap_or_default();
            let other_tenant = !tenant.is_empty() && tenant != key.tenant;
            let other_stage = !stage.is_empty() && stage != key.stage;
            if other_tenant || other_stage {
                return Err(KubeError::NamespaceTaken {
                    namespace: name,
                    tenant,
                    stage,
                });
            }
        }
        server_side_apply(&api, &name, &wanted).await?;
        let client = &self.client;
        server_side_apply(
            &Api::<NetworkPolicy>::namespaced(client.clone(), &name),
            namespace::NETWORK_POLICY,
            &namespace::network_policy(key, client.default_namespace()),
        )
        .await?;
        server_side_apply(
            &Api::<LimitRange>::namespaced(client.clone(), &name),
            namespace::LIMIT_RANGE,
            &namespace::limit_range(key),
        )
        .await?;
        if let Some(quota) = quota {
            server_side_apply(
                &Api::<ResourceQuota>::namespaced(client.clone(), &name),
                namespace::RESOURCE_QUOTA,
                &namespace::resource_quota(key, quota),
            )
            .await?;
        }
        Ok(())
    }

    /// The labels of namespace `name` (empty when it has none), or `None` when it does not
    /// exist.
    ///
    /// # Errors
    ///
    /// [`KubeError::Api`] when the API fails.
    async fn namespace_labels(
        &self,
        api: &Api<Namespace>,
        name: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, KubeError> {
        let existing = api
            .get_opt(name)
            .await
            .map_err(|err| KubeError::api(format!("get Namespace {name}"), err))?;
        Ok(existing.map(|ns| ns.metadata.labels.unwrap_or_default()))
    }

    /// Deletes the Secret `name` of `key`'s namespace left from a release (or canary) that had
    /// secrets, if there is one (a read first, so that a podgroup that never had secrets costs
    /// no write).
    ///
    /// # Errors
    ///
    /// [`KubeError::Api`] when the API fails.
    async fn delete_leftover_secret(&self, key: &PodgroupKey, name: &str) -> Result<(), KubeError> {
        let api = Api::<Secret>::namespaced(self.client.clone(), &objects::namespace_name(key));
        let existing = api
            .get_metadata_opt(name)
            .await
            .map_err(|err| KubeError::api(format!("get Secret {name}"), err))?;
        if existing.is_some() {
            delete_if_present(&api, name).await?;
        }
        Ok(())
    }

    /// Deletes the podgroup's canary, if one runs: its Secret, then its Deployment (its pods go
    /// with it). The canary's Deployment is found by a list of the namespace's Deployments
    /// labelled as the app's canary ([`canary::selector`]), so that a podgroup without a canary
    /// costs no write and an app called `{app}-canary` is left alone.
    ///
    /// # Errors
    ///
    /// [`KubeError::Api`] when the API fails; what is already gone is fine.
    async fn delete_canary(&self, key: &PodgroupKey) -> Result<(), KubeError> {
        let namespace = objects::namespace_name(key);
        let api = Api::<Deployment>::namespaced(self.client.clone(), &namespace);
        let found = api
            .list_metadata(&ListParams::default().labels(&canary::selector(key)))
            .await
            .map_err(|err| KubeError::api(format!("list Deployments {namespace}"), err))?;
        if found.items.is_empty() {
            return Ok(());
        }
        // The Secret first: when a delete fails, the next apply finds the Deployment again.
        delete_if_present(
            &Api::<Secret>::namespaced(self.client.clone(), &namespace),
            &canary::secret_name(key),
        )
        .await?;
        for deployment in found.items {
            if let Some(name) = deployment.metadata.name {
                delete_if_present(&api, &name).await?;
            }
        }
        tracing::info!(podgroup = %key, "canary ended: its Deployment deleted");
        Ok(())
    }
}

/// `desired` with the stage database's URL for `key`'s role among the secrets of its release
/// and of its canary.
fn with_database_url(desired: &Desired, url: &str) -> Desired {
    let mut desired = desired.clone();
    desired.secrets.0.insert(URL_ENV.to_owned(), url.to_owned());
    if let Some(canary) = &mut desired.canary {
        canary.secrets.0.insert(URL_ENV.to_owned(), url.to_owned());
    }
    desired
}

/// Writes `object` by server-side apply (`application/apply-patch+yaml`, field manager
/// `neo-runtime-agent`, forcing conflicts: the driver owns these fields).
///
/// # Guarantees
///
/// Idempotent: applying the same object again changes nothing (no new generation).
///
/// # Errors
///
/// [`KubeError::Api`] with the API's message.
async fn server_side_apply<K>(api: &Api<K>, name: &str, object: &K) -> Result<(), KubeError>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(object))
        .await
        .map_err(|err| KubeError::api(format!("apply {} {name}", K::kind(&())), err))?;
    tracing::debug!(kind = %K::kind(&()), name, "applied");
    Ok(())
}

/// Deletes `name` if it exists.
///
/// # Errors
///
/// [`KubeError::Api`] with the API's message (not found is not an error).
async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<(), KubeError>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            tracing::debug!(kind = %K::kind(&()), name, "deleted");
            Ok(())
        }
        Err(err) if is_not_found(&err) => Ok(()),
        Err(err) => Err(KubeError::api(
            format!("delete {} {name}", K::kind(&())),
            err,
        )),
    }
}

#[async_trait::async_trait]
impl Driver for KubeDriver {
    fn name(&self) -> &'static str {
        "kube"
    }

    /// Applies the namespace, the Secrets (when the podgroup, or its canary with other values,
    /// has secrets: before the Deployments, whose pods read them), the canary's Deployment
    /// when a canary is desired, then the podgroup's Deployment, Service and
    /// PodDisruptionBudget. Then deletes what is no longer desired: a Secret left from an
    /// earlier release or canary (after the Deployments no longer read it), and the canary's
    /// Deployment and Secret once the canary has ended.
    ///
    /// # Guarantees
    ///
    /// Idempotent; returns once the API has stored the objects, without waiting for pods. Secret
    /// values go to the Secrets only: the Deployments refer to them and carry a one-way digest
    /// (so a changed value rolls the pods), and nothing logs them.
    ///
    /// # Errors
    ///
    /// [`DriverError::Backend`] with the API's message, or when the key's names cannot name
    /// Kubernetes objects or its namespace belongs to another tenant and stage.
    async fn apply(&self, desired: &Desired) -> Result<(), DriverError> {
        let key = &desired.key;
        objects::check_key(key).map_err(KubeError::from)?;
        let with_database;
        let desired = match &self.database {
            Some(database) => {
                let url = database
                    .provision(key)
                    .await
                    .map_err(|e| DriverError::Backend(e.to_string()))?;
                with_database = with_database_url(desired, &url);
                &with_database
            }
            None => desired,
        };
        let deployment = objects::deployment(desired).map_err(KubeError::from)?;
        let secret = objects::secret(desired).map_err(KubeError::from)?;
        let canary_deployment = canary::deployment(desired).map_err(KubeError::from)?;
        let canary_secret = canary::secret(desired).map_err(KubeError::from)?;
        self.apply_namespace(key, desired.quota.as_ref()).await?;
        let namespace = objects::namespace_name(key);
        let client = &self.client;
        let secrets = Api::<Secret>::namespaced(client.clone(), &namespace);
        let deployments = Api::<Deployment>::namespaced(client.clone(), &namespace);
        if let Some(secret) = &secret {
            server_side_apply(&secrets, &objects::secret_name(key), secret).await?;
        }
        if let Some(secret) = &canary_secret {
            server_side_apply(&secrets, &canary::secret_name(key), secret).await?;
        }
        // An app going to zero: the activator answers for it before its pods stop.
        // Without an activator no app goes to zero: its idle window is not watched.
        let idle_to_zero_s = if self.activator.is_some() {
            desired.idle_to_zero_s
        } else {
            0
        };
        let canary_release = desired.canary.as_ref().map(|c| c.release);
        self.tracked
            .note(key, idle_to_zero_s, desired.replicas, canary_release);
        if let Some(activator) = &self.activator {
            if desired.replicas == 0 && desired.idle_to_zero_s > 0 {
                activator.sleep(key).await?;
            } else {
                activator.wake(key).await?;
            }
        }
        // The canary's first: its pods start while the release's Deployment scales down.
        if let Some(deployment) = &canary_deployment {
            server_side_apply(&deployments, &canary::name(key), deployment).await?;
        }
        server_side_apply(&deployments, &key.app, &deployment).await?;
        server_side_apply(
            &Api::<Service>::namespaced(client.clone(), &namespace),
            &key.app,
            &objects::service(key),
        )
        .await?;
        server_side_apply(
            &Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace),
            &key.app,
            &objects::pod_disruption_budget(key),
        )
        .await?;
        if secret.is_none() {
            self.delete_leftover_secret(key, &objects::secret_name(key))
                .await?;
        }
        if canary_deployment.is_none() {
            self.delete_canary(key).await?;
        } else if canary_secret.is_none() {
            self.delete_leftover_secret(key, &canary::secret_name(key))
                .await?;
        }
        let split = canary::split(desired.replicas, desired.canary.as_ref().map(|c| c.weight));
        // How many secrets, never their values.
        tracing::info!(
            podgroup = %key,
            release = desired.release,
            replicas = split.stable,
            secrets = desired.secrets.0.len(),
            canary = ?desired.canary.as_ref().map(|c| c.release),
            canary_replicas = split.canary,
            "applied"
        );
        Ok(())
    }

    /// Deletes the canary's Secret and Deployment when a canary runs, then the Deployment (its
    /// pods go with it), the Service, the PodDisruptionBudget and the Secret; the namespace
    /// stays (other apps of the stage live there).
    ///
    /// # Errors
    ///
    /// [`DriverError::Backend`] with the API's message; objects already gone are fine.
    async fn remove(&self, key: &PodgroupKey) -> Result<(), DriverError> {
        objects::check_key(key).map_err(KubeError::from)?;
        self.tracked.forget(key);
        if let Some(activator) = &self.activator {
            activator.forget(key).await?;
        }
        self.delete_canary(key).await?;
        let namespace = objects::namespace_name(key);
        let client = &self.client;
        delete_if_present(
            &Api::<Deployment>::namespaced(client.clone(), &namespace),
            &key.app,
        )
        .await?;
        delete_if_present(
            &Api::<Service>::namespaced(client.clone(), &namespace),
            &key.app,
        )
        .await?;
        delete_if_present(
            &Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace),
            &key.app,
        )
        .await?;
        delete_if_present(
            &Api::<Secret>::namespaced(client.clone(), &namespace),
            &objects::secret_name(key),
        )
        .await?;
        tracing::info!(podgroup = %key, "removed");
        Ok(())
    }

    /// Deletes the tenant's stage namespace, and with it every object of every app of the
    /// tenant on the stage (the podgroup's first), and drops the app's schema and role on the
    /// stage database.
    ///
    /// # Errors
    ///
    /// [`DriverError::Backend`] with the API's message; a namespace already gone is fine.
    async fn purge(&self, key: &PodgroupKey) -> Result<(), DriverError> {
        self.remove(key).await?;
        if let Some(database) = &self.database {
            database
                .drop_app(key)
                .await
                .map_err(|e| DriverError::Backend(e.to_string()))?;
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        let name = objects::namespace_name(key);
        let Some(labels) = self.namespace_labels(&api, &name).await? else {
            return Ok(());
        };
        // A namespace of the same name may belong to another tenant (`a-b`/`c`, `a`/`b-c`).
        if labels.get(LABEL_TENANT) != Some(&key.tenant)
            || labels.get(LABEL_STAGE) != Some(&key.stage)
        {
            tracing::warn!(podgroup = %key, namespace = %name,
                "the namespace belongs to another tenant or stage; not deleted");
            return Ok(());
        }
        delete_if_present(&api, &name).await?;
        tracing::info!(podgroup = %key, namespace = %name, "purged");
        Ok(())
    }

    /// Lists the managed Deployments and pods of all namespaces: one podgroup for each app's
    /// Deployments (its own and its canary's), with the pods of both.
    ///
    /// # Errors
    ///
    /// [`DriverError::Backend`] with the API's message.
    async fn observe(&self) -> Result<Vec<Observed>, DriverError> {
        let params = ListParams::default().labels(MANAGED_SELECTOR);
        let deployments = Api::<Deployment>::all(self.client.clone())
            .list(&params)
            .await
            .map_err(|err| KubeError::api("list Deployments", err))?;
        let pods = Api::<Pod>::all(self.client.clone())
            .list(&params)
            .await
            .map_err(|err| KubeError::api("list Pods", err))?;
        let mut pods_by_key: HashMap<PodgroupKey, Vec<Pod>> = HashMap::new();
        for pod in pods.items {
            if let Some(key) = status::pod_key(&pod) {
                pods_by_key.entry(key).or_default().push(pod);
            }
        }
        // Each podgroup's own Deployment and its canary's.
        type Pair<'a> = (Option<&'a Deployment>, Option<&'a Deployment>);
        let mut by_key: BTreeMap<PodgroupKey, Pair<'_>> = BTreeMap::new();
        for deployment in &deployments.items {
            let labels = deployment.metadata.labels.as_ref();
            let Some(key) = objects::key_from_labels(labels) else {
                tracing::warn!(
                    deployment = ?deployment.metadata.name,
                    namespace = ?deployment.metadata.namespace,
                    "managed Deployment without podgroup labels; skipped"
                );
                continue;
            };
            let pair = by_key.entry(key).or_default();
            if canary::is_canary(labels) {
                pair.1 = Some(deployment);
            } else {
                pair.0 = Some(deployment);
            }
        }
        Ok(by_key
            .into_iter()
            .map(|(key, (main, canary))| {
                let pods = pods_by_key.get(&key).map_or(&[][..], Vec::as_slice);
                status::observed(key, main, canary, pods)
            })
            .collect())
    }

    /// Takes over the apps at zero the last active agent answered for (with an activator).
    async fn activate(&self) {
        if let Some(activator) = &self.activator
            && let Err(e) = activator.adopt().await
        {
            tracing::warn!(error = %e, "activator: cannot take over the apps at zero yet; trying again at the next apply");
        }
    }

    /// Closes the activator's ports (the next active agent opens them).
    async fn stand_by(&self) {
        if let Some(activator) = &self.activator {
            activator.stand_by().await;
        }
    }

    /// The requests the activator and the pods' usage saw, with an activator.
    fn activity(&self) -> Option<Arc<crate::activity::Activity>> {
        self.activator
            .as_ref()
            .map(|_| self.tracked.activity.clone())
    }

    /// What the canary's pods and the baseline's counted, read from them ([`usage`]).
    fn canaries(&self) -> Option<Arc<crate::canary::Canaries>> {
        Some(self.tracked.canaries.clone())
    }
}
