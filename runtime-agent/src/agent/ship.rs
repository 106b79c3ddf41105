//! Driver events out: log lines batched per podgroup into `NEO_LOGS`, replacements recorded on
//! the podgroup, health changes wake the reporter.

use std::sync::Arc;

use neo_protocol::subjects::{self, Channel};
use neo_protocol::{EntityRef, pb};
use prost::Message;
use tokio::sync::{Mutex, mpsc};

use super::Ctx;
use super::report::publish;
use crate::driver::{DriverEvent, PodgroupKey};

/// The most lines in one `LogBatch` message.
const BATCH_LINES: usize = 2000;
/// The most bytes of text in one `LogBatch` message (NATS' default limit is 1 MiB).
const BATCH_BYTES: usize = 512 * 1024;

/// Handles driver events until the driver goes away (or the task is aborted: the agent lost
/// its lease, and the next run of this loop takes the receiver again).
pub(crate) async fn ship_loop(ctx: Arc<Ctx>, events: Arc<Mutex<mpsc::Receiver<DriverEvent>>>) {
    let mut events = events.lock().await;
    while let Some(event) = events.recv().await {
        match event {
            DriverEvent::Logs(mut lines) => {
                // Take what else is waiting, so a burst goes out in few messages.
                while lines.len() < BATCH_LINES {
                    match events.try_recv() {
                        Ok(DriverEvent::Logs(more)) => lines.extend(more),
                        Ok(other) => {
                            handle_other(&ctx, other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                ship_logs(&ctx, lines).await;
            }
            other => handle_other(&ctx, other),
        }
    }
}

fn handle_other(ctx: &Arc<Ctx>, event: DriverEvent) {
    match event {
        DriverEvent::Health { .. } => ctx.changed.notify_one(),
        DriverEvent::Replaced {
            key,
            replica,
            replacement,
            reason,
        } => {
            ctx.changed.notify_one();
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let Some((tenant, app, stage)) = key.names() else {
                    return;
                };
                let entity = EntityRef::podgroup(&tenant, &app, &stage);
                let command = pb::PodgroupCommand {
                    command: Some(pb::podgroup_command::Command::RecordReplacement(
                        pb::RecordReplacement {
                            replica: replica.clone(),
                            replacement,
                            reason,
                        },
                    )),
                };
                let id = format!(
                    "replace:{}:{replica}",
                    super::report::command_scope(&entity)
                );
                for attempt in 0..5u64 {
                    match ctx
                        .platform
                        .command(&entity, &id, "", &ctx.principal(), &command)
                        .await
                    {
                        Ok(_) => return,
                        Err(e) if e.is_transient() => {
                            tracing::warn!(podgroup = %key, error = %e, "replacement not recorded yet");
                            tokio::time::sleep(std::time::Duration::from_secs(1 + attempt)).await;
                        }
                        Err(e) => {
                            tracing::warn!(podgroup = %key, error = %e, "replacement refused");
                            return;
                        }
                    }
                }
            });
        }
        DriverEvent::Logs(_) => {}
    }
}

/// Publishes lines grouped by podgroup, in batches. Lines come in runs of one replica, so the
/// group is found by comparing with the last one, and names are checked once per group.
async fn ship_logs(ctx: &Ctx, lines: Vec<pb::LogLine>) {
    let mut groups: Vec<(PodgroupKey, Vec<pb::LogLine>)> = Vec::new();
    for line in lines {
        let index = match groups.iter().rposition(|(key, _)| key.owns(&line)) {
            Some(index) => index,
            None => {
                groups.push((PodgroupKey::of_line(&line), Vec::new()));
                groups.len() - 1
            }
        };
        groups[index].1.push(line);
    }
    let by_subject = groups.into_iter().filter_map(|(key, lines)| {
        let (tenant, app, stage) = key.names()?;
        Some((
            subjects::runtime(&tenant, &stage, &app, Channel::Logs.as_str()),
            lines,
        ))
    });
    for (subject, lines) in by_subject {
        let mut batch = pb::LogBatch::default();
        let mut bytes = 0;
        for line in lines {
            bytes += line.text.len() + 64;
            batch.lines.push(line);
            if batch.lines.len() >= BATCH_LINES || bytes >= BATCH_BYTES {
                publish(
                    ctx,
                    subject.clone(),
                    std::mem::take(&mut batch).encode_to_vec(),
                )
                .await;
                bytes = 0;
            }
        }
        if !batch.lines.is_empty() {
            publish(ctx, subject, batch.encode_to_vec()).await;
        }
    }
}
