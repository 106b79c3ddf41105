//! A platform process of `neo bench ha`: hosts and intake on a runtime and NATS connection of
//! their own, so it can die like a process does (`kill -9`: its tasks stop and its connection
//! drops at once) or stop like `neo serve` on SIGTERM (its intake drains).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use neo_actors::intake::{self, Intake, IntakeConfig};
use neo_actors::store::jetstream::{JetStreamStore, StoreConfig};
use neo_actors::{HostConfig, Platform};

/// How long a drain may take.
const DRAIN: Duration = Duration::from_secs(10);

/// A running platform process.
pub(super) struct PlatformProcess {
    runtime: Option<tokio::runtime::Runtime>,
    intake: Option<Intake>,
    _platform: Arc<Platform>,
}

impl PlatformProcess {
    /// Starts one connected to every server of `urls` (comma-separated).
    pub(super) async fn start(urls: &str) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("platform-process")
            .enable_all()
            .build()
            .context("a runtime for a platform process")?;
        let addrs: Vec<async_nats::ServerAddr> = urls
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .context("a NATS URL")?;
        let (platform, intake) = runtime
            .spawn(async move {
                let client = async_nats::ConnectOptions::new()
                    .request_timeout(Some(Duration::from_secs(10)))
                    .connect(addrs)
                    .await?;
                let store =
                    Arc::new(JetStreamStore::open(client.clone(), StoreConfig::default()).await?);
                let platform = Platform::start(store, HostConfig::default()).await?;
                let intake =
                    intake::serve(client, platform.clone(), IntakeConfig::default()).await?;
                anyhow::Ok((platform, intake))
            })
            .await
            .context("the platform process's start")??;
        Ok(Self {
            runtime: Some(runtime),
            intake: Some(intake),
            _platform: platform,
        })
    }

    /// Dies at once, as on `kill -9`.
    pub(super) fn kill(mut self) {
        self.intake.take();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// Stops as on SIGTERM: the intake leaves its queue group and answers what it received.
    pub(super) async fn drain(mut self) {
        if let (Some(runtime), Some(intake)) = (self.runtime.take(), self.intake.take()) {
            let _ = runtime.spawn(intake.drain(DRAIN)).await;
            runtime.shutdown_background();
        }
    }
}

impl Drop for PlatformProcess {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
