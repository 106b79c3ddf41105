//! The five entity kinds and [`EntityRef`], the address of one entity (tenant, kind, id).

use std::fmt;

use crate::names::{AppName, EntityId, IdShape, NameError, StageName, TenantName};

/// The kinds of event-sourced entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    /// A tenant: stages, members, quota.
    Tenant,
    /// An app and its revisions.
    App,
    /// The build of one app revision.
    Build,
    /// The releases of one app on one stage.
    Deployment,
    /// The replicas of one app on one stage.
    Podgroup,
}

impl EntityKind {
    /// Every kind, in a fixed order.
    pub const ALL: [EntityKind; 5] = [
        EntityKind::Tenant,
        EntityKind::App,
        EntityKind::Build,
        EntityKind::Deployment,
        EntityKind::Podgroup,
    ];

    /// The kind's subject token.
    pub const fn as_str(self) -> &'static str {
        match self {
            EntityKind::Tenant => "tenant",
            EntityKind::App => "app",
            EntityKind::Build => "build",
            EntityKind::Deployment => "deployment",
            EntityKind::Podgroup => "podgroup",
        }
    }

    /// Parses a subject token into a kind.
    pub fn parse(token: &str) -> Result<Self, NameError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == token)
            .ok_or_else(|| NameError::Invalid {
                what: "entity kind",
                value: token.chars().take(80).collect(),
                reason: "expected one of tenant, app, build, deployment, podgroup",
            })
    }

    fn id_shape(self) -> IdShape {
        match self {
            EntityKind::Tenant => IdShape::Name("tenant"),
            EntityKind::App => IdShape::Name("app"),
            EntityKind::Build => IdShape::Build,
            EntityKind::Deployment => IdShape::AppStage("deployment id"),
            EntityKind::Podgroup => IdShape::AppStage("podgroup id"),
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The address of one entity: every part validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityRef {
    /// The tenant that owns the entity.
    pub tenant: TenantName,
    /// The entity's kind.
    pub kind: EntityKind,
    /// The entity's id within tenant and kind.
    pub id: EntityId,
}

impl EntityRef {
    /// Parses and validates an entity address from its parts.
    pub fn parse(tenant: &str, kind: &str, id: &str) -> Result<Self, NameError> {
        let tenant = TenantName::new(tenant)?;
        let kind = EntityKind::parse(kind)?;
        let id = EntityId::parse(kind.id_shape(), id)?;
        Ok(Self { tenant, kind, id })
    }

    /// The tenant entity itself.
    pub fn tenant(tenant: &TenantName) -> Self {
        Self {
            tenant: tenant.clone(),
            kind: EntityKind::Tenant,
            id: EntityId::tenant(tenant),
        }
    }

    /// An app entity.
    pub fn app(tenant: &TenantName, app: &AppName) -> Self {
        Self {
            tenant: tenant.clone(),
            kind: EntityKind::App,
            id: EntityId::app(app),
        }
    }

    /// The build entity of an app revision.
    pub fn build(tenant: &TenantName, app: &AppName, revision: u32) -> Self {
        Self {
            tenant: tenant.clone(),
            kind: EntityKind::Build,
            id: EntityId::build(app, revision),
        }
    }

    /// The deployment entity of an app on a stage.
    pub fn deployment(tenant: &TenantName, app: &AppName, stage: &StageName) -> Self {
        Self {
            tenant: tenant.clone(),
            kind: EntityKind::Deployment,
            id: EntityId::deployment(app, stage),
        }
    }

    /// The podgroup entity of an app on a stage.
    pub fn podgroup(tenant: &TenantName, app: &AppName, stage: &StageName) -> Self {
        Self {
            tenant: tenant.clone(),
            kind: EntityKind::Podgroup,
            id: EntityId::podgroup(app, stage),
        }
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.kind, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind_with_its_id_shape() {
        assert!(EntityRef::parse("acme", "tenant", "acme").is_ok());
        assert!(EntityRef::parse("acme", "build", "shop_r3").is_ok());
        assert!(EntityRef::parse("acme", "build", "shop").is_err());
        assert!(EntityRef::parse("acme", "podgroup", "shop_dev").is_ok());
        assert!(EntityRef::parse("acme", "app", "shop_dev").is_err());
        assert!(EntityRef::parse("acme", "widget", "x").is_err());
        assert!(EntityRef::parse("a.b", "app", "x").is_err());
    }
}
