-- Safe redeploys (issue 13). A deployment may name the commit it deploys
-- (`requested_commit`; a rollback is a deployment of an earlier commit) or
-- repeat a past deployment (`redeploy_of`, trigger `redeploy`). It records
-- the addons it deployed (`addons`: {name: {repo, hash, version}}, the
-- baseline the next deployment compares with), what changed since the last
-- successful one (`module_changes`: changed, added, removed, upgraded), the
-- snapshot taken before the database changed (`snapshot`: path, bytes,
-- seconds), and, when it failed after the database or the serving
-- container was touched, that it was rolled back, why, and how long that
-- took.
ALTER TABLE deployments
    ADD COLUMN requested_commit TEXT CHECK (requested_commit ~ '^[0-9a-f]{7,64}$'),
    ADD COLUMN redeploy_of      UUID REFERENCES deployments(id) ON DELETE SET NULL,
    ADD COLUMN addons           JSONB,
    ADD COLUMN module_changes   JSONB,
    ADD COLUMN snapshot         JSONB,
    ADD COLUMN rolled_back      BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN rollback_reason  TEXT,
    ADD COLUMN rollback_seconds DOUBLE PRECISION;

ALTER TABLE deployments DROP CONSTRAINT deployments_trigger_check;
ALTER TABLE deployments ADD CONSTRAINT deployments_trigger_check
    CHECK (trigger IN ('manual', 'git_push', 'api', 'scheduled', 'rollback', 'redeploy'));

-- The baseline lookup: an environment's latest successful deployment.
CREATE INDEX deployments_env_success ON deployments (environment_id, completed_at DESC)
    WHERE status = 'success';
