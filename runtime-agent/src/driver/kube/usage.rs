//! The requests of awake apps that may sleep, read from their pods: every
//! [`super::activator::ActivatorConfig::usage_every`], each ready pod of such an app is asked
//! `GET /activityz` (its apphost's count of requests so far and being answered); a count that
//! moved, or a request being answered, is noted as the app's latest request, at this agent's
//! clock ([`crate::activity::AppActivity::request`]). The agent's idle rule does the rest.
//!
//! Only apps whose policy lets them go to zero are asked, and only while they have replicas:
//! an app without such a policy costs nothing here, nor does one asleep.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use neo_protocol::envelope::now_ms;
use serde::Deserialize;

use super::activator::Shared;
use crate::driver::PodgroupKey;

/// How long one pod may take to answer.
const TIMEOUT: Duration = Duration::from_secs(2);

/// What `GET /activityz` answers.
#[derive(Debug, Deserialize)]
struct Usage {
    requests: u64,
    in_flight: u64,
}

/// Reads the usage of the apps that may sleep every `every`, until aborted.
pub(super) async fn run(shared: Arc<Shared>, every: Duration) {
    // The process uses ring; another component may have installed it already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = match reqwest::Client::builder()
        .no_proxy()
        .timeout(TIMEOUT)
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tracing::warn!(error = %e, "apps on Kubernetes will not go to zero: no HTTP client");
            return;
        }
    };
    // The last count of each pod (podgroup, pod name).
    let mut counts: HashMap<(PodgroupKey, String), u64> = HashMap::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let keys: Vec<PodgroupKey> = shared
            .sleepable
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        let pods: Vec<(PodgroupKey, String, SocketAddr)> = keys
            .iter()
            .flat_map(|key| {
                shared
                    .ready
                    .of(key)
                    .into_iter()
                    .map(|(pod, ip)| (key.clone(), pod, SocketAddr::new(ip, shared.pod_port)))
            })
            .collect();
        let answers =
            futures::future::join_all(pods.iter().map(|(_, _, address)| read(&http, *address)))
                .await;
        let now = now_ms();
        let mut asked = HashMap::with_capacity(pods.len());
        for ((key, pod, _), usage) in pods.into_iter().zip(answers) {
            let id = (key, pod);
            let earlier = counts.get(&id).copied();
            let Some(usage) = usage else {
                // Not answering now: its count is kept for the next read.
                if let Some(count) = earlier {
                    asked.insert(id, count);
                }
                continue;
            };
            let moved = match earlier {
                Some(count) => count != usage.requests,
                None => usage.requests > 0,
            };
            if moved || usage.in_flight > 0 {
                shared.activity.app(&id.0.tenant, &id.0.app).request(now);
            }
            asked.insert(id, usage.requests);
        }
        counts = asked;
    }
}

/// The usage of the pod at `address`, or `None` when it does not answer it.
async fn read(http: &reqwest::Client, address: SocketAddr) -> Option<Usage> {
    let response = http
        .get(format!("http://{address}/activityz"))
        .send()
        .await
        .inspect_err(|e| tracing::debug!(%address, error = %e, "cannot read a pod's usage"))
        .ok()?
        .error_for_status()
        .ok()?;
    let text = response.text().await.ok()?;
    serde_json::from_str(&text)
        .inspect_err(|e| tracing::debug!(%address, error = %e, "unreadable usage"))
        .ok()
}
