//! Applying one decoded event to the read models: the SQL of each event type, run inside the
//! runner's transaction. Every write is an upsert or a keyed update, so the tables mirror what
//! the aggregates' `apply` folds (see `aggregates/*.rs`).

use neo_protocol::pb::{
    self, app_event::Event as AppEvent, build_event::Event as BuildEvent,
    deployment_event::Event as DeploymentEvent, tenant_event::Event as TenantEvent,
};
use sqlx::PgConnection;

use super::decode::{KindEvent, ProjectedEvent, origin_name, role_name, rollout_name};

/// What every statement of one event needs: where it happened and when.
struct At<'a> {
    tenant: &'a str,
    id: &'a str,
    seq: i64,
    time_ms: i64,
}

/// Postgres has no unsigned integers: stream sequences, sizes and times are stored as BIGINT.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Applies `event` on `conn` (inside the caller's transaction).
///
/// # Errors
/// The database's error; the caller rolls the batch back and retries it.
pub async fn apply(conn: &mut PgConnection, event: &ProjectedEvent) -> Result<(), sqlx::Error> {
    let at = At {
        tenant: event.entity.tenant.as_str(),
        id: event.entity.id.as_str(),
        seq: to_i64(event.sequence),
        time_ms: to_i64(event.meta.time_ms),
    };
    match &event.event {
        KindEvent::Tenant(e) => tenant(conn, &at, e).await,
        KindEvent::App(e) => app(conn, &at, e).await,
        KindEvent::Build(e) => build(conn, &at, event, e).await,
        KindEvent::Deployment(e) => deployment(conn, &at, event, e).await,
        KindEvent::Unprojected => Ok(()),
    }
}

async fn tenant(
    conn: &mut PgConnection,
    at: &At<'_>,
    event: &TenantEvent,
) -> Result<(), sqlx::Error> {
    if let TenantEvent::Deleted(_) = event {
        sqlx::query("DELETE FROM tenant_members WHERE tenant = $1")
            .bind(at.tenant)
            .execute(&mut *conn)
            .await?;
        return sqlx::query("DELETE FROM tenants WHERE tenant = $1")
            .bind(at.tenant)
            .execute(conn)
            .await
            .map(drop);
    }
    let query = match event {
        TenantEvent::Created(e) => sqlx::query(
            "INSERT INTO tenants (tenant, display_name, stages, created_at, created_seq, last_seq)
             VALUES ($1, $2, $3, to_timestamp($4::float8 / 1000), $5, $5)
             ON CONFLICT (tenant) DO UPDATE SET display_name = EXCLUDED.display_name,
                 stages = EXCLUDED.stages, last_seq = EXCLUDED.last_seq",
        )
        .bind(at.tenant)
        .bind(&e.display_name)
        .bind(&e.stages)
        .bind(at.time_ms)
        .bind(at.seq),
        // The aggregate inserts at `position`, clamped to the end of the list.
        TenantEvent::StageAdded(e) => sqlx::query(
            "UPDATE tenants SET last_seq = $4,
                 stages = stages[1:LEAST($2, cardinality(stages))] || ARRAY[$3]::text[]
                          || stages[LEAST($2, cardinality(stages)) + 1:]
             WHERE tenant = $1",
        )
        .bind(at.tenant)
        .bind(i32::try_from(e.position).unwrap_or(i32::MAX - 1))
        .bind(&e.name)
        .bind(at.seq),
        TenantEvent::StageRemoved(e) => sqlx::query(
            "UPDATE tenants SET stages = array_remove(stages, $2), last_seq = $3
             WHERE tenant = $1",
        )
        .bind(at.tenant)
        .bind(&e.name)
        .bind(at.seq),
        TenantEvent::MemberSet(e) => sqlx::query(
            "INSERT INTO tenant_members (tenant, user_name, role, last_seq) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant, user_name) DO UPDATE SET role = EXCLUDED.role,
                 last_seq = EXCLUDED.last_seq",
        )
        .bind(at.tenant)
        .bind(&e.user)
        .bind(role_name(e.role))
        .bind(at.seq),
        TenantEvent::MemberRemoved(e) => {
            sqlx::query("DELETE FROM tenant_members WHERE tenant = $1 AND user_name = $2")
                .bind(at.tenant)
                .bind(&e.user)
        }
        TenantEvent::QuotaSet(e) => sqlx::query(
            "UPDATE tenants SET max_apps = $2, max_replicas_per_app = $3, last_seq = $4
             WHERE tenant = $1",
        )
        .bind(at.tenant)
        .bind(e.quota.map(|q| i64::from(q.max_apps)))
        .bind(e.quota.map(|q| i64::from(q.max_replicas_per_app)))
        .bind(at.seq),
        TenantEvent::Suspended(e) => sqlx::query(
            "UPDATE tenants SET suspended = TRUE, suspension_reason = $2, last_seq = $3
             WHERE tenant = $1",
        )
        .bind(at.tenant)
        .bind(&e.reason)
        .bind(at.seq),
        TenantEvent::Resumed(_) => sqlx::query(
            "UPDATE tenants SET suspended = FALSE, suspension_reason = '', last_seq = $2
             WHERE tenant = $1",
        )
        .bind(at.tenant)
        .bind(at.seq),
        // Handled above: it deletes from two tables.
        TenantEvent::Deleted(_) => return Ok(()),
    };
    query.execute(conn).await.map(drop)
}

async fn app(conn: &mut PgConnection, at: &At<'_>, event: &AppEvent) -> Result<(), sqlx::Error> {
    let query = match event {
        AppEvent::Created(e) => sqlx::query(
            "INSERT INTO apps (tenant, app, description, created_at, created_seq, last_seq)
             VALUES ($1, $2, $3, to_timestamp($4::float8 / 1000), $5, $5)
             ON CONFLICT (tenant, app) DO UPDATE SET description = EXCLUDED.description,
                 last_seq = EXCLUDED.last_seq",
        )
        .bind(at.tenant)
        .bind(at.id)
        .bind(&e.description)
        .bind(at.time_ms)
        .bind(at.seq),
        AppEvent::RevisionCreated(e) => {
            let Some(r) = &e.revision else {
                tracing::warn!(
                    sequence = at.seq,
                    app = at.id,
                    "RevisionCreated without a revision"
                );
                return Ok(());
            };
            sqlx::query(
                "INSERT INTO revisions (tenant, app, number, digest, size, author, message,
                     deploy_to, created_at, last_seq)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, to_timestamp($9::float8 / 1000), $10)
                 ON CONFLICT (tenant, app, number) DO UPDATE SET digest = EXCLUDED.digest,
                     size = EXCLUDED.size, author = EXCLUDED.author, message = EXCLUDED.message,
                     deploy_to = EXCLUDED.deploy_to, created_at = EXCLUDED.created_at,
                     last_seq = EXCLUDED.last_seq",
            )
            .bind(at.tenant)
            .bind(at.id)
            .bind(i64::from(r.number))
            .bind(&r.digest)
            .bind(to_i64(r.size))
            .bind(&r.author)
            .bind(&r.message)
            .bind(&r.deploy_to)
            .bind(at.time_ms)
            .bind(at.seq)
        }
        AppEvent::Archived(e) => sqlx::query(
            "UPDATE apps SET archived = TRUE, archive_reason = $3, last_seq = $4
             WHERE tenant = $1 AND app = $2",
        )
        .bind(at.tenant)
        .bind(at.id)
        .bind(&e.reason)
        .bind(at.seq),
    };
    query.execute(conn).await.map(drop)
}

async fn build(
    conn: &mut PgConnection,
    at: &At<'_>,
    projected: &ProjectedEvent,
    event: &BuildEvent,
) -> Result<(), sqlx::Error> {
    let query = match event {
        // A new attempt starts from a clean slate (as the aggregate's apply does).
        BuildEvent::Requested(e) => sqlx::query(
            "INSERT INTO builds (tenant, build_id, app, revision, revision_digest, status,
                 attempt, deploy_to, requested_at, last_seq)
             VALUES ($1, $2, $3, $4, $5, 'requested', $6, $7, to_timestamp($8::float8 / 1000), $9)
             ON CONFLICT (tenant, build_id) DO UPDATE SET app = EXCLUDED.app,
                 revision = EXCLUDED.revision, revision_digest = EXCLUDED.revision_digest,
                 status = 'requested', attempt = EXCLUDED.attempt, worker = '',
                 image_digest = '', image_ref = '', reason = '', deploy_to = EXCLUDED.deploy_to,
                 requested_at = EXCLUDED.requested_at, last_seq = EXCLUDED.last_seq",
        )
        .bind(at.tenant)
        .bind(at.id)
        .bind(&e.app)
        .bind(i64::from(e.revision))
        .bind(&e.revision_digest)
        .bind(i64::from(e.attempt))
        .bind(&e.deploy_to)
        .bind(at.time_ms)
        .bind(at.seq),
        BuildEvent::Started(e) => sqlx::query(
            "UPDATE builds SET status = 'started', attempt = $3, worker = $4, last_seq = $5
             WHERE tenant = $1 AND build_id = $2",
        )
        .bind(at.tenant)
        .bind(at.id)
        .bind(i64::from(e.attempt))
        .bind(&e.worker)
        .bind(at.seq),
        BuildEvent::Succeeded(e) => {
            build_outputs(conn, at, projected, e).await?;
            sqlx::query(
                "UPDATE builds SET status = 'succeeded', attempt = $3, image_digest = $4,
                     image_ref = $5, last_seq = $6
                 WHERE tenant = $1 AND build_id = $2",
            )
            .bind(at.tenant)
            .bind(at.id)
            .bind(i64::from(e.attempt))
            .bind(&e.image_digest)
            .bind(&e.image_ref)
            .bind(at.seq)
        }
        BuildEvent::Failed(e) => sqlx::query(
            "UPDATE builds SET status = 'failed', attempt = $3, reason = $4, last_seq = $5
             WHERE tenant = $1 AND build_id = $2",
        )
        .bind(at.tenant)
        .bind(at.id)
        .bind(i64::from(e.attempt))
        .bind(&e.reason)
        .bind(at.seq),
        BuildEvent::Cancelled(e) => sqlx::query(
            "UPDATE builds SET status = 'cancelled', attempt = $3, reason = $4, last_seq = $5
             WHERE tenant = $1 AND build_id = $2",
        )
        .bind(at.tenant)
        .bind(at.id)
        .bind(i64::from(e.attempt))
        .bind(&e.reason)
        .bind(at.seq),
    };
    query.execute(conn).await.map(drop)
}

/// A succeeded build's resolved dependencies (edges) and exposed entities, replacing any the
/// revision had.
async fn build_outputs(
    conn: &mut PgConnection,
    at: &At<'_>,
    projected: &ProjectedEvent,
    e: &pb::BuildSucceeded,
) -> Result<(), sqlx::Error> {
    // The event carries app and revision; events written before it did are read from the id.
    let (app, revision) = if e.app.is_empty() {
        match projected.entity.id.app_and_revision() {
            Some((app, revision)) => (app.as_str().to_owned(), revision),
            None => {
                tracing::warn!(
                    sequence = at.seq,
                    build = at.id,
                    "BuildSucceeded names no app and its id is not {{app}}_r{{n}}; no edges"
                );
                return Ok(());
            }
        }
    } else {
        (e.app.clone(), e.revision)
    };
    let revision = i64::from(revision);
    sqlx::query(
        "DELETE FROM dependency_edges
         WHERE tenant = $1 AND consumer_app = $2 AND consumer_revision = $3",
    )
    .bind(at.tenant)
    .bind(&app)
    .bind(revision)
    .execute(&mut *conn)
    .await?;
    for dep in &e.dependencies {
        sqlx::query(
            "INSERT INTO dependency_edges (tenant, consumer_app, consumer_revision, producer_app,
                 producer_revision, entity, fields, last_seq)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant, consumer_app, consumer_revision, producer_app, entity)
             DO UPDATE SET producer_revision = EXCLUDED.producer_revision,
                 fields = EXCLUDED.fields, last_seq = EXCLUDED.last_seq",
        )
        .bind(at.tenant)
        .bind(&app)
        .bind(revision)
        .bind(&dep.producer_app)
        .bind(i64::from(dep.producer_revision))
        .bind(&dep.entity)
        .bind(&dep.fields)
        .bind(at.seq)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("DELETE FROM exposed_fields WHERE tenant = $1 AND app = $2 AND revision = $3")
        .bind(at.tenant)
        .bind(&app)
        .bind(revision)
        .execute(&mut *conn)
        .await?;
    for entity in &e.exposes {
        for (position, field) in entity.fields.iter().enumerate() {
            sqlx::query(
                "INSERT INTO exposed_fields (tenant, app, revision, entity, field, field_type,
                     required, position, last_seq)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (tenant, app, revision, entity, field) DO UPDATE SET
                     field_type = EXCLUDED.field_type, required = EXCLUDED.required,
                     position = EXCLUDED.position, last_seq = EXCLUDED.last_seq",
            )
            .bind(at.tenant)
            .bind(&app)
            .bind(revision)
            .bind(&entity.name)
            .bind(&field.name)
            .bind(&field.r#type)
            .bind(field.required)
            .bind(to_i64(position as u64))
            .bind(at.seq)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

async fn deployment(
    conn: &mut PgConnection,
    at: &At<'_>,
    projected: &ProjectedEvent,
    event: &DeploymentEvent,
) -> Result<(), sqlx::Error> {
    let from_id = || {
        projected
            .entity
            .id
            .app_and_stage()
            .map(|(app, stage)| (app.as_str().to_owned(), stage.as_str().to_owned()))
    };
    match event {
        DeploymentEvent::ReleaseCreated(e) => {
            let Some(r) = &e.release else {
                tracing::warn!(
                    sequence = at.seq,
                    deployment = at.id,
                    "ReleaseCreated without a release"
                );
                return Ok(());
            };
            let (app, stage) = if e.app.is_empty() || e.stage.is_empty() {
                from_id().unwrap_or_default()
            } else {
                (e.app.clone(), e.stage.clone())
            };
            let promoted = r.promoted_from.as_ref();
            sqlx::query(
                "INSERT INTO releases (tenant, app, stage, number, revision, build_id, image_digest,
                     origin, promoted_from_stage, promoted_from_release, rolled_back_to, forced,
                     forced_blockers, rollout, rollout_reason, created_at, last_seq)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                     to_timestamp($16::float8 / 1000), $17)
                 ON CONFLICT (tenant, app, stage, number) DO UPDATE SET
                     revision = EXCLUDED.revision, build_id = EXCLUDED.build_id,
                     image_digest = EXCLUDED.image_digest, origin = EXCLUDED.origin,
                     promoted_from_stage = EXCLUDED.promoted_from_stage,
                     promoted_from_release = EXCLUDED.promoted_from_release,
                     rolled_back_to = EXCLUDED.rolled_back_to, forced = EXCLUDED.forced,
                     forced_blockers = EXCLUDED.forced_blockers, rollout = EXCLUDED.rollout,
                     rollout_reason = EXCLUDED.rollout_reason, created_at = EXCLUDED.created_at,
                     last_seq = EXCLUDED.last_seq",
            )
            .bind(at.tenant)
            .bind(&app)
            .bind(&stage)
            .bind(i64::from(r.number))
            .bind(i64::from(r.revision))
            .bind(&r.build_id)
            .bind(&r.image_digest)
            .bind(origin_name(r.origin))
            .bind(promoted.map(|p| p.stage.clone()))
            .bind(promoted.map(|p| i64::from(p.number)))
            .bind((r.rolled_back_to != 0).then_some(i64::from(r.rolled_back_to)))
            .bind(r.forced)
            .bind(&r.forced_blockers)
            .bind(rollout_name(r.rollout))
            .bind(&r.rollout_reason)
            .bind(at.time_ms)
            .bind(at.seq)
            .execute(&mut *conn)
            .await?;
            // Every new release becomes the current one.
            sqlx::query(
                "INSERT INTO deployments (tenant, app, stage, current_release, revision, build_id,
                     image_digest, rollout, last_seq)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (tenant, app, stage) DO UPDATE SET
                     current_release = EXCLUDED.current_release, revision = EXCLUDED.revision,
                     build_id = EXCLUDED.build_id, image_digest = EXCLUDED.image_digest,
                     rollout = EXCLUDED.rollout, last_seq = EXCLUDED.last_seq",
            )
            .bind(at.tenant)
            .bind(&app)
            .bind(&stage)
            .bind(i64::from(r.number))
            .bind(i64::from(r.revision))
            .bind(&r.build_id)
            .bind(&r.image_digest)
            .bind(rollout_name(r.rollout))
            .bind(at.seq)
            .execute(conn)
            .await
            .map(drop)
        }
        // The stage's settings and secrets are read from the deployment entity itself (secret
        // values are never projected anywhere).
        DeploymentEvent::SettingsChanged(_)
        | DeploymentEvent::SecretChanged(_)
        | DeploymentEvent::SecretRemoved(_) => Ok(()),
        // A canary's steps are read from the deployment entity; the current release changes
        // only when one rolls back (the baseline serves again).
        DeploymentEvent::CanaryPolicySet(_)
        | DeploymentEvent::CanaryAdvanced(_)
        | DeploymentEvent::CanaryCompleted(_) => Ok(()),
        DeploymentEvent::CanaryRolledBack(e) => {
            let Some((app, stage)) = from_id() else {
                return Ok(());
            };
            sqlx::query(
                "UPDATE deployments d SET current_release = r.number, revision = r.revision,
                     build_id = r.build_id, image_digest = r.image_digest, rollout = r.rollout,
                     last_seq = $5
                 FROM releases r
                 WHERE d.tenant = $1 AND d.app = $2 AND d.stage = $3
                     AND r.tenant = d.tenant AND r.app = d.app AND r.stage = d.stage
                     AND r.number = $4",
            )
            .bind(at.tenant)
            .bind(&app)
            .bind(&stage)
            .bind(i64::from(e.baseline))
            .bind(at.seq)
            .execute(conn)
            .await
            .map(drop)
        }
        DeploymentEvent::DeployBlocked(e) => {
            let (app, stage) = if e.app.is_empty() || e.stage.is_empty() {
                from_id().unwrap_or_default()
            } else {
                (e.app.clone(), e.stage.clone())
            };
            sqlx::query(
                "INSERT INTO blocked_deploys (tenant, app, stage, seq, build_id, revision,
                     blockers, blocked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8::float8 / 1000))
                 ON CONFLICT (tenant, app, stage, seq) DO NOTHING",
            )
            .bind(at.tenant)
            .bind(&app)
            .bind(&stage)
            .bind(at.seq)
            .bind(&e.build_id)
            .bind(i64::from(e.revision))
            .bind(&e.blockers)
            .bind(at.time_ms)
            .execute(conn)
            .await
            .map(drop)
        }
        DeploymentEvent::RolloutRecorded(e) => {
            let Some((app, stage)) = from_id() else {
                tracing::warn!(
                    sequence = at.seq,
                    deployment = at.id,
                    "RolloutRecorded on a deployment id that is not {{app}}_{{stage}}"
                );
                return Ok(());
            };
            let rollout = rollout_name(e.status);
            sqlx::query(
                "UPDATE releases SET rollout = $5, rollout_reason = $6, last_seq = $7
                 WHERE tenant = $1 AND app = $2 AND stage = $3 AND number = $4",
            )
            .bind(at.tenant)
            .bind(&app)
            .bind(&stage)
            .bind(i64::from(e.release))
            .bind(&rollout)
            .bind(&e.reason)
            .bind(at.seq)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE deployments SET rollout = $5, last_seq = $6
                 WHERE tenant = $1 AND app = $2 AND stage = $3 AND current_release = $4",
            )
            .bind(at.tenant)
            .bind(&app)
            .bind(&stage)
            .bind(i64::from(e.release))
            .bind(&rollout)
            .bind(at.seq)
            .execute(conn)
            .await
            .map(drop)
        }
    }
}
