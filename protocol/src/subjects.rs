//! Every NATS subject, stream, bucket and queue group name: built and parsed only here.

use crate::kind::{EntityKind, EntityRef};
use crate::names::{AppName, NameError, StageName, TenantName};

/// The JetStream stream holding every entity event: subjects `neo.evt.>`.
pub const EVENTS_STREAM: &str = "NEO_EVENTS";
/// The subjects of [`EVENTS_STREAM`].
pub const EVENTS_ALL: &str = "neo.evt.>";
/// A tooling account's copy of one tenant's events (same subjects, sourced from
/// [`EVENTS_STREAM`]; docs/security.md).
pub const TENANT_EVENTS_STREAM: &str = "NEO_TENANT_EVENTS";
/// The KV bucket of entity snapshots; key `{tenant}.{kind}.{id}`.
pub const SNAPSHOT_BUCKET: &str = "neo_snapshots";
/// Every command subject, for the intake's subscription.
pub const COMMANDS_ALL: &str = "neo.cmd.*.*.*";
/// Every state query subject, for the intake's subscription.
pub const QUERIES_ALL: &str = "neo.qry.*.*.*";
/// The queue group shared by every platform process serving commands.
pub const PLATFORM_QUEUE: &str = "neo-platform";
/// Every stage command subject, for the intake's subscription.
pub const STAGE_COMMANDS_ALL: &str = "neo.stagecmd.*.*.*.*";

/// Why a subject could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// The subject does not have the expected shape.
    #[error("subject `{subject}` does not match `{pattern}`")]
    Shape {
        /// The subject received.
        subject: String,
        /// The pattern it should have matched.
        pattern: &'static str,
    },
    /// A part of the subject is not a valid name or id.
    #[error("subject `{subject}`: {source}")]
    Name {
        /// The subject received.
        subject: String,
        /// What was wrong with the part.
        source: NameError,
    },
}

/// `neo.cmd.{tenant}.{kind}.{id}`: a command to one entity (request/reply, queue group
/// [`PLATFORM_QUEUE`]).
pub fn command(entity: &EntityRef) -> String {
    format!("neo.cmd.{}.{}.{}", entity.tenant, entity.kind, entity.id)
}

/// `neo.stagecmd.{stage}.{tenant}.{kind}.{id}`: a command from the agent of `stage`
/// (request/reply, queue group [`PLATFORM_QUEUE`]). The stage comes first so that an agent's
/// NATS user may publish to [`stage_commands`] of its own stage only; the intake accepts there
/// only the commands an agent sends, to entities of that stage.
pub fn stage_command(stage: &StageName, entity: &EntityRef) -> String {
    format!(
        "neo.stagecmd.{stage}.{}.{}.{}",
        entity.tenant, entity.kind, entity.id
    )
}

/// `neo.stagecmd.{stage}.>`: every command the agent of `stage` may send.
pub fn stage_commands(stage: &StageName) -> String {
    format!("neo.stagecmd.{stage}.>")
}

/// `neo.qry.{tenant}.{kind}.{id}`: a query for one entity's current state (request/reply).
pub fn query(entity: &EntityRef) -> String {
    format!("neo.qry.{}.{}.{}", entity.tenant, entity.kind, entity.id)
}

/// `neo.evt.{tenant}.{kind}.{id}.{event_type}`: one event of one entity.
pub fn event(entity: &EntityRef, event_type: &str) -> String {
    format!(
        "neo.evt.{}.{}.{}.{event_type}",
        entity.tenant, entity.kind, entity.id
    )
}

/// `neo.evt.{tenant}.{kind}.{id}.*`: every event of one entity.
pub fn entity_events(entity: &EntityRef) -> String {
    event(entity, "*")
}

/// `neo.evt.{tenant}.>`: every event of one tenant.
pub fn tenant_events(tenant: &TenantName) -> String {
    format!("neo.evt.{tenant}.>")
}

/// `neo.tooldeliver.{tenant}`: where [`EVENTS_STREAM`] delivers a tenant's events to its
/// tooling account's copy (the prefix of the copy's source consumers).
pub fn tool_delivery(tenant: &TenantName) -> String {
    format!("neo.tooldeliver.{tenant}")
}

/// `neo.evt.*.{kind}.*.*`: every event of one kind, across tenants (used by reactors).
pub fn kind_events(kind: EntityKind) -> String {
    format!("neo.evt.*.{kind}.*.*")
}

/// `neo.evt.*.{kind}.*.{event_type}`: one event type of one kind, across tenants.
pub fn kind_event_type(kind: EntityKind, event_type: &str) -> String {
    format!("neo.evt.*.{kind}.*.{event_type}")
}

/// The bucket of the agents' leases: key `{stage}` (or `{stage}.{group}`), value a
/// `neo.v1.AgentLease`; entries expire when not renewed (see `neo_client::lease`).
pub const AGENT_LEASES_BUCKET: &str = "NEO_AGENT_LEASES";

/// The key of the lease of `stage`'s active agent, within lease `group` ("" for the stage's own).
pub fn agent_lease_key(stage: &StageName, group: &str) -> String {
    if group.is_empty() {
        stage.to_string()
    } else {
        format!("{stage}.{group}")
    }
}

/// The stream of desired podgroup states: subjects `neo.desired.>`, one message per subject.
pub const DESIRED_STREAM: &str = "NEO_DESIRED";
/// The subjects of [`DESIRED_STREAM`].
pub const DESIRED_ALL: &str = "neo.desired.>";
/// The stream of agents' health and metrics reports: subjects `neo.rt.*.*.*.{health,metrics}`.
pub const RUNTIME_STREAM: &str = "NEO_RUNTIME";
/// The stream of app log lines: subjects `neo.rt.*.*.*.logs`.
pub const LOGS_STREAM: &str = "NEO_LOGS";

/// A runtime report channel on `neo.rt.{tenant}.{stage}.{app}.{channel}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// `HealthReport`s.
    Health,
    /// `MetricsReport`s.
    Metrics,
    /// `LogBatch`es.
    Logs,
}

impl Channel {
    /// The subject token.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::Metrics => "metrics",
            Self::Logs => "logs",
        }
    }
}

/// `neo.rt.{tenant}.{stage}.{app}.{channel}`: runtime reports (health, logs, metrics).
pub fn runtime(tenant: &TenantName, stage: &StageName, app: &AppName, channel: &str) -> String {
    format!("neo.rt.{tenant}.{stage}.{app}.{channel}")
}

/// `neo.rt.{tenant|*}.{stage|*}.{app|*}.{channel}`: a filter over runtime reports; `None`
/// parts match any.
pub fn runtime_filter(
    tenant: Option<&str>,
    stage: Option<&str>,
    app: Option<&str>,
    channel: Channel,
) -> String {
    format!(
        "neo.rt.{}.{}.{}.{}",
        tenant.unwrap_or("*"),
        stage.unwrap_or("*"),
        app.unwrap_or("*"),
        channel.as_str()
    )
}

/// `neo.desired.{stage}.{tenant}.{app}`: the desired state of one podgroup. The stage comes
/// first so an agent's permissions and consumer filter are one prefix.
pub fn desired(stage: &StageName, tenant: &TenantName, app: &AppName) -> String {
    format!("neo.desired.{stage}.{tenant}.{app}")
}

/// `neo.desired.{stage}.>`: every desired state of one stage.
pub fn desired_stage(stage: &StageName) -> String {
    format!("neo.desired.{stage}.>")
}

/// `neo.desired.*.{tenant}.*`: every desired state of one tenant, on every stage.
pub fn desired_tenant(tenant: &TenantName) -> String {
    format!("neo.desired.*.{tenant}.*")
}

/// Every secrets request subject, for the secrets service's subscription.
pub const SECRETS_REQUESTS_ALL: &str = "neo.secrets.*.*.*";
/// The queue group shared by every process serving secrets requests.
pub const SECRETS_QUEUE: &str = "neo-secrets";

/// `neo.secrets.{stage}.{tenant}.{app}`: an agent's request for the secrets of one app on its
/// stage (request/reply, queue group [`SECRETS_QUEUE`]). The stage comes first so that an
/// agent's NATS user may publish to `neo.secrets.{stage}.>` of its own stage only.
pub fn secrets_request(stage: &StageName, tenant: &TenantName, app: &AppName) -> String {
    format!("neo.secrets.{stage}.{tenant}.{app}")
}

/// `{tenant}.{kind}.{id}`: the snapshot key of one entity in [`SNAPSHOT_BUCKET`].
pub fn snapshot_key(entity: &EntityRef) -> String {
    format!("{}.{}.{}", entity.tenant, entity.kind, entity.id)
}

fn tokens<'a, const N: usize>(
    subject: &'a str,
    prefix: &str,
    pattern: &'static str,
) -> Result<[&'a str; N], SubjectError> {
    let shape = || SubjectError::Shape {
        subject: subject.chars().take(200).collect(),
        pattern,
    };
    let rest = subject.strip_prefix(prefix).ok_or_else(shape)?;
    let parts: Vec<&str> = rest.split('.').collect();
    parts.try_into().map_err(|_| shape())
}

fn entity_from(subject: &str, t: &str, k: &str, i: &str) -> Result<EntityRef, SubjectError> {
    EntityRef::parse(t, k, i).map_err(|source| SubjectError::Name {
        subject: subject.chars().take(200).collect(),
        source,
    })
}

/// Parses `neo.cmd.{tenant}.{kind}.{id}`.
pub fn parse_command(subject: &str) -> Result<EntityRef, SubjectError> {
    let [t, k, i] = tokens(subject, "neo.cmd.", "neo.cmd.{tenant}.{kind}.{id}")?;
    entity_from(subject, t, k, i)
}

/// Parses `neo.stagecmd.{stage}.{tenant}.{kind}.{id}` into the stage and the entity.
pub fn parse_stage_command(subject: &str) -> Result<(StageName, EntityRef), SubjectError> {
    let pattern = "neo.stagecmd.{stage}.{tenant}.{kind}.{id}";
    let [s, t, k, i] = tokens(subject, "neo.stagecmd.", pattern)?;
    let stage = StageName::new(s).map_err(|source| SubjectError::Name {
        subject: subject.chars().take(200).collect(),
        source,
    })?;
    Ok((stage, entity_from(subject, t, k, i)?))
}

/// Parses `neo.qry.{tenant}.{kind}.{id}`.
pub fn parse_query(subject: &str) -> Result<EntityRef, SubjectError> {
    let [t, k, i] = tokens(subject, "neo.qry.", "neo.qry.{tenant}.{kind}.{id}")?;
    entity_from(subject, t, k, i)
}

/// Parses `neo.evt.{tenant}.{kind}.{id}.{event_type}` into the entity and the event type.
pub fn parse_event(subject: &str) -> Result<(EntityRef, String), SubjectError> {
    let pattern = "neo.evt.{tenant}.{kind}.{id}.{event_type}";
    let [t, k, i, e] = tokens(subject, "neo.evt.", pattern)?;
    let entity = entity_from(subject, t, k, i)?;
    if e.is_empty() || !e.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(SubjectError::Shape {
            subject: subject.chars().take(200).collect(),
            pattern,
        });
    }
    Ok((entity, e.to_owned()))
}

/// Splits `neo.evt.{tenant}.{kind}.{id}.{event_type}` into `{tenant}.{kind}.{id}` (equal to
/// [`snapshot_key`]) and the event type, without allocating: for a reader that meets each
/// entity many times and checks its names once ([`parse_snapshot_key`]); the event type is
/// checked here.
pub fn split_event(subject: &str) -> Option<(&str, &str)> {
    let rest = subject.strip_prefix("neo.evt.")?;
    let (key, event_type) = rest.rsplit_once('.')?;
    if event_type.is_empty() || !event_type.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    Some((key, event_type))
}

/// Parses and validates an entity's [`snapshot_key`], `{tenant}.{kind}.{id}`.
pub fn parse_snapshot_key(key: &str) -> Option<EntityRef> {
    let mut parts = key.split('.');
    let (t, k, i) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    EntityRef::parse(t, k, i).ok()
}

/// The tenant, stage and app of a runtime report subject
/// `neo.rt.{tenant}.{stage}.{app}.{channel}` ([`runtime`]), as written (names unchecked).
pub fn split_runtime(subject: &str) -> Option<(&str, &str, &str)> {
    let mut parts = subject.strip_prefix("neo.rt.")?.split('.');
    let (tenant, stage, app, _channel) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    parts.next().is_none().then_some((tenant, stage, app))
}

/// The stage, tenant and app of a desired-state subject `neo.desired.{stage}.{tenant}.{app}`
/// ([`desired`]), as written (names unchecked).
pub fn split_desired(subject: &str) -> Option<(&str, &str, &str)> {
    let mut parts = subject.strip_prefix("neo.desired.")?.split('.');
    let (stage, tenant, app) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().is_none().then_some((stage, tenant, app))
}

/// Token `index` (from 0) of a subject, e.g. 4 for the id in `neo.evt.{tenant}.{kind}.{id}.{type}`.
pub fn token(subject: &str, index: usize) -> Option<&str> {
    subject.split('.').nth(index)
}

/// Parses `neo.secrets.{stage}.{tenant}.{app}`.
pub fn parse_secrets_request(
    subject: &str,
) -> Result<(StageName, TenantName, AppName), SubjectError> {
    let pattern = "neo.secrets.{stage}.{tenant}.{app}";
    let [s, t, a] = tokens(subject, "neo.secrets.", pattern)?;
    let name = |source| SubjectError::Name {
        subject: subject.chars().take(200).collect(),
        source,
    };
    Ok((
        StageName::new(s).map_err(name)?,
        TenantName::new(t).map_err(name)?,
        AppName::new(a).map_err(name)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_split_into_the_snapshot_key_and_the_event_type() {
        let (key, ty) = split_event("neo.evt.acme.app.shop.AppCreated").unwrap();
        assert_eq!((key, ty), ("acme.app.shop", "AppCreated"));
        let entity = parse_snapshot_key(key).unwrap();
        assert_eq!(snapshot_key(&entity), key);
        for bad in [
            "neo.cmd.acme.app.shop",
            "neo.evt.acme.app.shop.",
            "neo.evt.x",
        ] {
            assert!(split_event(bad).is_none(), "{bad}");
        }
        assert!(parse_snapshot_key("acme.app.shop.extra").is_none());
        assert!(parse_snapshot_key("acme.robot.shop").is_none());
    }

    fn dep() -> EntityRef {
        EntityRef::deployment(
            &TenantName::new("acme").unwrap(),
            &AppName::new("shop").unwrap(),
            &StageName::new("dev").unwrap(),
        )
    }

    #[test]
    fn builds_the_documented_subjects() {
        assert_eq!(command(&dep()), "neo.cmd.acme.deployment.shop_dev");
        assert_eq!(
            event(&dep(), "ReleaseCreated"),
            "neo.evt.acme.deployment.shop_dev.ReleaseCreated"
        );
        assert_eq!(entity_events(&dep()), "neo.evt.acme.deployment.shop_dev.*");
        assert_eq!(snapshot_key(&dep()), "acme.deployment.shop_dev");
    }

    #[test]
    fn parses_what_it_builds() {
        assert_eq!(parse_command(&command(&dep())).unwrap(), dep());
        assert_eq!(parse_query(&query(&dep())).unwrap(), dep());
        let dev = StageName::new("dev").unwrap();
        assert_eq!(
            stage_command(&dev, &dep()),
            "neo.stagecmd.dev.acme.deployment.shop_dev"
        );
        assert_eq!(
            parse_stage_command(&stage_command(&dev, &dep())).unwrap(),
            (dev, dep())
        );
        let (entity, ty) = parse_event(&event(&dep(), "ReleaseCreated")).unwrap();
        assert_eq!((entity, ty.as_str()), (dep(), "ReleaseCreated"));
    }

    #[test]
    fn builds_and_parses_secrets_requests() {
        let (stage, tenant, app) = (
            StageName::new("dev").unwrap(),
            TenantName::new("acme").unwrap(),
            AppName::new("shop").unwrap(),
        );
        let subject = secrets_request(&stage, &tenant, &app);
        assert_eq!(subject, "neo.secrets.dev.acme.shop");
        assert_eq!(
            parse_secrets_request(&subject).unwrap(),
            (stage, tenant, app)
        );
        for bad in [
            "neo.secrets.dev.acme",
            "neo.secrets.dev.acme.shop.x",
            "neo.secrets.DEV.acme.shop",
            "neo.secret.dev.acme.shop",
        ] {
            assert!(parse_secrets_request(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_malformed_subjects() {
        for bad in [
            "neo.cmd.acme.app",
            "neo.cmd.acme.app.x.y",
            "neo.cmd.ACME.app.x",
            "neo.cmd.acme.robot.x",
            "neo.evt.acme.app.shop.",
            "foo.cmd.acme.app.shop",
        ] {
            assert!(
                parse_command(bad).is_err() && parse_event(bad).is_err(),
                "{bad}"
            );
        }
    }
}
