//! Agents' secret requests over NATS: the responder on `neo.secrets.{stage}.{tenant}.{app}` and
//! the agent's client for it.
//!
//! The reply is JSON, either `{"secrets": {"{name}": {"version": 3, "value": "…"}}}` or
//! `{"error": "…"}`. Error replies carry a [`SecretsError`] message, which never holds a value.
//! Which stage an agent may ask for is enforced by NATS permissions (an agent may publish to
//! `neo.secrets.{its stage}.>` only), not here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use neo_protocol::subjects::{
    SECRETS_QUEUE, SECRETS_REQUESTS_ALL, parse_secrets_request, secrets_request,
};
use neo_protocol::{AppName, StageName, TenantName};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::error::{SecretsError, json_reason};
use crate::store::{RevealedSecret, SecretStore};

#[derive(Serialize)]
struct SecretsReply<'a> {
    secrets: BTreeMap<&'a str, ReplySecret<'a>>,
}

#[derive(Serialize)]
struct ReplySecret<'a> {
    version: u64,
    value: &'a str,
}

#[derive(Serialize)]
struct ErrorReply<'a> {
    error: &'a str,
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    secrets: Option<BTreeMap<String, ReceivedSecret>>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ReceivedSecret {
    version: u64,
    value: String,
}

/// Subscribes to every secrets request (`neo.secrets.*.*.*`, queue group `neo-secrets`) and
/// answers each with the revealed secrets of that tenant's app on that stage; returns once the
/// subscription is in place, with the task serving it.
///
/// A malformed subject or a failed reveal gets an error reply; nothing here panics. The task
/// ends when the connection closes.
///
/// # Errors
///
/// [`SecretsError::Request`] when the subscription cannot be made.
pub async fn serve_stage_requests(
    client: async_nats::Client,
    store: Arc<SecretStore>,
) -> Result<JoinHandle<()>, SecretsError> {
    let subscription_failed = |e: &dyn std::fmt::Display| SecretsError::Request {
        subject: SECRETS_REQUESTS_ALL.to_owned(),
        reason: e.to_string(),
    };
    let mut requests = client
        .queue_subscribe(SECRETS_REQUESTS_ALL, SECRETS_QUEUE.to_owned())
        .await
        .map_err(|e| subscription_failed(&e))?;
    client.flush().await.map_err(|e| subscription_failed(&e))?;
    tracing::info!(
        subject = SECRETS_REQUESTS_ALL,
        queue = SECRETS_QUEUE,
        "serving secrets requests"
    );
    Ok(tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let Some(reply_to) = request.reply.clone() else {
                tracing::debug!(subject = %request.subject, "secrets request without a reply subject ignored");
                continue;
            };
            let client = client.clone();
            let store = store.clone();
            tokio::spawn(async move {
                let payload = answer(&store, request.subject.as_str()).await;
                if let Err(e) = client.publish(reply_to, payload).await {
                    tracing::warn!(subject = %request.subject, error = %e, "could not send a secrets reply");
                }
            });
        }
        tracing::info!("secrets request subscription ended");
    }))
}

/// The reply to a request on `subject`.
async fn answer(store: &SecretStore, subject: &str) -> Bytes {
    let (stage, tenant, app) = match parse_secrets_request(subject) {
        Ok(parts) => parts,
        Err(e) => {
            tracing::warn!(subject, error = %e, "malformed secrets request");
            return error_reply(&e.to_string());
        }
    };
    match store.reveal(&tenant, &app, &stage).await {
        Ok(secrets) => {
            let reply = SecretsReply {
                secrets: secrets
                    .iter()
                    .map(|(name, s)| {
                        (
                            name.as_str(),
                            ReplySecret {
                                version: s.version,
                                value: s.value.as_str(),
                            },
                        )
                    })
                    .collect(),
            };
            match serde_json::to_vec(&reply).map(Zeroizing::new) {
                Ok(bytes) => {
                    tracing::info!(%tenant, %app, %stage, count = secrets.len(), "secrets served");
                    Bytes::copy_from_slice(&bytes)
                }
                Err(e) => error_reply(&format!("encoding the reply failed: {}", json_reason(&e))),
            }
        }
        Err(e) => {
            tracing::warn!(%tenant, %app, %stage, error = %e, "secrets request failed");
            error_reply(&e.to_string())
        }
    }
}

fn error_reply(message: &str) -> Bytes {
    serde_json::to_vec(&ErrorReply { error: message })
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::from_static(br#"{"error":"internal error"}"#))
}

/// Asks the secrets service for the secrets of `app` of `tenant` on `stage` (the agent's side).
///
/// # Errors
///
/// [`SecretsError::Request`] when no reply comes within `timeout` or the request fails,
/// [`SecretsError::Remote`] when the service answers with an error (for example
/// [`SecretsError::DataKeyDestroyed`]'s message), [`SecretsError::Corrupt`] for a reply that
/// is not understood.
pub async fn fetch_stage_secrets(
    client: &async_nats::Client,
    stage: &StageName,
    tenant: &TenantName,
    app: &AppName,
    timeout: Duration,
) -> Result<BTreeMap<String, RevealedSecret>, SecretsError> {
    let subject = secrets_request(stage, tenant, app);
    let reply = tokio::time::timeout(timeout, client.request(subject.clone(), Bytes::new()))
        .await
        .map_err(|_| SecretsError::Request {
            subject: subject.clone(),
            reason: format!("no reply within {timeout:?}"),
        })?
        .map_err(|e| SecretsError::Request {
            subject: subject.clone(),
            reason: e.to_string(),
        })?;
    decode_reply(&subject, &reply.payload)
}

fn decode_reply(
    subject: &str,
    payload: &[u8],
) -> Result<BTreeMap<String, RevealedSecret>, SecretsError> {
    let reply: Reply = serde_json::from_slice(payload).map_err(|e| SecretsError::Corrupt {
        bucket: "reply",
        key: subject.to_owned(),
        reason: json_reason(&e),
    })?;
    match (reply.secrets, reply.error) {
        (_, Some(message)) => Err(SecretsError::Remote {
            subject: subject.to_owned(),
            message,
        }),
        (Some(secrets), None) => Ok(secrets
            .into_iter()
            .map(|(name, s)| {
                (
                    name,
                    RevealedSecret {
                        version: s.version,
                        value: Zeroizing::new(s.value),
                    },
                )
            })
            .collect()),
        (None, None) => Err(SecretsError::Corrupt {
            bucket: "reply",
            key: subject.to_owned(),
            reason: "neither `secrets` nor `error`".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_decode_to_secrets_or_errors() {
        let ok = br#"{"secrets":{"db_url":{"version":2,"value":"v"}}}"#;
        let secrets = decode_reply("s", ok).unwrap();
        assert_eq!(secrets["db_url"].version, 2);
        assert_eq!(secrets["db_url"].value.as_str(), "v");
        let err = decode_reply("s", &error_reply("nope")).unwrap_err();
        assert!(matches!(err, SecretsError::Remote { ref message, .. } if message == "nope"));
        assert!(decode_reply("s", b"{}").is_err());
    }

    #[test]
    fn a_malformed_reply_is_not_quoted_in_the_error() {
        let bad = br#"{"secrets":{"db_url":{"version":"s3cret-VALUE","value":1}}}"#;
        let err = decode_reply("s", bad).unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
    }
}
