-- Each log line keeps the deployment's status and progress at the moment it
-- was written, so a line replayed from PostgreSQL (the per-deployment event
-- stream after a reconnect) has the same JSON as it had live. Lines stored
-- before this migration take the defaults ('running', 0): adding a column
-- with a constant default rewrites nothing, and a worker of the previous
-- version can still insert lines during a rolling upgrade.
ALTER TABLE deployment_logs
    ADD COLUMN status TEXT NOT NULL DEFAULT 'running',
    ADD COLUMN progress_percent INTEGER NOT NULL DEFAULT 0;
