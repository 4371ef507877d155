-- Deployments, their per-stage timing and their log lines.

CREATE TABLE deployments (
    id                  UUID PRIMARY KEY,
    project_id          UUID NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    environment_id      UUID NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    vm_id               UUID REFERENCES servers(id) ON DELETE SET NULL,
    version             INTEGER NOT NULL CHECK (version > 0),
    status              TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'success', 'failed', 'cancelled')),
    trigger             TEXT NOT NULL DEFAULT 'manual'
        CHECK (trigger IN ('manual', 'git_push', 'api', 'scheduled', 'rollback')),
    triggered_by        UUID REFERENCES users(id) ON DELETE SET NULL,
    git_commit          TEXT,
    git_branch          TEXT,
    git_message         TEXT,
    committer_name      TEXT,
    committer_email     TEXT,
    commit_date         TIMESTAMPTZ,
    started_at          TIMESTAMPTZ,
    completed_at        TIMESTAMPTZ,
    duration_seconds    DOUBLE PRECISION,
    container_id        TEXT,
    image_tag           TEXT,
    error_message       TEXT,
    current_step        TEXT,
    progress_percent    INTEGER NOT NULL DEFAULT 0 CHECK (progress_percent BETWEEN 0 AND 100),
    worker_id           TEXT,
    heartbeat_at        TIMESTAMPTZ,
    cancel_requested_at TIMESTAMPTZ,
    idempotency_key     TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (environment_id, version),
    CHECK ((status IN ('success', 'failed', 'cancelled')) = (completed_at IS NOT NULL))
);
-- At most one pending/running deployment per environment.
CREATE UNIQUE INDEX deployments_one_active ON deployments (environment_id)
    WHERE status IN ('pending', 'running');
CREATE INDEX deployments_project_created ON deployments (project_id, created_at DESC);
CREATE INDEX deployments_running_heartbeat ON deployments (heartbeat_at) WHERE status = 'running';
CREATE UNIQUE INDEX deployments_idempotency ON deployments (triggered_by, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE deployment_steps (
    deployment_id    UUID NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    step             TEXT NOT NULL CHECK (step IN (
        'initializing', 'connecting', 'creating_network', 'configuring_dns',
        'creating_database', 'cloning_platform_repos', 'cloning_org_repos',
        'cloning_project_repo', 'pulling_image', 'generating_config',
        'starting_container', 'installing_dependencies', 'initializing_database',
        'verifying_dns', 'configuring_traefik', 'health_check', 'completed')),
    status           TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'skipped', 'warning')),
    started_at       TIMESTAMPTZ,
    completed_at     TIMESTAMPTZ,
    duration_seconds DOUBLE PRECISION,
    latest_message   TEXT,
    PRIMARY KEY (deployment_id, step)
);

-- The spec's table plus `seq`: monotonic per deployment, the order and the resume point.
CREATE TABLE deployment_logs (
    id            UUID PRIMARY KEY,
    deployment_id UUID NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    timestamp     TIMESTAMPTZ NOT NULL,
    level         VARCHAR(10) NOT NULL CHECK (level IN ('debug', 'info', 'warning', 'error')),
    message       TEXT NOT NULL,
    step          VARCHAR(50),
    data          JSONB DEFAULT '{}',
    UNIQUE (deployment_id, seq)
);
CREATE INDEX idx_log_deployment_time ON deployment_logs (deployment_id, timestamp);
-- Retention deletes by age across all deployments.
CREATE INDEX idx_log_timestamp ON deployment_logs (timestamp);
