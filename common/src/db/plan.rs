//! What the pipeline reads and records beyond the deployment row: the
//! environment's settings, its addon repositories, the Odoo image, the DNS
//! provider, and the facts a run records (git metadata, container, database
//! password, migration restore).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::model::fields::{Branch, DnsLabel, GitUrl};

use crate::model::ids::{DeploymentId, EnvironmentId};
use crate::secrets::Sealed;

/// The environment's deployment settings. Secrets stay encrypted here.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnvironmentPlan {
    pub project_git_url: GitUrl,
    pub odoo_image: String,
    pub registry_username: Option<String>,
    pub registry_password_encrypted: Option<Sealed>,
    pub odoo_conf_overrides: serde_json::Value,
    pub replica_enabled: bool,
    pub kind: crate::model::EnvironmentKind,
    pub with_demo: bool,
    /// Shown part only; the worker replaces it with the decrypted URL.
    pub migration_source_url: Option<String>,
    pub migration_source_encrypted: Option<Sealed>,
    pub migration_restore_completed: bool,
    pub db_password_encrypted: Option<Sealed>,
    pub admin_passwd_encrypted: Option<Sealed>,
    /// The password of Odoo's `admin` user (migration 0008).
    pub odoo_admin_password_encrypted: Option<Sealed>,
    /// oec initialized the database and has not set the admin's password yet.
    pub odoo_admin_password_pending: bool,
    /// The hostname the api fixed (older environments may have none yet).
    pub hostname: Option<String>,
    /// The DNS record this environment created, by the provider's id.
    pub dns_record_id: Option<String>,
    /// The image of the environment's last successful deployment, if any.
    pub previous_image: Option<String>,
    /// The addons the last successful deployment recorded (migration 0011).
    pub previous_addons: Option<serde_json::Value>,
    /// The commit this deployment was asked to deploy, if any.
    pub requested_commit: Option<String>,
}

/// An addon repository to clone, in the order of `priority` (highest first).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RepoPlan {
    pub scope: String,
    pub name: DnsLabel,
    pub git_url: GitUrl,
    pub branch: Branch,
    pub priority: i32,
    pub token_encrypted: Option<Sealed>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DnsPlan {
    pub kind: String,
    pub api_token_encrypted: Sealed,
    pub zone_id: String,
    pub apps_domain: String,
}

pub async fn environment(pool: &PgPool, deployment: DeploymentId) -> sqlx::Result<EnvironmentPlan> {
    sqlx::query_as(
        "SELECT p.git_url AS project_git_url, v.image AS odoo_image, v.registry_username,
                v.registry_password_encrypted, e.odoo_conf_overrides, e.replica_enabled,
                e.kind, e.with_demo, e.migration_source_url, e.migration_source_encrypted, e.migration_restore_completed, e.db_password_encrypted,
                e.admin_passwd_encrypted, e.odoo_admin_password_encrypted,
                (e.database_initialized_at IS NOT NULL AND e.odoo_admin_password_set_at IS NULL)
                    AS odoo_admin_password_pending,
                e.hostname, e.dns_record_id,
                (SELECT image_tag FROM deployments prev WHERE prev.environment_id = e.id
                   AND prev.status = $2 AND prev.action = $3 ORDER BY prev.version DESC LIMIT 1) AS previous_image,
                (SELECT addons FROM deployments prev WHERE prev.environment_id = e.id
                   AND prev.status = $2 AND prev.action = $3 ORDER BY prev.version DESC LIMIT 1) AS previous_addons,
                d.requested_commit
         FROM deployments d JOIN environments e ON e.id = d.environment_id
         JOIN projects p ON p.id = e.project_id JOIN odoo_versions v ON v.version = e.odoo_version
         WHERE d.id = $1",
    )
    .bind(deployment)
    .bind(crate::model::DeploymentStatus::Success)
    .bind(crate::model::Action::Deploy)
    .fetch_one(pool)
    .await
}

/// Platform repositories, the organization's, and the project's additional
/// ones, each scope ordered by priority (highest first), then name.
pub async fn repositories(
    pool: &PgPool,
    organization: Uuid,
    project: Uuid,
) -> sqlx::Result<Vec<RepoPlan>> {
    sqlx::query_as(
        "SELECT scope, name, git_url, branch, priority, token_encrypted FROM addon_repositories
         WHERE scope = 'platform'
            OR (scope = 'organization' AND organization_id = $1)
            OR (scope = 'project' AND project_id = $2)
         ORDER BY scope, priority DESC, name",
    )
    .bind(organization)
    .bind(project)
    .fetch_all(pool)
    .await
}

/// The organization's DNS provider (the oldest, when there are several).
pub async fn dns_provider(pool: &PgPool, organization: Uuid) -> sqlx::Result<Option<DnsPlan>> {
    sqlx::query_as(
        "SELECT kind, api_token_encrypted, zone_id, apps_domain FROM dns_providers
         WHERE organization_id = $1 ORDER BY created_at, id LIMIT 1",
    )
    .bind(organization)
    .fetch_optional(pool)
    .await
}

/// A secret generated once per environment.
#[derive(Debug, Clone, Copy)]
pub enum EnvironmentSecret {
    /// The `odoo` role's password in the environment's PostgreSQL.
    DbPassword,
    /// Odoo's master password (`admin_passwd`).
    AdminPasswd,
    /// The password of Odoo's `admin` user.
    OdooAdminPassword,
}

impl EnvironmentSecret {
    fn column(self) -> &'static str {
        match self {
            EnvironmentSecret::DbPassword => "db_password_encrypted",
            EnvironmentSecret::AdminPasswd => "admin_passwd_encrypted",
            EnvironmentSecret::OdooAdminPassword => "odoo_admin_password_encrypted",
        }
    }
}

/// Stores an environment's secret unless one is stored already; returns the
/// one that is stored (so two racing runs agree).
pub async fn ensure_secret(
    pool: &PgPool,
    environment: EnvironmentId,
    secret: EnvironmentSecret,
    encrypted: &Sealed,
) -> sqlx::Result<Sealed> {
    // The column is one of three constants, never input.
    let c = secret.column();
    sqlx::query_scalar(&format!(
        "WITH set AS (UPDATE environments SET {c} = $2, updated_at = now()
                      WHERE id = $1 AND {c} IS NULL RETURNING {c})
         SELECT COALESCE((SELECT {c} FROM set), (SELECT {c} FROM environments WHERE id = $1))"
    ))
    .bind(environment)
    .bind(encrypted)
    .fetch_one(pool)
    .await
}

/// Records that oec ran `-i base` on the environment's database: its admin
/// password is to be set (again) now.
pub async fn mark_database_initialized(
    pool: &PgPool,
    environment: EnvironmentId,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE environments SET database_initialized_at = now(), odoo_admin_password_set_at = NULL
         WHERE id = $1",
    )
    .bind(environment)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records that the admin user of Odoo has the stored password.
pub async fn mark_odoo_admin_password_set(
    pool: &PgPool,
    environment: EnvironmentId,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE environments SET odoo_admin_password_set_at = now() WHERE id = $1")
        .bind(environment)
        .execute(pool)
        .await?;
    Ok(())
}

/// The project repository's commit, as the spec's "Git Information Captured".
#[derive(Debug, Clone, Default)]
pub struct GitInfo {
    pub commit: String,
    pub message: String,
    pub branch: String,
    pub committer_name: String,
    pub committer_email: String,
    pub commit_date: Option<DateTime<Utc>>,
}

pub async fn record_git(pool: &PgPool, deployment: DeploymentId, g: &GitInfo) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE deployments SET git_commit = $2, git_message = $3, git_branch = $4, committer_name = $5,
                committer_email = $6, commit_date = $7, updated_at = now() WHERE id = $1",
    )
    .bind(deployment)
    .bind(&g.commit)
    .bind(&g.message)
    .bind(&g.branch)
    .bind(&g.committer_name)
    .bind(&g.committer_email)
    .bind(g.commit_date)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn record_container(
    pool: &PgPool,
    deployment: DeploymentId,
    container_id: &str,
    image: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE deployments SET container_id = $2, image_tag = $3, updated_at = now() WHERE id = $1",
    )
    .bind(deployment)
    .bind(container_id)
    .bind(image)
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks the migration restore done, so that it never runs again.
/// The addons a deployment deploys and what changed since the last
/// successful one.
pub async fn record_addons(
    pool: &PgPool,
    deployment: DeploymentId,
    addons: &serde_json::Value,
    changes: &serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE deployments SET addons = $2, module_changes = $3, updated_at = now() WHERE id = $1",
    )
    .bind(deployment)
    .bind(addons)
    .bind(changes)
    .execute(pool)
    .await?;
    Ok(())
}

/// Adds the modules an upgrade ran for to the recorded changes.
pub async fn record_upgraded(
    pool: &PgPool,
    deployment: DeploymentId,
    upgraded: &[String],
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE deployments SET module_changes = COALESCE(module_changes, '{}'::jsonb)
             || jsonb_build_object('upgraded', $2::text[]), updated_at = now() WHERE id = $1",
    )
    .bind(deployment)
    .bind(upgraded)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn record_snapshot(
    pool: &PgPool,
    deployment: DeploymentId,
    snapshot: &serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE deployments SET snapshot = $2, updated_at = now() WHERE id = $1")
        .bind(deployment)
        .bind(snapshot)
        .execute(pool)
        .await?;
    Ok(())
}

/// The deployment's progress inside a stage (module by module).
pub async fn record_progress(
    pool: &PgPool,
    deployment: DeploymentId,
    percent: i32,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE deployments SET progress_percent = GREATEST(progress_percent, $2), updated_at = now()
         WHERE id = $1 AND status = $3",
    )
    .bind(deployment)
    .bind(percent.clamp(0, 100))
    .bind(crate::model::DeploymentStatus::Running)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn mark_migration_restored(
    pool: &PgPool,
    environment: EnvironmentId,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE environments SET migration_restore_completed = TRUE,
                migration_restore_completed_at = now(), updated_at = now()
         WHERE id = $1 AND NOT migration_restore_completed",
    )
    .bind(environment)
    .execute(pool)
    .await?;
    Ok(())
}

/// Remembers the DNS record the environment created (or adopted).
pub async fn record_dns_record(
    pool: &PgPool,
    environment: EnvironmentId,
    id: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE environments SET dns_record_id = $2 WHERE id = $1")
        .bind(environment)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}
