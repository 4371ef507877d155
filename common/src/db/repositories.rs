use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::model::fields::{Branch, DnsLabel, GitUrl};

use crate::secrets::Sealed;

use super::Page;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Repository {
    pub id: Uuid,
    pub scope: String,
    pub organization_id: Option<Uuid>,
    pub project_id: Option<Uuid>,
    pub name: DnsLabel,
    pub git_url: GitUrl,
    pub branch: Branch,
    pub priority: i32,
    pub has_token: bool,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, scope, organization_id, project_id, name, git_url, branch, priority,
    token_encrypted IS NOT NULL AS has_token, created_at";

pub struct NewRepository<'a> {
    pub scope: &'a str,
    pub organization_id: Option<Uuid>,
    pub project_id: Option<Uuid>,
    pub name: &'a DnsLabel,
    pub git_url: &'a GitUrl,
    pub branch: &'a Branch,
    pub priority: i32,
    pub token_encrypted: Option<&'a Sealed>,
}

pub async fn insert(pool: &PgPool, r: &NewRepository<'_>) -> sqlx::Result<Repository> {
    sqlx::query_as(&format!(
        "INSERT INTO addon_repositories (id, scope, organization_id, project_id, name, git_url, branch, priority, token_encrypted)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(r.scope)
    .bind(r.organization_id)
    .bind(r.project_id)
    .bind(r.name)
    .bind(r.git_url)
    .bind(r.branch)
    .bind(r.priority)
    .bind(r.token_encrypted)
    .fetch_one(pool)
    .await
}

/// Platform repositories, and those of the organizations and projects the user
/// has a part in.
pub async fn list_visible(
    pool: &PgPool,
    user: Uuid,
    portal_admin: bool,
    page: Page,
) -> sqlx::Result<super::Paged<Repository>> {
    let sql = format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total_count FROM addon_repositories r
         WHERE $1 OR r.scope = 'platform'
            OR EXISTS (SELECT 1 FROM organization_members m WHERE m.organization_id = r.organization_id
                       AND m.user_id = $2 AND m.role = ANY($5))
            OR (r.scope = 'project' AND {ROLE_PAIR} = ANY($6))
         ORDER BY scope, priority DESC, name OFFSET $3 LIMIT $4",
        ROLE_PAIR = super::role_pair("r.project_id")
    );
    super::paged(page, |page| {
        sqlx::query_as(&sql)
            .bind(portal_admin)
            .bind(user)
            .bind(page.skip)
            .bind(page.limit)
            .bind(crate::auth::org_roles_with(
                crate::auth::Permission::OrgRepositoriesView,
            ))
            .bind(crate::auth::role_pairs_with(
                crate::auth::Permission::ProjectRepositoriesView,
            ))
            .fetch_all(pool)
    })
    .await
}

pub async fn get(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Repository>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM addon_repositories WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// A change to a repository; `None` leaves a field as it is.
pub struct RepositoryPatch<'a> {
    pub name: Option<&'a DnsLabel>,
    pub git_url: Option<&'a GitUrl>,
    pub branch: Option<&'a Branch>,
    pub priority: Option<i32>,
    /// `Some(None)` removes the token.
    pub token_encrypted: Option<Option<&'a Sealed>>,
}

pub async fn update(
    pool: &PgPool,
    id: Uuid,
    p: &RepositoryPatch<'_>,
) -> sqlx::Result<Option<Repository>> {
    sqlx::query_as(&format!(
        "UPDATE addon_repositories SET name = COALESCE($2, name), git_url = COALESCE($3, git_url),
             branch = COALESCE($4, branch), priority = COALESCE($5, priority),
             token_encrypted = CASE WHEN $6 THEN $7 ELSE token_encrypted END
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(p.name)
    .bind(p.git_url)
    .bind(p.branch)
    .bind(p.priority)
    .bind(p.token_encrypted.is_some())
    .bind(p.token_encrypted.flatten())
    .fetch_optional(pool)
    .await
}

/// The deployments pending or running that clone this repository (every
/// one for a platform repository, those of its organization or project
/// otherwise).
pub async fn active_deployments(pool: &PgPool, r: &Repository) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM deployments d JOIN projects p ON p.id = d.project_id
         WHERE d.status = ANY($4) AND d.action = 'deploy'
           AND ($1 = 'platform' OR ($1 = 'organization' AND p.organization_id = $2)
                OR ($1 = 'project' AND d.project_id = $3))",
    )
    .bind(&r.scope)
    .bind(r.organization_id)
    .bind(r.project_id)
    .bind(crate::model::DeploymentStatus::ACTIVE)
    .fetch_one(pool)
    .await
}

pub async fn delete(pool: &PgPool, id: Uuid) -> sqlx::Result<bool> {
    let r = sqlx::query("DELETE FROM addon_repositories WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() == 1)
}
