use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::model::fields::{Branch, DnsLabel};

use crate::secrets::Sealed;

use super::Page;
use crate::model::{EnvironmentKind, EnvironmentStatus};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Environment {
    pub id: Uuid,
    pub project_id: Uuid,
    pub server_id: Uuid,
    pub name: DnsLabel,
    pub kind: EnvironmentKind,
    pub subdomain: DnsLabel,
    /// `{subdomain}.{apps_domain}`, unique across the platform.
    pub hostname: Option<String>,
    pub odoo_version: String,
    pub branch: Branch,
    pub cpu_cores: f64,
    pub ram_mb: i32,
    pub disk_gb: i32,
    pub odoo_conf_overrides: serde_json::Value,
    pub replica_enabled: bool,
    /// Odoo's demo data at initialization (development environments only).
    pub with_demo: bool,
    pub migration_source_url: Option<String>,
    pub migration_restore_completed: bool,
    pub migration_restore_completed_at: Option<DateTime<Utc>>,
    pub has_db_password: bool,
    pub status: EnvironmentStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, project_id, server_id, name, kind, subdomain, hostname, odoo_version, branch, cpu_cores,
    ram_mb, disk_gb, odoo_conf_overrides, replica_enabled, with_demo,
    split_part(migration_source_url, '?', 1) AS migration_source_url, migration_restore_completed,
    migration_restore_completed_at, db_password_encrypted IS NOT NULL AS has_db_password, status,
    created_at, updated_at";

/// The settable fields, as validated by the API; on update `None` keeps the
/// stored value.
#[derive(Debug, Default)]
pub struct EnvironmentFields<'a> {
    pub server_id: Option<Uuid>,
    pub name: Option<&'a DnsLabel>,
    pub kind: Option<EnvironmentKind>,
    pub subdomain: Option<&'a DnsLabel>,
    /// Set with the subdomain, lowercase.
    pub hostname: Option<&'a str>,
    pub odoo_version: Option<&'a str>,
    pub branch: Option<&'a Branch>,
    pub cpu_cores: Option<f64>,
    pub ram_mb: Option<i32>,
    pub disk_gb: Option<i32>,
    pub odoo_conf_overrides: Option<&'a serde_json::Value>,
    pub replica_enabled: Option<bool>,
    pub with_demo: Option<bool>,
    /// A backup to restore once: what the API shows of its URL (up to the
    /// query string, which may hold a presigned signature) ...
    pub migration_source_url: Option<&'a str>,
    /// ... and the whole URL, encrypted. Set both or neither.
    pub migration_source_encrypted: Option<&'a Sealed>,
    /// On update: remove the migration source (`migration_source_url: null`).
    pub clear_migration_source_url: bool,
}

pub async fn insert(
    pool: &PgPool,
    project: Uuid,
    f: &EnvironmentFields<'_>,
) -> sqlx::Result<Environment> {
    sqlx::query_as(&format!(
        "INSERT INTO environments (id, project_id, server_id, name, kind, subdomain, odoo_version, branch,
                                   cpu_cores, ram_mb, disk_gb, odoo_conf_overrides, replica_enabled, migration_source_url, hostname,
                                   migration_source_encrypted, with_demo)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, COALESCE($12, '{{}}'::jsonb), COALESCE($13, FALSE), $14, $15, $16,
                 COALESCE($17, FALSE))
         RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(project)
    .bind(f.server_id)
    .bind(f.name)
    .bind(f.kind)
    .bind(f.subdomain)
    .bind(f.odoo_version)
    .bind(f.branch)
    .bind(f.cpu_cores)
    .bind(f.ram_mb)
    .bind(f.disk_gb)
    .bind(f.odoo_conf_overrides)
    .bind(f.replica_enabled)
    .bind(f.migration_source_url)
    .bind(f.hostname)
    .bind(f.migration_source_encrypted)
    .bind(f.with_demo)
    .fetch_one(pool)
    .await
}

pub async fn update(
    pool: &PgPool,
    id: Uuid,
    f: &EnvironmentFields<'_>,
) -> sqlx::Result<Option<Environment>> {
    sqlx::query_as(&format!(
        "UPDATE environments SET
            server_id = COALESCE($2, server_id), name = COALESCE($3, name), kind = COALESCE($4, kind),
            subdomain = COALESCE($5, subdomain), odoo_version = COALESCE($6, odoo_version),
            branch = COALESCE($7, branch), cpu_cores = COALESCE($8, cpu_cores), ram_mb = COALESCE($9, ram_mb),
            disk_gb = COALESCE($10, disk_gb), odoo_conf_overrides = COALESCE($11, odoo_conf_overrides),
            replica_enabled = COALESCE($12, replica_enabled), with_demo = COALESCE($17, with_demo),
            migration_source_url = CASE WHEN $14 THEN NULL ELSE COALESCE($13, migration_source_url) END,
            migration_source_encrypted =
                CASE WHEN $14 THEN NULL ELSE COALESCE($16, migration_source_encrypted) END,
            hostname = COALESCE($15, hostname),
            dns_record_id = CASE WHEN $15 IS NULL OR lower($15) = lower(hostname) THEN dns_record_id END,
            updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(f.server_id)
    .bind(f.name)
    .bind(f.kind)
    .bind(f.subdomain)
    .bind(f.odoo_version)
    .bind(f.branch)
    .bind(f.cpu_cores)
    .bind(f.ram_mb)
    .bind(f.disk_gb)
    .bind(f.odoo_conf_overrides)
    .bind(f.replica_enabled)
    .bind(f.migration_source_url)
    .bind(f.clear_migration_source_url)
    .bind(f.hostname)
    .bind(f.migration_source_encrypted)
    .bind(f.with_demo)
    .fetch_optional(pool)
    .await
}

pub async fn get(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Environment>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM environments WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Environments of the projects whose environments the user may view.
pub async fn list_visible(
    pool: &PgPool,
    user: Uuid,
    portal_admin: bool,
    project: Option<Uuid>,
    page: Page,
) -> sqlx::Result<super::Paged<Environment>> {
    let sql = format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total_count FROM environments e
         WHERE ($3::uuid IS NULL OR e.project_id = $3)
           AND ($1 OR {ROLE_PAIR} = ANY($6))
         ORDER BY created_at, id OFFSET $4 LIMIT $5",
        ROLE_PAIR = super::role_pair("e.project_id")
    );
    super::paged(page, |page| {
        sqlx::query_as(&sql)
            .bind(portal_admin)
            .bind(user)
            .bind(project)
            .bind(page.skip)
            .bind(page.limit)
            .bind(crate::auth::role_pairs_with(
                crate::auth::Permission::ProjectEnvironmentsView,
            ))
            .fetch_all(pool)
    })
    .await
}

/// What reading an environment's credentials found.
pub enum Credentials {
    /// The encrypted master password and, when oec set it, the encrypted
    /// password of Odoo's `admin` user; the read is now recorded.
    First(Sealed, Option<Sealed>),
    /// Read before, at this time.
    AlreadyRead(DateTime<Utc>),
    /// No deployment generated them yet.
    NotYet,
}

/// Hands out the environment's credentials once: the first call records
/// who read them and when, in the same statement. They are ready once the
/// master password exists and the admin user's password is set, unless
/// oec never initialized the database (restored from a backup, or
/// initialized before migration 0008 by a deployment that succeeded).
pub async fn take_credentials(pool: &PgPool, id: Uuid, user: Uuid) -> sqlx::Result<Credentials> {
    let taken: Option<(Sealed, Option<Sealed>)> = sqlx::query_as(
        "UPDATE environments e SET credentials_read_at = now(), credentials_read_by = $2
         WHERE id = $1 AND credentials_read_at IS NULL AND admin_passwd_encrypted IS NOT NULL
           AND (odoo_admin_password_set_at IS NOT NULL OR migration_restore_completed
                OR (database_initialized_at IS NULL AND EXISTS (
                      SELECT 1 FROM deployments d WHERE d.environment_id = e.id AND d.status = $3)))
         RETURNING admin_passwd_encrypted,
                   CASE WHEN odoo_admin_password_set_at IS NOT NULL THEN odoo_admin_password_encrypted END",
    )
    .bind(id)
    .bind(user)
    .bind(crate::model::DeploymentStatus::Success)
    .fetch_optional(pool)
    .await?;
    if let Some((master, admin)) = taken {
        return Ok(Credentials::First(master, admin));
    }
    let read_at: Option<Option<DateTime<Utc>>> =
        sqlx::query_scalar("SELECT credentials_read_at FROM environments WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(match read_at.flatten() {
        Some(at) => Credentials::AlreadyRead(at),
        None => Credentials::NotYet,
    })
}

/// Encrypts migration URLs stored in plaintext before migration 0007 and
/// keeps only their shown part in the clear; how many it sealed. Each row is
/// sealed with a conditional update, so api processes starting at once do
/// not encrypt one twice.
pub async fn seal_migration_sources(
    pool: &PgPool,
    key: &crate::secrets::SecretKey,
) -> sqlx::Result<u64> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, migration_source_url FROM environments
         WHERE migration_source_url IS NOT NULL AND migration_source_encrypted IS NULL",
    )
    .fetch_all(pool)
    .await?;
    let mut sealed = 0;
    for (id, url) in rows {
        let r = sqlx::query(
            "UPDATE environments SET migration_source_url = $3, migration_source_encrypted = $4
             WHERE id = $1 AND migration_source_url = $2 AND migration_source_encrypted IS NULL",
        )
        .bind(id)
        .bind(&url)
        .bind(crate::secrets::shown_url(&url))
        .bind(key.seal(&url))
        .execute(pool)
        .await?;
        sealed += r.rows_affected();
    }
    Ok(sealed)
}
