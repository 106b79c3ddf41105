//! The objects of a tenant's stage namespace (Namespace, NetworkPolicy, ResourceQuota, LimitRange), built as plain values.
//!
//! Every app of the tenant on the stage lives in this namespace (`neo-{tenant}-{stage}`,
//! [`super::objects::namespace_name`]); [`super::KubeDriver`] applies these before the
//! podgroup's own objects ([`super::objects`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::objects::{
    CONTAINER_PORT, LABEL_MANAGED_BY, LABEL_NAME, LABEL_STAGE, LABEL_TENANT, MANAGED_BY,
    named_metadata, namespace_name,
};
use crate::driver::PodgroupKey;

/// `dev.neo/role`: `edge` on the namespaces of a stage's edge (its ingress controller), which
/// the tenants' NetworkPolicies let in.
pub const LABEL_ROLE: &str = "dev.neo/role";
/// The value of [`LABEL_ROLE`] on an edge namespace.
pub const ROLE_EDGE: &str = "edge";
/// The Pod Security profile every tenant namespace enforces.
pub const POD_SECURITY_PROFILE: &str = "restricted";
/// The NetworkPolicy of every tenant namespace.
pub const NETWORK_POLICY: &str = "neo-ingress";
/// The ResourceQuota of every tenant namespace.
pub const RESOURCE_QUOTA: &str = "neo-quota";
/// The LimitRange of every tenant namespace.
pub const LIMIT_RANGE: &str = "neo-limits";

/// The namespace of the podgroup's tenant and stage, enforcing the Pod Security `restricted`
/// profile (and warning and auditing with it).
pub fn namespace(key: &PodgroupKey) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(namespace_name(key)),
            labels: Some(BTreeMap::from([
                (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
                (LABEL_TENANT.to_owned(), key.tenant.clone()),
                (LABEL_STAGE.to_owned(), key.stage.clone()),
                (
                    "pod-security.kubernetes.io/enforce".to_owned(),
                    POD_SECURITY_PROFILE.to_owned(),
                ),
                (
                    "pod-security.kubernetes.io/enforce-version".to_owned(),
                    "latest".to_owned(),
                ),
                (
                    "pod-security.kubernetes.io/warn".to_owned(),
                    POD_SECURITY_PROFILE.to_owned(),
                ),
                (
                    "pod-security.kubernetes.io/audit".to_owned(),
                    POD_SECURITY_PROFILE.to_owned(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// The labels of the tenant namespace's own objects (NetworkPolicy, ResourceQuota, LimitRange).
fn namespace_object_labels(key: &PodgroupKey) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (LABEL_TENANT.to_owned(), key.tenant.clone()),
        (LABEL_STAGE.to_owned(), key.stage.clone()),
    ])
}

/// The value of [`LABEL_NAME`] on the agents' pods (as `deploy/agent-*.yaml` sets it).
pub const AGENT_NAME: &str = "neo-agent";

/// The tenant namespace's NetworkPolicy: every pod of it is isolated for ingress, and only
/// the tenant's own apps on the stage (pods of the same namespace), the stage's edge (pods in
/// namespaces labelled [`LABEL_ROLE`]`=edge` for the same stage) and the agents (pods named
/// [`AGENT_NAME`] in `agents_namespace`, which ask a starting replica's `/readyz` why it is
/// not ready) get in, the last two on the app port only. Egress stays open: apps reach their
/// database and other apps' APIs.
pub fn network_policy(key: &PodgroupKey, agents_namespace: &str) -> NetworkPolicy {
    let agents = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                agents_namespace.to_owned(),
            )])),
            ..LabelSelector::default()
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                LABEL_NAME.to_owned(),
                AGENT_NAME.to_owned(),
            )])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let edge = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([
                (LABEL_ROLE.to_owned(), ROLE_EDGE.to_owned()),
                (LABEL_STAGE.to_owned(), key.stage.clone()),
            ])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let same_namespace = NetworkPolicyPeer {
        pod_selector: Some(LabelSelector::default()),
        ..NetworkPolicyPeer::default()
    };
    NetworkPolicy {
        metadata: named_metadata(key, NETWORK_POLICY.to_owned(), namespace_object_labels(key)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(vec![same_namespace]),
                    ports: None,
                },
                NetworkPolicyIngressRule {
                    from: Some(vec![edge, agents]),
                    ports: Some(vec![NetworkPolicyPort {
                        port: Some(IntOrString::Int(CONTAINER_PORT)),
                        protocol: Some("TCP".to_owned()),
                        ..NetworkPolicyPort::default()
                    }]),
                },
            ]),
            egress: None,
        }),
    }
}

/// The tenant namespace's ResourceQuota from the tenant's quota: at most `2 × max_apps`
/// Deployments and Secrets (each app may run a canary beside it, with a Secret of its own),
/// `max_apps` Services, and `max_apps × (max_replicas_per_app + 1)` pods (one surge pod per app
/// during a rollout; a canary's replicas are part of its app's count, one more while the app
/// runs a single replica). A limit of 0 (unlimited)
/// is left out.
pub fn resource_quota(key: &PodgroupKey, quota: &neo_protocol::pb::Quota) -> ResourceQuota {
    let mut hard = BTreeMap::new();
    if quota.max_apps > 0 {
        let apps = u64::from(quota.max_apps);
        hard.insert("services".to_owned(), Quantity(apps.to_string()));
        for resource in ["count/deployments.apps", "secrets"] {
            hard.insert(resource.to_owned(), Quantity((2 * apps).to_string()));
        }
        if quota.max_replicas_per_app > 0 {
            let pods = apps * (u64::from(quota.max_replicas_per_app) + 1);
            hard.insert("pods".to_owned(), Quantity(pods.to_string()));
        }
    }
    ResourceQuota {
        metadata: named_metadata(key, RESOURCE_QUOTA.to_owned(), namespace_object_labels(key)),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    }
}

/// The tenant namespace's LimitRange: a container that names no resources gets the
/// podgroup's default allocation (250 millicores, 256 MiB) as request and limit.
pub fn limit_range(key: &PodgroupKey) -> LimitRange {
    let defaults = BTreeMap::from([
        ("cpu".to_owned(), Quantity("250m".to_owned())),
        ("memory".to_owned(), Quantity("256Mi".to_owned())),
    ]);
    LimitRange {
        metadata: named_metadata(key, LIMIT_RANGE.to_owned(), namespace_object_labels(key)),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default: Some(defaults.clone()),
                default_request: Some(defaults),
                ..LimitRangeItem::default()
            }],
        }),
    }
}
