//! `neo what-if`: a podgroup's recorded observations replayed through the autoscaler under
//! another scale policy, printed beside the decisions it took. It reads JetStream directly, as
//! `neo audit` does, and writes nothing.

use anyhow::Context as _;
use neo_actors::whatif::{self, Change, Decision, Overrides, Run};
use neo_protocol::{AppName, EntityRef, StageName, TenantName};

use neo_cli::commands::runtime::PolicyArgs;
use neo_cli::output;

/// Arguments of `neo what-if`. Each policy option left out keeps the podgroup's current value.
#[derive(Debug, Clone, clap::Args)]
pub struct WhatIfArgs {
    /// The NATS server, its CA and the credential.
    #[command(flatten)]
    pub nats: crate::nats_connect::NatsArgs,
    /// The podgroup's tenant.
    #[arg(long)]
    pub tenant: String,
    /// The podgroup's app.
    pub app: String,
    /// The podgroup's stage.
    #[arg(long, short = 's')]
    pub stage: String,
    /// The other policy.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl WhatIfArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            min_replicas: self.policy.min,
            max_replicas: self.policy.max,
            target_cpu_percent: self.policy.cpu,
            target_memory_percent: self.policy.memory,
            scale_down_window_s: self.policy.window,
            idle_to_zero_s: self.policy.idle_to_zero,
        }
    }

    fn entity(&self) -> anyhow::Result<EntityRef> {
        Ok(EntityRef::podgroup(
            &TenantName::new(self.tenant.as_str()).context("--tenant")?,
            &AppName::new(self.app.as_str()).context("APP")?,
            &StageName::new(self.stage.as_str()).context("--stage")?,
        ))
    }
}

/// Runs `neo what-if`.
///
/// # Errors
/// Bad names, NATS unreachable, an unknown podgroup, a refused policy, a malformed event.
pub async fn run(args: WhatIfArgs) -> anyhow::Result<()> {
    let entity = args.entity()?;
    let client = args.nats.connect_once("neo-what-if").await?;
    let js = async_nats::jetstream::new(client);
    let report = whatif::what_if_podgroup(&js, &entity, &args.overrides()).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "{}: {} observations, up to event {}",
        report.podgroup, report.observations, report.last_sequence
    );
    for (title, run) in [("recorded", &report.recorded), ("what-if", &report.what_if)] {
        println!("\n{title} ({}):", run.policy);
        if run.decisions.is_empty() {
            println!("  no decision");
        } else {
            println!("{}", decisions(&run.decisions));
        }
    }
    println!(
        "\nrecorded: {}\nwhat-if:  {}",
        summary(&report.recorded),
        summary(&report.what_if)
    );
    Ok(())
}

/// The decisions as a table: time, change, reason.
fn decisions(decisions: &[Decision]) -> comfy_table::Table {
    let mut table = output::table(["TIME", "CHANGE", "REASON"]);
    for d in decisions {
        table.add_row([
            output::unix_millis(d.at_ms),
            change(&d.change),
            d.reason.clone(),
        ]);
    }
    table
}

/// `replicas 1 → 3`, or `resources 250m/256Mi → 250m/384Mi`.
fn change(change: &Change) -> String {
    match change {
        Change::Replicas { from, to } => format!("replicas {from} → {to}"),
        Change::Resources { from, to } => format!(
            "resources {}m/{}Mi → {}m/{}Mi",
            from.cpu_millis, from.memory_mib, to.cpu_millis, to.memory_mib
        ),
    }
}

/// One run's figures on one line.
fn summary(run: &Run) -> String {
    let s = run.summary;
    format!(
        "{} ({} up, {} down, {}), peak {} replicas, final {}, {:.2} replica-hours",
        plural(s.decisions, "decision"),
        s.scale_ups,
        s.scale_downs,
        plural(s.raises, "raise"),
        s.peak_replicas,
        s.final_replicas,
        s.replica_seconds as f64 / 3600.0
    )
}

/// `1 raise`, `2 raises`.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser};

    use super::*;
    use neo_cli::GlobalArgs;
    use neo_cli::commands::runtime::parse_window;

    /// `neo`'s global options with `what-if` under them, as main.rs has them.
    #[derive(Debug, Parser)]
    #[command(name = "neo")]
    struct T {
        #[command(flatten)]
        g: GlobalArgs,
        #[command(subcommand)]
        c: C,
    }

    #[derive(Debug, clap::Subcommand)]
    enum C {
        WhatIf(WhatIfArgs),
    }

    fn parse(args: &[&str]) -> Result<WhatIfArgs, clap::Error> {
        T::try_parse_from(std::iter::once("neo").chain(args.iter().copied())).map(|t| match t.c {
            C::WhatIf(a) => a,
        })
    }

    #[test]
    fn the_command_line_is_well_formed() {
        T::command().debug_assert();
    }

    #[test]
    fn policy_options_override_only_what_they_name() {
        let a = parse(&[
            "what-if", "shop", "--tenant", "acme", "--stage", "prod", "--max", "2", "--window",
            "10m", "--json",
        ])
        .expect("parsed");
        assert_eq!(
            a.overrides(),
            Overrides {
                max_replicas: Some(2),
                scale_down_window_s: Some(600),
                ..Overrides::default()
            }
        );
        assert!(a.json);
        assert_eq!(
            a.entity().expect("names").to_string(),
            "acme/podgroup/shop_prod"
        );
        assert!(parse(&["what-if", "shop", "--stage", "prod"]).is_err());
        let bad =
            parse(&["what-if", "shop", "--tenant", "ACME", "--stage", "prod"]).expect("parsed");
        assert!(bad.entity().is_err());
    }

    #[test]
    fn windows_take_a_unit() {
        assert_eq!(parse_window("300"), Ok(300));
        assert_eq!(parse_window("300s"), Ok(300));
        assert_eq!(parse_window("5m"), Ok(300));
        assert_eq!(parse_window("2h"), Ok(7200));
        assert_eq!(parse_window("1d"), Ok(86_400));
        for bad in ["", "5w", "m", "-5s", "99999999999s", "5000000h"] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn changes_read_as_arrows() {
        assert_eq!(
            change(&Change::Replicas { from: 1, to: 3 }),
            "replicas 1 → 3"
        );
        let r = |cpu_millis, memory_mib| whatif::Allocation {
            cpu_millis,
            memory_mib,
        };
        assert_eq!(
            change(&Change::Resources {
                from: r(250, 256),
                to: r(250, 384)
            }),
            "resources 250m/256Mi → 250m/384Mi"
        );
    }
}
