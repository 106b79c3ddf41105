-- Neo's read models: projections of the event log (stream NEO_EVENTS), written only by the
-- projection runner (actors/src/projections). Every row carries `last_seq`, the stream sequence
-- of the event that last changed it. Dropping these tables and replaying rebuilds them.

-- How far each projection has applied the stream; updated in the transaction that applies.
CREATE TABLE projection_positions (
    projection TEXT PRIMARY KEY,
    sequence   BIGINT NOT NULL CHECK (sequence >= 0)
);

-- TenantCreated, StageAdded, StageRemoved, QuotaSet, TenantSuspended, TenantResumed.
CREATE TABLE tenants (
    tenant               TEXT PRIMARY KEY,
    display_name         TEXT NOT NULL,
    stages               TEXT[] NOT NULL,          -- in promotion order
    suspended            BOOLEAN NOT NULL DEFAULT FALSE,
    suspension_reason    TEXT NOT NULL DEFAULT '',
    max_apps             BIGINT,                   -- NULL: no quota set
    max_replicas_per_app BIGINT,
    created_at           TIMESTAMPTZ NOT NULL,
    created_seq          BIGINT NOT NULL,
    last_seq             BIGINT NOT NULL
);

-- MemberSet, MemberRemoved.
CREATE TABLE tenant_members (
    tenant    TEXT NOT NULL,
    user_name TEXT NOT NULL,
    role      TEXT NOT NULL,                       -- viewer, developer, devops, admin
    last_seq  BIGINT NOT NULL,
    PRIMARY KEY (tenant, user_name)
);

-- AppCreated, AppArchived.
CREATE TABLE apps (
    tenant         TEXT NOT NULL,
    app            TEXT NOT NULL,
    description    TEXT NOT NULL,
    archived       BOOLEAN NOT NULL DEFAULT FALSE,
    archive_reason TEXT NOT NULL DEFAULT '',
    created_at     TIMESTAMPTZ NOT NULL,
    created_seq    BIGINT NOT NULL,
    last_seq       BIGINT NOT NULL,
    PRIMARY KEY (tenant, app)
);

-- RevisionCreated. `dependencies` are the ones declared with the revision; the resolved ones
-- of its build are in dependency_edges.
CREATE TABLE revisions (
    tenant      TEXT NOT NULL,
    app         TEXT NOT NULL,
    number      BIGINT  NOT NULL,
    digest      TEXT NOT NULL,
    size        BIGINT NOT NULL,
    author      TEXT NOT NULL,
    message     TEXT NOT NULL,
    deploy_to   TEXT NOT NULL,                     -- 1-Click Publish target ('' = none)
    created_at  TIMESTAMPTZ NOT NULL,
    last_seq    BIGINT NOT NULL,
    PRIMARY KEY (tenant, app, number)
);

-- BuildRequested, BuildStarted, BuildSucceeded, BuildFailed, BuildCancelled. Id `{app}_r{n}`.
CREATE TABLE builds (
    tenant          TEXT NOT NULL,
    build_id        TEXT NOT NULL,
    app             TEXT NOT NULL,
    revision        BIGINT  NOT NULL,
    revision_digest TEXT NOT NULL,
    status          TEXT NOT NULL,                 -- requested, started, succeeded, failed, cancelled
    attempt         BIGINT  NOT NULL,
    worker          TEXT NOT NULL DEFAULT '',
    image_digest    TEXT NOT NULL DEFAULT '',
    image_ref       TEXT NOT NULL DEFAULT '',
    reason          TEXT NOT NULL DEFAULT '',
    deploy_to       TEXT NOT NULL DEFAULT '',
    requested_at    TIMESTAMPTZ NOT NULL,
    last_seq        BIGINT NOT NULL,
    PRIMARY KEY (tenant, build_id)
);
CREATE INDEX builds_by_app ON builds (tenant, app, revision);

-- BuildSucceeded.dependencies: consumer revision → the exact producer revision it was built
-- against, and the fields it uses ('{}' = the whole entity).
CREATE TABLE dependency_edges (
    tenant            TEXT NOT NULL,
    consumer_app      TEXT NOT NULL,
    consumer_revision BIGINT  NOT NULL,
    producer_app      TEXT NOT NULL,
    producer_revision BIGINT  NOT NULL,
    entity            TEXT NOT NULL,
    fields            TEXT[] NOT NULL,
    last_seq          BIGINT NOT NULL,
    PRIMARY KEY (tenant, consumer_app, consumer_revision, producer_app, entity)
);
CREATE INDEX dependency_edges_by_producer ON dependency_edges (tenant, producer_app, entity);

-- BuildSucceeded.exposes: what a revision offers other apps, one row per field.
CREATE TABLE exposed_fields (
    tenant     TEXT NOT NULL,
    app        TEXT NOT NULL,
    revision   BIGINT  NOT NULL,
    entity     TEXT NOT NULL,
    field      TEXT NOT NULL,
    field_type TEXT NOT NULL,
    required   BOOLEAN NOT NULL,
    position   BIGINT  NOT NULL,                   -- the field's index in the entity
    last_seq   BIGINT NOT NULL,
    PRIMARY KEY (tenant, app, revision, entity, field)
);

-- ReleaseCreated (a deploy, promotion or rollback), RolloutRecorded.
CREATE TABLE releases (
    tenant                TEXT NOT NULL,
    app                   TEXT NOT NULL,
    stage                 TEXT NOT NULL,
    number                BIGINT  NOT NULL,
    revision              BIGINT  NOT NULL,
    build_id              TEXT NOT NULL,
    image_digest          TEXT NOT NULL,
    origin                TEXT NOT NULL,           -- deploy, promotion, rollback
    promoted_from_stage   TEXT,                    -- promotion: the source release
    promoted_from_release BIGINT,
    rolled_back_to        BIGINT,                  -- rollback: the release whose image it restores
    forced                BOOLEAN NOT NULL,
    forced_blockers       TEXT[] NOT NULL,
    rollout               TEXT NOT NULL,           -- pending, succeeded, failed
    rollout_reason        TEXT NOT NULL DEFAULT '',
    created_at            TIMESTAMPTZ NOT NULL,
    last_seq              BIGINT NOT NULL,
    PRIMARY KEY (tenant, app, stage, number)
);

-- One row per app and stage: the current release (the last one created).
CREATE TABLE deployments (
    tenant          TEXT NOT NULL,
    app             TEXT NOT NULL,
    stage           TEXT NOT NULL,
    current_release BIGINT  NOT NULL,
    revision        BIGINT  NOT NULL,
    build_id        TEXT NOT NULL,
    image_digest    TEXT NOT NULL,
    rollout         TEXT NOT NULL,                 -- of the current release
    last_seq        BIGINT NOT NULL,
    PRIMARY KEY (tenant, app, stage)
);

-- DeployBlocked: a deploy impact analysis refused (not forced); no release was created.
CREATE TABLE blocked_deploys (
    tenant     TEXT NOT NULL,
    app        TEXT NOT NULL,
    stage      TEXT NOT NULL,
    seq        BIGINT NOT NULL,                    -- the DeployBlocked event's sequence
    build_id   TEXT NOT NULL,
    revision   BIGINT NOT NULL,
    blockers   TEXT[] NOT NULL,
    blocked_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant, app, stage, seq)
);
