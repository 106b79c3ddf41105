//! The apps this one consumes, read live through their API on the same stage and tenant.
//!
//! The agent tells every replica where the apps of its tenant answer on its stage
//! (`NEO_PRODUCERS`: a URL with `{app}` standing for the producer's name, e.g.
//! `http://127.0.0.1:8443/acme/{app}`); only the producers the model's `[[consumes]]` name are
//! ever asked, and only the fields it declares are passed on. So another tenant's apps are
//! never reachable: the tenant is part of the address the platform gives, not of the model.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};

use crate::model::Consumed;

/// How long a producer may take to answer one read.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Why a producer's row could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// The producer answered that there is no such row.
    #[error("no {entity} with id {id} in {app}")]
    Missing {
        /// The producer app.
        app: String,
        /// The consumed entity.
        entity: String,
        /// The id asked for.
        id: i64,
    },
    /// The producer did not answer, or not as expected.
    #[error("{app} is unavailable ({reason})")]
    Down {
        /// The producer app.
        app: String,
        /// What happened.
        reason: String,
    },
}

/// The producers' addresses and one HTTP client for them.
#[derive(Debug, Clone)]
pub struct Producers {
    template: Option<String>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Producers {
    /// Producers at `template` (`{app}` replaced by each one's name; `None`: none reachable).
    pub fn new(template: Option<String>) -> Self {
        Self {
            template,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Row `id` of a consumed entity: its id and the declared fields.
    ///
    /// # Errors
    /// No such row, or the producer is unreachable.
    pub async fn get(
        &self,
        consumed: &Consumed,
        id: i64,
    ) -> Result<Map<String, Value>, ProducerError> {
        match self.read(consumed, &format!("/{id}")).await? {
            Some(Value::Object(row)) => Ok(consumed.declared(&row)),
            Some(_) => Err(down(consumed, "it answered something else than a row")),
            None => Err(ProducerError::Missing {
                app: consumed.app.clone(),
                entity: consumed.entity.clone(),
                id,
            }),
        }
    }

    /// A page of a consumed entity's rows (`query`: `limit=&offset=`), declared fields only.
    ///
    /// # Errors
    /// The producer is unreachable.
    pub async fn list(
        &self,
        consumed: &Consumed,
        query: &str,
    ) -> Result<Vec<Map<String, Value>>, ProducerError> {
        let page = self.read(consumed, &format!("?{query}")).await?;
        let items = page
            .as_ref()
            .and_then(|p| p.get("items"))
            .and_then(Value::as_array)
            .ok_or_else(|| down(consumed, "it answered something else than a page"))?;
        Ok(items
            .iter()
            .filter_map(Value::as_object)
            .map(|row| consumed.declared(row))
            .collect())
    }

    /// `GET {producer}/api/{entity}{rest}`: the JSON answered, `None` on 404.
    async fn read(&self, consumed: &Consumed, rest: &str) -> Result<Option<Value>, ProducerError> {
        let Some(template) = &self.template else {
            return Err(down(consumed, "this stage gave no producer address"));
        };
        let url = format!(
            "{}/api/{}{rest}",
            template
                .replace("{app}", &consumed.app)
                .trim_end_matches('/'),
            consumed.table
        );
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| down(consumed, &format!("bad address {url}: {e}")))?;
        let asked = async {
            let response = self
                .client
                .get(uri)
                .await
                .map_err(|e| down(consumed, &format!("{e}")))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| down(consumed, &format!("reading its answer: {e}")))?
                .to_bytes();
            match status {
                StatusCode::OK => serde_json::from_slice(&body)
                    .map(Some)
                    .map_err(|e| down(consumed, &format!("its answer is not JSON: {e}"))),
                StatusCode::NOT_FOUND if rest.starts_with('/') => Ok(None),
                other => Err(down(consumed, &format!("it answered {other}"))),
            }
        };
        tokio::time::timeout(TIMEOUT, asked)
            .await
            .unwrap_or_else(|_| Err(down(consumed, &format!("no answer within {TIMEOUT:?}"))))
    }
}

fn down(consumed: &Consumed, reason: &str) -> ProducerError {
    ProducerError::Down {
        app: consumed.app.clone(),
        reason: reason.to_owned(),
    }
}
