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
//! # Layout
//!
//! - [`objects`]: the objects of a podgroup (names, labels, manifests), built without I/O.
//! - [`status`]: what pod and Deployment statuses mean (replica phases, rollouts), without I/O.
//! - [`watch`]: the pod watch that turns pod changes into [`DriverEvent::Health`].
//! - [`logs`]: following pod logs into [`DriverEvent::Logs`], and reading a line's level.
//!
//! Every object carries `app.kubernetes.io/managed-by=neo`, which is how [`KubeDriver::observe`]
//! and the pod watch find them again after a restart: the driver keeps no state of its own.

pub mod logs;
pub mod objects;
pub mod status;
pub mod watch;
pub mod why;

use std::collections::HashMap;
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

use self::objects::{FIELD_MANAGER, LABEL_STAGE, LABEL_TENANT, MANAGED_SELECTOR, ObjectError};
use super::database::StageDatabase;
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
    /// The port a starting pod's `/readyz` is asked on ([`watch`]).
    readyz_port: u16,
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
            readyz_port: objects::CONTAINER_PORT as u16,
        }
    }

    /// The same driver, asking a starting pod why it is not ready on `port` of its IP instead of
    /// the app's container port (for a cluster whose pod IPs are reached through a port map,
    /// and for tests).
    #[must_use]
    pub fn with_readyz_port(mut self, port: u16) -> Self {
        self.readyz_port = port;
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

    /// Starts the pod watch (health events) and the log followers (log events) on the
    /// current tokio runtime.
    pub fn start_watching(&self) -> Watching {
        Watching {
            task: tokio::spawn(watch::run(
                self.client.clone(),
                self.events.clone(),
                self.readyz_port,
            )),
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
        let wanted = objects::namespace(key);
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
            objects::NETWORK_POLICY,
            &objects::network_policy(key, client.default_namespace()),
        )
        .await?;
        server_side_apply(
            &Api::<LimitRange>::namespaced(client.clone(), &name),
            objects::LIMIT_RANGE,
            &objects::limit_range(key),
        )
        .await?;
        if let Some(quota) = quota {
            server_side_apply(
                &Api::<ResourceQuota>::namespaced(client.clone(), &name),
                objects::RESOURCE_QUOTA,
                &objects::resource_quota(key, quota),
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

    /// Deletes the podgroup's Secret left from a release that had secrets, if there is one
    /// (a read first, so that a podgroup that never had secrets costs no write).
    ///
    /// # Errors
    ///
    /// [`KubeError::Api`] when the API fails.
    async fn delete_leftover_secret(&self, key: &PodgroupKey) -> Result<(), KubeError> {
        let api = Api::<Secret>::namespaced(self.client.clone(), &objects::namespace_name(key));
        let name = objects::secret_name(key);
        let existing = api
            .get_metadata_opt(&name)
            .await
            .map_err(|err| KubeError::api(format!("get Secret {name}"), err))?;
        if existing.is_some() {
            delete_if_present(&api, &name).await?;
        }
        Ok(())
    }
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

    /// Applies the namespace, the Secret (when the podgroup has secrets: before the Deployment,
    /// whose pods read it), then the Deployment, Service and PodDisruptionBudget; without secrets,
    /// deletes a Secret left from an earlier release (after the Deployment no longer reads it).
    ///
    /// # Guarantees
    ///
    /// Idempotent; returns once the API has stored the objects, without waiting for pods. Secret
    /// values go to the Secret only: the Deployment refers to them and carries a one-way digest
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
                let secrets = database
                    .with_url(key, &desired.secrets)
                    .await
                    .map_err(|e| DriverError::Backend(e.to_string()))?;
                with_database = Desired {
                    secrets,
                    ..desired.clone()
                };
                &with_database
            }
            None => desired,
        };
        let deployment = objects::deployment(desired).map_err(KubeError::from)?;
        let secret = objects::secret(desired).map_err(KubeError::from)?;
        self.apply_namespace(key, desired.quota.as_ref()).await?;
        let namespace = objects::namespace_name(key);
        let client = &self.client;
        if let Some(secret) = &secret {
            server_side_apply(
                &Api::<Secret>::namespaced(client.clone(), &namespace),
                &objects::secret_name(key),
                secret,
            )
            .await?;
        }
        server_side_apply(
            &Api::<Deployment>::namespaced(client.clone(), &namespace),
            &key.app,
            &deployment,
        )
        .await?;
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
            self.delete_leftover_secret(key).await?;
        }
        // How many secrets, never their values.
        tracing::info!(
            podgroup = %key,
            release = desired.release,
            replicas = desired.replicas,
            secrets = desired.secrets.0.len(),
            "applied"
        );
        Ok(())
    }

    /// Deletes the Deployment (its pods go with it), the Service, the PodDisruptionBudget and
    /// the Secret; the namespace stays (other apps of the stage live there).
    ///
    /// # Errors
    ///
    /// [`DriverError::Backend`] with the API's message; objects already gone are fine.
    async fn remove(&self, key: &PodgroupKey) -> Result<(), DriverError> {
        objects::check_key(key).map_err(KubeError::from)?;
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

    /// Lists the managed Deployments and pods of all namespaces.
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
        let mut by_key: HashMap<PodgroupKey, Vec<Pod>> = HashMap::new();
        for pod in pods.items {
            if let Some(key) = status::pod_key(&pod) {
                by_key.entry(key).or_default().push(pod);
            }
        }
        let mut observed: Vec<Observed> = deployments
            .items
            .iter()
            .filter_map(|deployment| {
                let key = objects::key_from_labels(deployment.metadata.labels.as_ref());
                let pods = key.and_then(|key| by_key.get(&key));
                let found = status::observed(deployment, pods.map_or(&[], Vec::as_slice));
                if found.is_none() {
                    tracing::warn!(
                        deployment = ?deployment.metadata.name,
                        namespace = ?deployment.metadata.namespace,
                        "managed Deployment without podgroup labels; skipped"
                    );
                }
                found
            })
            .collect();
        observed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(observed)
    }
}
