//! Why a starting pod is not ready yet: the agent asks its apphost's `/readyz`, which names its
//! reasons (`secret payment_api_key is not set`); the kubelet's readiness probe keeps the
//! answer's body to itself, so the pod's status only says `Ready=False`.
//!
//! [`follow`] asks one pod every [`EVERY`] while [`super::watch`] sees it running and not ready,
//! and reports each new answer; the watch stops it when the pod is ready or gone. The tenant's
//! NetworkPolicy lets the stage's agents in on the app port for this
//! ([`super::namespace::network_policy`]).

use std::time::Duration;

use tokio::sync::mpsc;

use crate::driver::process::health;

/// How often a starting pod is asked (the readiness probe's period).
pub const EVERY: Duration = Duration::from_secs(5);

/// How long one answer may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Why the apphost at `address` (`ip:port`) is not ready, as `neo status` shows it (`not ready:
/// /readyz answered 503: secret k is not set`); `None` when it answers ready, or cannot be asked
/// (the watch keeps what the pod's status says then).
pub async fn ask(http: &reqwest::Client, address: &str) -> Option<String> {
    let response = http
        .get(format!("http://{address}/readyz"))
        .timeout(TIMEOUT)
        .send()
        .await
        .inspect_err(|e| tracing::debug!(%address, error = %e, "cannot ask a starting pod why"))
        .ok()?;
    let status = response.status();
    if status.is_success() {
        return None;
    }
    let body = response.text().await.unwrap_or_default();
    Some(format!(
        "not ready: {}",
        health::failure("readyz", status.as_u16(), &body)
    ))
}

/// Asks the pod `id` at `address` every [`EVERY`], sending `(id, reason)` on `answers` when the
/// reason differs from the last one sent; ends when `answers` closes (the watch aborts it
/// sooner, when the pod is ready or gone).
pub async fn follow(
    http: reqwest::Client,
    id: String,
    address: String,
    answers: mpsc::Sender<(String, String)>,
) {
    let mut last = None;
    loop {
        if let Some(reason) = ask(&http, &address).await
            && last.as_ref() != Some(&reason)
        {
            last = Some(reason.clone());
            if answers.send((id.clone(), reason)).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}
