//! `neo-watch-deployments --nats URL --tenant T [--from-sequence N] [--json]`: prints one
//! tenant's deployment events, one line each, as they happen.

use anyhow::Context as _;
use clap::Parser as _;
use neo_watch_deployments::{Args, watch};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = async_nats::connect(&args.nats)
        .await
        .with_context(|| format!("cannot connect to {}", args.nats))?;
    let mut out = std::io::stdout();
    watch(client, &args, &mut out).await?;
    Ok(())
}
