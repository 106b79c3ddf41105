//! `neo-watch-deployments --nats URL [--nats-ca CA --nats-creds tool-T.nk] --tenant T
//! [--from-sequence N] [--json]`: prints one tenant's deployment events, one line each, as
//! they happen.

use clap::Parser as _;
use neo_watch_deployments::{Args, connect, watch};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = connect(&args).await?;
    let mut out = std::io::stdout();
    watch(client, &args, &mut out).await?;
    Ok(())
}
