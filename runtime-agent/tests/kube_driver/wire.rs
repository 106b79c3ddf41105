//! The wire format of the fake API server: request paths, label selectors, `Status` bodies.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

/// The response body: whole or streamed.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What a request path names.
#[derive(Debug)]
pub struct Target {
    /// The resource's plural (`deployments`).
    pub resource: String,
    /// The namespace; empty for cluster-scoped objects and lists across namespaces.
    pub namespace: String,
    /// The object's name; `None` for the collection.
    pub name: Option<String>,
    /// A subresource (`log`).
    pub subresource: Option<String>,
}

/// `(apiVersion, kind)` of a resource the server knows.
pub fn type_of(resource: &str) -> Option<(&'static str, &'static str)> {
    Some(match resource {
        "namespaces" => ("v1", "Namespace"),
        "pods" => ("v1", "Pod"),
        "services" => ("v1", "Service"),
        "configmaps" => ("v1", "ConfigMap"),
        "secrets" => ("v1", "Secret"),
        "deployments" => ("apps/v1", "Deployment"),
        "poddisruptionbudgets" => ("policy/v1", "PodDisruptionBudget"),
        "networkpolicies" => ("networking.k8s.io/v1", "NetworkPolicy"),
        "resourcequotas" => ("v1", "ResourceQuota"),
        "limitranges" => ("v1", "LimitRange"),
        "endpointslices" => ("discovery.k8s.io/v1", "EndpointSlice"),
        _ => return None,
    })
}

pub fn parse_target(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["api", "v1", rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, resource, rest @ ..] => (ns.to_string(), {
            let mut v = vec![*resource];
            v.extend_from_slice(rest);
            v
        }),
        other => (String::new(), other.to_vec()),
    };
    let (resource, name, subresource) = match rest.as_slice() {
        [resource] => (resource.to_string(), None, None),
        [resource, name] => (resource.to_string(), Some(name.to_string()), None),
        [resource, name, sub] => (
            resource.to_string(),
            Some(name.to_string()),
            Some(sub.to_string()),
        ),
        _ => return None,
    };
    Some(Target {
        resource,
        namespace,
        name,
        subresource,
    })
}

/// Whether `object`'s labels satisfy an equality selector (`a=b,c!=d,e`).
pub fn selects(selector: Option<&String>, object: &Value) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    let labels = &object["metadata"]["labels"];
    selector.split(',').all(|term| {
        if let Some((key, value)) = term.split_once("!=") {
            labels[key.trim()].as_str() != Some(value.trim())
        } else if let Some((key, value)) = term.split_once('=') {
            let value = value.trim_start_matches('=');
            labels[key.trim()].as_str() == Some(value.trim())
        } else {
            labels.get(term.trim()).is_some()
        }
    })
}

pub fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed_unsync())
        .expect("a valid response")
}

pub fn status_response(code: u16, reason: &str, message: &str) -> Response<Body> {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": if code < 300 { "Success" } else { "Failure" },
        "message": message, "reason": reason, "code": code,
    });
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &status,
    )
}

/// The object without what the server sets, to compare applies.
pub fn content(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object["metadata"].as_object_mut() {
        for field in ["uid", "resourceVersion", "generation", "creationTimestamp"] {
            meta.remove(field);
        }
    }
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    object
}
