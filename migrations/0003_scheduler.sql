-- The scheduler: one row per job per tick. The replica that inserts the row
-- runs that tick; the others see the conflict and skip it, so every tick of
-- every job runs exactly once however many replicas are up.
CREATE TABLE scheduler_runs (
    job         TEXT NOT NULL,
    tick        TIMESTAMPTZ NOT NULL,
    replica     TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ,
    ok          BOOLEAN,
    result      TEXT,
    PRIMARY KEY (job, tick)
);

-- The reaper re-enqueues a pending deployment whose job was lost once, and
-- remembers when.
ALTER TABLE deployments ADD COLUMN requeued_at TIMESTAMPTZ;
CREATE INDEX deployments_pending_created ON deployments (created_at) WHERE status = 'pending';
