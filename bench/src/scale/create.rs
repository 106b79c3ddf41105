//! Phase 1: one `CreateApp` per app through the in-process entity host, with a bar on stderr.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use neo_actors::store::jetstream::JetStreamStore;
use neo_actors::{CommandMeta, HostConfig, Platform};
use neo_protocol::pb;

use super::{ScaleBenchArgs, app_entity};
use crate::core::{in_parallel, share};
use crate::stats::rate;

/// What the creation phase measured.
pub(super) struct Created {
    /// Apps created per second.
    pub per_s: f64,
    /// How long it took.
    pub elapsed: Duration,
}

/// A bar over `total` items on stderr; hidden with `--json` (indicatif also draws nothing when
/// stderr is not a terminal).
pub(super) fn bar(total: usize, json: bool, message: &'static str) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {human_pos}/{human_len} ({per_sec}, {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Creates every app once; the host keeps at most `--live` actors meanwhile.
pub(super) async fn run(
    store: Arc<JetStreamStore>,
    args: &ScaleBenchArgs,
) -> anyhow::Result<Created> {
    let platform = Platform::start(
        store,
        HostConfig {
            max_live: args.live.max(1),
            ..HostConfig::default()
        },
    )
    .await?;
    let bar = bar(args.entities, args.json, "create");
    let (entities, tenants, c) = (args.entities, args.tenants, args.concurrency);
    let elapsed = in_parallel(c, |w| {
        let (platform, bar) = (platform.clone(), bar.clone());
        async move {
            let command = pb::AppCommand {
                command: Some(pb::app_command::Command::Create(pb::CreateApp {
                    description: "scale".into(),
                })),
            };
            for i in share(w, c, entities) {
                let entity = app_entity(i, tenants)?;
                platform
                    .apps
                    .execute(&entity, CommandMeta::new("bench"), command.clone())
                    .await?;
                bar.inc(1);
            }
            Ok(())
        }
    })
    .await?;
    bar.finish_and_clear();
    platform.passivate_all();
    Ok(Created {
        per_s: rate(entities, elapsed),
        elapsed,
    })
}
