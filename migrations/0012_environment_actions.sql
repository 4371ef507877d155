-- Environment lifecycle (issue 13). A deployment row is also how a short
-- run that stops, starts, restarts or tears down an environment is queued,
-- claimed, logged and watched: `action` says which (the whole pipeline is
-- `deploy`), `delete_data` whether a teardown also removes the database
-- volume. Their stages join the step ids.
ALTER TABLE deployments
    ADD COLUMN action      TEXT NOT NULL DEFAULT 'deploy'
        CHECK (action IN ('deploy', 'stop', 'start', 'restart', 'teardown')),
    ADD COLUMN delete_data BOOLEAN NOT NULL DEFAULT false;

ALTER TABLE deployment_steps DROP CONSTRAINT deployment_steps_step_check;
ALTER TABLE deployment_steps ADD CONSTRAINT deployment_steps_step_check CHECK (step IN (
    'initializing', 'connecting', 'creating_network', 'configuring_dns',
    'creating_database', 'cloning_platform_repos', 'cloning_org_repos',
    'cloning_project_repo', 'pulling_image', 'generating_config',
    'starting_container', 'installing_dependencies', 'initializing_database',
    'verifying_dns', 'configuring_traefik', 'health_check',
    'stopping_container', 'removing_environment', 'completed'));
