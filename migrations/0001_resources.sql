-- Resources: users, organizations, projects and their memberships, servers,
-- Odoo versions, addon repositories, DNS providers and environments.

CREATE TABLE users (
    id              UUID PRIMARY KEY,
    email           TEXT NOT NULL,
    name            TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    is_portal_admin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT users_email_lower CHECK (email = lower(email))
);
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE organizations (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL,
    slug       TEXT NOT NULL UNIQUE,
    created_by UUID REFERENCES users(id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE organization_members (
    organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id         UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role            TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX organization_members_user ON organization_members (user_id);

CREATE TABLE projects (
    id              UUID PRIMARY KEY,
    organization_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    slug            TEXT NOT NULL,
    git_url         TEXT NOT NULL,
    git_branch      TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (organization_id, slug)
);

CREATE TABLE project_members (
    project_id UUID NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    user_id    UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members (user_id);

CREATE TABLE servers (
    id                   UUID PRIMARY KEY,
    organization_id      UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name                 TEXT NOT NULL,
    host                 TEXT NOT NULL,
    ssh_port             INTEGER NOT NULL CHECK (ssh_port BETWEEN 1 AND 65535),
    ssh_user             TEXT NOT NULL,
    auth_method          TEXT NOT NULL CHECK (auth_method IN ('password', 'key')),
    -- AES-256-GCM ciphertext of the password or private key (common::secrets).
    secret_encrypted     TEXT NOT NULL,
    host_key_fingerprint TEXT,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (organization_id, name)
);

CREATE TABLE odoo_versions (
    id                          UUID PRIMARY KEY,
    version                     TEXT NOT NULL UNIQUE,
    image                       TEXT NOT NULL,
    registry_username           TEXT,
    registry_password_encrypted TEXT,
    created_at                  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((registry_username IS NULL) = (registry_password_encrypted IS NULL))
);

CREATE TABLE addon_repositories (
    id              UUID PRIMARY KEY,
    scope           TEXT NOT NULL CHECK (scope IN ('platform', 'organization', 'project')),
    organization_id UUID REFERENCES organizations(id) ON DELETE CASCADE,
    project_id      UUID REFERENCES projects(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    git_url         TEXT NOT NULL,
    branch          TEXT NOT NULL,
    priority        INTEGER NOT NULL DEFAULT 0,
    token_encrypted TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (
        (scope = 'platform' AND organization_id IS NULL AND project_id IS NULL)
        OR (scope = 'organization' AND organization_id IS NOT NULL AND project_id IS NULL)
        OR (scope = 'project' AND organization_id IS NOT NULL AND project_id IS NOT NULL)
    )
);
-- One directory per repository name under addons/: names are unique per owner.
CREATE UNIQUE INDEX addon_repositories_name ON addon_repositories
    (scope, COALESCE(organization_id, '00000000-0000-0000-0000-000000000000'),
     COALESCE(project_id, '00000000-0000-0000-0000-000000000000'), name);

CREATE TABLE dns_providers (
    id                  UUID PRIMARY KEY,
    organization_id     UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    kind                TEXT NOT NULL CHECK (kind IN ('cloudflare')),
    api_token_encrypted TEXT NOT NULL,
    zone_id             TEXT NOT NULL,
    apps_domain         TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (organization_id, apps_domain)
);

-- The environment's id is the instance UUID used in every name on the server
-- (paasportal_net_{id}, {id}_odoo, /opt/paasportal/{id}/...).
CREATE TABLE environments (
    id                             UUID PRIMARY KEY,
    project_id                     UUID NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    server_id                      UUID NOT NULL REFERENCES servers(id),
    name                           TEXT NOT NULL,
    kind                           TEXT NOT NULL CHECK (kind IN ('production', 'staging', 'development')),
    subdomain                      TEXT NOT NULL,
    odoo_version                   TEXT NOT NULL REFERENCES odoo_versions(version) ON UPDATE CASCADE,
    branch                         TEXT NOT NULL,
    cpu_cores                      DOUBLE PRECISION NOT NULL CHECK (cpu_cores > 0 AND cpu_cores <= 64),
    ram_mb                         INTEGER NOT NULL CHECK (ram_mb BETWEEN 512 AND 262144),
    disk_gb                        INTEGER NOT NULL CHECK (disk_gb BETWEEN 1 AND 10000),
    odoo_conf_overrides            JSONB NOT NULL DEFAULT '{}',
    replica_enabled                BOOLEAN NOT NULL DEFAULT FALSE,
    migration_source_url           TEXT,
    migration_restore_completed    BOOLEAN NOT NULL DEFAULT FALSE,
    migration_restore_completed_at TIMESTAMPTZ,
    db_password_encrypted          TEXT,
    status                         TEXT NOT NULL DEFAULT 'created'
        CHECK (status IN ('created', 'deploying', 'running', 'failed', 'stopped')),
    created_at                     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (project_id, name),
    CHECK (migration_restore_completed = (migration_restore_completed_at IS NOT NULL))
);
CREATE INDEX environments_server ON environments (server_id);
-- A server's Traefik routes one host name to one environment.
CREATE UNIQUE INDEX environments_server_subdomain ON environments (server_id, subdomain);
