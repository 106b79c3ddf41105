//! The whole platform with a Runtime, for end-to-end tests: the Build Service stack building
//! on the real apphost, a database per stage, and an agent per stage with the process driver
//! and its load balancer. Replicas are killed when the stack is dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use neo_builder::queue::QueueConfig;
use neo_image::BaseImage;
use neo_protocol::{StageName, pb, subjects};
use neo_runtime_agent::agent::AgentConfig;
use neo_runtime_agent::driver::process::ProcessConfig;
use neo_runtime_agent::local::LocalRuntime;
use prost::Message as _;

use crate::build_stack::BuildStack;

/// The platform, and one local runtime per started stage.
pub struct RuntimeStack {
    /// Everything of the Build Service and the gateway.
    pub build: BuildStack,
    /// The runtime of each started stage.
    pub stages: BTreeMap<String, LocalRuntime>,
    /// Images, replica output and state files of the agents.
    pub data: tempfile::TempDir,
}

/// The real apphost binary built next to the test binaries.
///
/// # Errors
/// When it has not been built.
pub fn apphost_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("test binary has no directory")?;
    for candidate in [dir.join("neo-apphost"), dir.join("../neo-apphost")] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "no neo-apphost binary next to {}: build it first (`cargo build -p neo-apphost`; \
         `ops/test` builds every binary)",
        exe.display()
    )
}

/// The agent settings the tests use: quick observation, metrics every second.
pub fn agent_config(stage: &str) -> anyhow::Result<AgentConfig> {
    let mut config = AgentConfig::new(StageName::new(stage)?);
    config.observe_every = Duration::from_millis(100);
    config.metrics_every = Duration::from_secs(1);
    config.report_every = Duration::from_secs(2);
    config.resync_every = Duration::from_secs(5);
    Ok(config)
}

impl RuntimeStack {
    /// Starts the platform building on the real apphost, and an agent for each of `stages`.
    ///
    /// # Errors
    /// When a server or agent cannot start.
    pub async fn start(stages: &[&str]) -> anyhow::Result<Self> {
        Self::start_on_core(crate::Core::start().await?, stages).await
    }

    /// Like [`RuntimeStack::start`] on a server that requires TLS and knows one NATS user per
    /// component (platform, gateway, build worker, an agent per stage), each connecting as
    /// its own user; the gateway serves TLS.
    ///
    /// # Errors
    /// When a server or agent cannot start.
    pub async fn start_secured(stages: &[&str]) -> anyhow::Result<Self> {
        Self::start_on_core(crate::Core::start_secured(stages, &[]).await?, stages).await
    }

    async fn start_on_core(core: crate::Core, stages: &[&str]) -> anyhow::Result<Self> {
        let base = BaseImage::from_apphost(&apphost_binary()?)?;
        let build = BuildStack::start_on_core(core, 1, QueueConfig::default(), base).await?;
        if build.stack.core.security.is_some() {
            // Agents may not create consumers: the operator makes theirs (as `admin`).
            let names = stages
                .iter()
                .map(|s| StageName::new(*s))
                .collect::<Result<Vec<_>, _>>()?;
            let js = async_nats::jetstream::new(build.stack.core.connect().await?);
            neo_server::nats_config::provision(&js, &names, &[]).await?;
        }
        let mut this = Self {
            build,
            stages: BTreeMap::new(),
            data: tempfile::tempdir()?,
        };
        for stage in stages {
            this.build
                .postgres
                .create_database(&format!("neo_{stage}"))
                .await?;
            let runtime = this.agent(stage).await?;
            this.stages.insert((*stage).to_owned(), runtime);
        }
        Ok(this)
    }

    /// The process driver settings of `stage`: fast probes, short grace.
    pub fn process_config(&self, stage: &str) -> ProcessConfig {
        let mut config = ProcessConfig::new(
            self.data.path().join(stage),
            Some(self.build.postgres.url(&format!("neo_{stage}"))),
        );
        // The stages share one image cache, as `ops/up`'s agents on one machine do.
        config.images_dir = self.data.path().join("images");
        config.probe_every = Duration::from_millis(100);
        config.serving_probe_every = Duration::from_millis(300);
        config.start_timeout = Duration::from_secs(30);
        config.grace = Duration::from_secs(3);
        // Tests poll and load apps through the edge from one address: no rate limits.
        config.edge = config.edge.without_rate_limits();
        config
    }

    /// Starts (or restarts) the agent of `stage` on its data directory.
    ///
    /// # Errors
    /// When it cannot start.
    pub async fn agent(&self, stage: &str) -> anyhow::Result<LocalRuntime> {
        self.agent_with(stage, agent_config(stage)?).await
    }

    /// Starts the agent of `stage` with `config`.
    ///
    /// # Errors
    /// When it cannot start.
    pub async fn agent_with(
        &self,
        stage: &str,
        config: AgentConfig,
    ) -> anyhow::Result<LocalRuntime> {
        self.agent_on(stage, config, "127.0.0.1:0".parse()?).await
    }

    /// Starts the agent of `stage` with `config` and its load balancer on `lb` (say, the
    /// address of the agent it replaces; waits up to 5 s for the address to be free).
    ///
    /// # Errors
    /// When it cannot start.
    pub async fn agent_on(
        &self,
        stage: &str,
        config: AgentConfig,
        lb: SocketAddr,
    ) -> anyhow::Result<LocalRuntime> {
        if lb.port() != 0 {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::net::TcpListener::bind(lb).is_err() {
                anyhow::ensure!(std::time::Instant::now() < deadline, "{lb} is still taken");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.agent_beside(stage, config, lb).await
    }

    /// Starts an agent of `stage` with `config` on the stage's data directory and load
    /// balancer address `lb` even while another agent of the stage serves them: it returns
    /// once it holds the stage's lease (it stands by until then).
    ///
    /// # Errors
    /// When it cannot start.
    pub async fn agent_beside(
        &self,
        stage: &str,
        config: AgentConfig,
        lb: SocketAddr,
    ) -> anyhow::Result<LocalRuntime> {
        let client = self
            .build
            .stack
            .core
            .connect_as(&format!("agent-{stage}"))
            .await?;
        Ok(LocalRuntime::start(
            client,
            self.build.images.clone(),
            self.process_config(stage),
            config,
            lb,
        )
        .await?)
    }

    /// The deployment of `app` on `stage` of `tenant`, read through the gateway as `token`.
    ///
    /// # Errors
    /// The gateway's refusal.
    pub async fn deployment(
        &self,
        token: &str,
        (tenant, app, stage): (&str, &str, &str),
    ) -> anyhow::Result<pb::DeploymentState> {
        let deployment = self
            .build
            .stack
            .deployments(token)
            .get_deployment(crate::gateway::req::get_deployment(tenant, app, stage))
            .await?
            .into_inner();
        deployment.state.context("a deployment without its state")
    }

    /// Pushes example app `app`'s bundle on `base` as an image of `tenant`'s revision
    /// `revision` (whose model digest is `revision_digest`) and deploys it to `stage` as a new
    /// release ([`Self::deploy_image`], build `build_id`): for a release on another program
    /// (one that crashes, or fails requests). Its image digest.
    ///
    /// # Errors
    /// When the example cannot be read, the push fails or the platform refuses the deploy.
    pub async fn deploy_example_on(
        &self,
        (tenant, app, stage): (&str, &str, &str),
        (build_id, revision_digest): (&str, &str),
        revision: u32,
        base: &BaseImage,
    ) -> anyhow::Result<String> {
        let project = neo_builder::project::Project::from_dir(&crate::build_stack::example(app))?;
        let model = neo_model::load(&project)
            .map_err(|d| anyhow::anyhow!("example {app} does not load: {d:?}"))?;
        let bundle = neo_builder::bundle::compile(&model, &project, &[]);
        let spec = neo_image::ImageSpec {
            tenant,
            app,
            revision,
            revision_digest,
        };
        let pushed = self
            .build
            .images
            .push_app(&spec, base, &bundle.layer())
            .await?;
        self.deploy_image((tenant, app, stage), build_id, &pushed.digest)
            .await?;
        Ok(pushed.digest)
    }

    /// Deploys image `digest` to `stage` as a new release of `app` (of revision 1, build
    /// `build_id`) straight through the platform, as if built: for images a test made itself.
    ///
    /// # Errors
    /// When the platform refuses the deploy.
    pub async fn deploy_image(
        &self,
        (tenant, app, stage): (&str, &str, &str),
        build_id: &str,
        digest: &str,
    ) -> anyhow::Result<()> {
        let deploy = pb::DeploymentCommand {
            command: Some(pb::deployment_command::Command::Deploy(pb::Deploy {
                app: app.into(),
                stage: stage.into(),
                build_id: build_id.into(),
                revision: 1,
                image_digest: digest.into(),
                ..Default::default()
            })),
        };
        let entity =
            neo_protocol::EntityRef::deployment(&tenant.parse()?, &app.parse()?, &stage.parse()?);
        let reply = self
            .build
            .stack
            .platform
            .platform
            .dispatch(&entity, crate::commands::request(deploy))
            .await;
        anyhow::ensure!(
            matches!(reply.result, Some(pb::command_reply::Result::Accepted(_))),
            "the deploy of {digest} to {stage} was refused: {reply:?}"
        );
        Ok(())
    }

    /// The events of podgroup `{app}_{stage}` of `tenant`, decoded, in order.
    ///
    /// # Errors
    /// When the event stream cannot be read.
    pub async fn podgroup_events(
        &self,
        tenant: &str,
        app: &str,
        stage: &str,
    ) -> anyhow::Result<Vec<pb::PodgroupEvent>> {
        let js = async_nats::jetstream::new(self.build.stack.platform.client.clone());
        let mut stream = js
            .get_stream(subjects::EVENTS_STREAM)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let last = stream
            .info()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .state
            .last_sequence;
        let prefix = format!("neo.evt.{tenant}.podgroup.{app}_{stage}.");
        let mut events = Vec::new();
        for sequence in 1..=last {
            let message = stream
                .get_raw_message(sequence)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if message.subject.as_str().starts_with(&prefix) {
                events.push(pb::PodgroupEvent::decode(message.payload)?);
            }
        }
        Ok(events)
    }

    /// The load balancer URL of an app on a stage.
    pub fn url(&self, stage: &str, tenant: &str, app: &str) -> anyhow::Result<String> {
        let runtime = self.stages.get(stage).context("stage not started")?;
        Ok(format!("http://{}/{tenant}/{app}", runtime.lb_addr))
    }
}

/// An HTTP client for the apps behind a stage's load balancer; its 5 s timeout tells a quick
/// answer from a hang.
///
/// # Panics
/// When the client cannot be built (no TLS backend).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .expect("an HTTP client")
}

/// `GET url`: the status and body, or `None` when it could not be sent or read.
pub async fn get(url: &str) -> Option<(u16, String)> {
    let response = http().get(url).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// `POST url` with `body` (JSON text, e.g. a `serde_json::Value`): the status and the answer's
/// text.
///
/// # Panics
/// When the request cannot be sent or its answer read.
pub async fn post_json(url: &str, body: impl std::fmt::Display) -> (u16, String) {
    let response = http()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("the request is sent");
    let status = response.status().as_u16();
    (status, response.text().await.expect("the answer is read"))
}
