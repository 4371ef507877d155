-- Server checks: POST /servers/{id}/check records a pending check and puts a
-- job on the queue `oec:server-checks`; a worker connects to the server, runs
-- it (SSH, Docker, resources, the deploy root, the proxy) and writes the
-- result here. The latest finished check is what GET /servers/{id} shows and
-- what capacity is measured against. A check of a deleted server goes with it.
CREATE TABLE server_checks (
    id           UUID PRIMARY KEY,
    server_id    UUID NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    status       TEXT NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'done')),
    ok           BOOLEAN,
    result       JSONB,
    requested_by UUID REFERENCES users(id) ON DELETE SET NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at  TIMESTAMPTZ
);
CREATE INDEX server_checks_latest ON server_checks (server_id, finished_at DESC)
    WHERE status = 'done';
