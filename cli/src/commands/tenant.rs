//! `neo tenant …`: create, show, list and delete tenants; manage their stages and members.

use neo_gateway::api;
use neo_protocol::pb;

use super::all_pages;
use crate::connect::Context;
use crate::error::CliError;
use crate::render;

/// `neo tenant …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (platform admins).
    #[command(
        after_help = "Examples:\n  neo tenant create acme --admin alice\n  neo tenant create acme --stage dev --stage prod --display-name 'Acme Inc'"
    )]
    Create(CreateArgs),
    /// Show a tenant: its stages in order, members and roles, quota and suspension.
    #[command(after_help = "Examples:\n  neo tenant get\n  neo tenant get acme")]
    Get {
        /// The tenant; default: --tenant or the saved one.
        name: Option<String>,
    },
    /// List the tenants.
    #[command(after_help = "Examples:\n  neo tenant list")]
    List,
    /// Delete a tenant for good (platform admins only: it cannot be undone; needs --yes).
    #[command(after_help = "Examples:\n  neo tenant delete acme --yes --reason 'contract ended'")]
    Delete(DeleteArgs),
    /// Add or remove a stage of the tenant (--tenant or the saved one).
    Stage {
        /// What to do.
        #[command(subcommand)]
        command: StageCommand,
    },
    /// Set or remove a member of the tenant (--tenant or the saved one).
    Member {
        /// What to do.
        #[command(subcommand)]
        command: MemberCommand,
    },
}

/// Arguments of `neo tenant create`.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// The tenant's name (1–63 chars of a-z, 0-9 and -).
    pub name: String,
    /// A human-readable name.
    #[arg(long, value_name = "TEXT")]
    pub display_name: Option<String>,
    /// A stage, in promotion order; repeat for each (default: dev, test, prod).
    #[arg(long = "stage", value_name = "STAGE")]
    pub stages: Vec<String>,
    /// An existing user who becomes the tenant's first admin.
    #[arg(long, value_name = "USER")]
    pub admin: Option<String>,
}

/// Arguments of `neo tenant delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// The tenant (never the saved one by default).
    pub name: String,
    /// Confirm: the tenant's data key is destroyed, so its secrets become unreadable for good,
    /// later commands on it are refused, and its name is never reused.
    #[arg(long)]
    pub yes: bool,
    /// Why, for the audit trail.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// `neo tenant stage …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum StageCommand {
    /// Add a stage to the promotion order.
    #[command(after_help = "Examples:\n  neo tenant stage add staging --after test")]
    Add {
        /// The new stage.
        stage: String,
        /// Insert it after this stage (default: first).
        #[arg(long, value_name = "STAGE")]
        after: Option<String>,
    },
    /// Remove a stage.
    #[command(after_help = "Examples:\n  neo tenant stage remove staging")]
    Remove {
        /// The stage.
        stage: String,
    },
}

/// `neo tenant member …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum MemberCommand {
    /// Add a user to the tenant, or change their role.
    #[command(after_help = "Examples:\n  neo tenant member set erin developer")]
    Set {
        /// The user.
        user: String,
        /// The role.
        #[arg(value_enum)]
        role: RoleArg,
    },
    /// Remove a user from the tenant (the last admin cannot be removed).
    #[command(after_help = "Examples:\n  neo tenant member remove erin")]
    Remove {
        /// The user.
        user: String,
    },
}

/// A member's role, as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// Reads everything.
    Viewer,
    /// Also creates apps, uploads revisions and requests builds.
    Developer,
    /// Also deploys, promotes and rolls back.
    Devops,
    /// Also manages stages and members.
    Admin,
}

impl From<RoleArg> for pb::Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Viewer => Self::Viewer,
            RoleArg::Developer => Self::Developer,
            RoleArg::Devops => Self::Devops,
            RoleArg::Admin => Self::Admin,
        }
    }
}

/// Runs `neo tenant …`.
///
/// # Errors
///
/// [`CliError::NotLoggedIn`], [`CliError::Usage`] with no tenant or for `delete` without
/// `--yes`, or the gateway's error.
pub async fn run(cx: &Context, command: TenantCommand) -> Result<(), CliError> {
    if let TenantCommand::Delete(DeleteArgs {
        name, yes: false, ..
    }) = &command
    {
        return Err(CliError::Usage(format!(
            "deleting tenant {name} cannot be undone: its data key is destroyed, so its secrets \
             become unreadable for good, and the name {name} is never reused; pass --yes to \
             delete it"
        )));
    }
    let gateway = cx.connect().await?;
    let mut client = gateway.tenants();
    let tenant = match command {
        TenantCommand::Create(args) => {
            let request = api::CreateTenantRequest {
                name: args.name,
                display_name: args.display_name.unwrap_or_default(),
                stages: args.stages,
                admin: args.admin.unwrap_or_default(),
            };
            crate::retrying!("creating the tenant", client.create_tenant(request)).await?
        }
        TenantCommand::Get { name } => {
            let tenant = match name {
                Some(name) => name,
                None => cx.tenant()?,
            };
            client.get_tenant(api::GetTenantRequest { tenant }).await?
        }
        TenantCommand::List => {
            let names = all_pages(|page| {
                let mut client = client.clone();
                async move {
                    let request = api::ListTenantsRequest { page: Some(page) };
                    let response = client.list_tenants(request).await?.into_inner();
                    Ok((response.tenants, response.next_page_token))
                }
            })
            .await?;
            return cx.print(
                || render::names_json(&names),
                || render::names_table("TENANT", &names),
            );
        }
        TenantCommand::Delete(args) => {
            let request = api::DeleteTenantRequest {
                tenant: args.name,
                reason: args.reason.unwrap_or_default(),
            };
            crate::retrying!("deleting the tenant", client.delete_tenant(request)).await?
        }
        TenantCommand::Stage { command } => {
            let tenant = cx.tenant()?;
            match command {
                StageCommand::Add { stage, after } => {
                    let request = api::AddStageRequest {
                        tenant,
                        stage,
                        after: after.unwrap_or_default(),
                    };
                    crate::retrying!("adding the stage", client.add_stage(request)).await?
                }
                StageCommand::Remove { stage } => {
                    let request = api::RemoveStageRequest { tenant, stage };
                    crate::retrying!("removing the stage", client.remove_stage(request)).await?
                }
            }
        }
        TenantCommand::Member { command } => {
            let tenant = cx.tenant()?;
            match command {
                MemberCommand::Set { user, role } => {
                    let request = api::SetMemberRequest {
                        tenant,
                        user,
                        role: pb::Role::from(role) as i32,
                    };
                    crate::retrying!("setting the member", client.set_member(request)).await?
                }
                MemberCommand::Remove { user } => {
                    let request = api::RemoveMemberRequest { tenant, user };
                    crate::retrying!("removing the member", client.remove_member(request)).await?
                }
            }
        }
    }
    .into_inner();
    cx.print(
        || render::tenant_json(&tenant),
        || render::tenant_table(&tenant),
    )
}
