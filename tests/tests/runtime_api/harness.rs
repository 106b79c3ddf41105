//! The Runtime test harness: the gateway stack with the Runtime streams and the podgroup
//! reactor, an agent's publishing of health reports and log batches, and the calls.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use neo_actors::reactor::{self, podgroups::PodgroupOnFirstRelease};
use neo_gateway::api::{self, runtime_client::RuntimeClient};
use neo_protocol::pb::{self, LogLevel};
use neo_protocol::{AppName, StageName, TenantName, subjects};
use neo_runtime_agent::streams::{self, Retention};
use neo_tests::gateway::{People, Stack, field, req, with_token};
use prost::Message;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The stack, its people, and the reactor that creates podgroups (stopped when dropped).
pub struct Runtime {
    /// nats-server, the platform and the gateway.
    pub stack: Stack,
    /// The two tenants' users and their tokens.
    pub people: People,
    /// JetStream, to publish as an agent.
    pub js: jetstream::Context,
    reactor: JoinHandle<()>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.reactor.abort();
    }
}

impl Runtime {
    /// The stack and fixture, without the Runtime streams (no agent has run yet).
    pub async fn bare() -> Self {
        let stack = Stack::start().await.unwrap();
        let people = stack.people().await.unwrap();
        let js = jetstream::new(stack.platform.client.clone());
        let reactor = reactor::run(
            stack.platform.store.context().clone(),
            stack.platform.platform.clone(),
            Arc::new(PodgroupOnFirstRelease),
        );
        Self {
            stack,
            people,
            js,
            reactor,
        }
    }

    /// The stack with the Runtime streams, as an agent creates them.
    pub async fn start() -> Self {
        let runtime = Self::bare().await;
        runtime.ensure_streams().await;
        runtime
    }

    /// Creates the Runtime streams, as an agent does at start.
    pub async fn ensure_streams(&self) {
        streams::ensure(&self.js, Retention::default())
            .await
            .unwrap();
    }

    /// A Runtime client without credentials (requests carry their token).
    pub fn client(&self) -> RuntimeClient<Channel> {
        RuntimeClient::new(self.stack.channel())
    }

    /// Publishes one `LogBatch` of `podgroup` (`tenant/stage/app`), as the agent does.
    pub async fn log(&self, podgroup: &str, lines: &[(LogLevel, u64, &str)]) {
        let (t, s, a) = names(podgroup);
        let batch = pb::LogBatch {
            lines: lines
                .iter()
                .enumerate()
                .map(|(i, (level, at_ms, text))| pb::LogLine {
                    replica: format!("{a}-{}", i % 2),
                    level: *level as i32,
                    at_ms: *at_ms,
                    text: (*text).to_owned(),
                    stream: "stdout".into(),
                    ..Default::default()
                })
                .collect(),
        };
        let subject = subjects::runtime(&t, &s, &a, subjects::Channel::Logs.as_str());
        self.publish(subject, batch.encode_to_vec()).await;
    }

    /// Publishes a `HealthReport` of `podgroup` (`tenant/stage/app`).
    pub async fn health(&self, podgroup: &str, report: pb::HealthReport) {
        let (t, s, a) = names(podgroup);
        let subject = subjects::runtime(&t, &s, &a, subjects::Channel::Health.as_str());
        self.publish(subject, report.encode_to_vec()).await;
    }

    async fn publish(&self, subject: String, payload: Vec<u8>) {
        self.js
            .publish(subject, payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Builds revision 1 of `app` in acme and deploys it to dev (as dave); waits for the
    /// podgroup the reactor creates. Returns the image digest.
    pub async fn deployed(&self, app: &str) -> String {
        let dave = self.people.dave.as_str();
        self.stack
            .app_with_revisions(dave, "acme", app, &[b"model"])
            .await
            .unwrap();
        let image = self.stack.built(dave, "acme", app, 1, 7).await.unwrap();
        let mut deployments = self.stack.deployments(dave);
        deployments
            .deploy(req::deploy("acme", app, "dev", 1))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let rows = self.status(dave, "dev", app).await.unwrap();
            if rows.first().is_some_and(|r| r.policy.is_some()) {
                return image;
            }
            assert!(Instant::now() < deadline, "no podgroup for {app}: {rows:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `Status` on the token's tenant.
    pub async fn status(
        &self,
        token: &str,
        stage: &str,
        app: &str,
    ) -> Result<Vec<api::PodgroupStatus>, Status> {
        let request = api::StatusRequest {
            tenant: String::new(),
            stage: stage.into(),
            app: app.into(),
        };
        let reply = self.client().status(with_token(request, token)).await?;
        Ok(reply.into_inner().podgroups)
    }

    /// `SetScalePolicy` on acme.
    pub async fn set_policy(
        &self,
        token: &str,
        app: &str,
        stage: &str,
        policy: Option<pb::ScalePolicy>,
    ) -> Result<api::ScalePolicyResponse, Status> {
        let request = api::SetScalePolicyRequest {
            tenant: "acme".into(),
            app: app.into(),
            stage: stage.into(),
            policy,
        };
        let mut client = self.client();
        let reply = client.set_scale_policy(with_token(request, token)).await?;
        Ok(reply.into_inner())
    }

    /// Every line a non-following `Logs` call returns, and how many responses carried them.
    pub async fn logs(
        &self,
        token: &str,
        request: api::LogsRequest,
    ) -> Result<(Vec<pb::LogLine>, usize), Status> {
        let mut stream = self
            .client()
            .logs(with_token(request, token))
            .await?
            .into_inner();
        let (mut lines, mut responses) = (Vec::new(), 0);
        let read = async {
            while let Some(batch) = stream.message().await? {
                responses += 1;
                lines.extend(batch.lines);
            }
            Ok::<_, Status>(())
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .map_err(|_| Status::deadline_exceeded("the log stream did not end"))??;
        Ok((lines, responses))
    }
}

/// The names in `tenant/stage/app`.
pub fn names(podgroup: &str) -> (TenantName, StageName, AppName) {
    let mut parts = podgroup.split('/');
    let mut next = || parts.next().unwrap();
    let t = TenantName::new(next()).unwrap();
    let s = StageName::new(next()).unwrap();
    let a = AppName::new(next()).unwrap();
    (t, s, a)
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The texts of `lines`.
pub fn texts(lines: &[pb::LogLine]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

/// A `LogsRequest` on the token's tenant.
pub fn logs_request() -> api::LogsRequest {
    api::LogsRequest::default()
}

/// Asserts an `INVALID_ARGUMENT` naming `name` in its `neo-field`.
#[track_caller]
pub fn invalid_field<T: std::fmt::Debug>(result: Result<T, Status>, name: &str) {
    let status = result.expect_err("an invalid argument");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(field(&status), name, "{status:?}");
}

/// Asserts a refusal with `code`, and returns it.
#[track_caller]
pub fn code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    let status = result.expect_err("a refusal");
    assert_eq!(status.code(), code, "{status:?}");
    status
}
