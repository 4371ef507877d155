use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::model::fields::{Branch, DnsLabel, GitUrl};

use super::Page;
use crate::model::ProjectRole;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Project {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub slug: DnsLabel,
    pub git_url: GitUrl,
    pub git_branch: Branch,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, organization_id, name, slug, git_url, git_branch, created_at, updated_at";

pub struct NewProject<'a> {
    pub organization_id: Uuid,
    pub name: &'a str,
    pub slug: &'a DnsLabel,
    pub git_url: &'a GitUrl,
    pub git_branch: &'a Branch,
}

pub async fn insert(pool: &PgPool, p: &NewProject<'_>) -> sqlx::Result<Project> {
    sqlx::query_as(&format!(
        "INSERT INTO projects (id, organization_id, name, slug, git_url, git_branch)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(p.organization_id)
    .bind(p.name)
    .bind(p.slug)
    .bind(p.git_url)
    .bind(p.git_branch)
    .fetch_one(pool)
    .await
}

pub async fn get(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Project>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM projects WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Projects the user may see: every project of their organizations, and the
/// projects they are a member of.
pub async fn list_visible(
    pool: &PgPool,
    user: Uuid,
    portal_admin: bool,
    org: Option<Uuid>,
    page: Page,
) -> sqlx::Result<super::Paged<Project>> {
    let sql = format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total_count FROM projects p
         WHERE ($3::uuid IS NULL OR p.organization_id = $3)
           AND ($1 OR EXISTS (SELECT 1 FROM organization_members m WHERE m.organization_id = p.organization_id AND m.user_id = $2)
                   OR EXISTS (SELECT 1 FROM project_members pm WHERE pm.project_id = p.id AND pm.user_id = $2))
         ORDER BY created_at, id OFFSET $4 LIMIT $5"
    );
    super::paged(page, |page| {
        sqlx::query_as(&sql)
            .bind(portal_admin)
            .bind(user)
            .bind(org)
            .bind(page.skip)
            .bind(page.limit)
            .fetch_all(pool)
    })
    .await
}

#[derive(Default)]
pub struct ProjectPatch<'a> {
    pub name: Option<&'a str>,
    pub slug: Option<&'a DnsLabel>,
    pub git_url: Option<&'a GitUrl>,
    pub git_branch: Option<&'a Branch>,
}

pub async fn update(
    pool: &PgPool,
    id: Uuid,
    p: &ProjectPatch<'_>,
) -> sqlx::Result<Option<Project>> {
    sqlx::query_as(&format!(
        "UPDATE projects SET name = COALESCE($2, name), slug = COALESCE($3, slug),
                git_url = COALESCE($4, git_url), git_branch = COALESCE($5, git_branch), updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(p.name)
    .bind(p.slug)
    .bind(p.git_url)
    .bind(p.git_branch)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = ProjectMember)]
pub struct Member {
    pub project_id: Uuid,
    pub user_id: Uuid,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

pub async fn upsert_member(
    pool: &PgPool,
    project: Uuid,
    user: Uuid,
    role: ProjectRole,
) -> sqlx::Result<Member> {
    sqlx::query_as(
        "INSERT INTO project_members (project_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (project_id, user_id) DO UPDATE SET role = EXCLUDED.role
         RETURNING project_id, user_id, role, created_at",
    )
    .bind(project)
    .bind(user)
    .bind(role.as_str())
    .fetch_one(pool)
    .await
}

/// Removes a member; false when they were not one.
pub async fn remove_member(pool: &PgPool, project: Uuid, user: Uuid) -> sqlx::Result<bool> {
    let r = sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
        .bind(project)
        .bind(user)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn list_members(
    pool: &PgPool,
    project: Uuid,
    page: Page,
) -> sqlx::Result<super::Paged<super::organizations::ListedMember>> {
    super::organizations::list_members_of(pool, "project_members", "project_id", project, page)
        .await
}

pub async fn member_role(pool: &PgPool, project: Uuid, user: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2")
        .bind(project)
        .bind(user)
        .fetch_optional(pool)
        .await
}
